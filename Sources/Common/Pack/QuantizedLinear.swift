import CKernels
/// One quantized linear weight in the canonical form every backend writer packs from and every backend
/// reader unpacks to, so that codes can be compared across layouts bit for bit.
///
/// Integer formats: `codes` are **unsigned** `u ∈ [0, 2^b − 1]`, one byte per element, and `zeros` the
/// unsigned zero point per group (symmetric qkit codes `q ∈ [−2^(b−1), 2^(b−1) − 1]` become `q + 2^(b−1)`
/// with zero `2^(b−1)`), so `W[n,k] = (u − z)·s` in every layout. Float formats: `codes` are the stored
/// element bits (FP8 byte, E2M1 nibble), `zeros` is `nil`, and `W[n,k] = value(code)·s / global`.
public struct QuantizedLinear: Sendable {
    /// Module path (`model.layers.0.self_attn.q_proj`).
    public var prefix: String
    public var scheme: QuantScheme
    /// Rows (out features) held: `rows` of the full `[fullRows, k]` weight.
    public var rows: Range<Int>
    public var k: Int
    /// `[rows.count, k]` codes, owned or read in place from a checkpoint's map.
    public var codes: LinearCodes
    /// `[scaleRows, groups]` scale values (F32; NVFP4: the FP8 group scale's value, before the global divisor).
    public var scales: [Float]
    /// 1 (one scale row for the tensor) or `rows.count`.
    public var scaleRows: Int
    /// Scale columns per row (`K/G`, or 1 per channel).
    public var groups: Int
    /// `[scaleRows, groups]` unsigned zero points (integer formats), `nil` for float formats.
    public var zeros: [UInt8]?
    /// Group of each input column (act-order), `nil` for `k / G`.
    public var groupIndex: [Int32]?
    /// NVFP4's global scale (a divisor), 1 otherwise.
    public var globalScale: Float = 1
    /// The static activation scale of the linear's input (`P.input_scale`), `nil` for dynamic activations.
    public var inputScale: Float?

    /// A linear whose codes are `codes`.
    public init(prefix: String, scheme: QuantScheme, rows: Range<Int>, k: Int, codes: LinearCodes, scales: [Float], scaleRows: Int,
                groups: Int, zeros: [UInt8]?, groupIndex: [Int32]? = nil, globalScale: Float = 1, inputScale: Float? = nil) {
        self.prefix = prefix
        self.scheme = scheme
        self.rows = rows
        self.k = k
        self.codes = codes
        self.scales = scales
        self.scaleRows = scaleRows
        self.groups = groups
        self.zeros = zeros
        self.groupIndex = groupIndex
        self.globalScale = globalScale
        self.inputScale = inputScale
    }

    /// A linear that owns `codes`.
    public init(prefix: String, scheme: QuantScheme, rows: Range<Int>, k: Int, codes: [UInt8], scales: [Float], scaleRows: Int,
                groups: Int, zeros: [UInt8]?, groupIndex: [Int32]? = nil, globalScale: Float = 1, inputScale: Float? = nil) {
        self.init(prefix: prefix, scheme: scheme, rows: rows, k: k, codes: LinearCodes(codes), scales: scales, scaleRows: scaleRows,
                  groups: groups, zeros: zeros, groupIndex: groupIndex, globalScale: globalScale, inputScale: inputScale)
    }

    /// Number of rows held.
    public var n: Int { rows.count }

    /// Integer bit width, or 0 for float formats.
    public var integerBits: Int { if case .int(let b) = scheme.format { b } else { 0 } }

    /// Elements per group along K (K for one group per row).
    public var groupLength: Int { k / max(1, groups) }

    /// The scales in `[groups, n]` order (K-major, as AWQ, GPTQ and TinyChat store them); a single scale row
    /// serves every row.
    public var scalesByGroup: [Float] { byGroup(scales) }

    /// The zero points in `[groups, n]` order, `nil` for float formats.
    public var zerosByGroup: [UInt8]? { zeros.map(byGroup) }

    /// `[scaleRows, groups]` values in `[groups, n]` order.
    private func byGroup<T: BitwiseCopyable>(_ values: [T]) -> [T] {
        if scaleRows == 1 { return (0..<groups).flatMap { j in repeatElement(values[j], count: n) } }
        return Transpose.tiled(values, rows: n, columns: groups)
    }

    /// The group of input column `c`.
    @inline(__always) public func group(ofColumn c: Int) -> Int {
        if let gi = groupIndex { return Int(gi[c]) }
        return c / groupLength
    }

