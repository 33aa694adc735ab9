import Testing
@testable import Common

/// A tiny synthetic qkit W4A4 checkpoint: two linears with codes, scales, smooth, a low-rank branch (and a bias on
/// one), as the SVDQuant algorithm will write them, plus a float embedding. N, K and R are not multiples of the tiles.
func makeW4A4Checkpoint(nvfp4: Bool, rank: Int = 20, seed: UInt64 = 7, smooth: Bool = true, lora: Bool = true, group: Int = 64) -> String {
    let dir = SafetensorsFixture.temporaryDirectory()
    var rng = SplitMix(seed: seed)
    func uniform(_ n: Int, _ lo: Float, _ hi: Float) -> [Float] { (0..<n).map { _ in lo + (hi - lo) * Float(rng.next() % 10_000) / 10_000 } }
    func bf16(_ v: [Float]) -> [UInt8] { SafetensorsFixture.bytes(v.map { Conversion.bfloat16Bits($0) }) }
    var tensors: [(name: String, dtype: DType, shape: [Int], bytes: [UInt8])] = [("model.embed_tokens.weight", .bf16, [8, 192], bf16(uniform(8 * 192, -1, 1)))]
    var modules = JSONObject()
    for (p, n, k) in [("model.layers.0.self_attn.q_proj", 200, 192), ("model.layers.0.mlp.down_proj", 64, 256)] {
        let g = nvfp4 ? 16 : group
        if nvfp4 {
            tensors.append((p + ".weight_q", .u8, [n, k], (0..<(n * k)).map { _ in UInt8(rng.next() % 16) }))
            tensors.append((p + ".weight_scale", .f8E4M3, [n, k / g], uniform(n * k / g, 0.01, 400).map { Conversion.float8E4M3Bits($0) }))
            tensors.append((p + ".weight_global_scale", .f32, [1], SafetensorsFixture.bytes([Float(37.5)])))
        } else {
            tensors.append((p + ".weight_q", .i8, [n, k], (0..<(n * k)).map { _ in UInt8(bitPattern: Int8(Int(rng.next() % 16) - 8)) }))
            tensors.append((p + ".weight_scale", .f32, [n, k / g], SafetensorsFixture.bytes(uniform(n * k / g, 0.001, 0.05))))
        }
        if smooth { tensors.append((p + ".smooth", .f32, [k], SafetensorsFixture.bytes(uniform(k, 0.2, 5)))) }
        if lora {
            tensors.append((p + ".lora_down", .bf16, [rank, k], bf16(uniform(rank * k, -0.5, 0.5))))
            tensors.append((p + ".lora_up", .bf16, [n, rank], bf16(uniform(n * rank, -0.5, 0.5))))
        }
        if p.hasSuffix("q_proj") { tensors.append((p + ".bias", .bf16, [n], bf16(uniform(n, -1, 1)))) }
        modules.members.append((p, .string(nvfp4 ? "nvfp4:g16" : "int4:g\(group):sym")))
    }
    SafetensorsFixture.write(SafetensorsFixture.file(tensors), to: dir + "/model.safetensors")
    let qc = JSONValue.object(JSONObject([("quant_method", "qkit"), ("version", 1), ("algorithm", "svdquant"), ("modules", .object(modules))]))
    let config = JSONValue.object(JSONObject([("architectures", .array(["LlamaForCausalLM"])), ("model_type", "llama"), ("hidden_size", 192),
                                              ("torch_dtype", "bfloat16"), ("quantization_config", qc)]))
    SafetensorsFixture.write(Array(config.serialized(indent: 2).utf8), to: dir + "/config.json")
    return dir
}

