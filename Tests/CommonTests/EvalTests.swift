import Testing
@testable import Common
#if canImport(Glibc)
import Glibc
#endif

@Suite("Evaluation: windows, online statistics, perplexity and KL")
struct EvalTests {
    @Test("windows follow the GPTQ/AWQ protocol, with and without BOS")
    func windows() {
        let tokens = (0..<10).map(Int32.init)
        let w = EvaluationWindows(tokens: tokens, length: 4, limit: nil, bos: nil)
        #expect(w.windows == [[0, 1, 2, 3], [4, 5, 6, 7]])
        let b = EvaluationWindows(tokens: tokens, length: 4, limit: nil, bos: 99)
        #expect(b.windows == [[99, 0, 1, 2], [99, 3, 4, 5], [99, 6, 7, 8]])
        #expect(EvaluationWindows(tokens: tokens, length: 4, limit: 1, bos: nil).windows == [[0, 1, 2, 3]])
        #expect(EvaluationWindows(tokens: tokens, length: 11, limit: nil, bos: nil).windows.isEmpty)
    }

    @Test("online log-sum-exp, NLL, argmax and KL over uneven slices equal a direct double computation")
    func accumulators() {
        var rng = SplitMix64(seed: 7)
        let n = 1000
        func sample() -> [Float] { (0..<n).map { _ in Float(Double(rng.next() % 100_000) / 5_000 - 10) } }
        for trial in 0..<20 {
            let p = sample(), q = sample()
            let target = Int32(trial * 37 % n)
            var a = TokenAccumulator(), d = DivergenceAccumulator()
            var start = 0
            for size in [1, 7, 8, 9, 100, 250, 625] where start < n {
                let len = min(size, n - start)
                p.withUnsafeBufferPointer { pp in
                    q.withUnsafeBufferPointer { qq in
                        a.add(qq.baseAddress! + start, count: len, first: start, targetID: target)
                        d.add(reference: pp.baseAddress! + start, model: qq.baseAddress! + start, count: len, first: start, targetID: target)
                    }
                }
                start += len
            }
            func lse(_ x: [Float]) -> Double { let m = Double(x.max()!); return m + log(x.reduce(0.0) { $0 + exp(Double($1) - m) }) }
            let lq = lse(q), lp = lse(p)
            let kl = zip(p, q).reduce(0.0) { $0 + exp(Double($1.0) - lp) * ((Double($1.0) - lp) - (Double($1.1) - lq)) }
            #expect(abs(a.logSumExp - lq) < 1e-5 * abs(lq))
            #expect(abs(a.negativeLogLikelihood - (lq - Double(q[Int(target)]))) < 1e-5)
            #expect(Int(a.argmax) == q.firstIndex(of: q.max()!)!)
            #expect(Int(d.reference.argmax) == p.firstIndex(of: p.max()!)!)
            #expect(abs(d.divergence(model: a) - kl) < 1e-5 * max(1, kl), "KL \(d.divergence(model: a)) vs \(kl)")
        }
    }

