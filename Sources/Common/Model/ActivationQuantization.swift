/// Quantization of the inputs of the linear layers at run time (W8A8 checkpoints), simulated in f32: each
/// input row is rounded to `bits`-bit symmetric integers and back before the product, as the integer kernel
/// of an inference engine would see it.
///
/// Symmetric INT follows the project convention (compressed-tensors): codes in [−2^(b−1), 2^(b−1) − 1], scale
/// `2·absmax/(2^b − 1)`, values divided by the scale and rounded to nearest, ties to even.
public struct ActivationQuantization: Sendable, Equatable {
    /// Integer width (2 to 8).
    public var bits: Int
    /// Static per-tensor scales by input (calibrated once); an input without one is quantized per token,
    /// dynamically (one scale per row from its absolute maximum).
    public var staticScales: [LinearInput: Float]

    public init(bits: Int = 8, staticScales: [LinearInput: Float] = [:]) {
        self.bits = bits
        self.staticScales = staticScales
    }

    /// The scale of a row (or tensor) whose absolute maximum is `absmax`.
    public func scale(absmax: Float) -> Float {
        let s = 2 * absmax / Float((1 << bits) - 1)
        return s > 0 && s.isFinite ? s : Float.ulpOfOne
    }

    /// Quantizes and dequantizes `rows × columns` values of `input` in place.
    public func apply(_ x: UnsafeMutablePointer<Float>, rows: Int, columns: Int, input: LinearInput) {
        let fixed = staticScales[input]
        let lo = -Float(1 << (bits - 1)), hi = Float((1 << (bits - 1)) - 1)
        nonisolated(unsafe) let x = x
        Kernels.parallelChunks(rows, minimum: 16) { range in
            for r in range {
                let row = x + r * columns
                let s = fixed ?? self.scale(absmax: RTN.range(row, count: columns).absmax)
                Self.roundTrip(row, count: columns, scale: s, lo: lo, hi: hi)
            }
        }
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
