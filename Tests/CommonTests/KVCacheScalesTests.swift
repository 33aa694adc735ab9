import Testing
@testable import Common

@Suite("Static KV-cache scales: from calibration, written per layer, read back, packed for compressed-tensors")
struct KVCacheScalesTests {
    @Test("hand-worked scales: absmax/448 for FP8, absmax/(2^(b-1)-1) for INT, per tensor or per head")
    func handWorked() {
        // Two heads of 4 channels; head 1 of the keys was always zero.
        let k: [Float] = [1, 2, 4, 0.5, 0, 0, 0, 0]
        let v: [Float] = [0.25, 3, 0.5, 1, 7, 0.5, 2, 1]
        let fp8 = KVCacheQuantization.calibrated(element: .fp8, bits: 8, granularity: .tensor)
        let e4: Float = 448, i8: Float = 127
        let tensorFP8 = KVCacheQuantization.StaticScales(key: [4 / e4], value: [7 / e4])
        #expect(fp8.scales(keyAbsmax: k, valueAbsmax: v, headDim: 4) == tensorFP8)
        let fp8Head = KVCacheQuantization.calibrated(element: .fp8, bits: 8, granularity: .head)
        let headFP8 = KVCacheQuantization.StaticScales(key: [4 / e4, 1], value: [3 / e4, 7 / e4])
        #expect(fp8Head.scales(keyAbsmax: k, valueAbsmax: v, headDim: 4) == headFP8)
        let int8 = KVCacheQuantization.calibrated(element: .int, bits: 8, granularity: .head)
        let headInt8 = KVCacheQuantization.StaticScales(key: [4 / i8, 1], value: [3 / i8, 7 / i8])
        #expect(int8.scales(keyAbsmax: k, valueAbsmax: v, headDim: 4) == headInt8)
        let int4 = KVCacheQuantization.calibrated(element: .int, bits: 4, granularity: .tensor)
        let tensorInt4 = KVCacheQuantization.StaticScales(key: [Float(4) / 7], value: [1])
        #expect(int4.maximumCode == 7)
        #expect(int4.scales(keyAbsmax: k, valueAbsmax: v, headDim: 4) == tensorInt4)
        // The record: static, symmetric; read back without scales (they are per layer tensors).
        #expect(fp8Head.isStatic && fp8Head.json["dynamic"]?.boolValue == false && fp8Head.json["granularity"]?.stringValue == "head")
        #expect(KVCacheQuantization(json: fp8Head.json) == fp8Head)
        #expect(KVCacheQuantization(bits: 4).isStatic == false)
    }

    @Test("compressed-tensors kv_cache_scheme maps to the qkit record; qkit's record wins when both are there")
    func compressedTensorsScheme() {
        func scheme(_ type: String, _ bits: Int, _ strategy: String, dynamic: Bool = false, symmetric: Bool = true) -> JSONValue {
            .object(JSONObject([("num_bits", .int(bits)), ("type", .string(type)), ("strategy", .string(strategy)),
                                ("dynamic", .bool(dynamic)), ("symmetric", .bool(symmetric))]))
        }
        #expect(KVCacheQuantization(compressedTensors: scheme("float", 8, "tensor")) == .calibrated(element: .fp8, bits: 8, granularity: .tensor))
        #expect(KVCacheQuantization(compressedTensors: scheme("float", 8, "attn_head")) == .calibrated(element: .fp8, bits: 8, granularity: .head))
        #expect(KVCacheQuantization(compressedTensors: scheme("int", 8, "tensor")) == .calibrated(element: .int, bits: 8, granularity: .tensor))
        #expect(KVCacheQuantization(compressedTensors: scheme("float", 8, "tensor", dynamic: true)) == nil)
        #expect(KVCacheQuantization(compressedTensors: scheme("float", 8, "tensor", symmetric: false)) == nil)
        #expect(KVCacheQuantization(compressedTensors: scheme("float", 8, "channel")) == nil)
        #expect(KVCacheQuantization(compressedTensors: .null) == nil)
        let both: JSONValue = .object(JSONObject([("quantization_config", .object(JSONObject([
            ("kv_cache_format", KVCacheQuantization(bits: 4).json), ("kv_cache_scheme", scheme("float", 8, "tensor"))])))]))
        #expect(KVCacheQuantization.recorded(in: both) == KVCacheQuantization(bits: 4))
    }

    func request(_ scratch: ScratchDirectory) throws -> CalibrationDataRequest {
        let ids = scratch.path + "/ids.txt"
        if !fileExists(ids) { try writeIDs(ids, count: 4096, vocabulary: 320, seed: 5) }
        var r = CalibrationDataRequest(ids: ids)
        r.samples = 6
        r.sequenceLength = 48
        return r
    }

