#!/usr/bin/env python3
"""tools/gguf-check/fixtures.py: the glm4_moe, deepseek_v3 and gpt_oss fixtures' GGUF exports run
by llama.cpp against MoEKit, on token ids.

    python tools/gguf-check/fixtures.py --work DIR --moekit BIN --llama-logits BIN

The fixtures have no tokenizer. Each gets one made here from the default model's byte-level
BPE: its first `vocab_size` tokens (3 specials and printable ASCII bytes without space) and no
merges, so text maps to one token per character and every id is inside the fixture's
vocabulary. Profiles for the REAP plans come from the python calibration texts with
everything else (spaces, newlines, non-ASCII) removed. The comparison itself feeds token ids
(llama-logits, built from llama-logits.cpp against libllama, and `moekit logits --ids`), so
neither tokenizer is in it: the logits of every position of a fixed 24-id sequence, and a
greedy continuation of 8 tokens (each step's argmax appended, both programs re-run).
Plans: the full model and a 50% REAP plan; for deepseek_v3 a 4-bit g32 plan instead (its
4 router groups leave one expert each at 50%, which no export can route: refused).
Prints one JSON line per (fixture, plan).
"""
import argparse
import json
import pathlib
import shutil
import subprocess

import numpy as np

ROOT = pathlib.Path(__file__).resolve().parents[2]
FIXTURES = {"glm4_moe": ["reap50", "q4g32", "q8g32"], "deepseek_v3": ["q4g32"], "gpt_oss": ["reap50"],
            "gpt_oss+llama-constants": ["reap50"], "gpt_oss_wide": ["reap50", "q4g32", "q8g32", "merge50"]}
# How each plan is made (`moekit slim` arguments after --store and --profile).
PLAN_ARGS = {"reap50": ["--prune", "reap", "--keep", "0.5"], "q4g32": ["--uniform-bits", "4", "--group", "32"],
             "q8g32": ["--uniform-bits", "8", "--group", "32"], "merge50": ["--merge", "hc-smoe", "--keep", "0.5"]}
# gpt_oss+llama-constants: the gpt_oss fixture's weights with the two settings llama.cpp's
# gpt-oss graph hard-codes (swiglu_limit 7, YaRN's range rounded: truncate true) written into
# its config.json, so both programs compute the same function and only the export is compared.
PATCHES = {"gpt_oss+llama-constants": {"swiglu_limit": 7.0, "rope_parameters.truncate": True}}


def run(*args):
    return subprocess.run([str(a) for a in args], check=True, capture_output=True, text=True).stdout


def make_checkpoint(fixture, folder):
    source = ROOT / "Tests/Fixtures" / fixture.split("+")[0]
    folder.mkdir(parents=True, exist_ok=True)
    for f in ["config.json", "generation_config.json", "model.safetensors"]:
        shutil.copy(source / f, folder / f)
    config = json.loads((folder / "config.json").read_text())
    for key, value in PATCHES.get(fixture, {}).items():
        *path, last = key.split(".")
        target = config
        for part in path:
            target = target[part]
        target[last] = value
    (folder / "config.json").write_text(json.dumps(config, indent=2))
    vocab_size = json.loads((source / "config.json").read_text())["vocab_size"]
    tokenizer = json.loads((ROOT / "models/moekit-tiny/tokenizer.json").read_text())
    tokenizer["model"]["vocab"] = {t: i for t, i in tokenizer["model"]["vocab"].items() if i < vocab_size}
    tokenizer["model"]["merges"] = []
    tokenizer["added_tokens"] = [t for t in tokenizer["added_tokens"] if t["id"] < vocab_size]
    (folder / "tokenizer.json").write_text(json.dumps(tokenizer))
    shutil.copy(ROOT / "models/moekit-tiny/tokenizer_config.json", folder / "tokenizer_config.json")
    allowed = set(t for t, i in tokenizer["model"]["vocab"].items() if 3 <= i and len(t) == 1 and "!" <= t <= "~")
    calib = folder.parent / f"calib-{fixture}"
    calib.mkdir(exist_ok=True)
    with open(ROOT / "calib/python/calib.jsonl") as f, open(calib / "calib.jsonl", "w") as out:
        for line in list(f)[:16]:
            text = "".join(c for c in json.loads(line)["text"] if c in allowed)[:400]
            out.write(json.dumps({"text": text}) + "\n")
    return vocab_size, calib


def moekit_logits(moekit, store, plan, ids, *extra):
    args = [moekit, "logits", "--store", store, "--ids", ",".join(map(str, ids)), *extra]
    if plan != "full":
        args += ["--plan", plan]
    return np.array(json.loads(run(*args))["logits"], dtype=np.float64)


def llama_logits(binary, gguf, ids):
    return np.array(json.loads(run(binary, gguf, ",".join(map(str, ids))))["logits"], dtype=np.float64)


