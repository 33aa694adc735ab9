import Testing
@testable import Common

#if canImport(Glibc)
import Glibc
#endif

/// A scratch directory removed when the value goes away.
final class ScratchDirectory {
    let path: String
    init(_ tag: String) {
        path = "/tmp/qkit-calib-\(tag)-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
        try! makeDirectories(path)
    }
    deinit { removeTree(path) }
}

/// Seeded pseudo-random floats (heavy-ish tails: a sum of uniforms scaled per channel).
func randomMatrix(rows: Int, columns: Int, seed: UInt64, outliers: Bool = false) -> Matrix {
    var rng = SplitMix64(seed: seed)
    let m = Matrix(rows: rows, columns: columns)
    for r in 0..<rows {
        for c in 0..<columns {
            let u = Float(rng.next() % 1_000_000) / 1_000_000 - 0.5
            let v = Float(rng.next() % 1_000_000) / 1_000_000 - 0.5
            m.pointer[r * columns + c] = (u + v) * (outliers && c % 17 == 3 ? 12 : 1)
        }
    }
    return m
}

/// A token-id file of `count` seeded ids below `vocabulary`.
func writeIDs(_ path: String, count: Int, vocabulary: Int, seed: UInt64) throws {
    var rng = SplitMix64(seed: seed)
    let text = (0..<count).map { _ in String(rng.next() % UInt64(vocabulary)) }.joined(separator: " ")
    try writeSmallFile(path, text + "\n")
}

@Suite("Calibration: statistics, folding, AWQ/GPTQ/SmoothQuant blocks, the engine")
struct CalibrationTests {
    @Test("per-channel statistics and the Gram matrix equal a direct computation")
    func statistics() throws {
        try BLAS.load()
        let x = randomMatrix(rows: 300, columns: 40, seed: 1)
        let s = InputStatistics(columns: 40, gram: true)
        s.add(x.pointer, count: 100)
        s.add(x.row(100), count: 200)
        let g = s.gramMatrix()!
        for i in 0..<40 {
            var mx: Float = 0, a = 0.0, q = 0.0
            for r in 0..<300 { let v = x.pointer[r * 40 + i]; mx = max(mx, abs(v)); a += Double(abs(v)); q += Double(v * v) }
            #expect(s.absmax[i] == mx)
            #expect(abs(Double(s.absoluteMean[i]) - a / 300) < 1e-6)
            #expect(abs(Double(s.squareMean[i]) - q / 300) < 1e-6)
            for j in 0..<40 {
                var d = 0.0
                for r in 0..<300 { d += Double(x.pointer[r * 40 + i]) * Double(x.pointer[r * 40 + j]) }
                #expect(abs(Double(g[i * 40 + j]) - d) < 1e-3 * max(1, abs(d)), "G[\(i),\(j)]")
            }
        }
        let h = s.hessian()!
        #expect(abs(h[5 * 40 + 7] - 2 / 300 * g[5 * 40 + 7]) < 1e-6)
        // A large K crosses several Gram tiles.
        let wide = randomMatrix(rows: 20, columns: 600, seed: 2)
        let sw = InputStatistics(columns: 600, gram: true)
        sw.add(wide.pointer, count: 20)
        let gw = sw.gramMatrix()!
        for (i, j) in [(0, 599), (599, 0), (300, 10), (257, 513)] {
            var d = 0.0
            for r in 0..<20 { d += Double(wide.pointer[r * 600 + i]) * Double(wide.pointer[r * 600 + j]) }
            #expect(abs(Double(gw[i * 600 + j]) - d) < 1e-4 * max(1, abs(d)))
        }
    }

