#!/bin/sh
# qquant --kv-cache fp8 (per tensor, per head) + qpack --to compressed-tensors against the real loader: the tiny
# Llama fixture (int4 g32 weights, fp8 KV scales from seeded ids) is packed, loaded with transformers +
# compressed-tensors on CPU (the peer venv), its k_scale/v_scale compared with the files' and its perplexity
# with qeval's on the qkit checkpoint and on the export (and without the KV cache). Run from the package root
# after `swift build -c release`; the output is committed as kv_cache_ct_check.out.
set -eu
BIN=${QKIT_BIN:-.build/release}
PY=${QKIT_PEER_PYTHON:-$HOME/.cache/qkit-peers/venv/bin/python}
MODEL=Tests/CommonTests/Fixtures/model/llama3
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT
"$PY" -c "import random; random.seed(1); print(' '.join(str(random.randrange(3, 320)) for _ in range(512)))" > "$T/ids"
ppl() { "$BIN/qeval" "$1" --ids "$T/ids" --seqlen 64 --json -q | "$PY" -c "import json,sys; print(repr(json.load(sys.stdin)['perplexity']))"; }
"$BIN/qquant" "$MODEL" --group 32 -q -o "$T/plain"
echo "qeval, no KV quantization: $(ppl "$T/plain")"
for g in tensor head; do
    "$BIN/qquant" "$MODEL" --group 32 --kv-cache fp8 --kv-granularity $g --ids "$T/ids" --samples 4 --seqlen 64 -q -o "$T/q-$g"
    "$BIN/qpack" "$T/q-$g" --to compressed-tensors -q -o "$T/ct-$g"
    echo "fp8 KV per $g: qeval qkit $(ppl "$T/q-$g"), qeval compressed-tensors $(ppl "$T/ct-$g")"
    "$PY" Tests/peer-checks/kv_cache_ct_check.py "$T/ct-$g" "$T/ids" 64 2>/dev/null | tail -1
done