@Suite("qpack nunchaku: SVDQuant W4A4 tiles (formats.md §5), round trips, refusals")
struct PackNunchakuTests {
    @Test("qweight tiling: formats.md's byte offsets (K = 128)")
    func weightTiles() {
        let cases: [((Int, Int), Int, Bool)] = [((0, 0), 0, false), ((0, 1), 0, true), ((0, 8), 16, false), ((8, 0), 8, false), ((0, 32), 4, false),
                                                ((1, 0), 64, false), ((16, 0), 512, false), ((0, 64), 4096, false), ((128, 0), 8192, false)]
        for ((n, k), byte, high) in cases {
            let got = NunchakuLayout.weightByte(n: n, k: k, kp: 128)
            #expect(got.byte == byte && got.high == high, "(\(n), \(k)) → \(got)")
        }
    }

    @Test("scale, micro-scale and low-rank orders: formats.md's first elements")
    func scaleOrders() {
        // pack_scale: stored order 0, 1, 8, 9, 2, 3, 10, 11, 4, 5, 12, 13, 6, 7, 14, 15, 16, …
        var order = [Int](repeating: -1, count: 128)
        for c in 0..<128 { order[NunchakuLayout.scalePosition(c)] = c }
        #expect(Array(order[0..<17]) == [0, 1, 8, 9, 2, 3, 10, 11, 4, 5, 12, 13, 6, 7, 14, 15, 16] && Set(order).count == 128)
        // pack_micro_scale: (n, j) = (0,0), (0,1), (0,2), (0,3), (32,0)…(96,3), (8,0)…
        var micro = [(Int, Int)](repeating: (-1, -1), count: 512)
        for n in 0..<128 { for j in 0..<4 { micro[NunchakuLayout.microScaleIndex(n: n, group: j, groups: 4)] = (n, j) } }
        #expect(micro[0] == (0, 0) && micro[3] == (0, 3) && micro[4] == (32, 0) && micro[15] == (96, 3) && micro[16] == (8, 0))
        // pack_lowrank_weight: (0,0), (0,1), (0,8), (0,9), (8,0), (8,1), (8,8), (8,9), (0,2)…
        var tile = [(Int, Int)](repeating: (-1, -1), count: 256)
        for i in 0..<16 { for j in 0..<16 { tile[NunchakuLayout.lowRankIndex(i: i, j: j, rows: 16, columns: 16, down: false)] = (i, j) } }
        #expect(Array(tile[0..<9]).map { [$0.0, $0.1] } == [[0, 0], [0, 1], [0, 8], [0, 9], [8, 0], [8, 1], [8, 8], [8, 9], [0, 2]])
        // Tiles: lora_down K-major (the second K tile follows the whole first R column of tiles), lora_up N-major.
        #expect(NunchakuLayout.lowRankIndex(i: 16, j: 0, rows: 32, columns: 32, down: true) == 256)
        #expect(NunchakuLayout.lowRankIndex(i: 0, j: 16, rows: 32, columns: 32, down: true) == 512)
        #expect(NunchakuLayout.lowRankIndex(i: 0, j: 16, rows: 32, columns: 32, down: false) == 256)
    }

