#!/usr/bin/env python3
"""Train moekit-tiny: a small Qwen3-MoE LM (32 experts, top-4) on the 7-domain corpus, on the CPU.

Recipe (see models/moekit-tiny/MODEL_CARD.md):
  - Qwen3MoeForCausalLM from a Qwen3MoeConfig built in code (see make_config()).
  - seq 256, batch 8 (2,048 tokens/step), domain mixing uniform over 7 domains: every
    sequence picks a domain uniformly at random, then a random 257-token window of
    that domain's tokenized train split (documents joined with <|endoftext|>).
  - AdamW lr 2e-3, betas (0.9, 0.95), eps 1e-8, weight decay 0.1 on every parameter with >= 2 dims
    (embeddings, projections, experts, routers), none on 1-D ones (RMSNorm weights), grad clip 1.0.
  - LR schedule: linear warmup over --warmup steps, then cosine decay to 10% of the peak.
    Schedule position = fraction of the CPU-time budget used (process CPU time since
    the training loop started, --minutes); training stops when the budget is used
    (or at a wall-clock cap of --max-wall-minutes). With --steps N the schedule is by
    step fraction instead (exactly reproducible replay: use the step count of a previous run).
  - PER-LAYER Switch load-balancing loss: for every layer l, E * sum_j f_j * P_j
    (f_j = fraction of top-k slots given to expert j, P_j = mean router probability),
    times its layer's coefficient (--aux-coef, or --aux-coef-layers per layer), averaged over layers. HF's own aux loss is off (router_aux_loss_coef=0).
  - Experts: transformers' default experts forward. --fast-experts swaps in a custom loop
    (sort tokens by expert, one matmul per expert; max logit diff 7e-7), which was not
    faster with 1 thread here (1,070 vs 1,130 tok/s), so the default run does not use it.

Usage:
  python tools/train/train.py --corpus work-data/corpus --tokenizer models/moekit-tiny/tokenizer.json \
      --out models/moekit-tiny --work work-data/train --minutes 65 --threads 1 --seed 1234
"""
import argparse
import csv
import json
import math
import os
import random
import sys
import time
import types

import numpy as np
import torch
import torch.nn.functional as F

DOMAINS = ["python", "c", "swift", "english", "german", "french", "math"]


def log(*a):
    print(time.strftime("%H:%M:%S"), *a, flush=True)


def make_config():
    from transformers import Qwen3MoeConfig
    cfg = Qwen3MoeConfig(
        vocab_size=8192,
        hidden_size=256,
        intermediate_size=768,          # unused: every layer is MoE (decoder_sparse_step=1, no mlp_only_layers)
        num_hidden_layers=4,
        num_attention_heads=4,
        num_key_value_heads=2,
        head_dim=64,
        hidden_act="silu",
        max_position_embeddings=1024,
        rms_norm_eps=1e-6,
        tie_word_embeddings=True,
        rope_theta=10000.0,
        attention_bias=False,
        attention_dropout=0.0,
        decoder_sparse_step=1,
        mlp_only_layers=[],
        moe_intermediate_size=256,
        num_experts=32,
        num_experts_per_tok=4,
        norm_topk_prob=True,
        output_router_logits=False,
        router_aux_loss_coef=0.0,
        bos_token_id=0,
        eos_token_id=0,
        pad_token_id=0,
        initializer_range=0.02,
        use_cache=True,
    )
    return cfg


def fast_experts_forward(self, hidden_states, top_k_index, top_k_weights):
    """Sort (token, slot) pairs by expert; one gate_up and one down matmul per expert."""
    T, k = top_k_index.shape
    flat = top_k_index.reshape(-1)
    order = torch.argsort(flat, stable=True)
    tok = order // k
    counts = torch.bincount(flat, minlength=self.num_experts).tolist()
    x = hidden_states[tok]
    gu, dn = self.gate_up_proj.unbind(0), self.down_proj.unbind(0)
    outs, start = [], 0
    for e, c in enumerate(counts):
        if c == 0:
            continue
        g, u = F.linear(x[start:start + c], gu[e]).chunk(2, dim=-1)
        outs.append(F.linear(self.act_fn(g) * u, dn[e]))
        start += c
    y = torch.cat(outs, 0) * top_k_weights.reshape(-1)[order, None].to(hidden_states.dtype)
    return torch.zeros_like(hidden_states).index_add_(0, tok, y)


