import CZlib
import Testing
#if canImport(Glibc)
import Glibc
#endif
@testable import Common

/// A tiny synthetic model in Hugging Face terms, and the GGUF llama.cpp would make of it.
struct TinyModel {
    let arch: String
    let hidden = 64, heads = 4, kvHeads = 2, ffn = 96, layers = 2
    var headDim: Int { hidden / heads }
    let tokens: [String]
    var hf: [(name: String, shape: [Int], values: [Float])] = []

    init(arch: String, seed: UInt64) {
        self.arch = arch
        var t = ["<|endoftext|>", "<|im_start|>", "<tool>", "a", "b", "c", "ab", "Ġ", "Ġab", "1", "2", "Ċ"]
        for i in t.count..<40 { t.append("x\(i)") }
        tokens = t
        var g = SplitMix(seed: seed)
        func add(_ name: String, _ shape: [Int]) {
            hf.append((name, shape, (0..<shape.reduce(1, *)).map { _ in Float(g.nextDouble() * 2 - 1) }))
        }
        add("model.embed_tokens.weight", [tokens.count, hidden])
        add("model.norm.weight", [hidden])
        for l in 0..<layers {
            let p = "model.layers.\(l)."
            add(p + "self_attn.q_proj.weight", [heads * headDim, hidden])
            add(p + "self_attn.k_proj.weight", [kvHeads * headDim, hidden])
            add(p + "self_attn.v_proj.weight", [kvHeads * headDim, hidden])
            add(p + "self_attn.o_proj.weight", [hidden, heads * headDim])
            if arch == "qwen2" {
                add(p + "self_attn.q_proj.bias", [heads * headDim])
                add(p + "self_attn.k_proj.bias", [kvHeads * headDim])
                add(p + "self_attn.v_proj.bias", [kvHeads * headDim])
            }
            add(p + "mlp.gate_proj.weight", [ffn, hidden])
            add(p + "mlp.up_proj.weight", [ffn, hidden])
            add(p + "mlp.down_proj.weight", [hidden, ffn])
            add(p + "input_layernorm.weight", [hidden])
            add(p + "post_attention_layernorm.weight", [hidden])
        }
    }

    static func ggufName(_ hf: String) -> String {
        if hf == "model.embed_tokens.weight" { return "token_embd.weight" }
        if hf == "model.norm.weight" { return "output_norm.weight" }
        let parts = hf.split(separator: ".").map(String.init)
        let map = ["q_proj": "attn_q", "k_proj": "attn_k", "v_proj": "attn_v", "o_proj": "attn_output", "gate_proj": "ffn_gate",
                   "up_proj": "ffn_up", "down_proj": "ffn_down", "input_layernorm": "attn_norm", "post_attention_layernorm": "ffn_norm"]
        let kind = parts[3] == "self_attn" || parts[3] == "mlp" ? parts[4] : parts[3]
        return "blk.\(parts[2]).\(map[kind]!).\(parts.last!)"
    }

    /// convert_hf_to_gguf's `permute` (HF → GGUF rows) for q/k of the llama architecture.
    func permuted(_ values: [Float], rows: Int, cols: Int, heads h: Int) -> [Float] {
        var out = values
        let hd = rows / h, half = hd / 2
        for head in 0..<h {
            for i in 0..<half {
                for j in 0..<2 {
                    let from = head * hd + j * half + i, to = head * hd + 2 * i + j
                    for k in 0..<cols { out[to * cols + k] = values[from * cols + k] }
                }
            }
        }
        return out
    }

