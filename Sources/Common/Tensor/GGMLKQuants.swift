/// ggml's reference quantizers for the K-quant super-blocks (256 values): `quantize_row_q4_K_ref` and
/// `quantize_row_q6_K_ref` with their scale searches `make_qkx2_quants` and `make_qx_quants` (ggml-quants.c).
/// Every float operation is done in the reference's order in single precision, with no fused multiply-add, so
/// the bytes equal a reference build compiled without contraction.
enum KQuants {
    /// ggml's `nearest_int`: round half to even (the reference adds 1.5·2²³ to a float), for |x| < 2²².
    @inline(__always) static func nearestInt(_ x: Float) -> Int {
        guard x.isFinite else { return 0 }
        return Int(max(-4_194_303, min(4_194_303, x)).rounded(.toNearestOrEven))
    }

    @inline(__always) static func half(_ x: Float) -> Float { Float(Float16(x)) }

    /// `make_qkx2_quants`: codes in [0, nmax] with a scale and a non-positive offset (returned as its negation),
    /// searched over `nstep + 1` candidate scales by weighted squared error.
    static func affineSearch(_ x: UnsafePointer<Float>, count n: Int, levels nmax: Int, weights: UnsafePointer<Float>,
                             codes L: UnsafeMutablePointer<UInt8>, rmin: Float, rdelta: Float, steps nstep: Int) -> (scale: Float, min: Float) {
        var lo = x[0], hi = x[0]
        var sumW = weights[0]
        var sumX = sumW * x[0]
        for i in 1..<n {
            if x[i] < lo { lo = x[i] }
            if x[i] > hi { hi = x[i] }
            let w = weights[i]
            sumW += w
            sumX += w * x[i]
        }
        if lo > 0 { lo = 0 }
        if hi == lo {
            for i in 0..<n { L[i] = 0 }
            return (0, -lo)
        }
        let fmax = Float(nmax)
        var iscale = fmax / (hi - lo)
        var scale = 1 / iscale
        var bestError: Float = 0
        for i in 0..<n {
            let l = nearestInt(iscale * (x[i] - lo))
            L[i] = UInt8(max(0, min(nmax, l)))
            var diff = scale * Float(L[i]) + lo - x[i]
            diff = diff * diff
            bestError += weights[i] * diff
        }
        var aux = [UInt8](repeating: 0, count: n)
        for step in 0...nstep {
            iscale = (rmin + rdelta * Float(step) + fmax) / (hi - lo)
            var sumL: Float = 0, sumL2: Float = 0, sumXL: Float = 0
            for i in 0..<n {
                let l = max(0, min(nmax, nearestInt(iscale * (x[i] - lo))))
                aux[i] = UInt8(l)
                let w = weights[i], fl = Float(l)
                sumL += w * fl
                sumL2 += w * fl * fl
                sumXL += w * fl * x[i]
            }
            let d = sumW * sumL2 - sumL * sumL
            guard d > 0 else { continue }
            var thisScale = (sumW * sumXL - sumX * sumL) / d
            var thisMin = (sumL2 * sumX - sumL * sumXL) / d
            if thisMin > 0 {
                thisMin = 0
                thisScale = sumXL / sumL2
            }
            var error: Float = 0
            for i in 0..<n {
                var diff = thisScale * Float(aux[i]) + thisMin - x[i]
                diff = diff * diff
                error += weights[i] * diff
            }
            if error < bestError {
                for i in 0..<n { L[i] = aux[i] }
                bestError = error
                scale = thisScale
                lo = thisMin
            }
        }
        return (scale, -lo)
    }

    /// `make_qx_quants` with `rmse_type` 1 and no importance weights: signed codes in [−nmax, nmax − 1] (stored
    /// + nmax) and the scale that minimises the x²-weighted error over 19 candidate scales.
    static func symmetricSearch(_ x: UnsafePointer<Float>, count n: Int, levels nmax: Int, codes L: UnsafeMutablePointer<Int8>) -> Float {
        var mx: Float = 0, amax: Float = 0
        for i in 0..<n {
            let ax = abs(x[i])
            if ax > amax { amax = ax; mx = x[i] }
        }
        if amax < 1e-15 {
            for i in 0..<n { L[i] = 0 }
            return 0
        }
        @inline(__always) func code(_ v: Float) -> Int { max(-nmax, min(nmax - 1, nearestInt(v))) }
        var iscale = Float(-nmax) / mx
        var sumLX: Float = 0, sumL2: Float = 0
        for i in 0..<n {
            let l = code(iscale * x[i])
            L[i] = Int8(l + nmax)
            let w = x[i] * x[i], fl = Float(l)
            sumLX += w * x[i] * fl
            sumL2 += w * fl * fl
        }
        var scale: Float = sumL2 != 0 ? sumLX / sumL2 : 0
        var best = scale * sumLX
        for step in -9...9 where step != 0 {
            iscale = -(Float(nmax) + 0.1 * Float(step)) / mx
            sumLX = 0
            sumL2 = 0
            for i in 0..<n {
                let fl = Float(code(iscale * x[i]))
                let w = x[i] * x[i]
                sumLX += w * x[i] * fl
                sumL2 += w * fl * fl
            }
            if sumL2 > 0 && sumLX * sumLX > best * sumL2 {
                for i in 0..<n { L[i] = Int8(nmax + code(iscale * x[i])) }
                scale = sumLX / sumL2
                best = scale * sumLX
            }
        }
        return scale
    }

