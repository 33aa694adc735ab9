"""Reference codes and scales for qkit's number formats, from compressed-tensors (the peer qkit follows).

Writes Tests/CommonTests/Fixtures/quant/vectors.json: for each case the f32 input matrix, the codes (qkit's
convention: I8 for symmetric INT, U8 for asymmetric INT = compressed-tensors' signed code + 2^(b-1), the FP8
bit pattern, the E2M1 nibble), the stored scales (f32 bits, or the F8_E4M3 / E8M0 code), zero points and the
NVFP4 global scale.

INT, FP8, FP4 and NVFP4 use compressed-tensors' own calculate_qparams / generate_gparam / quantize. MXFP4/MXFP8
scales follow the OCP MX v1.0 rule qkit implements (2^(floor(log2 amax) - emax)); compressed-tensors instead
rounds amax up to the next power of two when its mantissa is >= 1.75 (round_to_power_2), so only the element
rounding (cast_to_fp4, torch's float8 cast) comes from the peer there.

usage: ~/.cache/qkit-peers/venv/bin/python Tests/peer-checks/quant_vectors.py
"""
import json, math, os, struct
import torch
from compressed_tensors.quantization import QuantizationArgs
from compressed_tensors.quantization.lifecycle.forward import quantize
from compressed_tensors.quantization.utils.helpers import calculate_qparams, generate_gparam
from compressed_tensors.quantization.quant_args import FP4_E2M1_DATA
from compressed_tensors.compressors.nvfp4.helpers import pack_fp4_to_uint8

OUT = os.path.join(os.path.dirname(__file__), "../CommonTests/Fixtures/quant/vectors.json")


def f32bits(x):
    return struct.unpack("<I", struct.pack("<f", float(x)))[0]


def e2m1_codes(q):
    """E2M1 codes of FP4-valued tensor q, from compressed-tensors' own packer (low nibble = even column)."""
    packed = pack_fp4_to_uint8(q.reshape(-1, 2).float()).flatten().tolist()
    return [c for b in packed for c in (b & 0xF, b >> 4)]


def matrix(seed, n, k, outliers=True):
    g = torch.Generator().manual_seed(seed)
    w = torch.randn(n, k, generator=g) * 0.05
    if outliers:
        w[0, 3] = 0.9
        w[1, 5] = -0.7
        w[n - 1, k - 1] = 0.0
    w[2 % n, :8] = 0  # an all-zero stretch
    return w.float()


