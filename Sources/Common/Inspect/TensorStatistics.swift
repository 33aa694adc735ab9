import Dispatch

/// Summary statistics of one tensor's values, computed in one streaming pass.
public struct TensorStatistics: Sendable, Equatable {
    public var count = 0
    public var nanCount = 0
    public var infCount = 0
    public var zeroCount = 0
    public var min = Float.infinity
    public var max = -Float.infinity
    public var mean = 0.0
    public var std = 0.0
    public var absMax: Float = 0
    /// Excess kurtosis (0 for a normal distribution; large for heavy tails), over finite values.
    public var kurtosis = 0.0
    /// The input channels (last dimension) with the largest absolute values, most extreme first, with
    /// their absmax and its ratio to the median channel absmax. Only for tensors of rank ≥ 2.
    public var outlierChannels: [OutlierChannel] = []
    /// Counts per bin over [min, max] when a histogram was asked for.
    public var histogram: [Int]?

    public init() {}

    /// Finite values counted.
    public var finiteCount: Int { count - nanCount - infCount }
}

/// One outlier input channel.
public struct OutlierChannel: Sendable, Equatable {
    public var channel: Int
    public var absMax: Float
    /// absMax divided by the median of all channels' absmax.
    public var ratio: Float
}

/// Streaming computation of `TensorStatistics`: chunks of whole rows are read with pread(2) into a few reused
/// buffers, processed in parallel with SIMD accumulators and merged in chunk order, so the result does not
/// depend on the thread count and resident memory stays bounded (about 30 MB for a 16 GB checkpoint).
public enum StatisticsEngine {
    /// Elements per chunk (rounded to whole rows when rows are shorter).
    static let chunkElements = 1 << 20
    /// Elements read and processed at once inside a chunk (a multiple of every decode granule). Measured on a
    /// 4.9 GB bf16 shard: 2^16 → 4.9 GB/s, 2^17 → 5.6, 2^18 → 6.3, 2^20 → 7.4 (fewer syscalls win over L2 fit).
    static let subChunkElements = 1 << 20
    /// Histogram bins when one is asked for.
    public static let histogramBins = 32

    /// Computes the statistics of `tensor` in `checkpoint`, reading it chunk by chunk with pread(2).
    /// - Parameters:
    ///   - histogram: also count values into `histogramBins` bins over [min, max] (a second pass).
    ///   - outliers: how many outlier channels to report.
    public static func compute(_ tensor: CheckpointTensor, in checkpoint: Checkpoint, histogram: Bool = false,
                               outliers: Int = 3) throws -> TensorStatistics {
        let source = ByteSource(file: checkpoint.files[tensor.fileIndex], range: tensor.fileRange)
        return try compute(source: source, encoding: tensor.encoding, shape: tensor.shape, histogram: histogram, outliers: outliers)
    }

    /// Statistics of several tensors, several at a time (each also splits itself into parallel chunks), in the
    /// order given: small tensors, one chunk each, would otherwise leave a core idle.
    public static func compute(_ tensors: [CheckpointTensor], in checkpoint: Checkpoint, histogram: Bool = false,
                               outliers: Int = 3, progress: Progress? = nil) throws -> [TensorStatistics] {
        var out = [TensorStatistics](repeating: TensorStatistics(), count: tensors.count)
        let lock = Lock()
        try out.withUnsafeMutableBufferPointer { buf in
            try parallelFor(tensors.count) { i in
                buf[i] = try compute(tensors[i], in: checkpoint, histogram: histogram, outliers: outliers)
                lock.withLock { progress?.advance(tensors[i].byteCount) }
            }
        }
        return out
    }

    /// Computes statistics of raw `data` holding a tensor of `encoding` and `shape`.
    public static func compute(data: UnsafeRawBufferPointer, encoding: TensorEncoding, shape: [Int], histogram: Bool = false,
                               outliers: Int = 3) throws -> TensorStatistics {
        try compute(source: ByteSource(memory: data), encoding: encoding, shape: shape, histogram: histogram, outliers: outliers)
    }