    /// Dequantizes the rows held into `destination` (`n × k` values), in the convention above.
    public func dequantize(into destination: UnsafeMutableBufferPointer<Float>) {
        precondition(destination.count == n * k)
        let table: [Float]
        switch scheme.format {
        case .int: table = CodeTable.unsigned
        case .fp8E4M3, .mxfp8: table = Conversion.e4m3Table
        case .fp8E5M2: table = Conversion.e5m2Table
        case .fp4, .nvfp4, .mxfp4: table = CodeTable.e2m1
        }
        let (k, groups, scaleRows) = (self.k, self.groups, self.scaleRows)
        let global = globalScale
        codes.withUnsafeBufferPointer { cb in
            scales.withUnsafeBufferPointer { sb in
                table.withUnsafeBufferPointer { t in
                    nonisolated(unsafe) let out = destination.baseAddress!
                    nonisolated(unsafe) let (c, s, tp) = (cb.baseAddress!, sb.baseAddress!, t.baseAddress!)
                    let zeros = self.zeros
                    let gl = groupLength, gi = groupIndex
                    parallelFor((n + 7) / 8) { task in
                        for r in (task * 8)..<min(n, task * 8 + 8) {
                            let sr = scaleRows == 1 ? 0 : r
                            let row = out + r * k, codes = c + r * k
                            for col in 0..<k {
                                let g = gi.map { Int($0[col]) } ?? col / gl
                                let z: Float = zeros.map { Float($0[sr * groups + g]) } ?? 0
                                let scale = global == 1 ? s[sr * groups + g] : s[sr * groups + g] / global
                                row[col] = (tp[Int(codes[col])] - z) * scale
                            }
                        }
                    }
                }
            }
        }
    }
}

/// The codes of a `QuantizedLinear`: an array it owns, or bytes read in place from a checkpoint's map with a
/// constant added (qkit's signed I8 codes `q` are `q + 2^(b−1)` in canonical form), so that a packer reads the
/// map once instead of a copy of it. A mapped range is released (its pages let go) when the last copy of the
/// codes goes.
public struct LinearCodes: RandomAccessCollection, Equatable, @unchecked Sendable {
    /// Keeps a mapped file alive while its codes are read, and lets its pages go after.
    final class Lease {
        let file: MappedFile, range: Range<Int>
        init(file: MappedFile, range: Range<Int>) { (self.file, self.range) = (file, range) }
        deinit { file.release(range) }
    }

    private enum Storage {
        case owned([UInt8])
        case mapped(UnsafePointer<UInt8>, count: Int, bias: UInt8, lease: Lease)
    }

    private let storage: Storage

    /// Codes held in an array.
    public init(_ codes: [UInt8]) { storage = .owned(codes) }

    /// `count` codes read in place at `base`, each plus `bias` (wrapping), valid while `file` is.
    init(mapped base: UnsafePointer<UInt8>, count: Int, bias: UInt8, file: MappedFile, range: Range<Int>) {
        storage = .mapped(base, count: count, bias: bias, lease: Lease(file: file, range: range))
    }

    public var startIndex: Int { 0 }
    public var endIndex: Int {
        switch storage {
        case .owned(let a): a.count
        case .mapped(_, let count, _, _): count
        }
    }

    @inline(__always) public subscript(i: Int) -> UInt8 {
        switch storage {
        case .owned(let a): return a[i]
        case .mapped(let base, let count, let bias, _):
            precondition(i >= 0 && i < count, "code index out of range")
            return base[i] &+ bias
        }
    }

    public static func == (a: LinearCodes, b: LinearCodes) -> Bool { a.elementsEqual(b) }

    /// Calls `body` with the stored bytes and the constant to add to each (0 for owned codes): what a packing
    /// kernel that folds the constant in reads, with no copy.
    public func withBiasedBytes<R>(_ body: (UnsafeBufferPointer<UInt8>, UInt8) throws -> R) rethrows -> R {
        switch storage {
        case .owned(let a): try a.withUnsafeBufferPointer { try body($0, 0) }
        case .mapped(let base, let count, let bias, let lease):
            try withExtendedLifetime(lease) { try body(UnsafeBufferPointer(start: base, count: count), bias) }
        }
    }

    /// Calls `body` with the codes, each plus `delta` (wrapping), as bytes: in place when the stored bytes are
    /// those values, else copied first (on every thread).
    public func withUnsafeBufferPointer<R>(adding delta: UInt8 = 0, _ body: (UnsafeBufferPointer<UInt8>) throws -> R) rethrows -> R {
        try withBiasedBytes { bytes, bias in
            if bias &+ delta == 0 { return try body(bytes) }
            return try materialized(bytes, bias &+ delta).withUnsafeBufferPointer { try body($0) }
        }
    }

