#!/usr/bin/env bash
# scale-bench: MoEKit on a model several times bigger than the memory it is given.
#
#     bash Benchmarks/scale-bench.sh [--layers L] [--cap-mb M] [--work DIR] [--keep]
#
# Builds release, writes a random qwen3_moe checkpoint of Qwen3-30B-A3B's real layer shape
# (hidden 2048, 128 experts x 768, top-8, 32 query / 4 KV heads of 128; BF16, one shard per
# layer) with `make-checkpoint`, and runs import, profile, slim (REAP + 4-bit, GPTQ, plain
# REAP 50% / 25%), eval and generate on it, each in its own cgroup v1 memory cap (default
# 2560 MiB, the model is at least 4x that), then serves three plans and reads their RSS.
# The same steps run first, uncapped, on the bundled default model (models/moekit-tiny).
# A step that fails (a flag the CLI does not have yet, an error, the OOM killer) is marked
# FAILED with its exit status and last stderr line, and the next step runs.
#
# Memory columns:
#   cgroup peak  memory.max_usage_in_bytes of the step's cgroup: everything charged to it,
#                page cache included (reading a 10 GB checkpoint or writing a 10 GB store fills
#                the cap with cache, which the kernel reclaims there, so I/O-bound steps sit
#                near the cap by design; that is not the process's own memory)
#   anon peak    the largest total_rss of memory.stat, sampled every 0.2 s: anonymous memory
#                (heap, buffers), the memory a process cannot give back without swap
#   max RSS      GNU time's maximum resident set size: anonymous + resident file-mapped pages
#                (mmap'd safetensors / LMDB pages count while they are resident); it can exceed
#                the cap by the shared libraries' pages, which stay charged to the root cgroup
#   under cap    yes: finished without the OOM killer (memory.oom_control's oom_kill stayed 0)
# Before each capped step the work folder's files are dropped from the page cache
# (`dd iflag=nocache count=0`), so pages cached by an earlier step are not charged to the
# root cgroup where the cap would not see them.
#
# Options (all optional):
#   --layers L               decoder layers (default: the fewest with model bytes >= 4 x cap)
#   --cap-mb M               memory cap of every capped step in MiB (default 2560)
#   --work DIR               work folder (default: <repo>/work-data/scale-bench, gitignored)
#   --keep                   keep the checkpoint and stores afterwards (default: delete them;
#                            logs and results.md are always kept); a kept checkpoint of the
#                            same shape is reused by the next run
#   --hidden N --experts N --expert-intermediate N --top-k N --heads N --kv-heads N --head-dim N
#                            another shape (for a quick check of the harness)
#   --allow-small            run even if the model is not 4x the cap (marked in the output)
#   --gptq-keep F            GPTQ step: prune with REAP to fraction F first, then GPTQ what is
#                            left (plan reap25-gptq4 at the default 0.25); 1 quantizes every
#                            expert (plan gptq4). Default 0.25: GPTQ of all 128 experts took
#                            241 s per layer of this shape on a shared 2-core machine (about
#                            36 min for 9 layers), a quarter of them 63 s per layer
#   --serve-uncapped         run the servers without the cap
#   --skip-tiny              skip the default-model reference rows
#   --scratch-path DIR       swift build folder (default .build)
#   --no-build               use the binaries already in the build folder
#   --dry-run                print the shape, model bytes and the 4x check, then stop
set -u

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$REPO"
BENCH_START=$(date +%s.%N)

LAYERS=""
CAP_MB=2560
WORK="$REPO/work-data/scale-bench"
KEEP=0
HIDDEN=2048; EXPERTS=128; EXPERT_INTER=768; TOPK=8; HEADS=32; KV_HEADS=4; HEAD_DIM=128
ALLOW_SMALL=0
GPTQ_KEEP=0.25
SERVE_CAPPED=1
SKIP_TINY=0
SCRATCH=".build"
BUILD=1
DRY=0

