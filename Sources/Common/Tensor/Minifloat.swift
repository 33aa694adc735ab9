import CKernels

/// A small binary floating-point format (FP8, FP6, FP4): sign, `exponentBits`, `mantissaBits`, an
/// exponent bias, subnormals at exponent 0, and one of four conventions for the top of the range.
///
/// Encoding from `Float` rounds to nearest, ties to even, in every format. What happens past the
/// largest finite value, and to NaN, is the format's `overflow` and `special` rule; the presets
/// below follow the peers (torch's `Tensor.to` for FP8, ml_dtypes for FP4/FP6), as checked against
/// `Tests/CommonTests/Fixtures/conversion/encode.bin`.
public struct MinifloatFormat: Sendable, Equatable {
    /// How the top exponent and NaN are used.
    public enum Special: Sendable, Equatable {
        /// IEEE-like: the all-ones exponent holds ±inf (mantissa 0) and NaN (else). E5M2.
        case ieee
        /// "fn" (finite + NaN): no infinities, only the all-ones code (either sign) is NaN. E4M3FN.
        case fn
        /// "fnuz": no infinities, no negative zero; the code 0x80 (sign bit alone) is the only NaN.
        case fnuz
        /// Every code is a finite number: no NaN, no inf. FP4 and FP6 (OCP MX).
        case finite
    }

    /// What encoding does with a value that rounds past the largest finite one (and with ±inf).
    public enum Overflow: Sendable, Equatable {
        /// Clamp to ±max.
        case saturate
        /// Become ±inf (IEEE formats only).
        case infinity
        /// Become NaN.
        case nan
    }

    public let exponentBits: Int
    public let mantissaBits: Int
    public let bias: Int
    public let special: Special
    public let overflow: Overflow
    /// What a NaN input encodes to in a format without NaN (`.finite`): zero of the NaN's sign.
    /// (ml_dtypes gives a zero too, of an arbitrary sign; torch cannot cast to these types.)
    public var totalBits: Int { 1 + exponentBits + mantissaBits }

    public init(exponentBits: Int, mantissaBits: Int, bias: Int, special: Special, overflow: Overflow) {
        self.exponentBits = exponentBits
        self.mantissaBits = mantissaBits
        self.bias = bias
        self.special = special
        self.overflow = overflow
    }

    /// OCP FP8 E4M3 ("e4m3fn"): max 448, NaN 0x7F/0xFF, no inf. Out-of-range values and ±inf
    /// **saturate** to ±448, as torch 2.x's `x.to(torch.float8_e4m3fn)` does on CPU (checked with
    /// torch 2.13; ml_dtypes turns them into NaN instead).
    public static let e4m3fn = MinifloatFormat(exponentBits: 4, mantissaBits: 3, bias: 7, special: .fn, overflow: .saturate)
    /// OCP FP8 E5M2: IEEE-like, max 57344, ±inf 0x7C/0xFC; values that round past the max become ±inf (torch).
    public static let e5m2 = MinifloatFormat(exponentBits: 5, mantissaBits: 2, bias: 15, special: .ieee, overflow: .infinity)
    /// AMD FP8 E4M3FNUZ (bias 8, max 240): out of range and ±inf become NaN 0x80 (torch).
    public static let e4m3fnuz = MinifloatFormat(exponentBits: 4, mantissaBits: 3, bias: 8, special: .fnuz, overflow: .nan)
    /// AMD FP8 E5M2FNUZ (bias 16, max 57344): out of range and ±inf become NaN 0x80 (torch).
    public static let e5m2fnuz = MinifloatFormat(exponentBits: 5, mantissaBits: 2, bias: 16, special: .fnuz, overflow: .nan)
    /// OCP FP4 E2M1 (NVFP4/MXFP4 element): values 0, 0.5, 1, 1.5, 2, 3, 4, 6; saturates at ±6.
    public static let e2m1 = MinifloatFormat(exponentBits: 2, mantissaBits: 1, bias: 1, special: .finite, overflow: .saturate)
    /// OCP FP6 E2M3 (max 7.5), saturating.
    public static let e2m3 = MinifloatFormat(exponentBits: 2, mantissaBits: 3, bias: 1, special: .finite, overflow: .saturate)
    /// OCP FP6 E3M2 (max 28), saturating.
    public static let e3m2 = MinifloatFormat(exponentBits: 3, mantissaBits: 2, bias: 3, special: .finite, overflow: .saturate)

    @inline(__always) var signBit: UInt32 { 1 << UInt32(exponentBits + mantissaBits) }

    /// The largest finite magnitude's code.
    public var maxFiniteCode: UInt32 {
        let e = UInt32(exponentBits), m = UInt32(mantissaBits)
        switch special {
        case .ieee: return (((1 << e) - 2) << m) | ((1 << m) - 1)
        case .fn: return ((1 << (e + m)) - 1) - 1
        case .fnuz, .finite: return (1 << (e + m)) - 1
        }
    }

    /// The largest finite value.
    public var maxFinite: Float { decode(maxFiniteCode) }

    /// Positive infinity's code (`.ieee` only).
    var infinityCode: UInt32 { ((1 << UInt32(exponentBits)) - 1) << UInt32(mantissaBits) }

    /// The NaN code for a NaN of sign bit `sign` (already shifted to the format's sign position).
    @inline(__always) func nanCode(sign: UInt32) -> UInt32 {
        switch special {
        case .ieee, .fn: return (signBit - 1) | sign           // all ones: 0x7F / 0xFF for FP8
        case .fnuz: return signBit                             // 0x80
        case .finite: return sign                              // no NaN: zero
        }
    }

