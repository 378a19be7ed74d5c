#!/usr/bin/env bash
# tools/gguf-check/build-llama.sh: builds llama.cpp's llama-perplexity and llama-completion
# from the source vendored in llama-cpp-python's sdist, for checking MoEKit's GGUF exports
# against the program they are meant for. Prints the folder holding the binaries.
# (In this llama.cpp, llama-cli is a chat-only client built with the server, LLAMA_BUILD_SERVER;
# the plain prompt continuation the check needs is llama-completion -no-cnv.)
#
#   bash tools/gguf-check/build-llama.sh [--work DIR]
#
# Work folder (default <repo>/work-data/gguf-check, gitignored) keeps the venv, the sdist and
# the build; a second run reuses them. LLAMA_CPP_PYTHON_VERSION picks the release (default
# 0.3.36; empty for the newest).
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
work="$repo/work-data/gguf-check"
version="${LLAMA_CPP_PYTHON_VERSION-0.3.36}"
while [ $# -gt 0 ]; do
    case "$1" in
        --work) work="$2"; shift 2 ;;
        *) echo "build-llama.sh: unknown argument $1" >&2; exit 2 ;;
    esac
done
mkdir -p "$work"
work="$(cd "$work" && pwd)"
log() { printf '[%s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "error: $*"; exit 1; }

venv="$work/venv"
[ -x "$venv/bin/python" ] || python3 -m venv "$venv"
cmake_bin="$(command -v cmake || true)"
if [ -z "$cmake_bin" ]; then
    [ -x "$venv/bin/cmake" ] || "$venv/bin/pip" install --quiet cmake
    cmake_bin="$venv/bin/cmake"
fi

# The source: --no-binary for llama-cpp-python only (':all:' would also build its build
# requirements, cmake included, from source just to read their metadata).
src="$work/llama_cpp_python-$version/vendor/llama.cpp"
if [ -z "$version" ] || [ ! -f "$src/CMakeLists.txt" ]; then
    spec="llama-cpp-python${version:+==$version}"
    "$venv/bin/pip" download --quiet --no-deps --no-binary llama-cpp-python "$spec" -d "$work/sdist"
    tarball="$(ls "$work"/sdist/llama_cpp_python-*.tar.gz | sort -V | tail -1)"
    tar -xzf "$tarball" -C "$work"
    src="$work/$(basename "$tarball" .tar.gz)/vendor/llama.cpp"
fi
[ -f "$src/CMakeLists.txt" ] || die "no vendor/llama.cpp under $work"
log "llama.cpp source: $src"

# Not GGML_NATIVE: on some VMs -march=native enables AMX the hypervisor does not allow and the
# binaries die with SIGILL. Each instruction set is switched on from /proc/cpuinfo instead.
flags=" $(grep -m1 '^flags' /proc/cpuinfo | cut -d: -f2) "
isa() { local option="$1" on=ON f; shift; for f in "$@"; do case "$flags" in *" $f "*) ;; *) on=OFF ;; esac; done; echo "-D$option=$on"; }
cmake_flags=(-DCMAKE_BUILD_TYPE=Release -DBUILD_SHARED_LIBS=OFF -DGGML_NATIVE=OFF
    "$(isa GGML_SSE42 sse4_2)" "$(isa GGML_AVX avx)" "$(isa GGML_AVX2 avx2)" "$(isa GGML_FMA fma)"
    "$(isa GGML_F16C f16c)" "$(isa GGML_BMI2 bmi2)" "$(isa GGML_AVX_VNNI avx_vnni)"
    "$(isa GGML_AVX512 avx512f avx512cd avx512vl avx512dq avx512bw)"
    -DGGML_AMX_TILE=OFF -DGGML_AMX_INT8=OFF -DGGML_AMX_BF16=OFF
    -DLLAMA_CURL=OFF -DLLAMA_OPENSSL=OFF -DGGML_CCACHE=OFF -DGGML_BLAS=OFF
    -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_SERVER=OFF)
build="$work/llama-build"
stamp="$build/moekit-cmake-flags.txt"
# A build made with other flags or source is started afresh; one made with these is only
# brought up to date (a no-op when it is).
if [ "$(cat "$stamp" 2>/dev/null)" != "$src ${cmake_flags[*]}" ]; then
    rm -rf "$build"
    nice -n 10 "$cmake_bin" -S "$src" -B "$build" "${cmake_flags[@]}" > "$work/cmake.log" 2>&1 ||
        { tail -30 "$work/cmake.log" >&2; die "cmake configure failed ($work/cmake.log)"; }
    printf '%s' "$src ${cmake_flags[*]}" > "$stamp"
fi
nice -n 10 "$cmake_bin" --build "$build" -j2 --target llama-perplexity llama-completion > "$work/build.log" 2>&1 ||
    { tail -30 "$work/build.log" >&2; die "llama.cpp build failed ($work/build.log)"; }
echo "$build/bin"
