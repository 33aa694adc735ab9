import CKernels

/// Conversions between stored element types and `Float`.
///
/// Hot paths (release, one thread, this project's 2-core VM; `qbench convert`): BF16→F32 and F16→F32
/// run at memory speed (8.3–9.5 GB/s of input on 1 GiB, with streaming stores above `streamingElements`); F16 relies on F16C (`-Xcc -mf16c` on Common), without which
/// `Float(Float16)` is a libgcc call. FP8/FP4/FP6 decode through 256-entry (FP4: pair) lookup tables.
///
/// Encoding rounds to nearest, ties to even, everywhere; the overflow and NaN rules per type are those of
/// the peers (see `MinifloatFormat` and `E8M0`), checked bit for bit against torch and ml_dtypes in
/// `ConversionTests`.
public enum Conversion {
    // MARK: - Scalars

    /// IEEE binary16 bits of `f` (round to nearest even; overflow → ±inf; NaN stays NaN, quieted, with the
    /// top payload bits kept, as F16C's `vcvtps2ph` and torch do).
    @inline(__always)
    public static func halfBits(_ f: Float) -> UInt16 { Float16(f).bitPattern }

    /// The value of IEEE binary16 bits.
    @inline(__always)
    public static func float(fromHalfBits b: UInt16) -> Float { Float(Float16(bitPattern: b)) }

    /// bfloat16 bits of `f`: round to nearest even on the top 16 bits; overflow → ±inf. A NaN keeps its
    /// sign and top payload bits and is quieted (`| 0x0040`), so it never truncates into an infinity.
    /// (torch's CPU cast writes every NaN as 0xFFFF; both are NaN.)
    @inline(__always)
    public static func bfloat16Bits(_ f: Float) -> UInt16 {
        let b = f.bitPattern
        let rounded = (b &+ 0x7FFF &+ ((b >> 16) & 1)) >> 16
        let quiet = (b >> 16) | 0x0040
        return UInt16(truncatingIfNeeded: (b & 0x7FFF_FFFF) > 0x7F80_0000 ? quiet : rounded)
    }

    /// The value of bfloat16 bits.
    @inline(__always)
    public static func float(fromBFloat16Bits b: UInt16) -> Float { Float(bitPattern: UInt32(b) << 16) }

    /// FP8 E4M3 (e4m3fn) code of `f`; saturates at ±448 (torch); NaN → 0x7F/0xFF.
    @inline(__always)
    public static func float8E4M3Bits(_ f: Float) -> UInt8 { UInt8(truncatingIfNeeded: MinifloatFormat.e4m3fn.encode(f)) }

    /// FP8 E5M2 code of `f`; past 57344 (after rounding) → ±inf; NaN → 0x7F/0xFF.
    @inline(__always)
    public static func float8E5M2Bits(_ f: Float) -> UInt8 { UInt8(truncatingIfNeeded: MinifloatFormat.e5m2.encode(f)) }

    /// E8M0 code of `f` (torch's rule, see `E8M0`).
    @inline(__always)
    public static func float8E8M0Bits(_ f: Float) -> UInt8 { E8M0.encode(f) }

    /// FP4 E2M1 code (low 4 bits) of `f`; saturates at ±6; NaN → zero.
    @inline(__always)
    public static func float4Bits(_ f: Float) -> UInt8 { UInt8(truncatingIfNeeded: MinifloatFormat.e2m1.encode(f)) }

    /// The minifloat format of a narrow floating-point dtype (FP8 but E8M0, FP6, FP4), else `nil`.
    public static func minifloatFormat(_ dtype: DType) -> MinifloatFormat? {
        switch dtype {
        case .f8E4M3: .e4m3fn
        case .f8E5M2: .e5m2
        case .f8E4M3FNUZ: .e4m3fnuz
        case .f8E5M2FNUZ: .e5m2fnuz
        case .f4: .e2m1
        case .f6E2M3: .e2m3
        case .f6E3M2: .e3m2
        default: nil
        }
    }

    /// The value of one code of an 8-bit-or-narrower float dtype.
    public static func value(ofCode code: UInt32, _ dtype: DType) -> Float {
        if dtype == .f8E8M0 { return E8M0.decode(UInt8(truncatingIfNeeded: code)) }
        return minifloatFormat(dtype)!.decode(code)
    }

