#!/usr/bin/env python3
"""Check `moekit export --format mlx` without MLX: read the export back with MLX's own layout
rules (numpy), compare every tensor with the same plan's Hugging Face export, then run the
weights in transformers and compare the logits with `moekit logits` on the plan.

    /work/venv/bin/python tools/mlx-check/check.py --store S --plan NAME [--plan NAME ...]
        [--moekit .build/debug/moekit] [--tokens 48]

MLX's affine layout (mlx.core.quantize, mode "affine"), as mlx-lm loads it:
  <module>.weight  uint32 [..., rows, columns*bits/32]: each row's codes as one stream,
                   code k in bits [k*bits, (k+1)*bits), least significant bit first, stream
                   bit i = bit i%32 of word i/32;
  <module>.scales, <module>.biases [..., rows, columns/group_size]: w = scale*q + bias.
  bits and group_size: config.json "quantization", a module's own entry else the top level.
Experts are stacked per projection as <moe module>.switch_mlp.{gate,up,down}_proj.

Per plan it prints: tensors compared; the largest difference against the HF export (which
rounds dequantized weights to the imported dtype, BF16 here, so up to 2^-8 relative is
rounding); and the largest |Δlogit| and argmax agreement of transformers running the MLX
weights (dequantized to f32, unstacked to per-expert names) against MoEKit running the plan,
and against transformers running the HF export (which isolates the export from MoEKit's kernels).
MoEKit multiplies 4- and 8-bit codes with 8-bit activations, so quantized plans differ by
that rounding too. Exit status 1 if a tensor exceeds rounding or a tensor is missing.
"""
import argparse
import json
import random
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch
from safetensors.numpy import save_file
from transformers import AutoModelForCausalLM

ROOT = Path(__file__).resolve().parents[2]


DTYPES = {"F32": np.float32, "F16": np.float16, "BF16": np.uint16, "U32": np.uint32, "I64": np.int64}


def load_folder(folder):
    """Every tensor of a folder's shards, read by the safetensors format itself (numpy has no
    bfloat16, so BF16 stays as its uint16 bits)."""
    tensors = {}
    for shard in sorted(folder.glob("*.safetensors")):
        data = shard.read_bytes()
        length = int.from_bytes(data[:8], "little")
        header = json.loads(data[8:8 + length])
        for name, entry in header.items():
            if name == "__metadata__":
                continue
            begin, end = entry["data_offsets"]
            raw = data[8 + length + begin: 8 + length + end]
            tensors[name] = np.frombuffer(raw, dtype=DTYPES[entry["dtype"]]).reshape(entry["shape"])
    return tensors


def dequantize(words, scales, biases, bits, group):
    """MLX's affine rule on numpy arrays; returns float32 [..., rows, columns]."""
    lead, width = words.shape[:-1], words.shape[-1]
    columns = width * 32 // bits
    stream = np.unpackbits(words.astype("<u4").view(np.uint8).reshape(*lead, width * 4), axis=-1, bitorder="little")
    codes = stream.reshape(*lead, columns, bits).astype(np.uint32)
    q = (codes << np.arange(bits, dtype=np.uint32)).sum(axis=-1).astype(np.float32)
    s = np.repeat(scales.astype(np.float32), group, axis=-1)
    b = np.repeat(biases.astype(np.float32), group, axis=-1)
    return s * q + b


def read_mlx(folder):
    """The export's tensors with every quantized module dequantized to f32."""
    config = json.loads((folder / "config.json").read_text())
    quantization = config.get("quantization", {})
    raw = load_folder(folder)
    out = {}
    for name, value in raw.items():
        if name.endswith((".scales", ".biases")):
            continue
        module = name[: -len(".weight")] if name.endswith(".weight") else None
        if module and module + ".scales" in raw:
            entry = quantization.get(module, quantization)
            out[name] = dequantize(value, raw[module + ".scales"], raw[module + ".biases"], entry["bits"], entry["group_size"])
        else:
            out[name] = value
    return config, out


def unstack(tensors, config):
    """switch_mlp stacks back to transformers' per-expert names."""
    mixtral = config["model_type"] == "mixtral"
    renames = {"gate_proj": "w1", "up_proj": "w3", "down_proj": "w2"} if mixtral else {}
    out = {}
    for name, value in tensors.items():
        if ".switch_mlp." in name:
            module, rest = name.split(".switch_mlp.")
            projection = rest.split(".")[0]
            for e in range(value.shape[0]):
                out[f"{module}.experts.{e}.{renames.get(projection, projection)}.weight"] = value[e]
        else:
            out[name] = value
    return out