    @Test("AWQ's Gram-form output error equals the mean squared error of the linear's outputs")
    func gramError() throws {
        try BLAS.load()
        let x = randomMatrix(rows: 256, columns: 64, seed: 3, outliers: true)
        let w = randomMatrix(rows: 24, columns: 64, seed: 4)
        let scheme = QuantScheme(format: .int(bits: 4), granularity: .group(32), symmetric: false)
        let s = (0..<64).map { Float(1 + ($0 % 5)) / 3 }
        let stats = InputStatistics(columns: 64, gram: true)
        stats.add(x.pointer, count: 256)
        let g = stats.gramMatrix(scale: 1 / 256)!
        let viaGram = AWQ.outputError(w, scheme: scheme, scales: s, gram: g)
        // Direct: Q(W·s)/s, outputs on every token.
        let scaled = Matrix(rows: 24, columns: 64)
        for r in 0..<24 { for j in 0..<64 { scaled.pointer[r * 64 + j] = w.pointer[r * 64 + j] * s[j] } }
        let q = QuantizedWeight.quantize(scaled.pointer, rows: 24, columns: 64, scheme: scheme)
        q.dequantize(into: scaled.pointer)
        var direct = 0.0
        for t in 0..<256 {
            for r in 0..<24 {
                var y = 0.0, yq = 0.0
                for j in 0..<64 {
                    y += Double(x.pointer[t * 64 + j]) * Double(w.pointer[r * 64 + j])
                    yq += Double(x.pointer[t * 64 + j]) * Double(scaled.pointer[r * 64 + j] / s[j])
                }
                direct += (y - yq) * (y - yq)
            }
        }
        direct /= 256
        #expect(abs(viaGram - direct) < 1e-3 * direct, "gram \(viaGram) direct \(direct)")
    }

    @Test("scales folded into norms and producer rows leave the block's output unchanged", arguments: ["qwen2", "llama3", "qwen3"])
    func foldingIsExact(family: String) throws {
        let model = try DecoderModel(path: modelFixtureDirectory() + "/" + family)
        let c = model.config
        let block = try model.loadBlock(0)
        var rng = SplitMix64(seed: 9)
        let ids: [[Int32]] = [(0..<24).map { _ in Int32(rng.next() % 320) }, (0..<16).map { _ in Int32(rng.next() % 320) }]
        let (hidden, layout) = try model.embed(ids)
        let rope = model.rotaryEmbedding(for: layout)
        let reference = Matrix(rows: hidden.rows, columns: hidden.columns)
        reference.pointer.update(from: hidden.pointer, count: hidden.rows * hidden.columns)
        block.forward(reference, layout: layout, rope: rope)

        func scales(_ n: Int) -> [Float] { (0..<n).map { _ in 0.25 + Float(rng.next() % 1000) / 400 } }
        Smoothing.fold(scales(c.hiddenSize), intoNorm: block.inputNorm, consumers: ["q_proj", "k_proj", "v_proj"].map { block.linear($0)! })
        Smoothing.fold(scales(c.hiddenSize), intoNorm: block.postAttentionNorm, consumers: ["gate_proj", "up_proj"].map { block.linear($0)! })
        // v → o with grouped-query attention: one scale per value channel, repeated over the query heads.
        let perValue = scales(c.kvDim)
        let d = c.headDim, group = c.headCount / c.kvHeadCount
        let rows = (0..<c.qDim).map { j in (j / d) / group * d + j % d }
        Smoothing.fold(rows.map { perValue[$0] }, intoProducer: block.linear("v_proj")!,
                       bias: block.qkvBias.map { $0.pointer + c.qDim + c.kvDim }, producerRows: rows, consumers: [block.linear("o_proj")!])
        Smoothing.fold(scales(c.intermediateSize), intoProducer: block.linear("up_proj")!, bias: block.gateUpBias.map { $0.pointer + c.intermediateSize },
                       producerRows: Array(0..<c.intermediateSize), consumers: [block.linear("down_proj")!])
        block.forward(hidden, layout: layout, rope: rope)
        let err = maxRelativeError(hidden.array, reference.array)
        #expect(err < 2e-5, "\(family): folded block differs by \(err)")
    }

    @Test("activation quantization rounds each row to its int8 grid")
    func activationQuantization() {
        let a = ActivationQuantization(bits: 8)
        var row: [Float] = [1.0, -0.5, 0.25, 0.0039, 2.0, -2.0, 0.01, 1.5, 0.3]
        let s = 2 * 2.0 / Float(255)
        let expected = row.map { (max(-128, min(127, ($0 / s).rounded(.toNearestOrEven)))) * s }
        row.withUnsafeMutableBufferPointer { a.apply($0.baseAddress!, rows: 1, columns: 9, input: .attention) }
        #expect(row == expected)
        #expect(ActivationQuantization.parse(a.json())! == (a, false))
        #expect(ActivationQuantization.parse(a.json(static: true))! == (a, true))
    }

