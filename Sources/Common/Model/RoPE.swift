#if canImport(Glibc)
import Glibc
#endif

/// Rotary position embeddings as transformers computes them (the "rotate half" layout: dimension i pairs
/// with i + d/2), in f32 with the same order of operations, so positions far into a window round alike.
public struct RotaryEmbedding: Sendable {
    public let headDim: Int
    /// cos and sin of `position · inverseFrequency[i]`, `[positions × headDim/2]`.
    public let cos: [Float]
    public let sin: [Float]
    public let positions: Int

    /// Tables for positions `0..<positions`. `dynamic` scaling depends on the longest sequence of the batch,
    /// which is `positions`.
    public init(_ rope: RoPEScaling, headDim: Int, positions: Int) {
        self.headDim = headDim
        self.positions = positions
        let invFreq = Self.inverseFrequencies(rope, headDim: headDim, sequenceLength: positions)
        let half = headDim / 2
        var c = [Float](repeating: 0, count: positions * half), s = c
        for p in 0..<positions {
            for i in 0..<half {
                let angle = Float(p) * invFreq[i]
                c[p * half + i] = cosf(angle)
                s[p * half + i] = sinf(angle)
            }
        }
        cos = c
        sin = s
    }

    /// `1 / θ^(2i/d)` adjusted by the scaling kind (transformers' `_compute_*_parameters`).
    public static func inverseFrequencies(_ rope: RoPEScaling, headDim d: Int, sequenceLength: Int) -> [Float] {
        var base = rope.theta
        if rope.kind == .dynamic && sequenceLength > rope.originalContext {
            let f = rope.factor
            base *= pow(f * Double(sequenceLength) / Double(rope.originalContext) - (f - 1), Double(d) / Double(d - 2))
        }
        let baseF = Float(base)
        var inv = (0..<(d / 2)).map { i -> Float in 1 / powf(baseF, Float(2 * i) / Float(d)) }
        switch rope.kind {
        case .standard, .dynamic: break
        case .linear: inv = inv.map { $0 / Float(rope.factor) }
        case .llama3:
            let factor = Float(rope.factor), old = Float(rope.originalContext)
            let low = Float(rope.lowFrequencyFactor), high = Float(rope.highFrequencyFactor)
            let lowWavelength = old / low, highWavelength = old / high
            inv = inv.map { f in
                let wavelength = 2 * Float.pi / f
                let scaled = wavelength > lowWavelength ? f / factor : f
                guard !(wavelength < highWavelength) && !(wavelength > lowWavelength) else { return scaled }
                let smooth = (old / wavelength - low) / (high - low)
                return (1 - smooth) * scaled / factor + smooth * scaled
            }
        }
        return inv
    }

    /// llama.cpp's `rope_freqs` for Llama 3's scaling: per frequency the divisor of `1 / θ^(2i/d)` (1 for short
    /// wavelengths, `factor` for long ones, the smooth blend between). Computed in F32 in the order of
    /// `convert_hf_to_gguf.py`, which works on F32 torch tensors, so the bits are the converter's.
    public static func llama3Factors(_ rope: RoPEScaling, headDim d: Int) -> [Float] {
        let old = Float(rope.originalContext), low = Float(rope.lowFrequencyFactor), high = Float(rope.highFrequencyFactor)
        let factor = Float(rope.factor)
        return (0..<(d / 2)).map { i in
            let freq = 1 / powf(Float(rope.theta), Float(2 * i) / Float(d))
            let wavelength = Float(2 * Double.pi) / freq
            if wavelength < old / high { return 1 }
            if wavelength > old / low { return factor }
            let smooth = (old / wavelength - low) / (high - low)
            return 1 / ((1 - smooth) / factor + smooth)
        }
    }

