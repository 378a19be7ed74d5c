#!/usr/bin/env python3
"""Reference fixtures for the Swift parity tests of moekit-tiny.

Writes into --out (default Tests/Fixtures/moekit-tiny):
  reference.safetensors : input_ids (int64 [T]) = tokenizer ids of a prefix (~48 tokens) of the
                          first line of calib/german/heldout.jsonl (no special tokens, no BOS),
                          logits (float32 [T, vocab]) from one forward pass of the committed BF16
                          model loaded in float32 with transformers (eager attention).
  reference.json        : {"text", "input_ids", "transformers", "torch", ...}; encode(text) == input_ids.
  tokenizer_reference.json : [{"domain", "text", "ids"}] for 3 held-out snippets per domain
                          (<= 400 chars each; seeded choice of line and length).

Usage:
  python tools/train/make_reference.py --model models/moekit-tiny --calib calib --out Tests/Fixtures/moekit-tiny
"""
import argparse
import json
import os
import random

import torch
from safetensors.torch import save_file

DOMAINS = ["python", "c", "swift", "english", "german", "french", "math"]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="models/moekit-tiny")
    ap.add_argument("--calib", default="calib")
    ap.add_argument("--out", default="Tests/Fixtures/moekit-tiny")
    ap.add_argument("--tokens", type=int, default=48)
    ap.add_argument("--seed", type=int, default=1234)
    args = ap.parse_args()
    torch.set_num_threads(1)
    import transformers
    from tokenizers import Tokenizer
    from transformers import Qwen3MoeForCausalLM
    tok = Tokenizer.from_file(os.path.join(args.model, "tokenizer.json"))
    os.makedirs(args.out, exist_ok=True)

    with open(os.path.join(args.calib, "german", "heldout.jsonl")) as f:
        line = json.loads(f.readline())["text"]
    ids = tok.encode(line).ids
    n = args.tokens
    while True:  # a prefix whose re-encoding gives exactly the same ids
        text = tok.decode(ids[:n])
        if tok.encode(text).ids == ids[:n]:
            break
        n -= 1
    ids = ids[:n]

    model = Qwen3MoeForCausalLM.from_pretrained(args.model, dtype=torch.float32, attn_implementation="eager")
    model.eval()
    with torch.no_grad():
        logits = model(input_ids=torch.tensor([ids])).logits[0].float().contiguous()
    save_file({"input_ids": torch.tensor(ids, dtype=torch.int64), "logits": logits},
              os.path.join(args.out, "reference.safetensors"),
              metadata={"model": "moekit-tiny", "dtype_on_disk": "bfloat16", "compute": "float32"})
    top = logits.argmax(-1).tolist()
    meta = {"text": text, "input_ids": ids, "transformers": transformers.__version__, "torch": torch.__version__,
            "model": "models/moekit-tiny (BF16 on disk, loaded as float32)",
            "source": "calib/german/heldout.jsonl line 1, first tokens",
            "attn_implementation": "eager", "bos_prepended": False,
            "logits_shape": list(logits.shape), "argmax_next_ids": top}
    with open(os.path.join(args.out, "reference.json"), "w") as f:
        json.dump(meta, f, indent=1, ensure_ascii=False)

    rng = random.Random(args.seed)
    refs = []
    for d in DOMAINS:
        with open(os.path.join(args.calib, d, "heldout.jsonl")) as f:
            lines = [json.loads(l)["text"] for l in f]
        for _ in range(3):
            t = rng.choice(lines)
            s = rng.randrange(0, max(1, len(t) - 400))
            ln = rng.randint(80, 400)
            snip = t[s:s + ln]
            refs.append({"domain": d, "text": snip, "ids": tok.encode(snip).ids})
    with open(os.path.join(args.out, "tokenizer_reference.json"), "w") as f:
        json.dump(refs, f, indent=1, ensure_ascii=False)
    print(f"reference: {len(ids)} tokens, text {text!r}")
    print(f"tokenizer_reference: {len(refs)} snippets")


if __name__ == "__main__":
    main()