    /// Writes the GGUF: f32 everywhere except the gate projections (Q8_0) and the norm (F16).
    func write(_ path: String, extraMetadata: [(key: String, value: GGUFValue)] = [], dropTensor: String? = nil,
               extraTensor: String? = nil) throws -> [String: [Float]] {
        var expected: [String: [Float]] = [:]
        var tensors: [(GGUFTensorSpec, [UInt8])] = []
        for t in hf {
            let gname = TinyModel.ggufName(t.name)
            if gname == dropTensor { continue }
            var v = t.values
            if arch == "llama", t.name.contains("q_proj.weight") || t.name.contains("k_proj.weight") {
                v = permuted(v, rows: t.shape[0], cols: t.shape[1], heads: t.name.contains("q_proj") ? heads : kvHeads)
            }
            let dims = Array(t.shape.reversed())
            if t.name.contains("gate_proj") {
                let q = try quantized(.q8_0, v)
                tensors.append((GGUFTensorSpec(name: gname, dimensions: dims, type: .q8_0), q))
                expected[t.name] = try dequantized(.q8_0, q, count: v.count)
            } else if t.name == "model.norm.weight" {
                let h = v.map { Float16($0) }
                tensors.append((GGUFTensorSpec(name: gname, dimensions: dims, type: .f16), h.withUnsafeBytes { Array($0) }))
                expected[t.name] = h.map(Float.init)
            } else {
                tensors.append((GGUFTensorSpec(name: gname, dimensions: dims, type: .f32), v.withUnsafeBytes { Array($0) }))
                expected[t.name] = t.values
            }
        }
        if let extraTensor { tensors.append((GGUFTensorSpec(name: extraTensor, dimensions: [4], type: .f32), [UInt8](repeating: 0, count: 16))) }
        var types = [GGUFValue](repeating: .int32(1), count: tokens.count)
        types[0] = .int32(3); types[1] = .int32(3); types[2] = .int32(4)
        let a = arch
        var md: [(key: String, value: GGUFValue)] = [
            ("general.architecture", .string(a)), ("general.name", .string("tiny")),
            ("\(a).block_count", .uint32(UInt32(layers))), ("\(a).context_length", .uint32(2048)),
            ("\(a).embedding_length", .uint32(UInt32(hidden))), ("\(a).feed_forward_length", .uint32(UInt32(ffn))),
            ("\(a).attention.head_count", .uint32(UInt32(heads))), ("\(a).attention.head_count_kv", .uint32(UInt32(kvHeads))),
            ("\(a).rope.freq_base", .float32(500000)), ("\(a).attention.layer_norm_rms_epsilon", .float32(1e-6)),
            ("tokenizer.ggml.model", .string("gpt2")), ("tokenizer.ggml.pre", .string(a == "qwen2" ? "qwen2" : "smollm")),
            ("tokenizer.ggml.tokens", .array(.string, tokens.map { .string($0) })),
            ("tokenizer.ggml.token_type", .array(.int32, types)),
            ("tokenizer.ggml.merges", .array(.string, [.string("a b"), .string("Ġ ab")])),
            ("tokenizer.ggml.bos_token_id", .uint32(1)), ("tokenizer.ggml.eos_token_id", .uint32(0)),
            ("tokenizer.ggml.add_bos_token", .bool(a == "qwen2")),
            ("tokenizer.chat_template", .string("{{ messages }}")),
        ]
        for kv in extraMetadata {
            if let i = md.firstIndex(where: { $0.key == kv.key }) { md[i] = kv } else { md.append(kv) }
        }
        try writeGGUF(path, metadata: md, tensors: tensors)
        return expected
    }
}

private func floats(_ f: SafetensorsFile, _ t: TensorInfo) -> [Float] {
    var out = [Float](repeating: 0, count: t.shape.reduce(1, *))
    out.withUnsafeMutableBufferPointer { Conversion.decode(t.dtype, f.data(t), into: $0) }
    return out
}

private func json(_ path: String) throws -> JSONValue { try JSONParser.parse(try readSmallFile(path)) }

