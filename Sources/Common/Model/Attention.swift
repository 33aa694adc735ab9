/// Sequences of a batch laid end to end: token `t` of sequence `s` is row `offsets[s] + t` of every
/// activation matrix; positions restart at 0 in each sequence.
public struct SequenceLayout: Sendable, Equatable {
    public let lengths: [Int]
    public let offsets: [Int]
    public var tokenCount: Int { (offsets.last ?? 0) + (lengths.last ?? 0) }
    public var longest: Int { lengths.max() ?? 0 }

    public init(lengths: [Int]) {
        self.lengths = lengths
        var o: [Int] = [], acc = 0
        for l in lengths { o.append(acc); acc += l }
        offsets = o
    }

    /// The position of every row within its sequence.
    public var positions: [Int] { lengths.flatMap { 0..<$0 } }
}

/// Causal multi-head attention with grouped key/value heads and an optional sliding window, computed tile
/// by tile: a tile of queries multiplies only the keys it can see (half the products of a full matrix),
/// and the score tile (`tile × sequence`) is all the extra memory a worker needs.
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
        struct Task { let sequence: Int; let head: Int; let start: Int }
        var tasks: [Task] = []
        for s in layout.lengths.indices {
            for h in 0..<heads {
                var t = 0
                while t < layout.lengths[s] { tasks.append(Task(sequence: s, head: h, start: t)); t += tile }
            }
        }
        // Larger tiles first would balance better; the order is fixed so results never depend on scheduling.
        let longest = layout.longest
        let pool = ScratchPool(byteCount: tile * longest * 4)
        parallelFor(tasks.count) { i in
            let task = tasks[i]
            let base = layout.offsets[task.sequence], length = layout.lengths[task.sequence]
            let i0 = task.start, i1 = min(length, task.start + tile)
            let first = { (row: Int) in window.map { max(0, row - $0 + 1) } ?? 0 }
            let j0 = first(i0), j1 = i1
            let span = j1 - j0
            let kvHead = task.head / group
            let q = qkv.pointer + (base + i0) * ld + task.head * d
            let k = qkv.pointer + (base + j0) * ld + qDim + kvHead * d
            let v = qkv.pointer + (base + j0) * ld + qDim + kvDim + kvHead * d
            pool.withBuffer { raw in
                let scores = raw.assumingMemoryBound(to: Float.self)
                BLAS.sgemm(transB: true, m: i1 - i0, n: span, k: d, alpha: scale, a: q, lda: ld, b: k, ldb: ld,
                           c: scores, ldc: span)
                for r in 0..<(i1 - i0) {
                    let row = scores + r * span
                    let lo = first(i0 + r) - j0, hi = i0 + r - j0 + 1
                    for j in 0..<lo { row[j] = 0 }
                    Kernels.softmax(row + lo, count: hi - lo)
                    for j in hi..<span { row[j] = 0 }
                }
                BLAS.sgemm(m: i1 - i0, n: d, k: span, a: scores, lda: span, b: v, ldb: ld,
                           c: context.pointer + (base + i0) * qDim + task.head * d, ldc: qDim)
            }
        }
    }
}
