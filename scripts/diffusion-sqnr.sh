#!/usr/bin/env bash
# Weight SQNR of the diffusion-transformer recipes on a synthetic FLUX (README, "Diffusion transformers"):
# qsynth → qquant --fake per recipe → mean SQNR over the W4A4 block linears from qinspect --diff --json.
set -euo pipefail
bin=${BIN:-$(swift build --show-bin-path)}
dir=$(mktemp -d)
"$bin/qsynth" --family flux -o "$dir/f" -q
for v in "rtn-int4:--group 64" "rtn-nvfp4:--format nvfp4" "svd-int4-r8:--algo svdquant --rank 8" \
         "svd-int4-r32:--algo svdquant" "svd-nvfp4-r8:--algo svdquant --rank 8 --format nvfp4"; do
  n=${v%%:*}; read -r -a args <<< "${v#*:}"
  start=$(date +%s.%N)
  "$bin/qquant" "$dir/f" "${args[@]}" --fake -o "$dir/$n" -q
  t=$(echo "$(date +%s.%N) - $start" | bc)
  "$bin/qinspect" --diff --json "$dir/f" "$dir/$n" | python3 -c "
import json, sys
d = json.load(sys.stdin)
v = [t['sqnr_db'] for t in d['tensors'] if t['status'] == 'changed' and 'norm' not in t['name']]
print('%-14s %d linears  mean SQNR %.2f dB  %s s' % ('$n', len(v), sum(v) / len(v), '$t'))"
done
rm -rf "$dir"
