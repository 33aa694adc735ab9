/// QoQ, the W4A8KV4 recipe of QServe (arXiv 2405.04532 §4; ../shared/specs/algorithms.md §4.7–4.8), block by
/// block. One full-precision forward of the block over the calibration tokens gathers the post-RoPE key maxima
/// and the per-channel maxima of o_proj's and down_proj's inputs; then, on the block's f32 weights, every
/// transform exact in real arithmetic:
///
/// 1. **SmoothAttention**: `λ_c = max|K_c|^α` (α = 0.5) per key channel, the channels `i` and `i + d/2` of a
///    head (rotated together by RoPE) sharing the larger; q_proj rows (and bias) of every query head of the KV
///    group `*= λ`, k_proj rows (and bias) `/= λ`, so `q·k` is unchanged and the keys the KV cache stores lose
///    their outlier channels. With per-head q/k norms (Qwen3), which normalize the projections, λ is shared by
///    all heads (the maximum over KV heads) and folded into `q_norm *= λ`, `k_norm /= λ` instead.
/// 2. **Reordering** of input channels by descending `max|x|` so outlier channels share quantization groups:
///    down_proj's columns with gate_proj/up_proj rows (and biases) permuted alike; o_proj's columns within each
///    head, one order per KV group (the maximum over its query heads), with v_proj's rows of that head. (With a
///    group as long as a head or longer the o_proj order changes nothing the quantizer sees.)
/// 3. **down_proj smoothing**: `s_j = max|x_j|^α / max|W_:,j|^β` (α 0.3, β 0.7 for groups; 0.1/0.9 per
///    channel) clamped to [1e-5, 1e5]: down_proj columns `*= s`, up_proj rows (and bias) `/= s`.
/// 4. **GPTQ** (`GPTQ`, true-sequential, the quantized block's output passed on) on the recipe's grid: QServe's
///    progressive int4 g128 (`int4:g128:asym:prog`) or int4 per channel.
///
/// The output records int8 per-token dynamic activations (A8) and, through qquant, the KV4 cache; qeval
/// simulates both. The residual-stream rotation QoQ starts with is not part of this algorithm yet.
public struct QoQ: BlockAlgorithm {
    public var gptq: GPTQSolver.Settings
    /// SmoothAttention's exponent (0 turns it off).
    public var attentionAlpha: Float = 0.5
    /// down_proj smoothing exponents (`alpha` 0 and `beta` 0 turn it off).
    public var downAlpha: Float
    public var downBeta: Float
    /// Reorder the input channels of o_proj and down_proj.
    public var reorder = true
    /// Activation bits recorded for run time.
    public var activationBits = 8

    /// The g128 recipe's settings, or the per-channel recipe's (`perChannel`: down smoothing α 0.1, β 0.9).
    public init(gptq: GPTQSolver.Settings = GPTQSolver.Settings(dampening: 0.01, blockSize: 128), perChannel: Bool = false) {
        self.gptq = gptq
        downAlpha = perChannel ? 0.1 : 0.3
        downBeta = perChannel ? 0.9 : 0.7
    }

    public var name: String { "qoq" }
    public var settings: JSONObject {
        JSONObject([
            ("smooth_attention_alpha", .double(Double(attentionAlpha))),
            ("reorder", .array(reorder ? ["o_proj", "down_proj"] : [])),
            ("down_smoothing", .object(JSONObject([("alpha", .double(Double(downAlpha))), ("beta", .double(Double(downBeta)))]))),
            ("gptq", .object(GPTQ(solver: gptq).settings)),
            ("rotation", .null),
        ])
    }
    public var activationQuantization: ActivationQuantization? { ActivationQuantization(bits: activationBits) }

    public func process(_ block: BlockWeights, plan: [String: QuantScheme], activations: CalibrationActivations,
                        log: (String) -> Void) throws -> [String: QuantizedWeight] {
        let stats = BlockStatistics(config: block.config, observed: [.attentionOutput, .mlpHidden], keysAndValues: true)
        activations.forward(block, on: activations.copyHidden(), observer: stats)
        transform(block, keyAbsmax: stats.keyAbsmax!.array, outputAbsmax: stats[.attentionOutput]!.absmax.array,
                  downAbsmax: stats[.mlpHidden]!.absmax.array)
        return try GPTQ(solver: gptq).process(block, plan: plan, activations: activations, log: log)
    }

    /// Applies SmoothAttention, the reordering and the down_proj smoothing to `block` from its statistics: the
    /// post-RoPE key maxima (`kvDim`), and the per-channel input maxima of o_proj (`qDim`) and down_proj
    /// (`intermediate`). The block's float function is unchanged.
    public func transform(_ block: BlockWeights, keyAbsmax: [Float], outputAbsmax: [Float], downAbsmax: [Float]) {
        if attentionAlpha > 0 { smoothAttention(block, keyAbsmax: keyAbsmax) }
        var down = downAbsmax
        if reorder {
            reorderOutput(block, absmax: outputAbsmax)
            let order = Self.descending(downAbsmax)
            Self.permuteMLP(block, order: order)
            down = order.map { downAbsmax[$0] }
        }
        if downAlpha != 0 || downBeta != 0 { smoothDown(block, absmax: down) }
    }

