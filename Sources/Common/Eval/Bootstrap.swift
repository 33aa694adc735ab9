#if canImport(Glibc)
import Glibc
#endif

/// A 95% bootstrap interval of perplexity over windows: windows resampled with replacement, perplexity
/// = exp(mean window NLL) of each resample, the 2.5th and 97.5th percentiles. The generator is seeded,
/// so the interval is the same on every run.
public func bootstrapPerplexityInterval(windowNLL: [Double], resamples: Int = 1000, seed: UInt64 = 0x9E3779B97F4A7C15) -> ClosedRange<Double> {
    let n = windowNLL.count
    guard n > 1 else {
        let p = exp(windowNLL.first ?? .nan)
        return p...p
    }
    var rng = SplitMix64(seed: seed)
    var values: [Double] = []
    values.reserveCapacity(resamples)
    for _ in 0..<resamples {
        var sum = 0.0
        for _ in 0..<n { sum += windowNLL[Int(rng.next() % UInt64(n))] }
        values.append(exp(sum / Double(n)))
    }
    values.sort()
    return percentile(values, 0.025)...percentile(values, 0.975)
}

/// The `q` quantile of sorted `values`, linearly interpolated (numpy's default).
public func percentile(_ sorted: [Double], _ q: Double) -> Double {
    guard !sorted.isEmpty else { return .nan }
    let pos = q * Double(sorted.count - 1)
    let lo = Int(pos.rounded(.down)), hi = min(sorted.count - 1, lo + 1)
    return sorted[lo] + (sorted[hi] - sorted[lo]) * (pos - Double(lo))
}

/// SplitMix64: a small, fast, seedable generator (Steele, Lea and Flood 2014).
public struct SplitMix64: RandomNumberGenerator, Sendable {
    var state: UInt64
    public init(seed: UInt64) { state = seed }
    public mutating func next() -> UInt64 {
        state &+= 0x9E3779B97F4A7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58476D1CE4E5B9
        z = (z ^ (z >> 27)) &* 0x94D049BB133111EB
        return z ^ (z >> 31)
    }
}