    static func compute(source: ByteSource, encoding: TensorEncoding, shape: [Int], histogram: Bool, outliers: Int) throws -> TensorStatistics {
        let n = elementCount(shape) ?? 0
        var result = TensorStatistics()
        guard n > 0, encoding.canDecode else { return result }
        let rowLength = shape.count >= 2 ? shape[shape.count - 1] : n
        let granule = encoding.decodeGranule
        // Rows that do not start on a decode granule (an F4 row of odd length, say) can still be chunked by
        // whole rows when the chunk holds a multiple of the granule; a single such row longer than a chunk
        // cannot, and then the tensor is summarized without per-channel maxima.
        let perChannel = shape.count >= 2 && rowLength > 1 && (rowLength % granule == 0 || rowLength <= chunkElements)
        // Chunks of whole rows (and whole granules) when rows are short, otherwise granule-aligned pieces of a row.
        let chunk: Int
        if perChannel, rowLength <= chunkElements {
            let step = granule / gcd(rowLength, granule)  // rows per granule-aligned group
            chunk = Swift.max(step, chunkElements / rowLength / step * step) * rowLength
        } else {
            chunk = Swift.max(granule, chunkElements / granule * granule)
        }
        let chunks = (n + chunk - 1) / chunk
        let shift = try source.with(0..<encoding.byteCount(elements: granule)) { try firstValue($0, encoding: encoding) }
        var partials = [Partial?](repeating: nil, count: chunks)
        try partials.withUnsafeMutableBufferPointer { out in
            try parallelFor(chunks) { c in
                let start = c * chunk
                let count = Swift.min(chunk, n - start)
                var p = Partial(channels: perChannel ? rowLength : 0)
                // Sub-chunks small enough that a read lands in L2 and the kernel finds it there.
                var s = start
                while s < start + count {
                    let m = Swift.min(subChunkElements, start + count - s)
                    let byteStart = encoding.byteCount(elements: s)
                    try source.with(byteStart..<byteStart + encoding.byteCount(elements: m)) { bytes in
                        try accumulate(bytes, encoding: encoding, count: m, firstColumn: perChannel ? s % rowLength : 0,
                                       rowLength: perChannel ? rowLength : 0, shift: shift, into: &p)
                    }
                    s += m
                }
                out[c] = p
            }
        }
        var total = Partial(channels: perChannel ? rowLength : 0)
        for p in partials { total.merge(p!) }
        result = total.finish(count: n, shift: shift, outliers: outliers)
        if histogram { result.histogram = try histogramOf(source, encoding: encoding, count: n, min: result.min, max: result.max) }
        return result
    }

    /// The first finite element, used as the shift that keeps the moment sums well conditioned.
    static func firstValue(_ data: UnsafeRawBufferPointer, encoding: TensorEncoding) throws -> Double {
        let g = encoding.decodeGranule
        var buf = [Float](repeating: 0, count: g)
        try buf.withUnsafeMutableBufferPointer { try encoding.decode(UnsafeRawBufferPointer(rebasing: data[0..<encoding.byteCount(elements: g)]), into: $0) }
        return buf.first(where: { $0.isFinite }).map(Double.init) ?? 0
    }

    /// Per-chunk sums.
    struct Partial {
        var s1 = 0.0, s2 = 0.0, s3 = 0.0, s4 = 0.0
        var finite = 0
        var nan = 0, inf = 0, zeros = 0
        var min = Float.infinity, max = -Float.infinity
        var columnAbsMax: [Float]

        init(channels: Int) { columnAbsMax = [Float](repeating: 0, count: channels) }

