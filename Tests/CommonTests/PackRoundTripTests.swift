import Testing
@testable import Common

func quantize(_ model: String, _ scheme: String, to out: String, skip: [String] = []) throws {
    let r = try QuantRecipe(defaultScheme: try #require(try QuantScheme.parse(scheme)), skipPatterns: skip)
    _ = try QKitQuantizer.run(model: model, output: out, options: QuantizeOptions(recipe: r))
}

private func pack(_ qkit: String, _ layout: any PackLayout, to out: String) throws {
    _ = try Packer.run(input: qkit, output: out, options: PackOptions(layout: layout))
}

/// The source linear with its scales rounded to `dtype`, dequantized (what a layout storing `dtype` scales holds).
private func expectedWeights(_ source: PackSource, _ plan: LinearPlan, scaleDType: DType) throws -> [Float] {
    var q = try source.linear(plan)
    q.scales = q.scales.map { scaleDType.rounding($0) }
    var out = [Float](repeating: 0, count: q.n * q.k)
    out.withUnsafeMutableBufferPointer { q.dequantize(into: $0) }
    return out
}

@Suite("qpack layouts: round trips, refusals, malformed inputs, qeval agreement")
struct PackRoundTripTests {
    static let cases: [(layout: String, scheme: String, v2: Bool, w8a8: Bool)] = [
        ("vllm-awq", "int4:g32:asym", false, false), ("vllm-awq", "int4:g16:sym", false, false),
        ("vllm-gptq", "int4:g32:sym", false, false), ("vllm-gptq", "int4:g32:asym", true, false), ("vllm-gptq", "int8:ch:sym", false, false),
        ("vllm-gptq", "int3:g32:asym", true, false), ("vllm-gptq", "int2:g16:sym", false, false),
        ("compressed-tensors", "int4:g32:sym", false, false), ("compressed-tensors", "int4:g16:asym", false, false),
        ("compressed-tensors", "int8:ch:sym", false, false), ("compressed-tensors", "int8:ch:sym", false, true),
        ("compressed-tensors", "fp8", false, false), ("compressed-tensors", "fp8:tensor", false, false), ("compressed-tensors", "nvfp4", false, false),
    ]

    @Test("qkit → layout → reader: codes, zeros, scales equal (verify), dequantized weights equal, other tensors byte-identical",
          arguments: 0..<cases.count)
    func roundTrip(_ i: Int) throws {
        let c = Self.cases[i]
        var up = [Float](repeating: 0, count: 32 * 64)
        for i in up.indices { up[i] = Float((i * 37) % 101 - 50) / 400 }
        let model = makeTinyModel(extra: [("model.layers.0.mlp.up_proj.weight", DType.f32, [32, 64], SafetensorsFixture.bytes(up))])
        let dir = SafetensorsFixture.temporaryDirectory()
        defer { removeTree(model); removeTree(dir) }
        // 2- and 3-bit GPTQ zero points pack 16 or 32 output channels a word: only up_proj (N = 32) fits.
        let narrow = c.scheme.hasPrefix("int2") || c.scheme.hasPrefix("int3")
        try quantize(model, c.scheme, to: dir + "/q", skip: narrow ? ["q_proj", "down_proj"] : [])
        let layout = Packer.layout(named: c.layout, gptqV2: c.v2, w8a8: c.w8a8)!
        try pack(dir + "/q", layout, to: dir + "/p")
        let report = try PackVerifier.verify(output: dir + "/p", source: dir + "/q")
        #expect(report.packedLinears == (narrow ? 1 : 3) && report.comparedWithSource && report.layout == c.layout)

        let reader = try #require(try openWeights(path: dir + "/p") as? any PackedWeightSource)
        let source = try PackSource(try Checkpoint(path: dir + "/q"))
        for plan in source.linears {
            let expected = try expectedWeights(source, plan, scaleDType: reader.scaleDType(of: plan.prefix))
            let got = try reader.float32(plan.prefix + ".weight")
            #expect(got.shape == [plan.n, plan.k] && got.values == expected, "\(c) \(plan.prefix)")
            // A row range equals the same rows of the whole.
            var rows = [Float](repeating: 0, count: 3 * plan.k)
            try rows.withUnsafeMutableBufferPointer { try reader.readFloat32(plan.prefix + ".weight", rows: 2..<5, into: $0) }
            #expect(rows == Array(expected[(2 * plan.k)..<(5 * plan.k)]))
        }
        // Unquantized tensors pass through; the embedding reads as itself.
        #expect(try reader.float32("model.embed_tokens.weight").values == CheckpointWeights(path: model).float32("model.embed_tokens.weight").values)
        #expect(try readSmallFile(model + "/tokenizer.json") == readSmallFile(dir + "/p/tokenizer.json"))
        // Deterministic bytes.
        try pack(dir + "/q", layout, to: dir + "/p2")
        #expect(try readSmallFile(dir + "/p/model.safetensors") == readSmallFile(dir + "/p2/model.safetensors"))
    }

    @Test("configs as the loaders read them")
    func configs() throws {
        let model = makeTinyModel()
        let dir = SafetensorsFixture.temporaryDirectory()
        defer { removeTree(model); removeTree(dir) }
        try quantize(model, "int4:g32:asym", to: dir + "/q")
        try pack(dir + "/q", AWQLayout(), to: dir + "/awq")
        let awq = try #require(try Checkpoint(path: dir + "/awq").config?["quantization_config"]?.objectValue)
        #expect(awq.keys == ["quant_method", "zero_point", "group_size", "bits", "version", "modules_to_not_convert"])
        #expect(awq["group_size"] == .int(32) && awq["version"] == "gemm" && awq["zero_point"] == .bool(true))
        try pack(dir + "/q", GPTQLayout(v2: true), to: dir + "/gptq")
        let gptq = try #require(try Checkpoint(path: dir + "/gptq").config?["quantization_config"])
        #expect(gptq["checkpoint_format"] == "gptq_v2" && gptq["sym"] == .bool(false) && gptq["desc_act"] == .bool(false) && gptq["bits"] == .int(4))
        try pack(dir + "/q", CompressedTensorsLayout(), to: dir + "/ct")
        let ct = try #require(try Checkpoint(path: dir + "/ct").config?["quantization_config"])
        #expect(ct["format"] == "pack-quantized" && ct["ignore"] == .array(["lm_head"]))
        let w = try #require(ct["config_groups"]?["group_0"]?["weights"]?.objectValue)
        #expect(w["scale_dtype"] == nil && w["zp_dtype"] == nil && w["strategy"] == "group" && w["symmetric"] == .bool(false))
    }

    @Test("refused: what a layout cannot express, with nothing written")
    func refusals() throws {
        var up = [Float](repeating: 0, count: 8 * 64)
        for i in up.indices { up[i] = Float(i % 7) / 10 }  // all ≥ 0: zero point 0
        let model = makeTinyModel(extra: [("model.layers.0.mlp.up_proj.weight", DType.f32, [8, 64], SafetensorsFixture.bytes(up))])
        let dir = SafetensorsFixture.temporaryDirectory()
        defer { removeTree(model); removeTree(dir) }
        let cases: [(String, any PackLayout, String)] = [
            ("int8:g32:asym", AWQLayout(), "4-bit integers only"), ("int4:ch:asym", AWQLayout(), "groups along K"),
            ("fp8", GPTQLayout(), "2, 3, 4 or 8-bit"), ("int4:g32:asym", GPTQLayout(), "zero point 0"),
            ("int3:g32:sym", CompressedTensorsLayout(), "4 and 8 bits only"), ("mxfp4", CompressedTensorsLayout(), "weights"),
            ("int8:g32:sym", CompressedTensorsLayout(w8a8: true), "grouped W8A8"), ("fp8:g32", CompressedTensorsLayout(), "grouped FP8"),
        ]
        for (scheme, layout, message) in cases {
            removeTree(dir + "/q")
            try quantize(model, scheme, to: dir + "/q")
            do {
                try pack(dir + "/q", layout, to: dir + "/out")
                Issue.record("\(scheme) → \(layout.name) was accepted")
            } catch let e as PackError {
                guard case .unsupported = e else { Issue.record("\(e)"); continue }
                #expect(e.exitStatus == .dataError && e.description.contains(message), "\(e.description)")
            }
            #expect(!fileExists(dir + "/out") && listDirectory(dir).filter { $0.hasPrefix(".") }.isEmpty)
        }
    }

    @Test("AutoAWQ GEMV read: autoawq 0.2.9 vectors, N=8 K=64 G=32 (§6)")
    func awqGEMV() throws {
        let dir = SafetensorsFixture.temporaryDirectory()
        defer { removeTree(dir) }
        let codes = ["9F0B17DC1728DC0D0DCD42C1A55741B88136B220DF07B69BA9BC5E77F080B8F5",
                     "5723B1038714820E395A6B1B2D0AFE0C88411F9CB2830422BD867276F4644CD9",
                     "1CA564A1F1E4AE7353316C81A174855BDC2DF57A01057BC4A624C2C7115C133E",
                     "E233209BE23F08B37297D2CFDD26B9AAB1F1C6B5BE181B86C261E6E89A2EFF9D"]
        let rows = ["CD71B0F9 D0CD8271 1C24DCD0 8B14755A 022B6318 B96B70FD 77E5CB9A 5F8B080F",
                    "301B3275 E0284178 B1B6A593 C0EFA0D2 C9F11488 2240382B 672768DB 9DC4464F",
                    "1A465AC1 37EA4E1F 18C61335 B558471A A75FD2CD 4CB75010 7C2C426A E331C511",
                    "B902332E 3B80F32E FC2D7927 AA9B62DD 5B6C1F1B 68B181EB 8E6E162C D9FFE2A9"]
        var qweight = rows.flatMap { $0.split(separator: " ").map { UInt32($0, radix: 16)! } }
        qweight += [UInt32](repeating: 0, count: 32)
        var qzeros: [UInt32] = [0x11, 0, 0, 0, 0x35, 0, 0, 0, 0xCE, 0, 0, 0, 0xC1, 0, 0, 0]
        qzeros += [UInt32](repeating: 0, count: 16)
        var scales = [Float16](repeating: 0, count: 8 * 32)
        for n in 0..<8 { scales[n * 32] = 0.5; scales[n * 32 + 1] = 0.25 }
        let p = "model.layers.0.mlp.down_proj"
        SafetensorsFixture.write(SafetensorsFixture.file([
            (p + ".qweight", .i32, [8, 8], SafetensorsFixture.bytes(qweight)), (p + ".qzeros", .i32, [8, 4], SafetensorsFixture.bytes(qzeros)),
            (p + ".scales", .f16, [8, 32], SafetensorsFixture.bytes(scales.map(\.bitPattern))),
        ]), to: dir + "/model.safetensors")
        SafetensorsFixture.write(Array(#"{"quantization_config": {"quant_method": "awq", "version": "gemv", "bits": 4, "group_size": 32, "zero_point": true}}"#.utf8),
                                 to: dir + "/config.json")
        let reader = try #require(try openWeights(path: dir) as? AWQWeights)
        #expect(reader.version == "gemv")
        let q = try reader.unpack(p, rows: 0..<4)
        for n in 0..<4 { #expect(Array(q.codes[(n * 64)..<((n + 1) * 64)]) == codes[n].map { UInt8($0.hexDigitValue!) }) }
        #expect(q.zeros! == [1, 1, 5, 3, 0xE, 0xC, 1, 0xC])
        #expect(q.scales == [0.5, 0.25, 0.5, 0.25, 0.5, 0.25, 0.5, 0.25])
        let w = try reader.float32(p + ".weight")
        #expect(w.values[0] == Float(9 - 1) * 0.5 && w.values[32] == Float(8 - 1) * 0.25)
    }

    @Test("malformed packed checkpoints → PackError.malformed, never a crash")
    func malformed() throws {
        let model = makeTinyModel()
        let dir = SafetensorsFixture.temporaryDirectory()
        defer { removeTree(model); removeTree(dir) }
        try quantize(model, "int4:g32:asym", to: dir + "/q")
        let layouts: [any PackLayout] = [AWQLayout(), GPTQLayout(), CompressedTensorsLayout()]
        for layout in layouts {
            let out = dir + "/" + layout.name
            try pack(dir + "/q", layout, to: out)
            let ck = try Checkpoint(path: out)
            let config = try readSmallFile(out + "/config.json")
            // Variants: a tensor dropped, a tensor reshaped, a config value broken.
            var variants: [(String, [(name: String, dtype: DType, shape: [Int], bytes: [UInt8])], [UInt8])] = []
            let tensors = ck.tensors.map { t -> (name: String, dtype: DType, shape: [Int], bytes: [UInt8]) in
                guard case .dtype(let d) = t.encoding else { fatalError() }
                return (t.name, d, t.shape, Array(ck.data(t)))
            }
            for victim in tensors where victim.name.contains("q_proj.") {
                variants.append(("drop \(victim.name)", tensors.filter { $0.name != victim.name }, config))
                var reshaped = tensors
                let i = reshaped.firstIndex { $0.name == victim.name }!
                if reshaped[i].shape.count == 2, reshaped[i].shape[0] > 1 {
                    let rows = reshaped[i].shape[0], half = rows / 2
                    reshaped[i].shape[0] = half
                    reshaped[i].bytes = Array(reshaped[i].bytes.prefix(reshaped[i].bytes.count / rows * half))
                    variants.append(("halve \(victim.name)", reshaped, config))
                }
            }
            let text = String(decoding: config, as: UTF8.self)
            for (a, b) in [("\"bits\": 4", "\"bits\": 5"), ("\"version\": \"gemm\"", "\"version\": \"gemv2\""),
                           ("\"checkpoint_format\": \"gptq\"", "\"checkpoint_format\": \"marlin\""), ("\"group_size\": 32", "\"group_size\": 7"),
                           ("\"num_bits\": 4", "\"num_bits\": 3"), ("\"config_groups\"", "\"config_groupz\"")] where text.contains(a) {
                variants.append(("config \(b)", tensors, Array(text.replacing(a, with: b).utf8)))
            }
            #expect(variants.count >= 4, "\(layout.name)")
            for (what, ts, cfg) in variants {
                let bad = dir + "/bad"
                removeTree(bad)
                try makeDirectories(bad)
                SafetensorsFixture.write(SafetensorsFixture.file(ts), to: bad + "/model.safetensors")
                SafetensorsFixture.write(cfg, to: bad + "/config.json")
                do {
                    let w = try openWeights(path: bad)
                    // Opening may pass when a broken part is only read later; reading every linear must then fail.
                    for p in ["q_proj", "down_proj"] { _ = try w.float32("model.layers.0.self_attn.\(p).weight") }
                    _ = try w.float32("model.layers.0.mlp.down_proj.weight")
                    Issue.record("\(layout.name): \(what) was read without an error")
                } catch let e as PackError {
                    guard case .malformed = e else { Issue.record("\(what): \(e)"); continue }
                    #expect(e.exitStatus == .dataError)
                } catch let e as WeightSourceError {
                    #expect(e.exitStatus == .dataError, "\(what)")
                } catch {
                    Issue.record("\(layout.name): \(what): untyped error \(error)")
                }
            }
        }
    }

    @Test("qeval on every packed output equals qeval on the source (tiny Llama fixture)")
    func evaluatorAgreement() throws {
        let fixture = "Tests/CommonTests/Fixtures/model/llama3"
        let root = #filePath.split(separator: "/").dropLast(3).joined(separator: "/")
        let model = "/" + root + "/" + fixture
        let dir = SafetensorsFixture.temporaryDirectory()
        defer { removeTree(dir) }
        var rng = SplitMix(seed: 9)
        let ids = (0..<256).map { _ in Int32(3 + Int(rng.next() % 317)) }
        let windows = EvaluationWindows(tokens: ids, length: 64, limit: nil, bos: nil)
        for scheme in ["int4:g32:asym", "int4:g32:sym"] {
            try quantize(model, scheme, to: dir + "/q-\(scheme)")
            let source = try Evaluator.run(model: DecoderModel(source: openWeights(path: dir + "/q-\(scheme)")), windows: windows)
            for layout in [AWQLayout(), GPTQLayout(), CompressedTensorsLayout()] as [any PackLayout] {
                let out = dir + "/\(layout.name)-\(scheme)"
                try pack(dir + "/q-\(scheme)", layout, to: out)
                let r = try Evaluator.run(model: DecoderModel(source: openWeights(path: out)), windows: windows)
                if layout is CompressedTensorsLayout {
                    // The fixture is F32, so are compressed-tensors' scales: the same weights, the same numbers.
                    #expect(r.windowNLL == source.windowNLL, "\(layout.name) \(scheme)")
                } else {
                    // F16 scales: within the rounding of the scales.
                    #expect(abs(r.perplexity - source.perplexity) / source.perplexity < 1e-4, "\(layout.name) \(scheme): \(r.perplexity) vs \(source.perplexity)")
                }
            }
        }
    }
}
