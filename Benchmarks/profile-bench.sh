#!/usr/bin/env bash
# Streaming profiler benchmark: generates a random qwen3_moe store of realistic layer shapes
# (24 layers x 32 experts, hidden 1024, experts 512 wide, BF16: about 2.3 GB), then profiles it
# in memory and layer by layer, each in its own process so peak RSS is measured per mode,
# and measures the profiler's overhead on the forward pass.
set -euo pipefail
cd "$(dirname "$0")/.."
work=${1:-/tmp/moekit-profile-bench}
swift build -c release --product store-bench >/dev/null
swift build -c release --product profile-bench >/dev/null
bin=.build/release
if [ ! -d "$work/store" ]; then
  "$bin/store-bench" --layers 24 --experts 32 --hidden 1024 --width 512 --rounds 1 --keep "$work" >/dev/null
fi
"$bin/profile-bench" --store "$work/store" --mode streaming --sequences 16 --length 128 --hidden-mb 16
"$bin/profile-bench" --store "$work/store" --mode memory --sequences 16 --length 128
"$bin/profile-bench" --store "$work/store" --mode overhead --sequences 8 --length 128