        mutating func merge(_ o: Partial) {
            s1 += o.s1; s2 += o.s2; s3 += o.s3; s4 += o.s4
            finite += o.finite; nan += o.nan; inf += o.inf; zeros += o.zeros
            min = Swift.min(min, o.min); max = Swift.max(max, o.max)
            for i in columnAbsMax.indices { columnAbsMax[i] = Swift.max(columnAbsMax[i], o.columnAbsMax[i]) }
        }

        func finish(count: Int, shift: Double, outliers: Int) -> TensorStatistics {
            var r = TensorStatistics()
            r.count = count
            r.nanCount = nan
            r.infCount = inf
            r.zeroCount = zeros
            r.min = finite > 0 ? min : .nan
            r.max = finite > 0 ? max : .nan
            r.absMax = finite > 0 ? Swift.max(abs(min), abs(max)) : .nan
            guard finite > 0 else { r.mean = .nan; r.std = .nan; r.kurtosis = .nan; return r }
            let n = Double(finite)
            let d = s1 / n
            let m2 = Swift.max(0, s2 / n - d * d)
            let m4 = s4 / n - 4 * d * s3 / n + 6 * d * d * s2 / n - 3 * d * d * d * d
            r.mean = shift + d
            r.std = m2.squareRoot()
            r.kurtosis = m2 > 0 ? m4 / (m2 * m2) - 3 : 0
            if !columnAbsMax.isEmpty, outliers > 0 {
                let sorted = columnAbsMax.sorted()
                let median = sorted[sorted.count / 2]
                let top = columnAbsMax.indices.sorted { (columnAbsMax[$0], -$0) > (columnAbsMax[$1], -$1) }.prefix(outliers)
                r.outlierChannels = top.map {
                    OutlierChannel(channel: $0, absMax: columnAbsMax[$0], ratio: median > 0 ? columnAbsMax[$0] / median : .infinity)
                }
            }
            return r
        }
    }

    /// Accumulates `count` elements starting at column `firstColumn` of rows of `rowLength` (0: no channels).
    static func accumulate(_ bytes: UnsafeRawBufferPointer, encoding: TensorEncoding, count: Int, firstColumn: Int,
                           rowLength: Int, shift: Double, into p: inout Partial) throws {
        switch encoding {
        case .dtype(.f32):
            run(F32Loader(base: bytes.baseAddress!), count: count, firstColumn: firstColumn, rowLength: rowLength, shift: Float(shift), into: &p)
        case .dtype(.bf16) where rowLength % 2 == 0 && firstColumn % 2 == 0:
            run(BF16Loader(base: bytes.baseAddress!), count: count, firstColumn: firstColumn, rowLength: rowLength, shift: Float(shift), into: &p)
        case .dtype(.f16):
            run(F16Loader(base: bytes.baseAddress!), count: count, firstColumn: firstColumn, rowLength: rowLength, shift: Float(shift), into: &p)
        default:
            var buf = [Float](repeating: 0, count: count)
            try buf.withUnsafeMutableBufferPointer { b in
                try encoding.decode(bytes, into: b)
                run(F32Loader(base: UnsafeRawPointer(b.baseAddress!)), count: count, firstColumn: firstColumn,
                    rowLength: rowLength, shift: Float(shift), into: &p)
            }
        }
    }

