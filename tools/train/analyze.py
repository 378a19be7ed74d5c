#!/usr/bin/env python3
"""Evaluate a saved moekit-tiny checkpoint (BF16 on disk, evaluated in float32).

1. Held-out perplexity per domain over calib/<domain>/heldout.jsonl: whole lines, in file
   order, until >= --ppl-tokens tokens per domain. Each line is tokenized on its own,
   prefixed with <|endoftext|> (id 0), and every token of the line is predicted
   (ppl = exp(mean NLL over those tokens)).
2. Routing: per layer, the frequency of each expert among the top-k slots (softmax over
   the router logits, top-k, as in the model) per domain on calib/<domain>/calib.jsonl
   (no prefix token). Jensen-Shannon divergence in bits between domains per layer.
3. Load balance: per layer, the largest expert share of top-k slots on the training mix
   (uniform over the 7 domains: --mix-windows random 256-token windows per domain from the
   tokenized train split in work-data; falls back to the calib files if absent), as a
   multiple of the even share 1/E.
4. Greedy continuations (40 new tokens) of a few prompts, for comparison with the Swift CLI.

Writes <model>/analysis.json and prints markdown tables.

Usage:
  python tools/train/analyze.py --model models/moekit-tiny --calib calib --threads 1
"""
import argparse
import json
import math
import os
import random
import time

import numpy as np
import torch
import torch.nn.functional as F

DOMAINS = ["python", "c", "swift", "english", "german", "french", "math"]
PROMPTS = ["def fibonacci(", "Die Datei"]


def jsd_bits(p, q):
    p = np.asarray(p, dtype=np.float64); q = np.asarray(q, dtype=np.float64)
    p = p / p.sum(); q = q / q.sum(); m = 0.5 * (p + q)

    def kl(a, b):
        mask = a > 0
        return float((a[mask] * np.log2(a[mask] / b[mask])).sum())
    return 0.5 * kl(p, m) + 0.5 * kl(q, m)


def read_lines(path):
    with open(path) as f:
        return [json.loads(l)["text"] for l in f]