    @Test("calibration windows: first N, random with a seed, too few tokens refused")
    func windows() throws {
        let tokens = (0..<1000).map { Int32($0) }
        var r = CalibrationDataRequest()
        r.samples = 3
        r.sequenceLength = 100
        r.sampling = .first
        let first = try CalibrationData(request: r, tokens: tokens, inputHash: 0, path: "t")
        #expect(first.sequences.map(\.first!) == [0, 100, 200] && first.sequences.allSatisfy { $0.count == 100 })
        r.sampling = .random
        r.seed = 7
        let a = try CalibrationData(request: r, tokens: tokens, inputHash: 0, path: "t")
        let b = try CalibrationData(request: r, tokens: tokens, inputHash: 0, path: "t")
        #expect(a.sequences == b.sequences && a.sequences.allSatisfy { $0.count == 100 && $0.last! - $0.first! == 99 })
        r.seed = 8
        #expect(try CalibrationData(request: r, tokens: tokens, inputHash: 0, path: "t").sequences != a.sequences)
        r.sampling = .first
        r.samples = 11
        #expect(throws: CalibrationDataError.self) { try CalibrationData(request: r, tokens: tokens, inputHash: 0, path: "t") }
    }

    /// Runs the engine on a tiny fixture with seeded ids and returns the output directory.
    func quantizeTiny(_ family: String, algorithm: any BlockAlgorithm, scheme: QuantScheme, into scratch: ScratchDirectory,
                      name: String = "out", fake: Bool = false, skip: [String] = [], sampling: CalibrationSampling = .random) throws -> String {
        let ids = scratch.path + "/ids.txt"
        if !fileExists(ids) { try writeIDs(ids, count: 4096, vocabulary: 320, seed: 5) }
        var request = CalibrationDataRequest(ids: ids)
        request.samples = 8
        request.sequenceLength = 64
        request.sampling = sampling
        var q = QuantizeOptions(recipe: try QuantRecipe(defaultScheme: scheme, skipPatterns: skip))
        q.fake = fake
        let out = scratch.path + "/" + name
        _ = try CalibrationEngine.run(model: modelFixtureDirectory() + "/" + family, output: out, algorithm: algorithm,
                                      options: CalibratedOptions(quantize: q, data: request))
        return out
    }

    /// Mean squared difference between the logits of two models on seeded windows.
    func logitError(_ a: String, _ b: String) throws -> Double {
        let ma = try DecoderModel(source: openWeights(path: a)), mb = try DecoderModel(source: openWeights(path: b))
        var rng = SplitMix64(seed: 99)
        let seqs: [[Int32]] = (0..<4).map { _ in (0..<48).map { _ in Int32(rng.next() % 320) } }
        let la = try ma.logits(seqs).array, lb = try mb.logits(seqs).array
        return zip(la, lb).reduce(0.0) { $0 + Double(($1.0 - $1.1) * ($1.0 - $1.1)) } / Double(la.count)
    }

    @Test("GPTQ and AWQ beat RTN on the calibration distribution; the outputs load as qkit checkpoints", arguments: ["qwen2", "llama3"])
    func calibratedBeatRTN(family: String) throws {
        let scratch = ScratchDirectory("beat")
        let source = modelFixtureDirectory() + "/" + family
        let sym = QuantScheme(format: .int(bits: 3), granularity: .group(32), symmetric: true)
        let asym = QuantScheme(format: .int(bits: 3), granularity: .group(32), symmetric: false)
        let gptq = try quantizeTiny(family, algorithm: GPTQ(), scheme: sym, into: scratch, name: "gptq")
        let awq = try quantizeTiny(family, algorithm: AWQ(), scheme: asym, into: scratch, name: "awq")
        var rtnSym = QuantizeOptions(recipe: try QuantRecipe(defaultScheme: sym))
        _ = try QKitQuantizer.run(model: source, output: scratch.path + "/rtn-sym", options: rtnSym)
        rtnSym.recipe = try QuantRecipe(defaultScheme: asym)
        _ = try QKitQuantizer.run(model: source, output: scratch.path + "/rtn-asym", options: rtnSym)
        let eg = try logitError(gptq, source), er = try logitError(scratch.path + "/rtn-sym", source)
        let ea = try logitError(awq, source), era = try logitError(scratch.path + "/rtn-asym", source)
        #expect(eg < er, "\(family): gptq \(eg) vs rtn \(er)")
        #expect(ea < era, "\(family): awq \(ea) vs rtn \(era)")
        let config = try Checkpoint(path: gptq).config!["quantization_config"]!
        #expect(config["algorithm"]?.stringValue == "gptq" && config["calibration"]?["samples"]?.intValue == 8)
        #expect(!fileExists(scratch.path + "/.gptq.qkit-progress"))
    }

