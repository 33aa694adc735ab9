import Glibc
import Testing
@testable import Common

/// A tiny GGUF (llama or qwen2) imported to a Hugging Face directory: the source of the export tests.
private func importedModel(_ arch: String, _ dir: String) throws -> (gguf: String, hf: String) {
    let m = TinyModel(arch: arch, seed: 3)
    _ = try m.write(dir + "/orig.gguf")
    try GGUFImport.run(gguf: dir + "/orig.gguf", output: dir + "/hf", dtype: .f32, maxShardSize: nil)
    return (dir + "/orig.gguf", dir + "/hf")
}

/// Per-window NLL of the model at `path` on 128 random ids (two windows of 64) from `seed`.
private func windowNLL(_ path: String, seed: UInt64) throws -> [Double] {
    var rng = SplitMix(seed: seed)
    let ids = (0..<128).map { _ in Int32(3 + Int(rng.next() % 36)) }
    let windows = EvaluationWindows(tokens: ids, length: 64, limit: nil, bos: nil)
    return try Evaluator.run(model: DecoderModel(source: openWeights(path: path)), windows: windows).windowNLL
}

@Suite("qpack --to gguf: names, permutation, vocabulary, types, kept codes, read back")
struct GGUFExportTests {
    @Test("F32 export of an imported GGUF gives its tensors and vocabulary back; qeval on the GGUF equals qeval on the model",
          arguments: ["llama", "qwen2"])
    func f32RoundTrip(_ arch: String) throws {
        let dir = SafetensorsFixture.temporaryDirectory()
        defer { removeTree(dir) }
        let (orig, hf) = try importedModel(arch, dir)
        let r = try GGUFExport.run(input: hf, output: dir + "/out.gguf", type: .f32)
        #expect(r.type == .f32 && r.quantized == 0)
        let a = try GGUFFile(path: orig), b = try GGUFFile(path: dir + "/out.gguf")
        #expect(b.version == 3 && b.alignment == 32)
        #expect(Set(a.tensors.map(\.name)) == Set(b.tensors.map(\.name)))
        let source = try openWeights(path: orig), exported = try openWeights(path: dir + "/out.gguf")
        for t in b.tensors {
            #expect(a.tensor(named: t.name)?.dimensions == t.dimensions, "\(t.name)")
            let hfName = try #require(try GGUFModelConfig(b).hfTensor(t.name)?.name)
            #expect(try source.float32(hfName).values == exported.float32(hfName).values, "\(t.name)")
        }
        // The raw F32 rows equal the original file's (the permutation is llama.cpp's, not only self-consistent).
        for name in ["blk.0.attn_q.weight", "blk.1.attn_k.weight", "blk.0.ffn_up.weight"] {
            let x = try #require(a.tensor(named: name)), y = try #require(b.tensor(named: name))
            if x.type == .f32 { #expect(a.data(x).elementsEqual(b.data(y)), "\(name)") }
        }
        for key in ["tokenizer.ggml.model", "tokenizer.ggml.pre", "tokenizer.ggml.tokens", "tokenizer.ggml.token_type", "tokenizer.ggml.merges",
                    "tokenizer.ggml.bos_token_id", "tokenizer.ggml.eos_token_id", "tokenizer.chat_template", "\(arch).block_count",
                    "\(arch).embedding_length", "\(arch).feed_forward_length", "\(arch).attention.head_count", "\(arch).attention.head_count_kv",
                    "\(arch).rope.freq_base", "\(arch).attention.layer_norm_rms_epsilon"] {
            #expect(a[key] == b[key], "\(key): \(String(describing: a[key])) vs \(String(describing: b[key]))")
        }
        #expect(b["general.architecture"] == .string(arch) && b["general.file_type"] == .uint32(0))
        #expect(try windowNLL(hf, seed: 5) == windowNLL(dir + "/out.gguf", seed: 5))
        let v = try PackVerifier.verify(output: dir + "/out.gguf", source: hf)
        #expect(v.layout == "gguf" && v.comparedWithSource)
    }

    @Test("Llama 3 RoPE: exported as llama.cpp's rope_freqs (hand-checked ends, converter's formula between), read back as the same scaling; qeval equal",
          arguments: [(8.0, 1.0, 4.0), (4.0, 1.0, 8.0)])
    func llama3RoPE(factor: Double, low: Double, high: Double) throws {
        let dir = SafetensorsFixture.temporaryDirectory()
        defer { removeTree(dir) }
        let (_, hf) = try importedModel("llama", dir)
        let text = try String(decoding: readSmallFile(hf + "/config.json"), as: UTF8.self)
        guard case .object(var o) = try JSONParser.parse(text) else { Issue.record("config is not an object"); return }
        let theta = try #require(o["rope_theta"]?.doubleValue)
        let scaling: [(String, JSONValue)] = [("factor", .double(factor)), ("high_freq_factor", .double(high)), ("low_freq_factor", .double(low)),
                                              ("original_max_position_embeddings", .int(8192)), ("rope_type", "llama3")]
        o["rope_scaling"] = .object(JSONObject(scaling))
        o["rope_parameters"] = .object(JSONObject(scaling + [("rope_theta", .double(theta))]))
        let f = fopen(hf + "/config.json", "w")!
        fputs(JSONValue.object(o).serialized(indent: 2), f)
        fclose(f)

        _ = try GGUFExport.run(input: hf, output: dir + "/out.gguf", type: .f32)
        let g = try GGUFFile(path: dir + "/out.gguf")
        let t = try #require(g.tensor(named: "rope_freqs.weight"))
        let model = try GGUFModelConfig(g)
        let d = model.headDim
        #expect(t.type == .f32 && t.dimensions == [d / 2])
        let stored = (0..<(d / 2)).map { g.data(t).loadUnaligned(fromByteOffset: 4 * $0, as: Float.self) }
        // Wavelengths 2π·θ^(2i/d) below 8192/high keep their frequency, above 8192/low are divided by the factor.
        var blended = 0
        for i in 0..<(d / 2) {
            let wavelength = 2 * Double.pi * pow(theta, Double(2 * i) / Double(d))
            if wavelength < 8192 / high * 0.999 { #expect(stored[i] == 1, "\(i)") }
            else if wavelength > 8192 / low * 1.001 { #expect(stored[i] == Float(factor), "\(i)") }
            else {
                blended += 1
                let smooth = (8192 / wavelength - low) / (high - low)
                #expect(abs(stored[i] - Float(1 / ((1 - smooth) / factor + smooth))) <= 1e-5 * stored[i], "\(i)")
            }
        }
        #expect(blended >= 1)
        // Read back: the same scaling, so the same inverse frequencies and the same perplexity, bit for bit.
        let r = try #require(model.ropeScaling)
        #expect(r.kind == .llama3 && r.factor == factor && r.lowFrequencyFactor == low && r.highFrequencyFactor == high && r.originalContext == 8192)
        let scaled = try windowNLL(hf, seed: 9)
        #expect(try windowNLL(dir + "/out.gguf", seed: 9) == scaled)
        // The import writes the scaling; the same weights with plain RoPE score differently, so the equality above
        // is the scaling's, not RoPE's.
        try GGUFImport.run(gguf: dir + "/out.gguf", output: dir + "/back", dtype: .f32, maxShardSize: nil)
        let back = try String(decoding: readSmallFile(dir + "/back/config.json"), as: UTF8.self)
        #expect(back.contains("\"rope_type\": \"llama3\""))
        #expect(try windowNLL(dir + "/back", seed: 9) == scaled)
        let plain = fopen(dir + "/back/config.json", "w")!
        fputs(text, plain)
        fclose(plain)
        #expect(try windowNLL(dir + "/back", seed: 9) != scaled)
    }

    @Test("rope_freqs that are not Llama 3's scaling are refused in one line")
    func foreignRopeFreqs() throws {
        #expect(RotaryEmbedding.llama3Scaling(fromFactors: [1, 2, 1, 3], theta: 10000, headDim: 8) == nil)
        #expect(RotaryEmbedding.llama3Scaling(fromFactors: [1, 1, 1, 1], theta: 10000, headDim: 8) == nil)
        let r = RoPEScaling(kind: .llama3, theta: 500000, factor: 32, lowFrequencyFactor: 1, highFrequencyFactor: 4, originalContext: 8192)
        let factors = RotaryEmbedding.llama3Factors(r, headDim: 128)  // Llama 3.2's scaling
        #expect(RotaryEmbedding.llama3Scaling(fromFactors: factors, theta: 500000, headDim: 128) == r)
        #expect(GGUFImportError.unsupportedRoPE("x").description == "cannot convert the GGUF RoPE: x")
    }

    @Test("rope_freqs bits equal convert_hf_to_gguf.py's (its formula on torch 2.13 F32 tensors, values committed)")
    func ropeFreqsReference() {
        // θ 500000; d 128 with Llama 3.1's scaling (factor 8), d 64 with Llama 3.2's (factor 32). Only the blended
        // frequencies are listed; those before are 1, those after the factor.
        for (d, factor, first, blended) in [(128, 8.0, 29, "3f9a8ed5 3fc6d64a 4001af1d 402c732e 406bcace 40a83c06"),
                                            (64, 32.0, 15, "3fd35ec2 4052b46f 411aaaee")] {
            let r = RoPEScaling(kind: .llama3, theta: 500000, factor: factor, lowFrequencyFactor: 1, highFrequencyFactor: 4, originalContext: 8192)
            let bits = blended.split(separator: " ").map { Float(bitPattern: UInt32($0, radix: 16)!) }
            let expected = [Float](repeating: 1, count: first) + bits + [Float](repeating: Float(factor), count: d / 2 - first - bits.count)
            #expect(RotaryEmbedding.llama3Factors(r, headDim: d) == expected, "d \(d)")
        }
    }

    @Test("qkit int4:g32:sym → Q4_0, int4:g32:asym → Q4_1, int8:g32:sym → Q8_0 with the codes kept; verify; import within F16 scales",
          arguments: [("int4:g32:sym", GGMLType.q4_0), ("int4:g32:asym", .q4_1), ("int8:g32:sym", .q8_0)])
    func keptCodes(_ scheme: String, _ type: GGMLType) throws {
        let dir = SafetensorsFixture.temporaryDirectory()
        defer { removeTree(dir) }
        let (_, hf) = try importedModel("llama", dir)
        try quantize(hf, scheme, to: dir + "/q")
        let r = try GGUFExport.run(input: dir + "/q", output: dir + "/out.gguf", type: nil)
        #expect(r.type == type && r.kept == 14)
        let g = try GGUFFile(path: dir + "/out.gguf")
        #expect(g.tensor(named: "blk.0.ffn_down.weight")?.type == type && g.tensor(named: "output_norm.weight")?.type == .f32)
        // The untied output (40 × 64 rows: not whole 256-blocks) is Q8_0, as llama-quantize makes it.
        #expect(g.tensor(named: "output.weight")?.type == .q8_0 || g.tensor(named: "output.weight") == nil)
        _ = try PackVerifier.verify(output: dir + "/out.gguf", source: dir + "/q")
        let source = try PackSource(try Checkpoint(path: dir + "/q"))
        let reader = try openWeights(path: dir + "/out.gguf")
        for plan in source.linears {
            let a = try source.linear(plan)
            let got = try reader.float32(plan.prefix + ".weight").values
            for i in stride(from: 0, to: plan.n * plan.k, by: 7) {
                let j = (i / plan.k) * a.groups + (i % plan.k) / 32
                let s = Float(Float16(a.scales[j])), z = Float(a.zeros![j])
                let expected = type == .q4_1 ? Float(a.codes[i]) * s + Float(Float16(-z * a.scales[j])) : (Float(a.codes[i]) - z) * s
                #expect(got[i] == expected, "\(plan.prefix) [\(i)]")
                if got[i] != expected { break }
            }
        }
        // Refused without --gguf-type: a scheme no GGUF type holds.
        try quantize(hf, "int4:ch:asym", to: dir + "/q64")
        #expect { _ = try GGUFExport.run(input: dir + "/q64", output: dir + "/x.gguf", type: nil) } throws: { e in
            (e as? PackError)?.description.contains("--gguf-type requantizes") == true
        }
        #expect(!fileExists(dir + "/x.gguf"))
        // With --gguf-type the dequantized weights are requantized (and verify re-derives them).
        let q = try GGUFExport.run(input: dir + "/q64", output: dir + "/r.gguf", type: .q8_0)
        #expect(q.kept == 0 && q.quantized > 0)
        _ = try PackVerifier.verify(output: dir + "/r.gguf", source: dir + "/q64")
    }

    @Test("K-quants: Q4_K rows of 64 fall back to Q5_0, Q6_K to Q8_0; values within the type's error; deterministic", arguments: [GGMLType.q4_K, .q6_K])
    func kQuants(_ type: GGMLType) throws {
        let dir = SafetensorsFixture.temporaryDirectory()
        defer { removeTree(dir) }
        let (_, hf) = try importedModel("qwen2", dir)
        _ = try GGUFExport.run(input: hf, output: dir + "/a.gguf", type: type)
        _ = try GGUFExport.run(input: hf, output: dir + "/b.gguf", type: type)
        #expect(try readSmallFile(dir + "/a.gguf") == readSmallFile(dir + "/b.gguf"))
        let g = try GGUFFile(path: dir + "/a.gguf")
        #expect(g.tensor(named: "blk.0.attn_q.weight")?.type == (type == .q4_K ? .q5_0 : .q8_0))
        #expect(g.tensor(named: "blk.0.attn_q.bias")?.type == .f32)
        _ = try PackVerifier.verify(output: dir + "/a.gguf", source: hf)
    }

    @Test("Q4_K and Q6_K super-blocks: formats.md §7 scale packing, reference search on a ramp, decode error")
    func kQuantBlocks() throws {
        // A block whose sub-block scales reach 63 at most: the 6-bit packing of formats.md's vector.
        var x = [Float](repeating: 0, count: 256)
        for i in 0..<256 { x[i] = Float(i % 32) * Float(1 + i / 32) / 31 - 0.25 }
        for type in [GGMLType.q4_K, .q6_K] {
            var bytes = [UInt8](repeating: 0, count: type.typeSize)
            try x.withUnsafeBufferPointer { xs in try bytes.withUnsafeMutableBytes { try GGMLQuants.quantize(type, xs, into: $0) } }
            var y = [Float](repeating: 0, count: 256)
            try bytes.withUnsafeBytes { b in try y.withUnsafeMutableBufferPointer { try GGMLQuants.dequantize(type, b, into: $0) } }
            let err = zip(x, y).map { abs($0 - $1) }.max()!
            #expect(err < (type == .q4_K ? 0.3 : 0.15), "\(type.name): \(err)")
        }
        // All-zero blocks encode as zero bytes (Q6_K's memset) and a zero scale (Q4_K).
        for type in [GGMLType.q4_K, .q6_K] {
            var bytes = [UInt8](repeating: 0xAA, count: type.typeSize)
            try [Float](repeating: 0, count: 256).withUnsafeBufferPointer { xs in try bytes.withUnsafeMutableBytes { try GGMLQuants.quantize(type, xs, into: $0) } }
            #expect(bytes.allSatisfy { $0 == 0 }, "\(type.name)")
        }
    }

    @Test("refused: no tokenizer.json, a SentencePiece tokenizer, an architecture llama.cpp's names do not cover")
    func refusals() throws {
        let dir = SafetensorsFixture.temporaryDirectory()
        defer { removeTree(dir) }
        let model = makeTinyModel()
        defer { removeTree(model) }
        removeTree(model + "/tokenizer.json")
        #expect(throws: PackError.self) { _ = try GGUFExport.run(input: model, output: dir + "/x.gguf", type: .f32) }
        let qwen3 = #filePath.split(separator: "/").dropLast(1).joined(separator: "/")
        #expect { _ = try GGUFExport.run(input: "/" + qwen3 + "/Fixtures/model/qwen3", output: dir + "/x.gguf", type: .f32) } throws: { e in
            (e as? PackError)?.description.contains("model_type 'qwen3'") == true
        }
        #expect(!fileExists(dir + "/x.gguf"))
    }
}
