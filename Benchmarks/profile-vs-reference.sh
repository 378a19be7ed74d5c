#!/usr/bin/env bash
# Profiling throughput at a real layer shape, MoEKit against the transformers-hook reference
# (tools/profile_reference, the independent check of every profiler statistic), on the same
# calibration text in the same run, in interleaved rounds.
#
#     bash Benchmarks/profile-vs-reference.sh [--layers L] [--samples N] [--length T] [--rounds R] [--no-build]
#
# The checkpoint is random, with Qwen3-30B-A3B's layer shape (hidden 2048, 128 experts x 768,
# top-8, 32 query / 4 KV heads of 128; BF16; made by `make-checkpoint`), one layer by default
# so the reference (float32 torch, one thread as the tool sets it) fits in memory comfortably.
# Both sides are timed as whole processes (loading included) and per token of calibration
# text; MoEKit runs in memory and with --streaming. Needs the tools/ venv (.venv, made from
# tools/requirements.txt when missing: torch 2.13.0 CPU, transformers 5.23.0).
set -euo pipefail
cd "$(dirname "$0")/.."
LAYERS=1; SAMPLES=8; LENGTH=256; ROUNDS=2; BUILD=1
WORK=${WORK:-work-data/profile-vs-reference}
while [ $# -gt 0 ]; do
  case "$1" in
    --layers) LAYERS=$2; shift 2 ;;
    --samples) SAMPLES=$2; shift 2 ;;
    --length) LENGTH=$2; shift 2 ;;
    --rounds) ROUNDS=$2; shift 2 ;;
    --no-build) BUILD=0; shift ;;
    *) echo "unknown option $1" >&2; exit 2 ;;
  esac
done
if [ "$BUILD" = 1 ]; then swift build -c release --product moekit >/dev/null; swift build -c release --product make-checkpoint >/dev/null; fi
if [ ! -x .venv/bin/python ]; then python3 -m venv .venv && .venv/bin/pip install -q -r tools/requirements.txt; fi
BIN=.build/release
mkdir -p "$WORK"
CKPT="$WORK/checkpoint-$LAYERS"; STORE="$WORK/store-$LAYERS"
[ -f "$CKPT/config.json" ] || "$BIN/make-checkpoint" --out "$CKPT" --layers "$LAYERS" --hidden 2048 --experts 128 \
  --expert-intermediate 768 --top-k 8 --heads 32 --kv-heads 4 --head-dim 128 --seed 1 --tokenizer-from models/moekit-tiny >/dev/null
[ -d "$STORE" ] || "$BIN/moekit" import --model "$CKPT" --store "$STORE" --json >/dev/null
CALIB=calib/python/calib.jsonl

now() { date +%s.%N; }
declare -A total
for key in reference memory streaming; do total[$key]=0; done
tokens=0
for round in $(seq "$ROUNDS"); do
  start=$(now)
  .venv/bin/python tools/profile_reference/profile_reference.py --model "$CKPT" --calib "$CALIB" \
    --max-samples "$SAMPLES" --max-tokens-per-sample "$LENGTH" --out "$WORK/reference.json" >/dev/null
  total[reference]=$(echo "${total[reference]} + $(now) - $start" | bc)
  for mode in memory streaming; do
    flag=""; [ "$mode" = streaming ] && flag=--streaming
    start=$(now)
    out=$("$BIN/moekit" profile --store "$STORE" --calib "$CALIB" --name "bench-$mode" --max-samples "$SAMPLES" \
      --sequence-length "$LENGTH" --json $flag 2>/dev/null)
    total[$mode]=$(echo "${total[$mode]} + $(now) - $start" | bc)
    tokens=$(echo "$out" | sed -n 's/.*"tokens" *: *\([0-9]*\).*/\1/p' | head -1)
  done
  echo "round $round done" >&2
done
echo "Profiling throughput, random checkpoint of Qwen3-30B-A3B's layer shape, $LAYERS layer(s), $SAMPLES samples x <= $LENGTH tokens of $CALIB ($tokens tokens), $ROUNDS interleaved rounds, whole processes"
echo
echo "| profiler | seconds per run | tokens/s | vs reference |"
echo "|---|---|---|---|"
ref_rate=$(echo "scale=3; $tokens * $ROUNDS / ${total[reference]}" | bc)
for key in reference memory streaming; do
  rate=$(echo "scale=3; $tokens * $ROUNDS / ${total[$key]}" | bc)
  label=$key; [ "$key" = reference ] && label="transformers hooks (tools/profile_reference)"
  [ "$key" = memory ] && label="moekit profile (in memory)"; [ "$key" = streaming ] && label="moekit profile --streaming"
  printf '| %s | %.1f | %.1f | %.2fx |\n' "$label" "$(echo "${total[$key]} / $ROUNDS" | bc -l)" "$rate" "$(echo "$rate / $ref_rate" | bc -l)"
done
