/// SVDQuant's run-time parts of one linear input (`y = Q_a(x / smooth)·Ŵᵀ + (x·downᵀ)·upᵀ`), shared by the
/// linears reading it (q/k/v, gate/up: one smooth, one `down`, their `up` rows fused like their weights).
public struct LowRankBranch: @unchecked Sendable {
    /// `[K]`.
    public let smooth: FloatBuffer
    /// `[rank, K]`, acting on the unsmoothed input.
    public let down: Matrix
    /// `[N, rank]` (fused rows).
    public let up: Matrix
    public var rank: Int { down.rows }

    public init(smooth: FloatBuffer, down: Matrix, up: Matrix) {
        self.smooth = smooth
        self.down = down
        self.up = up
    }

    /// Reads the branch of the linears `names` (full prefixes `model.layers.N.self_attn.q_proj`…) from `source`,
    /// or `nil` when the first has no `P.smooth`. Every one must then have all three parts, the same K and rank.
    static func load(source: any WeightSource, names: [String], k: Int) throws -> LowRankBranch? {
        guard let first = names.first, source.contains(first + ".smooth") else { return nil }
        func shape(_ name: String, _ expected: [Int?]) throws -> [Int] {
            let s = try source.shape(of: name)
            guard s.count == expected.count, zip(s, expected).allSatisfy({ $1 == nil || $0 == $1! }) else {
                throw ModelError.shapeMismatch(path: source.label, tensor: name, expected: expected.map { $0 ?? -1 }, found: s)
            }
            return s
        }
        _ = try shape(first + ".smooth", [k])
        // Smoothing without a branch (rank 0) is allowed.
        let rank = source.contains(first + ".lora_down") ? try shape(first + ".lora_down", [nil, k])[0] : 0
        let smooth = FloatBuffer(count: k)
        try source.readFloat32(first + ".smooth", rows: 0..<k, into: UnsafeMutableBufferPointer(start: smooth.pointer, count: k))
        let down = Matrix(rows: rank, columns: k)
        if rank > 0 { try source.readFloat32(first + ".lora_down", rows: 0..<rank, into: UnsafeMutableBufferPointer(start: down.pointer, count: rank * k)) }
        var rows: [Int] = []
        for n in names {
            _ = try shape(n + ".smooth", [k])
            guard rank > 0 else { rows.append(0); continue }
            _ = try shape(n + ".lora_down", [rank, k])
            rows.append(try shape(n + ".lora_up", [nil, rank])[0])
        }
        let up = Matrix(rows: rows.reduce(0, +), columns: rank)
        var offset = 0
        for (n, r) in zip(names, rows) where rank > 0 {
            try source.readFloat32(n + ".lora_up", rows: 0..<r, into: UnsafeMutableBufferPointer(start: up.pointer + offset * rank, count: r * rank))
            offset += r
        }
        return LowRankBranch(smooth: smooth, down: down, up: up)
    }

    /// `x·downᵀ` (`[rows, rank]`) of the unsmoothed `x`, then `x /= smooth` in place.
    func enter(_ x: UnsafeMutablePointer<Float>, rows: Int, columns k: Int) -> Matrix {
        let mid = Matrix(rows: rows, columns: rank)
        if rank > 0 { BLAS.linear(x, m: rows, k: k, weight: down.pointer, n: rank, into: mid.pointer) }
        nonisolated(unsafe) let (x, s) = (x, smooth.pointer)
        Kernels.parallelChunks(rows, minimum: 32) { range in
            for r in range {
                let row = x + r * k
                for j in 0..<k { row[j] /= s[j] }
            }
        }
        return mid
    }

    /// `y += mid·upᵀ` (`y` `[rows, up.rows]` with leading dimension `ldc`).
    func leave(_ mid: Matrix, into y: UnsafeMutablePointer<Float>, ldc: Int) {
        guard rank > 0 else { return }
        BLAS.linear(mid.pointer, m: mid.rows, k: rank, weight: up.pointer, n: up.rows, into: y, ldc: ldc, accumulate: true)
    }
}

extension BlockWeights {
    /// The branch of `input`, if any: `x·downᵀ` and `x /= smooth` (before the activations are quantized).
    func lowRankEnter(_ x: UnsafeMutablePointer<Float>, rows: Int, columns: Int, input: LinearInput) -> Matrix? {
        lowRank[input]?.enter(x, rows: rows, columns: columns)
    }

    /// Adds the branch's output (after the main product).
    func lowRankLeave(_ mid: Matrix?, input: LinearInput, into y: UnsafeMutablePointer<Float>, ldc: Int) {
        if let mid, let b = lowRank[input] { b.leave(mid, into: y, ldc: ldc) }
    }

    /// Reads the low-rank branches the source holds (SVDQuant checkpoints).
    static func loadLowRank(source: any WeightSource, config c: DecoderConfig, layer: Int) throws -> [LinearInput: LowRankBranch] {
        let p = prefix(layer)
        var out: [LinearInput: LowRankBranch] = [:]
        for input in LinearInput.allCases {
            let group = input == .attention || input == .attentionOutput ? "self_attn." : "mlp."
            let k = BlockStatistics.columns(of: input, c)
            if let b = try LowRankBranch.load(source: source, names: input.consumers.map { p + group + $0 }, k: k) { out[input] = b }
        }
        return out
    }
}
