#!/usr/bin/env python3
"""Independent reference for MoEKit's routing-profiler criteria, computed with transformers
forward hooks (Qwen3-MoE / Qwen3MoeForCausalLM).

Usage:
  profile_reference.py --model DIR (--calib FILE.jsonl | --ids FILE.json)
                       [--max-samples N] [--max-tokens-per-sample M] --out OUT.json
  profile_reference.py --write-random-ids FILE.json --lengths 20,33,17 --seed S --low 1 --high 512

Each sample is its own forward pass (batch 1, no padding, no BOS, positions 0..len-1), model in
float32 (dtype=torch.float32, attn_implementation="eager", experts_implementation="eager"),
eval(), no_grad().

Hooks per MoE decoder layer:
  * forward pre-hook on `post_attention_layernorm`: its input = residual stream h entering the
    MoE block;
  * forward hook on `mlp` (Qwen3MoeSparseMoeBlock): its input x (the normed h) and its output
    y_model (routed output; Qwen3-MoE has no shared expert).

Everything is then recomputed in FLOAT64 from the module's own (float32) weights and the captured
float32 x: z = x·W_gateᵀ, p = softmax(z), top-k of p (torch.topk, sorted, largest first),
g = p_top / Σ p_top if norm_topk_prob else p_top, E_j(x) = down_j(silu(gate_j·x) * up_j·x),
y = Σ g·E_j. The float64 selection is asserted identical to a float32 recomputation done exactly
like the module (F.linear + float softmax + topk), and y is asserted equal to y_model.
All sums/means/maxima are float64. Output floats are written with Python's shortest round-trip
repr (no rounding).
"""
import argparse
import json
import math
import os
import sys

import numpy as np
import torch
import torch.nn.functional as F

torch.set_num_threads(1)

DENSE_STRIDE = 16
Y_TOLERANCE = 1e-5


def write_random_ids(path, lengths, seed, low, high):
    rng = np.random.default_rng(seed)
    seqs = [[int(v) for v in rng.integers(low, high, size=n)] for n in lengths]
    with open(path, "w") as f:
        json.dump(seqs, f)
        f.write("\n")
    print(f"wrote {path}: lengths {lengths}, seed {seed}, ids in [{low}, {high})")


def load_sequences(args):
    if args.ids:
        with open(args.ids) as f:
            seqs = json.load(f)
        seqs = [[int(t) for t in s] for s in seqs]
        if args.max_samples:
            seqs = seqs[: args.max_samples]
        if args.max_tokens_per_sample:
            seqs = [s[: args.max_tokens_per_sample] for s in seqs]
        return seqs
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(os.path.join(args.model, "tokenizer.json"))
    seqs = []
    with open(args.calib) as f:
        for line in f:
            line = line.strip()
            if not line:
                continue
            if args.max_samples and len(seqs) >= args.max_samples:
                break
            text = json.loads(line)["text"]
            ids = tok.encode(text, add_special_tokens=False).ids
            if args.max_tokens_per_sample:
                ids = ids[: args.max_tokens_per_sample]
            if not ids:
                raise SystemExit(f"sample {len(seqs)} tokenizes to no tokens")
            seqs.append([int(t) for t in ids])
    return seqs


def is_moe_block(m):
    return hasattr(m, "gate") and hasattr(m, "experts") and hasattr(m.experts, "gate_up_proj")


