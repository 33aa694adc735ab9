#if canImport(Glibc)
import Glibc
#endif
import Testing
@testable import Common

/// A small Llama-shaped model directory: two decoder linears (BF16 and F32), an embedding, a norm, an
/// F16 lm_head, config.json and a tokenizer file.
func makeTinyModel(k: Int = 64, extra: [(name: String, dtype: DType, shape: [Int], bytes: [UInt8])] = []) -> String {
    let dir = SafetensorsFixture.temporaryDirectory()
    var rng = SplitMix(seed: 42)
    func values(_ n: Int) -> [Float] { (0..<n).map { _ in Float(rng.normal() * 0.05) } }
    func bf16(_ v: [Float]) -> [UInt8] { SafetensorsFixture.bytes(v.map { Conversion.bfloat16Bits($0) }) }
    var q = values(8 * k)
    q[5] = 0.8  // an outlier
    let tensors: [(name: String, dtype: DType, shape: [Int], bytes: [UInt8])] = [
        ("model.embed_tokens.weight", .bf16, [16, k], bf16(values(16 * k))),
        ("model.layers.0.self_attn.q_proj.weight", .bf16, [8, k], bf16(q)),
        ("model.layers.0.mlp.down_proj.weight", .f32, [8, k], SafetensorsFixture.bytes(values(8 * k))),
        ("model.layers.0.input_layernorm.weight", .bf16, [k], bf16([Float](repeating: 1, count: k))),
        ("lm_head.weight", .f16, [16, k], SafetensorsFixture.bytes(values(16 * k).map { Float16($0).bitPattern })),
    ] + extra
    SafetensorsFixture.write(SafetensorsFixture.file(tensors), to: dir + "/model.safetensors")
    SafetensorsFixture.write(Array("{\"model_type\": \"llama\", \"hidden_size\": \(k)}\n".utf8), to: dir + "/config.json")
    SafetensorsFixture.write(Array("{\"tokenizer\": true}".utf8), to: dir + "/tokenizer.json")
    return dir
}