    // MARK: - Tables

    /// Decoded value of every byte, per 8-bit float type.
    static let e4m3Table: [Float] = MinifloatFormat.e4m3fn.table
    static let e5m2Table: [Float] = MinifloatFormat.e5m2.table
    static let e4m3fnuzTable: [Float] = MinifloatFormat.e4m3fnuz.table
    static let e5m2fnuzTable: [Float] = MinifloatFormat.e5m2fnuz.table
    static let e8m0Table: [Float] = (0..<256).map { E8M0.decode(UInt8($0)) }
    /// FP4: both nibbles of every byte (low nibble first).
    static let f4PairTable: [SIMD2<Float>] = {
        let t = MinifloatFormat.e2m1.table
        return (0..<256).map { SIMD2(t[$0 & 0xF], t[$0 >> 4]) }
    }()
    static let e2m3Table: [Float] = MinifloatFormat.e2m3.table
    static let e3m2Table: [Float] = MinifloatFormat.e3m2.table

    // MARK: - Decode

    /// From this many elements (32 MiB of f32 out), bf16 and f16 decode with non-temporal stores (`CKernels`):
    /// an output that large does not stay in the caches anyway, and skipping its read-for-ownership saves a
    /// third of the memory traffic (bf16: 4.8 → 8.4–9.2 GB/s of input on one thread, `qbench convert`).
    public static let streamingElements = 8 << 20

    /// Decodes `dst.count` elements of `dtype` from `src` into `dst`.
    ///
    /// `src` must hold exactly the bytes of those elements (`dtype.byteCount(elements: dst.count)`),
    /// so sub-byte types are decoded from a whole-byte boundary: F4 holds two elements per byte, low
    /// nibble first; F6 elements are packed little-endian (element i in bits 6i..6i+5 of the byte stream).
    /// Integers convert to the nearest `Float`; `C64` yields the real parts. `src` may be unaligned.
    public static func decode(_ dtype: DType, _ src: UnsafeRawBufferPointer, into dst: UnsafeMutableBufferPointer<Float>) {
        let n = dst.count
        guard n > 0, let s = src.baseAddress, let d = dst.baseAddress else { return }
        precondition(src.count >= (n * dtype.bitSize + 7) / 8, "decode: source too short")
        switch dtype {
        case .f32:
            UnsafeMutableRawPointer(d).copyMemory(from: s, byteCount: 4 * n)
        case .bf16:
            if n >= streamingElements, Int(bitPattern: s) & 1 == 0 {
                qkit_bf16_to_f32_stream(s.assumingMemoryBound(to: UInt16.self), d, n)
            } else if Int(bitPattern: s) & 1 == 0 {
                decodeBF16(s.assumingMemoryBound(to: UInt16.self), UnsafeMutableRawPointer(d).assumingMemoryBound(to: UInt32.self), n)
            } else {
                for i in 0..<n { d[i] = Float(bitPattern: UInt32(s.loadUnaligned(fromByteOffset: 2 * i, as: UInt16.self)) << 16) }
            }
        case .f16:
            if n >= streamingElements, Int(bitPattern: s) & 1 == 0 {
                qkit_f16_to_f32_stream(s.assumingMemoryBound(to: UInt16.self), d, n)
            } else if Int(bitPattern: s) & 1 == 0 {
                decodeF16(s.assumingMemoryBound(to: Float16.self), d, n)
            } else {
                for i in 0..<n { d[i] = Float(Float16(bitPattern: s.loadUnaligned(fromByteOffset: 2 * i, as: UInt16.self))) }
            }
        case .f64:
            for i in 0..<n { d[i] = Float(s.loadUnaligned(fromByteOffset: 8 * i, as: Double.self)) }
        case .c64:
            for i in 0..<n { d[i] = s.loadUnaligned(fromByteOffset: 8 * i, as: Float.self) }
        case .bool, .u8:
            let b = s.assumingMemoryBound(to: UInt8.self)
            for i in 0..<n { d[i] = Float(b[i]) }
        case .i8:
            let b = s.assumingMemoryBound(to: Int8.self)
            for i in 0..<n { d[i] = Float(b[i]) }
        case .i16: decodeInteger(Int16.self, s, d, n)
        case .u16: decodeInteger(UInt16.self, s, d, n)
        case .i32: decodeInteger(Int32.self, s, d, n)
        case .u32: decodeInteger(UInt32.self, s, d, n)
        case .i64: decodeInteger(Int64.self, s, d, n)
        case .u64: decodeInteger(UInt64.self, s, d, n)
        case .f8E4M3: decodeByTable(e4m3Table, s, d, n)
        case .f8E5M2: decodeByTable(e5m2Table, s, d, n)
        case .f8E4M3FNUZ: decodeByTable(e4m3fnuzTable, s, d, n)
        case .f8E5M2FNUZ: decodeByTable(e5m2fnuzTable, s, d, n)
        case .f8E8M0: decodeByTable(e8m0Table, s, d, n)
        case .f4:
            f4PairTable.withUnsafeBufferPointer { t in
                let b = s.assumingMemoryBound(to: UInt8.self)
                let pairs = n / 2
                let dp = UnsafeMutableRawPointer(d)
                for i in 0..<pairs { dp.storeBytes(of: t[Int(b[i])], toByteOffset: 8 * i, as: SIMD2<Float>.self) }
                if n & 1 == 1 { d[n - 1] = t[Int(b[pairs])].x }
            }
        case .f6E2M3, .f6E3M2:
            (dtype == .f6E2M3 ? e2m3Table : e3m2Table).withUnsafeBufferPointer { t in
                let b = s.assumingMemoryBound(to: UInt8.self)
                let groups = n / 4
                for g in 0..<groups {
                    let v = UInt32(b[3 * g]) | UInt32(b[3 * g + 1]) << 8 | UInt32(b[3 * g + 2]) << 16
                    d[4 * g] = t[Int(v & 0x3F)]
                    d[4 * g + 1] = t[Int((v >> 6) & 0x3F)]
                    d[4 * g + 2] = t[Int((v >> 12) & 0x3F)]
                    d[4 * g + 3] = t[Int(v >> 18)]
                }
                for i in (4 * groups)..<n {
                    let bit = 6 * i
                    var v = UInt32(b[bit / 8]) >> UInt32(bit % 8)
                    if bit % 8 > 2 { v |= UInt32(b[bit / 8 + 1]) << UInt32(8 - bit % 8) }
                    d[i] = t[Int(v & 0x3F)]
                }
            }
        }
    }

