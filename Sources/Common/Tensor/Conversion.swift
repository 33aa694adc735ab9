/// Conversions between stored element types and `Float`.
public enum Conversion {
    /// Decodes `dst.count` elements of `dtype` from `src` into `dst`.
    ///
    /// `src` must hold exactly the bytes of those elements (`dtype.byteCount(elements: dst.count)`),
    /// so sub-byte types are decoded from a whole-byte boundary. Integers convert to the nearest `Float`;
    /// `C64` yields the real parts.
    public static func decode(_ dtype: DType, _ src: UnsafeRawBufferPointer, into dst: UnsafeMutableBufferPointer<Float>) {
        let n = dst.count
        switch dtype {
        case .f32:
            dst.baseAddress!.update(from: src.baseAddress!.assumingMemoryBound(to: Float.self), count: n)
        case .bf16:
            let s = src.bindMemory(to: UInt16.self)
            for i in 0..<n { dst[i] = Float(bitPattern: UInt32(s[i]) << 16) }
        case .f16:
            let s = src.bindMemory(to: Float16.self)
            for i in 0..<n { dst[i] = Float(s[i]) }
        case .f64:
            for i in 0..<n { dst[i] = Float(src.loadUnaligned(fromByteOffset: 8 * i, as: Double.self)) }
        case .c64:
            for i in 0..<n { dst[i] = src.loadUnaligned(fromByteOffset: 8 * i, as: Float.self) }
        case .bool, .u8:
            for i in 0..<n { dst[i] = Float(src[i]) }
        case .i8:
            for i in 0..<n { dst[i] = Float(Int8(bitPattern: src[i])) }
        case .i16:
            for i in 0..<n { dst[i] = Float(src.loadUnaligned(fromByteOffset: 2 * i, as: Int16.self)) }
        case .u16:
            for i in 0..<n { dst[i] = Float(src.loadUnaligned(fromByteOffset: 2 * i, as: UInt16.self)) }
        case .i32:
            for i in 0..<n { dst[i] = Float(src.loadUnaligned(fromByteOffset: 4 * i, as: Int32.self)) }
        case .u32:
            for i in 0..<n { dst[i] = Float(src.loadUnaligned(fromByteOffset: 4 * i, as: UInt32.self)) }
        case .i64:
            for i in 0..<n { dst[i] = Float(src.loadUnaligned(fromByteOffset: 8 * i, as: Int64.self)) }
        case .u64:
            for i in 0..<n { dst[i] = Float(src.loadUnaligned(fromByteOffset: 8 * i, as: UInt64.self)) }
        case .f8E4M3:
            for i in 0..<n { dst[i] = decodeMinifloat(UInt32(src[i]), exponentBits: 4, mantissaBits: 3, bias: 7, fn: true) }
        case .f8E5M2:
            for i in 0..<n { dst[i] = decodeMinifloat(UInt32(src[i]), exponentBits: 5, mantissaBits: 2, bias: 15, fn: false) }
        case .f8E4M3FNUZ:
            for i in 0..<n { dst[i] = src[i] == 0x80 ? .nan : decodeMinifloat(UInt32(src[i]), exponentBits: 4, mantissaBits: 3, bias: 8, fn: true, noNaN: true) }
        case .f8E5M2FNUZ:
            for i in 0..<n { dst[i] = src[i] == 0x80 ? .nan : decodeMinifloat(UInt32(src[i]), exponentBits: 5, mantissaBits: 2, bias: 16, fn: true, noNaN: true) }
        case .f8E8M0:
            for i in 0..<n { dst[i] = src[i] == 0xFF ? .nan : Float(bitPattern: src[i] == 0 ? 0x0040_0000 : UInt32(src[i]) << 23) }
        case .f4:
            for i in 0..<n {
                let byte = src[i / 2]
                let nib = i % 2 == 0 ? byte & 0xF : byte >> 4
                dst[i] = decodeMinifloat(UInt32(nib), exponentBits: 2, mantissaBits: 1, bias: 1, fn: true, noNaN: true)
            }
        case .f6E2M3, .f6E3M2:
            let (e, m, b) = dtype == .f6E2M3 ? (2, 3, 1) : (3, 2, 3)
            for i in 0..<n {
                // Six-bit elements packed little-endian: element i occupies bits 6i..6i+5 of the byte stream.
                let bit = 6 * i
                var v = UInt32(src[bit / 8]) >> UInt32(bit % 8)
                if bit % 8 > 2 { v |= UInt32(src[bit / 8 + 1]) << UInt32(8 - bit % 8) }
                dst[i] = decodeMinifloat(v & 0x3F, exponentBits: e, mantissaBits: m, bias: b, fn: true, noNaN: true)
            }
        }
    }

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