die() { echo "scale-bench: $*" >&2; exit 2; }
while [ $# -gt 0 ]; do
  need() { [ $# -ge 2 ] || die "$1 needs a value"; }
  case "$1" in
    --layers) need "$@"; LAYERS=$2; shift 2 ;;
    --cap-mb) need "$@"; CAP_MB=$2; shift 2 ;;
    --work) need "$@"; WORK=$2; shift 2 ;;
    --keep) KEEP=1; shift ;;
    --hidden) need "$@"; HIDDEN=$2; shift 2 ;;
    --experts) need "$@"; EXPERTS=$2; shift 2 ;;
    --expert-intermediate) need "$@"; EXPERT_INTER=$2; shift 2 ;;
    --top-k) need "$@"; TOPK=$2; shift 2 ;;
    --heads) need "$@"; HEADS=$2; shift 2 ;;
    --kv-heads) need "$@"; KV_HEADS=$2; shift 2 ;;
    --head-dim) need "$@"; HEAD_DIM=$2; shift 2 ;;
    --allow-small) ALLOW_SMALL=1; shift ;;
    --gptq-keep) need "$@"; GPTQ_KEEP=$2; shift 2 ;;
    --serve-uncapped) SERVE_CAPPED=0; shift ;;
    --skip-tiny) SKIP_TINY=1; shift ;;
    --scratch-path) need "$@"; SCRATCH=$2; shift 2 ;;
    --no-build) BUILD=0; shift ;;
    --dry-run) DRY=1; shift ;;
    -h|--help) sed -n '2,/^set -u/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) die "unknown argument $1 (see --help)" ;;
  esac
done
for v in CAP_MB HIDDEN EXPERTS EXPERT_INTER TOPK HEADS KV_HEADS HEAD_DIM; do
  [[ ${!v} =~ ^[0-9]+$ ]] && [ "${!v}" -gt 0 ] || die "a numeric option ($v) is not a positive integer: '${!v}'"
