import Testing
@testable import Common

@Suite("KV-cache quantization: dynamic per head per token, static scales, the recorded format")
struct KVCacheQuantizationTests {
    /// One row of q (2 values), k and v (one head of 8 each), as `BlockObserver` lays them out.
    func row(k: [Float], v: [Float]) -> [Float] { [7.25, -3.5] + k + v }

    @Test("KV4 dynamic: asymmetric uint4 per head, hand-worked codes")
    func dynamicKV4() {
        // k: min −1.5, max 3 → s = 4.5/15 = 0.3, z = round(1.5/0.3) = 5;
        // codes round(x/0.3 + 5) = 5, 10, 0, 15, 5.67→6, 3.67→4, 14.67→15, 7.67→8.
        let k: [Float] = [0, 1.5, -1.5, 3, 0.2, -0.4, 2.9, 0.8]
        // v: all positive, the range is widened to [0, 1.5]: s = 0.1, z = 0; codes 15, 1, 5, 10, 0, 3, 2, 7.
        let v: [Float] = [1.5, 0.1, 0.5, 1.0, 0.04, 0.31, 0.22, 0.69]
        var x = row(k: k, v: v)
        let kv = KVCacheQuantization(bits: 4)
        x.withUnsafeMutableBufferPointer { kv.apply($0.baseAddress!, rows: 1, stride: 18, qDim: 2, kvDim: 8, headDim: 8) }
        let sk = Float(4.5) / 15, sv = Float(1.5) / 15
        let ek = [5, 10, 0, 15, 6, 4, 15, 8].map { (Float($0) - 5) * sk }
        let ev = [15, 1, 5, 10, 0, 3, 2, 7].map { Float($0) * sv }
        #expect(Array(x[0..<2]) == [7.25, -3.5], "queries are not cached: unchanged")
        #expect(Array(x[2..<10]) == ek)
        #expect(Array(x[10..<18]) == ev)
    }

    @Test("every head and every row has its own range; KV8 is finer than KV4")
    func headsAndRows() {
        var rng = SplitMix64(seed: 3)
        let rows = 5, heads = 2, hd = 16, qDim = 32, kvDim = heads * hd, stride = qDim + 2 * kvDim
        let x = (0..<(rows * stride)).map { i in Float(Int(rng.next() % 2001) - 1000) / 100 * (i % 7 == 0 ? 4 : 1) }
        func error(_ bits: Int) -> Float {
            var y = x
            y.withUnsafeMutableBufferPointer {
                KVCacheQuantization(bits: bits).apply($0.baseAddress!, rows: rows, stride: stride, qDim: qDim, kvDim: kvDim, headDim: hd)
            }
            var worst: Float = 0
            for r in 0..<rows {
                for h in 0..<(2 * heads) {
                    let base = r * stride + qDim + h * hd
                    let group = x[base..<(base + hd)]
                    let lo = min(group.min()!, 0), hi = max(group.max()!, 0)
                    let step = (hi - lo) / Float((1 << bits) - 1)
                    for i in base..<(base + hd) {
                        #expect(abs(y[i] - x[i]) <= step / 2 * 1.0001, "row \(r) head \(h)")
                        worst = max(worst, abs(y[i] - x[i]))
                    }
                }
                #expect(Array(y[(r * stride)..<(r * stride + qDim)]) == Array(x[(r * stride)..<(r * stride + qDim)]))
            }
            return worst
        }
        #expect(error(8) < error(4) / 8)
    }

