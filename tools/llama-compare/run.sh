#!/usr/bin/env bash
# tools/llama-compare/run.sh: `moekit bench` against llama.cpp's `llama-bench`, side by side, on
# the same random checkpoint in four formats of equal bits (BF16, 8-bit, two 4-bit), with the
# read memory bandwidth measured in the same run. A benchmark, not a test; see README.md here.
#
#   bash tools/llama-compare/run.sh [--rounds 3] [--threads 2] [--skip-tiny]
#                                   [--work DIR] [--moekit PATH]
#
# Everything it builds, downloads and converts goes to the work folder (default
# <repo>/work-data/llama-compare, gitignored) and is reused by the next run; only the
# measurements are made anew. Needs PyPI (llama-cpp-python's sdist for llama.cpp's source,
# the converter's Python packages), a C/C++ compiler and Swift.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
work="$repo/work-data/llama-compare"
moekit="$repo/.build/release/moekit"
rounds=3
threads=2
skip_tiny=0
# The llama-cpp-python release whose vendored llama.cpp is built (the one this was run with);
# LLAMA_CPP_PYTHON_VERSION= (empty) takes the newest.
llama_cpp_python_version="${LLAMA_CPP_PYTHON_VERSION-0.3.36}"
# Benchmark sizes, as in llama-bench's defaults shrunk for a 2-core machine.
prompt=128
gen=32
reps=3

usage() { sed -n '2,7p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; }
while [ $# -gt 0 ]; do
    case "$1" in
        --rounds) rounds="$2"; shift 2 ;;
        --threads) threads="$2"; shift 2 ;;
        --skip-tiny) skip_tiny=1; shift ;;
        --work) work="$2"; shift 2 ;;
        --moekit) moekit="$2"; shift 2 ;;
        -h|--help) usage; exit 0 ;;
        *) echo "run.sh: unknown argument $1" >&2; usage >&2; exit 2 ;;
    esac
done
mkdir -p "$work"
work="$(cd "$work" && pwd)"
log() { printf '[%s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "error: $*"; exit 1; }
# One run per work folder: two at once would share files and, worse, each other's cores.
exec 9> "$work/.run.lock"
flock -n 9 || die "another run.sh is using $work (lock $work/.run.lock); wait for it or pass another --work"

# Stage timings of this run: "stage<TAB>seconds<TAB>what happened".
timings="$work/timings-this-run.tsv"
: > "$timings"
stage_start=0
stage_name=""
begin() { stage_name="$1"; stage_start=$(date +%s); log "== $1"; }
end() { printf '%s\t%s\t%s\n' "$stage_name" "$(( $(date +%s) - stage_start ))" "${1:-done}" >> "$timings"; }

cpu_flags=" $(grep -m1 '^flags' /proc/cpuinfo | cut -d: -f2) "
has_flag() { case "$cpu_flags" in *" $1 "*) return 0 ;; *) return 1 ;; esac; }

# ---------------------------------------------------------------------------------------------
# 1. Python environment for the converter (and cmake, when the system has none).
venv="$work/venv"
py="$venv/bin/python"
begin "python venv"
if [ -f "$venv/.deps-ok" ]; then
    end "reused"
else
    [ -x "$py" ] || python3 -m venv "$venv"
    # torch pinned: 2.13.0 resolves to the CPU build here; unpinned pip pulls a 3 GB CUDA one.
    # transformers as the vendored converter's requirements file pins it.
    nice -n 10 "$venv/bin/pip" install --quiet torch==2.13.0 transformers==4.57.6 safetensors \
        "numpy<2.3" sentencepiece "protobuf<5"
    if ! command -v cmake >/dev/null 2>&1; then
        "$venv/bin/pip" install --quiet cmake
    fi
    touch "$venv/.deps-ok"
    end "installed"
fi
cmake_bin="$(command -v cmake || true)"
[ -n "$cmake_bin" ] || cmake_bin="$venv/bin/cmake"
[ -x "$cmake_bin" ] || { "$venv/bin/pip" install --quiet cmake; cmake_bin="$venv/bin/cmake"; }