    @Test("perplexity and KL of the evaluator equal the ones computed from full logits")
    func evaluatorOnTinyModels() throws {
        let model = try DecoderModel(path: modelFixtureDirectory() + "/llama3")
        let other = try DecoderModel(path: modelFixtureDirectory() + "/qwen3")
        var rng = SplitMix64(seed: 3)
        let tokens = (0..<130).map { _ in Int32(rng.next() % 320) }
        let windows = EvaluationWindows(tokens: tokens, length: 32, limit: nil, bos: nil)
        #expect(windows.windows.count == 4)
        let r = try Evaluator.run(model: model, reference: other, windows: windows)
        let la = try model.logits(windows.windows), lb = try other.logits(windows.windows)
        var nll = 0.0, refNLL = 0.0, kl: [Double] = [], agree = 0
        for (s, w) in windows.windows.enumerated() {
            for t in 0..<31 {
                let row = s * 32 + t
                let a = Array(UnsafeBufferPointer(start: la.row(row), count: 320)).map(Double.init)
                let b = Array(UnsafeBufferPointer(start: lb.row(row), count: 320)).map(Double.init)
                func lse(_ x: [Double]) -> Double { let m = x.max()!; return m + log(x.reduce(0) { $0 + exp($1 - m) }) }
                let sa = lse(a), sb = lse(b)
                nll += sa - a[Int(w[t + 1])]
                refNLL += sb - b[Int(w[t + 1])]
                kl.append(zip(b, a).reduce(0.0) { $0 + exp($1.0 - sb) * (($1.0 - sb) - ($1.1 - sa)) })
                if a.firstIndex(of: a.max()!) == b.firstIndex(of: b.max()!) { agree += 1 }
            }
        }
        let ppl = exp(nll / Double(4 * 31)), refPPL = exp(refNLL / Double(4 * 31))
        #expect(abs(r.perplexity - ppl) < 1e-5 * ppl)
        let c = try #require(r.comparison)
        #expect(abs(c.referencePerplexity - refPPL) < 1e-5 * refPPL)
        #expect(abs(c.meanDivergence - kl.reduce(0, +) / Double(kl.count)) < 1e-5)
        #expect(c.top1Agreements == agree)
        #expect(r.predictedTokens == 124 && r.forwardTokens == 128)
        // Against itself: no divergence, full agreement, no Δppl.
        let same = try Evaluator.run(model: model, reference: model, windows: windows)
        #expect(same.comparison!.meanDivergence < 1e-6 && same.comparison!.top1Agreement == 1)
        #expect(same.comparison!.referencePerplexity == same.perplexity)
    }

    @Test("the bootstrap interval is reproducible and brackets the perplexity")
    func bootstrap() {
        let nll = [2.1, 2.5, 2.7, 3.0, 2.2, 2.9, 2.4, 2.6]
        let a = bootstrapPerplexityInterval(windowNLL: nll), b = bootstrapPerplexityInterval(windowNLL: nll)
        #expect(a == b)
        let ppl = exp(nll.reduce(0, +) / Double(nll.count))
        #expect(a.lowerBound < ppl && ppl < a.upperBound)
        #expect(bootstrapPerplexityInterval(windowNLL: [2]) == exp(2.0)...exp(2.0))
        #expect(percentile([1, 2, 3, 4], 0.5) == 2.5)
    }

    @Test("XXH64 matches the reference test vectors")
    func xxh64() {
        func h(_ s: String) -> UInt64 { Array(s.utf8).withUnsafeBytes { XXH64.hash($0) } }
        #expect(h("") == 0xEF46DB3751D8E999)
        #expect(h("a") == 0xD24EC4F1A98C6E5B)
        #expect(h("abc") == 0x44BC2CF5AD770999)
        #expect(h("The quick brown fox jumps over the lazy dog") == 0x0B242D361FDA71BC)
        #expect(XXH64.hex(0xab) == "00000000000000ab")
    }

    @Test("XXH64 of a mapped file, hashed chunk by chunk, equals the one-shot hash", arguments: [0, 31, 32, 33, 1000, 65 << 20])
    func xxh64File(size: Int) throws {
        let dir = ggufTemporaryDirectory("xxh")
        defer { removeTree(dir) }
        var rng = SplitMix64(seed: UInt64(size))
        let bytes = (0..<size).map { _ in UInt8(truncatingIfNeeded: rng.next()) }
        let fd = open(dir + "/f", O_WRONLY | O_CREAT | O_TRUNC, 0o644)
        #expect(fd >= 0)
        #expect(bytes.withUnsafeBytes { write(fd, $0.baseAddress, $0.count) } == size)
        close(fd)
        let file = try MappedFile(path: dir + "/f")
        #expect(XXH64.hash(file) == bytes.withUnsafeBytes { XXH64.hash($0) })
    }
}
