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
swift build --build-tests
swift test --skip-build