# ---------------------------------------------------------------------------------------------
# 2. llama.cpp's source, vendored in llama-cpp-python's sdist.
begin "llama.cpp source"
src="$(ls -d "$work"/llama_cpp_python-*/vendor/llama.cpp 2>/dev/null | sort -V | tail -1 || true)"
if [ -n "$llama_cpp_python_version" ] && [ -d "$work/llama_cpp_python-$llama_cpp_python_version/vendor/llama.cpp" ]; then
    src="$work/llama_cpp_python-$llama_cpp_python_version/vendor/llama.cpp"
fi
if [ -n "$src" ] && [ -f "$src/CMakeLists.txt" ] && { [ -z "$llama_cpp_python_version" ] || [[ "$src" == *"-$llama_cpp_python_version/"* ]]; }; then
    end "reused"
else
    spec="llama-cpp-python${llama_cpp_python_version:+==$llama_cpp_python_version}"
    # --no-binary for this one package only: with ':all:' pip would also build the sdist's
    # build requirements (cmake itself) from source just to read its metadata.
    "$venv/bin/pip" download --quiet --no-deps --no-binary llama-cpp-python "$spec" -d "$work/sdist"
    tarball="$(ls "$work"/sdist/llama_cpp_python-*.tar.gz | sort -V | tail -1)"
    tar -xzf "$tarball" -C "$work"
    src="$work/$(basename "$tarball" .tar.gz)/vendor/llama.cpp"
    [ -f "$src/CMakeLists.txt" ] || die "no vendor/llama.cpp in $tarball"
    end "downloaded $(basename "$tarball")"
fi
log "llama.cpp source: $src"

# ---------------------------------------------------------------------------------------------
# 3. Build llama-bench and llama-quantize. Not GGML_NATIVE: on some VMs -march=native enables
# AMX that the hypervisor advertises but does not allow, and the binaries die with SIGILL.
# Each instruction set is switched on from /proc/cpuinfo instead; AMX is always off.
begin "llama.cpp build"
isa=()
enabled=()
set_isa() { # option, cpu flags that must all be present
    local option="$1" on=ON flag
    shift
    for flag in "$@"; do has_flag "$flag" || on=OFF; done
    isa+=("-D$option=$on")
    [ "$on" = ON ] && enabled+=("${option#GGML_}")
    return 0
}
set_isa GGML_SSE42 sse4_2
set_isa GGML_AVX avx
set_isa GGML_AVX2 avx2
set_isa GGML_FMA fma
set_isa GGML_F16C f16c
set_isa GGML_BMI2 bmi2
set_isa GGML_AVX_VNNI avx_vnni
set_isa GGML_AVX512 avx512f avx512cd avx512vl avx512dq avx512bw
set_isa GGML_AVX512_VBMI avx512f avx512_vbmi
set_isa GGML_AVX512_VNNI avx512f avx512_vnni
set_isa GGML_AVX512_BF16 avx512f avx512_bf16
isa+=(-DGGML_AMX_TILE=OFF -DGGML_AMX_INT8=OFF -DGGML_AMX_BF16=OFF)
cmake_flags=(-DCMAKE_BUILD_TYPE=Release -DBUILD_SHARED_LIBS=OFF -DGGML_NATIVE=OFF "${isa[@]}"
    -DLLAMA_CURL=OFF -DLLAMA_OPENSSL=OFF -DGGML_CCACHE=OFF -DGGML_BLAS=OFF
    -DGGML_CUDA=OFF -DGGML_VULKAN=OFF -DGGML_METAL=OFF -DGGML_BACKEND_DL=OFF
    -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_SERVER=OFF)
log "instruction sets enabled: ${enabled[*]}"
build="$work/llama-build"
bench_bin="$build/bin/llama-bench"
quantize_bin="$build/bin/llama-quantize"
flags_file="$build/moekit-cmake-flags.txt"
if [ -x "$bench_bin" ] && [ -x "$quantize_bin" ] && [ -f "$flags_file" ] &&
   [ "$(cat "$flags_file")" = "$src ${cmake_flags[*]}" ]; then
    end "reused"