def ct_case(name, w, args, scheme, kind):
    n, k = w.shape
    strategy = args.strategy.value if hasattr(args.strategy, "value") else args.strategy
    if strategy in ("group", "tensor_group"):
        G = args.group_size
        wg = w.view(n, k // G, G)
        mn, mx = wg.amin(-1), wg.amax(-1)
    elif strategy == "channel":
        mn, mx = w.amin(-1, keepdim=True), w.amax(-1, keepdim=True)
    else:
        mn, mx = w.min().reshape(1, 1), w.max().reshape(1, 1)
    gs = None
    if kind == "nvfp4":
        gs = generate_gparam(w.min(), w.max())
    scale, zp = calculate_qparams(mn, mx, args, global_scale=gs)
    q = quantize(w, scale, zp, args, global_scale=gs)
    case = {"name": name, "scheme": scheme, "shape": [n, k], "input": [f32bits(x) for x in w.flatten().tolist()]}
    if kind == "int":
        b = args.num_bits
        if args.symmetric:
            case["codes"] = [int(c) & 0xFF for c in q.flatten().tolist()]
        else:
            case["codes"] = [int(c) + (1 << (b - 1)) for c in q.flatten().tolist()]
            case["zero_points"] = [int(z) + (1 << (b - 1)) for z in zp.flatten().tolist()]
        case["scales"] = [f32bits(s) for s in scale.flatten().tolist()]
    elif kind == "fp8":
        case["codes"] = q.to(torch.float8_e4m3fn).view(torch.uint8).flatten().tolist()
        case["scales"] = [f32bits(s) for s in scale.flatten().tolist()]
    elif kind == "fp4":
        case["codes"] = e2m1_codes(q)
        case["scales"] = [f32bits(s) for s in scale.flatten().tolist()]
    elif kind == "nvfp4":
        case["codes"] = e2m1_codes(q)
        case["scales"] = scale.to(torch.float8_e4m3fn).view(torch.uint8).flatten().tolist()
        case["global_scale"] = f32bits(gs.item())
    return case


def mx_case(name, w, bits):
    n, k = w.shape
    emax = 2 if bits == 4 else 8
    wg = w.view(n, k // 32, 32)
    amax = wg.abs().amax(-1)
    codes, scales = [], []
    for r in range(n):
        for g in range(k // 32):
            a = amax[r, g].item()
            e = (math.frexp(a)[1] - 1 - emax) if a > 0 else -127
            c = min(max(e + 127, 0), 254)
            scales.append(c)
            x = wg[r, g] / torch.tensor(2.0 ** (c - 127))
            if bits == 4:
                y = FP4_E2M1_DATA.cast_to_fp4(torch.clamp(x, -6, 6))
                codes += e2m1_codes(y)
            else:
                codes += torch.clamp(x, -448, 448).to(torch.float8_e4m3fn).view(torch.uint8).tolist()
    return {"name": name, "scheme": f"mxfp{bits}:g32", "shape": [n, k], "input": [f32bits(x) for x in w.flatten().tolist()],
            "codes": codes, "scales": scales}


def main():
    torch.manual_seed(0)
    cases = []
    w = matrix(1, 4, 64)
    cases.append(ct_case("int4 sym g32", w, QuantizationArgs(num_bits=4, symmetric=True, strategy="group", group_size=32), "int4:g32:sym", "int"))
    cases.append(ct_case("int4 asym g32", w, QuantizationArgs(num_bits=4, symmetric=False, strategy="group", group_size=32), "int4:g32:asym", "int"))
    cases.append(ct_case("int3 asym g16", w, QuantizationArgs(num_bits=3, symmetric=False, strategy="group", group_size=16), "int3:g16:asym", "int"))
    cases.append(ct_case("int2 sym g16", w, QuantizationArgs(num_bits=2, symmetric=True, strategy="group", group_size=16), "int2:g16:sym", "int"))
    cases.append(ct_case("int8 sym channel", w, QuantizationArgs(num_bits=8, symmetric=True, strategy="channel"), "int8:ch:sym", "int"))
    cases.append(ct_case("int8 asym tensor", w, QuantizationArgs(num_bits=8, symmetric=False, strategy="tensor"), "int8:tensor:asym", "int"))
    cases.append(ct_case("fp8 channel", w, QuantizationArgs(num_bits=8, type="float", symmetric=True, strategy="channel"), "fp8:ch", "fp8"))
    cases.append(ct_case("fp8 tensor", w, QuantizationArgs(num_bits=8, type="float", symmetric=True, strategy="tensor"), "fp8:tensor", "fp8"))
    cases.append(ct_case("fp4 g32", w, QuantizationArgs(num_bits=4, type="float", symmetric=True, strategy="group", group_size=32), "fp4:g32", "fp4"))
    nv = QuantizationArgs(num_bits=4, type="float", symmetric=True, strategy="tensor_group", group_size=16, scale_dtype=torch.float8_e4m3fn)
    cases.append(ct_case("nvfp4", w, nv, "nvfp4", "nvfp4"))
    # The documented compressed-tensors NVFP4 vector (formats.md 1c): 2 x 32 bf16 values w*8 drawn with seed 2.
    rows = [[20, 0, 22, 6, 15, 11, 17, 9, -20, 22, 13, 14, 17, 8, 23, -9, 14, -7, 1, 12, -7, 18, 19, 0, -19, 15, -3, 19, 0, -10, 6, 7],
            [0, 15, -16, 2, -14, 22, -15, 7, -17, -12, -8, -16, -16, 19, -7, 17, 21, -5, 12, -24, -19, -3, -11, 17, -7, -9, -8, -12, 18, -17, 14, -4]]
    cases.append(ct_case("nvfp4 documented", torch.tensor(rows, dtype=torch.float32) / 8, nv, "nvfp4", "nvfp4"))
    cases.append(mx_case("mxfp4", w, 4))
    cases.append(mx_case("mxfp8", w, 8))
    with open(OUT, "w") as f:
        json.dump({"generator": "Tests/peer-checks/quant_vectors.py", "compressed_tensors": __import__("compressed_tensors").__version__,
                   "torch": torch.__version__, "cases": cases}, f, indent=0)
    print(f"{len(cases)} cases -> {os.path.normpath(OUT)}")


if __name__ == "__main__":
    main()
