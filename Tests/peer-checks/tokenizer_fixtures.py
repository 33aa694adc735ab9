#!/usr/bin/env python3
"""Makes the tokenizer fixtures of Tests/CommonTests/Fixtures/tokenizer and the reference ids of Hugging Face
`tokenizers` on the pydoc corpora (what TokenizerCorpusTests compare qkit against).

Usage: python tokenizer_fixtures.py QKIT_SMOLLM2_TOKENIZER_JSON VOCAB_DIR ASSETS OUT_DIR
  QKIT_SMOLLM2_TOKENIZER_JSON  tokenizer.json written by qkit's GGUF import:
                               qpack ASSETS/gguf/SmolLM2-135M-Instruct.Q4_1.gguf --to safetensors -o DIR
  VOCAB_DIR   llama.cpp's vocabulary-only GGUF files (models/ggml-vocab-{llama-spm,qwen2,llama-bpe}.gguf), as
              vendored in the PyPI sdist llama-cpp-python==0.3.36 (pip download --no-deps --no-binary
              llama-cpp-python llama-cpp-python==0.3.36; tar xzf; vendor/llama.cpp/models)
  ASSETS      ~/.cache/qkit-assets (corpora/pydoc-*.txt, smollm2-135m/tokenizer.json from transformers' conversion)
Writes into OUT_DIR:
  llama-spm.tokenizer.json.gz     transformers' GGUF conversion of ggml-vocab-llama-spm.gguf (Llama-2 SentencePiece
                                  BPE: Prepend/Replace normalizers, byte fallback, unk)
  qwen2.tokenizer.json.gz         transformers' GGUF conversion of ggml-vocab-qwen2.gguf (NFC, Qwen2 Split regex,
                                  ByteLevel without regex), saved compactly
  llama3.tokenizer.json.gz        transformers' GGUF conversion of ggml-vocab-llama-bpe.gguf (the Llama-3 vocabulary)
                                  with the pre-tokenizer and ignore_merges of Meta's Llama-3 tokenizer.json (Split with
                                  the Llama-3 regex, ByteLevel without regex; transformers' converter writes plain
                                  ByteLevel instead), merges as "a b" strings, compact
  smollm2-transformers.tokenizer.json.gz   ASSETS/smollm2-135m/tokenizer.json as it is
  references.json                 per tokenizer and corpus: token count and FNV-1a 64 of the ids (u32 little-endian)
  <name>.tutorial.ids.gz          the full ids of pydoc-tutorial.txt (u32 little-endian) for smollm2-qkit and llama-spm
The tokenizer "qwen2-llama3" is qwen2 with Llama-3's Split regex (\\p{N}{1,3}) and ignore_merges true: the test derives
it from qwen2.tokenizer.json the same way (see derive_llama3 below).
"""
import glob, gzip, json, os, struct, sys, tempfile
from tokenizers import Tokenizer

qkit_json, vocab_dir, assets, out = sys.argv[1:5]
os.makedirs(out, exist_ok=True)

QWEN2 = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
LLAMA3 = QWEN2.replace(r"|\p{N}|", r"|\p{N}{1,3}|")


def derive_llama3(doc):
    doc = json.loads(json.dumps(doc))
    for p in doc["pre_tokenizer"]["pretokenizers"]:
        if p["type"] == "Split":
            assert p["pattern"]["Regex"] == QWEN2
            p["pattern"]["Regex"] = LLAMA3
    doc["model"]["ignore_merges"] = True
    return doc


def convert(name):
    from transformers import AutoTokenizer
    t = AutoTokenizer.from_pretrained(vocab_dir, gguf_file=f"ggml-vocab-{name}.gguf")
    with tempfile.TemporaryDirectory() as d:
        t.backend_tokenizer.save(f"{d}/t.json", pretty=False)
        return open(f"{d}/t.json", "rb").read()


def write_gz(path, data):
    with open(path, "wb") as f, gzip.GzipFile(fileobj=f, mode="wb", compresslevel=9, mtime=0) as g:
        g.write(data)


docs = {}
for name in ["llama-spm", "qwen2"]:
    data = convert(name)
    write_gz(f"{out}/{name}.tokenizer.json.gz", data)
    docs[name] = data
llama3 = json.loads(convert("llama-bpe"))
llama3["pre_tokenizer"] = {"type": "Sequence", "pretokenizers": [
    {"type": "Split", "pattern": {"Regex": LLAMA3}, "behavior": "Isolated", "invert": False},
    {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": False}]}
llama3["model"]["ignore_merges"] = True
assert all(" " not in a and " " not in b for a, b in llama3["model"]["merges"])
llama3["model"]["merges"] = [a + " " + b for a, b in llama3["model"]["merges"]]
docs["llama3"] = json.dumps(llama3, ensure_ascii=False, separators=(",", ":")).encode()
write_gz(f"{out}/llama3.tokenizer.json.gz", docs["llama3"])
smol = open(f"{assets}/smollm2-135m/tokenizer.json", "rb").read()
write_gz(f"{out}/smollm2-transformers.tokenizer.json.gz", smol)
docs["smollm2-transformers"] = smol
docs["smollm2-qkit"] = open(qkit_json, "rb").read()
docs["qwen2-llama3"] = json.dumps(derive_llama3(json.loads(docs["qwen2"]))).encode()


def fnv1a64(ids):
    h = 0xCBF29CE484222325
    for b in struct.pack(f"<{len(ids)}I", *ids):
        h = ((h ^ b) * 0x100000001B3) & 0xFFFFFFFFFFFFFFFF
    return f"{h:016x}"


refs = {}
corpora = sorted(glob.glob(f"{assets}/corpora/pydoc-*.txt"))
for name, data in docs.items():
    tok = Tokenizer.from_str(data.decode())
    refs[name] = {}
    for c in corpora:
        text = open(c, encoding="utf-8").read()
        ids = tok.encode(text, add_special_tokens=False).ids
        corpus = os.path.basename(c)
        refs[name][corpus] = {"tokens": len(ids), "fnv1a64": fnv1a64(ids), "bytes": len(text.encode())}
        print(name, corpus, len(ids), refs[name][corpus]["fnv1a64"], flush=True)
        if corpus == "pydoc-tutorial.txt" and name in ("smollm2-qkit", "llama-spm"):
            write_gz(f"{out}/{name}.tutorial.ids.gz", struct.pack(f"<{len(ids)}I", *ids))
json.dump(refs, open(f"{out}/references.json", "w"), indent=1, sort_keys=True)