def check_fused_layout(model_dir, model, moe_layers):
    """Verify experts.gate_up_proj = [gate; up] rows and down_proj [E, d, f] against the file."""
    from safetensors import safe_open

    files = [f for f in os.listdir(model_dir) if f.endswith(".safetensors")]
    checked = 0
    for fn in files:
        with safe_open(os.path.join(model_dir, fn), "pt") as f:
            keys = set(f.keys())
            for l in moe_layers:
                ex = model.model.layers[l].mlp.experts
                fdim = ex.gate_up_proj.shape[1] // 2
                for e in range(ex.gate_up_proj.shape[0]):
                    base = f"model.layers.{l}.mlp.experts.{e}."
                    if base + "gate_proj.weight" in keys:
                        gp = f.get_tensor(base + "gate_proj.weight").float()
                        up = f.get_tensor(base + "up_proj.weight").float()
                        dp = f.get_tensor(base + "down_proj.weight").float()
                        assert torch.equal(ex.gate_up_proj[e, :fdim], gp), (l, e, "gate")
                        assert torch.equal(ex.gate_up_proj[e, fdim:], up), (l, e, "up")
                        assert torch.equal(ex.down_proj[e], dp), (l, e, "down")
                        checked += 1
                fused = f"model.layers.{l}.mlp.experts.gate_up_proj"
                if fused in keys:
                    assert torch.equal(ex.gate_up_proj, f.get_tensor(fused).float()), (l, "fused gate_up")
                    assert torch.equal(ex.down_proj, f.get_tensor(f"model.layers.{l}.mlp.experts.down_proj").float())
                    checked += ex.gate_up_proj.shape[0]
    return checked


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model")
    ap.add_argument("--calib")
    ap.add_argument("--ids")
    ap.add_argument("--max-samples", type=int, default=0)
    ap.add_argument("--max-tokens-per-sample", type=int, default=0)
    ap.add_argument("--out")
    ap.add_argument("--write-random-ids")
    ap.add_argument("--lengths", default="20,33,17")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--low", type=int, default=1)
    ap.add_argument("--high", type=int, default=512)
    args = ap.parse_args()

    if args.write_random_ids:
        write_random_ids(args.write_random_ids, [int(x) for x in args.lengths.split(",")], args.seed, args.low, args.high)
        return
    if not args.model or not args.out or (bool(args.calib) == bool(args.ids)):
        ap.error("need --model, --out and exactly one of --calib / --ids")

    import transformers
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(
        args.model, dtype=torch.float32, attn_implementation="eager", experts_implementation="eager"
    ).eval()
    cfg = model.config
    seqs = load_sequences(args)

    layers = model.model.layers
    moe_layers = [i for i, layer in enumerate(layers) if is_moe_block(layer.mlp)]
    if not moe_layers:
        raise SystemExit("no MoE layers found")
    layout_checked = check_fused_layout(args.model, model, moe_layers)

    # Capture buffers: per MoE layer, lists over sequences.
    cap = {l: {"h": [], "x": [], "y": [], "pos": [], "idx": [], "w": []} for l in moe_layers}
    handles = []
    for l in moe_layers:
        layer = layers[l]

        def pre_norm(mod, inp, l=l):
            cap[l]["h"].append(inp[0].detach()[0].clone())

        def moe_out(mod, inp, out, l=l):
            cap[l]["x"].append(inp[0].detach()[0].clone())
            o = out[0] if isinstance(out, tuple) else out
            cap[l]["y"].append(o.detach()[0].clone())

        def experts_in(mod, inp, l=l):
            # the model's own routing decision, as handed to the experts: (x, top_k_index, top_k_weights)
            cap[l]["idx"].append(inp[1].detach().clone())
            cap[l]["w"].append(inp[2].detach().clone())

        handles.append(layer.post_attention_layernorm.register_forward_pre_hook(pre_norm))
        handles.append(layer.mlp.experts.register_forward_pre_hook(experts_in))
        handles.append(layer.mlp.register_forward_hook(moe_out))

    with torch.no_grad():
        for ids in seqs:
            model(input_ids=torch.tensor([ids], dtype=torch.long), use_cache=False)
            for l in moe_layers:
                cap[l]["pos"].append(torch.arange(len(ids)))
                cap[l].setdefault("seq", []).append(torch.full((len(ids),), len(cap[l]["seq"])))
    for h in handles:
        h.remove()

    out_layers = []
    max_y_diff = 0.0
    max_y_rel = 0.0
    min_margin = math.inf
    max_gate_diff = 0.0
    min_top1_margin = math.inf
    with torch.no_grad():
        for l in moe_layers:
            mlp = layers[l].mlp
            router = mlp.gate
            ex = mlp.experts
            k = int(router.top_k)
            norm_topk = bool(router.norm_topk_prob)
            E, fdim2, d = ex.gate_up_proj.shape
            fdim = fdim2 // 2
            assert ex.down_proj.shape == (E, d, fdim), ex.down_proj.shape
            assert router.weight.shape == (E, d)
            act = ex.act_fn

            h = torch.cat(cap[l]["h"]).double()  # [T, d]
            x32 = torch.cat(cap[l]["x"])  # float32, exactly what the block received
            y_model = torch.cat(cap[l]["y"]).double()
            pos = torch.cat(cap[l]["pos"])
            T = x32.shape[0]
            x = x32.double()

            # float32 selection exactly as the module does it
            z32 = F.linear(x32, router.weight)
            p32 = torch.softmax(z32, dim=-1, dtype=torch.float)
            _, idx32 = torch.topk(p32, k, dim=-1)

            # float64 recomputation
            W = router.weight.double()
            z = x @ W.T  # [T, E]
            p = torch.softmax(z, dim=-1)
            p_top, idx = torch.topk(p, k, dim=-1, sorted=True, largest=True)
            assert torch.equal(idx, idx32), f"layer {l}: float64 top-k differs from float32 top-k"
            idx_model = torch.cat(cap[l]["idx"])
            w_model = torch.cat(cap[l]["w"]).double()
            assert torch.equal(idx, idx_model), f"layer {l}: top-k differs from the model's own selection"
            ps, _ = torch.sort(p, dim=-1, descending=True)
            kth_margin = ps[:, k - 1] - ps[:, k] if E > k else torch.full((T,), math.inf, dtype=torch.float64)
            top1_margin = ps[:, 0] - ps[:, 1]
            layer_min_margin = float(kth_margin.min())
            layer_min_top1 = float(top1_margin.min())
            near_mask = (kth_margin < 1e-4) | (top1_margin < 1e-4)
            near_ties = int(near_mask.sum())
            seq_of = torch.cat(cap[l]["seq"])
            near_list = [[int(seq_of[t]), int(pos[t]), float(kth_margin[t]), float(top1_margin[t])]
                         for t in near_mask.nonzero()[:, 0].tolist()]
            min_margin = min(min_margin, layer_min_margin)
            min_top1_margin = min(min_top1_margin, layer_min_top1)
            g = p_top / p_top.sum(dim=-1, keepdim=True) if norm_topk else p_top.clone()

            gate_diff = (g - w_model).abs().max().item()
            assert gate_diff <= 1e-6, f"layer {l}: gates differ from the model's by {gate_diff}"
            max_gate_diff = max(max_gate_diff, gate_diff)

            gu = ex.gate_up_proj.double()
            dn = ex.down_proj.double()

            def expert_out(j, rows):
                hidden = rows @ gu[j].T
                gate, up = hidden[:, :fdim], hidden[:, fdim:]
                return (act(gate) * up) @ dn[j].T

            # routed outputs
            y = torch.zeros(T, d, dtype=torch.float64)
            sel = torch.zeros(T, E, dtype=torch.bool)
            sel.scatter_(1, idx, True)
            gate_full = torch.zeros(T, E, dtype=torch.float64).scatter_(1, idx, g)
            score_full = torch.zeros(T, E, dtype=torch.float64).scatter_(1, idx, p_top)
            E_out = {}
            for j in range(E):
                rows = sel[:, j].nonzero()[:, 0]
                if rows.numel() == 0:
                    E_out[j] = (rows, torch.zeros(0, d, dtype=torch.float64))
                    continue
                ej = expert_out(j, x[rows])
                E_out[j] = (rows, ej)
                y.index_add_(0, rows, ej * gate_full[rows, j : j + 1])

            diff = (y - y_model).abs().max().item()
            rel = diff / max(y_model.abs().max().item(), 1e-30)
            max_y_diff = max(max_y_diff, diff)
            max_y_rel = max(max_y_rel, rel)
            scale = max(1.0, y_model.abs().max().item())
            print(f"layer {l}: max|y_recomputed - y_model| = {diff:.3e}, max|y_model| = {y_model.abs().max().item():.4g}", file=sys.stderr)
            assert diff <= Y_TOLERANCE * scale, f"layer {l}: |y_recomputed - y_model| = {diff} (max|y| {scale})"

            # EASY-EP token factor u_t = max(0, 1 - cos(h, h + y))
            hy = h + y
            hn = h.norm(dim=-1)
            hyn = hy.norm(dim=-1)
            dot = (h * hy).sum(dim=-1)
            cos = torch.where((hn > 0) & (hyn > 0), dot / (hn * hyn), torch.ones_like(dot))
            u = torch.clamp(1 - cos, min=0)

            top1 = idx[:, 0]  # largest p (= largest z)
            counts = sel.sum(dim=0).double()
            total_count = counts.sum().item()
            total_score = score_full.sum().item()

            # dense outputs: every expert on tokens with pos % stride == 0
            dense_rows = (pos % DENSE_STRIDE == 0).nonzero()[:, 0]
            dense_mean = []
            for j in range(E):
                if dense_rows.numel() == 0:
                    dense_mean.append([0.0] * d)
                else:
                    dense_mean.append(expert_out(j, x[dense_rows]).mean(dim=0).tolist())

            experts = []
            routed_mean = []
            for j in range(E):
                rows, ej = E_out[j]
                n = rows.numel()
                norms = ej.norm(dim=-1)
                gj = gate_full[rows, j]
                pj = score_full[rows, j]
                mu = ej.mean(dim=0) if n > 0 else torch.zeros(d, dtype=torch.float64)
                routed_mean.append(mu.tolist())
                if n > 1:
                    dev = math.sqrt(float(((ej - mu) ** 2).sum()) / (n - 1))
                else:
                    dev = 0.0
                if n > 0:
                    a = ej.abs()
                    flat = int(a.argmax())  # first occurrence in row-major (token order, then channel)
                    max_abs = float(a.reshape(-1)[flat])
                    max_ch = flat % d
                else:
                    max_abs, max_ch = 0.0, 0
                soft = float(gj.sum())
                ean_sum = float(norms.sum())
                routing = soft / T
                experts.append({
                    "expert": j,
                    "frequency": float(n),
                    "soft_frequency": soft,
                    "ean_sum": ean_sum,
                    "ean": ean_sum / n if n > 0 else 0.0,
                    "reap": float((gj * norms).sum()) / n if n > 0 else 0.0,
                    "reap_raw_score": float((pj * norms).sum()) / n if n > 0 else 0.0,
                    "easy_ep": float((gj * norms * u[rows]).sum()),
                    "tcess": float(z[top1 == j, j].sum()) / T,
                    "mone_routing_score": routing,
                    "mone_deviation": dev,
                    "mone_redundancy": routing * dev,
                    "mcmoe_activation_share": n / total_count if total_count > 0 else 0.0,
                    "mcmoe_score_share": float(pj.sum()) / total_score if total_score > 0 else 0.0,
                    "routed_mean_norm": float(mu.norm()),
                    "max_abs_output": max_abs,
                    "max_abs_output_channel": max_ch,
                    "slot_share": n / (T * k),
                })

            q = counts / total_count
            entropy = float(-(q[q > 0] * torch.log2(q[q > 0])).sum())
            gram = z.T @ z
            dg = torch.sqrt(torch.diagonal(gram))
            den = dg[:, None] * dg[None, :]
            logit_cos = torch.where(den > 0, gram / den, torch.zeros_like(gram))
            s = sel.double()
            co = s.T @ s
            ha = h.abs()
            rflat = int(ha.argmax())

            out_layers.append({
                "layer": l,
                "token_count": T,
                "top_k": k,
                "norm_topk_prob": norm_topk,
                "routing_entropy": entropy,
                "residual_max": float(ha.reshape(-1)[rflat]),
                "residual_max_channel": rflat % d,
                "dense_token_count": int(dense_rows.numel()),
                "max_abs_y_recomputed_minus_model": diff,
                "router_min_margin": layer_min_margin,
                "router_min_top1_margin": layer_min_top1,
                "near_tie_tokens_1e-4": near_ties,
                "near_ties": near_list,
                "logit_cosine": logit_cos.tolist(),
                "co_activation": co.tolist(),
                "dense_output_mean": dense_mean,
                "routed_output_mean": routed_mean,
                "experts": experts,
            })

    result = {
        "model": args.model,
        "model_class": type(model).__name__,
        "transformers": transformers.__version__,
        "torch": torch.__version__,
        "precision": "model forward float32 (eager attention/experts); criteria recomputed in float64 "
                     "from the float32 weights and the captured float32 MoE-block input",
        "sequences": seqs,
        "dense_sample_stride": DENSE_STRIDE,
        "max_abs_y_recomputed_minus_model": max_y_diff,
        "max_rel_y_recomputed_minus_model": max_y_rel,
        "max_abs_gate_recomputed_minus_model": max_gate_diff,
        "router_min_margin": min_margin,
        "router_min_top1_margin": min_top1_margin,
        "fused_layout_checked_experts": layout_checked,
        "layers": out_layers,
    }
    with open(args.out, "w") as f:
        json.dump(result, f)
        f.write("\n")
    print(f"wrote {args.out}: {len(seqs)} sequences, lengths {[len(s) for s in seqs]}, "
          f"MoE layers {moe_layers}; max|y_recomputed - y_model| = {max_y_diff:.3e} "
          f"(rel {max_y_rel:.3e}); max|g - g_model| = {max_gate_diff:.3e}; router min margin (p_k - p_k+1) = {min_margin:.3e}, top-1 margin (p_1 - p_2) = {min_top1_margin:.3e}; "
          f"fused layout checked for {layout_checked} experts")


if __name__ == "__main__":
    main()
