#!/usr/bin/env bash
# tools/gguf-check/run.sh: the default model's GGUF exports checked end to end. For each of
# four plans (full BF16, REAP 50%, 8-bit g32, 4-bit g32) it exports GGUF and HF, compares every
# GGUF tensor with the HF export (check.py compare), and runs llama-perplexity on held-out
# python text against MoEKit's perplexity of the same text (check.py ppl), and the greedy
# continuation of a fixed prompt by llama-completion against `moekit generate`. See README.md here.
#
#   bash tools/gguf-check/run.sh [--work DIR] [--moekit PATH] [--chunks 16]
#
# Needs PyPI (gguf, numpy; llama-cpp-python's sdist for llama.cpp's source), a C/C++ compiler
# and a built moekit (default .build/release/moekit, else .build/debug/moekit).
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
work="$repo/work-data/gguf-check"
moekit=""
chunks=16
while [ $# -gt 0 ]; do
    case "$1" in
        --work) work="$2"; shift 2 ;;
        --moekit) moekit="$2"; shift 2 ;;
        --chunks) chunks="$2"; shift 2 ;;
        *) echo "run.sh: unknown argument $1" >&2; exit 2 ;;
    esac
done
mkdir -p "$work"
work="$(cd "$work" && pwd)"
log() { printf '[%s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
if [ -z "$moekit" ]; then
    moekit="$repo/.build/release/moekit"
    [ -x "$moekit" ] || moekit="$repo/.build/debug/moekit"
fi
[ -x "$moekit" ] || { log "error: no moekit binary (swift build first, or --moekit PATH)"; exit 1; }

venv="$work/venv"
[ -x "$venv/bin/python" ] || python3 -m venv "$venv"
"$venv/bin/python" -c "import gguf, numpy" 2>/dev/null || "$venv/bin/pip" install --quiet gguf numpy
py="$venv/bin/python"
llama_bin="$(bash "$here/build-llama.sh" --work "$work")"
log "llama.cpp binaries: $llama_bin; moekit: $moekit"

# The held-out text as one file (whole texts joined by a newline, up to 60,000 characters: enough
# for the chunks, and short enough to pass to `moekit tokenize` as one argument), for
# llama-perplexity's -f and as a one-record jsonl for `moekit eval`, so all three tokenize
# exactly the same string.
text="$work/heldout-python.txt"
"$py" - "$repo/calib/python/heldout.jsonl" "$text" <<'EOF'
import json, sys
texts = [json.loads(line)["text"] for line in open(sys.argv[1], encoding="utf-8") if line.strip()]
kept = []
for t in texts:
    if sum(len(k) + 1 for k in kept) + len(t) > 60000:
        break
    kept.append(t)
joined = "\n".join(kept)
open(sys.argv[2], "w", encoding="utf-8").write(joined)
open(sys.argv[2] + ".jsonl", "w", encoding="utf-8").write(json.dumps({"text": joined}) + "\n")
EOF

store="$work/tiny.store"
if [ ! -f "$work/.plans-ok" ]; then
    rm -rf "$store"
    "$moekit" import --model "$repo/models/moekit-tiny" --store "$store" >&2
    "$moekit" profile --store "$store" --calib "$repo/calib/python" --name python --max-samples 16 >&2
    "$moekit" slim --store "$store" --profile python --prune reap --keep 0.5 --name reap50 >&2
    "$moekit" slim --store "$store" --profile python --uniform-bits 8 --group 32 --name q8g32 >&2
    "$moekit" slim --store "$store" --profile python --uniform-bits 4 --group 32 --name q4g32 >&2
    touch "$work/.plans-ok"
fi

prompt="def fibonacci(n):"
new_tokens=32
results="$work/results.jsonl"
: > "$results"
# Rows: the four plans, and the 4-bit plan again with its experts requantized to Q4_K
# (--gguf-expert-type q4_k).
for row in full reap50 q8g32 q4g32 q4g32:q4_k; do
    plan="${row%%:*}"
    expert_type=plan
    [ "$row" = "$plan" ] || expert_type="${row#*:}"
    out="$work/export-${row/:/-}"
    rm -rf "$out" "$out-mlx" "$out.gguf"
    plan_args=()
    [ "$plan" = full ] || plan_args=(--plan "$plan")
    "$moekit" export --store "$store" "${plan_args[@]}" --out "$out" >&2
    # The plan's own weights for the quantized tensors (codes kept), the reference of `compare`.
    "$moekit" export --store "$store" "${plan_args[@]}" --format mlx --out "$out-mlx" >&2
    "$moekit" export --store "$store" "${plan_args[@]}" --format gguf --gguf-expert-type "$expert_type" --out "$out.gguf" --json > "$out.gguf.json"
    "$moekit" export --store "$store" "${plan_args[@]}" --format gguf --gguf-expert-type "$expert_type" --out "$out.gguf" >&2
    log "$plan: compare"
    "$py" "$here/check.py" compare --gguf "$out.gguf" --hf "$out" --mlx "$out-mlx" --summary "$out.gguf.json" | tee -a "$results"
    log "$plan: perplexity"
    "$py" "$here/check.py" ppl --gguf "$out.gguf" --store "$store" "${plan_args[@]}" --text "$text" \
        --llama-bin "$llama_bin" --moekit "$moekit" --chunks "$chunks" | tee -a "$results"
    if [ "$expert_type" = plan ]; then   # the same plan as the row before otherwise
        "$moekit" eval --store "$store" --plan "$plan" --data "$text.jsonl" --window 256 --max-tokens $((chunks * 256)) --json \
            > "$out.eval.json"
        "$py" -c "import json,sys; r=json.load(open(sys.argv[1]))[0]; print(json.dumps({'plan': sys.argv[2], 'moekit_eval_ppl_all_positions': r['perplexity'], 'tokens': r['tokens']}))" \
            "$out.eval.json" "$plan" | tee -a "$results"
    fi
    log "$plan: greedy continuation"
    "$moekit" generate --store "$store" "${plan_args[@]}" "$prompt" --max-tokens "$new_tokens" 2>/dev/null > "$out.moekit.txt"
    "$llama_bin/llama-completion" -m "$out.gguf" -p "$prompt" -n "$new_tokens" --temp 0 -no-cnv --no-display-prompt \
        -c 256 -t 2 --no-warmup 2>/dev/null < /dev/null > "$out.llama.txt" || true
    "$py" - "$row" "$out.moekit.txt" "$out.llama.txt" <<'EOF2' | tee -a "$results"
import json, sys
plan, ours, theirs = sys.argv[1], open(sys.argv[2]).read().rstrip(), open(sys.argv[3]).read().rstrip()
theirs = theirs.removesuffix("[end of text]").rstrip()
common = next((i for i, (a, b) in enumerate(zip(ours, theirs)) if a != b), min(len(ours), len(theirs)))
print(json.dumps({"plan": plan, "greedy_identical": ours == theirs, "common_prefix_chars": common,
                  "moekit": ours, "llama": theirs}))
EOF2
done
log "results: $results"
