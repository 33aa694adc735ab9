/// Sequences of a batch laid end to end: token `t` of sequence `s` is row `offsets[s] + t` of every
/// activation matrix; positions restart at 0 in each sequence.
public struct SequenceLayout: Sendable, Equatable {
    public let lengths: [Int]
    public let offsets: [Int]
    /// The position of every row within its sequence.
    public let positions: [Int]
    public var tokenCount: Int { (offsets.last ?? 0) + (lengths.last ?? 0) }
    public var longest: Int { lengths.max() ?? 0 }

    public init(lengths: [Int]) {
        self.lengths = lengths
        var o: [Int] = [], acc = 0
        for l in lengths { o.append(acc); acc += l }
        offsets = o
        positions = lengths.flatMap { 0..<$0 }
    }
}

/// Causal multi-head attention with grouped key/value heads and an optional sliding window, computed tile
/// by tile: a tile of queries multiplies only the keys it can see (half the products of a full matrix), the
/// query heads that share a key/value head are stacked into one product (K and V are packed once for all
/// of them), and the score tile is all the extra memory a worker needs.
enum Attention {
    static let tile = 64

    /// `context[row, h·d..<(h+1)·d] = softmax(q·kᵀ/√d + mask) · v` for every head `h`.
    /// - Parameters:
    ///   - qkv: `[tokens × (qDim + 2·kvDim)]`, q then k then v in every row, RoPE already applied.
    ///   - context: `[tokens × qDim]`, written.
    static func compute(qkv: Matrix, config: DecoderConfig, layout: SequenceLayout, window: Int?, into context: Matrix) {
        let heads = config.headCount, kvHeads = config.kvHeadCount, d = config.headDim
        let group = heads / kvHeads
        let ld = qkv.columns, qDim = config.qDim, kvDim = config.kvDim
        let scale = 1 / Float(d).squareRoot()
        struct Task { let sequence: Int; let kvHead: Int; let start: Int }
        var tasks: [Task] = []
        for s in layout.lengths.indices {
            for g in 0..<kvHeads {
                var t = 0
                while t < layout.lengths[s] { tasks.append(Task(sequence: s, kvHead: g, start: t)); t += tile }
            }
        }
        let longest = layout.longest
        let rowsPerTask = group * tile
        // Per worker: stacked queries and outputs (rows × d) and the scores (rows × longest).
        let pool = ScratchPool(byteCount: 4 * rowsPerTask * (2 * d + longest))
        nonisolated(unsafe) let (qkvp, out) = (qkv.pointer, context.pointer)
        parallelFor(tasks.count) { i in
            let task = tasks[i]
            let base = layout.offsets[task.sequence], length = layout.lengths[task.sequence]
            let i0 = task.start, i1 = min(length, task.start + tile), n = i1 - i0
            let first = { (row: Int) in window.map { max(0, row - $0 + 1) } ?? 0 }
            let j0 = first(i0), j1 = i1, span = j1 - j0
            let m = group * n
            let k = qkvp + (base + j0) * ld + qDim + task.kvHead * d
            let v = qkvp + (base + j0) * ld + qDim + kvDim + task.kvHead * d
            pool.withBuffer { raw in
                let q = raw.assumingMemoryBound(to: Float.self)
                let o = q + rowsPerTask * d
                let scores = o + rowsPerTask * d
                // Stack the group's query heads: row h·n + r is head (kvHead·group + h) of token i0 + r.
                for h in 0..<group {
                    let head = task.kvHead * group + h
                    for r in 0..<n { (q + (h * n + r) * d).update(from: qkvp + (base + i0 + r) * ld + head * d, count: d) }
                }
                BLAS.sgemm(transB: true, m: m, n: span, k: d, alpha: scale, a: q, lda: d, b: k, ldb: ld, c: scores, ldc: span)
                for row in 0..<m {
                    let token = i0 + row % n
                    let p = scores + row * span
                    let lo = first(token) - j0, hi = token - j0 + 1
                    for j in 0..<lo { p[j] = 0 }
                    Kernels.softmax(p + lo, count: hi - lo)
                    for j in hi..<span { p[j] = 0 }
                }
                BLAS.sgemm(m: m, n: d, k: span, a: scores, lda: span, b: v, ldb: ld, c: o, ldc: d)
                for h in 0..<group {
                    let head = task.kvHead * group + h
                    for r in 0..<n { (out + (base + i0 + r) * qDim + head * d).update(from: o + (h * n + r) * d, count: d) }
                }
            }
        }
    }
}