    @inline(__always)
    static func decodeBF16(_ s: UnsafePointer<UInt16>, _ d: UnsafeMutablePointer<UInt32>, _ n: Int) {
        for i in 0..<n { d[i] = UInt32(s[i]) &<< 16 }
    }

    @inline(__always)
    static func decodeF16(_ s: UnsafePointer<Float16>, _ d: UnsafeMutablePointer<Float>, _ n: Int) {
        for i in 0..<n { d[i] = Float(s[i]) }
    }

    @inline(__always)
    static func decodeInteger<T: BinaryInteger & BitwiseCopyable>(_: T.Type, _ s: UnsafeRawPointer, _ d: UnsafeMutablePointer<Float>, _ n: Int) {
        if Int(bitPattern: s) % MemoryLayout<T>.alignment == 0 {
            let p = s.assumingMemoryBound(to: T.self)
            for i in 0..<n { d[i] = Float(p[i]) }
        } else {
            for i in 0..<n { d[i] = Float(s.loadUnaligned(fromByteOffset: MemoryLayout<T>.stride * i, as: T.self)) }
        }
    }

    @inline(__always)
    static func decodeByTable(_ table: [Float], _ s: UnsafeRawPointer, _ d: UnsafeMutablePointer<Float>, _ n: Int) {
        table.withUnsafeBufferPointer { t in
            let b = s.assumingMemoryBound(to: UInt8.self)
            let tp = t.baseAddress!
            for i in 0..<n { d[i] = tp[Int(b[i])] }
        }
    }

    // MARK: - Encode

    /// Whether `encode` can write `dtype`: the floating-point types (F64, F32, F16, BF16, every FP8, F6, F4).
    public static func canEncode(_ dtype: DType) -> Bool { dtype.isFloatingPoint }

