"""Markdown tables of one llama-compare run (called by run.sh; medians over rounds).

Reads RUN/round-*/{readbw.json, SHAPE-PLAN.moekit.json, SHAPE-FORMAT.llama.json} and the GGUF
files, and prints per shape: speeds side by side, bytes read per generated token, and the
read-bandwidth bound (bandwidth / bytes per token) with decode as a fraction of it.

GGUF bytes per token are counted the way `moekit bench` counts its own: every non-expert tensor
once (attention, router, norms, output head), the token embedding as one row when the head is
untied (a lookup reads one row) and whole when it is tied (it is the head), and top_k/n_experts
of the stacked expert tensors.
"""
import argparse
import glob
import json
import os
import statistics

from gguf import GGUFReader  # the converter's own gguf-py, on PYTHONPATH

PAIRS = [("bf16", "full", "BF16"), ("q8_0", "q8g64", "Q8_0"), ("q4_0", "q4g32", "Q4_0"), ("q4_k_m", "q4g64", "Q4_K_M")]


def median(values):
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def load(path):
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def field_value(reader, key):
    field = reader.fields.get(key)
    if field is None:
        return None
    return field.parts[field.data[0]].tolist()[0]


def gguf_bytes_per_token(path):
    reader = GGUFReader(path)
    arch = bytes(reader.fields["general.architecture"].parts[-1]).decode()
    n_experts = field_value(reader, f"{arch}.expert_count")
    top_k = field_value(reader, f"{arch}.expert_used_count")
    names = {t.name for t in reader.tensors}
    tied = "output.weight" not in names
    dense = experts = 0
    for t in reader.tensors:
        n = int(t.n_bytes)
        if "_exps" in t.name:
            experts += n
        elif t.name == "token_embd.weight" and not tied:
            rows = int(t.shape[-1])  # gguf-py lists shapes innermost first: [hidden, vocab]
            dense += n // rows
        else:
            dense += n
    per_token = dense + experts * top_k / n_experts if n_experts else dense + experts
    return per_token, os.path.getsize(path)


def fmt_rate(x):
    return "-" if x is None else f"{x:.1f}"


def fmt_ratio(a, b):
    return "-" if a is None or b is None or b == 0 else f"{a / b:.2f}"


def fmt_range(values):
    return f"{min(values):.1f}-{max(values):.1f}" if values else "-"


