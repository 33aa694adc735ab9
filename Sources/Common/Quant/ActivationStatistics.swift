/// Statistics of one activation (the input shared by the linears of a `LinearInput`) over calibration tokens:
/// per input channel the absolute maximum, the sum of absolute values and the sum of squares, and optionally
/// the Gram matrix `Σ xᵀx` (GPTQ's Hessian up to `2/n`, AWQ's output-error form).
///
/// Accumulation is deterministic whatever the thread count: channels are split by shape, each channel (each
/// Gram tile) sums its rows in order, and chunks are added in the order they are observed.
public final class InputStatistics: @unchecked Sendable {
    public let columns: Int
    /// Rows (tokens) seen.
    public private(set) var rows = 0
    public let absmax: FloatBuffer
    /// Σ|x| and Σx² per channel, in f64.
    public private(set) var absoluteSum: [Double]
    public private(set) var squareSum: [Double]
    /// `Σ xᵀx` (`columns × columns`), upper triangle accumulated; `gramMatrix()` gives it whole.
    let gram: FloatBuffer?

    /// Whether the per-channel statistics are accumulated.
    public let channels: Bool

    /// Accumulators for `columns` channels, with a Gram matrix when `gram`; `channels: false` skips the
    /// per-channel statistics (GPTQ needs only the Gram matrix).
    public init(columns: Int, gram: Bool, channels: Bool = true) {
        self.columns = columns
        self.channels = channels
        absmax = FloatBuffer(count: columns, zeroed: true)
        absoluteSum = [Double](repeating: 0, count: columns)
        squareSum = [Double](repeating: 0, count: columns)
        self.gram = gram ? FloatBuffer(count: columns * columns, zeroed: true) : nil
    }

    /// Channels per unit of parallel work for the per-channel sums.
    static let channelBlock = 64
    /// Tile of the Gram matrix per unit of parallel work (rounded so the tiles cover K evenly).
    static let gramTile = 256

    /// Adds `count` rows of `columns` values.
    public func add(_ x: UnsafePointer<Float>, count: Int) {
        guard count > 0 else { return }
        rows += count
        if channels { accumulateChannels(x, count: count) }
        if let g = gram { Self.accumulateGram(x, rows: count, columns: columns, into: g.pointer) }
    }

    /// Per-channel maximum, Σ|x| and Σx²: each block of 64 channels walks the rows in order, eight channels per
    /// SIMD lane group; f32 partial sums over 64 rows are carried into f64.
    func accumulateChannels(_ x: UnsafePointer<Float>, count: Int) {
        let k = columns
        let blocks = (k + Self.channelBlock - 1) / Self.channelBlock
        nonisolated(unsafe) let (xp, mx) = (x, absmax.pointer)
        var sums = [Double](repeating: 0, count: 2 * k)
        sums.withUnsafeMutableBufferPointer { sb in
            nonisolated(unsafe) let sp = sb.baseAddress!
            parallelFor(blocks) { b in
                let c0 = b * Self.channelBlock, c1 = min(k, c0 + Self.channelBlock)
                var c = c0
                while c + 8 <= c1 {
                    var m = UnsafeRawPointer(mx + c).loadUnaligned(as: SIMD8<Float>.self)
                    var a = SIMD8<Double>(), s = SIMD8<Double>()
                    var r = 0
                    while r < count {
                        var fa = SIMD8<Float>(), fs = SIMD8<Float>()
                        let r1 = min(count, r + 64)
                        for i in r..<r1 {
                            let v = UnsafeRawPointer(xp + i * k + c).loadUnaligned(as: SIMD8<Float>.self)
                            let av = v.replacing(with: -v, where: v .< 0)
                            m = m.replacing(with: av, where: av .> m)
                            fa += av
                            fs.addProduct(v, v)
                        }
                        a += SIMD8<Double>(fa)
                        s += SIMD8<Double>(fs)
                        r = r1
                    }
                    UnsafeMutableRawPointer(mx + c).storeBytes(of: m, as: SIMD8<Float>.self)
                    for l in 0..<8 { sp[c + l] = a[l]; sp[k + c + l] = s[l] }
                    c += 8
                }
                for c in c..<c1 {
                    var m = mx[c], a = 0.0, s = 0.0
                    for i in 0..<count {
                        let v = xp[i * k + c]
                        m = max(m, abs(v))
                        a += Double(abs(v))
                        s += Double(v * v)
                    }
                    mx[c] = m
                    sp[c] = a
                    sp[k + c] = s
                }
            }
        }
        for c in 0..<k {
            absoluteSum[c] += sums[c]
            squareSum[c] += sums[k + c]
        }
    }

