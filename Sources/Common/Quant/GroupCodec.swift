/// The arithmetic of the number formats on one group of values: choosing a scale (and zero point) from a
/// range, turning values into codes, and codes back into values. Algorithms (RTN, the MSE search, HQQ)
/// only decide the range or the parameters; this is the one place that rounds.
///
/// Rounding is to nearest, ties to even. Values are divided by the scale (not multiplied by its
/// reciprocal), as compressed-tensors does, so codes match it bit for bit.
public struct GroupCodec: Sendable {
    public let scheme: QuantScheme
    /// NVFP4's global scale (a divisor), 1 otherwise.
    public let globalScale: Float
    let maxCode: Float
    let minCode: Float
    let element: MinifloatFormat?
    let elementMax: Float

    /// A codec for `scheme`; `globalScale` is NVFP4's tensor-wide divisor (see `nvfp4GlobalScale`).
    public init(scheme: QuantScheme, globalScale: Float = 1) {
        self.scheme = scheme
        self.globalScale = globalScale
        element = scheme.format.elementFormat
        elementMax = element?.maxFinite ?? 0
        if case .int(let b) = scheme.format {
            if scheme.symmetric {
                minCode = -Float(1 << (b - 1))
                maxCode = Float((1 << (b - 1)) - 1)
            } else {
                minCode = 0
                maxCode = Float((1 << b) - 1)
            }
        } else {
            minCode = -elementMax
            maxCode = elementMax
        }
    }

    /// The parameters of one group as they are stored.
    public struct Parameters: Sendable, Equatable {
        /// The effective scale values are divided by (for NVFP4: stored scale / global scale).
        public var scale: Float
        /// The stored scale: its F32 value, or the F8_E4M3 / E8M0 code in the low byte.
        public var storedScale: UInt32
        /// The zero point (INT asymmetric: an integer in [0, 2^b − 1]; HQQ: any float), 0 when symmetric.
        public var zero: Float
    }

    /// NVFP4's global scale for a tensor of absolute maximum `absmax`: 448·6/absmax, or 1 when that is
    /// not finite (compressed-tensors `generate_gparam`).
    public static func nvfp4GlobalScale(absmax: Float) -> Float {
        let g = Float(448 * 6) / max(absmax, Float.leastNormalMagnitude)
        return g.isFinite ? g : 1
    }

    /// The RTN parameters of a group whose values lie in [`minimum`, `maximum`] (asymmetric INT) or
    /// whose absolute maximum is `absmax` (everything else).
    @inline(__always)
    public func parameters(minimum: Float, maximum: Float, absmax: Float) -> Parameters {
        switch scheme.format {
        case .int:
            if scheme.symmetric {
                var s = absmax / ((maxCode - minCode) / 2)
                if s == 0 { s = Float.ulpOfOne }   // torch.finfo(float32).eps, as compressed-tensors
                return Parameters(scale: s, storedScale: s.bitPattern, zero: 0)
            }
            let lo = min(minimum, 0), hi = max(maximum, 0)
            let s = (hi - lo) / maxCode
            guard s > 0 else { return Parameters(scale: Float.ulpOfOne, storedScale: Float.ulpOfOne.bitPattern, zero: 0) }
            let z = min(max(-lo / s, 0), maxCode).rounded(.toNearestOrEven)
            return Parameters(scale: s, storedScale: s.bitPattern, zero: z)
        case .fp8E4M3, .fp8E5M2, .fp4:
            var s = absmax / elementMax
            if s == 0 { s = Float.ulpOfOne }
            return Parameters(scale: s, storedScale: s.bitPattern, zero: 0)
        case .nvfp4:
            let raw = globalScale * (absmax / 6)
            var code = Conversion.float8E4M3Bits(min(max(raw, -448), 448))
            if code & 0x7F == 0 { code = 0x20 }   // a zero scale becomes 0.125 (compressed-tensors' FP8 eps)
            let value = Conversion.e4m3Table[Int(code)]
            return Parameters(scale: value / globalScale, storedScale: UInt32(code), zero: 0)
        case .mxfp4, .mxfp8:
            let emax = scheme.format == .mxfp4 ? 2 : 8
            let e = absmax > 0 && absmax.isFinite ? Int(absmax.exponent) - emax : -127
            let code = UInt8(min(max(e + 127, 0), 254))
            return Parameters(scale: E8M0.decode(code), storedScale: UInt32(code), zero: 0)
        }
    }