def patch_experts(model):
    for layer in model.model.layers:
        ex = layer.mlp.experts
        ex.forward = types.MethodType(fast_experts_forward, ex)


def per_layer_balance_loss(router_logits, top_k, num_experts):
    """One Switch balance loss per layer (a tensor of shape [layers])."""
    losses = []
    for lg in router_logits:
        lg = lg.reshape(-1, num_experts).float()
        probs = lg.softmax(-1)
        idx = probs.topk(top_k, dim=-1).indices
        f = torch.zeros(num_experts, device=lg.device).scatter_add_(
            0, idx.reshape(-1), torch.ones(idx.numel(), device=lg.device)) / idx.numel()
        P = probs.mean(0)
        losses.append(num_experts * (f * P).sum())
    return torch.stack(losses)


def tokenize_split(tok_path, corpus, split, cache_dir, max_tokens=None):
    from tokenizers import Tokenizer
    tok = Tokenizer.from_file(tok_path)
    out = {}
    os.makedirs(cache_dir, exist_ok=True)
    for d in DOMAINS:
        p = os.path.join(cache_dir, f"{d}.{split}.npy")
        if os.path.exists(p):
            out[d] = np.load(p)
            continue
        with open(os.path.join(corpus, d, f"{split}.jsonl")) as f:
            texts = [json.loads(l)["text"] for l in f]
        ids = []
        for e in tok.encode_batch(texts):
            ids.extend(e.ids)
            ids.append(0)
            if max_tokens and len(ids) >= max_tokens:
                break
        arr = np.array(ids, dtype=np.uint16)
        np.save(p, arr)
        out[d] = arr
    return out


def sample_batch(rng, data, batch, seq):
    xs, doms = [], []
    for _ in range(batch):
        d = rng.randrange(len(DOMAINS))
        arr = data[DOMAINS[d]]
        s = rng.randrange(0, len(arr) - seq - 1)
        xs.append(torch.from_numpy(arr[s:s + seq + 1].astype(np.int64)))
        doms.append(d)
    return torch.stack(xs), doms


def eval_batches(heldout, batch, seq, n_batches):
    """Fixed, non-overlapping windows from the start of each domain's held-out tokens."""
    res = {}
    for d in DOMAINS:
        arr = heldout[d]
        xs = [torch.from_numpy(arr[i * seq:(i + 1) * seq + 1].astype(np.int64)) for i in range(batch * n_batches)]
        res[d] = [torch.stack(xs[b * batch:(b + 1) * batch]) for b in range(n_batches)]
    return res