    /// `withUnsafeBufferPointer(adding:)` as raw bytes.
    public func withUnsafeBytes<R>(adding delta: UInt8 = 0, _ body: (UnsafeRawBufferPointer) throws -> R) rethrows -> R {
        try withUnsafeBufferPointer(adding: delta) { try body(UnsafeRawBufferPointer($0)) }
    }

    /// The codes in an array.
    public var array: [UInt8] {
        if case .owned(let a) = storage { return a }
        return withBiasedBytes { materialized($0, $1) }
    }

    /// `bytes` plus `bias`, copied 4 MiB at a time on every thread.
    private func materialized(_ bytes: UnsafeBufferPointer<UInt8>, _ bias: UInt8) -> [UInt8] {
        let count = bytes.count, chunk = 1 << 22
        return BitPacking.filled(count) { c in
            nonisolated(unsafe) let (dst, src) = (c.baseAddress!, bytes.baseAddress!)
            parallelFor((count + chunk - 1) / chunk) { t in
                let range = (t * chunk)..<Swift.min(count, (t + 1) * chunk)
                if bias == 0 {
                    (dst + range.lowerBound).update(from: src + range.lowerBound, count: range.count)
                } else {
                    for i in range { dst[i] = src[i] &+ bias }
                }
            }
        }
    }
}

/// Packed-output buffers kept between linears. A fresh block per linear came, often enough, from pages new to
/// the process (each faulted and zeroed inside the packing kernel, up to 5× the kernel's own time on this VM);
/// a kept block is written again in place. At most two are kept: the largest a pack has needed.
final class OutputBuffers: @unchecked Sendable {
    static let shared = OutputBuffers()

    struct Block { let pointer: UnsafeMutableRawPointer, capacity: Int }

    private let lock = Lock()
    private var kept: [Block] = []

    /// A 64-byte-aligned block of at least `bytes` bytes.
    func take(_ bytes: Int) -> Block {
        let found: Block? = lock.withLock {
            guard let i = kept.firstIndex(where: { $0.capacity >= bytes }) else { return nil }
            return kept.remove(at: i)
        }
        if let found { return found }
        return Block(pointer: .allocate(byteCount: max(64, bytes), alignment: 64), capacity: max(64, bytes))
    }

    /// Gives a block back: kept when it is among the two largest, else freed.
    func give(_ block: Block) {
        let dropped: [Block] = lock.withLock {
            kept.append(block)
            kept.sort { $0.capacity > $1.capacity }
            let extra = Array(kept.dropFirst(2))
            kept.removeLast(extra.count)
            return extra
        }
        for b in dropped { b.pointer.deallocate() }
    }
}

/// Little-endian bit streams of b-bit fields in 32-bit words: field `t` starts at bit `b·t` of the stream,
/// fields may straddle words (3-bit GPTQ, dense compressed-tensors), and the last word is zero-padded.
public enum BitPacking {
    /// Words needed for `count` fields of `bits`.
    @inline(__always) public static func wordCount(_ count: Int, bits: Int) -> Int { (count * bits + 31) / 32 }

    /// Packs `count` fields, field `t` = `value(t)` (low `bits` kept), into `words` (⌈count·bits/32⌉ words).
    @inline(__always)
    public static func pack(count: Int, bits: Int, into words: UnsafeMutablePointer<UInt32>, _ value: (Int) -> UInt32) {
        let mask: UInt32 = bits == 32 ? ~0 : (1 << UInt32(bits)) - 1
        if 32 % bits == 0 {
            let per = 32 / bits
            let full = count / per
            for w in 0..<full {
                var word: UInt32 = 0
                for i in 0..<per { word |= (value(w * per + i) & mask) << UInt32(i * bits) }
                words[w] = word
            }
            if full * per < count {
                var word: UInt32 = 0
                for i in 0..<(count - full * per) { word |= (value(full * per + i) & mask) << UInt32(i * bits) }
                words[full] = word
            }
            return
        }
        var acc: UInt64 = 0
        var filled = 0
        var w = 0
        for t in 0..<count {
            acc |= UInt64(value(t) & mask) << UInt64(filled)
            filled += bits
            if filled >= 32 {
                words[w] = UInt32(truncatingIfNeeded: acc)
                w += 1
                acc >>= 32
                filled -= 32
            }
        }
        if filled > 0 { words[w] = UInt32(truncatingIfNeeded: acc) }
    }