    /// Writes the codes of `count` values (one byte each: I8 bits, U8, E2M1 in the low nibble, or FP8 bits).
    @inline(__always)
    public func encode(_ x: UnsafePointer<Float>, count: Int, _ p: Parameters, into codes: UnsafeMutablePointer<UInt8>) {
        if case .int = scheme.format {
            encodeInteger(x, count: count, scale: p.scale, zero: p.zero, into: codes)
            return
        }
        let f = element!
        let s = p.scale, m = elementMax
        for i in 0..<count {
            let v = min(max(x[i] / s, -m), m)
            codes[i] = UInt8(truncatingIfNeeded: f.encode(v))
        }
    }

    /// Integer codes `clamp(round(x/s + z), minCode, maxCode)`, eight at a time.
    @inline(__always)
    func encodeInteger(_ x: UnsafePointer<Float>, count: Int, scale: Float, zero: Float, into codes: UnsafeMutablePointer<UInt8>) {
        // Adding 1.5·2^23 rounds a |v| < 2^22 to an integer with ties to even; the low byte of the sum's
        // bits is then the code's two's-complement byte.
        let magic: Float = 12_582_912
        let lo = minCode, hi = maxCode
        var i = 0
        let raw = UnsafeRawPointer(x)
        while i + 8 <= count {
            let v = raw.loadUnaligned(fromByteOffset: 4 * i, as: SIMD8<Float>.self)
            var q = v / SIMD8(repeating: scale) + SIMD8(repeating: zero)
            q = q.replacing(with: SIMD8(repeating: lo), where: q .< lo).replacing(with: SIMD8(repeating: hi), where: q .> hi)
            let bits = unsafeBitCast(q + SIMD8(repeating: magic), to: SIMD8<UInt32>.self)
            UnsafeMutableRawPointer(codes + i).storeBytes(of: SIMD8<UInt8>(truncatingIfNeeded: bits), as: SIMD8<UInt8>.self)
            i += 8
        }
        while i < count {
            var q = x[i] / scale + zero
            q = q < lo ? lo : (q > hi ? hi : q)
            codes[i] = UInt8(truncatingIfNeeded: (q + magic).bitPattern)
            i += 1
        }
    }

    /// The values of `count` codes with parameters `p` (the dequantization of `man 5 qkit`).
    @inline(__always)
    public func decode(_ codes: UnsafePointer<UInt8>, count: Int, _ p: Parameters, into out: UnsafeMutablePointer<Float>) {
        let table = CodeTable.table(for: scheme.codeDType, hasZeroPoint: !scheme.symmetric)
        table.withUnsafeBufferPointer { t in
            for i in 0..<count { out[i] = (t[Int(codes[i])] - p.zero) * p.scale }
        }
    }
}

/// The value of every code byte, per code element type (what dequantization multiplies by the scale).
public enum CodeTable {
    /// I8 codes: the signed integer.
    public static let signed: [Float] = (0..<256).map { Float(Int8(truncatingIfNeeded: $0)) }
    /// U8 codes with a zero point: the unsigned integer.
    public static let unsigned: [Float] = (0..<256).map { Float($0) }
    /// U8 codes without a zero point: E2M1 in the low nibble.
    public static let e2m1: [Float] = (0..<256).map { MinifloatFormat.e2m1.decode(UInt32($0 & 0xF)) }

    /// The table for a `weight_q` dtype; U8 codes are integers when there is a zero point, E2M1 otherwise.
    public static func table(for dtype: DType, hasZeroPoint: Bool) -> [Float] {
        switch dtype {
        case .i8: signed
        case .u8: hasZeroPoint ? unsigned : e2m1
        case .f8E4M3: Conversion.e4m3Table
        case .f8E5M2: Conversion.e5m2Table
        default: unsigned
        }
    }
}
