#!/usr/bin/env bash
# The compression measurements of the README and the closing notes, on the default model:
# import it, profile three domains, build plans with every method at the same budgets, and
# evaluate all of them against the full model on each domain's held-out text.
#   bash Benchmarks/compression-report.sh [STORE] [MODEL_DIR]
set -euo pipefail
cd "$(dirname "$0")/.."
store=${1:-/tmp/moekit-report.store}
model=${2:-models/moekit-tiny}
tokens=${EVAL_TOKENS:-4096}
swift build -c release --product moekit >/dev/null
m=.build/release/moekit
"$m" import --model "$model" --store "$store" >/dev/null
for d in python english german; do
  "$m" profile --store "$store" --calib calib/$d --name $d --max-samples 64 >/dev/null
done
plans=()
for d in python english german; do
  for c in reap ean frequency easy-ep; do
    "$m" slim --store "$store" --profile $d --prune $c --keep 0.5 --name $d-$c-50 >/dev/null
    plans+=("$d-$c-50")
  done
done
"$m" slim --store "$store" --profile python --merge hc-smoe --keep 0.5 --name python-hcsmoe-50 >/dev/null
"$m" slim --store "$store" --profile python --merge m-smoe --keep 0.5 --name python-msmoe-50 >/dev/null
"$m" slim --store "$store" --profile python --prune reap --keep 0.375 --name python-reap-37.5 >/dev/null
"$m" slim --store "$store" --profile python --prune reap --keep 0.375 --novices 0.125 --name python-reap-37.5-novices >/dev/null
"$m" slim --store "$store" --profile python --bits 3.0 --name python-mixed-3bit >/dev/null
"$m" slim --store "$store" --profile python --uniform-bits 3 --name python-uniform-3bit >/dev/null
"$m" slim --store "$store" --profile python --uniform-bits 4 --name python-uniform-4bit >/dev/null
"$m" slim --store "$store" --profile python --bits 3.0 --gptq --name python-mixed-3bit-gptq >/dev/null
plans+=(python-hcsmoe-50 python-msmoe-50 python-reap-37.5 python-reap-37.5-novices python-mixed-3bit python-uniform-3bit python-uniform-4bit python-mixed-3bit-gptq)
args=()
for p in full "${plans[@]}"; do args+=(--plan "$p"); done
"$m" eval --store "$store" "${args[@]}" --data calib/python,calib/english,calib/german --max-tokens "$tokens"
