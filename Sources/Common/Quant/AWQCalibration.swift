/// AWQ, activation-aware weight quantization (arXiv 2306.00978 §3.2; ../shared/specs/algorithms.md §4.2).
///
/// Per block, one full-precision forward pass gathers, for each linear input, the mean |x| per channel and the
/// Gram matrix `G = Σ xᵀx / T`. Then, for each subset of linears that share an input — q/k/v (after
/// `input_layernorm`), o_proj (after v_proj), gate/up (after `post_attention_layernorm`), down_proj (after
/// up_proj) — a 20-point grid of scales `s = mean|x|^r` (r = i/20, clamped ≥ 1e-4, normalized by
/// `√(max s · min s)`) is searched for the one whose quantized weights `Q(W·diag(s))·diag(s)⁻¹` give the least
/// output error over every calibration token. The error of a linear is `Σ_n ΔW_n G ΔW_nᵀ` with
/// `ΔW = Q(W·s)/s − W`: exactly the mean squared error of its outputs, computed from the Gram matrix in
/// `N·K²` operations instead of a forward pass over `T` tokens (so every token counts and the search costs
/// a fraction of a forward pass). The best scale is folded exactly into the producer (RMSNorm weights, or
/// v_proj/up_proj rows and biases); with grouped-query attention the o_proj scales are shared by the query
/// heads of one KV head (their statistic averaged), so they fold into v_proj exactly.
///
/// Then the clipping search: for every group of every linear but q_proj and k_proj, the range is shrunk to
/// `(1 − i/20)·absmax`, i < 10, and the factor with the least partial-product error `δᵀ G_gg δ` over all
/// tokens is kept (llm-awq's `auto_clip`, exact instead of subsampled). The weights are quantized with the
/// chosen clipping; the next block's input is the block's full-precision output.
public struct AWQ: BlockAlgorithm {
    /// Grid points of the scale search (r = i/grid, i < grid).
    public var grid = 20
    /// Also divide by the weights' per-channel mean magnitude (`mean|x|^r / mean|w|^(1−r)`, AutoAWQ's
    /// `duo_scaling`).
    public var duoScaling = false
    /// Clipping search: shrink steps of 1/clipGrid, up to `maxShrink`; 0 disables it.
    public var clipGrid = 20
    public var maxShrink: Float = 0.5

    public init() {}

    public var name: String { "awq" }
    public var settings: JSONObject {
        JSONObject([("grid", .int(grid)), ("duo_scaling", .bool(duoScaling)), ("clip_grid", .int(clipGrid)),
                    ("max_shrink", .double(Double(maxShrink))), ("loss", "linear outputs, all tokens (Gram)")])
    }
    public var activationQuantization: ActivationQuantization? { nil }

    public func process(_ block: BlockWeights, plan: [String: QuantScheme], activations: CalibrationActivations,
                        log: (String) -> Void) throws -> [String: QuantizedWeight] {
        let c = block.config
        let inputs = Set(LinearInput.allCases.filter { $0.consumers.contains { plan[$0] != nil } })
        let stats = BlockStatistics(config: c, observed: inputs, gram: inputs)
        activations.forward(block, on: activations.hidden, observer: stats)
        var grams: [LinearInput: FloatBuffer] = [:]
        for i in inputs { grams[i] = stats[i]!.gramMatrix(scale: 1 / Float(max(1, stats[i]!.rows))) }

        // Scale search and folding, subset by subset.
        for input in LinearInput.allCases where inputs.contains(input) {
            let members = input.consumers.filter { plan[$0] != nil }
            let weights = members.map { block.linear($0)! }
            let schemes = members.map { plan[$0]! }
            let mean = stats[input]!.absoluteMean
            let gram = grams[input]!
            var statistic = mean
            var producerRows: [Int] = []
            if input == .attentionOutput {
                // One scale per value channel: average over the query heads that read it.
                let d = c.headDim, group = c.headCount / c.kvHeadCount
                producerRows = (0..<c.qDim).map { j in (j / d) / group * d + j % d }
                var sum = [Float](repeating: 0, count: c.kvDim)
                for j in 0..<c.qDim { sum[producerRows[j]] += mean[j] }
                statistic = producerRows.map { sum[$0] / Float(group) }
            } else if input == .mlpHidden {
                producerRows = Array(0..<c.intermediateSize)
            }
            let best = search(statistic: statistic, weights: weights, schemes: schemes, gram: gram)
            // Every consumer of the input is rescaled, also one kept in float (the fold must stay exact).
            let all = input.consumers.map { block.linear($0)! }
            switch input {
            case .attention: Smoothing.fold(best, intoNorm: block.inputNorm, consumers: all)
            case .mlp: Smoothing.fold(best, intoNorm: block.postAttentionNorm, consumers: all)
            case .attentionOutput:
                Smoothing.fold(best, intoProducer: block.linear("v_proj")!, bias: block.qkvBias.map { $0.pointer + c.qDim + c.kvDim },
                               producerRows: producerRows, consumers: all)
            case .mlpHidden:
                Smoothing.fold(best, intoProducer: block.linear("up_proj")!, bias: block.gateUpBias.map { $0.pointer + c.intermediateSize },
                               producerRows: producerRows, consumers: all)
            }
            // The inputs are now x / s: G becomes diag(1/s)·G·diag(1/s).
            let k = best.count
            for i in 0..<k { for j in 0..<k { gram.pointer[i * k + j] /= best[i] * best[j] } }
        }

        // Clipping search and quantization.
        var out: [String: QuantizedWeight] = [:]
        for input in LinearInput.allCases where inputs.contains(input) {
            for name in input.consumers {
                guard let scheme = plan[name], let w = block.linear(name) else { continue }
                let clip = clipGrid > 0 && name != "q_proj" && name != "k_proj" && scheme.granularity != .tensor
                    ? clipFactors(w, scheme: scheme, gram: grams[input]!) : nil
                out[name] = QuantizedWeight.quantize(w.pointer, rows: w.rows, columns: w.columns, scheme: scheme, clip: clip)
            }
        }
        return out
    }

