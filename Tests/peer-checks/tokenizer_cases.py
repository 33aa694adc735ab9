#!/usr/bin/env python3
"""Reference encodings of Hugging Face `tokenizers` for the engine-rule tests (TokenizerRuleTests).

Usage: python tokenizer_cases.py FIXTURE_DIR   (reads FIXTURE_DIR/*.tokenizer.json.gz, writes FIXTURE_DIR/cases.json)
Each tokenizer of cases.json is a committed fixture ("base") with a patch: top-level keys replaced ("set"), model keys
replaced ("model"), added tokens appended ("added"); the Swift test applies the same patch. For every text it
records the ids without and with special tokens and the decoded text with and without special tokens.
"""
import copy, gzip, json, sys
from tokenizers import Tokenizer

fx = sys.argv[1]
base = {n: json.loads(gzip.open(f"{fx}/{n}.tokenizer.json.gz").read()) for n in ["llama-spm", "qwen2", "smollm2-transformers"]}

QWEN2 = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
LLAMA3 = QWEN2.replace(r"|\p{N}|", r"|\p{N}{1,3}|")
GPT2 = r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"
BL = {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": False}


def split(rx, behavior="Isolated", invert=False):
    return {"type": "Split", "pattern": {"Regex": rx}, "behavior": behavior, "invert": invert}


def added(id, content, special=False, single_word=False, lstrip=False, rstrip=False, normalized=None):
    return {"id": id, "content": content, "single_word": single_word, "lstrip": lstrip, "rstrip": rstrip,
            "normalized": (not special) if normalized is None else normalized, "special": special}


metaspace_first = {"type": "Metaspace", "replacement": "\u2581", "prepend_scheme": "first", "split": False}
tokenizers = {
    "smollm2": {"base": "smollm2-transformers"},
    "smollm2-digits-prefix": {"base": "smollm2-transformers", "set": {"pre_tokenizer": {"type": "Sequence", "pretokenizers": [
        {"type": "Digits", "individual_digits": True}, {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": True, "use_regex": True}]}}},
    "smollm2-digit-runs": {"base": "smollm2-transformers", "set": {"pre_tokenizer": {"type": "Sequence", "pretokenizers": [
        {"type": "Digits", "individual_digits": False}, split(GPT2), BL]}}},
    "smollm2-added": {"base": "smollm2-transformers", "added": [
        added(49152, "<tag>", single_word=True), added(49153, "[X]", special=True, lstrip=True, rstrip=True),
        added(49154, "<|im"), added(49155, "<|im_start|>x"), added(49156, "hello", normalized=True),
        added(49157, " sp ", special=False, normalized=False)]},
    "qwen2": {"base": "qwen2"},
    "qwen2-llama3": {"base": "qwen2", "set": {"pre_tokenizer": {"type": "Sequence", "pretokenizers": [split(LLAMA3), BL]}},
                     "model": {"ignore_merges": True}},
    "qwen2-split-behaviors": {"base": "qwen2", "set": {"normalizer": None, "pre_tokenizer": {"type": "Sequence", "pretokenizers": [
        {"type": "Split", "pattern": {"String": ", "}, "behavior": "MergedWithPrevious", "invert": False},
        {"type": "Split", "pattern": {"String": "--"}, "behavior": "MergedWithNext", "invert": False},
        {"type": "Split", "pattern": {"String": "ab"}, "behavior": "Contiguous", "invert": False},
        {"type": "Split", "pattern": {"String": "#"}, "behavior": "Removed", "invert": False},
        {"type": "Split", "pattern": {"Regex": r"\p{N}+"}, "behavior": "Isolated", "invert": True}, BL]}}},
    "llama-spm": {"base": "llama-spm"},
    "llama-spm-bos": {"base": "llama-spm", "set": {"post_processor": {"type": "TemplateProcessing",
        "single": [{"SpecialToken": {"id": "<s>", "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}}],
        "pair": [{"Sequence": {"id": "A", "type_id": 0}}, {"Sequence": {"id": "B", "type_id": 1}}],
        "special_tokens": {"<s>": {"id": "<s>", "ids": [1], "tokens": ["<s>"]}}}},
        "added": [added(32000, "<pad>", special=True), added(32001, "norm tok", normalized=True)]},
    "llama-spm-metaspace": {"base": "llama-spm", "set": {"normalizer": None, "pre_tokenizer": metaspace_first,
        "decoder": {"type": "Sequence", "decoders": [{"type": "Metaspace", "replacement": "\u2581", "prepend_scheme": "first", "split": False},
                                                     {"type": "ByteFallback"}, {"type": "Fuse"}]}}},
    "llama-spm-metaspace-split": {"base": "llama-spm", "set": {"normalizer": None,
        "pre_tokenizer": {"type": "Metaspace", "replacement": "\u2581", "prepend_scheme": "always", "split": True}}},
    "llama-spm-unk": {"base": "llama-spm", "model": {"byte_fallback": False}},
    "llama-spm-unk-unfused": {"base": "llama-spm", "model": {"byte_fallback": False, "fuse_unk": False}},
}

texts = [
    "", " ", "Hello world", "  leading spaces", "trailing spaces   ", "a\n\nb", "x\r\ny\r\n\r\nz", "tabs\tand\u00a0nbsp",
    "digits 1234567 and 3.14159", "\n\n1 2  3", "it's I'M they'LL we'Ve don'T \u017f's 'S",
    "emoji \U0001F600\U0001F44D\U0001F3FD family \U0001F468\u200d\U0001F469\u200d\U0001F467",
    "\u65e5\u672c\u8a9e\u306e\u30c6\u30ad\u30b9\u30c8", "\u0395\u03bb\u03bb\u03b7\u03bd\u03b9\u03ba\u03ac \u0438 \u0440\u0443\u0441\u0441\u043a\u0438\u0439",
    "combining e\u0301 vs \u00e9, A\u030a", "caf\u00e9 \u212b\u2126 \ufb01", "<|im_start|>user\nhi<|im_end|>\n", "<s>hello</s> <s> x",
    "a<|endoftext|>b", "\u2028line sep\u3000ideographic\u0085nel", "   ", "\t\n", "odd: \ufffd\u0000\u007f\U0010ffff\ue000",
    "mixed: a \n b \t\n c  \r\n  d", " " * 40 + "x", "x" * 300, "== ==== ====== ...!!! ??",
    "<tag> a<tag> <tag>b x [X] y  [X]  z<|im_start|>x <|im hello Hello", "x sp y sp  z", "norm tok and <pad> here",
    "a, b, c--d--e abab ab#c#d 12ab34", "Ж\u0301 \u0660\u0661\u0662 \u2460\u2461 \u00bd \u2167", "(hello) [world] {x}",
    "def f(x):\n    return x**2  # comment\n\n\n", "https://example.com/path?q=1&r=2",
]

out = {"tokenizers": tokenizers, "texts": texts, "results": {}}
for name, spec in tokenizers.items():
    doc = copy.deepcopy(base[spec["base"]])
    for k, v in spec.get("set", {}).items():
        doc[k] = v
    for k, v in spec.get("model", {}).items():
        doc["model"][k] = v
    doc["added_tokens"] += spec.get("added", [])
    tok = Tokenizer.from_str(json.dumps(doc))
    rows = []
    for t in texts:
        ids = tok.encode(t, add_special_tokens=False).ids
        with_special = tok.encode(t, add_special_tokens=True).ids
        rows.append({"ids": ids, "ids_special": with_special, "decoded": tok.decode(ids, skip_special_tokens=False),
                     "decoded_skip": tok.decode(ids, skip_special_tokens=True)})
    out["results"][name] = rows
    print(name, sum(len(r["ids"]) for r in rows), "ids")
json.dump(out, open(f"{fx}/cases.json", "w"), ensure_ascii=True, separators=(",", ":"))