else
    rm -rf "$build"
    nice -n 10 "$cmake_bin" -S "$src" -B "$build" "${cmake_flags[@]}" > "$work/llama-cmake.log" 2>&1 ||
        { tail -30 "$work/llama-cmake.log" >&2; die "cmake configure failed (log: $work/llama-cmake.log)"; }
    nice -n 10 "$cmake_bin" --build "$build" --config Release -j2 --target llama-bench llama-quantize \
        > "$work/llama-build.log" 2>&1 ||
        { tail -30 "$work/llama-build.log" >&2; die "llama.cpp build failed (log: $work/llama-build.log)"; }
    printf '%s' "$src ${cmake_flags[*]}" > "$flags_file"
    end "built"
fi
printf '%s\n' "${cmake_flags[*]}" > "$work/cmake-flags.txt"

# ---------------------------------------------------------------------------------------------
# 4. MoEKit: the binary (built if missing), copied so a rebuild during the run cannot swap it.
begin "moekit binary"
if [ ! -x "$moekit" ]; then
    if [ "$moekit" = "$repo/.build/release/moekit" ]; then
        (cd "$repo" && swift build -c release --product moekit)
    else
        die "--moekit $moekit is not an executable"
    fi
fi
mkdir -p "$work/bin"
cp "$moekit" "$work/bin/moekit.tmp" && mv "$work/bin/moekit.tmp" "$work/bin/moekit"
# What was copied: the binary's own tree (it may be another checkout than this script's) and
# whether that tree had uncommitted changes to tracked files at the time.
bin_dir="$(dirname "$moekit")"
if sha="$(git -C "$bin_dir" rev-parse --short HEAD 2>/dev/null)"; then
    [ -z "$(git -C "$bin_dir" status --porcelain --untracked-files=no 2>/dev/null)" ] || sha="$sha + uncommitted changes"
else
    sha="unknown tree"
fi
moekit_info="$moekit, built $(stat -c %y "$moekit" | cut -d. -f1) in a tree at $sha"
mk="$work/bin/moekit"
moekit_thread_flag=()
if "$mk" bench --help 2>&1 | grep -q -- '--threads'; then
    moekit_thread_flag=(-t "$threads")
else
    log "moekit bench has no --threads: it runs with its default thread count"
fi
end "copied ($moekit_info)"

# The checkpoint writer, built in the work folder (it depends on nothing but Foundation).
begin "make-checkpoint build"
make_checkpoint="$work/swift-build/release/make-checkpoint"
(cd "$repo" && nice -n 10 swift build -c release --product make-checkpoint --scratch-path "$work/swift-build" \
    > "$work/make-checkpoint-build.log" 2>&1) || { tail -20 "$work/make-checkpoint-build.log" >&2; die "make-checkpoint build failed"; }
end "built or up to date"

# ---------------------------------------------------------------------------------------------
# 5. The checkpoints. "mid": Qwen3-30B-A3B scaled down (hidden 1024 instead of 2048, 64
# experts x 384 instead of 128 x 768, top-8, 16 query / 4 KV heads of 64, 12 layers, untied
# head, vocabulary 49,152 rows: the tokenizer's 8,192 tokens padded). "tiny": the bundled
# default model (tied head).
shapes=(mid)
[ "$skip_tiny" = 1 ] || shapes+=(tiny)
mid_args=(--layers 12 --hidden 1024 --experts 64 --expert-intermediate 384 --top-k 8
    --heads 16 --kv-heads 4 --head-dim 64 --intermediate 3072 --vocabulary 49152 --seed 1)
tokenizer="$repo/models/moekit-tiny"
# What the checkpoint is made from, independent of where this checkout lies.
mid_stamp="${mid_args[*]} tokenizer $(cat "$tokenizer/tokenizer.json" "$tokenizer/config.json" | sha256sum | cut -c1-16)"
checkpoint() { # shape -> folder
    case "$1" in
        mid) echo "$work/checkpoints/mid" ;;
        tiny) echo "$repo/models/moekit-tiny" ;;
    esac
}
gguf_dir="$work/gguf"
stores="$work/stores"
begin "checkpoint mid"
mid="$(checkpoint mid)"
if [ -f "$mid/.complete" ] && [ "$(cat "$mid/.complete")" = "$mid_stamp" ]; then
    end "reused"