    @Test("synthetic qkit W4A4 → nunchaku → read back: codes, scales, smooth, low-rank, bias bit for bit", arguments: [false, true])
    func roundTrip(_ nvfp4: Bool) throws {
        let model = makeW4A4Checkpoint(nvfp4: nvfp4)
        let dir = SafetensorsFixture.temporaryDirectory()
        defer { removeTree(model); removeTree(dir) }
        let r = try NunchakuPacker.run(input: model, output: dir + "/n")
        #expect(r.packed == 2 && r.copied == 1)
        let v = try PackVerifier.verify(output: dir + "/n", source: model)
        #expect(v.layout == "nunchaku" && v.packedLinears == 2 && v.comparedWithSource)
        let ck = try Checkpoint(path: dir + "/n")
        let p = "model.layers.0.self_attn.q_proj"
        // Padded shapes: N 200 → 256, K 192 → 256, R 20 → 32.
        #expect(ck[p + ".qweight"]?.shape == [256, 128] && ck[p + ".lora_down"]?.shape == [256, 32] && ck[p + ".lora_up"]?.shape == [256, 32])
        #expect(ck[p + ".wscales"]?.shape == (nvfp4 ? [12, 256] : [4, 256]) && ck[p + ".smooth"]?.shape == [256] && ck[p + ".bias"]?.shape == [256])
        #expect(ck[p + ".wscales"]?.encoding == .dtype(nvfp4 ? .f8E4M3 : .bf16) && (ck[p + ".wtscale"] != nil) == nvfp4)
        let meta = ck.safetensorsMetadata[0] ?? []
        let qc = meta.first { $0.key == "quantization_config" }?.value ?? ""
        #expect(qc.hasPrefix("{\"method\": \"svdquant\", \"weight\": {\"dtype\": \"\(nvfp4 ? "fp4_e2m1_all" : "int4")\"") && qc.hasSuffix("\"rank\": 32}"))
        // The packed bytes themselves, against the formula: code (n, k) in its nibble.
        let src = try PackSource(try Checkpoint(path: model))
        let plan = src.linears.first { $0.prefix == p }!
        let q = try src.linear(plan)
        let raw = ck.data(ck[p + ".qweight"]!)
        for (n, k) in [(0, 0), (7, 9), (199, 191), (130, 65), (15, 100)] {
            let (byte, high) = NunchakuLayout.weightByte(n: n, k: k, kp: 256)
            let nibble = high ? raw[byte] >> 4 : raw[byte] & 0xF
            #expect(nibble == (nvfp4 ? q.codes[n * 192 + k] : q.codes[n * 192 + k] ^ 8))
        }
        // Padding: codes 0, scales 1.
        let (pb, ph) = NunchakuLayout.weightByte(n: 230, k: 250, kp: 256)
        #expect((ph ? raw[pb] >> 4 : raw[pb] & 0xF) == 0)
        // Deterministic.
        _ = try NunchakuPacker.run(input: model, output: dir + "/n2")
        #expect(try readSmallFile(dir + "/n/model.safetensors") == readSmallFile(dir + "/n2/model.safetensors"))
        // The summary names the layout.
        #expect(FormatDetector.weightGroups(ck).filter { $0.scheme == .nunchaku }.count == 2)
    }

    @Test("what Nunchaku cannot express is refused, nothing written")
    func refusals() throws {
        let dir = SafetensorsFixture.temporaryDirectory()
        defer { removeTree(dir) }
        for (model, what) in [(makeW4A4Checkpoint(nvfp4: false, group: 32), "int4:g64:sym or nvfp4"), (makeW4A4Checkpoint(nvfp4: false, lora: false), "no low-rank branch")] {
            defer { removeTree(model) }
            #expect {
                _ = try NunchakuPacker.run(input: model, output: dir + "/x")
            } throws: { e in (e as? PackError).map { "\($0)".contains(what) && $0.exitStatus == .dataError } ?? false }
        }
        let float = makeTinyModel()
        defer { removeTree(float) }
        #expect(throws: PackError.self) { _ = try NunchakuPacker.run(input: float, output: dir + "/x") }
        #expect(!isDirectory(dir + "/x"))
        // Without a smooth factor the kernel's smooth is ones; a mismatching source fails verification.
        let noSmooth = makeW4A4Checkpoint(nvfp4: false, smooth: false), other = makeW4A4Checkpoint(nvfp4: false, seed: 8)
        defer { removeTree(noSmooth); removeTree(other) }
        _ = try NunchakuPacker.run(input: noSmooth, output: dir + "/s")
        let x = try NunchakuWeights(try Checkpoint(path: dir + "/s")).parts("model.layers.0.mlp.down_proj")
        #expect(x.smooth.allSatisfy { $0 == 1 } && x.bias.allSatisfy { $0 == 0 })
        #expect(throws: PackError.self) { _ = try PackVerifier.verify(output: dir + "/s", source: other) }
    }
}