    @Test("static scales: symmetric INT8 per tensor, FP8 per head")
    func staticScales() {
        let k: [Float] = [0.1, -0.26, 1.0, 2.0, -3.0, 0.5, 0.0, 0.74]
        let v: [Float] = [0.3, 0.2, -0.1, 7.0, 1.1, 0.9, -0.45, 0.05]
        var x = row(k: k, v: v)
        let int8 = KVCacheQuantization(element: .int, bits: 8, granularity: .tensor,
                                       scales: .init(key: [0.02], value: [0.05]))
        x.withUnsafeMutableBufferPointer { int8.apply($0.baseAddress!, rows: 1, stride: 18, qDim: 2, kvDim: 8, headDim: 8) }
        // k/0.02 = 5, −13, 50, 100, −150 → −128 (clamped), 25, 0, 37; v/0.05 = 6, 4, −2, 140 → 127, 22, 18, −9, 1.
        #expect(Array(x[2..<10]) == [5, -13, 50, 100, -128, 25, 0, 37].map { Float($0) * 0.02 })
        #expect(Array(x[10..<18]) == [6, 4, -2, 127, 22, 18, -9, 1].map { Float($0) * 0.05 })
        var y = row(k: k, v: v)
        let fp8 = KVCacheQuantization(element: .fp8, bits: 8, granularity: .head, scales: .init(key: [0.5], value: [1]))
        #expect(throws: Never.self) { try fp8.validate(kvHeads: 1) }
        y.withUnsafeMutableBufferPointer { fp8.apply($0.baseAddress!, rows: 1, stride: 18, qDim: 2, kvDim: 8, headDim: 8) }
        // 0.74 / 0.5 = 1.48 → E4M3 1.5 (steps of 1/8 in [1, 2)) → 0.75; 0.3 → 0.3125 (steps of 1/64 in [0.25, 0.5)).
        #expect(y[9] == 0.75 && y[10] == 0.3125 && y[13] == 7.0)
        #expect(throws: SchemeError.self) { try fp8.validate(kvHeads: 2) }
        #expect(throws: SchemeError.self) { try KVCacheQuantization(bits: 9).validate(kvHeads: 1) }
    }

    @Test("the recipe records kv_cache_format; a model reads it and every block simulates it")
    func recorded() throws {
        let scratch = ScratchDirectory("kv")
        let source = modelFixtureDirectory() + "/llama3"
        var options = QuantizeOptions(recipe: try QuantRecipe(defaultScheme: QuantScheme(format: .int(bits: 8), granularity: .channel)))
        _ = try QKitQuantizer.run(model: source, output: scratch.path + "/w8", options: options)
        options.kvCache = KVCacheQuantization(bits: 4)
        options.activationQuantization = ActivationQuantization(bits: 8)
        _ = try QKitQuantizer.run(model: source, output: scratch.path + "/w8kv4", options: options)
        let q = try Checkpoint(path: scratch.path + "/w8kv4").config!["quantization_config"]!
        #expect(q["kv_cache_format"]?["bits"]?.intValue == 4 && q["kv_cache_format"]?["dynamic"]?.boolValue == true)
        #expect(KVCacheQuantization(json: q["kv_cache_format"]) == KVCacheQuantization(bits: 4))
        let model = try DecoderModel(source: openWeights(path: scratch.path + "/w8kv4"))
        #expect(model.kvCacheQuantization == KVCacheQuantization(bits: 4) && model.activationQuantization == ActivationQuantization(bits: 8))
        #expect(try model.loadBlock(1).kvCacheQuantization == KVCacheQuantization(bits: 4))
        let plain = try DecoderModel(source: openWeights(path: scratch.path + "/w8"))
        #expect(plain.kvCacheQuantization == nil)
        // KV4 changes the logits, a little.
        var rng = SplitMix64(seed: 9)
        let seqs: [[Int32]] = (0..<2).map { _ in (0..<40).map { _ in Int32(rng.next() % 320) } }
        let a = try model.logits(seqs).array, b = try plain.logits(seqs).array
        let mse = zip(a, b).reduce(0.0) { $0 + Double(($1.0 - $1.1) * ($1.0 - $1.1)) } / Double(a.count)
        let power = b.reduce(0.0) { $0 + Double($1 * $1) } / Double(b.count)
        #expect(mse > 0 && mse < 0.05 * power, "KV4 logit error \(mse) vs power \(power)")
    }

    @Test("a static record reads per-layer k_scale/v_scale tensors; their absence is an error")
    func staticRecord() throws {
        let s = KVCacheQuantization(json: .object(JSONObject([("format", "fp8"), ("bits", 8), ("sym", true), ("granularity", "tensor"), ("dynamic", false)])))
        #expect(s != nil && s!.isDynamic == false && s!.scales == nil)
        #expect(s!.json["dynamic"]?.boolValue == false && s!.json["format"]?.stringValue == "fp8")
        #expect(KVCacheQuantization(json: .object(JSONObject([("format", "fp8"), ("bits", 8), ("dynamic", true)]))) == nil)
        let scratch = ScratchDirectory("kvstatic")
        var options = QuantizeOptions(recipe: try QuantRecipe(defaultScheme: QuantScheme(format: .int(bits: 8), granularity: .channel)))
        options.kvCache = s
        _ = try QKitQuantizer.run(model: modelFixtureDirectory() + "/llama3", output: scratch.path + "/out", options: options)
        let model = try DecoderModel(source: openWeights(path: scratch.path + "/out"))
        #expect(throws: WeightSourceError.self) { try model.loadBlock(0) }
    }
}
