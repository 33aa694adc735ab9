import Testing
@testable import Common

@Suite("lightllm: AWQ W4A16 and block-128 FP8 W8A8")
struct PackLightLLMTests {
    @Test("int4 → the vllm-awq files byte for byte (LightLLM reads AutoAWQ GEMM)")
    func int4IsAWQ() throws {
        let model = makeTinyModel()
        let dir = SafetensorsFixture.temporaryDirectory()
        defer { removeTree(model); removeTree(dir) }
        try quantize(model, "int4:g32:asym", to: dir + "/q")
        _ = try Packer.run(input: dir + "/q", output: dir + "/l", options: PackOptions(layout: LightLLMLayout()))
        _ = try Packer.run(input: dir + "/q", output: dir + "/a", options: PackOptions(layout: AWQLayout()))
        #expect(try readSmallFile(dir + "/l/model.safetensors") == readSmallFile(dir + "/a/model.safetensors"))
        let qc = try #require(try Checkpoint(path: dir + "/l").config?["quantization_config"])
        #expect(qc["quant_method"] == "awq" && qc["group_size"] == .int(32) && qc["bits"] == .int(4))
        _ = try PackVerifier.verify(output: dir + "/l", source: dir + "/q")
    }

    @Test("fp8:tensor → weight F8_E4M3 + weight_scale_inv F32 [⌈N/128⌉, ⌈K/128⌉], every block the tensor scale; read back exactly")
    func fp8Blocks() throws {
        var up = [Float](repeating: 0, count: 200 * 64)
        for i in up.indices { up[i] = Float((i * 37) % 101 - 50) / 40 }
        let model = makeTinyModel(extra: [("model.layers.0.mlp.up_proj.weight", DType.f32, [200, 64], SafetensorsFixture.bytes(up))])
        let dir = SafetensorsFixture.temporaryDirectory()
        defer { removeTree(model); removeTree(dir) }
        try quantize(model, "fp8:tensor", to: dir + "/q")
        _ = try Packer.run(input: dir + "/q", output: dir + "/l", options: PackOptions(layout: LightLLMLayout()))
        let ck = try Checkpoint(path: dir + "/l")
        let qc = try #require(ck.config?["quantization_config"]?.objectValue)
        #expect(qc["quant_method"] == "fp8" && qc["weight_block_size"] == .array([128, 128]) && qc["activation_scheme"] == "dynamic")
        let s = try #require(ck["model.layers.0.mlp.up_proj.weight_scale_inv"])
        #expect(s.shape == [2, 1] && s.encoding == .dtype(.f32))
        let r = try PackVerifier.verify(output: dir + "/l", source: dir + "/q")
        #expect(r.layout == "lightllm" && r.packedLinears == 3)
        // The dequantized weights equal the qkit checkpoint's exactly (F32 scales, the same FP8 bytes).
        let a = try openWeights(path: dir + "/q"), b = try openWeights(path: dir + "/l")
        for p in ["model.layers.0.mlp.up_proj", "model.layers.0.self_attn.q_proj"] {
            #expect(try a.float32(p + ".weight").values == b.float32(p + ".weight").values)
        }
        let summary = FormatDetector.describe(ck, groups: FormatDetector.weightGroups(ck))
        #expect(summary.format == "fp8-block")
        // FP8 block → compressed-tensors float-quantized (per tensor) → LightLLM again: the same bytes.
        _ = try Packer.run(input: dir + "/l", output: dir + "/ct", options: PackOptions(layout: CompressedTensorsLayout()))
        _ = try Packer.run(input: dir + "/ct", output: dir + "/l2", options: PackOptions(layout: LightLLMLayout()))
        #expect(try readSmallFile(dir + "/l/model.safetensors") == readSmallFile(dir + "/l2/model.safetensors"))
    }

    @Test("a block-scaled FP8 checkpoint (DeepSeek style, different block scales) reads per block and repacks unchanged")
    func blockScaled() throws {
        let dir = SafetensorsFixture.temporaryDirectory()
        defer { removeTree(dir) }
        let (n, k) = (256, 256)
        let codes = (0..<(n * k)).map { UInt8(truncatingIfNeeded: ($0 * 7) % 0x7E) }
        let blocks: [Float] = [0.5, 0.25, 2, 4]
        let p = "model.layers.0.mlp.down_proj"
        try makeDirectories(dir + "/in")
        SafetensorsFixture.write(SafetensorsFixture.file([
            (p + ".weight", .f8E4M3, [n, k], codes), (p + ".weight_scale_inv", .f32, [2, 2], SafetensorsFixture.bytes(blocks)),
        ]), to: dir + "/in/model.safetensors")
        SafetensorsFixture.write(Array(#"{"quantization_config": {"quant_method": "fp8", "fmt": "e4m3", "activation_scheme": "dynamic", "weight_block_size": [128, 128]}}"#.utf8),
                                 to: dir + "/in/config.json")
        let w = try openWeights(path: dir + "/in").float32(p + ".weight").values
        #expect(w[1] == Conversion.e4m3Table[Int(codes[1])] * 0.5 && w[200] == Conversion.e4m3Table[Int(codes[200])] * 0.25)
        #expect(w[200 * k + 3] == Conversion.e4m3Table[Int(codes[200 * k + 3])] * 2)
        _ = try Packer.run(input: dir + "/in", output: dir + "/out", options: PackOptions(layout: LightLLMLayout()))
        let a = try Checkpoint(path: dir + "/in"), b = try Checkpoint(path: dir + "/out")
        for name in [p + ".weight", p + ".weight_scale_inv"] {
            let x = try #require(a[name]), y = try #require(b[name])
            #expect(x.encoding == y.encoding && x.shape == y.shape && a.data(x).elementsEqual(b.data(y)), "\(name)")
        }
        // compressed-tensors has no block strategy here: refused.
        #expect(throws: PackError.self) {
            _ = try Packer.run(input: dir + "/in", output: dir + "/ct", options: PackOptions(layout: CompressedTensorsLayout()))
        }
    }

    @Test("refused: int8 W8A8, per-channel FP8, int3, int4 beside FP8", arguments: [
        ("int8:ch:sym", "online"), ("fp8", "block scales"), ("int3:g32:asym", "online"),
    ])
    func refusals(_ scheme: String, _ message: String) throws {
        let model = makeTinyModel()
        let dir = SafetensorsFixture.temporaryDirectory()
        defer { removeTree(model); removeTree(dir) }
        try quantize(model, scheme, to: dir + "/q")
        #expect {
            _ = try Packer.run(input: dir + "/q", output: dir + "/l", options: PackOptions(layout: LightLLMLayout()))
        } throws: { e in (e as? PackError)?.description.contains(message) == true && (e as? PackError)?.exitStatus == .dataError }
        #expect(!fileExists(dir + "/l"))
    }
}