private func recipe(_ s: String, rules: [String] = []) throws -> QuantRecipe {
    try QuantRecipe(defaultScheme: try #require(try QuantScheme.parse(s)), rules: rules.map { try QuantRule(parsing: $0) })
}

@Suite("qkit checkpoint writer and reader")
struct QuantCheckpointTests {
    @Test("codes + scales read back equal the --fake output; other tensors and files are copied byte for byte",
          arguments: ["int4:g32:sym", "int4:g16:asym", "int8:ch", "int3:g64:asym:hqq", "int4:g32:mse", "fp8", "fp8e5m2:tensor",
                      "fp4:g32", "nvfp4", "mxfp4", "mxfp8", "int8:tensor:asym"])
    func roundTrip(_ scheme: String) throws {
        let model = makeTinyModel()
        let out = SafetensorsFixture.temporaryDirectory()
        defer { removeTree(model); removeTree(out) }
        let r = try recipe(scheme, rules: ["lm_head=int8:ch"])
        let report = try QKitQuantizer.run(model: model, output: out + "/q", options: QuantizeOptions(recipe: r))
        #expect(report.quantized.count == 3 && report.copied == 2)
        var fakeOptions = QuantizeOptions(recipe: r)
        fakeOptions.fake = true
        fakeOptions.fakeDType = .f32
        _ = try QKitQuantizer.run(model: model, output: out + "/fake", options: fakeOptions)

        let src = try Checkpoint(path: model)
        let q = try Checkpoint(path: out + "/q")
        let weights = try openWeights(path: out + "/q")
        #expect(weights is QKitWeights)
        let fake = try openWeights(path: out + "/fake")
        #expect(fake is CheckpointWeights)
        for name in ["model.layers.0.self_attn.q_proj.weight", "model.layers.0.mlp.down_proj.weight", "lm_head.weight"] {
            #expect(q[name] == nil && q[String(name.dropLast(7)) + ".weight_q"] != nil)
            let a = try weights.float32(name), b = try fake.float32(name)
            #expect(a.shape == b.shape && a.values == b.values, "\(scheme) \(name)")
            // Rows read one at a time equal the whole read.
            var row = [Float](repeating: 0, count: a.shape[1])
            try row.withUnsafeMutableBufferPointer { try weights.readFloat32(name, rows: 3..<4, into: $0) }
            #expect(Array(a.values[(3 * a.shape[1])..<(4 * a.shape[1])]) == row)
            // Close to the source.
            let orig = try CheckpointWeights(src).float32(name).values
            let err = zip(orig, a.values).map { abs($0 - $1) }.max()!
            #expect(err < 0.5 * orig.map(abs).max()!, "\(scheme) \(name): max error \(err)")
        }
        for name in ["model.embed_tokens.weight", "model.layers.0.input_layernorm.weight"] {
            let a = try #require(src[name]), b = try #require(q[name])
            #expect(Array(src.data(a)) == Array(q.data(b)) && a.shape == b.shape && a.encoding == b.encoding)
        }
        #expect(try readSmallFile(model + "/tokenizer.json") == readSmallFile(out + "/q/tokenizer.json"))
        let qc = try #require(q.config?["quantization_config"])
        #expect(qc["quant_method"]?.stringValue == "qkit" && qc["version"]?.intValue == 1 && q.config?["model_type"]?.stringValue == "llama")
        #expect(qc["modules"]?["lm_head"]?.stringValue == "int8:channel:sym")
        let recorded = try QKitConfig.parse(q.config, path: "x")["model.layers.0.self_attn.q_proj"]
        #expect(recorded == (try QuantScheme.parse(scheme)))
        let fc = try Checkpoint(path: out + "/fake").config
        #expect(fc?["quantization_config"] == nil && fc?[QKitConfig.fakeKey]?["fake"]?.boolValue == true)
        // qinspect's format detection sees qkit weights with their group size.
        let groups = FormatDetector.weightGroups(q).filter { $0.scheme == .qkit }
        #expect(groups.count == 3)
        let s = try #require(try QuantScheme.parse(scheme))
        if case .group(let g) = s.granularity {
            #expect(groups.first { $0.prefix.hasSuffix("q_proj") }?.groupSize == g)
        }
    }

    @Test("the output does not depend on the thread count (one block vs many)")
    func blockIndependence() throws {
        let model = makeTinyModel()
        let out = SafetensorsFixture.temporaryDirectory()
        defer { removeTree(model); removeTree(out) }
        for s in ["int4:g32:asym", "int3:g64:hqq", "nvfp4"] {
            _ = try QKitQuantizer.run(model: model, output: out + "/a", options: QuantizeOptions(recipe: recipe(s)))
            let first = try readSmallFile(out + "/a/model.safetensors")
            _ = try QKitQuantizer.run(model: model, output: out + "/a", options: QuantizeOptions(recipe: recipe(s)))
            #expect(try readSmallFile(out + "/a/model.safetensors") == first, "\(s)")
        }
    }

    @Test("errors: impossible group, non-float weight, qkit input; nothing is left behind")
    func errors() throws {
        let model = makeTinyModel(k: 48, extra: [("model.layers.1.mlp.up_proj.weight", .i8, [4, 48], [UInt8](repeating: 1, count: 192))])
        let out = SafetensorsFixture.temporaryDirectory()
        defer { removeTree(model); removeTree(out) }
        #expect(throws: SchemeError.self) { try QKitQuantizer.run(model: model, output: out + "/q", options: QuantizeOptions(recipe: recipe("int4:g32"))) }
        do {
            _ = try QKitQuantizer.run(model: model, output: out + "/q", options: QuantizeOptions(recipe: recipe("int4:g16")))
            Issue.record("an I8 weight was quantized")
        } catch let e as QuantizeError {
            #expect(e.exitStatus == .dataError && e.description.contains("up_proj"))
        }
        #expect(listDirectory(out).isEmpty)
        _ = try QKitQuantizer.run(model: model, output: out + "/q", options: QuantizeOptions(recipe: recipe("int4:g16", rules: ["up_proj=keep"])))
        #expect(throws: QuantizeError.alreadyQuantized(path: out + "/q")) {
            try QKitQuantizer.run(model: out + "/q", output: out + "/qq", options: QuantizeOptions(recipe: recipe("int4:g16")))
        }
        #expect(listDirectory(out) == ["q"])
    }

    @Test("the reader refuses inconsistent tensors and configs")
    func readerChecks() throws {
        let dir = SafetensorsFixture.temporaryDirectory()
        defer { removeTree(dir) }
        let config = "{\"quantization_config\": {\"quant_method\": \"qkit\", \"version\": 1}}"
        func write(_ tensors: [(name: String, dtype: DType, shape: [Int], bytes: [UInt8])], config c: String = config) {
            SafetensorsFixture.write(SafetensorsFixture.file(tensors), to: dir + "/model.safetensors")
            SafetensorsFixture.write(Array(c.utf8), to: dir + "/config.json")
        }
        let q: (name: String, dtype: DType, shape: [Int], bytes: [UInt8]) = ("p.weight_q", .i8, [2, 8], [UInt8](repeating: 0xFF, count: 16))
        let s: (name: String, dtype: DType, shape: [Int], bytes: [UInt8]) = ("p.weight_scale", .f32, [2, 2], SafetensorsFixture.bytes([Float](repeating: 0.5, count: 4)))
        write([q, s])
        let w = try QKitWeights(path: dir)
        #expect(try w.float32("p.weight").values == [Float](repeating: -0.5, count: 16))
        #expect(throws: WeightSourceError.self) {
            var b = [Float](repeating: 0, count: 8)
            try b.withUnsafeMutableBufferPointer { try w.readFloat32("p.weight", rows: 1..<3, into: $0) }
        }
        let bad: [[(name: String, dtype: DType, shape: [Int], bytes: [UInt8])]] = [
            [q],                                                                              // no scale
            [q, ("p.weight_scale", .f32, [2, 3], [UInt8](repeating: 0, count: 24))],           // 3 groups in K = 8
            [q, ("p.weight_scale", .f32, [3, 1], [UInt8](repeating: 0, count: 12))],           // rows
            [q, ("p.weight_scale", .i32, [2, 2], [UInt8](repeating: 0, count: 16))],           // dtype
            [q, s, ("p.weight_zero_point", .u8, [2, 1], [0, 0])],                              // zero shape
            [q, s, ("p.weight_global_scale", .f32, [1], [0, 0, 0, 0])],                        // zero global
            [q, s, ("p.g_idx", .i32, [8], SafetensorsFixture.bytes([Int32](repeating: 5, count: 8)))], // group index
            [q, s, ("p.weight", .f32, [2, 8], [UInt8](repeating: 0, count: 64))],              // both
            [("p.weight_q", .f32, [2, 8], [UInt8](repeating: 0, count: 64)), s],               // float codes
        ]
        for tensors in bad {
            write(tensors)
            #expect(throws: QKitCheckpointError.self, "\(tensors.map(\.name))") { try QKitWeights(path: dir) }
        }
        write([q, s], config: "{\"quantization_config\": {\"quant_method\": \"qkit\", \"version\": 1, \"modules\": {\"p\": \"int4:g4:asym\"}}}")
        #expect(throws: QKitCheckpointError.self) { try QKitWeights(path: dir) }   // sym codes, asym scheme
    }

    @Test("quantization_config: every malformed variant is a clean error, never a crash")
    func fuzzConfig() throws {
        let valid = "{\"quantization_config\": {\"quant_method\": \"qkit\", \"version\": 1, \"modules\": {\"a\": \"int4:g64:asym\", \"b\": \"nvfp4\"}}}"
        #expect(try QKitConfig.parse(JSONParser.parse(valid), path: "c").count == 2)
        for text in ["{}", "{\"quantization_config\": 3}", "{\"quantization_config\": {\"quant_method\": \"awq\", \"version\": 1}}",
                     "{\"quantization_config\": {\"quant_method\": \"qkit\"}}", "{\"quantization_config\": {\"quant_method\": \"qkit\", \"version\": 2}}",
                     "{\"quantization_config\": {\"quant_method\": \"qkit\", \"version\": \"1\"}}",
                     "{\"quantization_config\": {\"quant_method\": \"qkit\", \"version\": 1, \"modules\": []}}",
                     "{\"quantization_config\": {\"quant_method\": \"qkit\", \"version\": 1, \"modules\": {\"a\": 4}}}",
                     "{\"quantization_config\": {\"quant_method\": \"qkit\", \"version\": 1, \"modules\": {\"a\": \"keep\"}}}",
                     "{\"quantization_config\": {\"quant_method\": \"qkit\", \"version\": 1, \"modules\": {\"a\": \"int4:g0\"}}}"] {
            #expect(throws: QKitCheckpointError.self, "\(text)") { try QKitConfig.parse(JSONParser.parse(text), path: "c") }
        }
        var rng = SplitMix(seed: 9)
        let bytes = Array(valid.utf8)
        let alphabet = Array("{}[]\":,0123456789abcdegiklmnpqrstuvxy-. ".utf8)
        for _ in 0..<3000 {
            var b = bytes
            for _ in 0..<(1 + rng.below(3)) { b[rng.below(b.count)] = alphabet[rng.below(alphabet.count)] }
            guard let json = try? JSONParser.parse(b) else { continue }
            do { _ = try QKitConfig.parse(json, path: "c") } catch { #expect(error.exitStatus == .dataError) }
        }
    }
}