    /// The grid search of one subset: the scales with the least total output error.
    func search(statistic: [Float], weights: [Matrix], schemes: [QuantScheme], gram: FloatBuffer) -> [Float] {
        let k = statistic.count
        var wmean = [Float](repeating: 1, count: k)
        if duoScaling {
            // mean over rows of |w| / max|w| of the row's group (AutoAWQ's w_mean).
            wmean = [Float](repeating: 0, count: k)
            var rows = 0
            for (w, s) in zip(weights, schemes) {
                let gl = s.granularity.groupLength(k: k)
                for r in 0..<w.rows {
                    let row = w.row(r)
                    var g = 0
                    while g < k {
                        let m = max(RTN.range(row + g, count: gl).absmax, 1e-12)
                        for j in g..<(g + gl) { wmean[j] += abs(row[j]) / m }
                        g += gl
                    }
                }
                rows += w.rows
            }
            for j in 0..<k { wmean[j] /= Float(rows) }
        }
        var best: (loss: Double, scales: [Float])?
        for i in 0..<grid {
            let r = Float(i) / Float(grid)
            var s = (0..<k).map { j in
                max(duoScaling ? powf(statistic[j], r) / max(powf(wmean[j], 1 - r), 1e-4) : powf(statistic[j], r), 1e-4)
            }
            let norm = (s.max()! * s.min()!).squareRoot()
            s = s.map { $0 / norm }
            var loss = 0.0
            for (w, scheme) in zip(weights, schemes) { loss += Self.outputError(w, scheme: scheme, scales: s, gram: gram) }
            if best == nil || loss < best!.loss { best = (loss, s) }
        }
        return best!.scales
    }

    /// `Σ_n ΔW_n G ΔW_nᵀ` for `ΔW = Q(W·diag(s))·diag(s)⁻¹ − W`: the summed squared output error per token.
    static func outputError(_ w: Matrix, scheme: QuantScheme, scales s: [Float], gram: FloatBuffer) -> Double {
        let n = w.rows, k = w.columns
        let scaled = Matrix(rows: n, columns: k)
        nonisolated(unsafe) let (src, dst) = (w.pointer, scaled.pointer)
        parallelFor((n + 63) / 64) { t in
            for r in (t * 64)..<min(n, (t + 1) * 64) {
                for j in 0..<k { dst[r * k + j] = src[r * k + j] * s[j] }
            }
        }
        let q = QuantizedWeight.quantize(scaled.pointer, rows: n, columns: k, scheme: scheme)
        q.dequantize(into: scaled.pointer)
        parallelFor((n + 63) / 64) { t in
            for r in (t * 64)..<min(n, (t + 1) * 64) {
                for j in 0..<k { dst[r * k + j] = dst[r * k + j] / s[j] - src[r * k + j] }
            }
        }
        return quadraticForm(scaled, gram: gram)
    }

