#!/usr/bin/env python3
"""Write calib/<domain>/calib.jsonl and calib/<domain>/heldout.jsonl from the corpus splits.

calib.jsonl   : --calib-samples chunks (default 96) of 256..~420 tokens, cut at line
                boundaries, from the *calib* split documents (seeded choice, round-robin
                over documents so that no single document dominates).
heldout.jsonl : chunks of at most ~512 tokens, cut at line boundaries, from the *heldout*
                split documents, in document order, until the file holds between
                --heldout-min and --heldout-max tokens (default 110k..130k).
Token counts use models/moekit-tiny/tokenizer.json, each chunk tokenized on its own
(no special tokens). One {"text": ...} per line. Stats go to calib/stats.json.

Usage:
  python tools/corpus/make_calib.py --corpus work-data/corpus --tokenizer models/moekit-tiny/tokenizer.json --out calib
"""
import argparse
import json
import os
import random

from tokenizers import Tokenizer

DOMAINS = ["python", "c", "swift", "english", "german", "french", "math"]


def chunk_doc(tok, text, target, hard_max, min_tokens):
    """Cut text into chunks of about `target` tokens (<= hard_max), ending at a newline."""
    enc = tok.encode(text)
    offs = enc.offsets
    n = len(offs)
    chunks, i, cur_char = [], 0, 0
    while i < n:
        j = min(n, i + target)
        if j < n:
            # extend to the first token containing a newline, up to hard_max tokens
            k = j
            while k < min(n, i + hard_max) and "\n" not in text[offs[k - 1][0]:offs[k - 1][1]]:
                k += 1
            if k < min(n, i + hard_max):
                j = k
            else:
                # back off instead: last newline after min_tokens
                k = j
                while k > i + min_tokens and "\n" not in text[offs[k - 1][0]:offs[k - 1][1]]:
                    k -= 1
                j = k if k > i + min_tokens else min(n, i + target)
        if j < n:
            a, b = offs[j - 1]
            nl = text[a:b].rfind("\n")
            end_char = a + nl + 1 if nl >= 0 else b
        else:
            end_char = len(text)
        # cut right after the newline, so the next chunk starts at the beginning of a line
        chunks.append(text[cur_char:end_char])
        cur_char = end_char
        i = j
    out = []
    for c in chunks:
        c = c.lstrip("\n").rstrip() + "\n"
        m = len(tok.encode(c).ids)
        out.append((c, m))
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--corpus", default="work-data/corpus")
    ap.add_argument("--tokenizer", default="models/moekit-tiny/tokenizer.json")
    ap.add_argument("--out", default="calib")
    ap.add_argument("--seed", type=int, default=1234)
    ap.add_argument("--calib-samples", type=int, default=96)
    ap.add_argument("--heldout-min", type=int, default=110_000)
    ap.add_argument("--heldout-max", type=int, default=130_000)
    args = ap.parse_args()
    tok = Tokenizer.from_file(args.tokenizer)
    stats = {}
    for d in DOMAINS:
        rng = random.Random(f"{args.seed}-calib-{d}")
        os.makedirs(os.path.join(args.out, d), exist_ok=True)
        # ---- calib
        docs = [json.loads(l)["text"] for l in open(os.path.join(args.corpus, d, "calib.jsonl"))]
        per_doc = []
        for t in docs:
            cs = [(c, m) for c, m in chunk_doc(tok, t, 340, 420, 256) if m >= 256]
            rng.shuffle(cs)
            if cs:
                per_doc.append(cs)
        rng.shuffle(per_doc)
        calib = []
        while len(calib) < args.calib_samples and any(per_doc):
            for cs in per_doc:
                if cs and len(calib) < args.calib_samples:
                    calib.append(cs.pop())
        assert len(calib) >= 64, (d, len(calib))
        with open(os.path.join(args.out, d, "calib.jsonl"), "w") as f:
            for c, _ in calib:
                f.write(json.dumps({"text": c}, ensure_ascii=False) + "\n")
        # ---- heldout
        docs = [json.loads(l)["text"] for l in open(os.path.join(args.corpus, d, "heldout.jsonl"))]
        held, total = [], 0
        for t in docs:
            for c, m in chunk_doc(tok, t, 480, 512, 128):
                if m < 16:
                    continue
                if total + m > args.heldout_max:
                    continue
                held.append((c, m))
                total += m
            if total >= args.heldout_min:
                break
        assert total >= 100_000, (d, total)
        with open(os.path.join(args.out, d, "heldout.jsonl"), "w") as f:
            for c, _ in held:
                f.write(json.dumps({"text": c}, ensure_ascii=False) + "\n")
        cm = [m for _, m in calib]
        stats[d] = {"calib_samples": len(calib), "calib_tokens": sum(cm), "calib_min_tokens": min(cm),
                    "calib_max_tokens": max(cm), "heldout_lines": len(held), "heldout_tokens": total,
                    "calib_bytes": os.path.getsize(os.path.join(args.out, d, "calib.jsonl")),
                    "heldout_bytes": os.path.getsize(os.path.join(args.out, d, "heldout.jsonl"))}
        print(d, stats[d])
    with open(os.path.join(args.out, "stats.json"), "w") as f:
        json.dump(stats, f, indent=1)


if __name__ == "__main__":
    main()
