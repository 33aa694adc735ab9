import Common
import Foundation

/// `qbench calibrated MODEL --peer PYTHON`: qquant's awq / gptq / smoothquant end to end (whole process: load,
/// tokenize, calibrate, write) against llm-compressor's `oneshot` alone (model loading excluded) on the same
/// protocol in the same run — calibration on the first 32 × 512-token windows of pydoc-howto, perplexity on 20 ×
/// 512 windows of pydoc-tutorial — with the perplexity of each result (qeval for qkit, transformers for the peer:
/// `Tests/peer-checks/calibrated_peer.py`).
func runCalibrated(_ args: [String]) throws {
    guard let modelDir = args.first, !modelDir.hasPrefix("--") else {
        throw UsageError(description: "usage: qbench calibrated MODEL [--algos gptq,awq,smoothquant] [--peer PYTHON] [--assets DIR]")
    }
    let o = try Options(Array(args.dropFirst()))
    let algos = (o.values["algos"] ?? "gptq,awq").split(separator: ",").map(String.init)
    let assets = o.values["assets"] ?? (NSHomeDirectory() + "/.cache/qkit-assets")
    let bin = URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent().path
    let scratch = NSTemporaryDirectory() + "qkit-bench-calibrated-\(getpid())"
    defer { try? FileManager.default.removeItem(atPath: scratch) }
    let schemes = ["gptq": ["--group", "64", "--act-order"], "awq": ["--group", "64"], "smoothquant": []]
    var rows = [["algorithm", "qkit s", "qkit ppl", "llm-compressor s", "llm-compressor ppl", "speed-up"]]
    for algo in algos {
        guard let scheme = schemes[algo] else { throw UsageError(description: "--algos: \(algo) is not gptq, awq or smoothquant") }
        let out = scratch + "/" + algo
        let t0 = monotonicSeconds()
        _ = try capture(bin + "/qquant", [modelDir, "--algo", algo, "--data", assets + "/corpora/pydoc-howto.txt", "--samples", "32",
                                          "--seqlen", "512", "--sampling", "first", "-q", "-o", out] + scheme, showErrors: true)
        let seconds = monotonicSeconds() - t0
        let eval = try capture(bin + "/qeval", [out, "--data", assets + "/corpora/pydoc-tutorial.txt", "--windows", "20", "--seqlen", "512", "--json", "-q"])
        let ppl = ((try? JSONSerialization.jsonObject(with: Data(eval.utf8))) as? [String: Any])?["perplexity"] as? Double
        var peerSeconds: Double?, peerPPL: Double?
        if let python = o.values["peer"] {
            let script = Tool.root + "/Tests/peer-checks/calibrated_peer.py"
            let line = try capture(python, [script, modelDir, algo]).split(separator: "\n").last.map(String.init) ?? ""
            // "gptq: llm-compressor oneshot 130.2 s, ppl 17.9012"
            let numbers = line.split(whereSeparator: { $0 == " " || $0 == "," }).compactMap { Double($0) }
            if numbers.count >= 2 { (peerSeconds, peerPPL) = (numbers[0], numbers[1]) }
        }
        rows.append([algo, fmt(seconds, 1), ppl.map { fmt($0, 4) } ?? "-", peerSeconds.map { fmt($0, 1) } ?? "-",
                     peerPPL.map { fmt($0, 4) } ?? "-", peerSeconds.map { fmt($0 / seconds, 1) + "×" } ?? "-"])
        try? FileManager.default.removeItem(atPath: out)
    }
    printTable(rows)
}
