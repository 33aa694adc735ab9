#if canImport(Glibc)
import Glibc
#endif

/// Per-token statistics of a model's next-token distribution, accumulated one vocabulary slice at a time
/// (an online log-sum-exp), so the full `tokens × vocabulary` logits never exist at once.
struct TokenAccumulator {
    var maximum: Float = -.infinity
    /// Σ exp(logit − maximum) over the slices seen.
    var sum: Double = 0
    /// The logit of the target token (when its slice has been seen).
    var target: Float = .nan
    var argmax: Int32 = -1

    var logSumExp: Double { Double(maximum) + log(sum) }
    /// −log p(target).
    var negativeLogLikelihood: Double { logSumExp - Double(target) }

    /// Folds in `logits[0..<n]`, the slice starting at vocabulary id `first`; `targetID` < 0 means none.
    mutating func add(_ logits: UnsafePointer<Float>, count n: Int, first: Int, targetID: Int32) {
        add(logits, count: n, first: first, targetID: targetID, maximum: Self.maximum(logits, n))
    }

    /// `add` with the slice's maximum and its first index already found.
    mutating func add(_ logits: UnsafePointer<Float>, count n: Int, first: Int, targetID: Int32, maximum sliceMaximum: (Float, Int)) {
        let (m, at) = sliceMaximum
        if m > maximum {
            sum *= Double(Kernels.exp(maximum - m))
            maximum = m
            argmax = Int32(first + at)
        }
        sum += Double(Self.sumExp(logits, n, minus: maximum))
        if targetID >= 0 && Int(targetID) >= first && Int(targetID) < first + n { target = logits[Int(targetID) - first] }
    }

    /// The largest value and the first index holding it.
    static func maximum(_ x: UnsafePointer<Float>, _ n: Int) -> (Float, Int) {
        var mx = SIMD8<Float>(repeating: -.infinity)
        var i = 0
        while i + 8 <= n { let v = UnsafeRawPointer(x + i).loadUnaligned(as: SIMD8<Float>.self); mx.replace(with: v, where: v .> mx); i += 8 }
        var m = mx.max()
        while i < n { m = max(m, x[i]); i += 1 }
        var at = 0
        while x[at] != m { at += 1 }
        return (m, at)
    }

    /// Σ exp(x − shift), f32 lanes.
    static func sumExp(_ x: UnsafePointer<Float>, _ n: Int, minus shift: Float) -> Float {
        let s8 = SIMD8<Float>(repeating: shift)
        var acc = SIMD8<Float>()
        var i = 0
        while i + 8 <= n { acc += Kernels.exp(UnsafeRawPointer(x + i).loadUnaligned(as: SIMD8<Float>.self) - s8); i += 8 }
        var s = acc.sum()
        while i < n { s += Kernels.exp(x[i] - shift); i += 1 }
        return s
    }
}

/// KL(P ‖ Q) of two next-token distributions given slice by slice: P is the reference, Q the model under
/// test. With S = Σ e^(p−mP)(p − q) accumulated online, KL = S/Z_P − (lse P − lse Q).
struct DivergenceAccumulator {
    var reference = TokenAccumulator()
    var weighted: Double = 0

    /// Folds in the slice starting at vocabulary id `first` of both models' logits (and updates the
    /// reference's own accumulator).
    mutating func add(reference p: UnsafePointer<Float>, model q: UnsafePointer<Float>, count n: Int, first: Int, targetID: Int32) {
        let sliceMaximum = TokenAccumulator.maximum(p, n)
        let m = sliceMaximum.0
        if m > reference.maximum {
            weighted *= Double(Kernels.exp(reference.maximum - m))
        }
        let shift = max(m, reference.maximum)
        defer { reference.add(p, count: n, first: first, targetID: targetID, maximum: sliceMaximum) }
        let s8 = SIMD8<Float>(repeating: shift)
        var acc = SIMD8<Float>()
        var i = 0
        while i + 8 <= n {
            let pv = UnsafeRawPointer(p + i).loadUnaligned(as: SIMD8<Float>.self)
            let qv = UnsafeRawPointer(q + i).loadUnaligned(as: SIMD8<Float>.self)
            acc += Kernels.exp(pv - s8) * (pv - qv)
            i += 8
        }
        var s = acc.sum()
        while i < n { s += Kernels.exp(p[i] - shift) * (p[i] - q[i]); i += 1 }
        weighted += Double(s)
    }

    /// KL(P ‖ Q) in nats, given Q's accumulator over the same slices.
    func divergence(model q: TokenAccumulator) -> Double {
        max(0, weighted / reference.sum - (reference.logSumExp - q.logSumExp))
    }
}