@torch.no_grad()
def evaluate(model, ev):
    model.eval()
    res = {}
    for d, bl in ev.items():
        tot, n = 0.0, 0
        for x in bl:
            lg = model(input_ids=x[:, :-1]).logits
            tot += F.cross_entropy(lg.reshape(-1, lg.shape[-1]).float(), x[:, 1:].reshape(-1), reduction="sum").item()
            n += x[:, 1:].numel()
        res[d] = tot / n
    model.train()
    return res


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--corpus", default="work-data/corpus")
    ap.add_argument("--tokenizer", default="models/moekit-tiny/tokenizer.json")
    ap.add_argument("--out", default="models/moekit-tiny")
    ap.add_argument("--work", default="work-data/train")
    ap.add_argument("--minutes", type=float, default=65.0, help="CPU-time budget of the training loop")
    ap.add_argument("--max-wall-minutes", type=float, default=120.0)
    ap.add_argument("--steps", type=int, default=0, help="if >0: schedule and stop by step count instead of time")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--seed", type=int, default=1234)
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--min-lr-frac", type=float, default=0.1)
    ap.add_argument("--warmup", type=int, default=100)
    ap.add_argument("--wd", type=float, default=0.1)
    ap.add_argument("--aux-coef", type=float, default=0.03)
    ap.add_argument("--aux-coef-layers", default="",
                    help="comma-separated balance coefficient per layer (overrides --aux-coef); a lower value in "
                         "the middle layers leaves them room to specialise while the outer layers stay balanced")
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--seq", type=int, default=256)
    ap.add_argument("--log-every", type=int, default=10)
    ap.add_argument("--eval-every-min", type=float, default=5.0)
    ap.add_argument("--ckpt-every-min", type=float, default=10.0)
    ap.add_argument("--fast-experts", action="store_true", help="use the custom sorted experts loop (same math)")
    ap.add_argument("--resume", action="store_true")
    args = ap.parse_args()

    torch.set_num_threads(args.threads)
    try:
        torch.set_num_interop_threads(args.threads)
    except RuntimeError:
        pass
    os.environ.setdefault("RAYON_NUM_THREADS", str(max(1, args.threads)))
    random.seed(args.seed)
    np.random.seed(args.seed)
    torch.manual_seed(args.seed)
    os.makedirs(args.work, exist_ok=True)
    os.makedirs(args.out, exist_ok=True)

    from transformers import Qwen3MoeForCausalLM
    log("tokenizing")
    train = tokenize_split(args.tokenizer, args.corpus, "train", os.path.join(args.work, "tokens"))
    heldout = tokenize_split(args.tokenizer, args.corpus, "heldout", os.path.join(args.work, "tokens"))
    for d in DOMAINS:
        log(f"  {d}: train {len(train[d]):,} tokens, heldout {len(heldout[d]):,} tokens")
    ev = eval_batches(heldout, args.batch, args.seq, 2)

    cfg = make_config()
    if args.aux_coef_layers:
        coefs = [float(c) for c in args.aux_coef_layers.split(",")]
        if len(coefs) != cfg.num_hidden_layers:
            raise SystemExit(f"--aux-coef-layers needs {cfg.num_hidden_layers} values, got {len(coefs)}")
    else:
        coefs = [args.aux_coef] * cfg.num_hidden_layers
    aux_coefs = torch.tensor(coefs)
    log("balance coefficients per layer:", coefs)
    model = Qwen3MoeForCausalLM(cfg)
    model.train()
    if args.fast_experts:
        patch_experts(model)
    nparams = sum(p.numel() for p in model.parameters())
    log(f"params {nparams:,}")
    decay, no_decay = [], []
    for n, p in model.named_parameters():
        (decay if p.dim() >= 2 else no_decay).append(p)
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": args.wd}, {"params": no_decay, "weight_decay": 0.0}],
                            lr=args.lr, betas=(0.9, 0.95), eps=1e-8)
    rng = random.Random(args.seed)
    step, tokens_seen, cpu_used, wall_used = 0, 0, 0.0, 0.0
    ckpt_path = os.path.join(args.work, "ckpt.pt")
    train_log = os.path.join(args.out, "train_log.csv")
    eval_log = os.path.join(args.out, "eval_log.csv")
    if args.resume and os.path.exists(ckpt_path):
        ck = torch.load(ckpt_path, weights_only=False)
        model.load_state_dict(ck["model"])
        opt.load_state_dict(ck["opt"])
        rng.setstate(ck["rng"])
        torch.set_rng_state(ck["torch_rng"])
        step, tokens_seen, cpu_used, wall_used = ck["step"], ck["tokens"], ck["cpu"], ck["wall"]
        log(f"resumed at step {step}")
    else:
        with open(train_log, "w") as f:
            f.write("step,tokens,cpu_s,wall_s,lr,loss,ce,aux\n")
        with open(eval_log, "w") as f:
            f.write("step,tokens,cpu_s," + ",".join(DOMAINS) + ",mean\n")
    budget = args.minutes * 60.0

    def progress():
        if args.steps:
            return step / args.steps
        return cpu_used / budget

    def lr_at():
        if step < args.warmup:
            return args.lr * (step + 1) / args.warmup
        p = min(1.0, progress())
        return args.lr * (args.min_lr_frac + (1 - args.min_lr_frac) * 0.5 * (1 + math.cos(math.pi * p)))

    def write_eval():
        r = evaluate(model, ev)
        with open(eval_log, "a") as f:
            f.write(f"{step},{tokens_seen},{cpu_used:.1f}," + ",".join(f"{r[d]:.4f}" for d in DOMAINS)
                    + f",{sum(r.values()) / len(r):.4f}\n")
        log("eval", " ".join(f"{d}={r[d]:.3f}" for d in DOMAINS))

    def save_ckpt():
        tmp = ckpt_path + ".tmp"
        torch.save({"model": model.state_dict(), "opt": opt.state_dict(), "rng": rng.getstate(),
                    "torch_rng": torch.get_rng_state(), "step": step, "tokens": tokens_seen,
                    "cpu": cpu_used, "wall": wall_used, "args": vars(args)}, tmp)
        os.replace(tmp, ckpt_path)

    if step == 0:
        write_eval()
    cpu0, wall0 = time.process_time() - cpu_used, time.time() - wall_used
    last_eval = last_ckpt = cpu_used
    acc = {"loss": 0.0, "ce": 0.0, "aux": 0.0, "n": 0}
    while True:
        cpu_used, wall_used = time.process_time() - cpu0, time.time() - wall0
        if args.steps:
            if step >= args.steps:
                break
        elif cpu_used >= budget or wall_used >= args.max_wall_minutes * 60:
            break
        lr = lr_at()
        for g in opt.param_groups:
            g["lr"] = lr
        x, _ = sample_batch(rng, train, args.batch, args.seq)
        out = model(input_ids=x[:, :-1], output_router_logits=True)
        ce = F.cross_entropy(out.logits.reshape(-1, out.logits.shape[-1]).float(), x[:, 1:].reshape(-1))
        aux_layers = per_layer_balance_loss(out.router_logits, cfg.num_experts_per_tok, cfg.num_experts)
        aux = aux_layers.mean()  # logged unweighted, comparable across coefficient settings
        loss = ce + (aux_coefs * aux_layers).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        step += 1
        tokens_seen += x[:, :-1].numel()
        acc["loss"] += loss.item(); acc["ce"] += ce.item(); acc["aux"] += aux.item(); acc["n"] += 1
        if step % args.log_every == 0:
            n = acc["n"]
            with open(train_log, "a") as f:
                f.write(f"{step},{tokens_seen},{cpu_used:.1f},{wall_used:.1f},{lr:.6g},{acc['loss'] / n:.4f},"
                        f"{acc['ce'] / n:.4f},{acc['aux'] / n:.4f}\n")
            if step % (args.log_every * 10) == 0:
                log(f"step {step} tok {tokens_seen:,} cpu {cpu_used:.0f}s wall {wall_used:.0f}s lr {lr:.2e} "
                    f"loss {acc['loss'] / n:.4f} ce {acc['ce'] / n:.4f} aux {acc['aux'] / n:.4f} "
                    f"tok/s(cpu) {tokens_seen / max(cpu_used, 1):.0f}")
            acc = {"loss": 0.0, "ce": 0.0, "aux": 0.0, "n": 0}
        if cpu_used - last_eval >= args.eval_every_min * 60:
            write_eval(); last_eval = cpu_used
        if cpu_used - last_ckpt >= args.ckpt_every_min * 60:
            save_ckpt(); last_ckpt = cpu_used
    cpu_used, wall_used = time.process_time() - cpu0, time.time() - wall0
    write_eval()
    save_ckpt()
    log(f"done: steps {step} tokens {tokens_seen:,} cpu {cpu_used:.0f}s wall {wall_used:.0f}s")
    # final BF16 save
    model.config.output_router_logits = False
    model.to(torch.bfloat16).save_pretrained(args.out, safe_serialization=True)
    from transformers import GenerationConfig
    GenerationConfig(bos_token_id=0, eos_token_id=0, pad_token_id=0, do_sample=False).save_pretrained(args.out)
    with open(os.path.join(args.out, "train_summary.json"), "w") as f:
        json.dump({"steps": step, "tokens_seen": tokens_seen, "cpu_seconds": round(cpu_used, 1),
                   "wall_seconds": round(wall_used, 1), "params": nparams, "args": vars(args),
                   "torch": torch.__version__, "transformers": __import__("transformers").__version__}, f, indent=1)
    log("saved", args.out)


if __name__ == "__main__":
    main()
