"""llm-compressor's calibrated quantizers on SmolLM2-135M with qkit's protocol: the peer of `qquant --algo gptq|awq`.

Calibration: the first 32 non-overlapping 512-token windows of pydoc-howto.txt (no special tokens);
evaluation: the first 20 non-overlapping 512-token windows of pydoc-tutorial.txt, ppl = exp(mean NLL), f32 CPU.
Each oneshot is timed (model load and evaluation excluded), then the fake-quantized model is scored.

usage: python calibrated_peer.py MODEL_DIR gptq|gptq-mse|awq|smoothquant|smoothquant-static ...
  gptq        W4A16 int4 symmetric g64, actorder static, dampening 0.01, block 128 (GPTQModifier defaults)
  gptq-mse    the same with the weight observer "mse" (its range search: `qquant --algo gptq --clip mse`)
  awq         W4A16 int4 asymmetric g64 (AWQModifier, its defaults otherwise)
  smoothquant SmoothQuant alpha 0.5 + W8A8 int8 (per-channel weights, per-token dynamic activations)
  smoothquant-static  the same with static per-tensor int8 activation scales from the global min/max of the
              calibration inputs (observer static_minmax: `qquant --static-activations`)
"""
import math, os, sys, time
import torch
from datasets import Dataset
from transformers import AutoModelForCausalLM, AutoTokenizer

ASSETS = os.environ.get("QKIT_ASSETS", os.path.expanduser("~/.cache/qkit-assets"))
torch.set_grad_enabled(False)
if not torch.cuda.is_available():
    # llm-compressor 0.14's AWQ pins its activation cache (pipelines/cache.py), which raises "Cannot access
    # accelerator device" on a CPU-only torch; pinning is only a transfer optimization, so make it a no-op.
    torch.Tensor.pin_memory = lambda self, *args, **kwargs: self


def ids(tok, name, n, L):
    text = open(os.path.join(ASSETS, "corpora", name), encoding="utf-8").read()
    t = tok(text, add_special_tokens=False)["input_ids"]
    return [t[i * L:(i + 1) * L] for i in range(n)]


def ppl(model, windows):
    nll, count = 0.0, 0
    for w in windows:
        row = torch.tensor(w)
        logits = model(row[None]).logits[0, :-1].double()
        nll += torch.nn.functional.cross_entropy(logits, row[1:], reduction="sum").item()
        count += len(w) - 1
    return math.exp(nll / count)


def recipe(algo):
    from compressed_tensors.quantization import QuantizationArgs, QuantizationScheme
    if algo in ("gptq", "gptq-mse"):
        from llmcompressor.modifiers.quantization import GPTQModifier
        observer = {"observer": "mse"} if algo == "gptq-mse" else {}
        s = QuantizationScheme(targets=["Linear"], weights=QuantizationArgs(num_bits=4, type="int", symmetric=True,
                               strategy="group", group_size=64, actorder="static", **observer))
        return GPTQModifier(config_groups={"group_0": s}, ignore=["lm_head"], dampening_frac=0.01, block_size=128)
    if algo == "awq":
        from llmcompressor.modifiers.awq import AWQModifier
        s = QuantizationScheme(targets=["Linear"], weights=QuantizationArgs(num_bits=4, type="int", symmetric=False,
                               strategy="group", group_size=64))
        return AWQModifier(config_groups={"group_0": s}, ignore=["lm_head"])
    if algo == "smoothquant":
        from llmcompressor.modifiers.smoothquant import SmoothQuantModifier
        from llmcompressor.modifiers.quantization import QuantizationModifier
        return [SmoothQuantModifier(smoothing_strength=0.5), QuantizationModifier(targets="Linear", scheme="W8A8", ignore=["lm_head"])]
    if algo == "smoothquant-static":
        from llmcompressor.modifiers.smoothquant import SmoothQuantModifier
        from llmcompressor.modifiers.quantization import QuantizationModifier
        s = QuantizationScheme(targets=["Linear"],
                               weights=QuantizationArgs(num_bits=8, type="int", symmetric=True, strategy="channel"),
                               input_activations=QuantizationArgs(num_bits=8, type="int", symmetric=True, strategy="tensor",
                                                                  dynamic=False, observer="static_minmax"))
        return [SmoothQuantModifier(smoothing_strength=0.5), QuantizationModifier(config_groups={"group_0": s}, ignore=["lm_head"])]
    raise SystemExit(f"unknown algorithm {algo}")


def main():
    model_dir, algos = sys.argv[1], sys.argv[2:]
    tok = AutoTokenizer.from_pretrained(model_dir)
    calib = ids(tok, "pydoc-howto.txt", 32, 512)
    evaluation = ids(tok, "pydoc-tutorial.txt", 20, 512)
    from llmcompressor import oneshot
    for algo in algos:
        model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32).eval()
        ds = Dataset.from_dict({"input_ids": calib, "attention_mask": [[1] * 512] * 32})
        t0 = time.perf_counter()
        with torch.enable_grad():
            oneshot(model=model, dataset=ds, recipe=recipe(algo), num_calibration_samples=32, max_seq_length=512)
        seconds = time.perf_counter() - t0
        print(f"{algo}: llm-compressor oneshot {seconds:.1f} s, ppl {ppl(model, evaluation):.4f}", flush=True)


if __name__ == "__main__":
    main()
