import Testing
@testable import Common

#if canImport(Glibc)
import Glibc
#endif

/// The dense normalized Hadamard built from its definition (Sylvester ⊗ base, entry by entry), in Double.
private func denseReference(_ h: Hadamard) -> [Double] {
    let n = h.order, m = h.factor
    var out = [Double](repeating: 0, count: n * n)
    let scale = 1 / Double(n).squareRoot()
    for r in 0..<n {
        for c in 0..<n {
            let (i, j) = (r / m, r % m), (p, q) = (c / m, c % m)
            let s: Double = (i & p).nonzeroBitCount % 2 == 0 ? 1 : -1
            out[r * n + c] = s * Double(h.base[j * m + q]) * scale
        }
    }
    return out
}

private func randomValues(_ count: Int, seed: UInt64) -> [Float] {
    var rng = SplitMix64(seed: seed)
    return (0..<count).map { _ in Float(Int(rng.next() % 2001) - 1000) / 500 }
}

@Suite("Rotations: Hadamard matrices, the fast transform, QuaRot on the tiny models")
struct RotationTests {
    /// Orders 2^k·m for every m of QuaRot's tables that qkit builds, and SmolLM2's sizes.
    static let supported = [1, 2, 4, 8, 64, 12, 24, 20, 40, 28, 56, 36, 72, 52, 60, 120, 108, 140, 280, 96, 576, 1536]

    @Test("H·Hᵀ = I, entries ±1/√n, for the supported orders", arguments: supported)
    func orthogonal(order: Int) throws {
        let h = try Hadamard(order: order)
        #expect(h.order == order && h.power * h.factor == order)
        #expect(h.power & (h.power - 1) == 0)
        let m = h.matrix()
        let e = 1 / Float(order).squareRoot()
        #expect(m.allSatisfy { abs(abs($0) - e) < 1e-5 * e + 1e-7 })
        try BLAS.load()
        var g = [Float](repeating: 0, count: order * order)
        m.withUnsafeBufferPointer { a in
            g.withUnsafeMutableBufferPointer { c in
                BLAS.sgemm(transB: true, m: order, n: order, k: order, a: a.baseAddress!, lda: order, b: a.baseAddress!, ldb: order,
                           c: c.baseAddress!, ldc: order)
            }
        }
        var worst: Double = 0
        for i in 0..<order { for j in 0..<order { worst = max(worst, Double(abs(g[i * order + j] - (i == j ? 1 : 0)))) } }
        #expect(worst < 1e-5, "order \(order): |H·Hᵀ − I| = \(worst)")
    }

    @Test("the dense factor is the smallest constructible one: SmolLM2's 576 = 2^4·36, 1536 = 2^7·12, 64 = 2^6")
    func factors() throws {
        #expect(try Hadamard(order: 576).factor == 36)
        #expect(try Hadamard(order: 576).construction == "paley2(17)")
        #expect(try Hadamard(order: 1536).factor == 12)
        #expect(try Hadamard(order: 1536).construction == "paley1(11)")
        #expect(try Hadamard(order: 64).factor == 1)
        #expect(try Hadamard(order: 52).construction == "paley2(25)")   // GF(5^2)
        #expect(try Hadamard(order: 28).construction == "paley1(27)")   // GF(3^3)
        #expect(try Hadamard(order: 5632).construction == "paley1(43)")  // TinyLlama's FFN width, beyond the peers' tables
        #expect(try Hadamard(order: 4864).construction == "paley2(37)")  // Qwen2.5-0.5B's
    }

    @Test("orders without a construction are refused, naming the size and its factorization",
          arguments: [156, 172, 92, 184, 668, 3, 6, 10, 0])
    func refused(order: Int) {
        #expect((try? Hadamard(order: order)) == nil)
        do {
            _ = try Hadamard(order: order, role: "hidden_size")
        } catch {
            #expect(error.exitStatus == .unavailable)
            #expect(error.description.contains("order \(order) = \(Hadamard.factorization(order))"))
            #expect(error.description.contains("hidden_size"))
        }
        #expect(Hadamard.factorization(156) == "2^2 · 3 · 13")
        #expect(Hadamard.factorization(668) == "2^2 · 167")
    }

