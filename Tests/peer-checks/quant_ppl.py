"""Perplexity of models with transformers (the peer of `qeval`), and llm-compressor's data-free RTN for reference.

Protocol (the issue's): the first 20 non-overlapping windows of 512 tokens of pydoc-tutorial.txt, tokenized
without special tokens; ppl = exp(mean next-token NLL over the 20 x 511 predicted tokens); float32 on CPU.

usage: python quant_ppl.py [--llmcompressor-g64 SRC] [--windows 20] [--seqlen 512] LABEL=MODEL_DIR ...
--llmcompressor-g64 SRC runs llm-compressor's QuantizationModifier (W4A16, symmetric int4, group 64, min-max
observer, no calibration data, lm_head ignored) on SRC in memory, times it, and scores it too.
"""
import argparse, math, os, sys, time
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

ASSETS = os.environ.get("QKIT_ASSETS", os.path.expanduser("~/.cache/qkit-assets"))
torch.set_grad_enabled(False)


def windows(tokenizer_dir, n, L):
    tok = AutoTokenizer.from_pretrained(tokenizer_dir)
    text = open(os.path.join(ASSETS, "corpora/pydoc-tutorial.txt"), encoding="utf-8").read()
    ids = tok(text, add_special_tokens=False)["input_ids"]
    assert len(ids) >= n * L, f"corpus has {len(ids)} tokens"
    return torch.tensor(ids[: n * L]).view(n, L)


def ppl(model, batch):
    nll, count = 0.0, 0
    for row in batch:
        logits = model(row[None]).logits[0, :-1].double()
        target = row[1:]
        nll += torch.nn.functional.cross_entropy(logits, target, reduction="sum").item()
        count += target.numel()
    return math.exp(nll / count)


def load(path):
    return AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32).eval()


def llmcompressor_g64(src):
    from llmcompressor import oneshot
    from llmcompressor.modifiers.quantization import QuantizationModifier
    from compressed_tensors.quantization import QuantizationArgs, QuantizationScheme

    model = load(src)
    scheme = QuantizationScheme(targets=["Linear"], weights=QuantizationArgs(
        num_bits=4, type="int", symmetric=True, strategy="group", group_size=64))
    recipe = QuantizationModifier(config_groups={"group_0": scheme}, ignore=["lm_head"])
    t0 = time.perf_counter()
    oneshot(model=model, recipe=recipe)
    return model, time.perf_counter() - t0


def hqq_package(src, bits, group):
    """The hqq package's own quantizer (optimize=True, axis 1) on every decoder linear, dequantized in place."""
    from hqq.core.quantize import Quantizer
    model = load(src)
    for name, m in model.named_modules():
        if isinstance(m, torch.nn.Linear) and ".layers." in name:
            W = m.weight.data
            Wq, meta = Quantizer.quantize(W, nbits=bits, channel_wise=True, group_size=group, optimize=True, axis=1,
                                          bitpack=False, compute_dtype=torch.float32, device="cpu")
            m.weight.data = Quantizer.dequantize(Wq, meta).reshape(W.shape).float()
    return model


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--llmcompressor-g64")
    ap.add_argument("--hqq-package", help="BITS:GROUP: score the hqq package's own quantization of SRC (--hqq-source)")
    ap.add_argument("--hqq-source")
    ap.add_argument("--windows", type=int, default=20)
    ap.add_argument("--seqlen", type=int, default=512)
    ap.add_argument("models", nargs="*")
    a = ap.parse_args()
    torch.set_num_threads(os.cpu_count())
    first = a.llmcompressor_g64 or a.hqq_source or a.models[0].split("=", 1)[1]
    batch = windows(first, a.windows, a.seqlen)
    print(f"# {a.windows} x {a.seqlen} tokens of pydoc-tutorial.txt, transformers {__import__('transformers').__version__}, torch {torch.__version__}")
    if a.llmcompressor_g64:
        model, secs = llmcompressor_g64(a.llmcompressor_g64)
        print(f"llm-compressor W4A16 g64 RTN (oneshot {secs:.2f} s)\tppl {ppl(model, batch):.4f}", flush=True)
    if a.hqq_package:
        bits, group = map(int, a.hqq_package.split(":"))
        print(f"hqq package int{bits} g{group}\tppl {ppl(hqq_package(a.hqq_source, bits, group), batch):.4f}", flush=True)
    for spec in a.models:
        label, path = spec.split("=", 1)
        print(f"{label}\tppl {ppl(load(path), batch):.4f}", flush=True)


if __name__ == "__main__":
    main()
