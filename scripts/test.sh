#!/usr/bin/env bash
# README command 2: installs what is needed, fetches the real test assets, builds and runs every test.
# Unit tests and most tool tests run from the debug build; the tool tests that run the forward pass on the
# real model (qeval on SmolLM2-135M) drive the release binaries, since numeric code is tens of times slower
# in debug.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
bash scripts/fetch-assets.sh
swift build -c release
# The real-model tests read SmolLM2 as a Hugging Face directory: imported here by qpack from the GGUF (f32 equals
# transformers' own conversion bit for bit, tested), so no Python is needed.
A=${QKIT_ASSETS:-$HOME/.cache/qkit-assets}
if [[ ! -s $A/smollm2-135m/model.safetensors ]]; then
  "$(swift build -c release --show-bin-path)/qpack" "$A/gguf/SmolLM2-135M-Instruct.Q4_1.gguf" --to safetensors --dtype f32 \
    -o "$A/smollm2-135m"
fi
swift build --build-tests
swift test --skip-build