    /// Encodes `src` as `dtype` into `dst`, which must hold at least `dtype.byteCount(elements: src.count)`
    /// bytes (it may be unaligned). Rounds to nearest, ties to even. Per type:
    /// - F16: overflow → ±inf, NaN stays NaN (quieted, top payload kept). BF16: the same (see `bfloat16Bits`).
    /// - F8_E4M3 (e4m3fn): saturates at ±448, ±inf too, like torch 2.x; NaN → 0x7F/0xFF.
    /// - F8_E5M2: rounds past 57344 to ±inf; NaN → 0x7F/0xFF.
    /// - F8_E4M3FNUZ/F8_E5M2FNUZ: out of range, ±inf and NaN → 0x80; no negative zero (torch).
    /// - F8_E8M0: torch's rule (`E8M0`).
    /// - F4 (E2M1) and F6: saturating at ±max (like NVFP4 quantizers and ml_dtypes); NaN → zero. F4 packs two
    ///   per byte, low nibble first; F6 packs little-endian, 4 elements in 3 bytes.
    /// - F64: exact.
    /// Precondition: `canEncode(dtype)`.
    public static func encode(_ src: UnsafeBufferPointer<Float>, as dtype: DType, into dst: UnsafeMutableRawBufferPointer) {
        let n = src.count
        guard n > 0, let s = src.baseAddress, let d = dst.baseAddress else { return }
        precondition(canEncode(dtype), "encode: \(dtype.rawValue) is not a floating-point type")
        precondition(dst.count >= (n * dtype.bitSize + 7) / 8, "encode: destination too short")
        switch dtype {
        case .f32:
            d.copyMemory(from: s, byteCount: 4 * n)
        case .f64:
            for i in 0..<n { d.storeBytes(of: Double(s[i]), toByteOffset: 8 * i, as: Double.self) }
        case .f16:
            if Int(bitPattern: d) & 1 == 0 {
                encodeF16(s, d.assumingMemoryBound(to: UInt16.self), n)
            } else {
                for i in 0..<n { d.storeBytes(of: halfBits(s[i]), toByteOffset: 2 * i, as: UInt16.self) }
            }
        case .bf16:
            if Int(bitPattern: d) & 1 == 0 {
                encodeBF16(s, d.assumingMemoryBound(to: UInt16.self), n)
            } else {
                for i in 0..<n { d.storeBytes(of: bfloat16Bits(s[i]), toByteOffset: 2 * i, as: UInt16.self) }
            }
        case .f8E8M0:
            let b = d.assumingMemoryBound(to: UInt8.self)
            for i in 0..<n { b[i] = E8M0.encode(s[i]) }
        case .f8E4M3: encodeMinifloat8(.e4m3fn, s, d, n)
        case .f8E5M2: encodeMinifloat8(.e5m2, s, d, n)
        case .f8E4M3FNUZ: encodeMinifloat8(.e4m3fnuz, s, d, n)
        case .f8E5M2FNUZ: encodeMinifloat8(.e5m2fnuz, s, d, n)
        case .f4: encodeFloat4(s, d, n)
        case .f6E2M3, .f6E3M2:
            let f: MinifloatFormat = dtype == .f6E2M3 ? .e2m3 : .e3m2
            let b = d.assumingMemoryBound(to: UInt8.self)
            let groups = n / 4
            for g in 0..<groups {
                let v = f.encode(s[4 * g]) | f.encode(s[4 * g + 1]) << 6 | f.encode(s[4 * g + 2]) << 12 | f.encode(s[4 * g + 3]) << 18
                b[3 * g] = UInt8(truncatingIfNeeded: v)
                b[3 * g + 1] = UInt8(truncatingIfNeeded: v >> 8)
                b[3 * g + 2] = UInt8(truncatingIfNeeded: v >> 16)
            }
            if groups * 4 < n {
                // A partial group (only when the caller passes a count F6 cannot store in whole bytes).
                var v: UInt32 = 0
                for i in (4 * groups)..<n { v |= f.encode(s[i]) << UInt32(6 * (i - 4 * groups)) }
                let bytes = (6 * (n - 4 * groups) + 7) / 8
                for k in 0..<bytes where 3 * groups + k < dst.count { b[3 * groups + k] = UInt8(truncatingIfNeeded: v >> UInt32(8 * k)) }
            }
        default:
            preconditionFailure("encode: \(dtype.rawValue) is not a floating-point type")
        }
    }

