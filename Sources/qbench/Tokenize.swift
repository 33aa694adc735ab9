import Common
import Foundation

/// `qbench tokenize TOKENIZER [--corpus FILE]... [--peer PYTHON] [--reps 3] [--threads N]`: encode MB/s of qkit's
/// tokenizer against Hugging Face `tokenizers` (`Tokenizer.encode`, one text, no special tokens) on the same
/// corpora in the same run, and whether the ids are identical. TOKENIZER is a `tokenizer.json` or a model
/// directory; the corpora default to the pydoc texts of the asset cache.
func runTokenize(_ args: [String]) throws {
    let usage = "usage: qbench tokenize TOKENIZER.json|DIR [--corpus FILE]... [--peer PYTHON] [--reps 3]"
    guard let path = args.first, !path.hasPrefix("--") else { throw UsageError(description: usage) }
    var rest = Array(args.dropFirst())
    var corpora: [String] = []
    while let i = rest.firstIndex(of: "--corpus"), i + 1 < rest.count {
        corpora.append(rest[i + 1])
        rest.removeSubrange(i...i + 1)
    }
    let o = try Options(rest)
    let reps = try o.int("reps", 3)
    if corpora.isEmpty {
        let assets = ProcessInfo.processInfo.environment["QKIT_ASSETS"] ?? (NSHomeDirectory() + "/.cache/qkit-assets")
        let dir = assets + "/corpora"
        corpora = ((try? FileManager.default.contentsOfDirectory(atPath: dir)) ?? [])
            .filter { $0.hasPrefix("pydoc-") && $0.hasSuffix(".txt") }.sorted().map { dir + "/" + $0 }
        guard !corpora.isEmpty else { throw UsageError(description: "no corpora in \(dir): run scripts/fetch-assets.sh or pass --corpus") }
    }
    var isDirectory: ObjCBool = false
    _ = FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory)
    let jsonPath = isDirectory.boolValue ? path + "/tokenizer.json" : path
    let t0 = now()
    let tokenizer = isDirectory.boolValue ? try Tokenizer(directory: path) : try Tokenizer(path: path)
    print("loaded \(jsonPath) in \(fmt((now() - t0) * 1000, 0)) ms (vocabulary \(tokenizer.vocabularySize))")

    var rows = [["corpus", "MB", "tokens", "qkit MB/s", "HF MB/s", "ratio", "ids"]]
    var totalBytes = 0.0, oursTime = 0.0, peerTime = 0.0
    var allEqual = true
    let scratch = NSTemporaryDirectory() + "qbench-tokenize-\(getpid())"
    try FileManager.default.createDirectory(atPath: scratch, withIntermediateDirectories: true)
    defer { try? FileManager.default.removeItem(atPath: scratch) }
    for corpus in corpora {
        let text = try String(contentsOfFile: corpus, encoding: .utf8)
        let bytes = Double(text.utf8.count)
        var ids: [Int32] = []
        let ours = bestOf(reps) { ids = tokenizer.encode(text) }
        var row = [URL(fileURLWithPath: corpus).lastPathComponent, fmt(bytes / 1e6), String(ids.count), fmt(bytes / ours / 1e6, 1)]
        totalBytes += bytes
        oursTime += ours
        if let python = o.values["peer"] {
            let idsPath = scratch + "/ids.bin"
            let data = ids.withUnsafeBytes { Data($0) }
            try data.write(to: URL(fileURLWithPath: idsPath))
            let (peer, verdict) = try runPeerTokenize(python: python, tokenizer: jsonPath, corpus: corpus, ids: idsPath, reps: reps)
            peerTime += peer
            if verdict != "identical" { allEqual = false }
            row += [fmt(bytes / peer / 1e6, 1), fmt(peer / ours, 1) + "×", verdict]
        } else {
            row += ["-", "-", "-"]
        }
        rows.append(row)
    }
    printTable(rows)
    print("qkit: \(fmt(totalBytes / oursTime / 1e6, 1)) MB/s over \(fmt(totalBytes / 1e6)) MB (best of \(reps) per corpus, \(activeProcessorCountText()) cores)")
    if peerTime > 0 {
        print("HF tokenizers: \(fmt(totalBytes / peerTime / 1e6, 1)) MB/s; qkit is \(fmt(peerTime / oursTime, 1))× faster; ids \(allEqual ? "identical on every corpus" : "DIFFER")")
    }
    if !allEqual { exit(1) }
}

private func activeProcessorCountText() -> String { String(ProcessInfo.processInfo.activeProcessorCount) }

/// Times HF `tokenizers` on one corpus in the peer Python and compares its ids with ours (u32 file).
private func runPeerTokenize(python: String, tokenizer: String, corpus: String, ids: String, reps: Int) throws -> (Double, String) {
    let script = """
    import sys, time, array
    from tokenizers import Tokenizer
    path, corpus, ids_path, reps = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
    tok = Tokenizer.from_file(path)
    text = open(corpus, encoding="utf-8").read()
    best, ids = 1e9, None
    for _ in range(reps):
        t0 = time.perf_counter(); ids = tok.encode(text, add_special_tokens=False).ids; best = min(best, time.perf_counter() - t0)
    ours = array.array("I"); ours.frombytes(open(ids_path, "rb").read())
    ours = ours.tolist()
    if ours == ids:
        verdict = "identical"
    else:
        k = next((i for i, (a, b) in enumerate(zip(ours, ids)) if a != b), min(len(ours), len(ids)))
        verdict = f"DIFFER at {k} (ours {ours[k:k+3]} HF {ids[k:k+3]}, {len(ours)} vs {len(ids)})"
    print(best)
    print(verdict)
    """
    let out = try capture(python, ["-c", script, tokenizer, corpus, ids, String(reps)], showErrors: true)
    let lines = out.split(separator: "\n")
    guard lines.count >= 2, let t = Double(lines[0]) else { throw UsageError(description: "peer python printed no timing") }
    return (t, String(lines[1]))
}