done
case "$WORK" in /*) ;; *) WORK="$REPO/$WORK" ;; esac

# ---------------------------------------------------------------- model size and the 4x rule
TINY="$REPO/models/moekit-tiny"
VOCAB=$(grep -o '"vocab_size": *[0-9]*' "$TINY/config.json" | grep -o '[0-9]*$')
[ -n "$VOCAB" ] || die "cannot read vocab_size from $TINY/config.json"
layer_bytes() { # BF16 bytes of one decoder layer
  local d=$HIDDEN q=$((HEADS * HEAD_DIM)) kv=$((KV_HEADS * HEAD_DIM))
  echo $(( 2 * ( q*d + 2*kv*d + d*q + 2*HEAD_DIM + 2*d + EXPERTS*d + 3*EXPERTS*EXPERT_INTER*d ) ))
}
model_bytes() { echo $(( $1 * $(layer_bytes) + 2 * (2 * VOCAB * HIDDEN + HIDDEN) )); }
CAP_BYTES=$((CAP_MB * 1048576))
if [ -z "$LAYERS" ]; then
  LAYERS=1
  while [ "$(model_bytes $LAYERS)" -lt $((4 * CAP_BYTES)) ]; do LAYERS=$((LAYERS + 1)); done
fi
[[ $LAYERS =~ ^[0-9]+$ ]] && [ "$LAYERS" -gt 0 ] || die "--layers must be a positive integer"
MODEL_BYTES=$(model_bytes "$LAYERS")
RATIO=$(awk -v m="$MODEL_BYTES" -v c="$CAP_BYTES" 'BEGIN { printf "%.2f", m / c }')
MODEL_GB=$(awk -v m="$MODEL_BYTES" 'BEGIN { printf "%.2f", m / 1e9 }')
if [ "$MODEL_BYTES" -ge $((4 * CAP_BYTES)) ]; then
  FOURX="model $MODEL_GB GB = ${RATIO}x the $CAP_MB MiB cap (>= 4x: yes)"
elif [ "$ALLOW_SMALL" = 1 ]; then
  FOURX="model $MODEL_GB GB = ${RATIO}x the $CAP_MB MiB cap (>= 4x: NO, --allow-small)"
else
  die "model of $LAYERS layers is $MODEL_GB GB = ${RATIO}x the $CAP_MB MiB cap, less than 4x; use more --layers, a smaller --cap-mb, or --allow-small"
fi

if [ "$DRY" = 1 ]; then
  echo "layers $LAYERS, hidden $HIDDEN, $EXPERTS experts x $EXPERT_INTER, top-$TOPK, $HEADS/$KV_HEADS heads x $HEAD_DIM, vocab $VOCAB"
  echo "$(layer_bytes) bytes per layer; $FOURX"
  exit 0
fi

# ---------------------------------------------------------------- environment
CGROOT=/sys/fs/cgroup/memory
if [ -d "$CGROOT" ] && [ -w "$CGROOT" ]; then
  CGROUPS=1
else
  CGROUPS=0
  echo "scale-bench: $CGROOT is missing or not writable (cgroup v1 memory controller; needs root)." >&2
  echo "scale-bench: running every step UNCAPPED; peak memory is the process's maximum RSS (GNU time -v)." >&2
fi
TIME=/usr/bin/time
if ! "$TIME" -v true >/dev/null 2>&1; then
  if command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
    echo "scale-bench: installing GNU time (apt-get install time)" >&2
    apt-get install -y -qq time >/dev/null 2>&1 || { apt-get update -qq >/dev/null 2>&1 && apt-get install -y -qq time >/dev/null 2>&1; }
  fi
  "$TIME" -v true >/dev/null 2>&1 || { TIME=""; echo "scale-bench: GNU time not available; max RSS is sampled from /proc/PID/status (VmHWM)" >&2; }
fi
JSONTOOL=none
if command -v jq >/dev/null 2>&1; then JSONTOOL=jq; elif command -v python3 >/dev/null 2>&1; then JSONTOOL=python3; fi

mkdir -p "$WORK/logs" || die "cannot create $WORK"
RESULTS="$WORK/results.md"
SERVER_PID=""
# cgroup names carry this script's PID, so runs side by side (other checkouts, other users of
# the machine) never share, reuse or clean up each other's cgroups.
CG_PREFIX="moekit-bench-$$-"
SAMPLER_PID=""

cleanup() {
  [ -n "$SAMPLER_PID" ] && kill "$SAMPLER_PID" 2>/dev/null
  if [ -n "$SERVER_PID" ] && kill -0 "$SERVER_PID" 2>/dev/null; then
    kill "$SERVER_PID" 2>/dev/null; sleep 1; kill -9 "$SERVER_PID" 2>/dev/null
  fi
  if [ "$CGROUPS" = 1 ]; then
    local cg
    for cg in "$CGROOT/$CG_PREFIX"*; do
      [ -d "$cg" ] || continue
      # Only this run's cgroups (their names carry this script's PID); anything still inside
      # one (a step interrupted by Ctrl-C) was started by this run: stop it, then remove.
      while read -r p; do [ -n "$p" ] && kill -9 "$p" 2>/dev/null; done < "$cg/cgroup.procs"
      sleep 0.2; rmdir "$cg" 2>/dev/null
    done
  fi
}
on_exit() {
  cleanup
  if [ "$KEEP" = 0 ]; then rm -rf "$WORK/checkpoint" "$WORK/scale.store" "$WORK/tiny.store"; fi
}
trap on_exit EXIT
trap 'echo "scale-bench: interrupted" >&2; exit 130' INT TERM

# ---------------------------------------------------------------- build
BIN="$REPO/$SCRATCH/release"
if [ "$BUILD" = 1 ]; then
  echo "== building (swift build -c release --scratch-path $SCRATCH)" >&2
  for product in moekit make-checkpoint; do
    swift build -c release --scratch-path "$SCRATCH" --product "$product" > "$WORK/logs/build-$product.log" 2>&1 \
      || { tail -20 "$WORK/logs/build-$product.log" >&2; die "build of $product failed (log: $WORK/logs/build-$product.log)"; }
  done
fi
MOEKIT="$BIN/moekit"
[ -x "$MOEKIT" ] && [ -x "$BIN/make-checkpoint" ] || die "no binaries in $BIN (build first or drop --no-build)"

# ---------------------------------------------------------------- helpers
now() { date +%s.%N; }
mib() { awk -v b="$1" 'BEGIN { if (b == "" || b == "-") print "-"; else printf "%.0f", b / 1048576 }'; }

# Drops every file under the given paths from the page cache (after writing back dirty pages).
evict() {
  sync
  local f
  find "$@" -type f 2>/dev/null | while read -r f; do dd if="$f" iflag=nocache count=0 status=none 2>/dev/null; done
}

# Tokens per second from a step's stdout (JSON or a stats line) and stderr.
tokens_per_second() { # kind stdout stderr
  local kind=$1 out=$2 err=$3 v=""
  case "$kind" in
    profile)
      case $JSONTOOL in
        jq) v=$(jq -r '.tokensPerSecond // empty | floor' "$out" 2>/dev/null) ;;
        python3) v=$(python3 -c 'import json,sys; print(int(json.load(open(sys.argv[1]))["tokensPerSecond"]))' "$out" 2>/dev/null) ;;
        *) v=$(grep -o '"tokensPerSecond" *: *[0-9.eE+-]*' "$out" | head -1 | sed 's/.*: *//; s/\..*//') ;;
      esac ;;
    eval)
      case $JSONTOOL in
        jq) v=$(jq -r '[(if type == "array" then . else (.results // []) end)[] | "\(.plan) \(.tokensPerSecond | floor)"] | join(", ")' "$out" 2>/dev/null) ;;
        python3) v=$(python3 -c '
import json, sys
r = json.load(open(sys.argv[1])); r = r if isinstance(r, list) else r.get("results", [])
print(", ".join("%s %d" % (x["plan"], x["tokensPerSecond"]) for x in r))' "$out" 2>/dev/null) ;;
        *) v=$(grep -o '"tokensPerSecond" *: *[0-9.eE+-]*' "$out" | sed 's/.*: *//; s/\..*//' | paste -sd, -) ;;
      esac ;;
    generate)
      v=$(grep -oiE '[0-9]+(\.[0-9]+)? *tok(ens)?/s' "$err" "$out" 2>/dev/null | tail -1 | sed 's/^[^:]*://' | grep -oE '^[0-9]+(\.[0-9]+)?') ;;
  esac
  echo "${v:--}"
}