def bf16_to_f32(bits):
    return (bits.astype(np.uint32) << 16).view(np.float32)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--store", required=True)
    ap.add_argument("--plan", action="append", required=True)
    ap.add_argument("--moekit", default=str(ROOT / ".build/debug/moekit"))
    ap.add_argument("--tokens", type=int, default=48)
    args = ap.parse_args()
    torch.set_num_threads(1)
    failed = False
    with tempfile.TemporaryDirectory() as tmp:
        for plan in args.plan:
            mlx, hf = Path(tmp) / f"mlx-{plan}", Path(tmp) / f"hf-{plan}"
            for fmt, out in [("mlx", mlx), ("hf", hf)]:
                subprocess.run([args.moekit, "export", "--store", args.store, "--plan", plan, "--format", fmt, "--out", str(out)],
                               check=True, stdout=subprocess.DEVNULL)
            config, tensors = read_mlx(mlx)
            weights = unstack(tensors, config)
            reference = load_folder(hf)
            missing = sorted(set(reference) ^ set(weights))
            worst = 0.0
            for name, ref in reference.items():
                if name not in weights:
                    continue
                ref32 = bf16_to_f32(ref) if ref.dtype == np.uint16 else ref.astype(np.float32)
                ours = bf16_to_f32(weights[name]) if weights[name].dtype == np.uint16 else weights[name]
                diff = np.abs(ours - ref32)
                # HF rounds dequantized weights to the imported dtype: BF16's half-ulp, 2^-8 relative.
                excess = diff - np.abs(ours) * 2.0 ** -8
                worst = max(worst, float(diff.max()))
                if excess.max() > 0:
                    print(f"  {name}: differs beyond BF16 rounding (max |Δ| {diff.max():.3e})")
                    failed = True
            if missing:
                print(f"  tensors on one side only: {missing[:8]}")
                failed = True

            # transformers on the MLX weights, as f32 per-expert tensors in the HF folder's layout.
            run = Path(tmp) / f"run-{plan}"
            run.mkdir()
            for f in hf.iterdir():
                if not f.name.endswith(".safetensors") and f.name != "model.safetensors.index.json":
                    (run / f.name).write_bytes(f.read_bytes())
            f32 = {k: (bf16_to_f32(v) if v.dtype == np.uint16 else v).astype(np.float32) for k, v in weights.items()}
            save_file(f32, run / "model.safetensors", metadata={"format": "pt"})
            rng = random.Random(7)
            ids = [rng.randrange(3, config["vocab_size"]) for _ in range(args.tokens)]
            result = subprocess.run([args.moekit, "logits", "--store", args.store, "--plan", plan, "--ids", ",".join(map(str, ids))],
                                    check=True, capture_output=True, text=True)
            ours = torch.tensor(json.loads(result.stdout)["logits"])
            model = AutoModelForCausalLM.from_pretrained(run, dtype=torch.float32, attn_implementation="eager").eval()
            with torch.no_grad():
                theirs = model(torch.tensor([ids])).logits[0]
            dlogit = (ours - theirs).abs().max().item()
            agree = (ours.argmax(-1) == theirs.argmax(-1)).float().mean().item()
            # The HF export in transformers too: what separates the two exports is only the
            # HF export's rounding to BF16, whatever MoEKit's own kernels add.
            hf_model = AutoModelForCausalLM.from_pretrained(hf, dtype=torch.float32, attn_implementation="eager").eval()
            with torch.no_grad():
                hf_logits = hf_model(torch.tensor([ids])).logits[0]
            dexport = (hf_logits - theirs).abs().max().item()
            dhf = (ours - hf_logits).abs().max().item()
            q = config.get("quantization")
            print(f"{plan}: {len(reference)} tensors, quantization {json.dumps(q) if q else 'none'}; "
                  f"max |Δ| vs HF export {worst:.2e} (BF16 rounding); transformers on the MLX weights vs moekit: "
                  f"max |Δlogit| {dlogit:.2e}, argmax agreement {agree:.0%}; transformers on the HF export vs on the MLX weights "
                  f"{dexport:.2e}, HF export vs moekit {dhf:.2e}")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