    @Test("SmoothQuant W8A8: the recipe asks for int8 activations and qeval's forward applies them")
    func smoothQuant() throws {
        let scratch = ScratchDirectory("sq")
        let out = try quantizeTiny("qwen2", algorithm: SmoothQuant(), scheme: QuantScheme(format: .int(bits: 8), granularity: .channel),
                                   into: scratch)
        let model = try DecoderModel(source: openWeights(path: out))
        #expect(model.activationQuantization == ActivationQuantization(bits: 8))
        #expect(try model.loadBlock(1).activationQuantization != nil)
        let err = try logitError(out, modelFixtureDirectory() + "/qwen2")
        #expect(err > 0 && err < 1e-3, "W8A8 logits differ from float by \(err)")
    }

    @Test("SmoothQuant static activations: one input_scale per linear, 2·max|x̂|/255 of the calibration inputs, read back by the runtime and packed")
    func smoothQuantStatic() throws {
        let scratch = ScratchDirectory("sqs")
        let scheme = QuantScheme(format: .int(bits: 8), granularity: .channel)
        let out = try quantizeTiny("qwen2", algorithm: SmoothQuant(staticActivations: true), scheme: scheme, into: scratch, sampling: .first)
        let ck = try Checkpoint(path: out)
        let format = ck.config?["quantization_config"]?["activation_format"]
        #expect(format?["dynamic"]?.boolValue == false && format?["granularity"]?.stringValue == "tensor")
        let model = try DecoderModel(source: openWeights(path: out))
        #expect(model.staticActivationScales)
        for layer in 0..<model.config.layerCount {
            for name in BlockWeights.linearNames(layer) {
                #expect(ck[name + ".input_scale"]?.shape == [1], "\(name).input_scale")
            }
            let scales = try model.loadBlock(layer).activationQuantization?.staticScales ?? [:]
            #expect(Set(scales.keys) == Set(LinearInput.allCases))
            let w = try openWeights(path: out)
            let q = try w.float32(BlockWeights.prefix(layer) + "self_attn.q_proj.input_scale").values[0]
            let v = try w.float32(BlockWeights.prefix(layer) + "self_attn.v_proj.input_scale").values[0]
            #expect(q == v && q == scales[.attention])
        }
        // Block 0's q/k/v input depends only on the embeddings and the (smoothed) input norm: observe it on the
        // output model, without activation quantization, on the calibration windows; its maximum is the scale's.
        let (ids, _) = try EvaluationReport.readIDs(scratch.path + "/ids.txt", vocabulary: model.config.vocabularySize)
        let windows = (0..<8).map { Array(ids[($0 * 64)..<($0 * 64 + 64)]) }
        let (hidden, layout) = try model.embed(windows)
        let block = try model.loadBlock(0)
        let expected = block.activationQuantization!.staticScales[.attention]!
        block.activationQuantization = nil
        let stats = BlockStatistics(config: model.config, observed: [.attention])
        block.forward(hidden, layout: layout, rope: model.rotaryEmbedding(for: layout), observer: stats)
        let observed = 2 * (stats[.attention]!.absmax.array.max() ?? 0) / 255
        #expect(abs(observed - expected) <= 1e-5 * expected, "observed \(observed), stored \(expected)")
        // Static scales change the numbers (they are applied), and stay close to float at 8 bits.
        let err = try logitError(out, modelFixtureDirectory() + "/qwen2")
        #expect(err > 0 && err < 1e-2, "W8A8 static logits differ from float by \(err)")
        // compressed-tensors int-quantized keeps them: input_scale tensors and static per-tensor input args.
        let packed = scratch.path + "/ct"
        _ = try Packer.run(input: out, output: packed, options: PackOptions(layout: CompressedTensorsLayout(w8a8: true)))
        let ct = try Checkpoint(path: packed)
        let args = ct.config?["quantization_config"]?["config_groups"]?["group_0"]?["input_activations"]
        #expect(args?["strategy"]?.stringValue == "tensor" && args?["dynamic"]?.boolValue == false)
        #expect(ct["model.layers.1.mlp.down_proj.input_scale"]?.shape == [1])
        let reread = try DecoderModel(source: openWeights(path: packed))
        #expect(reread.staticActivationScales)
        #expect(try reread.loadBlock(1).activationQuantization?.staticScales == model.loadBlock(1).activationQuantization?.staticScales)
    }

