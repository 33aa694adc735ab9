import Testing
@testable import Common

/// int16 words of little-endian bytes.
private func halfWords(_ b: [UInt8]) -> [UInt16] { stride(from: 0, to: b.count, by: 2).map { UInt16(b[$0]) | UInt16(b[$0 + 1]) << 8 } }

@Suite("tinychat: formats.md §4/§6 vectors, round trip, refusals")
struct PackTinyChatTests {
    @Test("§4 vector: N=4 K=64, row 0 q = k/8 then 8 + k%8 → 0x3210 ×8, 0x8888…0xFFFF; row 1 lands at words 16..31")
    func formatsVector() throws {
        for row in [0, 1] {
            let q = canonicalLinear(bits: 4, n: 4, k: 64, g: 32,
                                    code: { r, k in r != row ? 0 : (k < 32 ? UInt8(k / 8) : UInt8(8 + k % 8)) }, zero: { _, _ in 0 })
            let w = halfWords(try emitted(TinyChatLayout(), q)[0])
            let expected = [UInt16](repeating: 0x3210, count: 8) + (8..<16).map { UInt16($0) * 0x1111 }
            #expect(Array(w[(16 * row)..<(16 * row + 16)]) == expected)
            #expect(w.enumerated().allSatisfy { $0.offset / 16 == row || $0.element == 0 })
            #expect(w[16 * row + 8] == UInt16(bitPattern: -30584))
        }
    }

    @Test("§6 vector produced by autoawq 0.2.9 (GEMVFast = TinyChat's packer): N=8 K=64 G=32, qweight row 0")
    func autoAWQVector() throws {
        let rows = ["9F0B17DC1728DC0D0DCD42C1A55741B88136B220DF07B69BA9BC5E77F080B8F5",
                    "5723B1038714820E395A6B1B2D0AFE0C88411F9CB2830422BD867276F4644CD9",
                    "1CA564A1F1E4AE7353316C81A174855BDC2DF57A01057BC4A624C2C7115C133E",
                    "E233209BE23F08B37297D2CFDD26B9AAB1F1C6B5BE181B86C261E6E89A2EFF9D"].map(hexDigits)
        let expected = """
            A019 5D7F 5C20 7D8B 44D1 12C7 BC0D 81DC FAD8 09F1 8B03 0C76 B5BB 8E62 F792 57B0
            2385 D977 0512 AA43 F68B EB21 0100 CBE3 FBB8 4D28 6884 4631 4701 C24F D729 962C
            A5F1 131C 73EA 4145 86A6 5CE4 587A B131 1A0D 161C 5202 C45D 1C7F 32B5 3CC7 E74A
            D7EE D222 2933 67F3 BD02 9280 ACB9 AF3B 9CBB A2E1 261F E181 FE1C F6B6 9E8B D865
            """.split(whereSeparator: { $0 == " " || $0 == "\n" }).map { UInt16($0, radix: 16)! }
        let zeros: [[UInt8]] = [[1, 1], [5, 3], [0xE, 0xC], [1, 0xC]]
        var q = canonicalLinear(bits: 4, n: 8, k: 64, g: 32, code: { r, k in r < 4 ? rows[r][k] : 0 }, zero: { r, j in r < 4 ? zeros[r][j] : 0 })
        q.scales = (0..<16).map { $0 % 2 == 0 ? 0.5 : 0.25 }
        let t = try emitted(TinyChatLayout(), q)
        #expect(Array(halfWords(t[0]).prefix(64)) == expected)
        // scales / scaled_zeros F16 [32, 8]: rows 0..1 hold s and −s·z, rows 2..31 are 0.
        let s = halfWords(t[1]).map { Float(Float16(bitPattern: $0)) }, sz = halfWords(t[2]).map { Float(Float16(bitPattern: $0)) }
        #expect(s.count == 32 * 8 && s[0] == 0.5 && s[8] == 0.25 && s[16...].allSatisfy { $0 == 0 })
        #expect(sz[0] == -0.5 && sz[8] == -0.25 && sz[2] == -7 && sz[10] == -3 && sz[16...].allSatisfy { $0 == 0 })
    }