# The line that says why a command failed: its last "Error:" line (ArgumentParser follows it
# with a usage footer), else its last non-empty stderr line; shortened for a table cell.
last_error() {
  local line
  line=$(grep -E '^(Error|error|Fatal error|fatal error)[: ]' "$1" 2>/dev/null | tail -1)
  [ -n "$line" ] || line=$(grep -v '^\s*$' "$1" 2>/dev/null | grep -v '^Command terminated by signal' | tail -1)
  echo "$line" | cut -c1-160 | tr '|' '/'
}

# Samples a cgroup's anonymous memory (total_rss) and, without GNU time, the process's VmHWM.
sample() { # cgroup-dir-or-empty pid outfile
  local cg=$1 pid=$2 out=$3 anon=0 hwm=0 v
  while kill -0 "$pid" 2>/dev/null; do
    if [ -n "$cg" ]; then
      v=$(awk '$1 == "total_rss" { print $2; exit }' "$cg/memory.stat" 2>/dev/null)
      [ -n "$v" ] && [ "$v" -gt "$anon" ] && anon=$v
    fi
    v=$(awk '$1 == "VmHWM:" { print $2 * 1024; exit }' "/proc/$pid/status" 2>/dev/null)
    [ -n "$v" ] && [ "$v" -gt "$hwm" ] && hwm=$v
    echo "$anon $hwm" > "$out"
    sleep 0.2
  done
}

# Makes a fresh capped cgroup for a step; prints its path (empty when uncapped, FAILED when
# it cannot be made: a step never runs in a cgroup it did not just create and cap).
make_cgroup() { # name cap-mb
  local name=$1 cap=$2 cg
  [ "$CGROUPS" = 1 ] && [ "$cap" != "-" ] || { echo ""; return; }
  cg="$CGROOT/$CG_PREFIX$name"
  mkdir "$cg" 2>/dev/null || { echo "scale-bench: cannot create $cg" >&2; echo FAILED; return; }
  if ! echo $((cap * 1048576)) > "$cg/memory.limit_in_bytes"; then
    rmdir "$cg" 2>/dev/null; echo "scale-bench: cannot set the cap of $cg" >&2; echo FAILED; return
  fi
  [ -e "$cg/memory.memsw.limit_in_bytes" ] && echo $((cap * 1048576)) > "$cg/memory.memsw.limit_in_bytes" 2>/dev/null
  echo "$cg"
}
oom_kills() { [ -n "$1" ] && awk '$1 == "oom_kill" { print $2 }' "$1/memory.oom_control" 2>/dev/null || echo 0; }