    @Test("fake output: the same weights dequantized in the source dtype")
    func fakeOutput() throws {
        let scratch = ScratchDirectory("fake")
        let scheme = QuantScheme(format: .int(bits: 4), granularity: .group(32), symmetric: true)
        let real = try quantizeTiny("llama3", algorithm: GPTQ(), scheme: scheme, into: scratch, name: "real")
        let fake = try quantizeTiny("llama3", algorithm: GPTQ(), scheme: scheme, into: scratch, name: "fake", fake: true)
        let a = try openWeights(path: real), b = try openWeights(path: fake)
        for name in ["model.layers.1.mlp.down_proj.weight", "model.layers.0.self_attn.q_proj.weight"] {
            let n = try a.shape(of: name).reduce(1, *)
            var x = [Float](repeating: 0, count: n), y = [Float](repeating: 0, count: n)
            try x.withUnsafeMutableBufferPointer { try a.readFloat32(name, rows: 0..<(try a.shape(of: name)[0]), into: $0) }
            try y.withUnsafeMutableBufferPointer { try b.readFloat32(name, rows: 0..<(try b.shape(of: name)[0]), into: $0) }
            #expect(x == y, "\(name)")
        }
    }

    @Test("AWQ with some consumers of an input kept in float still folds exactly: the output stays close to the source")
    func awqWithKeptConsumers() throws {
        let scratch = ScratchDirectory("awqkeep")
        let skip = ["k_proj", "v_proj", "gate_proj", "down_proj"]
        let int3 = QuantScheme(format: .int(bits: 3), granularity: .group(32), symmetric: false)
        let awq = try quantizeTiny("qwen2", algorithm: AWQ(), scheme: int3, into: scratch, name: "awq", skip: skip)
        let rtn = QuantizeOptions(recipe: try QuantRecipe(defaultScheme: int3, skipPatterns: skip))
        _ = try QKitQuantizer.run(model: modelFixtureDirectory() + "/qwen2", output: scratch.path + "/rtn", options: rtn)
        let source = modelFixtureDirectory() + "/qwen2"
        let ea = try logitError(awq, source), er = try logitError(scratch.path + "/rtn", source)
        #expect(ea < er, "awq \(ea) vs rtn \(er): a kept consumer was not rescaled")
        // Where a norm was rescaled, its kept consumer (k_proj, gate_proj) was rescaled with it.
        let a = try openWeights(path: awq), b = try openWeights(path: source)
        func values(_ w: any WeightSource, _ name: String) throws -> [Float] {
            let shape = try w.shape(of: name)
            var x = [Float](repeating: 0, count: shape.reduce(1, *))
            try x.withUnsafeMutableBufferPointer { try w.readFloat32(name, rows: 0..<shape[0], into: $0) }
            return x
        }
        var folds = 0
        for layer in 0..<2 {
            let p = "model.layers.\(layer)."
            for (norm, kept) in [("input_layernorm", "self_attn.k_proj"), ("post_attention_layernorm", "mlp.gate_proj")] {
                guard try values(a, p + norm + ".weight") != values(b, p + norm + ".weight") else { continue }
                folds += 1
                #expect(try values(a, p + kept + ".weight") != values(b, p + kept + ".weight"), "\(p)\(kept) was not rescaled with \(norm)")
            }
        }
        #expect(folds > 0)
    }
}