    @inline(__always)
    static func encodeF16(_ s: UnsafePointer<Float>, _ d: UnsafeMutablePointer<UInt16>, _ n: Int) {
        for i in 0..<n { d[i] = Float16(s[i]).bitPattern }
    }

    @inline(__always)
    static func encodeBF16(_ s: UnsafePointer<Float>, _ d: UnsafeMutablePointer<UInt16>, _ n: Int) {
        let u = UnsafeRawPointer(s).assumingMemoryBound(to: UInt32.self)
        for i in 0..<n {
            let b = u[i]
            let rounded = (b &+ 0x7FFF &+ ((b &>> 16) & 1)) &>> 16
            let quiet = (b &>> 16) | 0x0040
            d[i] = UInt16(truncatingIfNeeded: (b & 0x7FFF_FFFF) > 0x7F80_0000 ? quiet : rounded)
        }
    }

    /// One code per byte, 8 values per instruction (`qkit_encode_minifloat`; the same codes as `f.encode`).
    static func encodeMinifloat8(_ f: MinifloatFormat, _ s: UnsafePointer<Float>, _ d: UnsafeMutableRawPointer, _ n: Int) {
        var k = f.kernelFormat
        qkit_encode_minifloat(s, d.assumingMemoryBound(to: UInt8.self), n, &k)
    }

    /// FP4 E2M1, two codes per byte (low nibble first): codes from the kernel a block at a time, then paired.
    static func encodeFloat4(_ s: UnsafePointer<Float>, _ d: UnsafeMutableRawPointer, _ n: Int) {
        var k = MinifloatFormat.e2m1.kernelFormat
        let b = d.assumingMemoryBound(to: UInt8.self)
        withUnsafeTemporaryAllocation(of: UInt8.self, capacity: 4096) { codes in
            var i = 0
            while i < n {
                let m = min(4096, n - i)
                qkit_encode_minifloat(s + i, codes.baseAddress!, m, &k)
                for j in stride(from: 0, to: m - 1, by: 2) { b[(i + j) / 2] = codes[j] | codes[j + 1] << 4 }
                if m & 1 == 1 { b[(i + m) / 2] = codes[m - 1] }
                i += m
            }
        }
    }

    // MARK: - Reference decoder

    /// Decodes one minifloat: sign, `exponentBits`, `mantissaBits`, subnormals at exponent 0.
    /// `fn` formats have no infinities (all-ones exponent is finite); their NaN is all ones,
    /// unless `noNaN` (FP4, FP6, FNUZ) where every code is finite.
    @inline(__always)
    public static func decodeMinifloat(_ bits: UInt32, exponentBits: Int, mantissaBits: Int, bias: Int, fn: Bool, noNaN: Bool = false) -> Float {
        let sign: Float = (bits >> UInt32(exponentBits + mantissaBits)) & 1 == 1 ? -1 : 1
        let e = Int((bits >> UInt32(mantissaBits)) & ((1 << UInt32(exponentBits)) - 1))
        let m = Int(bits & ((1 << UInt32(mantissaBits)) - 1))
        let maxE = (1 << exponentBits) - 1
        if !fn, e == maxE { return m == 0 ? sign * .infinity : .nan }
        if fn, !noNaN, e == maxE, m == (1 << mantissaBits) - 1 { return .nan }
        if e == 0 { return sign * Float(m) * Float(sign: .plus, exponent: 1 - bias - mantissaBits, significand: 1) }
        return sign * (1 + Float(m) / Float(1 << mantissaBits)) * Float(sign: .plus, exponent: e - bias, significand: 1)
    }
}

extension TensorEncoding {
    /// The CKernels element type (`QKIT_KIND_…`) of the encodings its kernels read as stored (F32, BF16, F16);
    /// `nil` for the others, which are decoded to f32 first.
    var kernelKind: Int32? {
        switch self {
        case .dtype(.f32): Int32(QKIT_KIND_F32)
        case .dtype(.bf16): Int32(QKIT_KIND_BF16)
        case .dtype(.f16): Int32(QKIT_KIND_F16)
        default: nil
        }
    }
}
