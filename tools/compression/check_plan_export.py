#!/usr/bin/env python3
"""Check that a plan exported by `moekit export --plan` loads in Hugging Face transformers and
gives the same logits as MoEKit running that plan from the store.

    .venv/bin/python tools/compression/check_plan_export.py --store S --plan NAME [--plan NAME ...]
        [--moekit .build/release/moekit] [--tokens 48]

For each plan: export it to a temporary folder, run `moekit logits --store S --plan NAME` on
seeded random token ids, load the export with AutoModelForCausalLM (float32, eager), run the
same ids, and print the largest absolute logit difference and whether the argmax agrees.
Exits non-zero if a difference exceeds --tolerance. Pins: tools/requirements.txt.
"""
import argparse
import json
import random
import subprocess
import sys
import tempfile
from pathlib import Path

import torch
from transformers import AutoModelForCausalLM

ROOT = Path(__file__).resolve().parents[2]


def exported_tensor_names(folder):
    from safetensors import safe_open
    names = []
    for path in sorted(Path(folder).glob("*.safetensors")):
        with safe_open(str(path), "pt") as f:
            names += list(f.keys())
    return names


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--store", required=True)
    ap.add_argument("--plan", action="append", required=True)
    ap.add_argument("--moekit", default=str(ROOT / ".build/release/moekit"))
    ap.add_argument("--tokens", type=int, default=48)
    ap.add_argument("--tolerance", type=float, default=1e-3)
    args = ap.parse_args()
    torch.set_num_threads(1)
    failed = False
    with tempfile.TemporaryDirectory() as tmp:
        for plan in args.plan:
            out = Path(tmp) / plan
            subprocess.run([args.moekit, "export", "--store", args.store, "--plan", plan, "--out", str(out)], check=True,
                           stdout=subprocess.DEVNULL)
            config = json.loads((out / "config.json").read_text())
            rng = random.Random(7)
            ids = [rng.randrange(3, config["vocab_size"]) for _ in range(args.tokens)]
            result = subprocess.run([args.moekit, "logits", "--store", args.store, "--plan", plan,
                                     "--ids", ",".join(map(str, ids))], check=True, capture_output=True, text=True)
            ours = torch.tensor(json.loads(result.stdout)["logits"])
            model = AutoModelForCausalLM.from_pretrained(out, dtype=torch.float32, attn_implementation="eager").eval()
            with torch.no_grad():
                theirs = model(torch.tensor([ids])).logits[0]
            diff = (ours - theirs).abs().max().item()
            agree = (ours.argmax(-1) == theirs.argmax(-1)).float().mean().item()
            experts = config.get("num_experts", config.get("num_local_experts", config.get("n_routed_experts")))
            # Multi-token-prediction layers (GLM-4.5's num_nextn_predict_layers) are exported
            # whole; transformers builds no module for them and leaves them unloaded.
            main_layers = config["num_hidden_layers"]
            extra = sorted({int(k.split(".")[2]) for k in exported_tensor_names(out)
                            if k.startswith("model.layers.") and int(k.split(".")[2]) >= main_layers})
            note = f" (multi-token-prediction layer {', '.join(map(str, extra))} in the export, not run by transformers)" if extra else ""
            print(f"{plan}: {experts} experts per layer, max |Δlogit| = {diff:.2e}, argmax agreement {agree:.0%}{note}")
            failed |= diff > args.tolerance
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