ROWS=()       # table rows, per model set
MODELINES=()  # stderr lines that mention streaming / mode

# Runs one step: run_step SET NAME CAP_MB(or -) KIND -- command...
run_step() {
  local set=$1 name=$2 cap=$3 kind=$4; shift 5
  local tag="$set-$name" out="$WORK/logs/$set-$name.out" err="$WORK/logs/$set-$name.log"
  local tfile="$WORK/logs/$set-$name.time" sfile="$WORK/logs/$set-$name.samples"
  rm -f "$out" "$err" "$tfile" "$sfile"
  local capnote=" (uncapped)"; [ "$cap" != "-" ] && capnote=" (cap $cap MiB)"
  echo "== [$set] $name$capnote: $*" >&2
  local cg; cg=$(make_cgroup "$tag" "$cap")
  if [ "$cg" = FAILED ]; then
    ROWS+=("| $set | $name | ${cap} | $SET_GB | - | - | - | - | - | - | FAILED (could not create a capped cgroup) |")
    return 0
  fi
  [ -n "$cg" ] && evict "$WORK"
  local start; start=$(now)
  local timecmd=()
  [ -n "$TIME" ] && timecmd=("$TIME" -v -o "$tfile")
  if [ -n "$cg" ]; then
    bash -c 'echo $$ > "$1/cgroup.procs" || exit 125; shift; exec "$@"' _ "$cg" "${timecmd[@]}" "$@" > "$out" 2> "$err" &
  else
    "${timecmd[@]}" "$@" > "$out" 2> "$err" &
  fi
  local pid=$!
  sample "$cg" "$pid" "$sfile" & SAMPLER_PID=$!
  wait "$pid"; local rc=$?
  kill "$SAMPLER_PID" 2>/dev/null; wait "$SAMPLER_PID" 2>/dev/null; SAMPLER_PID=""
  local wall; wall=$(awk -v a="$start" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }')

  local cgpeak="-" anon="-" maxrss="-" under="-" ooms=0
  if [ -f "$sfile" ]; then read -r a h < "$sfile"; [ "${a:-0}" -gt 0 ] && anon=$a; [ "${h:-0}" -gt 0 ] && maxrss=$h; fi
  if [ -n "$TIME" ] && [ -f "$tfile" ]; then
    local k; k=$(awk -F': ' '/Maximum resident set size/ { print $2 }' "$tfile")
    [ -n "$k" ] && maxrss=$((k * 1024))
  fi
  if [ -n "$cg" ]; then
    cgpeak=$(cat "$cg/memory.max_usage_in_bytes")
    ooms=$(oom_kills "$cg")
    if [ "${ooms:-0}" -gt 0 ] || [ $rc = 137 ]; then under="no (OOM-killed)"
    elif [ "$cgpeak" -le $((cap * 1048576)) ]; then under="yes"
    else under="no"; fi
    echo "   cgroup: max_usage $(mib "$cgpeak") MiB, failcnt $(cat "$cg/memory.failcnt"), oom_kill ${ooms:-0}" >&2
    rmdir "$cg" 2>/dev/null || echo "scale-bench: could not remove $cg" >&2
  fi
  local tps; tps=$(tokens_per_second "$kind" "$out" "$err")
  local status="ok"
  if [ $rc != 0 ]; then
    local last; last=$(last_error "$err")
    [ "$under" = "no (OOM-killed)" ] && last="killed by the OOM killer${last:+; $last}"
    status="FAILED (exit $rc: ${last:-no stderr})"
    tps="-"
  fi
  echo "   $status, ${wall}s, max RSS $(mib "$maxrss") MiB, tokens/s $tps" >&2
  local gb="$SET_GB"
  ROWS+=("| $set | $name | ${cap} | $gb | $(mib "$cgpeak") | $(mib "$anon") | $(mib "$maxrss") | $under | $wall | $tps | $status |")
  local line
  while IFS= read -r line; do MODELINES+=("[$set $name] $line"); done < <(grep -iE 'stream|\bmode\b' "$err" | grep -v '^\s*Command being timed' | head -5)
  return 0
}

