import Testing
@testable import Common

/// Packs `input` (any readable layout) into `layout`.
private func convert(_ input: String, _ layout: any PackLayout, to out: String) throws {
    _ = try Packer.run(input: input, output: out, options: PackOptions(layout: layout))
}

@Suite("qpack conversions between packed layouts (no requantization)")
struct PackConversionTests {
    @Test("AWQ → GPTQ v2 → compressed-tensors → AWQ: the same bytes as the first AWQ, every step verified against its input and the qkit source")
    func awqGPTQCompressedAWQ() throws {
        let model = makeTinyModel()
        let dir = SafetensorsFixture.temporaryDirectory()
        defer { removeTree(model); removeTree(dir) }
        let r = try QuantRecipe(defaultScheme: try #require(try QuantScheme.parse("int4:g32:asym")))
        _ = try QKitQuantizer.run(model: model, output: dir + "/q", options: QuantizeOptions(recipe: r))
        let chain: [(String, any PackLayout)] = [("awq", AWQLayout()), ("gptq", GPTQLayout(v2: true)), ("ct", CompressedTensorsLayout()),
                                                 ("awq2", AWQLayout())]
        var previous = dir + "/q"
        for (name, layout) in chain {
            try convert(previous, layout, to: dir + "/" + name)
            let step = try PackVerifier.verify(output: dir + "/" + name, source: previous)
            #expect(step.comparedWithSource && step.packedLinears == 2 && step.layout == layout.name, "\(name)")
            // Codes and zero points equal the qkit source's, scales its F32 scales rounded to F16 (AWQ's dtype).
            _ = try PackVerifier.verify(output: dir + "/" + name, source: dir + "/q")
            previous = dir + "/" + name
        }
        // compressed-tensors kept the AWQ's F16 scales instead of rounding them to the model's BF16.
        let ct = try Checkpoint(path: dir + "/ct")
        #expect(ct["model.layers.0.self_attn.q_proj.weight_scale"]?.encoding == .dtype(.f16))
        #expect(try readSmallFile(dir + "/awq/model.safetensors") == readSmallFile(dir + "/awq2/model.safetensors"))
        #expect(try readSmallFile(dir + "/awq/config.json") == readSmallFile(dir + "/awq2/config.json"))
        #expect(try readSmallFile(model + "/tokenizer.json") == readSmallFile(dir + "/awq2/tokenizer.json"))
    }

    @Test("symmetric GPTQ v1 → compressed-tensors → GPTQ v1: the same tensors")
    func gptqRoundTrip() throws {
        let model = makeTinyModel()
        let dir = SafetensorsFixture.temporaryDirectory()
        defer { removeTree(model); removeTree(dir) }
        let r = try QuantRecipe(defaultScheme: try #require(try QuantScheme.parse("int4:g32:sym")))
        _ = try QKitQuantizer.run(model: model, output: dir + "/q", options: QuantizeOptions(recipe: r))
        try convert(dir + "/q", GPTQLayout(), to: dir + "/g1")
        try convert(dir + "/g1", CompressedTensorsLayout(), to: dir + "/ct")
        try convert(dir + "/ct", GPTQLayout(), to: dir + "/g2")
        #expect(try readSmallFile(dir + "/g1/model.safetensors") == readSmallFile(dir + "/g2/model.safetensors"))
        let w = try #require(try Checkpoint(path: dir + "/ct").config?["quantization_config"]?["config_groups"]?["group_0"]?["weights"])
        #expect(w["symmetric"] == .bool(true) && w["group_size"] == .int(32))
    }

    @Test("what the target cannot express is refused with one line and nothing written", arguments: [
        ("int4:g32:sym", "act-order", "vllm-awq", "act-order"), ("int8:ch:sym", "", "vllm-awq", "4-bit integers only"),
        ("int4:g32:asym", "", "vllm-gptq", "zero point 0"),
    ])
    func refusals(_ scheme: String, _ variant: String, _ target: String, _ message: String) throws {
        var up = [Float](repeating: 0, count: 8 * 64)
        for i in up.indices { up[i] = Float(i % 7) / 10 }  // all ≥ 0: an asymmetric zero point 0
        let model = makeTinyModel(extra: [("model.layers.0.mlp.up_proj.weight", DType.f32, [8, 64], SafetensorsFixture.bytes(up))])
        let dir = SafetensorsFixture.temporaryDirectory()
        defer { removeTree(model); removeTree(dir) }
        let r = try QuantRecipe(defaultScheme: try #require(try QuantScheme.parse(scheme)))
        _ = try QKitQuantizer.run(model: model, output: dir + "/q", options: QuantizeOptions(recipe: r))
        // The packed input: GPTQ for the act-order case (g_idx rewritten as a permutation), else compressed-tensors / GPTQ v2.
        let first: any PackLayout = variant == "act-order" || target == "vllm-gptq" ? GPTQLayout(v2: true) : CompressedTensorsLayout()
        try convert(dir + "/q", first, to: dir + "/in")
        if variant == "act-order" {
            // Permute g_idx of one linear (a valid act-order checkpoint: each group still holds 32 columns).
            let ck = try Checkpoint(path: dir + "/in")
            var tensors = ck.tensors.map { t -> (name: String, dtype: DType, shape: [Int], bytes: [UInt8]) in
                guard case .dtype(let d) = t.encoding else { fatalError() }
                return (t.name, d, t.shape, Array(ck.data(t)))
            }
            let i = try #require(tensors.firstIndex { $0.name == "model.layers.0.mlp.down_proj.g_idx" })
            var gIdx = [Int32](repeating: 0, count: 64)
            for c in 0..<64 { gIdx[c] = Int32(c % 2) }  // even columns in group 0, odd ones in group 1
            tensors[i].bytes = SafetensorsFixture.bytes(gIdx)
            SafetensorsFixture.write(SafetensorsFixture.file(tensors), to: dir + "/in/model.safetensors")
        }
        do {
            try convert(dir + "/in", Packer.layout(named: target)!, to: dir + "/out")
            Issue.record("\(scheme) \(variant) → \(target) was accepted")
        } catch let e as PackError {
            #expect(e.exitStatus == .dataError && e.description.contains(message) && !e.description.contains("\n"), "\(e)")
        }
        #expect(!fileExists(dir + "/out") && listDirectory(dir).filter { $0.hasPrefix(".") }.isEmpty)
    }
}