else
    # A new checkpoint: what was made from an earlier one is stale.
    rm -rf "$mid" "$stores/mid.store" "$stores/mid.imported"
    rm -f "$gguf_dir"/mid-*.gguf
    nice -n 10 "$make_checkpoint" --out "$mid" "${mid_args[@]}" --tokenizer-from "$tokenizer" >&2
    printf '%s' "$mid_stamp" > "$mid/.complete"
    end "written"
fi

# ---------------------------------------------------------------------------------------------
# 6. GGUF: BF16 by the vendored converter, then Q8_0, Q4_0 and Q4_K_M by llama-quantize.
# The converter runs from a copy in the work folder, patched in one place: the tokenizer's
# pre-tokenizer hash is not in its list of known models (it refuses such a tokenizer); the
# copy falls back to "gpt-2", which is what the tokenizer is (byte-level BPE, GPT-2 regex).
begin "converter copy"
converter="$work/converter"
if [ -f "$converter/.patched" ] && [ "$(cat "$converter/.patched")" = "$src" ]; then
    end "reused"
else
    rm -rf "$converter"
    mkdir -p "$converter"
    cp "$src/convert_hf_to_gguf.py" "$converter/"
    cp -r "$src/conversion" "$converter/"
    ln -s "$src/gguf-py" "$converter/gguf-py"
    "$py" - "$converter/conversion/base.py" <<'PY'
import sys
path = sys.argv[1]
text = open(path).read()
old = '            raise NotImplementedError("BPE pre-tokenizer was not recognized - update get_vocab_base_pre()")'
new = ('            logger.warning("llama-compare: unknown pre-tokenizer hash, using gpt-2")\n'
       '            res = "gpt-2"')
if text.count(old) != 1:
    sys.exit("llama-compare: the converter's pre-tokenizer check changed; update the patch in run.sh")
open(path, "w").write(text.replace(old, new))
PY
    printf '%s' "$src" > "$converter/.patched"
    end "copied and patched"
fi

formats=(bf16 q8_0 q4_0 q4_k_m) # GGUF files, paired with MoEKit plans below
plan_for() {
    case "$1" in
        bf16) echo full ;; q8_0) echo q8g64 ;; q4_0) echo q4g32 ;; q4_k_m) echo q4g64 ;;
    esac
}
mkdir -p "$gguf_dir"
for shape in "${shapes[@]}"; do
    begin "gguf $shape"
    bf16="$gguf_dir/$shape-bf16.gguf"
    did=""
    if [ ! -f "$bf16" ]; then
        # The copy imports its gguf-py through the symlink beside it, as the original does.
        nice -n 10 "$py" "$converter/convert_hf_to_gguf.py" \
            "$(checkpoint "$shape")" --outtype bf16 --outfile "$bf16.tmp" > "$work/convert-$shape.log" 2>&1 ||
            { tail -30 "$work/convert-$shape.log" >&2; die "conversion of $shape failed (log: $work/convert-$shape.log)"; }
        mv "$bf16.tmp" "$bf16"
        did="converted"
    fi
    for format in q8_0 q4_0 q4_k_m; do
        out="$gguf_dir/$shape-$format.gguf"
        [ -f "$out" ] && continue
        upper="$(echo "$format" | tr a-z A-Z)"
        nice -n 10 "$quantize_bin" "$bf16" "$out.tmp" "$upper" 2 > "$work/quantize-$shape-$format.log" 2>&1 ||
            { tail -20 "$work/quantize-$shape-$format.log" >&2; die "llama-quantize $upper failed"; }
        mv "$out.tmp" "$out"
        did="$did $format"
    done
    end "${did:-reused}"
done