    /// The SIMD kernel: walks row segments so that column indices stay contiguous.
    @inline(__always)
    static func run<L: Loader>(_ loader: L, count: Int, firstColumn: Int, rowLength: Int, shift: Float, into p: inout Partial) {
        var i = 0
        var column = firstColumn
        var columnAbsMax = p.columnAbsMax
        p.columnAbsMax = []
        // Interleaving loaders deliver even and odd elements apart; their column maxima are kept apart too.
        let half = L.interleaved && rowLength > 0 ? (rowLength + 1) / 2 : 0
        var evenOdd = [Float](repeating: 0, count: 2 * half)
        columnAbsMax.withUnsafeMutableBufferPointer { cols in
            evenOdd.withUnsafeMutableBufferPointer { eo in
                while i < count {
                    let len = rowLength > 0 ? Swift.min(count - i, rowLength - column) : count - i
                    var a: UnsafeMutablePointer<Float>?
                    var b: UnsafeMutablePointer<Float>?
                    if rowLength > 0 {
                        if L.interleaved {
                            a = eo.baseAddress! + column / 2
                            b = eo.baseAddress! + half + column / 2
                        } else {
                            a = cols.baseAddress! + column
                            b = a! + 8
                        }
                    }
                    segment(loader, start: i, length: len, columnsA: a, columnsB: b, shift: shift, into: &p)
                    i += len
                    column = 0
                }
            }
        }
        if half > 0 {
            for c in 0..<rowLength { columnAbsMax[c] = Swift.max(columnAbsMax[c], evenOdd[c % 2 == 0 ? c / 2 : half + c / 2]) }
        }
        p.columnAbsMax = columnAbsMax
    }

    /// Accumulates elements [start, start+length) of one row segment. Column maxima go to `columnsA`/`columnsB`:
    /// for natural loaders A holds the segment's columns (B = A + 8); for interleaving loaders A holds its even
    /// columns and B its odd ones, both indexed by column / 2. Segments of interleaving loaders start at an even column.
    @inline(__always)
    static func segment<L: Loader>(_ loader: L, start: Int, length: Int, columnsA: UnsafeMutablePointer<Float>?,
                                   columnsB: UnsafeMutablePointer<Float>?, shift: Float, into p: inout Partial) {
        let block = 4096
        var b = 0
        let mask = SIMD8<UInt32>(repeating: 0x7FFF_FFFF)
        while b < length {
            let len = Swift.min(block, length - b)
            var s1 = SIMD8<Float>(), s2 = SIMD8<Float>(), s3 = SIMD8<Float>(), s4 = SIMD8<Float>()
            var mn = SIMD8<Float>(repeating: .infinity), mx = SIMD8<Float>(repeating: -.infinity)
            var zeros = SIMD8<Int32>()
            let shiftV = SIMD8<Float>(repeating: shift)
            var j = 0
            while j + 16 <= len {
                let (x, y) = loader.load16(start + b + j)
                // Both vectors, written out: a loop over an array literal would allocate.
                var d = x - shiftV
                var d2 = d * d
                s1 += d; s2 += d2; s3.addProduct(d2, d); s4.addProduct(d2, d2)
                mn.replace(with: x, where: x .< mn)
                mx.replace(with: x, where: x .> mx)
                zeros &-= unsafeBitCast(x .== 0, to: SIMD8<Int32>.self)
                d = y - shiftV
                d2 = d * d
                s1 += d; s2 += d2; s3.addProduct(d2, d); s4.addProduct(d2, d2)
                mn.replace(with: y, where: y .< mn)
                mx.replace(with: y, where: y .> mx)
                zeros &-= unsafeBitCast(y .== 0, to: SIMD8<Int32>.self)
                if let columnsA, let columnsB {
                    let off = L.interleaved ? (b + j) / 2 : b + j
                    let pa = UnsafeMutableRawPointer(columnsA + off), pb = UnsafeMutableRawPointer(columnsB + off)
                    var ca = pa.loadUnaligned(as: SIMD8<Float>.self), cb = pb.loadUnaligned(as: SIMD8<Float>.self)
                    let ax = unsafeBitCast(unsafeBitCast(x, to: SIMD8<UInt32>.self) & mask, to: SIMD8<Float>.self)
                    let ay = unsafeBitCast(unsafeBitCast(y, to: SIMD8<UInt32>.self) & mask, to: SIMD8<Float>.self)
                    ca.replace(with: ax, where: ax .> ca)
                    cb.replace(with: ay, where: ay .> cb)
                    pa.storeBytes(of: ca, as: SIMD8<Float>.self)
                    pb.storeBytes(of: cb, as: SIMD8<Float>.self)
                }
                j += 16
            }
            var t1 = Double(s1.sum()), t2 = Double(s2.sum()), t3 = Double(s3.sum()), t4 = Double(s4.sum())
            if t1.isFinite && t2.isFinite && t3.isFinite && t4.isFinite {
                p.s1 += t1; p.s2 += t2; p.s3 += t3; p.s4 += t4
                p.finite += j
                p.zeros += Int(zeros.wrappedSum())
                p.min = Swift.min(p.min, mn.min())
                p.max = Swift.max(p.max, mx.max())
            } else {
                j = 0  // a NaN, an infinity or an f32 overflow: redo this block in double precision
            }
            t1 = 0; t2 = 0; t3 = 0; t4 = 0
            while j < len {
                let x = loader.load1(start + b + j)
                if let columnsA, let columnsB, !x.isNaN {
                    let k = b + j
                    let slot: UnsafeMutablePointer<Float>
                    if L.interleaved {
                        slot = (k % 2 == 0 ? columnsA : columnsB) + k / 2
                    } else {
                        slot = columnsA + k
                    }
                    slot.pointee = Swift.max(slot.pointee, abs(x))
                }
                if x.isNaN {
                    p.nan += 1
                } else if x.isInfinite {
                    p.inf += 1
                } else {
                    let d = Double(x) - Double(shift)
                    t1 += d; t2 += d * d; t3 += d * d * d; t4 += d * d * d * d
                    p.finite += 1
                    if x == 0 { p.zeros += 1 }
                    p.min = Swift.min(p.min, x)
                    p.max = Swift.max(p.max, x)
                }
                j += 1
            }
            p.s1 += t1; p.s2 += t2; p.s3 += t3; p.s4 += t4
            b += len
        }
    }

