# Reference statistics for qinspect --stats on the real SmolLM2 GGUF, computed with gguf-py's dequantization
# and numpy (float64 moments). Run with the peer venv:
#   ~/.cache/qkit-peers/venv/bin/python Tests/ToolTests/Fixtures/gguf_stats_reference.py > Tests/ToolTests/Fixtures/gguf-stats-reference.json
import json, os, sys
import numpy as np
from gguf import GGUFReader
from gguf.quants import dequantize
path = os.path.expanduser(os.environ.get("QKIT_ASSETS", "~/.cache/qkit-assets")) + "/gguf/SmolLM2-135M-Instruct.Q4_1.gguf"
names = ["blk.0.attn_q.weight", "blk.0.attn_norm.weight", "blk.7.ffn_down.weight", "blk.29.attn_v.weight", "token_embd.weight"]
r = GGUFReader(path)
out = {}
for t in r.tensors:
    if t.name not in names: continue
    x = dequantize(t.data, t.tensor_type).astype(np.float32)
    shape = [int(d) for d in reversed(t.shape)]
    x = x.reshape(shape)
    d = x.astype(np.float64); mean = d.mean(); c = d - mean; m2 = (c * c).mean(); m4 = (c ** 4).mean()
    rec = {"shape": shape, "min": float(x.min()), "max": float(x.max()), "mean": float(mean), "std": float(np.sqrt(m2)),
           "absmax": float(np.abs(x).max()), "zeros": int((x == 0).sum()), "kurtosis": float(m4 / m2 ** 2 - 3)}
    if x.ndim == 2:
        cols = np.abs(x).max(axis=0)
        rec["outlier_channels"] = [int(i) for i in np.argsort(-cols, kind="stable")[:3]]
    out[t.name] = rec
json.dump(out, sys.stdout, indent=1, sort_keys=True)
print()