# ---------------------------------------------------------------------------------------------
# 7. MoEKit stores: import, a routing profile (slim needs one; with --keep 1 and uniform bits it
# only quantizes), and plans of the GGUF files' bits, dense weights quantized too.
mkdir -p "$stores"
plan_args() {
    case "$1" in
        q8g64) echo "--uniform-bits 8 --dense-bits 8 --group 64" ;;
        q4g32) echo "--uniform-bits 4 --dense-bits 4 --group 32" ;;
        q4g64) echo "--uniform-bits 4 --dense-bits 4 --group 64" ;;
    esac
}
for shape in "${shapes[@]}"; do
    store="$stores/$shape.store"
    begin "store $shape"
    did=""
    if [ ! -f "$stores/$shape.imported" ]; then
        nice -n 10 "$mk" import --model "$(checkpoint "$shape")" --store "$store" >&2
        touch "$stores/$shape.imported"
        did="imported"
    fi
    if ! "$mk" inspect --store "$store" | grep -E '^profiles ' | grep -qw python; then
        nice -n 10 "$mk" profile --store "$store" --calib "$repo/calib/python" --max-samples 8 \
            --sequence-length 128 --name python "${moekit_thread_flag[@]}" >&2
        did="$did profiled"
    fi
    for plan in q8g64 q4g32 q4g64; do
        "$mk" inspect --store "$store" --plan "$plan" > /dev/null 2>&1 && continue
        # shellcheck disable=SC2046
        nice -n 10 "$mk" slim --store "$store" --profile python --keep 1 $(plan_args "$plan") --name "$plan" >&2
        did="$did $plan"
    done
    end "${did:-reused}"
done

# ---------------------------------------------------------------------------------------------
# 8. Read bandwidth, a small C program.
begin "readbw build"
readbw="$work/bin/readbw"
march=()
has_flag avx2 && march=(-mavx2)
cc -O3 "${march[@]}" -pthread -o "$readbw" "$here/readbw.c"
end "compiled"

# ---------------------------------------------------------------------------------------------
# 9. Interleaved rounds: each round measures the bandwidth once, then for every shape and
# format MoEKit and then llama.cpp, so slow drift on a shared machine hits both alike.
run_dir="$work/runs/$(date +%Y%m%d-%H%M%S)"
mkdir -p "$run_dir"
log "measurements: $run_dir"
bench_timeout=1800
for r in $(seq 1 "$rounds"); do
    begin "round $r"
    d="$run_dir/round-$r"
    mkdir -p "$d"
    cut -d' ' -f1 /proc/loadavg > "$d/load-start.txt" # other work on the machine moves the numbers
    "$readbw" --threads "$threads" --json > "$d/readbw.json"
    log "$(cat "$d/readbw.json")"
    for shape in "${shapes[@]}"; do
        for format in "${formats[@]}"; do
            plan="$(plan_for "$format")"
            if ! timeout "$bench_timeout" "$mk" bench --store "$stores/$shape.store" --plan "$plan" \
                    -p "$prompt" -n "$gen" -r "$reps" "${moekit_thread_flag[@]}" --json \
                    > "$d/$shape-$plan.moekit.json" 2> "$d/$shape-$plan.moekit.err"; then
                log "moekit bench $shape $plan failed (see $d/$shape-$plan.moekit.err)"
                rm -f "$d/$shape-$plan.moekit.json"
            fi
            if ! timeout "$bench_timeout" "$bench_bin" -m "$gguf_dir/$shape-$format.gguf" \
                    -p "$prompt" -n "$gen" -r "$reps" -t "$threads" -o json \
                    > "$d/$shape-$format.llama.json" 2> "$d/$shape-$format.llama.err"; then
                log "llama-bench $shape $format failed (see $d/$shape-$format.llama.err)"
                rm -f "$d/$shape-$format.llama.json"
            fi
            log "$shape $format/$plan done"
        done
    done
    cut -d' ' -f1 /proc/loadavg > "$d/load-end.txt"
    end "measured"
done

# ---------------------------------------------------------------------------------------------
# 10. The table: medians over rounds.
begin "table"
{
    echo "cpu=$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ *//')"
    echo "threads=$threads"
    echo "rounds=$rounds"
    echo "isa=${enabled[*]}"
    echo "moekit=$moekit_info"
    echo "llama_cpp_python=$(basename "$(dirname "$(dirname "$src")")")"
} > "$run_dir/meta.txt"
PYTHONPATH="$src/gguf-py" "$py" "$here/table.py" --run "$run_dir" --gguf "$gguf_dir" \
    --shapes "${shapes[*]}" --prompt "$prompt" --gen "$gen" > "$run_dir/results.md"
cp "$run_dir/results.md" "$work/results.md"
end "written"

cat "$work/results.md"
echo
echo "Stage times (this run):"
awk -F'\t' '{ printf "  %-24s %6d s  %s\n", $1, $2, $3 }' "$timings"
echo "Work folder: $work ($(du -sh "$work" | cut -f1))"