# All steps on one model: run_set SET CKPT STORE CAP
run_set() {
  local set=$1 ckpt=$2 store=$3 cap=$4
  local prompt="def fibonacci("
  rm -rf "$store"
  run_step "$set" import "$cap" none -- "$MOEKIT" import --model "$ckpt" --store "$store"
  run_step "$set" profile "$cap" profile -- "$MOEKIT" profile --store "$store" --calib calib/python --name python \
    --max-samples 16 --sequence-length 256 --json
  run_step "$set" slim-reap50-q4 "$cap" none -- "$MOEKIT" slim --store "$store" --profile python --prune reap --keep 0.5 \
    --uniform-bits 4 --name reap50-q4 --max-samples 8 --json
  local gptqname=gptq4
  [ "$GPTQ_KEEP" != 1 ] && gptqname="reap$(awk -v k="$GPTQ_KEEP" 'BEGIN { printf "%d", k * 100 + 0.5 }')-gptq4"
  local gptq=("$MOEKIT" slim --store "$store" --profile python --uniform-bits 4 --gptq --group 64 --name "$gptqname" --max-samples 8 --json)
  [ "$GPTQ_KEEP" != 1 ] && gptq+=(--prune reap --keep "$GPTQ_KEEP")
  run_step "$set" "slim-$gptqname" "$cap" none -- "${gptq[@]}"
  run_step "$set" slim-reap50 "$cap" none -- "$MOEKIT" slim --store "$store" --profile python --prune reap --keep 0.5 \
    --name reap50 --json
  run_step "$set" slim-reap25 "$cap" none -- "$MOEKIT" slim --store "$store" --profile python --prune reap --keep 0.25 \
    --name reap25 --json
  run_step "$set" slim-reap50-q4-dense4 "$cap" none -- "$MOEKIT" slim --store "$store" --profile python --prune reap --keep 0.5 \
    --uniform-bits 4 --dense-bits 4 --group 32 --name reap50-q4-dense4 --max-samples 8 --json
  run_step "$set" eval "$cap" eval -- "$MOEKIT" eval --store "$store" --plan full --plan reap50-q4 --plan reap50-q4-dense4 \
    --data calib/python --max-tokens 1024 --json
  rm -rf "$WORK/export-$set"
  run_step "$set" export-reap50-q4 "$cap" none -- "$MOEKIT" export --store "$store" --plan reap50-q4 --out "$WORK/export-$set"
  rm -rf "$WORK/export-$set"
  run_step "$set" generate-reap50-q4 "$cap" generate -- "$MOEKIT" generate --store "$store" --plan reap50-q4 "$prompt" --max-tokens 16
  run_step "$set" generate-full "$cap" generate -- "$MOEKIT" generate --store "$store" --plan full "$prompt" --max-tokens 16
}

