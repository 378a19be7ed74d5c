#!/usr/bin/env python3
"""tools/gguf-check/check.py: checks MoEKit's GGUF exports against MoEKit itself.

  compare --gguf F.gguf --hf DIR [--mlx DIR] [--summary S.json]
      Reads F.gguf with the `gguf` package, dequantizes every tensor and compares it with the
      same plan exported by `moekit export --format hf` (DIR/model.safetensors, read here with
      numpy: no torch). Every tensor of each file must have its counterpart. The HF export
      writes a plan's quantized tensors dequantized and rounded to the imported dtype (BF16),
      so for those the reference is the plan's own weights instead: its `--format mlx` export
      (--mlx), which keeps MoEKit's codes, scales and minimums exactly, dequantized here with
      MLX's affine rule (scale*q + bias in f32, what MoEKit computes). Tensors the export
      summary (`moekit export --format gguf --json`) calls exact must be equal value for value;
      for the others the error is reported. Exit status 1 on any mismatch.

  ppl --gguf F.gguf --store S [--plan P] --text FILE --llama-bin DIR --moekit BIN [--ctx 256] [--chunks 16]
      llama-perplexity on FILE against MoEKit's perplexity of the same text scored the same way
      (see README.md: MoEKit's logits for each chunk of --ctx tokens, scored on the second
      half of the chunk as llama-perplexity does). Prints one JSON line.
"""
import argparse
import json
import re
import struct
import subprocess
import sys

import numpy as np
from gguf import GGUFReader
from gguf.quants import dequantize


def read_safetensors(path):
    """name -> float32 array, BF16/F16/F32 only (what MoEKit's HF export writes)."""
    with open(path, "rb") as f:
        (length,) = struct.unpack("<Q", f.read(8))
        header = json.loads(f.read(length))
        data = f.read()
    out = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        start, end = info["data_offsets"]
        raw = np.frombuffer(data[start:end], dtype=np.uint8)
        dtype = info["dtype"]
        if dtype == "BF16":
            values = (raw.view(np.uint16).astype(np.uint32) << 16).view(np.float32)
        elif dtype == "F16":
            values = raw.view(np.float16).astype(np.float32)
        elif dtype == "F32":
            values = raw.view(np.float32)
        else:
            raise SystemExit(f"{path}: tensor {name} has dtype {dtype}, not a float type")
        out[name] = values.reshape(info["shape"])
    return out