    /// Counts values into bins over [lo, hi] (a second streaming pass).
    static func histogramOf(_ source: ByteSource, encoding: TensorEncoding, count n: Int, min lo: Float, max hi: Float) throws -> [Int] {
        let bins = histogramBins
        guard lo.isFinite, hi.isFinite else { return [Int](repeating: 0, count: bins) }
        let granule = encoding.decodeGranule
        let chunk = Swift.max(granule, chunkElements / granule * granule)
        let chunks = (n + chunk - 1) / chunk
        var partial = [[Int]](repeating: [], count: chunks)
        let scale = hi > lo ? Float(bins) / (hi - lo) : 0
        try partial.withUnsafeMutableBufferPointer { out in
            try parallelFor(chunks) { c in
                let start = c * chunk
                let count = Swift.min(chunk, n - start)
                var counts = [Int](repeating: 0, count: bins)
                var buf = [Float](repeating: 0, count: count)
                let byteStart = encoding.byteCount(elements: start)
                try source.with(byteStart..<byteStart + encoding.byteCount(elements: count)) { bytes in
                    try buf.withUnsafeMutableBufferPointer { try encoding.decode(bytes, into: $0) }
                }
                for x in buf where x.isFinite {
                    counts[Swift.min(bins - 1, Int((x - lo) * scale))] += 1
                }
                out[c] = counts
            }
        }
        var total = [Int](repeating: 0, count: bins)
        for p in partial { for i in 0..<bins { total[i] += p[i] } }
        return total
    }
}

/// Reads elements of one stored type as `Float`, 16 at a time as two vectors.
protocol Loader {
    /// Elements i..<i+16: the first eight and the last eight, or (interleaved) the even and the odd ones.
    func load16(_ i: Int) -> (SIMD8<Float>, SIMD8<Float>)
    func load1(_ i: Int) -> Float
    /// Whether `load16` returns even- and odd-indexed elements rather than two halves.
    static var interleaved: Bool { get }
}

