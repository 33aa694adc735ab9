#if canImport(Glibc)
import Glibc
#endif

/// Half-quadratic quantization (HQQ, Badri & Shaji 2023; the `hqq` package's `optimize_weights_proximal`):
/// asymmetric integer codes with float zero points, the zero points refined by a proximal solver of
/// min ‖W − Q⁻¹(Q(W))‖_p (p = 0.7) with the scale fixed at its min/max value.
///
/// Per group, with s⁻¹ = (2^b − 1)/(max − min) (1 when max − min ≤ 1e-4, at most 2·10⁴) and z = −min·s⁻¹:
/// each iteration computes Wq = clamp(round(W·s⁻¹ + z)), Wr = (Wq − z)/s⁻¹, the residual
/// e = sign(W − Wr)·relu(|W − Wr| − |W − Wr|^(p−1)/β) and z = mean_group(Wq − (W − e)·s⁻¹); then β ← κβ.
/// The mean |W − Wr| over the whole tensor is tracked and the solver stops at the first iteration that
/// does not improve it, keeping the zero points of the best one (the hqq package keeps the next ones).
public enum HQQ {
    /// Solver settings (the hqq package's defaults).
    public struct Settings: Sendable {
        public var lpNorm: Float = 0.7
        public var beta: Float = 10
        public var kappa: Float = 1.01
        public var iterations = 20
        public init() {}
    }

    /// Rows per unit of parallel work (fixed, so that sums do not depend on the thread count).
    static let rowsPerTask = 16

    /// Quantizes an `[n, k]` row-major matrix with groups of `groupLength` along K.
    /// - Returns: the mean |W − Ŵ| of the kept iteration; `codes` (n·k bytes) and `parameters`
    ///   (n · k/groupLength entries, stored scale = 1/s⁻¹, float zero) are filled.
    @discardableResult
    public static func quantize(_ w: UnsafePointer<Float>, n: Int, k: Int, groupLength: Int, bits: Int,
                                settings: Settings = Settings(), codes: UnsafeMutablePointer<UInt8>,
                                parameters: UnsafeMutablePointer<GroupCodec.Parameters>) -> Double {
        precondition(k % groupLength == 0, "HQQ: group must divide K")
        let groupsPerRow = k / groupLength
        let groups = n * groupsPerRow
        let maxq = Float((1 << bits) - 1)
        let inverseScale = UnsafeMutablePointer<Float>.allocate(capacity: groups)
        let zero = UnsafeMutablePointer<Float>.allocate(capacity: groups)
        var used = UnsafeMutablePointer<Float>.allocate(capacity: groups)
        var bestZero = UnsafeMutablePointer<Float>.allocate(capacity: groups)
        let tasks = (n + rowsPerTask - 1) / rowsPerTask
        let partial = UnsafeMutablePointer<Double>.allocate(capacity: tasks)
        defer { inverseScale.deallocate(); zero.deallocate(); used.deallocate(); bestZero.deallocate(); partial.deallocate() }
        nonisolated(unsafe) let (si, z, part) = (inverseScale, zero, partial)
        func groupRange(_ t: Int) -> Range<Int> { (t * rowsPerTask * groupsPerRow)..<(min(n, (t + 1) * rowsPerTask) * groupsPerRow) }

        parallelFor(tasks) { t in
            for g in groupRange(t) {
                let r = RTN.range(w + g * groupLength, count: groupLength)
                let denom = r.maximum - r.minimum
                var s = abs(denom) <= 1e-4 ? 1 : maxq / denom
                s = min(s, 2e4)
                si[g] = s
                z[g] = -r.minimum * s
            }
        }
        bestZero.update(from: zero, count: groups)

        var beta = settings.beta
        var best = Double.infinity
        let exponent = settings.lpNorm - 1
        let count = Double(n * k)
        for _ in 0..<settings.iterations {
            let b = beta
            nonisolated(unsafe) let u = used
            parallelFor(tasks) { t in
                var sum = 0.0
                for g in groupRange(t) {
                    let x = w + g * groupLength
                    let s = si[g], zg = z[g]
                    var acc: Float = 0
                    var err: Float = 0
                    for j in 0..<groupLength {
                        let q = min(max((x[j] * s + zg).rounded(.toNearestOrEven), 0), maxq)
                        let residual = x[j] - (q - zg) / s
                        let a = abs(residual)
                        err += a
                        let shrunk = a > 0 ? max(a - powf(a, exponent) / b, 0) : 0
                        acc += q - (x[j] - (residual < 0 ? -shrunk : shrunk)) * s
                    }
                    sum += Double(err)
                    u[g] = zg
                    z[g] = acc / Float(groupLength)
                }
                part[t] = sum
            }
            var total = 0.0
            for t in 0..<tasks { total += part[t] }
            let error = total / count
            guard error < best else { break }
            best = error
            swap(&used, &bestZero)   // the zero points of this iteration become the best ones
            beta *= settings.kappa
        }

        nonisolated(unsafe) let bz = bestZero
        parallelFor(tasks) { t in
            for g in groupRange(t) {
                let x = w + g * groupLength, c = codes + g * groupLength
                let s = si[g], zg = bz[g]
                for j in 0..<groupLength {
                    c[j] = UInt8(min(max((x[j] * s + zg).rounded(.toNearestOrEven), 0), maxq))
                }
                let scale = 1 / s
                parameters[g] = GroupCodec.Parameters(scale: scale, storedScale: scale.bitPattern, zero: zg)
            }
        }
        return best
    }
}