    @Test("qkit → tinychat → reader: codes, zeros, F16 scales verified; weights are q·s + scaled_zero; tied lm_head written")
    func roundTrip() throws {
        var up = [Float](repeating: 0, count: 16 * 128)
        for i in up.indices { up[i] = Float((i * 37) % 101 - 50) / 400 }
        let model = makeTinyModel(k: 128, extra: [("model.layers.0.mlp.up_proj.weight", DType.f32, [16, 128], SafetensorsFixture.bytes(up))])
        let dir = SafetensorsFixture.temporaryDirectory()
        defer { removeTree(model); removeTree(dir) }
        // q_proj and down_proj have N = 8; lm_head stays float (TinyChat's rule).
        try quantize(model, "int4:g64:asym", to: dir + "/q")
        _ = try Packer.run(input: dir + "/q", output: dir + "/t", options: PackOptions(layout: TinyChatLayout()))
        let report = try PackVerifier.verify(output: dir + "/t", source: dir + "/q")
        #expect(report.layout == "tinychat" && report.packedLinears == 3 && report.comparedWithSource)
        let reader = try #require(try openWeights(path: dir + "/t") as? TinyChatWeights)
        let source = try PackSource(try Checkpoint(path: dir + "/q"))
        for plan in source.linears {
            let a = try source.linear(plan)
            let got = try reader.float32(plan.prefix + ".weight").values
            for i in 0..<(plan.n * plan.k) {
                let j = (i / plan.k) * a.groups + (i % plan.k) / a.groupLength
                let s = Float(Float16(a.scales[j]))
                let kernel = Float(a.codes[i]) * s - Float(Float16(s * Float(a.zeros![j])))
                #expect(got[i] == kernel)
                if got[i] != kernel { break }
            }
        }
        let ck = try Checkpoint(path: dir + "/t")
        #expect(ck["model.layers.0.mlp.up_proj.qweight"]?.shape == [4, 128] && ck["model.layers.0.mlp.up_proj.scales"]?.shape == [16, 16])  // Gp = 8·calculate_zeros_width(128, 64) = 16
        let qc = try #require(ck.config?["quantization_config"]?.objectValue)
        #expect(qc["quant_method"] == "tinychat" && qc["q_group_size"] == .int(64) && qc["w_bit"] == .int(4))
        let summary = FormatDetector.describe(ck, groups: FormatDetector.weightGroups(ck))
        #expect(summary.format == "tinychat")
    }

    @Test("a tied model gets lm_head.weight (TinyChat unties it) and tie_word_embeddings false")
    func tiedHead() throws {
        let model = SafetensorsFixture.temporaryDirectory()
        let dir = SafetensorsFixture.temporaryDirectory()
        defer { removeTree(model); removeTree(dir) }
        let cfg = SyntheticModelConfig(family: .qwen2, hidden: 128, intermediate: 256, layers: 1, heads: 2, kvHeads: 1, vocab: 64,
                                       tiedEmbeddings: true, dtype: .f16)
        try SyntheticCheckpoint.write(config: cfg, to: model)
        try quantize(model, "int4:g128:asym", to: dir + "/q")
        _ = try Packer.run(input: dir + "/q", output: dir + "/t", options: PackOptions(layout: TinyChatLayout()))
        let ck = try Checkpoint(path: dir + "/t")
        let head = try #require(ck["lm_head.weight"]), embed = try #require(ck["model.embed_tokens.weight"])
        #expect(ck.data(head).elementsEqual(ck.data(embed)))
        #expect(ck.config?["tie_word_embeddings"] == .bool(false))
        _ = try PackVerifier.verify(output: dir + "/t", source: dir + "/q")
    }

    @Test("refused: 3-bit, per-channel, group 48, K % 64, act-order", arguments: [
        ("int3:g32:asym", "4-bit integers only"), ("int4:ch:asym", "groups along K"), ("int4:g48:asym", "32, 64 or ≥ 128"),
    ])
    func refusals(_ scheme: String, _ message: String) throws {
        let model = makeTinyModel(k: 96 * 2)
        let dir = SafetensorsFixture.temporaryDirectory()
        defer { removeTree(model); removeTree(dir) }
        try quantize(model, scheme, to: dir + "/q")
        #expect {
            _ = try Packer.run(input: dir + "/q", output: dir + "/t", options: PackOptions(layout: TinyChatLayout()))
        } throws: { e in (e as? PackError)?.description.contains(message) == true && (e as? PackError)?.exitStatus == .dataError }
        #expect(!fileExists(dir + "/t"))
        // K = 96 (not a multiple of 64) with an otherwise valid scheme.
        let narrow = makeTinyModel(k: 96)
        defer { removeTree(narrow) }
        try quantize(narrow, "int4:g32:asym", to: dir + "/q96")
        #expect {
            _ = try Packer.run(input: dir + "/q96", output: dir + "/t", options: PackOptions(layout: TinyChatLayout()))
        } throws: { e in (e as? PackError)?.description.contains("K % 64") == true }
    }
}