    /// `pack` of `count` codes read from `codes`, each plus `bias` (low `bits` of each byte): 4-bit codes go
    /// through a C kernel (32 codes per step), other widths through `pack`.
    @inline(__always)
    public static func packRow(_ codes: UnsafePointer<UInt8>, count: Int, bits: Int, bias: UInt8 = 0, into words: UnsafeMutablePointer<UInt32>) {
        if bits == 4 {
            qkit_pack_u4(codes, count, bias, words)
        } else {
            pack(count: count, bits: bits, into: words) { UInt32(codes[$0] &+ bias) }
        }
    }

    /// An array of `count` elements that `body` writes every one of: no zero fill first (zeroing a packer's
    /// output, then overwriting it, cost a quarter of a pack).
    @inline(__always)
    public static func filled<T: BitwiseCopyable>(_ count: Int, _ body: (UnsafeMutableBufferPointer<T>) -> Void) -> [T] {
        [T](unsafeUninitializedCapacity: count) { buffer, initialized in
            body(buffer)
            initialized = count
        }
    }

    /// Fills an uninitialized buffer of `count` elements, 64-byte aligned (so packing kernels can write whole
    /// lines with non-temporal stores), with `body`, and hands its bytes to `sink`. The buffer is taken from
    /// `OutputBuffers` and given back, so a pack reuses the same pages linear after linear.
    @inline(__always)
    public static func emit<T: BitwiseCopyable>(_ count: Int, to sink: (UnsafeRawBufferPointer) throws -> Void,
                                                _ body: (UnsafeMutableBufferPointer<T>) -> Void) rethrows {
        let bytes = count * MemoryLayout<T>.stride
        let raw = OutputBuffers.shared.take(bytes)
        defer { OutputBuffers.shared.give(raw) }
        let buffer = UnsafeMutableBufferPointer(start: raw.pointer.bindMemory(to: T.self, capacity: count), count: count)
        body(buffer)
        try sink(UnsafeRawBufferPointer(buffer))
    }

    /// Field `t` of a packed stream.
    @inline(__always)
    public static func field(_ words: UnsafeRawPointer, _ t: Int, bits: Int) -> UInt32 {
        let bit = t * bits
        let w = bit >> 5, o = bit & 31
        var v = words.loadUnaligned(fromByteOffset: 4 * w, as: UInt32.self) >> UInt32(o)
        if o + bits > 32 { v |= words.loadUnaligned(fromByteOffset: 4 * (w + 1), as: UInt32.self) << UInt32(32 - o) }
        return bits == 32 ? v : v & ((1 << UInt32(bits)) - 1)
    }
}

extension DType {
    /// Rounds an F32 value to this float dtype and back (what storing a scale in it keeps).
    func rounding(_ x: Float) -> Float {
        switch self {
        case .f16: Float(Float16(x))
        case .bf16: Conversion.float(fromBFloat16Bits: Conversion.bfloat16Bits(x))
        case .f8E4M3: Conversion.e4m3Table[Int(Conversion.float8E4M3Bits(x))]
        default: x
        }
    }
}

/// Writes F32 values as `dtype` (F32, F16, BF16) through `sink`.
func emitFloats(_ values: [Float], as dtype: DType, _ sink: (UnsafeRawBufferPointer) throws -> Void) throws {
    let bytes = dtype.byteCount(elements: values.count)!
    var out = [UInt8](repeating: 0, count: bytes)
    values.withUnsafeBufferPointer { v in
        out.withUnsafeMutableBytes { Conversion.encode(v, as: dtype, into: $0) }
    }
    try out.withUnsafeBytes { try sink($0) }
}

/// Reads a float tensor (any float dtype) as F32 values.
func readFloats(_ ck: Checkpoint, _ t: CheckpointTensor) throws -> [Float] {
    guard case .dtype(let d) = t.encoding, d.isFloatingPoint else {
        throw PackError.malformed(path: ck.path, what: "\(t.name) is \(t.encoding), not a float tensor")
    }
    var out = [Float](repeating: 0, count: t.elementCount)
    out.withUnsafeMutableBufferPointer { Conversion.decode(d, ck.data(t), into: $0) }
    return out
}

/// Reads a 32-bit integer tensor (I32 or U32) as raw words.
func readWords(_ ck: Checkpoint, _ t: CheckpointTensor) -> [UInt32] {
    let raw = ck.data(t)
    return (0..<t.elementCount).map { raw.loadUnaligned(fromByteOffset: 4 * $0, as: UInt32.self) }
}