    @Test("gptq + fp8 KV: the scales are the keys' and values' maxima of the block as stored, /448; qeval's model reads them; compressed-tensors round trip")
    func engineAndCompressedTensors() throws {
        let scratch = ScratchDirectory("kvscales")
        let source = modelFixtureDirectory() + "/llama3"
        let r = try request(scratch)
        var options = QuantizeOptions(recipe: try QuantRecipe(defaultScheme: QuantScheme(format: .int(bits: 4), granularity: .group(32), symmetric: true)))
        for g in [KVCacheQuantization.ScaleGranularity.tensor, .head] {
            options.kvCache = .calibrated(element: .fp8, bits: 8, granularity: g)
            _ = try CalibrationEngine.run(model: source, output: scratch.path + "/\(g)", algorithm: GPTQ(),
                                          options: CalibratedOptions(quantize: options, data: r))
        }
        let out = scratch.path + "/tensor"
        let ck = try Checkpoint(path: out)
        #expect(ck.config?["quantization_config"]?["kv_cache_format"]?["format"]?.stringValue == "fp8")
        let model = try DecoderModel(source: openWeights(path: out))
        let c = model.config
        #expect(model.kvCacheQuantization == .calibrated(element: .fp8, bits: 8, granularity: .tensor))
        for layer in 0..<c.layerCount {
            let names = KVCacheQuantization.scaleTensorNames(layer: layer)
            #expect(ck[names.key]?.shape == [1] && ck[names.value]?.shape == [1])
        }
        // Layer 0 sees the embeddings in both runs: its stored scales are the maxima of the stored block's keys.
        let data = try CalibrationData.load(r, model: model)
        let acts = try CalibrationActivations(embedding: data.sequences, model: model, batchTokens: 16_384)
        let block = try model.loadBlock(0)
        let stats = BlockStatistics(config: c, observed: [], keysAndValues: true)
        for b in acts.batches { _ = block.attentionContext(acts.view(acts.hidden, b), layout: b.layout, rope: acts.rope, observer: stats) }
        let stored = try #require(block.kvCacheQuantization?.scales)
        let k = stats.keyAbsmax!.array.max()! / 448, v = stats.valueAbsmax!.array.max()! / 448
        #expect(abs(stored.key[0] - k) <= 1e-5 * k && abs(stored.value[0] - v) <= 1e-5 * v, "\(stored) vs \(k), \(v)")

        // compressed-tensors: kv_cache_scheme and vLLM's tensor names, [1] or [kvHeads, 1, 1]; read back as the same record.
        for g in ["tensor", "head"] {
            let ct = scratch.path + "/ct-\(g)"
            _ = try Packer.run(input: scratch.path + "/" + g, output: ct, options: PackOptions(layout: CompressedTensorsLayout()))
            let packed = try Checkpoint(path: ct)
            let scheme = packed.config?["quantization_config"]?["kv_cache_scheme"]
            #expect(scheme?["strategy"]?.stringValue == (g == "head" ? "attn_head" : "tensor") && scheme?["type"]?.stringValue == "float")
            #expect(scheme?["num_bits"]?.intValue == 8 && scheme?["dynamic"]?.boolValue == false && scheme?["symmetric"]?.boolValue == true)
            #expect(packed["model.layers.1.self_attn.k_scale"]?.shape == (g == "head" ? [c.kvHeadCount, 1, 1] : [1]))
            let qkit = try DecoderModel(source: openWeights(path: scratch.path + "/" + g))
            let back = try DecoderModel(source: openWeights(path: ct))
            #expect(back.kvCacheQuantization == qkit.kvCacheQuantization)
            #expect(try back.loadBlock(1).kvCacheQuantization == qkit.loadBlock(1).kvCacheQuantization)
            // Repacking the compressed-tensors output keeps the scheme and the scales.
            _ = try Packer.run(input: ct, output: ct + "-again", options: PackOptions(layout: CompressedTensorsLayout()))
            let again = try Checkpoint(path: ct + "-again")
            #expect(again.config?["quantization_config"]?["kv_cache_scheme"] == scheme)
            #expect(try DecoderModel(source: openWeights(path: ct + "-again")).loadBlock(1).kvCacheQuantization == qkit.loadBlock(1).kvCacheQuantization)
        }
        // A layout with no place for the scales refuses, and writes nothing.
        do {
            _ = try Packer.run(input: out, output: scratch.path + "/awq", options: PackOptions(layout: GPTQLayout(v2: false)))
            Issue.record("vllm-gptq took static KV-cache scales")
        } catch let e as PackError {
            #expect(e.exitStatus == .dataError && e.description.contains("KV-cache"), "\(e)")
        }
        #expect(!fileExists(scratch.path + "/awq"))
    }

    @Test("data-free: the float model's scales from a forward pass equal those from a qcalib file; int8 is refused by compressed-tensors")
    func dataFreeAndStatistics() throws {
        let scratch = ScratchDirectory("kvfree")
        let source = modelFixtureDirectory() + "/qwen2"
        let r = try request(scratch)
        let kv = KVCacheQuantization.calibrated(element: .int, bits: 8, granularity: .head)
        let (fromData, record) = try KVCacheCalibration.scales(model: source, data: r, kv: kv)
        #expect(record["tokens"]?.intValue == 6 * 48)
        _ = try StatisticsFile.run(model: source, data: r, hessian: false, output: scratch.path + "/stats.safetensors")
        let fromStats = try KVCacheCalibration.scales(statistics: scratch.path + "/stats.safetensors", model: source, kv: kv)
        #expect(fromData == fromStats)
        var options = QuantizeOptions(recipe: try QuantRecipe(defaultScheme: QuantScheme(format: .int(bits: 8), granularity: .channel)))
        options.kvCache = kv
        options.kvCacheScales = fromData
        _ = try QKitQuantizer.run(model: source, output: scratch.path + "/rtn", options: options)
        let model = try DecoderModel(source: openWeights(path: scratch.path + "/rtn"))
        #expect(try model.loadBlock(1).kvCacheQuantization == kv.with(scales: fromData[1]))
        #expect(throws: PackError.self) {
            try Packer.run(input: scratch.path + "/rtn", output: scratch.path + "/ct", options: PackOptions(layout: CompressedTensorsLayout()))
        }
    }
}