    /// λ per key channel (`kvDim`, or `headDim` shared by every head when the block has q/k norms).
    public func attentionScales(_ c: DecoderConfig, keyAbsmax: [Float]) -> [Float] {
        let d = c.headDim, half = d / 2
        var m = keyAbsmax
        if c.qkNorm {
            m = (0..<d).map { i in (0..<c.kvHeadCount).map { keyAbsmax[$0 * d + i] }.max()! }
        }
        for h in 0..<(m.count / d) {
            for i in 0..<half {
                let v = max(m[h * d + i], m[h * d + half + i])
                m[h * d + i] = v
                m[h * d + half + i] = v
            }
        }
        return m.map { min(max(powf(max($0, 1e-5), attentionAlpha), 1e-5), 1e5) }
    }

    func smoothAttention(_ block: BlockWeights, keyAbsmax: [Float]) {
        let c = block.config, d = c.headDim, group = c.headCount / c.kvHeadCount
        let lambda = attentionScales(c, keyAbsmax: keyAbsmax)
        if let qn = block.qNorm, let kn = block.kNorm {
            for i in 0..<d {
                qn[i] *= lambda[i]
                kn[i] /= lambda[i]
            }
            return
        }
        let q = block.linear("q_proj")!, k = block.linear("k_proj")!
        for qh in 0..<c.headCount {
            let h = qh / group
            for i in 0..<d {
                let s = lambda[h * d + i], row = q.row(qh * d + i)
                for j in 0..<q.columns { row[j] *= s }
                if let b = block.qkvBias { b[qh * d + i] *= s }
            }
        }
        for j in 0..<c.kvDim {
            let s = lambda[j], row = k.row(j)
            for i in 0..<k.columns { row[i] /= s }
            if let b = block.qkvBias { b[c.qDim + j] /= s }
        }
    }

    /// Within each head, o_proj's columns (and v_proj's rows) by descending input maximum, one order per KV group.
    func reorderOutput(_ block: BlockWeights, absmax: [Float]) {
        let c = block.config, d = c.headDim, group = c.headCount / c.kvHeadCount
        let v = block.linear("v_proj")!, o = block.output
        for h in 0..<c.kvHeadCount {
            let metric = (0..<d).map { i in (0..<group).map { absmax[((h * group) + $0) * d + i] }.max()! }
            let order = Self.descending(metric)
            Self.permuteRows(v, rows: (h * d)..<((h + 1) * d), order: order, bias: block.qkvBias.map { $0.pointer + c.qDim + c.kvDim + h * d })
            for qh in (h * group)..<((h + 1) * group) { Self.permuteColumns(o, columns: (qh * d)..<((qh + 1) * d), order: order) }
        }
    }

    /// down_proj's columns, gate_proj's and up_proj's rows (and biases) in `order`.
    static func permuteMLP(_ block: BlockWeights, order: [Int]) {
        let i = block.config.intermediateSize
        permuteRows(block.linear("gate_proj")!, rows: 0..<i, order: order, bias: block.gateUpBias?.pointer)
        permuteRows(block.linear("up_proj")!, rows: 0..<i, order: order, bias: block.gateUpBias.map { $0.pointer + i })
        permuteColumns(block.down, columns: 0..<i, order: order)
    }

    /// down_proj columns `*= s`, up_proj rows (and bias) `/= s`.
    func smoothDown(_ block: BlockWeights, absmax: [Float]) {
        let i = block.config.intermediateSize, down = block.down, up = block.linear("up_proj")!
        var wmax = [Float](repeating: 0, count: i)
        for r in 0..<down.rows {
            let row = down.row(r)
            for j in 0..<i { wmax[j] = max(wmax[j], abs(row[j])) }
        }
        let s = (0..<i).map { j in
            min(max(powf(max(absmax[j], 1e-5), downAlpha) / powf(max(wmax[j], 1e-5), downBeta), 1e-5), 1e5)
        }
        Smoothing.fold(s, intoProducer: up, bias: block.gateUpBias.map { $0.pointer + i }, producerRows: Array(0..<i), consumers: [down])
    }

    /// Indices by descending value (ties by index: deterministic).
    static func descending(_ v: [Float]) -> [Int] {
        Array(v.indices).sorted { v[$0] != v[$1] ? v[$0] > v[$1] : $0 < $1 }
    }

    /// Rows `rows` of `m` (and of `bias`, indexed from the range's start) become rows `rows.lowerBound + order[j]`.
    static func permuteRows(_ m: Matrix, rows: Range<Int>, order: [Int], bias: UnsafeMutablePointer<Float>?) {
        let k = m.columns
        let copy = [Float](UnsafeBufferPointer(start: m.row(rows.lowerBound), count: rows.count * k))
        copy.withUnsafeBufferPointer { c in
            for (j, src) in order.enumerated() { m.row(rows.lowerBound + j).update(from: c.baseAddress! + src * k, count: k) }
        }
        if let bias {
            let b = (0..<rows.count).map { bias[$0] }
            for (j, src) in order.enumerated() { bias[j] = b[src] }
        }
    }

    /// Columns `columns` of every row of `m` become columns `columns.lowerBound + order[j]`.
    static func permuteColumns(_ m: Matrix, columns: Range<Int>, order: [Int]) {
        var tmp = [Float](repeating: 0, count: columns.count)
        for r in 0..<m.rows {
            let row = m.row(r) + columns.lowerBound
            for (j, src) in order.enumerated() { tmp[j] = row[src] }
            for j in 0..<columns.count { row[j] = tmp[j] }
        }
    }
}

#if canImport(Glibc)
import Glibc
#endif
