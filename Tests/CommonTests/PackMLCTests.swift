import Testing
@testable import Common

/// One row of `k` weights quantized and packed by a preset: (words, scales).
private func mlcRow(_ w: [Float], _ preset: MLCPreset) -> (words: [UInt32], scales: [Float]) {
    let k = w.count
    var codes = [UInt8](repeating: 0, count: k)
    var scales = [Float](repeating: 0, count: preset.groups(k))
    var words = [UInt32](repeating: 0xFFFF_FFFF, count: preset.words(k))
    w.withUnsafeBufferPointer { wb in
        codes.withUnsafeMutableBufferPointer { preset.quantize(wb.baseAddress!, rows: 1, k: k, codes: $0.baseAddress!, scales: &scales) }
    }
    codes.withUnsafeBufferPointer { c in words.withUnsafeMutableBufferPointer { preset.pack(c.baseAddress!, rows: 1, k: k, into: $0.baseAddress!) } }
    return (words, scales)
}

private func padded(_ head: [Float], _ k: Int) -> [Float] { head + [Float](repeating: 0, count: k - head.count) }

/// Tests/CommonTests/Fixtures.
private let fixtureRoot: String = {
    let here = #filePath
    return String(here[..<here.lastIndex(of: "/")!]) + "/Fixtures"
}()
private let fixtures = fixtureRoot + "/model"

/// `rows × columns` elements of `size` bytes (row-major) transposed to `columns × rows`.
private func transposedBytes(_ b: UnsafeRawBufferPointer, rows: Int, columns: Int, size: Int) -> [UInt8] {
    var out = [UInt8](repeating: 0, count: b.count)
    for r in 0..<rows {
        for c in 0..<columns { for i in 0..<size { out[(c * rows + r) * size + i] = b[(r * columns + c) * size + i] } }
    }
    return out
}

/// Packs the fixture `family` with `preset` into `output`.
private func packMLC(_ family: String, _ preset: MLCPreset, _ output: String) throws {
    var options = MLCPacker.Options()
    options.preset = preset
    _ = try MLCPacker.run(input: fixtures + "/" + family, output: output, options: options)
}

/// name → TVM dtype string of every record of a tensor cache.
private func tvmDTypes(_ dir: String) throws -> [String: String] {
    let json = try JSONParser.parse(try readSmallFile(dir + "/tensor-cache.json"))
    let records = (json["records"]?.arrayValue ?? []).flatMap { $0["records"]?.arrayValue ?? [] }
    return Dictionary(uniqueKeysWithValues: records.compactMap { r in r["name"]?.stringValue.flatMap { n in r["dtype"]?.stringValue.map { (n, $0) } } })
}

@Suite("qpack mlc: MLC's group quantization (formats.md §3a vectors), the tensor cache (§3c), packing, reading, verifying")
struct PackMLCTests {
    @Test("vectors produced by MLC's GroupQuantize on apache-tvm 0.27 (V1–V7)")
    func vectors() {
        // V1: w[0..7] = (k − 7)·0.25, scale 0.25 (fp16 0x3400).
        let v1 = mlcRow(padded((0..<8).map { Float($0 - 7) * 0.25 }, 32), .q4f16_1)
        #expect(v1.words == [0x7654_3210, 0x7777_7777, 0x7777_7777, 0x7777_7777] && v1.words[0] == 1_985_229_328)
        #expect(Float16(v1.scales[0]).bitPattern == 0x3400)
        // V2: ties to even.
        let v2 = mlcRow(padded([7, -0.5, 0.5, 1.5, 2.5, -1.5, -2.5, 6.5, -6.5], 32), .q4f16_1)
        #expect(v2.words == [0xE46A_886E, 0x7777_7770, 0x7777_7777, 0x7777_7777])
        #expect(mlcRow(padded([7, 0.5, -0.5, 2.5], 32), .q4f32_1).words[0] == 0x7777_A68E)
        // V3: ragged K = 40: two groups, 8 words, the padding codes 0.
        let v3 = mlcRow((0..<40).map { Float($0 - 20) / 8 }, .q4f16_1)
        #expect(v3.words == [0x2221_1100, 0x5554_4433, 0x8877_7666, 0xBAAA_9998, 0xEEDD_DCCB, 0, 0, 0])
        #expect(v3.scales.map { Float16($0) } == [Float16(2.5 / 7.0), Float16(2.375 / 7.0)])
        // V4: q3f16_1, K = 50: 2 groups of 40, ten 3-bit codes a word.
        var w4 = [Float](repeating: 0, count: 50)
        for (i, c) in [0, 1, 2, 3, 4, 5, 6, 0, 1, 2].enumerated() { w4[i] = Float(c - 3) }
        for (i, c) in [6, 5, 4, 3, 2, 1, 0, 6, 5, 4].enumerated() { w4[40 + i] = Float(c - 3) }
        #expect(mlcRow(w4, .q3f16_1).words == [0x111A_C688, 0x1B6D_B6DB, 0x1B6D_B6DB, 0x1B6D_B6DB, 0x25C0_A72E, 0, 0, 0])
        // V5: q4f32_1, scale fp32 0.1 (0x3DCCCCCD), stored on disk as bf16 0x3DCD.
        let v5 = mlcRow(padded([0.1, -0.3, 0.7, 0.05, -0.02, 0.33, -0.69, 0], 32), .q4f32_1)
        #expect(v5.words[0] == 0x70A7_8E48 && v5.scales[0].bitPattern == 0x3DCC_CCCD && TensorCache.bfloat16Bits(v5.scales[0]) == 0x3DCD)
        // V6: the fp16 rounding of w/scale + 7 is visible (code 6, not 7).
        #expect(mlcRow(padded([7, 255.0 / 512, -255.0 / 512], 32), .q4f16_1).words[0] == 0x7777_768E)
        // V7: an all-zero row: scale 0, words 0.
        let v7 = mlcRow([Float](repeating: 0, count: 32), .q4f16_1)
        #expect(v7.words == [0, 0, 0, 0] && v7.scales == [0])
        // Unpacking gives the codes back, padding dropped.
        var codes = [UInt8](repeating: 9, count: 50)
        mlcRow(w4, .q3f16_1).words.withUnsafeBytes { MLCPreset.q3f16_1.unpack($0.baseAddress!, rows: 1, k: 50, into: &codes) }
        #expect(Array(codes[0..<10]) == [0, 1, 2, 3, 4, 5, 6, 0, 1, 2] && Array(codes[40..<50]) == [6, 5, 4, 3, 2, 1, 0, 6, 5, 4] && codes[10] == 3)
    }