def transformers_check(moekit, store, plan, folder, ids, ours):
    """The plan's HF export loaded by transformers (f32, eager) against MoEKit running the plan,
    and against MoEKit running the export (`moekit logits --model`): the first difference is
    the export's BF16 rounding of rebuilt weights plus arithmetic, the second arithmetic only."""
    import torch
    from transformers import AutoModelForCausalLM
    shutil.rmtree(folder, ignore_errors=True)
    plan_args = [] if plan == "full" else ["--plan", plan]
    # Rebuilt weights in f32, so that the export holds exactly the weights MoEKit runs (the
    # default export rounds them to the imported BF16, ~5e-2 on these logits).
    rebuilt = [] if plan == "full" else ["--hf-rebuilt-dtype", "float32"]
    run(moekit, "export", "--store", store, *plan_args, *rebuilt, "--out", folder)
    model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32, attn_implementation="eager").eval()
    with torch.no_grad():
        theirs = model(torch.tensor([ids])).logits[0].double().numpy()
    on_export = np.array(json.loads(run(moekit, "logits", "--model", folder, "--ids", ",".join(map(str, ids))))["logits"], dtype=np.float64)
    # The plan with f32 activations (MoEKit's decode kernels quantize them to 8 bits, as llama.cpp does).
    plan_f32 = moekit_logits(moekit, store, plan, ids, "--float-activations")
    return {"hf_max_abs_logit_diff_vs_plan": float(np.abs(plan_f32 - theirs).max()),
            "hf_max_abs_logit_diff_vs_plan_8bit_activations": float(np.abs(ours - theirs).max()),
            "hf_argmax_agree": int((ours.argmax(-1) == theirs.argmax(-1)).sum()),
            "hf_max_abs_logit_diff_vs_moekit_on_export": float(np.abs(on_export - theirs).max())}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--work", required=True)
    ap.add_argument("--moekit", required=True)
    ap.add_argument("--llama-logits", required=True)
    ap.add_argument("--steps", type=int, default=8)
    ap.add_argument("--only", action="append", help="run only these fixtures")
    ap.add_argument("--transformers", action="store_true", help="also load each plan's HF export in transformers (needs torch)")
    args = ap.parse_args()
    work = pathlib.Path(args.work)
    for fixture, plans in FIXTURES.items():
        if args.only and fixture not in args.only:
            continue
        folder = work / f"ckpt-{fixture}"
        store = work / f"store-{fixture}"
        shutil.rmtree(folder, ignore_errors=True)
        shutil.rmtree(store, ignore_errors=True)
        vocab_size, calib = make_checkpoint(fixture, folder)
        run(args.moekit, "import", "--model", folder, "--store", store)
        run(args.moekit, "profile", "--store", store, "--calib", calib, "--name", "ascii", "--max-samples", 16)
        for plan in plans:
            run(args.moekit, "slim", "--store", store, "--profile", "ascii", *PLAN_ARGS[plan], "--name", plan)
        ids = [3 + (7 * i * i + 5 * i + 11) % (vocab_size - 3) for i in range(24)]
        for plan in ["full"] + plans:
            gguf = work / f"{fixture}-{plan}.gguf"
            plan_args = [] if plan == "full" else ["--plan", plan]
            summary = json.loads(run(args.moekit, "export", "--store", store, *plan_args, "--format", "gguf", "--out", gguf, "--json"))
            ours, theirs = moekit_logits(args.moekit, store, plan, ids), llama_logits(args.llama_logits, gguf, ids)
            diff = np.abs(ours - theirs)
            argmax_agree = int((ours.argmax(-1) == theirs.argmax(-1)).sum())
            # Greedy continuation, each program on its own tokens.
            a, b = list(ids[:8]), list(ids[:8])
            for _ in range(args.steps):
                a.append(int(moekit_logits(args.moekit, store, plan, a)[-1].argmax()))
                b.append(int(llama_logits(args.llama_logits, gguf, b)[-1].argmax()))
            hf = transformers_check(args.moekit, store, plan, work / f"{fixture}-{plan}-hf", ids, ours) if args.transformers else {}
            print(json.dumps({"fixture": fixture, "plan": plan, "gguf_bytes": gguf.stat().st_size, "tensors": summary["tensors"],
                              "gguf_types": sorted({c["type"] for c in summary["choices"] if "_exps." in c["tensor"]}),
                              "notes": summary["notes"], "positions": len(ids),
                              "max_abs_logit_diff": float(diff.max()), "logit_scale": float(np.abs(ours).max()),
                              "argmax_agree": argmax_agree, "greedy_moekit": a[8:], "greedy_llama": b[8:],
                              "greedy_identical": a == b, **hf}), flush=True)


if __name__ == "__main__":
    main()
