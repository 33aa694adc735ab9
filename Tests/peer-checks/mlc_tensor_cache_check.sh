#!/bin/bash
# Packs SmolLM2-135M (q4f16_1) and tiny synthetic Llama/Qwen2 models (q4f32_1, q3f16_1, q4f16_1) with `qpack --to mlc`
# and checks each output with mlc_tensor_cache_check.py (apache-tvm's loaders + MLC-LLM's own quantizer).
# usage: bash Tests/peer-checks/mlc_tensor_cache_check.sh MLC_LLM_GIT_DIR > Tests/peer-checks/mlc_tensor_cache_check.out
set -euo pipefail
MLC=$1
BIN=${BIN:-$(swift build --show-bin-path)}
HERE=$(cd "$(dirname "$0")" && pwd)
T=$(mktemp -d); trap 'rm -rf "$T"' EXIT
source ~/.cache/qkit-peers/venv-tvm/bin/activate
"$BIN/qsynth" --preset tiny -q -o "$T/llama"
"$BIN/qsynth" --preset qwen2-tiny --untied -q -o "$T/qwen2"
run() { # SOURCE PRESET
  "$BIN/qpack" "$1" --to mlc --quantization "$2" -q -o "$T/out"
  python "$HERE/mlc_tensor_cache_check.py" "$MLC" "$1" "$T/out" 2>&1 | grep -v "Compiling quantize"
  rm -rf "$T/out"
}
run ~/.cache/qkit-assets/smollm2-135m q4f16_1
for p in q4f16_1 q4f32_1 q3f16_1; do run "$T/llama" $p; run "$T/qwen2" $p; done