    @Test("MLC's group-quantization table (formats.md §3a): bits, group, dtype, layout, embedding / lm_head quantized")
    func presetTable() {
        // name: bits, G, model dtype, KN, quantize embedding / final FC (mlc-ai/mlc-llm quantization.py QUANTIZATION).
        let table: [(String, Int, Int, DType, String, Bool, String)] = [
            ("q4f16_1", 4, 32, .f16, "float16", false, "yes"), ("q4f16_0", 4, 32, .f16, "float16", true, "yes"),
            ("q4f16_2", 4, 32, .f16, "float16", false, "no"), ("q4f32_1", 4, 32, .f32, "float32", false, "yes"),
            ("q4bf16_1", 4, 32, .bf16, "bfloat16", false, "yes"), ("q4bf16_0", 4, 32, .bf16, "bfloat16", true, "yes"),
            ("q3f16_1", 3, 40, .f16, "float16", false, "yes"), ("q3f16_0", 3, 40, .f16, "float16", true, "yes"),
        ]
        #expect(MLCPreset.all.map(\.name) == table.map(\.0))
        for (name, bits, g, dtype, tvm, kn, quantized) in table {
            guard let p = MLCPreset.named(name) else { Issue.record("\(name) missing"); continue }
            #expect(p.bits == bits && p.groupSize == g && p.modelDType == dtype && p.tvmModelDType == tvm && p.transposed == kn, "\(name)")
            #expect(p.quantizesEmbedding == (quantized == "yes") && p.quantizesFinalFC == (quantized == "yes"), "\(name)")
            #expect(p.storedScaleDType == (dtype == .f16 ? .f16 : .bf16), "\(name)")
            // KN transposes linears only: [words, N] / [groups, N]; the embedding stays [vocab, words].
            #expect(p.qWeightShape(n: 96, k: 64, embedding: false) == (kn ? [p.words(64), 96] : [96, p.words(64)]), "\(name)")
            #expect(p.qScaleShape(n: 96, k: 64, embedding: false) == (kn ? [p.groups(64), 96] : [96, p.groups(64)]), "\(name)")
            #expect(p.qWeightShape(n: 320, k: 64, embedding: true) == [320, p.words(64)] && p.qScaleShape(n: 320, k: 64, embedding: true) == [320, p.groups(64)])
        }
        #expect(MLCPreset.named("q4f16_autoawq") == nil && MLCPreset.named("q0f16") == nil)
    }

    @Test("q4bf16_*: V1 holds with scale bf16 0.25; every quantizer step rounds to bf16 (cast, scale, w/scale, + max_int)")
    func bf16Vectors() {
        // V1 (formats.md §3a): "q4bf16_1 gives the same words, with scale bf16 0.25".
        let w1 = padded((0..<8).map { Float($0 - 7) * 0.25 }, 32)
        let v1 = mlcRow(w1, .q4bf16_1)
        #expect(v1.words == [0x7654_3210, 0x7777_7777, 0x7777_7777, 0x7777_7777] && v1.words[0] == 1_985_229_328)
        #expect(v1.scales == [0.25] && Conversion.bfloat16Bits(v1.scales[0]) == 0x3E80)
        #expect(mlcRow(w1, .q4bf16_0) == v1)   // the layout does not change the quantizer
        // The weight 1.5322265625 is cast to bf16 1.53125; + 7 = 8.53125 is halfway between bf16 8.5 and 8.5625 and
        // goes to 8.5, which rounds (ties to even) to code 8. fp16 and fp32 keep 8.53… and give code 9.
        let w2 = padded([7, 1.53125 + 1.0 / 1024], 32)
        #expect(mlcRow(w2, .q4bf16_1).words[0] == 0x7777_778E)
        #expect(mlcRow(w2, .q4f16_1).words[0] == 0x7777_779E && mlcRow(w2, .q4f32_1).words[0] == 0x7777_779E)
        // scale = 1/7 rounded to bf16 (0x3E12 = 0.142578125); 0.5 / scale → bf16 3.5, + 7 = 10.5 → code 10.
        let v3 = mlcRow(padded([1, 0.5], 32), .q4bf16_1)
        #expect(v3.scales[0].bitPattern == 0x3E12_0000 && v3.words[0] == 0x7777_77AE)
        // V7 in bf16: an all-zero row has scale 0 and codes 0.
        #expect(mlcRow([Float](repeating: 0, count: 32), .q4bf16_1) == ([0, 0, 0, 0], [0]))
    }

