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
    /// `[rows.count, k]` codes.
    public var codes: [UInt8]
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

    /// Number of rows held.
    public var n: Int { rows.count }

    /// Integer bit width, or 0 for float formats.
    public var integerBits: Int { if case .int(let b) = scheme.format { b } else { 0 } }

    /// Elements per group along K (K for one group per row).
    public var groupLength: Int { k / max(1, groups) }

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

    /// `pack` of `count` codes read from `codes` (low `bits` of each byte): 4-bit codes go through a C kernel
    /// (32 codes per step), other widths through `pack`.
    @inline(__always)
    public static func packRow(_ codes: UnsafePointer<UInt8>, count: Int, bits: Int, into words: UnsafeMutablePointer<UInt32>) {
        if bits == 4 {
            qkit_pack_u4(codes, count, words)
        } else {
            pack(count: count, bits: bits, into: words) { UInt32(codes[$0]) }
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
