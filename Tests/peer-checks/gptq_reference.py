"""GPTQ reference outputs from llm-compressor (the peer qkit's GPTQSolver follows), on seeded random data.

Writes Tests/CommonTests/Fixtures/gptq/reference.safetensors: a weight W [64, 256] (f32, normal * 0.05 with a few
outliers), a Hessian H = 2/T * X^T X [256, 256] (f32, computed in f64) of T = 1024 random activations X whose
channels have log-normal magnitudes and are correlated (X = Z M), and for each case the output of
llm-compressor's `quantize_weight` (llmcompressor.modifiers.gptq.gptq_quantize, version printed below) with
damping 0.01 and block size 128, in qkit's conventions:
  CASE.codes  U8 [64, 256]  one code per element in the original column order (I8 bits for symmetric INT, U8 =
                            compressed-tensors' signed code + 2^(b-1) for asymmetric INT, FP8 E4M3 bits, E2M1 nibble)
  CASE.scale  F32 [64, G]   the observer's scales (NVFP4: U8 [64, G], the F8_E4M3 code)
  CASE.zero   U8  [64, G]   asymmetric only
  CASE.global_scale F32 [1] NVFP4 only
  CASE.loss   F64 [1]       quantize_weight's loss (sum over rows and columns of err^2 / 2)
  CASE.error  F64 [2]       ||(W - Q) X^T||_F of the GPTQ output and of RTN with the same scales
The scales are the min-max observer's (compressed-tensors calculate_qparams / generate_gparam on the original
weight: static groups). Case "dead" zeroes row and column 7 of H first (a dead input channel).

usage: ~/.cache/qkit-peers/venv/bin/python Tests/peer-checks/gptq_reference.py
"""
import json, os
import torch
from safetensors.torch import save_file
from compressed_tensors.quantization import QuantizationArgs, fake_quantize
from compressed_tensors.quantization.utils.helpers import calculate_qparams, generate_gparam
from compressed_tensors.compressors.nvfp4.helpers import pack_fp4_to_uint8
from llmcompressor.modifiers.gptq.gptq_quantize import quantize_weight

OUT = os.path.join(os.path.dirname(__file__), "../CommonTests/Fixtures/gptq/reference.safetensors")
N, K, T = 64, 256, 1024
torch.set_grad_enabled(False)


def data():
    g = torch.Generator().manual_seed(5)
    w = torch.randn(N, K, generator=g) * 0.05
    w[0, 3], w[1, 200], w[5, 77] = 0.6, -0.45, 0.3
    mags = torch.exp(torch.randn(K, generator=g) * 0.8)
    mix = torch.eye(K) + torch.randn(K, K, generator=g) * 0.08
    x = (torch.randn(T, K, generator=g) @ mix) * mags
    h = (2.0 / T) * (x.double().T @ x.double())
    return w.float(), h.float(), x.float()