@Suite struct GGUFImportTests {
    @Test func llamaImportUndoesPermutation() throws {
        let dir = ggufTemporaryDirectory("imp")
        defer { removeTree(dir) }
        let model = TinyModel(arch: "llama", seed: 1)
        let expected = try model.write(dir + "/m.gguf")
        try GGUFImport.run(gguf: dir + "/m.gguf", output: dir + "/out", dtype: .f32, maxShardSize: nil)
        #expect(listDirectory(dir + "/out") == ["config.json", "generation_config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json"])
        let st = try SafetensorsFile(path: dir + "/out/model.safetensors")
        #expect(st.tensors.map(\.name) == model.hf.map(\.name).sorted())
        for t in st.tensors {
            let want = try #require(expected[t.name])
            #expect(t.dtype == .f32 && t.shape == model.hf.first { $0.name == t.name }!.shape)
            #expect(floats(st, t) == want, "\(t.name)")
        }
        let c = try json(dir + "/out/config.json")
        #expect(c["architectures"] == ["LlamaForCausalLM"] && c["model_type"] == "llama")
        #expect(c["hidden_size"]?.intValue == 64 && c["num_key_value_heads"]?.intValue == 2 && c["head_dim"]?.intValue == 16)
        #expect(c["intermediate_size"]?.intValue == 96 && c["num_hidden_layers"]?.intValue == 2 && c["vocab_size"]?.intValue == 40)
        #expect(c["rope_theta"]?.doubleValue == 500000 && c["rms_norm_eps"]?.doubleValue == Double(Float(1e-6)))
        #expect(c["tie_word_embeddings"] == true && c["bos_token_id"]?.intValue == 1 && c["eos_token_id"]?.intValue == 0)
        let tok = try json(dir + "/out/tokenizer.json")
        #expect(tok["model"]?["type"] == "BPE" && tok["model"]?["vocab"]?["Ġab"]?.intValue == 8)
        #expect(tok["model"]?["merges"] == [["a", "b"], ["Ġ", "ab"]])
        #expect(tok["pre_tokenizer"]?["pretokenizers"]?.arrayValue?.first?["type"] == "Digits")
        let added = try #require(tok["added_tokens"]?.arrayValue)
        #expect(added.count == 3 && added[1]["content"] == "<|im_start|>" && added[1]["special"] == true && added[2]["special"] == false)
        let tc = try json(dir + "/out/tokenizer_config.json")
        #expect(tc["add_bos_token"] == false && tc["eos_token"] == "<|endoftext|>" && tc["chat_template"] == "{{ messages }}")
        #expect(tc["model_max_length"]?.intValue == 2048)
        let gen = try json(dir + "/out/generation_config.json")
        #expect(gen["bos_token_id"]?.intValue == 1 && gen["eos_token_id"]?.intValue == 0)
    }

    @Test func qwen2ImportKeepsRowsAndBiases() throws {
        let dir = ggufTemporaryDirectory("qwen")
        defer { removeTree(dir) }
        let model = TinyModel(arch: "qwen2", seed: 2)
        let expected = try model.write(dir + "/m.gguf")
        try GGUFImport.run(gguf: dir + "/m.gguf", output: dir + "/out", dtype: .bf16, maxShardSize: 20_000)
        let files = listDirectory(dir + "/out")
        #expect(files.contains("model.safetensors.index.json") && files.filter { $0.hasSuffix(".safetensors") }.count > 1)
        let index = try json(dir + "/out/model.safetensors.index.json")
        let map = try #require(index["weight_map"]?.objectValue)
        #expect(map.keys.sorted() == model.hf.map(\.name).sorted())
        for (name, shard) in map.members {
            let st = try SafetensorsFile(path: dir + "/out/" + shard.stringValue!)
            let t = try #require(st.tensors.first { $0.name == name })
            #expect(t.dtype == .bf16)
            var want = try #require(expected[name])
            var enc = [UInt16](repeating: 0, count: want.count)
            want.withUnsafeBufferPointer { s in enc.withUnsafeMutableBytes { Conversion.encode(s, as: .bf16, into: $0) } }
            want = enc.map { Float(bitPattern: UInt32($0) << 16) }
            #expect(floats(st, t) == want, "\(name)")
        }
        let c = try json(dir + "/out/config.json")
        #expect(c["architectures"] == ["Qwen2ForCausalLM"] && c["model_type"] == "qwen2" && c["torch_dtype"] == "bfloat16")
        let tok = try json(dir + "/out/tokenizer.json")
        let pre = try #require(tok["pre_tokenizer"]?["pretokenizers"]?.arrayValue)
        #expect(pre.first?["type"] == "Split" && pre.first?["pattern"]?["Regex"]?.stringValue == GGUFTokenizer.qwen2Regex)
        #expect(pre.last?["type"] == "ByteLevel" && pre.last?["use_regex"] == false)
        #expect(tok["post_processor"]?["processors"]?.arrayValue?.last?["type"] == "TemplateProcessing")
    }