@torch.no_grad()
def route_counts(model, ids_list, E, k, L):
    counts = np.zeros((L, E), dtype=np.int64)
    for ids in ids_list:
        out = model(input_ids=torch.tensor([ids]), output_router_logits=True)
        for l, lg in enumerate(out.router_logits):
            idx = lg.float().softmax(-1).topk(k, dim=-1).indices.reshape(-1)
            counts[l] += np.bincount(idx.numpy(), minlength=E)
    return counts


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="models/moekit-tiny")
    ap.add_argument("--calib", default="calib")
    ap.add_argument("--train-tokens", default="work-data/train/tokens")
    ap.add_argument("--ppl-tokens", type=int, default=30_000)
    ap.add_argument("--mix-windows", type=int, default=16)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--seed", type=int, default=1234)
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    from tokenizers import Tokenizer
    from transformers import Qwen3MoeForCausalLM
    tok = Tokenizer.from_file(os.path.join(args.model, "tokenizer.json"))
    model = Qwen3MoeForCausalLM.from_pretrained(args.model, dtype=torch.float32)
    model.eval()
    cfg = model.config
    E, k, L = cfg.num_experts, cfg.num_experts_per_tok, cfg.num_hidden_layers
    res = {"model": args.model, "ppl": {}, "nll": {}, "ppl_tokens": {}}
    t0 = time.time()

    # 1. perplexity
    with torch.no_grad():
        for d in DOMAINS:
            tot, n = 0.0, 0
            for text in read_lines(os.path.join(args.calib, d, "heldout.jsonl")):
                ids = [0] + tok.encode(text).ids
                x = torch.tensor([ids])
                lg = model(input_ids=x[:, :-1]).logits[0].float()
                tot += F.cross_entropy(lg, x[0, 1:], reduction="sum").item()
                n += len(ids) - 1
                if n >= args.ppl_tokens:
                    break
            res["nll"][d] = tot / n
            res["ppl"][d] = math.exp(tot / n)
            res["ppl_tokens"][d] = n
    print(f"ppl done in {time.time() - t0:.0f}s")

    # 2. routing per domain on calib
    counts = {}
    for d in DOMAINS:
        ids_list = [tok.encode(t).ids for t in read_lines(os.path.join(args.calib, d, "calib.jsonl"))]
        counts[d] = route_counts(model, ids_list, E, k, L)
    res["route_freq"] = {d: (counts[d] / counts[d].sum(1, keepdims=True)).round(5).tolist() for d in DOMAINS}
    pairs = [("python", "english"), ("python", "german"), ("python", "french"), ("c", "english"),
             ("swift", "english"), ("math", "english"), ("math", "python"),
             ("python", "c"), ("python", "swift"), ("english", "german"), ("german", "french")]
    res["jsd_bits"] = {f"{a}-{b}": [jsd_bits(counts[a][l], counts[b][l]) for l in range(L)] for a, b in pairs}
    code, nl = ["python", "c", "swift"], ["english", "german", "french"]
    res["jsd_code_vs_nl_mean"] = [float(np.mean([jsd_bits(counts[a][l], counts[b][l]) for a in code for b in nl]))
                                  for l in range(L)]
    res["jsd_within_group_mean"] = [float(np.mean(
        [jsd_bits(counts[a][l], counts[b][l]) for g in (code, nl) for i, a in enumerate(g) for b in g[i + 1:]]))
        for l in range(L)]
    res["top_experts"] = {d: [np.argsort(-counts[d][l])[:3].tolist() for l in range(L)] for d in DOMAINS}
    calib_mix = sum(counts[d] / counts[d].sum(1, keepdims=True) for d in DOMAINS) / len(DOMAINS)
    res["max_share_x_even_calib_mix"] = [float(calib_mix[l].max() * E) for l in range(L)]

    # 3. load balance on the training mix
    rng = random.Random(args.seed)
    mix_ids, src = [], "calib"
    if os.path.isdir(args.train_tokens) and all(
            os.path.exists(os.path.join(args.train_tokens, f"{d}.train.npy")) for d in DOMAINS):
        src = f"train split, {args.mix_windows} random 256-token windows per domain"
        for d in DOMAINS:
            arr = np.load(os.path.join(args.train_tokens, f"{d}.train.npy"))
            for _ in range(args.mix_windows):
                s = rng.randrange(0, len(arr) - 257)
                mix_ids.append(arr[s:s + 256].astype(np.int64).tolist())
        mix = route_counts(model, mix_ids, E, k, L)
        mix = mix / mix.sum(1, keepdims=True)
    else:
        mix = calib_mix
    res["mix_source"] = src
    res["max_share_x_even_train_mix"] = [float(mix[l].max() * E) for l in range(L)]
    res["argmax_expert_train_mix"] = [int(mix[l].argmax()) for l in range(L)]
    res["min_share_x_even_train_mix"] = [float(mix[l].min() * E) for l in range(L)]

    # 4. greedy continuations
    res["greedy"] = {}
    with torch.no_grad():
        for p in PROMPTS:
            ids = tok.encode(p).ids
            out = model.generate(torch.tensor([ids]), max_new_tokens=40, do_sample=False,
                                 eos_token_id=0, pad_token_id=0)
            new = out[0, len(ids):].tolist()
            res["greedy"][p] = {"prompt_ids": ids, "new_ids": new, "text": tok.decode(new)}

    out_path = args.out or os.path.join(args.model, "analysis.json")
    with open(out_path, "w") as f:
        json.dump(res, f, indent=1, ensure_ascii=False)

    # markdown
    print("\n| domain | " + " | ".join(DOMAINS) + " |\n|---|" + "---|" * len(DOMAINS))
    print("| held-out NLL (nats/token) | " + " | ".join(f"{res['nll'][d]:.3f}" for d in DOMAINS) + " |")
    print("| held-out perplexity | " + " | ".join(f"{res['ppl'][d]:.1f}" for d in DOMAINS) + " |")
    print("| tokens evaluated | " + " | ".join(f"{res['ppl_tokens'][d]:,}" for d in DOMAINS) + " |")
    print("\n| layer | JSD python–english (bits) | JSD python–german | JSD python–french | mean code–NL | mean within-group | max expert share on train mix (× even) | min share (× even) |")
    print("|---|---|---|---|---|---|---|---|")
    for l in range(L):
        print(f"| {l} | {res['jsd_bits']['python-english'][l]:.3f} | {res['jsd_bits']['python-german'][l]:.3f} | "
              f"{res['jsd_bits']['python-french'][l]:.3f} | {res['jsd_code_vs_nl_mean'][l]:.3f} | "
              f"{res['jsd_within_group_mean'][l]:.3f} | {res['max_share_x_even_train_mix'][l]:.2f} | "
              f"{res['min_share_x_even_train_mix'][l]:.2f} |")
    print("\nother pairs (bits per layer):")
    for kk, v in res["jsd_bits"].items():
        print(f"  {kk}: " + ", ".join(f"{x:.3f}" for x in v))
    print("\ntop-3 experts per layer:")
    for d in DOMAINS:
        print(f"  {d}: {res['top_experts'][d]}")
    for p, g in res["greedy"].items():
        print(f"\n{p!r} -> {g['text']!r}")
    print(f"\ntotal {time.time() - t0:.0f}s")


if __name__ == "__main__":
    main()
