import CKernels
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

/// Streaming computation of `TensorStatistics`: chunks of whole rows are mapped one at a time (and their pages
/// dropped after), processed in parallel with SIMD accumulators and merged in chunk order, so the result does not
/// depend on the thread count and resident memory stays bounded (39 MB measured on a 16 GB checkpoint).
public enum StatisticsEngine {
    /// Elements per chunk (rounded to whole rows when rows are shorter). Each chunk's pages are mapped and then
    /// dropped, and every drop interrupts the other cores (a TLB shootdown): bigger chunks, fewer interrupts.
    static let chunkElements = 1 << 22
    /// Elements mapped and processed at once inside a chunk (a multiple of every decode granule).
    static let subChunkElements = 1 << 22
    /// Elements at the start of a tensor that choose its shift (`shift(_:count:encoding:)`).
    static let shiftSample = 4096
    /// Histogram bins when one is asked for.
    public static let histogramBins = 32

    /// Computes the statistics of `tensor` in `checkpoint`, mapping it chunk by chunk.
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
        let sample = Swift.max(granule, Swift.min(n, shiftSample) / granule * granule)
        let shift = try source.with(0..<encoding.byteCount(elements: sample)) { try Self.shift($0, count: sample, encoding: encoding) }
        var partials = [Partial?](repeating: nil, count: chunks)
        try partials.withUnsafeMutableBufferPointer { out in
            try parallelFor(chunks) { c in
                let start = c * chunk
                let count = Swift.min(chunk, n - start)
                var p = Partial(channels: perChannel ? rowLength : 0, encoding: encoding)
                // Sub-chunks bound the decode buffer of the types the kernel does not read itself.
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
        var total = Partial(channels: perChannel ? rowLength : 0, encoding: encoding)
        for p in partials { total.merge(p!) }
        result = total.finish(count: n, shift: shift, outliers: outliers)
        if histogram { result.histogram = try histogramOf(source, encoding: encoding, count: n, min: result.min, max: result.max) }
        return result
    }

    /// The shift subtracted before the moments are summed, from the finite values among the first 4096: their
    /// mean when it lies more than one standard deviation from 0 (a norm's weights near 1, say), otherwise 0,
    /// for which the kernel skips the subtraction. Either way the shifted values are centred to within about a
    /// standard deviation, which keeps the f32 block sums of d² … d⁴ well conditioned.
    static func shift(_ data: UnsafeRawBufferPointer, count: Int, encoding: TensorEncoding) throws -> Double {
        var buf = [Float](repeating: 0, count: count)
        try buf.withUnsafeMutableBufferPointer {
            try encoding.decode(UnsafeRawBufferPointer(rebasing: data[0..<encoding.byteCount(elements: count)]), into: $0)
        }
        var (n, sum, squares) = (0.0, 0.0, 0.0)
        for x in buf where x.isFinite { n += 1; sum += Double(x); squares += Double(x) * Double(x) }
        guard n > 0 else { return 0 }
        let mean = sum / n
        let variance = Swift.max(0, squares / n - mean * mean)
        return mean * mean > variance ? Double(Float(mean)) : 0
    }

    /// Per-chunk sums.
    struct Partial {
        var sums = qkit_stats(s1: 0, s2: 0, s3: 0, s4: 0, finite: 0, nan: 0, inf: 0, zeros: 0, min: .infinity, max: -.infinity)
        /// Column maxima of |x| as f32 (f32 and decoded types).
        var columnAbsMax: [Float]
        /// Column maxima as the bits of |x| (bf16 and f16, which the kernel compares 16 at a time).
        var columnBits: [UInt16]
        /// The kernel's type when `columnBits` is used.
        let bitsKind: Int32?

        init(channels: Int, encoding: TensorEncoding) {
            bitsKind = encoding.kernelKind.flatMap { $0 == Int32(QKIT_KIND_F32) ? nil : $0 }
            columnAbsMax = [Float](repeating: 0, count: bitsKind == nil ? channels : 0)
            columnBits = [UInt16](repeating: 0, count: bitsKind == nil ? 0 : channels)
        }

        mutating func merge(_ o: Partial) {
            sums.s1 += o.sums.s1; sums.s2 += o.sums.s2; sums.s3 += o.sums.s3; sums.s4 += o.sums.s4
            sums.finite += o.sums.finite; sums.nan += o.sums.nan; sums.inf += o.sums.inf; sums.zeros += o.sums.zeros
            sums.min = Swift.min(sums.min, o.sums.min); sums.max = Swift.max(sums.max, o.sums.max)
            for i in columnAbsMax.indices { columnAbsMax[i] = Swift.max(columnAbsMax[i], o.columnAbsMax[i]) }
            for i in columnBits.indices { columnBits[i] = Swift.max(columnBits[i], o.columnBits[i]) }
        }

        /// The column maxima as f32.
        var columnMaxima: [Float] {
            switch bitsKind {
            case Int32(QKIT_KIND_BF16): return columnBits.map { Float(bitPattern: UInt32($0) << 16) }
            case Int32(QKIT_KIND_F16): return columnBits.map { Float(Float16(bitPattern: $0)) }
            default: return columnAbsMax
            }
        }

        func finish(count: Int, shift: Double, outliers: Int) -> TensorStatistics {
            let (s1, s2, s3, s4, finite, min, max) = (sums.s1, sums.s2, sums.s3, sums.s4, Int(sums.finite), sums.min, sums.max)
            var r = TensorStatistics()
            r.count = count
            r.nanCount = Int(sums.nan)
            r.infCount = Int(sums.inf)
            r.zeroCount = Int(sums.zeros)
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
            let columns = columnMaxima
            if !columns.isEmpty, outliers > 0 {
                let median = Self.median(columns)
                r.outlierChannels = Self.topChannels(columns, outliers).map {
                    OutlierChannel(channel: $0, absMax: columns[$0], ratio: median > 0 ? columns[$0] / median : .infinity)
                }
            }
            return r
        }

        /// The `k` channels with the largest absmax, largest first, the lower index first among equals: one pass
        /// keeping the best k (sorting every channel with a comparator cost more than the rest of `finish`).
        static func topChannels(_ columns: [Float], _ k: Int) -> [Int] {
            var best: [Int] = []
            best.reserveCapacity(k + 1)
            for c in columns.indices {
                let v = columns[c]
                if best.count == k, let last = best.last, !(v > columns[last]) { continue }
                var at = best.count
                while at > 0, v > columns[best[at - 1]] { at -= 1 }
                best.insert(c, at: at)
                if best.count > k { best.removeLast() }
            }
            return best
        }

        /// The element at index count / 2 of `values` sorted ascending (Hoare's selection, expected linear time).
        static func median(_ values: [Float]) -> Float {
            var v = values
            let target = v.count / 2
            var lo = 0, hi = v.count - 1
            while lo < hi {
                let pivot = v[lo + (hi - lo) / 2]
                var i = lo, j = hi
                while i <= j {
                    while v[i] < pivot { i += 1 }
                    while v[j] > pivot { j -= 1 }
                    if i <= j { v.swapAt(i, j); i += 1; j -= 1 }
                }
                if target <= j { hi = j } else if target >= i { lo = i } else { break }
            }
            return v[target]
        }
    }

    /// Accumulates `count` elements starting at column `firstColumn` of rows of `rowLength` (0: no channels).
    static func accumulate(_ bytes: UnsafeRawBufferPointer, encoding: TensorEncoding, count: Int, firstColumn: Int,
                           rowLength: Int, shift: Double, into p: inout Partial) throws {
        if let kind = encoding.kernelKind {
            run(kind, bytes.baseAddress!, elementSize: kind == Int32(QKIT_KIND_F32) ? 4 : 2, count: count,
                firstColumn: firstColumn, rowLength: rowLength, shift: Float(shift), into: &p)
            return
        }
        var buf = [Float](repeating: 0, count: count)
        try buf.withUnsafeMutableBufferPointer { b in
            try encoding.decode(bytes, into: b)
            run(Int32(QKIT_KIND_F32), UnsafeRawPointer(b.baseAddress!), elementSize: 4, count: count,
                firstColumn: firstColumn, rowLength: rowLength, shift: Float(shift), into: &p)
        }
    }

    /// Walks row segments so that each call of the C kernel (`qkit_stats_accumulate`) covers contiguous columns.
    static func run(_ kind: Int32, _ base: UnsafeRawPointer, elementSize: Int, count: Int, firstColumn: Int, rowLength: Int,
                    shift: Float, into p: inout Partial) {
        let slotSize = p.bitsKind == nil ? 4 : 2
        var sums = p.sums
        defer { p.sums = sums }
        func walk(_ cols: UnsafeMutableRawPointer?) {
            var i = 0
            var column = firstColumn
            while i < count {
                let len = rowLength > 0 ? Swift.min(count - i, rowLength - column) : count - i
                qkit_stats_accumulate(kind, base + i * elementSize, len, shift, cols.map { $0 + column * slotSize }, &sums)
                i += len
                column = 0
            }
        }
        if rowLength == 0 {
            walk(nil)
        } else if p.bitsKind == nil {
            p.columnAbsMax.withUnsafeMutableBytes { walk($0.baseAddress!) }
        } else {
            p.columnBits.withUnsafeMutableBytes { walk($0.baseAddress!) }
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

/// A tensor's bytes: in memory, or in a mapped file whose pages are mapped one chunk at a time and let go after.
struct ByteSource: @unchecked Sendable {
    let memory: UnsafeRawBufferPointer?
    let file: MappedFile?
    let fileRange: Range<Int>

    init(memory: UnsafeRawBufferPointer) {
        self.memory = memory
        file = nil
        fileRange = 0..<memory.count
    }

    init(file: MappedFile, range: Range<Int>) {
        memory = nil
        self.file = file
        fileRange = range
    }

    /// Calls `body` with the bytes of `range` (relative to the tensor). For a file the range's pages fault in as
    /// the kernel reads them and are dropped afterwards, so resident memory stays at a chunk per thread. Measured
    /// on a warm 4.9 GB bf16 shard: this beats pread(2) into a reused buffer (7.1–8.1 GB/s against 7.7–8.5; the
    /// copy costs more than the page-table work), and it beats mapping each chunk first with MADV_POPULATE_READ
    /// (0.52–0.55 s against 0.57–0.60 per run, alternating, Linux 6.18): the page cache holds 2 MiB folios, which
    /// a fault maps whole, while populating walks them 4 KiB at a time.
    func with<T>(_ range: Range<Int>, _ body: (UnsafeRawBufferPointer) throws -> T) throws -> T {
        if let memory { return try body(UnsafeRawBufferPointer(rebasing: memory[range])) }
        let file = file!
        let bytes = (fileRange.lowerBound + range.lowerBound)..<(fileRange.lowerBound + range.upperBound)
        defer { file.release(bytes) }
        return try body(UnsafeRawBufferPointer(rebasing: file.bytes[bytes]))
    }
}

/// Greatest common divisor.
func gcd(_ a: Int, _ b: Int) -> Int { b == 0 ? a : gcd(b, a % b) }
