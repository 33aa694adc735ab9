#!/usr/bin/env bash
# README command 2: installs what is needed, fetches the real test assets, builds and runs every test.
# Unit tests run in a debug build; tests that drive the release binaries on the real model need
# `swift build -c release` first, which this script does.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
bash scripts/fetch-assets.sh
swift build -c release --product qinspect
swift build -c release --product qpack
swift build --build-tests
swift test --skip-build 2>&1 | tee .build/test.log
