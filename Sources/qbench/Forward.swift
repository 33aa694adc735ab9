import Common
import Foundation

/// `qbench forward MODEL TEXT --peer PYTHON`: tokens/s of qkit's perplexity forward pass (logits and NLL of
/// every position) against transformers f32 on torch CPU, on the same windows, in the same run; plus the
/// achieved GFLOP/s as a fraction of the sgemm rate measured in this run. Both sides report the best of
/// `--reps` passes over the same windows (this machine's timings are noisy).
func runForward(_ args: [String]) throws {
    guard args.count >= 2, !args[0].hasPrefix("--") else {
        throw UsageError(description: "usage: qbench forward MODEL TEXT [--lengths 512,2048] [--tokens 8192] [--reps 2] [--peer PYTHON]")
    }
    let o = try Options(Array(args.dropFirst(2)))
    let lengths = (o.values["lengths"] ?? "512,2048").split(separator: ",").compactMap { Int($0) }
    let tokenBudget = try o.int("tokens", 8192)
    let reps = try o.int("reps", 2)
    let model = try DecoderModel(source: openWeights(path: args[0]))
    let text = try String(contentsOfFile: args[1], encoding: .utf8)
    let ids = try Tokenizer(directory: args[0]).encode(text)
    let c = model.config

    // sgemm rate of the same BLAS path (row blocks over all cores), on a square product and on the MLP shape.
    var peak = 0.0
    for (m, k, n) in [(2048, 2048, 2048), (2048, c.hiddenSize, 2 * c.intermediateSize)] {
        let a = Matrix(rows: m, columns: k), w = Matrix(rows: n, columns: k), out = Matrix(rows: m, columns: n)
        for i in 0..<(m * k) { a.pointer[i] = Float(i % 7) * 0.1 }
        for i in 0..<(n * k) { w.pointer[i] = Float(i % 5) * 0.1 }
        let t = bestOf(4) { BLAS.linear(a.pointer, m: m, k: k, weight: w.pointer, n: n, into: out.pointer) }
        peak = max(peak, 2 * Double(m * n * k) / t / 1e9)
    }
    var rows = [["L", "windows", "qkit tok/s", "torch tok/s", "ratio", "qkit GFLOP/s", "of sgemm", "ppl qkit", "ppl torch"]]
    for L in lengths {
        let windows = EvaluationWindows(tokens: ids, length: L, limit: max(1, tokenBudget / L), bos: nil)
        _ = try Evaluator.run(model: model, windows: EvaluationWindows(tokens: ids, length: L, limit: 1, bos: nil))  // warm-up
        var r = try Evaluator.run(model: model, windows: windows)
        for _ in 1..<max(1, reps) {
            let again = try Evaluator.run(model: model, windows: windows)
            if again.seconds < r.seconds { r = again }
        }
        // FLOPs: 2 per weight per token (linears and head), attention 4·qDim per visible key per layer.
        let linear = Double(c.hiddenSize * (c.qDim + 2 * c.kvDim) + c.qDim * c.hiddenSize + 3 * c.hiddenSize * c.intermediateSize)
        let perToken = 2 * (linear * Double(c.layerCount) + Double(c.vocabularySize * c.hiddenSize))
        let attention = 4 * Double(c.qDim) * Double(L) * Double(L + 1) / 2 * Double(c.layerCount)
        let flops = Double(windows.windows.count) * (perToken * Double(L) + attention)
        let gflops = flops / r.seconds / 1e9
        var peer: [String: Any] = [:]
        if let python = o.values["peer"] {
            let script = Tool.root + "/Tests/peer-checks/forward_bench.py"
            let out = try capture(python, [script, args[0], args[1], String(L), String(windows.windows.count), String(reps)])
            peer = (try? JSONSerialization.jsonObject(with: Data(out.split(separator: "\n").last.map(String.init)?.utf8 ?? "".utf8))) as? [String: Any] ?? [:]
        }
        let torch = peer["tokens_per_second"] as? Double
        rows.append([String(L), String(windows.windows.count), fmt(r.tokensPerSecond, 0), torch.map { fmt($0, 0) } ?? "-",
                     torch.map { fmt(r.tokensPerSecond / $0, 2) + "×" } ?? "-", fmt(gflops, 1), fmt(100 * gflops / peak, 0) + "%",
                     fmt(r.perplexity, 4), (peer["ppl"] as? Double).map { fmt($0, 4) } ?? "-"])
    }
    printTable(rows)
    print("sgemm through the same BLAS path: \(fmt(peak, 1)) GFLOP/s (best of the square and MLP shapes)")
}

enum Tool {
    /// The package root, from this file's location.
    static let root: String = {
        var url = URL(fileURLWithPath: #filePath)
        for _ in 0..<3 { url.deleteLastPathComponent() }
        return url.path
    }()
}
