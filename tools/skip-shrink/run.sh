#!/usr/bin/env bash
# skip-shrink-bench: fewer bytes per token (issue #18), quality and speed in one run.
#
#     bash tools/skip-shrink/run.sh [--work DIR] [--skip-mid] [--eval-tokens N]
#
# 1. The default model (models/moekit-tiny): plans for every skip rule at two or three
#    settings (top-k, lu, ser, top-p) and for --shrink 0.25 / 0.5 with and without --refit
#    (and one --shrink-scope layer), `moekit eval` on python and german held-out text
#    (Δ perplexity and experts per token against the full model, in the same eval run),
#    then `moekit bench` of every plan in one run (decode t/s, bytes per token; the ratio
#    column is each plan's decode speed over the full model's in that same bench run).
# 2. A random checkpoint of the scale issue's mid shape (hidden 1024, 12 layers, 64 experts
#    x 384, top-8, 16/4 heads of 64, vocabulary 49,152; BF16): the same rules and shrinks,
#    benched the same way (random weights: speed only, no quality).
#
# A benchmark, not a test (python3 only formats the tables). Everything goes to the work folder (default
# <repo>/work-data/skip-shrink-bench, gitignored); results.md collects the tables.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
work="$repo/work-data/skip-shrink-bench"
skip_mid=0
eval_tokens=4096
while [ $# -gt 0 ]; do
    case "$1" in
        --work) work="$2"; shift 2 ;;
        --skip-mid) skip_mid=1; shift ;;
        --eval-tokens) eval_tokens="$2"; shift 2 ;;
        -h|--help) sed -n '2,18p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) echo "skip-shrink-bench: unknown argument $1" >&2; exit 2 ;;
    esac