    @Test("the fast transform (FWHT × dense factor) equals the dense product, rows and columns, with signs",
          arguments: [64, 96, 576, 1536, 40])
    func fastEqualsDense(order: Int) throws {
        let h = try Hadamard(order: order)
        let reference = denseReference(h)
        let rows = 5
        let x = randomValues(rows * order, seed: UInt64(order))
        let signs = randomValues(order, seed: 77).map { $0 < 0 ? Float(-1) : 1 }
        var y = x
        y.withUnsafeMutableBufferPointer { h.transformRows($0.baseAddress!, rows: rows, signs: signs) }
        var worst: Double = 0
        for r in 0..<rows {
            for c in 0..<order {
                var v = 0.0
                for k in 0..<order { v += Double(x[r * order + k] * signs[k]) * reference[k * order + c] }
                worst = max(worst, abs(v - Double(y[r * order + c])))
            }
        }
        #expect(worst < 1e-4, "rows: \(worst)")
        // Columns: W ← Hᵀ·diag(s)·W for a [order × 3] matrix.
        let w = randomValues(order * 3, seed: 5)
        var z = w
        z.withUnsafeMutableBufferPointer { h.transformColumns($0.baseAddress!, columns: 3, signs: signs) }
        worst = 0
        for r in 0..<order {
            for c in 0..<3 {
                var v = 0.0
                for k in 0..<order { v += reference[k * order + r] * Double(signs[k] * w[k * 3 + c]) }
                worst = max(worst, abs(v - Double(z[r * 3 + c])))
            }
        }
        #expect(worst < 1e-4, "columns: \(worst)")
    }

    /// Logits of seeded sequences.
    func logits(_ source: any WeightSource) throws -> [Float] {
        let model = try DecoderModel(source: source)
        var rng = SplitMix64(seed: 21)
        let seqs: [[Int32]] = [(0..<40).map { _ in Int32(rng.next() % 320) }, (0..<23).map { _ in Int32(rng.next() % 320) }]
        return try model.logits(seqs).array
    }

    @Test("the rotated model gives the original's logits (offline; with the online down_proj Hadamard; without signs)",
          arguments: ["llama3", "qwen2", "qwen3", "mistral", "llama-linear"])
    func rotatedLogits(family: String) throws {
        let original = try CheckpointWeights(path: modelFixtureDirectory() + "/" + family)
        let reference = try logits(original)
        for options in [RotationOptions(), RotationOptions(seed: 3, onlineDown: true), RotationOptions(randomSigns: false, headwise: false)] {
            let rotated = try Rotation.apply(to: original, options: options)
            #expect(rotated.config?["tie_word_embeddings"] == false)
            #expect(rotated.contains("lm_head.weight"))
            let model = try DecoderModel(source: rotated)
            #expect((model.onlineDownHadamard != nil) == options.onlineDown)
            let err = maxRelativeError(try logits(rotated), reference)
            #expect(err < 1e-4, "\(family) \(options): rotated logits differ by \(err)")
            // The norms are ones and the weights really changed.
            #expect(try rotated.float32("model.layers.0.input_layernorm.weight").values.allSatisfy { $0 == 1 })
            #expect(try rotated.float32("model.layers.1.mlp.down_proj.weight").values != original.float32("model.layers.1.mlp.down_proj.weight").values)
        }
    }

    @Test("the written rotated model loads as a plain checkpoint with the same logits; twice the same bytes; rotating it again is refused")
    func writtenModel() throws {
        let scratch = ScratchDirectory("rot")
        let ck = try Checkpoint(path: modelFixtureDirectory() + "/qwen2")
        let original = CheckpointWeights(ck)
        let rotated = try Rotation.apply(to: original, options: RotationOptions(onlineDown: true))
        let report = try Rotation.write(rotated, checkpoint: ck, to: scratch.path + "/a")
        #expect(report.tensors == ck.tensors.count)   // qwen2's fixture has its own lm_head
        _ = try Rotation.write(rotated, checkpoint: ck, to: scratch.path + "/b")
        let a = try MappedFile(path: scratch.path + "/a/model.safetensors"), b = try MappedFile(path: scratch.path + "/b/model.safetensors")
        #expect(Array(a.bytes) == Array(b.bytes))
        let written = try CheckpointWeights(path: scratch.path + "/a")
        #expect(written.config?[RotatedWeights.configKey]?["online"]?["down_proj"]?["size"]?.intValue == 96)
        let err = maxRelativeError(try logits(written), try logits(original))
        #expect(err < 1e-4, "written rotated logits differ by \(err)")
        #expect(throws: RotationError.self) { try Rotation.apply(to: written) }
        // Tied embeddings: lm_head is added.
        let tied = try Checkpoint(path: modelFixtureDirectory() + "/llama3")
        let r2 = try Rotation.write(try Rotation.apply(to: CheckpointWeights(tied)), checkpoint: tied, to: scratch.path + "/tied")
        #expect(r2.tensors == tied.tensors.count + 1)
        #expect(try Checkpoint(path: scratch.path + "/tied")["lm_head.weight"] != nil)
    }
}
