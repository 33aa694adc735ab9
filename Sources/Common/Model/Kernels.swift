#if canImport(Glibc)
import Glibc
#endif

/// Element-wise kernels of the forward pass: SIMD8 loops (AVX2 with the package's flags).
public enum Kernels {
    /// `e^x` for eight lanes, relative error < 2e-7 over the normal range: Cody–Waite reduction to
    /// r ∈ [−ln2/2, ln2/2], a degree-6 polynomial, and the exponent added into the bits. Inputs below
    /// −87.3 give 0 (what softmax needs), above 88.7 give +∞.
    @inline(__always)
    public static func exp(_ x: SIMD8<Float>) -> SIMD8<Float> {
        // Out-of-range lanes compute garbage (no traps in float arithmetic) and are replaced at the end.
        let n = (x * 1.442695041).rounded(.toNearestOrEven)
        var r = x - n * 0.693145752
        r = r - n * 1.42860677e-6
        var p = SIMD8<Float>(repeating: 1.0 / 720)
        p = p * r + 1.0 / 120
        p = p * r + 1.0 / 24
        p = p * r + 1.0 / 6
        p = p * r + 0.5
        p = p * r + 1
        p = p * r + 1
        // n is integral and within ±128: adding 1.5·2²³ + 127 leaves n + 127 in the low mantissa bits.
        let biased = unsafeBitCast(n + 12583039, to: SIMD8<Int32>.self) &- 0x4B40_0000
        let bits = biased &<< 23
        var result = p * unsafeBitCast(bits, to: SIMD8<Float>.self)
        result.replace(with: 0, where: x .< -87.33654)
        result.replace(with: .infinity, where: x .> 88.72283)
        return result
    }

    /// `e^x` for one value, with the same polynomial as the SIMD version (so a row's tail matches its body).
    @inline(__always)
    public static func exp(_ x: Float) -> Float { exp(SIMD8(repeating: x))[0] }

    /// RMSNorm of each of `rows` rows of `x` (length `n`) into `y` (may alias `x`): `y = x / rms(x) · w`, the
    /// mean of squares taken in f32 as transformers does.
    public static func rmsNorm(_ x: UnsafePointer<Float>, weight w: UnsafePointer<Float>, into y: UnsafeMutablePointer<Float>,
                               rows: Int, n: Int, epsilon: Float, stride: Int? = nil, serial: Bool = false) {
        let stride = stride ?? n
        nonisolated(unsafe) let (x, w, y) = (x, w, y)
        parallelChunks(rows, minimum: serial ? Int.max : 64) { range in
            for r in range {
                let xr = x + r * stride, yr = y + r * stride
                var acc = SIMD8<Float>()
                var i = 0
                while i + 8 <= n {
                    let v = UnsafeRawPointer(xr + i).loadUnaligned(as: SIMD8<Float>.self)
                    acc.addProduct(v, v)
                    i += 8
                }
                var sum = acc.sum()
                while i < n { sum += xr[i] * xr[i]; i += 1 }
                let scale = 1 / (sum / Float(n) + epsilon).squareRoot()
                i = 0
                let s8 = SIMD8<Float>(repeating: scale)
                while i + 8 <= n {
                    let v = UnsafeRawPointer(xr + i).loadUnaligned(as: SIMD8<Float>.self)
                    let g = UnsafeRawPointer(w + i).loadUnaligned(as: SIMD8<Float>.self)
                    UnsafeMutableRawPointer(yr + i).storeBytes(of: g * (v * s8), as: SIMD8<Float>.self)
                    i += 8
                }
                while i < n { yr[i] = w[i] * (xr[i] * scale); i += 1 }
            }
        }
    }

    /// `gate[i] = silu(gate[i]) · up[i]` for `count` values (SiLU = x·σ(x)).
    public static func siluMultiply(gate: UnsafeMutablePointer<Float>, up: UnsafePointer<Float>, count: Int, serial: Bool = false) {
        nonisolated(unsafe) let (gate, up) = (gate, up)
        parallelChunks(count / 8, minimum: serial ? Int.max : 4096) { range in
            for c in range {
                let i = c * 8
                let g = UnsafeRawPointer(gate + i).loadUnaligned(as: SIMD8<Float>.self)
                let u = UnsafeRawPointer(up + i).loadUnaligned(as: SIMD8<Float>.self)
                let s = g / (1 + exp(-g))
                UnsafeMutableRawPointer(gate + i).storeBytes(of: s * u, as: SIMD8<Float>.self)
            }
        }
        for i in (count / 8 * 8)..<count {
            let g = gate[i]
            gate[i] = g / (1 + exp(-g)) * up[i]
        }
    }

    /// `x[i] += y[i]`.
    public static func add(_ y: UnsafePointer<Float>, into x: UnsafeMutablePointer<Float>, count: Int) {
        var i = 0
        while i + 8 <= count {
            let a = UnsafeRawPointer(x + i).loadUnaligned(as: SIMD8<Float>.self)
            let b = UnsafeRawPointer(y + i).loadUnaligned(as: SIMD8<Float>.self)
            UnsafeMutableRawPointer(x + i).storeBytes(of: a + b, as: SIMD8<Float>.self)
            i += 8
        }
        while i < count { x[i] += y[i]; i += 1 }
    }

    /// Adds `bias` (length `n`) to each of `rows` rows of `x` (row stride `n`).
    public static func addBias(_ bias: UnsafePointer<Float>, to x: UnsafeMutablePointer<Float>, rows: Int, n: Int) {
        for r in 0..<rows { add(bias, into: x + r * n, count: n) }
    }

    /// In-place softmax of `x[0..<n]`: max-subtracted, the sum in f32.
    public static func softmax(_ x: UnsafeMutablePointer<Float>, count n: Int) {
        guard n > 0 else { return }
        var mx = SIMD8<Float>(repeating: -.infinity)
        var i = 0
        while i + 8 <= n { let v = UnsafeRawPointer(x + i).loadUnaligned(as: SIMD8<Float>.self); mx.replace(with: v, where: v .> mx); i += 8 }
        var m = mx.max()
        while i < n { m = Swift.max(m, x[i]); i += 1 }
        let m8 = SIMD8<Float>(repeating: m)
        var acc = SIMD8<Float>()
        i = 0
        while i + 8 <= n {
            let e = exp(UnsafeRawPointer(x + i).loadUnaligned(as: SIMD8<Float>.self) - m8)
            UnsafeMutableRawPointer(x + i).storeBytes(of: e, as: SIMD8<Float>.self)
            acc += e
            i += 8
        }
        var sum = acc.sum()
        while i < n { let e = exp(x[i] - m); x[i] = e; sum += e; i += 1 }
        let inv = SIMD8<Float>(repeating: 1 / sum)
        i = 0
        while i + 8 <= n {
            let v = UnsafeRawPointer(x + i).loadUnaligned(as: SIMD8<Float>.self)
            UnsafeMutableRawPointer(x + i).storeBytes(of: v * inv, as: SIMD8<Float>.self)
            i += 8
        }
        while i < n { x[i] *= inv[0]; i += 1 }
    }

    /// Runs `body` over `0..<count` cut into one contiguous range per core (inline when small).
    static func parallelChunks(_ count: Int, minimum: Int, _ body: (Range<Int>) -> Void) {
        let threads = Swift.min(BLAS.activeCores, Swift.max(1, count / Swift.max(1, minimum)))
        if threads <= 1 { body(0..<count); return }
        let per = (count + threads - 1) / threads
        parallelFor(threads) { t in
            let lo = t * per, hi = Swift.min(count, lo + per)
            if lo < hi { body(lo..<hi) }
        }
    }
}
