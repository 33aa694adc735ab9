#!/usr/bin/env python3
"""Writes dequant-vectors.json: random ggml blocks and gguf-py's dequantization of them (bit patterns).
Run with the peer venv (gguf==0.19.0): python generate_dequant.py > dequant-vectors.json"""
import json, numpy as np
from gguf import GGMLQuantizationType as T, quants, GGML_QUANT_SIZES

rng = np.random.default_rng(7)
# byte offsets of the fp16 scale fields inside each block, forced to finite values
half_fields = {"Q4_0": [0], "Q4_1": [0, 2], "Q5_0": [0], "Q5_1": [0, 2], "Q8_0": [0], "Q2_K": [80, 82],
               "Q3_K": [108], "Q4_K": [0, 2], "Q5_K": [0, 2], "Q6_K": [208]}
out = {}
for name, blocks in [("Q4_0", 2), ("Q4_1", 2), ("Q5_0", 2), ("Q5_1", 2), ("Q8_0", 2), ("Q2_K", 1), ("Q3_K", 1),
                     ("Q4_K", 1), ("Q5_K", 1), ("Q6_K", 1), ("F16", 64), ("BF16", 64)]:
    t = T[name]
    bs, ts = GGML_QUANT_SIZES[t]
    raw = bytearray(rng.integers(0, 256, size=blocks * ts, dtype=np.uint8).tobytes())
    for b in range(blocks):
        for off in half_fields.get(name, []):
            raw[b * ts + off:b * ts + off + 2] = np.float16(rng.normal() * 0.05).tobytes()
    if name in ("F16", "BF16"):
        vals = np.frombuffer(bytes(raw), dtype=np.uint16).copy()
        if name == "F16":
            vals[(vals & 0x7C00) == 0x7C00] &= 0xBFFF  # keep them finite
        raw = bytearray(vals.tobytes())
    y = quants.dequantize(np.frombuffer(bytes(raw), dtype=np.uint8), t).astype(np.float32)
    out[name] = {"elements": blocks * bs, "bytes": bytes(raw).hex(), "values": y.tobytes().hex()}
print(json.dumps(out, indent=1))
