/// Quantization of the inputs of the linear layers at run time (W8A8 and W4A4 checkpoints), simulated in f32:
/// each input row is rounded to the activation format and back before the product, as the integer or FP4
/// kernel of an inference engine would see it.
///
/// Three kinds, all dynamic unless a static scale is given:
/// - per-token INT (`groupSize == nil`, SmoothQuant W8A8): the project convention (compressed-tensors), codes in
///   [−2^(b−1), 2^(b−1) − 1], scale `2·absmax/(2^b − 1)` per row (or a static per-tensor scale);
/// - per-token groups of INT (`groupSize = 64`, SVDQuant INT4) as Nunchaku's `quantize_w4a4_act` runs them:
///   scale `absmax/(2^(b−1) − 1)` per group of 64 values of a row, rounded to F16, codes clamped to
///   [−2^(b−1), 2^(b−1) − 1];
/// - NVFP4 (`format == .nvfp4`, SVDQuant NVFP4) as Nunchaku's `quantize_w4a4_fp4_from_fpsum_warp` runs them:
///   groups of 16, scale `min(absmax/6, 448)`, values multiplied by the reciprocal of that scale and rounded to
///   E2M1 (nearest, ties to even, saturating at ±6), dequantized with the scale rounded to FP8 E4M3. Nunchaku
///   keeps no per-tensor scale for activations (the FP8 group scale is the absolute one).
///
/// Values are divided by the scale and rounded to nearest, ties to even.
public struct ActivationQuantization: Sendable, Equatable {
    /// The element format of the activations.
    public enum Format: String, Sendable, Equatable {
        /// Symmetric integers of `bits` bits.
        case int
        /// E2M1 elements, groups of 16, FP8 E4M3 group scales.
        case nvfp4
    }

    /// Element format.
    public var format: Format
    /// Integer width (2 to 8; 4 for NVFP4).
    public var bits: Int
    /// Values per scale along a row; `nil`: one scale per row (per token).
    public var groupSize: Int?
    /// Static per-tensor scales by input (calibrated once); an input without one is quantized per token,
    /// dynamically (one scale per row, or per group of a row, from its absolute maximum).
    public var staticScales: [LinearInput: Float]

    public init(bits: Int = 8, staticScales: [LinearInput: Float] = [:], format: Format = .int, groupSize: Int? = nil) {
        self.bits = bits
        self.staticScales = staticScales
        self.format = format
        self.groupSize = format == .nvfp4 ? 16 : groupSize
    }

    /// SVDQuant's INT4 activations: per token, groups of 64, symmetric.
    public static let int4Group64 = ActivationQuantization(bits: 4, groupSize: 64)
    /// SVDQuant's NVFP4 activations: E2M1, groups of 16, FP8 E4M3 scales.
    public static let nvfp4 = ActivationQuantization(bits: 4, format: .nvfp4)

    /// The scale of a row (or tensor) whose absolute maximum is `absmax` (per-token INT).
    public func scale(absmax: Float) -> Float {
        let s = 2 * absmax / Float((1 << bits) - 1)
        return s > 0 && s.isFinite ? s : Float.ulpOfOne
    }

    /// Quantizes and dequantizes `rows × columns` values of `input` in place.
    public func apply(_ x: UnsafeMutablePointer<Float>, rows: Int, columns: Int, input: LinearInput) {
        let fixed = staticScales[input]
        nonisolated(unsafe) let x = x
        Kernels.parallelChunks(rows, minimum: 16) { range in
            for r in range { self.applyRow(x + r * columns, count: columns, fixedScale: fixed) }
        }
    }

    /// Quantizes and dequantizes one row of `count` values in place (`fixedScale`: a static per-tensor scale of
    /// per-token INT).
    @inline(__always)
    public func applyRow(_ row: UnsafeMutablePointer<Float>, count: Int, fixedScale: Float? = nil) {
        let lo = -Float(1 << (bits - 1)), hi = Float((1 << (bits - 1)) - 1)
        switch (format, groupSize) {
        case (.nvfp4, _):
            var g = 0
            while g < count {
                let n = min(16, count - g)
                Self.nvfp4RoundTrip(row + g, count: n)
                g += n
            }
        case (.int, let gs?):
            var g = 0
            while g < count {
                let n = min(gs, count - g)
                let a = RTN.range(row + g, count: n).absmax
                let s = Float(Float16(a / hi))
                if s > 0 && s.isFinite {
                    Self.roundTrip(row + g, count: n, scale: s, lo: lo, hi: hi)
                } else {
                    for i in 0..<n { row[g + i] = 0 }
                }
                g += n
            }
        case (.int, nil):
            let s = fixedScale ?? scale(absmax: RTN.range(row, count: count).absmax)
            Self.roundTrip(row, count: count, scale: s, lo: lo, hi: hi)
        }
    }

    /// One NVFP4 group of `count` (≤ 16) values, as Nunchaku quantizes activations.
    @inline(__always)
    static func nvfp4RoundTrip(_ x: UnsafeMutablePointer<Float>, count: Int) {
        let a = RTN.range(x, count: count).absmax
        let s = min(a / 6, 448)
        guard s > 0, s.isFinite else {
            for i in 0..<count { x[i] = 0 }
            return
        }
        let r = 1 / s
        let stored = Conversion.e4m3Table[Int(Conversion.float8E4M3Bits(s))]
        for i in 0..<count { x[i] = e2m1(x[i] * r) * stored }
    }

    /// The nearest E2M1 value of `v` (ties to even mantissa, saturating at ±6).
    @inline(__always)
    public static func e2m1(_ v: Float) -> Float {
        let a = abs(v)
        let q: Float = a <= 0.25 ? 0 : a < 0.75 ? 0.5 : a <= 1.25 ? 1 : a < 1.75 ? 1.5 : a <= 2.5 ? 2 : a < 3.5 ? 3 : a <= 5 ? 4 : 6
        return v < 0 ? -q : q
    }

    /// `x = clamp(round(x / s), lo, hi) · s`, eight at a time.
    @inline(__always)
    static func roundTrip(_ x: UnsafeMutablePointer<Float>, count: Int, scale s: Float, lo: Float, hi: Float) {
        let magic: Float = 12_582_912   // 1.5·2^23: adding and subtracting it rounds ties to even
        var i = 0
        let raw = UnsafeMutableRawPointer(x)
        while i + 8 <= count {
            var v = raw.loadUnaligned(fromByteOffset: 4 * i, as: SIMD8<Float>.self) / SIMD8(repeating: s)
            v = v.replacing(with: SIMD8(repeating: lo), where: v .< lo).replacing(with: SIMD8(repeating: hi), where: v .> hi)
            v = (v + SIMD8(repeating: magic)) - SIMD8(repeating: magic)
            raw.storeBytes(of: v * SIMD8(repeating: s), toByteOffset: 4 * i, as: SIMD8<Float>.self)
            i += 8
        }
        while i < count {
            var v = x[i] / s
            v = v < lo ? lo : (v > hi ? hi : v)
            x[i] = ((v + magic) - magic) * s
            i += 1
        }
    }
}