def fmt_mb(x):
    return "-" if x is None else f"{x / 1e6:.1f} MB"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--run", required=True)
    ap.add_argument("--gguf", required=True)
    ap.add_argument("--shapes", required=True)
    ap.add_argument("--prompt", type=int, default=128)
    ap.add_argument("--gen", type=int, default=32)
    args = ap.parse_args()
    rounds = sorted(glob.glob(os.path.join(args.run, "round-*")), key=lambda p: int(p.rsplit("-", 1)[1]))
    meta = {}
    meta_path = os.path.join(args.run, "meta.txt")
    if os.path.exists(meta_path):
        for line in open(meta_path):
            key, _, value = line.rstrip("\n").partition("=")
            meta[key] = value

    bandwidths, round_lines = [], []
    for r in rounds:
        bw = load(os.path.join(r, "readbw.json"))
        if bw:
            bandwidths.append(bw["best_gbps"])
        loads = []
        for name in ("load-start.txt", "load-end.txt"):
            try:
                loads.append(open(os.path.join(r, name)).read().strip())
            except OSError:
                loads.append("?")
        round_lines.append(f"{os.path.basename(r)}: read bandwidth {bw['best_gbps']:.1f} GB/s, "
                           f"1-minute load average {loads[0]} at the start, {loads[1]} at the end"
                           if bw else f"{os.path.basename(r)}: no bandwidth measured")
    bandwidth = median(bandwidths)

    pp, tg = f"pp{args.prompt}", f"tg{args.gen}"
    out = ["# MoEKit vs llama.cpp", ""]
    out.append(f"CPU {meta.get('cpu', '?')}, {meta.get('threads', '?')} threads, {len(rounds)} interleaved rounds "
               f"(medians), each test repeated 3 times per round. llama.cpp from {meta.get('llama_cpp_python', '?')}, "
               f"built with {meta.get('isa', '?')}; MoEKit: {meta.get('moekit', '?')}.")
    if bandwidth is not None:
        spread = f"{min(bandwidths):.1f}-{max(bandwidths):.1f}"
        out.append(f"Read bandwidth {bandwidth:.1f} GB/s (median of the rounds' best passes, {spread}); "
                   "bound = bandwidth / bytes read per generated token.")
    out.append("Random weights: the speeds depend on shapes and formats, not on what the model says.")
    out.append("")
    out.extend(f"- {line}" for line in round_lines)
    out.append("")

    for shape in args.shapes.split():
        out.append(f"## {shape}")
        out.append("")
        out.append(f"| format (MoEKit / GGUF) | MoEKit {pp} t/s | llama {pp} t/s | ratio | MoEKit {tg} t/s | llama {tg} t/s | ratio "
                   "| MoEKit bytes/token | GGUF bytes/token | MoEKit bound t/s | llama bound t/s | MoEKit tg/bound | llama tg/bound |")
        out.append("|---|" + "---:|" * 12)
        sizes = []
        for fmt, plan, label in PAIRS:
            m_pp, m_tg, l_pp, l_tg, m_bytes, m_weights = [], [], [], [], [], []
            for r in rounds:
                for row in load(os.path.join(r, f"{shape}-{plan}.moekit.json")) or []:
                    if row.get("test") == pp:
                        m_pp.append(row["tokensPerSecond"])
                    elif row.get("test") == tg:
                        m_tg.append(row["tokensPerSecond"])
                        m_bytes.append(row["bytesPerGeneratedToken"])
                        m_weights.append(row["denseBytes"] + row["expertBytes"])
                for row in load(os.path.join(r, f"{shape}-{fmt}.llama.json")) or []:
                    if row.get("n_prompt") == args.prompt and row.get("n_gen") == 0:
                        l_pp.append(row["avg_ts"])
                    elif row.get("n_prompt") == 0 and row.get("n_gen") == args.gen:
                        l_tg.append(row["avg_ts"])
            gguf_path = os.path.join(args.gguf, f"{shape}-{fmt}.gguf")
            g_bytes, g_file = gguf_bytes_per_token(gguf_path) if os.path.exists(gguf_path) else (None, None)
            mpp, mtg, lpp, ltg, mb = median(m_pp), median(m_tg), median(l_pp), median(l_tg), median(m_bytes)
            m_bound = bandwidth * 1e9 / mb if bandwidth and mb else None
            l_bound = bandwidth * 1e9 / g_bytes if bandwidth and g_bytes else None
            out.append(f"| {plan} / {label} | {fmt_rate(mpp)} | {fmt_rate(lpp)} | {fmt_ratio(mpp, lpp)} "
                       f"| {fmt_rate(mtg)} | {fmt_rate(ltg)} | {fmt_ratio(mtg, ltg)} "
                       f"| {fmt_mb(mb)} | {fmt_mb(g_bytes)} | {fmt_rate(m_bound)} | {fmt_rate(l_bound)} "
                       f"| {fmt_ratio(mtg, m_bound)} | {fmt_ratio(ltg, l_bound)} |")
            sizes.append((plan, label, median(m_weights), g_file, m_tg, l_tg))
        out.append("")
        out.append(f"| format (MoEKit / GGUF) | MoEKit weights (dense + experts) | GGUF file "
                   f"| MoEKit {tg} over rounds | llama {tg} over rounds | rounds measured (MoEKit, llama) |")
        out.append("|---|---:|---:|---:|---:|---:|")
        for plan, label, mw, gf, mt, lt in sizes:
            out.append(f"| {plan} / {label} | {fmt_mb(mw)} | {fmt_mb(gf)} | {fmt_range(mt)} | {fmt_range(lt)} "
                       f"| {len(mt)}, {len(lt)} |")
        out.append("")
    print("\n".join(out))


if __name__ == "__main__":
    main()
