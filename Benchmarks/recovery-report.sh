#!/usr/bin/env bash
# The recovery measurements of issue #14 on the default model: REAP plans built from the
# python profile at 50% and 37.5% of experts kept, with every combination of budget
# (uniform, global, search), least-squares refit and additive novices (none, mean, lsq),
# then mixed against uniform bits; all evaluated against the full model on python (the
# calibration domain), german and english held-out text.
#   bash Benchmarks/recovery-report.sh [STORE] [MODEL_DIR]
# Environment: EVAL_TOKENS (tokens per domain, default 4096), NOVICES (fraction of each
# layer's experts kept as novices, default: every pruned expert), RIDGE (--refit-ridge).
set -euo pipefail
cd "$(dirname "$0")/.."
store=${1:-/tmp/moekit-recovery.store}
model=${2:-models/moekit-tiny}
tokens=${EVAL_TOKENS:-4096}
ridge=${RIDGE:-0.05}
swift build -c release --product moekit >/dev/null
m=.build/release/moekit
rm -rf "$store"
"$m" import --model "$model" --store "$store" >/dev/null
"$m" profile --store "$store" --calib calib/python --name python --max-samples 64 >/dev/null

slim() {   # slim NAME ARGS...: build a plan from the python profile and print its per-layer counts
  local name=$1; shift
  "$m" slim --store "$store" --profile python --name "$name" "$@" --json \
    | tr -d ' \n' | sed -E 's/.*"perLayerKept":\[([0-9,]*)\].*/\1/' | xargs printf '%-28s kept per layer: %s\n' "$name"
}
plans=()
for keep in 0.5 0.375; do
  k=${keep#0.}
  novices=${NOVICES:-$(awk "BEGIN { print 1 - $keep - 0.001 }")}
  for config in "reap:" "global:--budget global" "refit:--refit" "global-refit:--budget global --refit" \
                "search:--budget search" "search-refit:--budget search --refit"; do
    label=${config%%:*}; args=${config#*:}
    for nov in none mean lsq; do
      extra=()
      [ "$nov" != none ] && extra=(--novices "$novices" --novice-fit "$nov")
      name="k$k-$label-$nov"
      # shellcheck disable=SC2086
      slim "$name" --prune reap --keep "$keep" $args --refit-ridge "$ridge" "${extra[@]}"
      plans+=("$name")
    done
  done
done
for bits in 3.0 2.5; do
  slim "mixed-$bits" --bits "$bits" --group 32
  plans+=("mixed-$bits")
done
for bits in 3 2; do
  slim "uniform-$bits" --uniform-bits "$bits" --group 32
  plans+=("uniform-$bits")
done
args=()
for p in full "${plans[@]}"; do args+=(--plan "$p"); done
"$m" eval --store "$store" "${args[@]}" --data calib/python,calib/german,calib/english --max-tokens "$tokens"