    /// `G += xᵀx` over the upper-triangle tiles of G: one sgemm per tile above the diagonal, one ssyrk (upper
    /// triangle only) per diagonal tile.
    static func accumulateGram(_ x: UnsafePointer<Float>, rows: Int, columns k: Int, into g: UnsafeMutablePointer<Float>) {
        let tiles = max(1, (k + gramTile - 1) / gramTile)
        let width = (k + tiles - 1) / tiles
        var pairs: [(Int, Int)] = []
        for i in 0..<tiles { for j in i..<tiles { pairs.append((i, j)) } }
        nonisolated(unsafe) let (xp, gp) = (x, g)
        parallelFor(pairs.count) { t in
            let (i, j) = pairs[t]
            let i0 = i * width, i1 = min(k, i0 + width), j0 = j * width, j1 = min(k, j0 + width)
            guard i0 < i1, j0 < j1 else { return }
            if i == j {
                BLAS.ssyrkTransposed(n: i1 - i0, k: rows, a: xp + i0, lda: k, beta: 1, c: gp + i0 * k + i0, ldc: k)
            } else {
                BLAS.sgemm(transA: true, m: i1 - i0, n: j1 - j0, k: rows, a: xp + i0, lda: k, b: xp + j0, ldb: k,
                           beta: 1, c: gp + i0 * k + j0, ldc: k)
            }
        }
    }

    /// Mean |x| per channel.
    public var absoluteMean: [Float] { absoluteSum.map { Float($0 / Double(max(1, rows))) } }
    /// Mean x² per channel.
    public var squareMean: [Float] { squareSum.map { Float($0 / Double(max(1, rows))) } }

    /// `Σ xᵀx` whole (`columns × columns`, symmetric), or `nil` when not accumulated. `scale` multiplies it
    /// (GPTQ's Hessian is `2/n · Σ xᵀx`).
    public func gramMatrix(scale: Float = 1) -> FloatBuffer? {
        guard let g = gram else { return nil }
        let k = columns
        let out = FloatBuffer(count: k * k)
        for i in 0..<k {
            // The upper triangle was accumulated; the lower one is its mirror.
            for j in 0..<k {
                out.pointer[i * k + j] = g.pointer[i <= j ? i * k + j : j * k + i] * scale
            }
        }
        return out
    }

    /// GPTQ's Hessian `H = 2/n · Σ xᵀx`.
    public func hessian() -> FloatBuffer? { gramMatrix(scale: 2 / Float(max(1, rows))) }
}

/// The statistics of one decoder block's linear inputs (and of its keys and values), gathered by observing a
/// forward pass: what `qcalib` writes and the calibrated algorithms consume.
public final class BlockStatistics: BlockObserver, @unchecked Sendable {
    public let config: DecoderConfig
    public private(set) var inputs: [LinearInput: InputStatistics] = [:]
    /// Per-channel absolute maximum of the keys (after RoPE) and values, `kvDim` each, when asked.
    public let keyAbsmax: FloatBuffer?
    public let valueAbsmax: FloatBuffer?

    /// Accumulators for `observed` inputs, with Gram matrices for those in `gram`, and key/value maxima when
    /// `keysAndValues`.
    public init(config: DecoderConfig, observed: Set<LinearInput> = Set(LinearInput.allCases), gram: Set<LinearInput> = [],
                keysAndValues: Bool = false) {
        self.config = config
        for input in observed {
            inputs[input] = InputStatistics(columns: Self.columns(of: input, config), gram: gram.contains(input))
        }
        keyAbsmax = keysAndValues ? FloatBuffer(count: config.kvDim, zeroed: true) : nil
        valueAbsmax = keysAndValues ? FloatBuffer(count: config.kvDim, zeroed: true) : nil
    }

    /// In-features of the linears reading `input`.
    public static func columns(of input: LinearInput, _ c: DecoderConfig) -> Int {
        switch input {
        case .attention, .mlp: c.hiddenSize
        case .attentionOutput: c.qDim
        case .mlpHidden: c.intermediateSize
        }
    }

    public subscript(_ input: LinearInput) -> InputStatistics? { inputs[input] }

    public func observe(_ input: LinearInput, layer: Int, rows: Range<Int>, values: UnsafePointer<Float>, columns: Int) {
        inputs[input]?.add(values, count: rows.count)
    }

    public func observeKeysAndValues(layer: Int, rows: Range<Int>, qkv: UnsafePointer<Float>, stride: Int, qDim: Int, kvDim: Int) {
        guard let km = keyAbsmax?.pointer, let vm = valueAbsmax?.pointer else { return }
        for r in 0..<rows.count {
            let row = qkv + r * stride
            for c in 0..<kvDim {
                km[c] = max(km[c], abs(row[qDim + c]))
                vm[c] = max(vm[c], abs(row[qDim + kvDim + c]))
            }
        }
    }
}