done
mkdir -p "$work"
log() { printf '[%s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
cd "$repo"
log "building release"
swift build -c release --product moekit >/dev/null
swift build -c release --product make-checkpoint >/dev/null
m="$repo/.build/release/moekit"
results="$work/results.md"
: > "$results"

# plans NAME ARGS... per line, for `slim`.
slim_all() {
    local store="$1" profile="$2"; shift 2
    while IFS='|' read -r name args; do
        [ -z "$name" ] && continue
        log "slim $name ($args)"
        # shellcheck disable=SC2086
        "$m" slim --store "$store" --profile "$profile" --name "$name" --replace $args --json > "$work/slim-$name.json"
    done
}

# Decode speed of every plan in one bench run, with each plan's ratio over `full`.
bench_table() {
    local store="$1" title="$2"; shift 2
    local args=()
    for p in "$@"; do args+=(--plan "$p"); done
    log "bench $title"
    "$m" bench --store "$store" "${args[@]}" -p 64 -n 32 -r 3 --json > "$work/bench-$title.json"
    {
        echo "### $title: moekit bench -p 64 -n 32 -r 3 (one run)"
        echo
        python3 - "$work/bench-$title.json" <<'EOF'
import json, sys
rows = json.load(open(sys.argv[1]))
rows = rows.get("rows", rows) if isinstance(rows, dict) else rows
by = {}
for r in rows: by.setdefault(r["plan"], {})[r["test"]] = r
base = by["full"]
tg = next(t for t in base if t.startswith("tg"))
pp = next((t for t in base if t.startswith("pp")), None)
print("| plan | experts/token | bytes/token | pp t/s | tg t/s | tg / full | bytes / full |")
print("|---|---:|---:|---:|---:|---:|---:|")
for plan, tests in by.items():
    g = tests[tg]
    p = tests.get(pp) if pp else None
    ept = g.get("expertsPerToken")
    print(f"| {plan} | {ept:.2f} | {g['bytesPerGeneratedToken']/1e6:.1f} MB | "
          + (f"{p['tokensPerSecond']:.1f}" if p else "-")
          + f" | {g['tokensPerSecond']:.1f} ± {g['standardDeviation']:.1f} | {g['tokensPerSecond']/base[tg]['tokensPerSecond']:.2f}× | "
          + f"{g['bytesPerGeneratedToken']/base[tg]['bytesPerGeneratedToken']:.2f} |")
EOF
        echo
    } >> "$results"
}

plans_common='topk2|--top-k 2
lu|--skip lu
lu25|--skip lu:0.25
ser03|--skip ser:1,0.3
ser05|--skip ser:1,0.5
topp05|--skip top-p:0.5
topp07|--skip top-p:0.7
shrink25|--shrink 0.25
shrink50|--shrink 0.5'

# 1. Default model.
tiny="$work/tiny.store"
if [ ! -d "$tiny" ]; then
    log "import + profile the default model"
    "$m" import --store "$tiny" > /dev/null
    "$m" profile --store "$tiny" --calib calib/python --name python > /dev/null
fi
printf '%s\nshrink25r|--shrink 0.25 --refit\nshrink50r|--shrink 0.5 --refit\nshrink50L|--shrink 0.5 --shrink-scope layer\n' "$plans_common" | slim_all "$tiny" python
tiny_plans=(full topk2 lu lu25 ser03 ser05 topp05 topp07 shrink25 shrink25r shrink50 shrink50r shrink50L)
log "eval default model"
eval_args=()
for p in "${tiny_plans[@]}"; do eval_args+=(--plan "$p"); done
"$m" eval --store "$tiny" "${eval_args[@]}" --data calib/python,calib/german --max-tokens "$eval_tokens" --json > "$work/eval-tiny.json"
{
    echo "### default model: moekit eval, python and german held-out ($eval_tokens tokens each, window 256)"
    echo
    python3 - "$work/eval-tiny.json" <<'EOF'
import json, sys
d = json.load(open(sys.argv[1]))
rows = d.get("results", d) if isinstance(d, dict) else d
table = {}
for r in rows:
    domain = [p for p in r["data"].split("/") if p and not p.endswith(".jsonl")][-1]
    table.setdefault(r["plan"], {})[domain] = r
domains = sorted({k for v in table.values() for k in v})
print("| plan | " + " | ".join(f"{x} ppl | {x} Δppl | {x} experts/token" for x in domains) + " |")
print("|---|" + "---:|" * (3 * len(domains)))
for plan, v in table.items():
    cells = []
    for x in domains:
        r = v[x]
        cells += [f"{r['perplexity']:.2f}", f"{r['perplexityChangePercent']:+.2f}%", f"{r.get('expertsPerToken', 0):.2f}"]
    print(f"| {plan} | " + " | ".join(cells) + " |")
EOF
    echo
} >> "$results"
bench_table "$tiny" "default model" "${tiny_plans[@]}"

# 2. Mid shape (random weights): speed only.
if [ "$skip_mid" = 0 ]; then
    ckpt="$work/mid-checkpoint"
    mid="$work/mid.store"
    if [ ! -f "$ckpt/config.json" ]; then
        log "writing the mid-shape checkpoint"
        "$repo/.build/release/make-checkpoint" --out "$ckpt" --layers 12 --hidden 1024 --experts 64 --expert-intermediate 384 \
            --top-k 8 --heads 16 --kv-heads 4 --head-dim 64 --vocabulary 49152 > /dev/null
    fi
    if [ ! -d "$mid" ]; then
        log "import + profile the mid shape"
        "$m" import --model "$ckpt" --store "$mid" > /dev/null
        "$m" profile --store "$mid" --calib calib/python --name python --max-samples 8 --sequence-length 256 > /dev/null
    fi
    printf '%s\ntopk4|--top-k 4\n' "$plans_common" | slim_all "$mid" python
    bench_table "$mid" "mid shape" full topk4 topk2 lu lu25 ser03 ser05 topp05 topp07 shrink25 shrink50
fi
log "done: $results"
cat "$results"