def qparams(w, args, kind):
    n, k = w.shape
    if args.strategy in ("group", "tensor_group"):
        wg = w.view(n, k // args.group_size, args.group_size)
        mn, mx = wg.amin(-1), wg.amax(-1)
    elif args.strategy == "channel":
        mn, mx = w.amin(-1, keepdim=True), w.amax(-1, keepdim=True)
    else:
        mn, mx = w.min().reshape(1, 1), w.max().reshape(1, 1)
    gs = generate_gparam(w.min(), w.max()) if kind == "nvfp4" else None
    s, z = calculate_qparams(mn, mx, args, global_scale=gs)
    return s, z, gs


def effective(s, z, gs, args, n, k):
    """Per-element scale and zero point (compressed-tensors' signed zero) in the original column order."""
    G = k if args.strategy == "channel" else args.group_size
    eff = s.float().repeat_interleave(G, dim=1) if s.shape[1] * G == k else s.float().expand(n, k)
    if gs is not None:
        eff = eff / gs
    zz = z.float().repeat_interleave(G, dim=1)
    return eff, zz


def codes_of(q, eff, zz, args, kind):
    if kind == "int":
        c = torch.round(q / eff + zz)
        assert torch.equal((c - zz) * eff, q), "codes do not dequantize back to the output"
        b = args.num_bits
        return (c.to(torch.int64) & 0xFF).to(torch.uint8) if args.symmetric else (c + (1 << (b - 1))).to(torch.uint8)
    if kind == "fp8":
        c = (q / eff).to(torch.float8_e4m3fn)
        assert torch.equal(c.float() * eff, q)
        return c.view(torch.uint8)
    v = q / eff  # E2M1 values
    packed = pack_fp4_to_uint8(v.reshape(-1, 2)).flatten()
    nib = torch.stack([packed & 0xF, packed >> 4], dim=1).flatten().view(q.shape)
    return nib.to(torch.uint8)


def main():
    w, h, x = data()
    cases = {
        "int4_g64_sym": (QuantizationArgs(num_bits=4, symmetric=True, strategy="group", group_size=64), "int", False, None),
        "int4_g64_asym": (QuantizationArgs(num_bits=4, symmetric=False, strategy="group", group_size=64), "int", False, None),
        "int8_ch_sym": (QuantizationArgs(num_bits=8, symmetric=True, strategy="channel"), "int", False, None),
        "int4_g64_sym_act": (QuantizationArgs(num_bits=4, symmetric=True, strategy="group", group_size=64, actorder="static"), "int", True, None),
        "int4_g64_asym_act": (QuantizationArgs(num_bits=4, symmetric=False, strategy="group", group_size=64, actorder="static"), "int", True, None),
        "int4_g64_sym_dead": (QuantizationArgs(num_bits=4, symmetric=True, strategy="group", group_size=64), "int", False, 7),
        "fp8_ch": (QuantizationArgs(num_bits=8, type="float", symmetric=True, strategy="channel"), "fp8", False, None),
        "nvfp4": (QuantizationArgs(num_bits=4, type="float", symmetric=True, strategy="tensor_group", group_size=16,
                                   scale_dtype=torch.float8_e4m3fn), "nvfp4", False, None),
    }
    tensors = {"weight": w.contiguous(), "hessian": h.contiguous()}
    meta = {}
    for name, (args, kind, act, dead) in cases.items():
        hh = h.clone()
        if dead is not None:
            hh[dead, :] = 0
            hh[:, dead] = 0
        s, z, gs = qparams(w, args, kind)
        q, loss, fallback = quantize_weight(w.clone()[None], hh[None], s[None], z[None], None if gs is None else gs[None].reshape(1),
                                            args, blocksize=128, percdamp=0.01)
        q, loss = q[0], loss[0].item()
        assert not fallback.any()
        eff, zz = effective(s, z, gs, args, N, K)
        rtn = fake_quantize(w, eff, zz if not args.symmetric else None,
                            QuantizationArgs(num_bits=args.num_bits, type=args.type, symmetric=args.symmetric, strategy="channel")) \
            if kind == "int" else None
        if rtn is None:
            rtn = fake_quantize(w, eff, None, QuantizationArgs(num_bits=args.num_bits, type=args.type, symmetric=True, strategy="channel"))
        xx = x.clone()
        if dead is not None:
            xx[:, dead] = 0
        err = torch.tensor([((w - q) @ xx.T).double().norm().item(), ((w - rtn) @ xx.T).double().norm().item()], dtype=torch.float64)
        c = codes_of(q, eff, zz, args, kind)
        tensors[f"{name}.codes"] = c.contiguous()
        if kind == "nvfp4":
            tensors[f"{name}.scale"] = s.to(torch.float8_e4m3fn).view(torch.uint8).contiguous()
            tensors[f"{name}.global_scale"] = gs.float().reshape(1)
        else:
            tensors[f"{name}.scale"] = s.float().contiguous()
        if not args.symmetric:
            tensors[f"{name}.zero"] = (z.to(torch.int64) + (1 << (args.num_bits - 1))).to(torch.uint8).contiguous()
        tensors[f"{name}.loss"] = torch.tensor([loss], dtype=torch.float64)
        tensors[f"{name}.error"] = err
        meta[name] = json.dumps({"actorder": act, "dead": dead})
        print(f"{name:20s} loss {loss:10.5f}  ||(W-Q)X|| gptq {err[0].item():9.4f}  rtn {err[1].item():9.4f}  "
              f"ratio {err[0].item() / err[1].item():.3f}")
    meta["generator"] = "Tests/peer-checks/gptq_reference.py"
    meta["llmcompressor"] = __import__("llmcompressor").__version__
    meta["compressed_tensors"] = __import__("compressed_tensors").__version__
    meta["torch"] = torch.__version__
    save_file(tensors, OUT, metadata=meta)
    print(f"llmcompressor {meta['llmcompressor']}, compressed-tensors {meta['compressed_tensors']}, torch {meta['torch']}")
    print(f"{len(cases)} cases -> {os.path.normpath(OUT)} ({os.path.getsize(OUT)} bytes)")


if __name__ == "__main__":
    main()
