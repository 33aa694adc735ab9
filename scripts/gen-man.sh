#!/usr/bin/env bash
# Regenerates man/<tool>.1 from each tool's argument parser (swift-argument-parser's generate-manual),
# so --help and the man pages cannot drift. man/qkit.5 and man/qpack.1 are edited by hand.
set -euo pipefail
cd "$(dirname "$0")/.."
swift build --product generate-manual-tool >/dev/null 2>&1 || swift package plugin --list >/dev/null
swift build >/dev/null
gen=$(find .build -name generate-manual-tool -type f -perm -u+x | head -1)
[[ -n $gen ]] || { echo "gen-man: generate-manual-tool not built (run 'swift package generate-manual' once)" >&2; exit 69; }
bin=$(swift build --show-bin-path)
# qpack.1 was generated once and then edited by hand (its layout tables do not fit the generator).
for t in qinspect qcalib qquant qeval; do
  "$gen" "$bin/$t" --date 2026-11-22 --authors "the qkit developers" -o man >/dev/null
done
ls man