    private func importError(_ build: (String) throws -> Void, output: String = "out") -> (any QKitError, String)? {
        let dir = ggufTemporaryDirectory("err")
        defer { removeTree(dir) }
        do {
            try build(dir + "/m.gguf")
            try GGUFImport.run(gguf: dir + "/m.gguf", output: output.hasPrefix("/") ? output : dir + "/" + output, dtype: .f32, maxShardSize: nil)
        } catch let e as any QKitError {
            #expect(!fileExists(dir + "/out"), "no partial output")
            #expect(listDirectory(dir).allSatisfy { !$0.hasPrefix(".out") }, "no staging directory left")
            return (e, dir)
        } catch {
            Issue.record("not a QKitError: \(error)")
        }
        return nil
    }

    @Test func refusals() throws {
        let m = TinyModel(arch: "llama", seed: 3)
        let arch = try #require(importError { p in _ = try TinyModel(arch: "gemma", seed: 3).write(p) })
        #expect(arch.0.exitStatus == .dataError && arch.0.description.contains("'gemma'") && arch.0.path?.hasSuffix("m.gguf") == true)
        let missing = try #require(importError { p in _ = try m.write(p, dropTensor: "blk.1.ffn_up.weight") })
        #expect(missing.0.description.contains("blk.1.ffn_up.weight"))
        let unknown = try #require(importError { p in _ = try m.write(p, extraTensor: "blk.0.weird.weight") })
        #expect(unknown.0.description.contains("blk.0.weird.weight") && unknown.0.exitStatus == .dataError)
        let spm = try #require(importError { p in _ = try m.write(p, extraMetadata: [("tokenizer.ggml.model", .string("bert"))]) })
        #expect(spm.0.description.contains("bert"))
        let pre = try #require(importError { p in _ = try m.write(p, extraMetadata: [("tokenizer.ggml.pre", .string("nonesuch"))]) })
        #expect(pre.0.description.contains("nonesuch"))
        let shape = try #require(importError { p in _ = try m.write(p, extraMetadata: [("llama.feed_forward_length", .uint32(64))]) })
        #expect(shape.0.description.contains("ffn_gate"))
        let truncated = try #require(importError { p in
            _ = try m.write(p)
            let b = try readSmallFile(p)
            let f = try AtomicFile(path: p)
            try f.write(Array(b[0..<1000]))
            try f.commit()
        })
        #expect(truncated.0.exitStatus == .dataError)
        let noDir = try #require(importError({ p in _ = try m.write(p) }, output: "/proc/version/out"))
        #expect(noDir.0.exitStatus == .cantCreate)
        let noInput = try #require(importError { _ in })
        #expect(noInput.0.exitStatus == .noInput)
    }

    /// The acceptance check: SmolLM2-135M-Instruct Q4_1 imports to tensors equal bit for bit to transformers'
    /// own conversion (CRC-32 of every tensor in Fixtures/gguf/smollm2-f32-reference.json).
    @Test func realSmolLM2MatchesTransformers() throws {
        let env = getenv("QKIT_ASSETS").map { String(cString: $0) }
        let assets = env ?? (String(cString: getenv("HOME")) + "/.cache/qkit-assets")
        let gguf = assets + "/gguf/SmolLM2-135M-Instruct.Q4_1.gguf"
        guard fileExists(gguf) else {
            Issue.record("missing test asset \(gguf): run scripts/fetch-assets.sh (or set QKIT_ASSETS)")
            return
        }
        let dir = ggufTemporaryDirectory("smol")
        defer { removeTree(dir) }
        try GGUFImport.run(gguf: gguf, output: dir + "/out", dtype: .f32, maxShardSize: nil)
        let ref = try json(ggufFixtureDirectory() + "/smollm2-f32-reference.json")
        let tensors = try #require(ref["tensors"]?.objectValue)
        let st = try SafetensorsFile(path: dir + "/out/model.safetensors")
        #expect(st.tensors.map(\.name).sorted() == tensors.keys.sorted())
        var identical = 0
        for t in st.tensors {
            let r = try #require(tensors[t.name])
            let d = st.data(t)
            let crc = crc32(0, d.baseAddress!.assumingMemoryBound(to: UInt8.self), UInt32(d.count))
            let ok = t.dtype == .f32 && r["shape"]?.arrayValue?.compactMap(\.intValue) == t.shape && Int(crc) == r["crc32"]?.intValue
            #expect(ok, "\(t.name) differs from transformers' conversion")
            if ok { identical += 1 }
        }
        #expect(identical == 272)
        let config = try json(dir + "/out/config.json")
        for (k, v) in try #require(ref["config"]?.objectValue).members {
            #expect(config[k] == v || (config[k]?.doubleValue != nil && config[k]?.doubleValue == v.doubleValue), "config.json \(k)")
        }
        #expect(config["rope_theta"]?.doubleValue == ref["rope_theta"]?.doubleValue)
    }
}