struct F32Loader: Loader {
    let base: UnsafeRawPointer
    static var interleaved: Bool { false }
    @inline(__always) func load16(_ i: Int) -> (SIMD8<Float>, SIMD8<Float>) {
        (base.loadUnaligned(fromByteOffset: 4 * i, as: SIMD8<Float>.self), base.loadUnaligned(fromByteOffset: 4 * i + 32, as: SIMD8<Float>.self))
    }
    @inline(__always) func load1(_ i: Int) -> Float { base.loadUnaligned(fromByteOffset: 4 * i, as: Float.self) }
}

/// bf16 pairs read as one 32-bit word: the even element is the low half (<< 16), the odd one the high half.
struct BF16Loader: Loader {
    let base: UnsafeRawPointer
    static var interleaved: Bool { true }
    @inline(__always) func load16(_ i: Int) -> (SIMD8<Float>, SIMD8<Float>) {
        let w = base.loadUnaligned(fromByteOffset: 2 * i, as: SIMD8<UInt32>.self)
        return (unsafeBitCast(w &<< 16, to: SIMD8<Float>.self), unsafeBitCast(w & 0xFFFF_0000, to: SIMD8<Float>.self))
    }
    @inline(__always) func load1(_ i: Int) -> Float {
        Float(bitPattern: UInt32(base.loadUnaligned(fromByteOffset: 2 * i, as: UInt16.self)) << 16)
    }
}

struct F16Loader: Loader {
    let base: UnsafeRawPointer
    static var interleaved: Bool { false }
    @inline(__always) func load16(_ i: Int) -> (SIMD8<Float>, SIMD8<Float>) {
        (SIMD8<Float>(base.loadUnaligned(fromByteOffset: 2 * i, as: SIMD8<Float16>.self)),
         SIMD8<Float>(base.loadUnaligned(fromByteOffset: 2 * i + 16, as: SIMD8<Float16>.self)))
    }
    @inline(__always) func load1(_ i: Int) -> Float { Float(base.loadUnaligned(fromByteOffset: 2 * i, as: Float16.self)) }
}

/// A tensor's bytes: in memory, or in a file read chunk by chunk into pooled buffers.
struct ByteSource: @unchecked Sendable {
    let memory: UnsafeRawBufferPointer?
    let file: MappedFile?
    let fileRange: Range<Int>
    let pool: ScratchPool?

    init(memory: UnsafeRawBufferPointer) {
        self.memory = memory
        file = nil
        fileRange = 0..<memory.count
        pool = nil
    }

    init(file: MappedFile, range: Range<Int>) {
        memory = nil
        self.file = file
        fileRange = range
        // Big enough for a chunk of the widest element type (f64 × chunkElements).
        pool = ByteSource.sharedPool
    }

    /// Read buffers shared by every tensor and thread: each is allocated and faulted in once per process
    /// (at most one per concurrent reader), not once per tensor. Big enough for a chunk of f64.
    static let sharedPool = ScratchPool(byteCount: 8 * StatisticsEngine.chunkElements + 64)

    /// Calls `body` with the bytes of `range` (relative to the tensor).
    func with<T>(_ range: Range<Int>, _ body: (UnsafeRawBufferPointer) throws -> T) throws -> T {
        if let memory { return try body(UnsafeRawBufferPointer(rebasing: memory[range])) }
        let file = file!, pool = pool!
        if range.count > pool.byteCount {
            // A chunk this large happens only for a single row longer than a chunk: map it instead.
            return try body(UnsafeRawBufferPointer(rebasing: file.bytes[(fileRange.lowerBound + range.lowerBound)..<(fileRange.lowerBound + range.upperBound)]))
        }
        return try pool.withBuffer { buf in
            try file.read((fileRange.lowerBound + range.lowerBound)..<(fileRange.lowerBound + range.upperBound), into: buf)
            return try body(UnsafeRawBufferPointer(start: buf, count: range.count))
        }
    }
}

/// Greatest common divisor.
func gcd(_ a: Int, _ b: Int) -> Int { b == 0 ? a : gcd(b, a % b) }
