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
