#!/usr/bin/env python3
"""Regenerates encode.bin, the reference encodings that ConversionTests checks Conversion.encode against.

Run with a Python that has numpy, torch (>= 2.7: float8_e8m0fnu) and ml_dtypes (>= 0.5):
    PYTHONPATH=... python generate.py
The references are the peers' own casts:
  F16, BF16, F8_E4M3 (torch.float8_e4m3fn), F8_E5M2, F8_E8M0 (torch.float8_e8m0fnu),
  F8_E4M3FNUZ, F8_E5M2FNUZ                      -> torch `Tensor.to(dtype)` on CPU
  F4 (E2M1), F6_E2M3, F6_E3M2                   -> ml_dtypes `astype` (torch cannot cast to them)
Layout (little-endian): b"QKCONV01", u32 count N, then arrays in this order:
  input f32 bits u32[N], f16 u16[N], bf16 u16[N], e4m3 u8[N], e5m2 u8[N], e8m0 u8[N],
  e4m3fnuz u8[N], e5m2fnuz u8[N], f4 u8[N] (one code per byte), f6e2m3 u8[N], f6e3m2 u8[N]
"""
import os, struct
import numpy as np
import torch
import ml_dtypes

N = 65536
rng = np.random.default_rng(20240601)
vals = []

def f32(bits):
    return np.array(bits, dtype=np.uint32).view(np.float32)

# 1. specials
special_bits = [0x00000000, 0x80000000, 0x7F800000, 0xFF800000, 0x7FC00000, 0xFFC00000, 0x7F800001,
                0xFF800001, 0x7FA00000, 0x7F802000, 0x7F7FFFFF, 0xFF7FFFFF, 0x00800000, 0x00000001,
                0x80000001, 0x007FFFFF, 0x3F800000]
vals.append(f32(special_bits))
vals.append(np.array([448, 449, 464, 465, 480, 57344, 61439, 61440, 65504, 65519, 65520, 6, 7, 5, 0.25,
                      0.75, 3.5, 7.5, 8, 28, 30, 32, 1e10, -1e10, 1.5, 0.5, 2 ** -127, 2 ** -126, 1.5 * 2 ** -127,
                      3 * 2 ** -128, 2 ** 127 * 1.5, 2 ** 127 * 1.75], dtype=np.float32))

# 2. every value of the narrow formats, the midpoints between neighbours, and one float ulp either side

for name, nb in [("float8_e4m3fn", 8), ("float8_e5m2", 8), ("float8_e4m3fnuz", 8), ("float8_e5m2fnuz", 8),
                 ("float4_e2m1fn", 4), ("float6_e2m3fn", 6), ("float6_e3m2fn", 6)]:
    dt = getattr(ml_dtypes, name)
    codes = np.arange(1 << nb, dtype=np.uint8)
    v = codes.view(dt).astype(np.float32)
    v = np.unique(v[np.isfinite(v)])
    mids = ((v[:-1].astype(np.float64) + v[1:]) / 2).astype(np.float32)
    top = v.max()
    vals += [v, mids, np.nextafter(mids, np.float32(np.inf)), np.nextafter(mids, np.float32(-np.inf)),
             np.array([top * 1.0625, top * 1.125, top * 1.5, top * 2], dtype=np.float32)]

# e8m0 boundaries: 1.5 * 2^e and its neighbours, across the whole exponent range
e = np.arange(-149, 128, dtype=np.float64)
b = (1.5 * 2.0 ** e).astype(np.float32)
vals += [b, np.nextafter(b, np.float32(np.inf)), np.nextafter(b, np.float32(0))]

# 3. f16 and bf16 ties: midpoints of random neighbours, and their float neighbours
h = rng.integers(0, 0x7C00, 3000, dtype=np.uint16).view(np.float16).astype(np.float32)
hn = np.nextafter(h.astype(np.float16), np.float16(np.inf)).astype(np.float32)
hm = ((h.astype(np.float64) + hn) / 2).astype(np.float32)
vals += [hm, np.nextafter(hm, np.float32(np.inf)), np.nextafter(hm, np.float32(0))]
bb = rng.integers(0, 0x7F80, 3000, dtype=np.uint32)
bm = ((bb << 16) | 0x8000).astype(np.uint32).view(np.float32)
vals += [bm, np.nextafter(bm, np.float32(np.inf)), np.nextafter(bm, np.float32(0))]

v = np.concatenate([np.asarray(x, dtype=np.float32) for x in vals])
signs = rng.integers(0, 2, v.size).astype(bool)
v = np.concatenate([v, -v[signs]])

# 4. random magnitudes over the interesting exponent range, then fully random bit patterns
k = 16000
ex = rng.integers(-150, 20, k)
mant = rng.random(k) + 1.0
r = (mant * 2.0 ** ex).astype(np.float32) * np.where(rng.random(k) < 0.5, -1, 1).astype(np.float32)
rest = N - v.size - r.size
assert rest > 0, rest
rb = rng.integers(0, 1 << 32, rest, dtype=np.uint64).astype(np.uint32).view(np.float32)
x = np.concatenate([v, r, rb]).astype(np.float32)
assert x.size == N

t = torch.from_numpy(x.copy())
def tb(dt):
    return t.to(dt).view(torch.uint8).numpy().copy()
f16 = t.to(torch.float16).view(torch.int16).numpy().view(np.uint16)
bf16 = t.to(torch.bfloat16).view(torch.int16).numpy().view(np.uint16)
arrays = [x.view(np.uint32), f16, bf16, tb(torch.float8_e4m3fn), tb(torch.float8_e5m2), tb(torch.float8_e8m0fnu),
          tb(torch.float8_e4m3fnuz), tb(torch.float8_e5m2fnuz),
          x.astype(ml_dtypes.float4_e2m1fn).view(np.uint8), x.astype(ml_dtypes.float6_e2m3fn).view(np.uint8),
          x.astype(ml_dtypes.float6_e3m2fn).view(np.uint8)]
out = os.path.join(os.path.dirname(os.path.abspath(__file__)), "encode.bin")
with open(out, "wb") as f:
    f.write(b"QKCONV01")
    f.write(struct.pack("<I", N))
    for a in arrays:
        f.write(np.ascontiguousarray(a).astype(a.dtype.newbyteorder("<")).tobytes())
print(out, os.path.getsize(out), "bytes;", "torch", torch.__version__, "ml_dtypes", ml_dtypes.__version__)