    /// The value of `code` (its low `totalBits` bits).
    public func decode(_ code: UInt32) -> Float {
        let c = code & ((1 << UInt32(totalBits)) - 1)
        switch special {
        case .ieee: return Conversion.decodeMinifloat(c, exponentBits: exponentBits, mantissaBits: mantissaBits, bias: bias, fn: false)
        case .fn: return Conversion.decodeMinifloat(c, exponentBits: exponentBits, mantissaBits: mantissaBits, bias: bias, fn: true)
        case .fnuz:
            return c == signBit ? .nan
                : Conversion.decodeMinifloat(c, exponentBits: exponentBits, mantissaBits: mantissaBits, bias: bias, fn: true, noNaN: true)
        case .finite: return Conversion.decodeMinifloat(c, exponentBits: exponentBits, mantissaBits: mantissaBits, bias: bias, fn: true, noNaN: true)
        }
    }

    /// Encodes `x`, rounding to nearest with ties to even; see `overflow` and `special` for the rest.
    @inline(__always)
    public func encode(_ x: Float) -> UInt32 {
        let bits = x.bitPattern
        let sign = (bits >> 31) << UInt32(exponentBits + mantissaBits)
        let a = bits & 0x7FFF_FFFF
        if a > 0x7F80_0000 { return nanCode(sign: sign) }
        var code: UInt32
        if a < UInt32(128 - bias) << 23 {
            // Below the smallest normal: one subnormal step becomes 1, then round to an integer.
            // The scaling is by a power of two, hence exact; rounding to 2^m lands on the first normal.
            let scaled = Float(bitPattern: a) * Float(sign: .plus, exponent: mantissaBits - 1 + bias, significand: 1)
            code = UInt32(scaled.rounded(.toNearestOrEven))
        } else {
            let shift = UInt32(23 - mantissaBits)
            let r = (a &+ ((1 << (shift - 1)) - 1) &+ ((a >> shift) & 1)) >> shift
            code = r &- (UInt32(127 - bias) << UInt32(mantissaBits))
        }
        if code > maxFiniteCode {
            switch overflow {
            case .saturate: code = maxFiniteCode
            case .infinity: code = special == .ieee ? infinityCode : maxFiniteCode
            case .nan: return nanCode(sign: sign)
            }
        }
        if special == .fnuz, code == 0 { return 0 }   // no negative zero: 0x80 is NaN
        return code | sign
    }

    /// The format as the C encoder (`qkit_encode_minifloat`) takes it: the same rules, as constants.
    var kernelFormat: qkit_minifloat {
        let kind: Int32 = switch special {
        case .ieee: Int32(QKIT_MINIFLOAT_IEEE)
        case .fn: Int32(QKIT_MINIFLOAT_FN)
        case .fnuz: Int32(QKIT_MINIFLOAT_FNUZ)
        case .finite: Int32(QKIT_MINIFLOAT_FINITE)
        }
        let overflowCode = overflow == .infinity && special == .ieee ? infinityCode : maxFiniteCode
        return qkit_minifloat(exponent_bits: Int32(exponentBits), mantissa_bits: Int32(mantissaBits), bias: Int32(bias), special: kind,
                              max_finite_code: maxFiniteCode, overflow_code: overflowCode, nan_code: nanCode(sign: 0),
                              nan_signed: special == .fnuz ? 0 : 1, overflow_is_nan: overflow == .nan ? 1 : 0)
    }

    /// All `2^totalBits` code values, decoded.
    public var table: [Float] { (0..<(UInt32(1) << UInt32(totalBits))).map { decode($0) } }
}

/// OCP E8M0 scale (MX block scale): 8 exponent bits, no sign, no mantissa; 0xFF is NaN, code c is 2^(c−127).
///
/// Encoding follows torch's `x.to(torch.float8_e8m0fnu)` (c10 `fp8e8m0fnu_from_fp32_value`), checked bit for
/// bit with torch 2.13: the sign is ignored (|x| is encoded), NaN and ±inf give 0xFF, and the float's
/// exponent is rounded up when its mantissa is at least one half, a tie (exactly 1.5·2^e) rounding up for
/// normal floats and down for subnormal ones ("RNE with the implicit bit as LSB"); 0 and anything below
/// 2^−127 give 0x00 (= 2^−127); values from 1.5·2^127 up round into 0xFF (NaN), as torch 2.13 does. ml_dtypes
/// differs: it maps 0 to NaN. Quantizers that want a scale that never clips (OCP MX: floor(log2(amax)) − emax) compute the
/// exponent themselves and build the code directly.
public enum E8M0 {
    @inline(__always)
    public static func encode(_ x: Float) -> UInt8 {
        let bits = x.bitPattern
        let e = (bits >> 23) & 0xFF
        if e == 0xFF { return 0xFF }
        let g = bits & 0x40_0000 != 0
        let rs = bits & 0x3F_FFFF != 0
        let up = g && (rs || e > 0)
        return UInt8(truncatingIfNeeded: up ? e + 1 : e)
    }

    @inline(__always)
    public static func decode(_ code: UInt8) -> Float {
        code == 0xFF ? .nan : Float(bitPattern: code == 0 ? 0x0040_0000 : UInt32(code) << 23)
    }
}