@Suite struct GGUFTokenizerTests {
    /// A Llama-2-style SentencePiece vocabulary without merges: BPE with byte fallback, merges rebuilt from scores.
    @Test func sentencePieceFromScores() throws {
        let dir = ggufTemporaryDirectory("spm")
        defer { removeTree(dir) }
        var tokens = ["<unk>", "<s>", "</s>"] + (0..<256).map { "<0x" + String($0, radix: 16, uppercase: true).padding(2) + ">" }
        tokens += ["▁", "a", "b", "c", "ab", "▁a", "▁ab", "abc"]
        let types: [GGUFValue] = tokens.indices.map { .int32($0 == 0 ? 2 : $0 < 3 ? 3 : $0 < 259 ? 6 : 1) }
        let scores: [GGUFValue] = tokens.indices.map { .float32($0 < 259 ? 0 : -Float($0 - 259)) }
        try writeGGUF(dir + "/v.gguf", metadata: [
            ("tokenizer.ggml.model", .string("llama")), ("tokenizer.ggml.tokens", .array(.string, tokens.map { .string($0) })),
            ("tokenizer.ggml.scores", .array(.float32, scores)), ("tokenizer.ggml.token_type", .array(.int32, types)),
            ("tokenizer.ggml.bos_token_id", .uint32(1)), ("tokenizer.ggml.eos_token_id", .uint32(2)),
            ("tokenizer.ggml.unknown_token_id", .uint32(0)),
        ], tensors: [])
        let v = try GGUFTokenizer.Vocabulary(try GGUFFile(path: dir + "/v.gguf"))
        let j = try GGUFTokenizer.tokenizerJSON(v)
        #expect(j["model"]?["byte_fallback"] == true && j["model"]?["unk_token"] == "<unk>")
        #expect(j["model"]?["vocab"]?["<0x0A>"]?.intValue == 13)
        // Every split into two vocabulary tokens, by the merged token's score: ▁a (-5), ▁ab (-6: ▁+ab, ▁a+b), abc (-7: ab+c).
        #expect(j["model"]?["merges"] == [["a", "b"], ["▁", "a"], ["▁", "ab"], ["▁a", "b"], ["ab", "c"]])
        #expect(j["added_tokens"]?.arrayValue?.count == 3 && j["normalizer"]?["normalizers"]?.arrayValue?.count == 2)
        #expect(j["post_processor"]?["single"]?.arrayValue?.first?["SpecialToken"]?["id"] == "<s>")
    }
}

extension String {
    fileprivate func padding(_ n: Int) -> String { String(repeating: "0", count: max(0, n - count)) + self }
}
