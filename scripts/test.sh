#!/usr/bin/env bash
# README command 2: installs what is needed, fetches the real test assets, builds and runs every test.
# Everything runs from one debug build: unit tests, and tool tests that drive the built binaries on
# the real model (SmolLM2-135M GGUF import, statistics against numpy fixtures).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
bash scripts/fetch-assets.sh
swift build --build-tests
swift test --skip-build
