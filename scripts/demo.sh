#!/usr/bin/env bash
# One command for a fresh machine: install the system libraries if missing, build MoEKit in
# release mode, and run the main job on the bundled default model: import it into an expert
# store, profile the python and german calibration sets, build plans with several methods
# and evaluate them against the full model.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh
swift build -c release --product moekit
bin=.build/release/moekit
"$bin" inspect
echo
"$bin" demo --store "${MOEKIT_DEMO_STORE:-moekit-demo.store}"
echo
echo '$ moekit generate "def fibonacci(" --max-tokens 48'
"$bin" generate "def fibonacci(" --max-tokens 48
