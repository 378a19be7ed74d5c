#!/usr/bin/env python3
"""Print the markdown tables of the model card from train_log.csv, eval_log.csv and analysis.json.

Usage: python tools/train/card_tables.py --model models/moekit-tiny
"""
import argparse
import csv
import json
import math
import os

DOMAINS = ["python", "c", "swift", "english", "german", "french", "math"]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="models/moekit-tiny")
    ap.add_argument("--points", type=int, default=10)
    args = ap.parse_args()
    rows = list(csv.DictReader(open(os.path.join(args.model, "train_log.csv"))))
    print("| step | tokens seen | CPU s | lr | training loss (CE, mean of 10 steps) | balance loss (mean of the 4 layers' b_l, unweighted; 1.0 = even) |")
    print("|---|---|---|---|---|---|")
    n = len(rows)
    idx = sorted({0} | {round(i * (n - 1) / (args.points - 1)) for i in range(args.points)})
    for i in idx:
        r = rows[i]
        print(f"| {r['step']} | {int(r['tokens']):,} | {float(r['cpu_s']):.0f} | {float(r['lr']):.2e} | {float(r['ce']):.3f} | {float(r['aux']):.3f} |")
    ev = list(csv.DictReader(open(os.path.join(args.model, "eval_log.csv"))))
    print("\n| step | tokens seen | " + " | ".join(DOMAINS) + " |")
    print("|---|---|" + "---|" * len(DOMAINS))
    for r in ev:
        print(f"| {r['step']} | {int(r['tokens']):,} | " + " | ".join(f"{float(r[d]):.3f}" for d in DOMAINS) + " |")
    p = os.path.join(args.model, "analysis.json")
    if os.path.exists(p):
        a = json.load(open(p))
        print("\n| | " + " | ".join(DOMAINS) + " |\n|---|" + "---|" * len(DOMAINS))
        print("| NLL (nats/token) | " + " | ".join(f"{a['nll'][d]:.3f}" for d in DOMAINS) + " |")
        print("| perplexity | " + " | ".join(f"{a['ppl'][d]:.1f}" for d in DOMAINS) + " |")
        print("| tokens | " + " | ".join(f"{a['ppl_tokens'][d]:,}" for d in DOMAINS) + " |")
        L = len(a["max_share_x_even_train_mix"])
        print("\n| layer | JSD python–english | JSD python–german | JSD python–french | mean code–NL (9 pairs) | mean within-group (6 pairs) | max expert share, training mix (× even) | same, calib mix | min share (× even) |")
        print("|---|---|---|---|---|---|---|---|---|")
        for l in range(L):
            print(f"| {l} | {a['jsd_bits']['python-english'][l]:.3f} | {a['jsd_bits']['python-german'][l]:.3f} | "
                  f"{a['jsd_bits']['python-french'][l]:.3f} | {a['jsd_code_vs_nl_mean'][l]:.3f} | "
                  f"{a['jsd_within_group_mean'][l]:.3f} | {a['max_share_x_even_train_mix'][l]:.2f} | "
                  f"{a['max_share_x_even_calib_mix'][l]:.2f} | {a['min_share_x_even_train_mix'][l]:.2f} |")
        print("\n| pair | " + " | ".join(f"layer {l}" for l in range(L)) + " |\n|---|" + "---|" * L)
        for k, v in a["jsd_bits"].items():
            print(f"| {k} | " + " | ".join(f"{x:.3f}" for x in v) + " |")
        print("\n| domain | " + " | ".join(f"layer {l}" for l in range(L)) + " |\n|---|" + "---|" * L)
        for d in DOMAINS:
            print(f"| {d} | " + " | ".join(", ".join(map(str, t)) for t in a["top_experts"][d]) + " |")


if __name__ == "__main__":
    main()
