import Testing
@testable import Common

@Suite("QoQ: SmoothAttention, reordering, down_proj smoothing, GPTQ on the progressive grid")
struct QoQTests {
    /// Block 0 of a fixture, a batch of embeddings, and the block's float output on it.
    func fixture(_ family: String) throws -> (DecoderModel, BlockWeights, Matrix, SequenceLayout, RotaryEmbedding, Matrix) {
        let model = try DecoderModel(path: modelFixtureDirectory() + "/" + family)
        let block = try model.loadBlock(0)
        var rng = SplitMix64(seed: 4)
        let ids: [[Int32]] = [(0..<24).map { _ in Int32(rng.next() % 320) }, (0..<16).map { _ in Int32(rng.next() % 320) }]
        let (hidden, layout) = try model.embed(ids)
        let rope = model.rotaryEmbedding(for: layout)
        let reference = Matrix(rows: hidden.rows, columns: hidden.columns)
        reference.pointer.update(from: hidden.pointer, count: hidden.rows * hidden.columns)
        block.forward(reference, layout: layout, rope: rope)
        return (model, block, hidden, layout, rope, reference)
    }

    @Test("the transforms leave the float block's output unchanged", arguments: ["llama3", "qwen2", "qwen3", "mistral"])
    func exact(family: String) throws {
        let (_, block, hidden, layout, rope, reference) = try fixture(family)
        let stats = BlockStatistics(config: block.config, observed: [.attentionOutput, .mlpHidden], keysAndValues: true)
        let copy = Matrix(rows: hidden.rows, columns: hidden.columns)
        copy.pointer.update(from: hidden.pointer, count: hidden.rows * hidden.columns)
        block.forward(copy, layout: layout, rope: rope, observer: stats)
        let before = block.qkv.array + block.output.array + block.gateUp.array + block.down.array
        QoQ().transform(block, keyAbsmax: stats.keyAbsmax!.array, outputAbsmax: stats[.attentionOutput]!.absmax.array,
                        downAbsmax: stats[.mlpHidden]!.absmax.array)
        #expect(block.qkv.array + block.output.array + block.gateUp.array + block.down.array != before, "\(family): nothing changed")
        block.forward(hidden, layout: layout, rope: rope)
        let err = maxRelativeError(hidden.array, reference.array)
        #expect(err < 3e-5, "\(family): transformed block differs by \(err)")
    }

    @Test("SmoothAttention flattens the keys: λ = sqrt(max|K|), RoPE pairs and KV groups share it")
    func smoothAttention() throws {
        let (_, block, hidden, layout, rope, _) = try fixture("llama3")
        let c = block.config, d = c.headDim
        let stats = BlockStatistics(config: c, observed: [], keysAndValues: true)
        block.forward(hidden, layout: layout, rope: rope, observer: stats)
        let keys = stats.keyAbsmax!.array
        let lambda = QoQ().attentionScales(c, keyAbsmax: keys)
        for h in 0..<c.kvHeadCount {
            for i in 0..<(d / 2) {
                let expected = max(keys[h * d + i], keys[h * d + d / 2 + i]).squareRoot()
                #expect(abs(lambda[h * d + i] - expected) <= 1e-6 * expected && lambda[h * d + d / 2 + i] == lambda[h * d + i])
            }
        }
        // After the transform the keys' channel maxima are max|K| / λ: their spread shrinks to its square root.
        let block2 = try DecoderModel(path: modelFixtureDirectory() + "/llama3").loadBlock(0)
        var q = QoQ()
        q.reorder = false
        q.downAlpha = 0
        q.downBeta = 0
        let (h2, l2) = try DecoderModel(path: modelFixtureDirectory() + "/llama3").embed([(0..<24).map { Int32($0 * 7 % 320) }])
        let s1 = BlockStatistics(config: c, observed: [], keysAndValues: true)
        let x = Matrix(rows: h2.rows, columns: h2.columns)
        x.pointer.update(from: h2.pointer, count: h2.rows * h2.columns)
        block2.forward(x, layout: l2, rope: rope, observer: s1)
        q.transform(block2, keyAbsmax: s1.keyAbsmax!.array, outputAbsmax: [], downAbsmax: [])
        let s2 = BlockStatistics(config: c, observed: [], keysAndValues: true)
        block2.forward(h2, layout: l2, rope: rope, observer: s2)
        func spread(_ v: [Float]) -> Float { v.max()! / max(v.min()!, 1e-6) }
        #expect(spread(s2.keyAbsmax!.array) < spread(s1.keyAbsmax!.array), "key channel spread \(spread(s1.keyAbsmax!.array)) → \(spread(s2.keyAbsmax!.array))")
    }

