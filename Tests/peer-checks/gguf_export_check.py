"""Reads a GGUF written by `qpack --to gguf` with gguf-py (GGUFReader + gguf.quants.dequantize) and compares it
with qkit's own reading of the same file and with its source.

usage: python gguf_export_check.py OUT.gguf IMPORTED_DIR [--source DIR] [--reference REF.gguf]

IMPORTED_DIR is `qpack OUT.gguf --to safetensors -o IMPORTED_DIR` (qkit's dequantizer, F32): every tensor must
equal gguf-py's dequantization bit for bit (q/k rows put back in Hugging Face order). With --source (the model
or qkit checkpoint OUT was packed from): a qkit linear kept as Q4_0/Q4_1/Q8_0 must dequantize to
(code - zero) * f16(scale) exactly; a float source's Q4_0/Q4_1/Q5_0/Q8_0 tensors must equal gguf-py's own
quantizer byte for byte, and every tensor's error against the source is reported. With --reference (a GGUF
made by llama.cpp from the same model): the vocabulary metadata must be equal.
"""
import argparse, json, sys
import numpy as np
import gguf
from safetensors.numpy import load_file

ap = argparse.ArgumentParser()
ap.add_argument("gguf"); ap.add_argument("imported"); ap.add_argument("--source"); ap.add_argument("--reference")
a = ap.parse_args()
r = gguf.GGUFReader(a.gguf)
arch = r.fields["general.architecture"].contents()
heads = r.fields[f"{arch}.attention.head_count"].contents()
kv = r.fields.get(f"{arch}.attention.head_count_kv").contents()
imported = load_file(a.imported + "/model.safetensors")
source, cfg = {}, {}
if a.source:
    import glob
    from safetensors.torch import load_file as load_torch  # numpy has no bfloat16
    for f in sorted(glob.glob(a.source + "/*.safetensors")):
        source.update({k: (v.float() if v.is_floating_point() else v).numpy() for k, v in load_torch(f).items()})
    cfg = json.load(open(a.source + "/config.json"))

def hf_name(n):
    g = {"token_embd.weight": "model.embed_tokens.weight", "output_norm.weight": "model.norm.weight", "output.weight": "lm_head.weight"}
    if n in g: return g[n]
    _, l, m, kind = n.split(".")
    b = {"attn_q": "self_attn.q_proj", "attn_k": "self_attn.k_proj", "attn_v": "self_attn.v_proj", "attn_output": "self_attn.o_proj",
         "ffn_gate": "mlp.gate_proj", "ffn_up": "mlp.up_proj", "ffn_down": "mlp.down_proj", "attn_norm": "input_layernorm",
         "ffn_norm": "post_attention_layernorm"}[m]
    return f"model.layers.{l}.{b}.{kind}"

def unpermute(w, n_head):  # llama.cpp's converter permutes q/k rows; this is its inverse
    return w.reshape(n_head, w.shape[0] // n_head // 2, 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)

def permute(w, n_head):
    return w.reshape(n_head, 2, w.shape[0] // n_head // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)

def source_float(hf):
    """The source's float weight of a tensor, or its qkit dequantization (code - zero) * f16(scale)."""
    if hf in source:
        return source[hf].astype(np.float32), None
    p = hf[: -len(".weight")]
    if p + ".weight_q" not in source:
        return None, None
    q = source[p + ".weight_q"].astype(np.int32)
    s = source[p + ".weight_scale"].astype(np.float32)
    z = source[p + ".weight_zero_point"].astype(np.int32) if p + ".weight_zero_point" in source else np.zeros(s.shape, np.int32)
    g = q.shape[1] // s.shape[1]
    kept = (q - np.repeat(z, g, 1)).astype(np.float32) * np.repeat(s.astype(np.float16).astype(np.float32), g, 1)
    if p + ".weight_zero_point" in source:  # Q4_1 stores m = f16(-z*s): d*q + m
        kept = q.astype(np.float32) * np.repeat(s.astype(np.float16).astype(np.float32), g, 1) + np.repeat((-z * s).astype(np.float16).astype(np.float32), g, 1)
    return None, kept

counts, failures = {}, 0
for t in r.tensors:
    hf = hf_name(t.name)
    values = gguf.quants.dequantize(t.data, t.tensor_type).reshape([int(d) for d in reversed(t.shape)]).astype(np.float32)
    if arch == "llama" and t.name.split(".")[-2:-1] in (["attn_q"], ["attn_k"]):
        values = unpermute(values, heads if ".attn_q." in t.name else kv)
    ok = np.array_equal(values.view(np.uint32), imported[hf].astype(np.float32).view(np.uint32))
    line = f"{t.name} {t.tensor_type.name} {list(values.shape)}: gguf-py == qkit import {'yes' if ok else 'NO'}"
    failures += not ok
    if a.source:
        fl, kept = source_float(hf)
        if kept is not None:
            same = np.array_equal(values, kept)
            failures += not same
            line += f"; kept codes dequantize exactly {'yes' if same else 'NO'}"
        elif fl is not None:
            ref = fl.reshape(values.shape)
            err = np.abs(values - ref).max() / max(1e-12, np.abs(ref).max())
            line += f"; max |err| / max |w| {err:.4f}"
            if t.tensor_type.name in ("Q4_0", "Q4_1", "Q5_0", "Q8_0"):
                src = permute(ref, heads if ".attn_q." in t.name else kv) if arch == "llama" and (".attn_q." in t.name or ".attn_k." in t.name) else ref
                same = np.array_equal(gguf.quants.quantize(src, t.tensor_type).reshape(-1).view(np.uint8), np.asarray(t.data).reshape(-1).view(np.uint8))
                failures += not same
                line += f"; bytes == gguf-py quantize {'yes' if same else 'NO'}"
    counts[t.tensor_type.name] = counts.get(t.tensor_type.name, 0) + 1
    print(line)
if a.reference:
    ref = gguf.GGUFReader(a.reference)
    for k in ["tokenizer.ggml.model", "tokenizer.ggml.tokens", "tokenizer.ggml.token_type", "tokenizer.ggml.merges",
              "tokenizer.ggml.bos_token_id", "tokenizer.ggml.eos_token_id", "tokenizer.ggml.unknown_token_id",
              "tokenizer.ggml.padding_token_id", "tokenizer.chat_template", f"{arch}.block_count", f"{arch}.context_length",
              f"{arch}.embedding_length", f"{arch}.feed_forward_length", f"{arch}.attention.head_count",
              f"{arch}.attention.head_count_kv", f"{arch}.rope.freq_base", f"{arch}.attention.layer_norm_rms_epsilon",
              f"{arch}.vocab_size", f"{arch}.rope.dimension_count"]:
        same = k in r.fields and ref.fields[k].contents() == r.fields[k].contents()
        failures += not same
        print(f"metadata {k}: {'equal to the reference' if same else 'DIFFERS'}")
    print(f"metadata tokenizer.ggml.pre: ours {r.fields['tokenizer.ggml.pre'].contents()!r}, reference {ref.fields['tokenizer.ggml.pre'].contents()!r}")
print(f"{len(r.tensors)} tensors ({', '.join(f'{v} {k}' for k, v in sorted(counts.items()))}), {failures} failures")
sys.exit(1 if failures else 0)
