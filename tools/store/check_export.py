#!/usr/bin/env python3
"""Check that checkpoints exported from an expert store load in Hugging Face transformers
and reproduce the fixture reference logits.

For each fixture family (default: all seven in Tests/Fixtures) this runs

    moekit import --model Tests/Fixtures/<family> --store <tmp>/<family>.store
    moekit export --store <tmp>/<family>.store --out <tmp>/<family>

then loads the exported folder the way the references were made (AutoModelForCausalLM,
float32, eager attention and experts), runs the reference input ids in one forward pass,
and prints the largest absolute difference from Tests/Fixtures/<family>/reference.safetensors.
It exits non-zero if any family differs by more than --tolerance.

    .venv/bin/python tools/store/check_export.py [--moekit .build/debug/moekit] [--family qwen3_moe ...]

With --checkpoint DIR (e.g. models/moekit-tiny) it instead round-trips that checkpoint and
compares the export's logits with the original checkpoint's, both loaded by transformers,
on seeded random ids.
"""
from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

import torch
from safetensors.torch import load_file
from transformers import AutoModelForCausalLM

ROOT = Path(__file__).resolve().parents[2]
FIXTURES = ROOT / "Tests" / "Fixtures"
FAMILIES = ["mixtral", "qwen2_moe", "qwen3_moe", "olmoe", "deepseek_v3", "deepseek_v3_nolora", "deepseek_v3_yarn"]


def find_moekit(given: str | None) -> Path:
    candidates = [Path(given)] if given else [ROOT / d / "debug" / "moekit" for d in (".build", ".build-store")]
    for c in candidates:
        if c.is_file():
            return c
    sys.exit(f"moekit executable not found (tried {', '.join(map(str, candidates))}); run `swift build` or pass --moekit")


def export(moekit: Path, family: str, work: Path, source: Path | None = None) -> Path:
    store, out = work / f"{family}.store", work / family
    for args in (["import", "--model", str(source or FIXTURES / family), "--store", str(store)],
                 ["export", "--store", str(store), "--out", str(out)]):
        subprocess.run([str(moekit), *args], check=True, stdout=subprocess.DEVNULL)
    return out


def load(folder: Path, family: str):
    model, info = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32, attn_implementation="eager",
                                                       experts_implementation="eager", output_loading_info=True)
    # A tensor missing from the export would be silently initialised at random.
    problems = {k: v for k, v in info.items() if v and k in ("missing_keys", "unexpected_keys", "mismatched_keys")}
    if problems:
        sys.exit(f"{family}: the exported checkpoint does not load cleanly: {problems}")
    return model.eval()


def logits_of(model, ids: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return model(input_ids=ids[None], use_cache=False).logits[0].float()


def max_abs_diff(folder: Path, family: str) -> tuple[float, bool]:
    reference = load_file(str(FIXTURES / family / "reference.safetensors"))
    logits = logits_of(load(folder, family), reference["input_ids"])
    same_argmax = bool((logits.argmax(-1) == reference["logits"].argmax(-1)).all())
    return (logits - reference["logits"]).abs().max().item(), same_argmax


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--moekit", help="path to the moekit executable")
    parser.add_argument("--family", action="append", choices=FAMILIES, help="fixture family (repeatable; default all)")
    parser.add_argument("--checkpoint", help="round-trip this checkpoint folder instead of the fixtures")
    parser.add_argument("--tolerance", type=float, default=1e-5)
    args = parser.parse_args()
    torch.set_num_threads(1)
    moekit = find_moekit(args.moekit)
    if args.checkpoint:
        source = Path(args.checkpoint).resolve()
        with tempfile.TemporaryDirectory(prefix="moekit-check-export-") as tmp:
            exported = export(moekit, source.name, Path(tmp), source)
            original, copy = load(source, source.name), load(exported, source.name)
            ids = torch.randint(0, original.config.vocab_size, (64,), generator=torch.Generator().manual_seed(0))
            a, b = logits_of(original, ids), logits_of(copy, ids)
            diff = (a - b).abs().max().item()
            same = bool((a.argmax(-1) == b.argmax(-1)).all())
            print(f"{source.name:20s} max |export - original| = {diff:.3e}  argmax {'same' if same else 'DIFFERS'}")
            return 0 if diff <= args.tolerance and same else 1
    failed = False
    with tempfile.TemporaryDirectory(prefix="moekit-check-export-") as tmp:
        for family in args.family or FAMILIES:
            diff, same_argmax = max_abs_diff(export(moekit, family, Path(tmp)), family)
            ok = diff <= args.tolerance and same_argmax
            failed |= not ok
            print(f"{family:20s} max |logit - reference| = {diff:.3e}  argmax {'same' if same_argmax else 'DIFFERS'}  {'ok' if ok else 'FAIL'}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