    /// `quantize_row_q4_K_ref` for one super-block: `d`, `dmin` (F16), 12 bytes of 6-bit scales and mins, 128
    /// bytes of codes.
    static func q4_K(_ x: UnsafePointer<Float>, _ y: UnsafeMutableRawPointer) {
        var L = [UInt8](repeating: 0, count: 256)
        var scales = [Float](repeating: 0, count: 8), mins = [Float](repeating: 0, count: 8)
        var weights = [Float](repeating: 0, count: 32)
        var maxScale: Float = 0, maxMin: Float = 0
        L.withUnsafeMutableBufferPointer { lb in
            weights.withUnsafeMutableBufferPointer { wb in
                for j in 0..<8 {
                    let xs = x + 32 * j
                    var sumX2: Float = 0
                    for l in 0..<32 { sumX2 += xs[l] * xs[l] }
                    let av = (sumX2 / 32).squareRoot()
                    for l in 0..<32 { wb[l] = av + abs(xs[l]) }
                    let r = affineSearch(xs, count: 32, levels: 15, weights: wb.baseAddress!, codes: lb.baseAddress! + 32 * j,
                                         rmin: -1, rdelta: 0.1, steps: 20)
                    scales[j] = r.scale
                    mins[j] = r.min
                    if r.scale > maxScale { maxScale = r.scale }
                    if r.min > maxMin { maxMin = r.min }
                }
            }
        }
        let invScale: Float = maxScale > 0 ? 63 / maxScale : 0
        let invMin: Float = maxMin > 0 ? 63 / maxMin : 0
        var packed = [UInt8](repeating: 0, count: 12)
        for j in 0..<8 {
            let ls = min(63, UInt8(truncatingIfNeeded: nearestInt(invScale * scales[j])))
            let lm = min(63, UInt8(truncatingIfNeeded: nearestInt(invMin * mins[j])))
            if j < 4 {
                packed[j] = ls
                packed[j + 4] = lm
            } else {
                packed[j + 4] = (ls & 0xF) | ((lm & 0xF) << 4)
                packed[j - 4] |= (ls >> 4) << 6
                packed[j] |= (lm >> 4) << 6
            }
        }
        let d = half(maxScale / 63), dmin = half(maxMin / 63)
        y.storeBytes(of: Float16(maxScale / 63).bitPattern, as: UInt16.self)
        y.storeBytes(of: Float16(maxMin / 63).bitPattern, toByteOffset: 2, as: UInt16.self)
        for j in 0..<12 { y.storeBytes(of: packed[j], toByteOffset: 4 + j, as: UInt8.self) }
        for j in 0..<8 {
            let (sc, m) = j < 4 ? (packed[j] & 63, packed[j + 4] & 63)
                : ((packed[j + 4] & 0xF) | ((packed[j - 4] >> 6) << 4), (packed[j + 4] >> 4) | ((packed[j] >> 6) << 4))
            let dj = d * Float(sc)
            if dj == 0 { continue }
            let dm = dmin * Float(m)
            for i in 0..<32 { L[32 * j + i] = UInt8(max(0, min(15, nearestInt((x[32 * j + i] + dm) / dj)))) }
        }
        for c in 0..<4 {
            for l in 0..<32 { y.storeBytes(of: L[64 * c + l] | (L[64 * c + l + 32] << 4), toByteOffset: 16 + 32 * c + l, as: UInt8.self) }
        }
    }

    /// `quantize_row_q6_K_ref` for one super-block: `ql[128]`, `qh[64]`, 16 int8 scales, `d` (F16) last.
    static func q6_K(_ x: UnsafePointer<Float>, _ y: UnsafeMutableRawPointer) {
        var L = [Int8](repeating: 0, count: 256)
        var scales = [Float](repeating: 0, count: 16)
        var maxScale: Float = 0, maxAbs: Float = 0
        L.withUnsafeMutableBufferPointer { lb in
            for ib in 0..<16 {
                let s = symmetricSearch(x + 16 * ib, count: 16, levels: 32, codes: lb.baseAddress! + 16 * ib)
                scales[ib] = s
                if abs(s) > maxAbs { maxAbs = abs(s); maxScale = s }
            }
        }
        if maxAbs < 1e-15 {
            (y).initializeMemory(as: UInt8.self, repeating: 0, count: 210)
            return
        }
        let iscale = -128 / maxScale
        let d = half(1 / iscale)
        y.storeBytes(of: Float16(1 / iscale).bitPattern, toByteOffset: 208, as: UInt16.self)
        var sc = [Int8](repeating: 0, count: 16)
        for ib in 0..<16 {
            sc[ib] = Int8(truncatingIfNeeded: min(127, nearestInt(iscale * scales[ib])))
            y.storeBytes(of: sc[ib], toByteOffset: 192 + ib, as: Int8.self)
        }
        for j in 0..<16 {
            let dj = d * Float(sc[j])
            if dj == 0 { continue }
            for i in 0..<16 { L[16 * j + i] = Int8(max(-32, min(31, nearestInt(x[16 * j + i] / dj))) + 32) }
        }
        for h in 0..<2 {
            let b = 128 * h
            for l in 0..<32 {
                let q = (0..<4).map { UInt8(bitPattern: L[b + l + 32 * $0]) }
                y.storeBytes(of: (q[0] & 0xF) | ((q[2] & 0xF) << 4), toByteOffset: 64 * h + l, as: UInt8.self)
                y.storeBytes(of: (q[1] & 0xF) | ((q[3] & 0xF) << 4), toByteOffset: 64 * h + l + 32, as: UInt8.self)
                y.storeBytes(of: (q[0] >> 4) | ((q[1] >> 4) << 2) | ((q[2] >> 4) << 4) | ((q[3] >> 4) << 6), toByteOffset: 128 + 32 * h + l, as: UInt8.self)
            }
        }
    }
}