SERVE_ROWS=()
# Serves each plan in turn, sends one warm-up completion and reads VmRSS: serve_set SET STORE CAP
serve_set() {
  local set=$1 store=$2 cap=$3 plan fullrss=""
  for plan in full reap50 reap25; do
    local tag="$set-serve-$plan" out="$WORK/logs/$set-serve-$plan.out" err="$WORK/logs/$set-serve-$plan.log"
    local c="-"; [ "$SERVE_CAPPED" = 1 ] && c=$cap
    echo "== [$set] serve --plan $plan$( [ "$c" = "-" ] && echo " (uncapped)" || echo " (cap $c MiB)")" >&2
    local cg; cg=$(make_cgroup "$tag" "$c")
    if [ "$cg" = FAILED ]; then
      SERVE_ROWS+=("| $set | $plan | $c | - | - | - | - | - | FAILED (could not create a capped cgroup) |")
      continue
    fi
    [ -n "$cg" ] && evict "$WORK"
    local ebytes="-"
    # Expert bytes as inspect reports them for the plan, if it does.
    if [ "$JSONTOOL" = jq ]; then
      ebytes=$("$MOEKIT" inspect --store "$store" --plan "$plan" --json 2>/dev/null \
        | jq -r '.plan.expertBytes // empty' 2>/dev/null)
      [ -n "$ebytes" ] || ebytes="-"
    fi
    local start; start=$(now)
    if [ -n "$cg" ]; then
      bash -c 'echo $$ > "$1/cgroup.procs" || exit 125; shift; exec "$@"' _ "$cg" "$MOEKIT" serve --store "$store" --plan "$plan" --port 0 > "$out" 2> "$err" &
    else
      "$MOEKIT" serve --store "$store" --plan "$plan" --port 0 > "$out" 2> "$err" &
    fi
    SERVER_PID=$!
    local port="" i
    for ((i = 0; i < 6000; i++)); do  # up to 20 minutes to load
      port=$(grep -o 'listening on http://127.0.0.1:[0-9]*' "$out" 2>/dev/null | grep -o '[0-9]*$')
      [ -n "$port" ] && break
      kill -0 "$SERVER_PID" 2>/dev/null || break
      sleep 0.2
    done
    local status="ok" rss="-" ratio="-" load="-" warm="-"
    load=$(awk -v a="$start" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }')
    if [ -z "$port" ]; then
      wait "$SERVER_PID" 2>/dev/null; local rc=$?
      [ -n "$cg" ] && [ "$(oom_kills "$cg")" -gt 0 ] && rc="$rc, OOM-killed"
      status="FAILED (exit $rc: $(last_error "$err"))"
    else
      [ "$ebytes" = "-" ] && ebytes=$(grep -o '[0-9]* bytes of experts resident' "$out" | grep -o '^[0-9]*')
      local t0; t0=$(now)
      local reply; reply=$(curl -s -m 600 "http://127.0.0.1:$port/v1/completions" -H 'Content-Type: application/json' \
        -d "{\"model\":\"$plan\",\"prompt\":\"def f(\",\"max_tokens\":4}")
      warm=$(awk -v a="$t0" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }')
      echo "$reply" > "$WORK/logs/$set-serve-$plan.reply.json"
      rss=$(awk '$1 == "VmRSS:" { print $2 * 1024 }' "/proc/$SERVER_PID/status" 2>/dev/null)
      if ! echo "$reply" | grep -q '"choices"'; then
        status="FAILED (warm-up: $(echo "${reply:-no reply}" | head -c 160 | tr '|\n' '/ '))"
      fi
      kill "$SERVER_PID" 2>/dev/null
      for ((i = 0; i < 50; i++)); do kill -0 "$SERVER_PID" 2>/dev/null || break; sleep 0.1; done
      kill -9 "$SERVER_PID" 2>/dev/null
      wait "$SERVER_PID" 2>/dev/null
    fi
    SERVER_PID=""
    if [ -n "$cg" ]; then sleep 0.2; rmdir "$cg" 2>/dev/null || echo "scale-bench: could not remove $cg" >&2; fi
    [ -n "$rss" ] || rss="-"
    [ "$plan" = full ] && [ "$rss" != "-" ] && fullrss=$rss
    if [ "$rss" != "-" ] && [ -n "$fullrss" ]; then ratio=$(awk -v a="$rss" -v b="$fullrss" 'BEGIN { printf "%.2fx", a / b }'); fi
    local eb="-"; [ -n "$ebytes" ] && [ "$ebytes" != "-" ] && eb=$(awk -v b="$ebytes" 'BEGIN { printf "%.1f MiB", b / 1048576 }')
    echo "   $status, load ${load}s, warm-up ${warm}s, VmRSS $(mib "$rss") MiB" >&2
    SERVE_ROWS+=("| $set | $plan | $c | $eb | $(mib "$rss") | $ratio | $load | $warm | $status |")
  done
}

# ---------------------------------------------------------------- the default model, uncapped
if [ "$SKIP_TINY" = 0 ]; then
  SET_GB=$(awk -v b="$(stat -c %s "$TINY/model.safetensors")" 'BEGIN { printf "%.3f", b / 1e9 }')
  run_set tiny "$TINY" "$WORK/tiny.store" -
  serve_set tiny "$WORK/tiny.store" -
fi