    @Test("reordering puts down_proj's largest input channels first")
    func reorder() throws {
        let (_, block, hidden, layout, rope, _) = try fixture("qwen2")
        var q = QoQ()
        q.attentionAlpha = 0
        q.downAlpha = 0
        q.downBeta = 0
        let s1 = BlockStatistics(config: block.config, observed: [.attentionOutput, .mlpHidden])
        let x = Matrix(rows: hidden.rows, columns: hidden.columns)
        x.pointer.update(from: hidden.pointer, count: hidden.rows * hidden.columns)
        block.forward(x, layout: layout, rope: rope, observer: s1)
        q.transform(block, keyAbsmax: [], outputAbsmax: s1[.attentionOutput]!.absmax.array, downAbsmax: s1[.mlpHidden]!.absmax.array)
        let s2 = BlockStatistics(config: block.config, observed: [.attentionOutput, .mlpHidden])
        block.forward(hidden, layout: layout, rope: rope, observer: s2)
        let down = s2[.mlpHidden]!.absmax.array
        // (Equal up to rounding: the products sum in another order once the columns move.)
        #expect(zip(down, s1[.mlpHidden]!.absmax.array.sorted(by: >)).allSatisfy { abs($0 - $1) <= 1e-5 * $1 })
        let d = block.config.headDim, out = s2[.attentionOutput]!.absmax.array, group = block.config.headCount / block.config.kvHeadCount
        for h in 0..<block.config.kvHeadCount {
            // Within a head, channels by descending maximum over the KV group's query heads.
            let m = (0..<d).map { i in (0..<group).map { out[(h * group + $0) * d + i] }.max()! }
            #expect(m == m.sorted(by: >))
        }
    }

    @Test("qoq end to end: progressive int4 + A8 beats RTN on the same grid; recipe recorded; KV4 simulated")
    func endToEnd() throws {
        let scratch = ScratchDirectory("qoq")
        let source = modelFixtureDirectory() + "/llama3"
        let scheme = try #require(try QuantScheme.parse("int4:g32:prog"))
        let ids = scratch.path + "/ids.txt"
        try writeIDs(ids, count: 4096, vocabulary: 320, seed: 5)
        var request = CalibrationDataRequest(ids: ids)
        request.samples = 8
        request.sequenceLength = 64
        var options = QuantizeOptions(recipe: try QuantRecipe(defaultScheme: scheme))
        options.kvCache = KVCacheQuantization(bits: 4)
        _ = try CalibrationEngine.run(model: source, output: scratch.path + "/qoq", algorithm: QoQ(),
                                      options: CalibratedOptions(quantize: options, data: request))
        options.activationQuantization = ActivationQuantization(bits: 8)
        _ = try QKitQuantizer.run(model: source, output: scratch.path + "/rtn", options: options)
        let q = try Checkpoint(path: scratch.path + "/qoq").config!["quantization_config"]!
        #expect(q["algorithm"]?.stringValue == "qoq" && q["weight_scheme"]?.stringValue == "int4:g32:asym:prog")
        #expect(q["activation_format"]?["bits"]?.intValue == 8 && q["kv_cache_format"]?["bits"]?.intValue == 4)
        #expect(q["calibration"]?["smooth_attention_alpha"]?.doubleValue == 0.5)
        let model = try DecoderModel(source: openWeights(path: scratch.path + "/qoq"))
        #expect(model.kvCacheQuantization == KVCacheQuantization(bits: 4) && model.activationQuantization == ActivationQuantization(bits: 8))
        func error(_ path: String) throws -> Double {
            let a = try DecoderModel(source: openWeights(path: path)), b = try DecoderModel(path: source)
            let seqs: [[Int32]] = try CalibrationData(request: request, tokens: String(decoding: try readSmallFile(ids, limit: 1 << 20), as: UTF8.self)
                .split(whereSeparator: { $0 == " " || $0 == "\n" }).map { Int32($0)! }, inputHash: 0, path: ids).sequences
            let la = try a.logits(Array(seqs.prefix(4))).array, lb = try b.logits(Array(seqs.prefix(4))).array
            return zip(la, lb).reduce(0.0) { $0 + Double(($1.0 - $1.1) * ($1.0 - $1.1)) } / Double(la.count)
        }
        let eq = try error(scratch.path + "/qoq"), er = try error(scratch.path + "/rtn")
        #expect(eq < er, "qoq \(eq) vs rtn \(er)")
    }
}