    /// `Σ_n D_n G D_nᵀ` (rows summed in a fixed order).
    static func quadraticForm(_ d: Matrix, gram: FloatBuffer) -> Double {
        let n = d.rows, k = d.columns
        let m = Matrix(rows: n, columns: k)
        BLAS.linear(d.pointer, m: n, k: k, weight: gram.pointer, n: k, into: m.pointer)
        let blocks = (n + 63) / 64
        var partial = [Double](repeating: 0, count: blocks)
        partial.withUnsafeMutableBufferPointer { pb in
            nonisolated(unsafe) let (p, a, b) = (pb.baseAddress!, d.pointer, m.pointer)
            parallelFor(blocks) { t in
                var sum = 0.0
                for r in (t * 64)..<min(n, (t + 1) * 64) {
                    var acc: Float = 0
                    for j in 0..<k { acc += a[r * k + j] * b[r * k + j] }
                    sum += Double(acc)
                }
                p[t] = sum
            }
        }
        return partial.reduce(0, +)
    }

    /// `δᵀ G δ` for a `count × count` block `G` at `gram` with row stride `stride`.
    @inline(__always)
    static func groupQuadraticForm(_ delta: UnsafePointer<Float>, gram: UnsafePointer<Float>, stride: Int, count: Int) -> Float {
        var e: Float = 0
        let raw = UnsafeRawPointer(delta)
        for a in 0..<count {
            let row = UnsafeRawPointer(gram + a * stride)
            var acc = SIMD8<Float>()
            var b = 0
            while b + 8 <= count {
                acc.addProduct(row.loadUnaligned(fromByteOffset: 4 * b, as: SIMD8<Float>.self),
                               raw.loadUnaligned(fromByteOffset: 4 * b, as: SIMD8<Float>.self))
                b += 8
            }
            var sum = acc.sum()
            while b < count { sum += gram[a * stride + b] * delta[b]; b += 1 }
            e += sum * delta[a]
        }
        return e
    }

    /// The clipping factor of every (row, group): the shrink with the least `δᵀ G_gg δ`.
    func clipFactors(_ w: Matrix, scheme: QuantScheme, gram: FloatBuffer) -> [Float] {
        let n = w.rows, k = w.columns
        let gl = scheme.granularity.groupLength(k: k), gpr = k / gl
        var factors = [Float](repeating: 1, count: n * gpr)
        // The global scale of NVFP4 comes from the whole tensor and is not clipped.
        let global = scheme.format == .nvfp4 ? GroupCodec.nvfp4GlobalScale(absmax: RTN.range(w.pointer, count: n * k).absmax) : 1
        let codec = GroupCodec(scheme: scheme, globalScale: global)
        let steps = max(1, Int(maxShrink * Float(clipGrid)))
        let pool = ScratchPool(byteCount: gl * 9)
        factors.withUnsafeMutableBufferPointer { fb in
            nonisolated(unsafe) let (f, wp, g) = (fb.baseAddress!, w.pointer, gram.pointer)
            parallelFor((n + 7) / 8) { t in
                pool.withBuffer { raw in
                    let delta = raw.assumingMemoryBound(to: Float.self)
                    let codes = (raw + 8 * gl).assumingMemoryBound(to: UInt8.self)
                    for r in (t * 8)..<min(n, (t + 1) * 8) {
                        for grp in 0..<gpr {
                            let x = wp + r * k + grp * gl
                            let range = RTN.range(x, count: gl)
                            var bestError = Float.infinity, bestFactor: Float = 1
                            for i in 0..<steps {
                                let factor = 1 - Float(i) / Float(clipGrid)
                                let m = factor * range.absmax
                                let p = codec.parameters(minimum: max(range.minimum, -m), maximum: min(range.maximum, m), absmax: min(range.absmax, m))
                                codec.encode(x, count: gl, p, into: codes)
                                codec.decode(codes, count: gl, p, into: delta)
                                for j in 0..<gl { delta[j] -= x[j] }
                                // δᵀ G_gg δ with G_gg the group's diagonal block (gl is a multiple of 8 here).
                                let e = Self.groupQuadraticForm(delta, gram: g + grp * gl * k + grp * gl, stride: k, count: gl)
                                if e < bestError { bestError = e; bestFactor = factor }
                            }
                            f[r * gpr + grp] = bestFactor
                        }
                    }
                }
            }
        }
        return factors
    }
}

#if canImport(Glibc)
import Glibc
#endif