def read_mlx_quantized(folder):
    """HF name -> float32 weights of every quantized module of an MLX export: MLX's affine
    layout (uint32 words, code k in bits [k*bits, (k+1)*bits) of the row's stream, least
    significant first; scales and biases per group; w = scale*q + bias), experts unstacked
    from switch_mlp to per-expert names."""
    import pathlib
    folder = pathlib.Path(folder)
    config = json.loads((folder / "config.json").read_text())
    quantization = config.get("quantization", {})
    raw = {}
    for shard in sorted(folder.glob("*.safetensors")):
        with open(shard, "rb") as f:
            (length,) = struct.unpack("<Q", f.read(8))
            header = json.loads(f.read(length))
            data = f.read()
        kinds = {"U32": np.uint32, "F16": np.float16, "F32": np.float32, "BF16": np.uint16}
        for name, info in header.items():
            if name == "__metadata__" or info["dtype"] not in kinds:
                continue
            start, end = info["data_offsets"]
            raw[name] = np.frombuffer(data[start:end], dtype=kinds[info["dtype"]]).reshape(info["shape"])
    renames = {"gate_proj": "w1", "up_proj": "w3", "down_proj": "w2"} if config.get("model_type") == "mixtral" else {}
    out = {}
    for name, words in raw.items():
        module = name[: -len(".weight")] if name.endswith(".weight") else None
        if not module or module + ".scales" not in raw:
            continue
        entry = quantization.get(module, quantization)
        bits, group = entry["bits"], entry["group_size"]
        lead, width = words.shape[:-1], words.shape[-1]
        stream = np.unpackbits(words.astype("<u4").view(np.uint8).reshape(*lead, width * 4), axis=-1, bitorder="little")
        codes = stream.reshape(*lead, width * 32 // bits, bits).astype(np.uint32)
        q = (codes << np.arange(bits, dtype=np.uint32)).sum(axis=-1).astype(np.float32)
        scale = np.repeat(raw[module + ".scales"].astype(np.float32), group, axis=-1)
        bias = np.repeat(raw[module + ".biases"].astype(np.float32), group, axis=-1)
        w = scale * q + bias
        if ".switch_mlp." in module:
            prefix, projection = module.split(".switch_mlp.")
            for e in range(w.shape[0]):
                out[f"{prefix}.experts.{e}.{renames.get(projection, projection)}.weight"] = w[e]
        else:
            out[name] = w
    return out


LAYER_NAMES = {
    "input_layernorm.weight": "attn_norm.weight",
    "post_attention_layernorm.weight": "ffn_norm.weight",
    "self_attn.q_proj.weight": "attn_q.weight",
    "self_attn.k_proj.weight": "attn_k.weight",
    "self_attn.v_proj.weight": "attn_v.weight",
    "self_attn.o_proj.weight": "attn_output.weight",
    "self_attn.q_proj.bias": "attn_q.bias",
    "self_attn.k_proj.bias": "attn_k.bias",
    "self_attn.v_proj.bias": "attn_v.bias",
    "self_attn.q_norm.weight": "attn_q_norm.weight",
    "self_attn.k_norm.weight": "attn_k_norm.weight",
    "mlp.gate.weight": "ffn_gate_inp.weight",
    "block_sparse_moe.gate.weight": "ffn_gate_inp.weight",
    "mlp.shared_expert_gate.weight": "ffn_gate_inp_shexp.weight",
    "mlp.gate.e_score_correction_bias": "exp_probs_b.bias",
}
PROJECTIONS = {"gate_proj": "gate", "up_proj": "up", "down_proj": "down", "w1": "gate", "w3": "up", "w2": "down"}


def gguf_name(hf):
    """(GGUF tensor name, expert index or None) of a Hugging Face tensor name."""
    fixed = {"model.embed_tokens.weight": "token_embd.weight", "model.norm.weight": "output_norm.weight",
             "lm_head.weight": "output.weight"}
    if hf in fixed:
        return fixed[hf], None
    m = re.fullmatch(r"model\.layers\.(\d+)\.(.+)", hf)
    if not m:
        return None, None
    layer, rest = m.group(1), m.group(2)
    if rest in LAYER_NAMES:
        return f"blk.{layer}.{LAYER_NAMES[rest]}", None
    m = re.fullmatch(r"(?:mlp|block_sparse_moe)\.experts\.(\d+)\.(\w+)\.weight", rest)
    if m and m.group(2) in PROJECTIONS:
        return f"blk.{layer}.ffn_{PROJECTIONS[m.group(2)]}_exps.weight", int(m.group(1))
    m = re.fullmatch(r"mlp\.shared_experts?\.(\w+)\.weight", rest)
    if m and m.group(1) in PROJECTIONS:
        return f"blk.{layer}.ffn_{PROJECTIONS[m.group(1)]}_shexp.weight", None
    m = re.fullmatch(r"mlp\.(\w+)\.weight", rest)
    if m and m.group(1) in PROJECTIONS:
        return f"blk.{layer}.ffn_{PROJECTIONS[m.group(1)]}.weight", None
    return None, None


def field(reader, key):
    f = reader.fields.get(key)
    return None if f is None else f.contents()


def interleave_rope_rows(w, heads):
    """convert_hf_to_gguf.py's q/k row order for llama.cpp's `llama` graph."""
    return w.reshape(heads, 2, w.shape[0] // heads // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def compare(args):
    reader = GGUFReader(args.gguf)
    arch = field(reader, "general.architecture")
    hf = read_safetensors(f"{args.hf}/model.safetensors")
    replaced = 0
    if args.mlx:
        for name, weights in read_mlx_quantized(args.mlx).items():
            if name not in hf or hf[name].shape != weights.shape:
                raise SystemExit(f"{args.mlx}: quantized {name} has no counterpart of its shape in {args.hf}")
            hf[name] = weights
            replaced += 1
    exact_claims = {}
    if args.summary:
        with open(args.summary) as f:
            exact_claims = {c["tensor"]: c for c in json.load(f)["choices"]}
    gguf_tensors = {t.name: t for t in reader.tensors}
    blocks = int(field(reader, f"{arch}.block_count"))
    grouped = {}
    for name, values in hf.items():
        m = re.fullmatch(r"model\.layers\.(\d+)\..+", name)
        if m and int(m.group(1)) >= blocks:
            continue  # a multi-token-prediction layer (glm4_moe): in the HF export, left out of the GGUF
        target, expert = gguf_name(name)
        if arch == "glm4moe" and target and target.endswith(".ffn_norm.weight"):
            target = target.replace(".ffn_norm.weight", ".post_attention_norm.weight")  # glm4moe's name for it
        if target is None or target not in gguf_tensors:
            raise SystemExit(f"{args.gguf}: no tensor for {name} (expected {target})")
        if arch == "llama" and target.endswith(("attn_q.weight", "attn_k.weight")):
            heads = field(reader, "llama.attention.head_count" if "attn_q" in target else "llama.attention.head_count_kv")
            values = interleave_rope_rows(values, heads)
        grouped.setdefault(target, {})[expert] = values
    missing = set(gguf_tensors) - set(grouped)
    if missing:
        raise SystemExit(f"{args.gguf}: tensors with no counterpart in {args.hf}: {sorted(missing)}")
    failures, rows = 0, []
    for name, parts in grouped.items():
        t = gguf_tensors[name]
        got = dequantize(t.data, t.tensor_type).astype(np.float32)
        want = np.stack([parts[e] for e in sorted(parts)]) if None not in parts else parts[None]
        if got.size != want.size:
            raise SystemExit(f"{name}: {got.size} values in the GGUF, {want.size} in the HF export")
        got = got.reshape(want.shape)
        equal = bool(np.array_equal(got, want))
        diff = np.abs(got.astype(np.float64) - want)
        rel = float(np.linalg.norm(diff) / max(np.linalg.norm(want.astype(np.float64)), 1e-30))
        claim = exact_claims.get(name)
        claimed_exact = claim["exact"] if claim else None
        if claimed_exact and not equal:
            failures += 1
        rows.append((name, t.tensor_type.name, claim["from"] if claim else "?", equal, float(diff.max()), rel, claimed_exact))
    exact = sum(r[3] for r in rows)
    for name, ttype, source, equal, maxdiff, rel, claimed in rows:
        if not equal or args.verbose:
            flag = "MISMATCH (claimed exact)" if claimed and not equal else ("exact" if equal else "requantized")
            print(f"  {name:34s} {ttype:5s} from {source:12s} {flag:24s} max|d|={maxdiff:.3e} rel={rel:.3e}")
    print(json.dumps({"gguf": args.gguf, "architecture": arch, "tensors": len(rows), "exact": exact,
                      "hf_tensors_replaced_by_plan_weights": replaced,
                      "not_exact": len(rows) - exact, "claimed_exact_but_differ": failures,
                      "worst_relative_error": max((r[5] for r in rows), default=0.0)}))
    return 1 if failures else 0


def moekit_ppl(args):
    """MoEKit's perplexity of the text scored as llama-perplexity scores it: (ppl, chunks, scored tokens)."""
    text = open(args.text, encoding="utf-8").read()
    # MoEKit's tokens of the text; llama.cpp tokenizes it itself (agreement is part of the check).
    ids = json.loads(subprocess.run([args.moekit, "tokenize", "--store", args.store, text],
                                    check=True, capture_output=True, text=True).stdout)
    n_chunks = min(args.chunks, len(ids) // args.ctx)
    first = args.ctx // 2
    nll, count = 0.0, 0
    for c in range(n_chunks):
        chunk = ids[c * args.ctx:(c + 1) * args.ctx]
        command = [args.moekit, "logits", "--store", args.store, "--ids", ",".join(map(str, chunk))]
        if args.plan:
            command += ["--plan", args.plan]
        logits = np.array(json.loads(subprocess.run(command, check=True, capture_output=True, text=True).stdout)["logits"],
                          dtype=np.float64)
        # llama-perplexity's scoring: positions first..ctx-2 predict the next token.
        z = logits[first:args.ctx - 1]
        log_softmax = z - z.max(axis=1, keepdims=True)
        log_softmax -= np.log(np.exp(log_softmax).sum(axis=1, keepdims=True))
        nll -= log_softmax[np.arange(len(z)), chunk[first + 1:args.ctx]].sum()
        count += len(z)
    return float(np.exp(nll / count)), n_chunks, count


def ppl(args):
    moekit, n_chunks, count = moekit_ppl(args)
    run = subprocess.run([f"{args.llama_bin}/llama-perplexity", "-m", args.gguf, "-f", args.text, "-c", str(args.ctx),
                          "-b", str(args.ctx), "--chunks", str(n_chunks), "-t", str(args.threads)],
                         capture_output=True, text=True)
    log = run.stdout + run.stderr
    m = re.search(r"Final estimate: PPL = ([0-9.]+)", log)
    if run.returncode != 0 or not m:
        sys.stderr.write(log[-3000:])
        raise SystemExit(f"llama-perplexity failed on {args.gguf}")
    llama_ppl = float(m.group(1))
    print(json.dumps({"gguf": args.gguf, "plan": args.plan or "full", "chunks": n_chunks, "ctx": args.ctx,
                      "scored_tokens": count, "moekit_ppl": moekit, "llama_ppl": llama_ppl,
                      "difference_percent": (llama_ppl / moekit - 1) * 100}))
    return 0


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    c = sub.add_parser("compare")
    c.add_argument("--gguf", required=True)
    c.add_argument("--hf", required=True)
    c.add_argument("--mlx", help="the plan's --format mlx export: the reference for its quantized tensors")
    c.add_argument("--summary")
    c.add_argument("--verbose", action="store_true")
    p = sub.add_parser("ppl")
    p.add_argument("--gguf", required=True)
    p.add_argument("--store", required=True)
    p.add_argument("--plan")
    p.add_argument("--text", required=True)
    p.add_argument("--llama-bin", required=True)
    p.add_argument("--moekit", required=True)
    p.add_argument("--ctx", type=int, default=256)
    p.add_argument("--chunks", type=int, default=16)
    p.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    sys.exit(compare(args) if args.command == "compare" else ppl(args))


if __name__ == "__main__":
    main()