# ---------------------------------------------------------------- the big model, capped
CKPT="$WORK/checkpoint"
SHAPE="layers=$LAYERS hidden=$HIDDEN experts=$EXPERTS expert-intermediate=$EXPERT_INTER top-k=$TOPK heads=$HEADS kv-heads=$KV_HEADS head-dim=$HEAD_DIM seed=1"
echo "== $FOURX" >&2
SET_GB=$MODEL_GB
if [ -f "$CKPT/.shape" ] && [ "$(cat "$CKPT/.shape")" = "$SHAPE" ] && [ -f "$CKPT/model.safetensors.index.json" ]; then
  echo "== reusing the checkpoint in $CKPT ($SHAPE)" >&2
else
  rm -rf "$CKPT"
  run_step scale make-checkpoint - none -- "$BIN/make-checkpoint" --out "$CKPT" --layers "$LAYERS" --hidden "$HIDDEN" \
    --experts "$EXPERTS" --expert-intermediate "$EXPERT_INTER" --top-k "$TOPK" --heads "$HEADS" --kv-heads "$KV_HEADS" \
    --head-dim "$HEAD_DIM" --seed 1 --tokenizer-from "$TINY"
  [ -f "$CKPT/model.safetensors.index.json" ] || die "make-checkpoint failed (log: $WORK/logs/scale-make-checkpoint.log)"
  echo "$SHAPE" > "$CKPT/.shape"
fi
ONDISK=$(du -sb "$CKPT" | cut -f1)
echo "== checkpoint: $(awk -v b="$ONDISK" 'BEGIN { printf "%.2f GB", b / 1e9 }') on disk" >&2
CAPPED=$CAP_MB; [ "$CGROUPS" = 1 ] || CAPPED="-"
run_set scale "$CKPT" "$WORK/scale.store" "$CAPPED"
serve_set scale "$WORK/scale.store" "$CAPPED"
# Uncapped too: under the cap every plan bigger than it serves through a cache of the same
# size, so only without it does resident memory show each plan's own bytes.
serve_set scale-uncapped "$WORK/scale.store" -

# ---------------------------------------------------------------- report
ELAPSED=$(awk -v a="$BENCH_START" -v b="$(now)" 'BEGIN { printf "%.0f", b - a }')
{
  echo "## MoEKit on a model bigger than its memory"
  echo
  echo "Shape: $SHAPE, vocab $VOCAB, BF16. $FOURX."
  [ "$CGROUPS" = 1 ] || echo "No cgroup v1 memory controller here: every row ran UNCAPPED."
  echo "Machine: $(nproc) cores, $(awk '/MemTotal/ { printf "%.0f GiB", $2 / 1048576 }' /proc/meminfo), $(uname -r). Work folder: $WORK."
  echo
  echo "| set | step | cap (MiB) | model (GB) | cgroup peak (MiB) | anon peak (MiB) | max RSS (MiB) | under cap | wall (s) | tokens/s | status |"
  echo "|---|---|---|---|---|---|---|---|---|---|---|"
  printf '%s\n' "${ROWS[@]}"
  echo
  echo "cgroup peak: memory.max_usage_in_bytes (page cache included; the kernel reclaims cache at the cap). anon peak: largest sampled total_rss. max RSS: GNU time (anonymous + resident mapped file pages)."
  echo
  echo "| set | serve plan | cap (MiB) | expert bytes | VmRSS after warm-up (MiB) | ratio to full | load (s) | warm-up (s) | status |"
  echo "|---|---|---|---|---|---|---|---|---|"
  printf '%s\n' "${SERVE_ROWS[@]}"
  echo
  if [ ${#MODELINES[@]} -gt 0 ]; then
    echo "Mode lines (stderr lines mentioning streaming or mode):"
    echo
    printf '    %s\n' "${MODELINES[@]}"
  else
    echo "Mode lines: no step printed a line mentioning streaming or mode."
  fi
  echo
  echo "Logs (stdout .out, stderr .log, GNU time .time) in $WORK/logs. Whole benchmark: ${ELAPSED} s ($(awk -v s="$ELAPSED" 'BEGIN { printf "%.1f", s / 60 }') min)."
} | tee "$RESULTS"
