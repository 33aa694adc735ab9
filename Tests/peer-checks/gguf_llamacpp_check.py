"""Loads a GGUF written by `qpack --to gguf` in llama.cpp (llama-cpp-python) and scores it.

usage: python gguf_llamacpp_check.py OUT.gguf TEXT SEQLEN WINDOWS IDS_OUT

Tokenizes TEXT with the GGUF's own vocabulary in llama.cpp, takes the first WINDOWS windows of SEQLEN tokens,
prints llama.cpp's perplexity over them (every token after the first of each window predicted) and writes the
ids to IDS_OUT so that `qeval OUT.gguf --ids IDS_OUT --seqlen SEQLEN` scores the same tokens.
"""
import sys, math
import numpy as np
import llama_cpp

path, text, seqlen, windows, ids_out = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), sys.argv[5]
llm = llama_cpp.Llama(model_path=path, n_ctx=seqlen, n_batch=seqlen, logits_all=True, verbose=False, n_threads=2)
tokens = llm.tokenize(open(text, "rb").read()[: 200_000], add_bos=False, special=False)[: seqlen * windows]
assert len(tokens) == seqlen * windows, len(tokens)
open(ids_out, "w").write(" ".join(map(str, tokens)) + "\n")
nll, count = 0.0, 0
for w in range(windows):
    chunk = tokens[w * seqlen : (w + 1) * seqlen]
    llm.reset()
    llm.eval(chunk)
    logits = np.asarray(llm.scores[: seqlen], dtype=np.float64)
    m = logits.max(axis=1, keepdims=True)
    logp = logits - m - np.log(np.exp(logits - m).sum(axis=1, keepdims=True))
    nll -= sum(logp[i, chunk[i + 1]] for i in range(seqlen - 1))
    count += seqlen - 1
print(f"llama.cpp ({llama_cpp.__version__}) loaded {path}: {llm.n_vocab()} tokens, {windows} windows of {seqlen}: perplexity {math.exp(nll / count):.4f}")