    @Test("KN presets: linears' q_weight/q_scale are the NK preset's arrays transposed, the embedding is not; read back the same",
          arguments: [("mistral", "q4f16_0", "q4f16_1"), ("qwen2", "q3f16_0", "q3f16_1"), ("qwen2", "q4bf16_0", "q4bf16_1"),
                      ("llama3", "q4bf16_0", "q4bf16_1")])
    func knLayout(_ family: String, _ knName: String, _ nkName: String) throws {
        let kn = try #require(MLCPreset.named(knName)), nk = try #require(MLCPreset.named(nkName))
        #expect(kn.transposed && !nk.transposed && kn.bits == nk.bits && kn.groupSize == nk.groupSize && kn.modelDType == nk.modelDType)
        let dir = SafetensorsFixture.temporaryDirectory()
        defer { removeTree(dir) }
        let model = fixtures + "/" + family
        try packMLC(family, kn, dir + "/kn")
        try packMLC(family, nk, dir + "/nk")
        let a = try Checkpoint(path: dir + "/kn"), b = try Checkpoint(path: dir + "/nk")
        #expect(Set(a.tensors.map(\.name)) == Set(b.tensors.map(\.name)))
        var transposed = 0
        for t in b.tensors {
            guard let u = a[t.name] else { Issue.record("\(t.name) missing in \(knName)"); continue }
            #expect(u.encoding == t.encoding, "\(t.name)")
            let quantized = t.name.hasSuffix(".q_weight") || t.name.hasSuffix(".q_scale")
            if quantized && !t.name.hasPrefix("model.embed_tokens.") {
                #expect(t.shape.count == 2 && u.shape == [t.shape[1], t.shape[0]] && t.shape[0] != t.shape[1], "\(t.name) \(u.shape) \(t.shape)")
                let size = t.byteCount / t.elementCount
                #expect(Array(a.data(u)) == transposedBytes(b.data(t), rows: t.shape[0], columns: t.shape[1], size: size), "\(t.name)")
                transposed += 1
            } else {
                // The embedding (q_weight [vocab, words], q_scale [vocab, groups]) and float parameters: identical.
                #expect(u.shape == t.shape && Array(a.data(u)) == Array(b.data(t)), "\(t.name)")
            }
        }
        // Two arrays for each of qkv, o_proj, gate_up, down_proj in 2 layers, and lm_head when untied.
        let tied = try Checkpoint(path: model).config?["tie_word_embeddings"]?.boolValue ?? false
        #expect(transposed == 2 * (4 * 2 + (tied ? 0 : 1)))
        // qinspect's summary reads the transposed arrays as the same modules, parameters and bits.
        let groups = (FormatDetector.weightGroups(a), FormatDetector.weightGroups(b))
        #expect(groups.0.map(\.prefix) == groups.1.map(\.prefix) && groups.0.map(\.parameters) == groups.1.map(\.parameters))
        #expect(groups.0.filter { $0.scheme == .mlc }.count == 4 * 2 + 1 + (tied ? 0 : 1))
        #expect(groups.0.map(\.bits) == groups.1.map(\.bits) && groups.0.contains { $0.bits == kn.bits })
        #expect(a["model.embed_tokens.q_weight"]?.shape == [320, kn.words(64)] && (tied || a["lm_head.q_weight"]?.shape == [kn.words(64), 320]))
        // TVM dtype strings: scales and float parameters in the model dtype (bfloat16 stored raw: no b16 copy).
        let dtypes = try tvmDTypes(dir + "/kn")
        #expect(dtypes["model.layers.1.mlp.down_proj.q_scale"] == kn.tvmModelDType && dtypes["model.norm.weight"] == kn.tvmModelDType
                && dtypes["model.embed_tokens.q_scale"] == kn.tvmModelDType && dtypes["model.layers.1.mlp.down_proj.q_weight"] == "uint32")
        #expect(!fileExists(dir + "/kn/" + TensorCache.b16JSONName))
        // The chat config names the KN preset; reading back un-transposes: every weight equals the NK preset's.
        let chat = try JSONParser.parse(try readSmallFile(dir + "/kn/mlc-chat-config.json"))
        #expect(chat["quantization"]?.stringValue == knName)
        let ra = try #require(try openWeights(path: dir + "/kn") as? MLCWeights), rb = try #require(try openWeights(path: dir + "/nk") as? MLCWeights)
        #expect(ra.preset == kn && ra.packedPrefixes == rb.packedPrefixes && ra.packedPrefixes.count == 7 * 2 + 1 + (tied ? 0 : 1))
        var compared = 0
        for name in try Checkpoint(path: model).tensors.map(\.name) where rb.contains(name) {
            #expect(ra.contains(name), "\(name)")
            let x = try ra.float32(name), y = try rb.float32(name)
            #expect(x.shape == y.shape && x.values == y.values, "\(name)")
            compared += 1
        }
        #expect(compared >= 9 * 2 + 2)
        // A whole-tensor read equals reads of single rows (the KN gather by row offset).
        let qkv = family.hasPrefix("qwen") ? "c_attn" : "qkv_proj"
        #expect(ra.tensorNames(of: "model.layers.0.self_attn.k_proj") == ["model.layers.0.self_attn.\(qkv).q_weight", "model.layers.0.self_attn.\(qkv).q_scale"])
        let k = try ra.unpack("model.layers.0.self_attn.k_proj", rows: 0..<32)
        for r in [0, 5, 31] {
            let one = try ra.unpack("model.layers.0.self_attn.k_proj", rows: r..<(r + 1))
            #expect(one.codes.array == Array(k.codes.array[(r * 64)..<((r + 1) * 64)]) && one.scales == Array(k.scales[(r * k.groups)..<((r + 1) * k.groups)]))
        }
        let v = try PackVerifier.verify(output: dir + "/kn", source: model)
        #expect(v.layout == "mlc" && v.comparedWithSource && v.packedLinears == ra.packedPrefixes.count)
    }

    @Test("q4f16_2: embedding and lm_head stay float16 .weight, the linears as q4f16_1; a quantized source embedding is refused",
          arguments: ["mistral", "llama3", "qwen2"])
    func unquantizedEmbedding(_ family: String) throws {
        let dir = SafetensorsFixture.temporaryDirectory()
        defer { removeTree(dir) }
        let model = fixtures + "/" + family
        try packMLC(family, .q4f16_2, dir + "/q2")
        try packMLC(family, .q4f16_1, dir + "/q1")
        let ck = try Checkpoint(path: dir + "/q2"), ref = try Checkpoint(path: dir + "/q1")
        let tied = try Checkpoint(path: model).config?["tie_word_embeddings"]?.boolValue ?? false
        let e = try #require(ck["model.embed_tokens.weight"])
        #expect(e.encoding == .dtype(.f16) && e.shape == [320, 64])
        #expect(ck["model.embed_tokens.q_weight"] == nil && ck["model.embed_tokens.q_scale"] == nil && ref["model.embed_tokens.q_weight"] != nil)
        #expect(ck["lm_head.q_weight"] == nil && ck["lm_head.q_scale"] == nil)
        if tied { #expect(ck["lm_head.weight"] == nil) } else { #expect(ck["lm_head.weight"]?.encoding == .dtype(.f16) && ck["lm_head.weight"]?.shape == [320, 64]) }
        let dtypes = try tvmDTypes(dir + "/q2")
        #expect(dtypes["model.embed_tokens.weight"] == "float16" && (tied || dtypes["lm_head.weight"] == "float16"))
        // Everything else is q4f16_1's, byte for byte.
        var same = 0
        for t in ref.tensors where !t.name.hasPrefix("model.embed_tokens.") && !t.name.hasPrefix("lm_head.") {
            #expect(ck[t.name].map { Array(ck.data($0)) } == Array(ref.data(t)), "\(t.name)")
            same += 1
        }
        #expect(ck.tensors.count == same + (tied ? 1 : 2))
        // Read back: the float weights rounded to fp16; the linears as q4f16_1 dequantizes them.
        let float = try CheckpointWeights(path: model)
        let r2 = try #require(try openWeights(path: dir + "/q2") as? MLCWeights), r1 = try #require(try openWeights(path: dir + "/q1") as? MLCWeights)
        #expect(r2.preset == .q4f16_2 && r2.packedPrefixes == r1.packedPrefixes.filter { $0 != "model.embed_tokens" && $0 != "lm_head" })
        for name in ["model.embed_tokens.weight"] + (tied ? [] : ["lm_head.weight"]) {
            let got = try r2.float32(name), want = try float.float32(name)
            #expect(got.shape == want.shape && got.values == want.values.map { Float(Float16($0)) }, "\(name)")
            #expect(try r1.float32(name).values != got.values, "\(name)")   // q4f16_1 quantizes it
        }
        for name in ["model.layers.0.self_attn.q_proj.weight", "model.layers.1.mlp.down_proj.weight"] {
            #expect(try r2.float32(name).values == r1.float32(name).values, "\(name)")
        }
        let chat = try JSONParser.parse(try readSmallFile(dir + "/q2/mlc-chat-config.json"))
        #expect(chat["quantization"]?.stringValue == "q4f16_2")
        _ = try PackVerifier.verify(output: dir + "/q2", source: model)
        // q4f16_1's output is not a valid q4f16_2 directory: relabelled, verify finds the quantized embedding.
        var relabelled = try #require(chat.objectValue)
        relabelled["quantization"] = "q4f16_1"
        try writeSmallFile(dir + "/q2/mlc-chat-config.json", JSONValue.object(relabelled).serialized(indent: 2))
        #expect(throws: PackError.self) { _ = try PackVerifier.verify(output: dir + "/q2", source: model) }
        guard family == "llama3" else { return }
        // MLC's q4f16_2 as a qkit checkpoint keeps the embedding float and packs to the float model's files.
        try MLCPacker.quantizeToQKit(model: model, output: dir + "/qkit2", preset: .q4f16_2)
        _ = try MLCPacker.run(input: dir + "/qkit2", output: dir + "/from-qkit", options: { var o = MLCPacker.Options(); o.preset = .q4f16_2; return o }())
        try packMLC(family, .q4f16_2, dir + "/from-float")
        for f in listDirectory(dir + "/from-float") where f != "tokenizer_config.json" {
            #expect(try readSmallFile(dir + "/from-float/" + f) == readSmallFile(dir + "/from-qkit/" + f), "\(f)")
        }
        // A qkit checkpoint with the embedding quantized cannot become q4f16_2 (MLC keeps it float16).
        try MLCPacker.quantizeToQKit(model: model, output: dir + "/qkit1", preset: .q4f16_1)
        #expect {
            _ = try MLCPacker.run(input: dir + "/qkit1", output: dir + "/x", options: { var o = MLCPacker.Options(); o.preset = .q4f16_2; return o }())
        } throws: { e in (e as? PackError).map { "\($0)".contains("model.embed_tokens.weight is quantized in the source") } ?? false }
        #expect(!isDirectory(dir + "/x"))
        // An unknown preset in mlc-chat-config.json is refused with the list of the presets read.
        relabelled["quantization"] = "q8f16_1"
        try writeSmallFile(dir + "/q1/mlc-chat-config.json", JSONValue.object(relabelled).serialized(indent: 2))
        #expect {
            _ = try openWeights(path: dir + "/q1")
        } throws: { e in MLCPreset.all.allSatisfy { "\(e)".contains($0.name) } && "\(e)".contains("q8f16_1") }
    }

    @Test("MD5 as hashlib computes it, in one piece or streamed")
    func md5() {
        func hex(_ s: String) -> String { Array(s.utf8).withUnsafeBytes { MD5.hex($0) } }
        #expect(hex("") == "d41d8cd98f00b204e9800998ecf8427e")
        #expect(hex("abc") == "900150983cd24fb0d6963f7d28e17f72")
        #expect(hex("The quick brown fox jumps over the lazy dog") == "9e107d9d372bb6826bd81d3542a419d6")
        let long = (0..<1000).map { UInt8(truncatingIfNeeded: $0 * 7) }
        var m = MD5()
        for chunk in stride(from: 0, to: long.count, by: 37) { long[chunk..<min(long.count, chunk + 37)].withUnsafeBytes { m.update($0) } }
        #expect(m.finalizeHex() == long.withUnsafeBytes { MD5.hex($0) })
    }

    @Test("vector C1: dump_tensor_cache's shard bytes, md5, JSON (1800 bytes) and the b16 copy")
    func containerVector() throws {
        let dir = SafetensorsFixture.temporaryDirectory()
        defer { removeTree(dir) }
        let w = TensorCacheWriter(directory: dir)
        try w.begin(name: "model.layers.0.self_attn.qkv_proj.q_weight", shape: [1, 4], tvmDType: "uint32")
        try [UInt32(0x7654_3210), 0x7777_7777, 0x7777_7777, 0x7777_7777].withUnsafeBytes { try w.write($0) }
        try w.begin(name: "model.layers.0.self_attn.qkv_proj.q_scale", shape: [1, 1], tvmDType: "float16")
        try [Float16(0.25).bitPattern].withUnsafeBytes { try w.write($0) }
        try w.begin(name: "model.layers.0.mlp.down_proj.q_scale", shape: [1, 2], tvmDType: "float32")
        try [Float(0.1), 1.00390625].withUnsafeBytes { try w.write($0) }
        try w.begin(name: "model.norm.weight", shape: [2], tvmDType: "float16")
        try [Float16(1).bitPattern, Float16(-2).bitPattern].withUnsafeBytes { try w.write($0) }
        let meta: JSONValue = .object(JSONObject([("ParamSize", 4), ("ParamBytes", 30.0), ("BitsPerParam", .double(6.666666666666667))]))
        #expect(w.recordCount == 4 && w.sourceBytes == 30)
        let files = try w.finish(metadata: meta)
        #expect(files == ["params_shard_0.bin", "tensor-cache.json", "tensor-cache-b16.json"])
        let shard = try readSmallFile(dir + "/params_shard_0.bin")
        let hex = shard.map { ($0 < 16 ? "0" : "") + String($0, radix: 16) }.joined()
        #expect(hex == "10325476777777777777777777777777" + "0034" + "cd3d803f" + "003c00c0")
        let json = try readSmallFile(dir + "/tensor-cache.json")
        #expect(json.count == 1800 && json.last == UInt8(ascii: "}"))
        let compact = try JSONParser.parse(json).serialized()
        #expect(compact == #"{"metadata":{"ParamSize":4,"ParamBytes":30.0,"BitsPerParam":6.666666666666667},"#
                + #""records":[{"dataPath":"params_shard_0.bin","format":"raw-shard","nbytes":26,"records":["#
                + #"{"name":"model.layers.0.self_attn.qkv_proj.q_weight","shape":[1,4],"dtype":"uint32","format":"f32-to-bf16","nbytes":16,"byteOffset":0},"#
                + #"{"name":"model.layers.0.self_attn.qkv_proj.q_scale","shape":[1,1],"dtype":"float16","format":"f32-to-bf16","nbytes":2,"byteOffset":16},"#
                + #"{"name":"model.layers.0.mlp.down_proj.q_scale","shape":[1,2],"dtype":"float32","format":"f32-to-bf16","nbytes":4,"byteOffset":18},"#
                + #"{"name":"model.norm.weight","shape":[2],"dtype":"float16","format":"f32-to-bf16","nbytes":4,"byteOffset":22}],"#
                + #""md5sum":"2f966990b60fdd1e8b660da597f58720"}]}"#)
        let b16 = try JSONParser.parse(try readSmallFile(dir + "/tensor-cache-b16.json"))
        let rec = b16["records"]?.arrayValue?[0]["records"]?.arrayValue?[2]
        #expect(rec?["dtype"] == "bfloat16" && rec?["format"] == "raw")
        // Read back: the F32 record decodes to bf16 values (0.1 → 0.10009765625, 1.00390625 ties to 1.0).
        let ck = try Checkpoint(path: dir)
        #expect(ck.kind == .tensorCache && ck.tensors.count == 4)
        let s = try CheckpointWeights(ck).float32("model.layers.0.mlp.down_proj.q_scale")
        #expect(s.values == [0.10009765625, 1.0])
    }

    @Test("sharding as dump_tensor_cache: ≥ cap closes, a record of half the cap or more gets its own shard")
    func sharding() throws {
        let dir = SafetensorsFixture.temporaryDirectory()
        defer { removeTree(dir) }
        let w = TensorCacheWriter(directory: dir, shardCap: 1024, encodeFormat: "raw")
        for (i, size) in [400, 700, 100, 3000, 50].enumerated() {
            try w.begin(name: "t\(i)", shape: [size], tvmDType: "uint8")
            try [UInt8](repeating: UInt8(i), count: size).withUnsafeBytes { try w.write($0) }
        }
        try w.finish(metadata: .object(JSONObject()))
        let json = try JSONParser.parse(try readSmallFile(dir + "/tensor-cache.json"))
        let shards = json["records"]!.arrayValue!.map { s in s["records"]!.arrayValue!.map { $0["name"]!.stringValue! } }
        #expect(shards == [["t1"], ["t3"], ["t0", "t2", "t4"]])
        let ck = try Checkpoint(path: dir + "/tensor-cache.json")
        #expect(ck.data(ck["t4"]!).allSatisfy { $0 == 4 } && ck["t4"]!.byteCount == 50)
    }

    @Test("malformed tensor caches are refused with one message, never a crash")
    func malformed() throws {
        let dir = SafetensorsFixture.temporaryDirectory()
        defer { removeTree(dir) }
        let w = TensorCacheWriter(directory: dir, encodeFormat: "raw")
        try w.begin(name: "a", shape: [2, 2], tvmDType: "float16")
        try [UInt16](repeating: 0x3C00, count: 4).withUnsafeBytes { try w.write($0) }
        try w.finish(metadata: .object(JSONObject()))
        let good = String(decoding: try readSmallFile(dir + "/tensor-cache.json"), as: UTF8.self)
        let mutations: [(String, String)] = [
            ("\"nbytes\": 8,\n", "\"nbytes\": 9,\n"), ("\"raw-shard\"", "\"raw\""), ("\"params_shard_0.bin\"", "\"../x.bin\""),
            ("\"params_shard_0.bin\"", "\"missing.bin\""), ("\"float16\"", "\"float17\""), ("\"byteOffset\": 0", "\"byteOffset\": 4"),
            ("\"byteOffset\": 0", "\"byteOffset\": -1"), ("\"shape\": [", "\"shape\": [-"), ("\"format\": \"raw\"", "\"format\": \"zip\""),
            ("\"records\": [\n                {", "\"records\": [\n                3, {"), ("{", "["), ("\"name\": \"a\"", "\"name\": 1"),
        ]
        var refused = 0
        for (from, to) in mutations + (1..<8).map { (String(good.prefix(good.count * $0 / 8)), "") } {
            guard good.contains(from) else { Issue.record("mutation '\(from)' does not apply"); continue }
            var text = good
            if to.isEmpty, from.count < good.count { text = from } else if let r = text.firstRange(of: from) { text.replaceSubrange(r, with: to) }
            try writeSmallFile(dir + "/tensor-cache.json", text)
            do { _ = try Checkpoint(path: dir) } catch let e as any QKitError {
                refused += 1
                #expect(!e.description.contains("\n") && [.dataError, .noInput].contains(e.exitStatus), "\(e)")
            }
        }
        #expect(refused == mutations.count + 7)
        // Two records of one name.
        let dup = good.replacing("\"records\": [\n                {", with: "\"records\": [\n                {\"name\": \"a\", \"shape\": [1], \"dtype\": \"float16\", \"format\": \"raw\", \"nbytes\": 2, \"byteOffset\": 0},\n{", maxReplacements: 1)
        try writeSmallFile(dir + "/tensor-cache.json", dup)
        #expect(throws: TensorCacheError.self) { _ = try Checkpoint(path: dir) }
    }

    @Test("float model → mlc → verify, reader splits qkv/gate_up back (llama3, mistral, qwen2, qwen3 fixtures, every preset)",
          arguments: [("llama3", "q4f16_1"), ("mistral", "q4f32_1"), ("qwen2", "q3f16_1"), ("qwen3", "q4f16_1"), ("qwen2", "q4f32_1"),
                      ("mistral", "q4f16_0"), ("qwen2", "q3f16_0"), ("llama3", "q4bf16_1"), ("qwen3", "q4bf16_0"), ("qwen2", "q4f16_2")])
    func roundTrip(_ family: String, _ presetName: String) throws {
        let preset = try #require(MLCPreset.named(presetName))
        let dir = SafetensorsFixture.temporaryDirectory()
        defer { removeTree(dir) }
        let model = fixtures + "/" + family
        var options = MLCPacker.Options()
        options.preset = preset
        let report = try MLCPacker.run(input: model, output: dir + "/mlc", options: options)
        #expect(report.quantizedFirst && report.files.contains("mlc-chat-config.json") && report.files.contains("tensor-cache.json"))
        let v = try PackVerifier.verify(output: dir + "/mlc", source: model)
        #expect(v.layout == "mlc" && v.comparedWithSource && v.packedLinears > 0)
        let reader = try #require(try openWeights(path: dir + "/mlc") as? MLCWeights)
        let float = try CheckpointWeights(path: model)
        let layer = "model.layers.1."
        for name in ["self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "mlp.gate_proj", "mlp.up_proj", "self_attn.o_proj", "mlp.down_proj"] {
            // Dequantized MLC weights are close to the float ones and equal to the codes MLC's quantizer gives.
            let got = try reader.float32(layer + name + ".weight"), want = try float.float32(layer + name + ".weight")
            #expect(got.shape == want.shape, "\(name)")
            let k = want.shape[1]
            var codes = [UInt8](repeating: 0, count: want.values.count)
            var scales = [Float](repeating: 0, count: want.shape[0] * preset.groups(k))
            want.values.withUnsafeBufferPointer { preset.quantize($0.baseAddress!, rows: want.shape[0], k: k, codes: &codes, scales: &scales) }
            let g = preset.groups(k)
            let expected = (0..<want.values.count).map { i -> Float in
                let s = preset.storedScaleDType.rounding(scales[(i / k) * g + (i % k) / preset.groupSize])
                return (Float(codes[i]) - Float(preset.maxInt)) * s
            }
            #expect(got.values == expected, "\(family) \(presetName) \(name)")
        }
        if family == "qwen2" {
            let b = try reader.float32(layer + "self_attn.k_proj.bias").values, f = try float.float32(layer + "self_attn.k_proj.bias").values
            #expect(b == f.map { preset.modelDType == .f16 ? Float(Float16($0)) : Conversion.float(fromBFloat16Bits: TensorCache.bfloat16Bits($0)) })
        }
        // Deterministic bytes; the chat config names the family and the preset.
        _ = try MLCPacker.run(input: model, output: dir + "/mlc2", options: options)
        for f in listDirectory(dir + "/mlc") { #expect(try readSmallFile(dir + "/mlc/" + f) == readSmallFile(dir + "/mlc2/" + f), "\(f)") }
        let chat = try JSONParser.parse(try readSmallFile(dir + "/mlc/mlc-chat-config.json"))
        #expect(chat["model_type"]?.stringValue == (try Checkpoint(path: model)).config?["model_type"]?.stringValue && chat["quantization"]?.stringValue == presetName)
        // MLC's fused names per family.
        let ck = try Checkpoint(path: dir + "/mlc")
        let attention = family.hasPrefix("qwen") ? "c_attn" : "qkv_proj"
        #expect(ck["model.layers.0.self_attn.\(attention).q_weight"] != nil && ck["model.layers.0.mlp.gate_up_proj.q_scale"] != nil)
        #expect(ck["model.layers.0.self_attn.q_proj.q_weight"] == nil && (family != "qwen2" || ck["model.layers.0.self_attn.c_attn.bias"] != nil))
        // qinspect --summary's architecture line comes from mlc-chat-config.json (a tensor cache has no config.json).
        let source = try #require(try Checkpoint(path: model).config)
        let a = try #require(CheckpointSummary(ck).architecture)
        #expect(a.family == source["model_type"]?.stringValue && a.layers == source["num_hidden_layers"]?.intValue
                && a.hidden == source["hidden_size"]?.intValue && a.kvHeads == source["num_key_value_heads"]?.intValue
                && a.vocab == source["vocab_size"]?.intValue && a.dtype == preset.tvmModelDType)
    }

    @Test("a qkit checkpoint of MLC's quantization packs to the same files as its float model; qkit codes that do not fit are refused")
    func qkitSource() throws {
        let dir = SafetensorsFixture.temporaryDirectory()
        defer { removeTree(dir) }
        let model = fixtures + "/llama3"
        try MLCPacker.quantizeToQKit(model: model, output: dir + "/q", preset: .q4f16_1)
        _ = try MLCPacker.run(input: model, output: dir + "/from-float", options: MLCPacker.Options())
        let r = try MLCPacker.run(input: dir + "/q", output: dir + "/from-qkit", options: MLCPacker.Options())
        #expect(!r.quantizedFirst)
        for f in listDirectory(dir + "/from-float") where f != "tokenizer_config.json" {
            #expect(try readSmallFile(dir + "/from-float/" + f) == readSmallFile(dir + "/from-qkit/" + f), "\(f)")
        }
        _ = try PackVerifier.verify(output: dir + "/from-qkit", source: dir + "/q")
        // The qkit checkpoint and the MLC output read as the same weights (what qeval scores).
        let a = try openWeights(path: dir + "/q"), b = try openWeights(path: dir + "/from-qkit")
        for name in ["model.embed_tokens.weight", "model.layers.0.self_attn.v_proj.weight", "model.layers.1.mlp.up_proj.weight"] {
            #expect(try a.float32(name).values == b.float32(name).values, "\(name)")
        }
        // qquant's symmetric int4 has code −8, which MLC's fixed zero point 7 cannot hold.
        let recipe = try QuantRecipe(defaultScheme: try #require(try QuantScheme.parse("int4:g32:sym")))
        _ = try QKitQuantizer.run(model: model, output: dir + "/sym", options: QuantizeOptions(recipe: recipe))
        #expect {
            _ = try MLCPacker.run(input: dir + "/sym", output: dir + "/x", options: MLCPacker.Options())
        } throws: { e in (e as? PackError).map { "\($0)".contains("zero point is fixed at 7") && $0.exitStatus == .dataError } ?? false }
        let g64 = try QuantRecipe(defaultScheme: try #require(try QuantScheme.parse("int4:g16:asym")))
        _ = try QKitQuantizer.run(model: model, output: dir + "/g64", options: QuantizeOptions(recipe: g64))
        #expect(throws: PackError.self) { _ = try MLCPacker.run(input: dir + "/g64", output: dir + "/x", options: MLCPacker.Options()) }
        #expect(!isDirectory(dir + "/x"))
        // A mismatching source fails verification.
        var o = MLCPacker.Options()
        o.preset = .q4f32_1
        _ = try MLCPacker.run(input: model, output: dir + "/f32", options: o)
        #expect(throws: PackError.self) { _ = try PackVerifier.verify(output: dir + "/f32", source: fixtures + "/mistral") }
    }

    @Test("mlc-chat-config.json: model_config as MLC's dataclasses fill it, templates as MLC's registry dumps them")
    func chatConfig() throws {
        let dir = SafetensorsFixture.temporaryDirectory()
        defer { removeTree(dir) }
        let chat = try MLCChatConfig.make(directory: fixtures + "/llama3", config: try #require(Checkpoint(path: fixtures + "/llama3").config),
                                          family: try #require(MLCFamily.of(Checkpoint(path: fixtures + "/llama3").config)), preset: .q4f16_1,
                                          template: nil, path: "llama3").config
        #expect(chat.keys == ["version", "model_type", "quantization", "model_config", "vocab_size", "context_window_size", "sliding_window_size",
                              "prefill_chunk_size", "attention_sink_size", "tensor_parallel_shards", "pipeline_parallel_stages", "active_vocab_size",
                              "temperature", "presence_penalty", "frequency_penalty", "repetition_penalty", "top_p", "tokenizer_files",
                              "tokenizer_info", "conv_template", "pad_token_id", "bos_token_id", "eos_token_id", "model_task", "embedding_metadata"])
        let m = try #require(chat["model_config"]?.objectValue)
        #expect(m.keys == ["hidden_size", "intermediate_size", "num_attention_heads", "num_hidden_layers", "rms_norm_eps", "vocab_size",
                           "tie_word_embeddings", "position_embedding_base", "rope_scaling", "context_window_size", "prefill_chunk_size",
                           "num_key_value_heads", "head_dim", "tensor_parallel_shards", "pipeline_parallel_stages", "max_batch_size", "disaggregation"])
        #expect(m["position_embedding_base"]?.doubleValue == 500000 && m["rope_scaling"]?["rope_type"] == "llama3" && m["max_batch_size"] == 128)
        #expect(chat["context_window_size"] == 256 && chat["prefill_chunk_size"] == 256 && chat["sliding_window_size"] == -1)
        // The embedded templates equal the fixture generated from MLC's registry.
        let fixture = try JSONParser.parse(try readSmallFile(fixtureRoot + "/mlc/conv_templates.json"))
        let templates = try #require(fixture["templates"]?.objectValue)
        #expect(Set(templates.keys) == Set(MLCChatConfig.templateNames))
        for (name, t) in templates.members { #expect(MLCChatConfig.conversationTemplate(name) == t, "\(name)") }
        let family = MLCFamily.of(.object(JSONObject([("model_type", "qwen2")])))!
        #expect(MLCChatConfig.detectTemplate(family: family, chatTemplate: "{{'<|im_start|>' + m}}") == "qwen2")
        #expect(MLCChatConfig.detectTemplate(family: family, chatTemplate: nil) == "LM")
        // Tokenizer info and the active vocabulary (SmolLM2's tokenizer.json: byte-level, 49152 ids).
        let tok = try JSONParser.parse(try readSmallFile(testAssets() + "/smollm2-135m/tokenizer.json"))
        #expect(MLCChatConfig.tokenizerInfo(tok)["token_postproc_method"] == "byte_level" && MLCChatConfig.activeVocabSize(tok) == 49152)
    }
}