    /// The Llama 3 scaling whose `llama3Factors` are `factors` (a GGUF's `rope_freqs`), or nil when none is.
    /// Only the ratios of the original context and the two frequency factors fix the factors, so the original
    /// context is taken as 8192 (Llama 3.1's); with one blended frequency the low factor is taken as 1, with none
    /// the low and high factors as Llama 3.1's 1 and 4. Whatever is found must reproduce `factors` (to 1 part in 10^6).
    public static func llama3Scaling(fromFactors factors: [Float], theta: Double, headDim d: Int) -> RoPEScaling? {
        guard factors.count == d / 2, let top = factors.max(), top > 1, factors.allSatisfy({ $0 >= 1 && $0.isFinite }) else { return nil }
        var r = RoPEScaling(kind: .llama3, theta: theta, factor: Double(top), lowFrequencyFactor: 1, highFrequencyFactor: 4, originalContext: 8192)
        // Blended frequencies: s = (1/f − 1/F)/(1 − 1/F) = old/(h − l) · 1/λ − l/(h − l), a line in 1/λ.
        let blended = factors.indices.filter { factors[$0] > 1.0001 && factors[$0] < top * 0.9999 }
        let wavelength = { (i: Int) in 2 * Double.pi * pow(theta, Double(2 * i) / Double(d)) }
        let smooth = { (i: Int) in (1 / Double(factors[i]) - 1 / r.factor) / (1 - 1 / r.factor) }
        if blended.count >= 2 {
            let points = blended.map { (1 / wavelength($0), smooth($0)) }
            let n = Double(points.count)
            let mx = points.map(\.0).reduce(0, +) / n, my = points.map(\.1).reduce(0, +) / n
            let sxx = points.map { ($0.0 - mx) * ($0.0 - mx) }.reduce(0, +), sxy = points.map { ($0.0 - mx) * ($0.1 - my) }.reduce(0, +)
            guard sxx > 0, sxy > 0 else { return nil }
            let slope = sxy / sxx, intercept = my - slope * mx
            let span = 8192 / slope  // h − l
            r.lowFrequencyFactor = -intercept * span
            r.highFrequencyFactor = r.lowFrequencyFactor + span
        } else if let i = blended.first {
            // One blended frequency: with the low factor 1 (every Llama 3 release's), s = (old/λ − 1)/(h − 1).
            guard smooth(i) > 0 else { return nil }
            r.highFrequencyFactor = 1 + (8192 / wavelength(i) - 1) / smooth(i)
        }
        // The factors are F32, so the fit is close, not exact: the coarsest rounding that reproduces them.
        for scale in [1.0, 1e2, 1e4, 1e6] {
            var q = r
            q.factor = (r.factor * scale).rounded() / scale
            q.lowFrequencyFactor = (r.lowFrequencyFactor * scale).rounded() / scale
            q.highFrequencyFactor = (r.highFrequencyFactor * scale).rounded() / scale
            guard q.factor > 1, q.lowFrequencyFactor > 0, q.highFrequencyFactor > q.lowFrequencyFactor else { continue }
            if zip(llama3Factors(q, headDim: d), factors).allSatisfy({ abs($0 - $1) <= 1e-6 * $1 }) { return q }
        }
        return nil
    }

    /// Rotates `heads` vectors of `headDim` starting at `x` (stride `headDim`) for position `position`.
    @inline(__always)
    public func apply(_ x: UnsafeMutablePointer<Float>, heads: Int, position: Int) {
        let half = headDim / 2
        cos.withUnsafeBufferPointer { c in
            sin.withUnsafeBufferPointer { s in
                let cp = c.baseAddress! + position * half, sp = s.baseAddress! + position * half
                for h in 0..<heads {
                    let v = x + h * headDim
                    var i = 0
                    while i + 8 <= half {
                        let a = UnsafeRawPointer(v + i).loadUnaligned(as: SIMD8<Float>.self)
                        let b = UnsafeRawPointer(v + half + i).loadUnaligned(as: SIMD8<Float>.self)
                        let cc = UnsafeRawPointer(cp + i).loadUnaligned(as: SIMD8<Float>.self)
                        let ss = UnsafeRawPointer(sp + i).loadUnaligned(as: SIMD8<Float>.self)
                        UnsafeMutableRawPointer(v + i).storeBytes(of: a * cc - b * ss, as: SIMD8<Float>.self)
                        UnsafeMutableRawPointer(v + half + i).storeBytes(of: b * cc + a * ss, as: SIMD8<Float>.self)
                        i += 8
                    }
                    while i < half {
                        let a = v[i], b = v[half + i]
                        v[i] = a * cp[i] - b * sp[i]
                        v[half + i] = b * cp[i] + a * sp[i]
                        i += 1
                    }
                }
            }
        }
    }
}
