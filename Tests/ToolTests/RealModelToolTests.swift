import Foundation
import Testing

/// The real SmolLM2-135M-Instruct GGUF (scripts/fetch-assets.sh puts it there). Missing assets fail the test.
private let gguf = Tool.assets + "/gguf/SmolLM2-135M-Instruct.Q4_1.gguf"

private func requireAssets() throws {
    guard FileManager.default.fileExists(atPath: gguf) else {
        Issue.record("missing \(gguf): run scripts/fetch-assets.sh")
        throw CancellationError()
    }
}

@Suite("qinspect and qpack on the real model")
struct RealModelToolTests {
    @Test("--summary of the GGUF names its architecture and types")
    func summary() throws {
        try requireAssets()
        let r = try Tool.run("qinspect", ["--summary", gguf])
        #expect(r.status == 0)
        for needle in ["gguf, 1 file", "llama", "layers 30, hidden 576, intermediate 1536, heads 9/3 kv, head_dim 64, vocab 49152",
                       "tied embeddings", "Q4_1×210 F32×61 Q8_0×1", "MOSTLY_Q4_1 (3)", "134.5M (134515008)"] {
            #expect(r.stdout.contains(needle), "missing '\(needle)'")
        }
    }

    @Test("--stats equals numpy over gguf-py's dequantization (committed fixture)")
    func statsAgainstNumpy() throws {
        try requireAssets()
        let fixture = Tool.root + "/Tests/ToolTests/Fixtures/gguf-stats-reference.json"
        let reference = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: fixture))) as! [String: [String: Any]]
        var args = ["--json", "--stats", gguf]
        for name in reference.keys { args += ["--filter", name] }
        let r = try Tool.run("qinspect", args)
        #expect(r.status == 0)
        let doc = try JSONSerialization.jsonObject(with: Data(r.stdout.utf8)) as! [String: Any]
        let tensors = doc["tensors"] as! [[String: Any]]
        #expect(tensors.count == reference.count)
        for t in tensors {
            let name = t["name"] as! String
            let s = t["stats"] as! [String: Any], ref = reference[name]!
            func d(_ o: [String: Any], _ k: String) -> Double { (o[k] as! NSNumber).doubleValue }
            #expect(d(s, "min") == d(ref, "min") && d(s, "max") == d(ref, "max") && d(s, "absmax") == d(ref, "absmax"), "\(name)")
            #expect((s["zeros"] as! Int) == (ref["zeros"] as! Int), "\(name)")
            #expect(abs(d(s, "mean") - d(ref, "mean")) <= 1e-6 * d(ref, "std"), "\(name) mean")
            #expect(abs(d(s, "std") - d(ref, "std")) <= 1e-6 * d(ref, "std"), "\(name) std")
            #expect(abs(d(s, "kurtosis") - d(ref, "kurtosis")) <= 1e-4 * max(1, abs(d(ref, "kurtosis"))), "\(name) kurtosis")
            if let channels = ref["outlier_channels"] as? [Int] {
                let ours = (s["outlier_channels"] as! [[String: Any]]).map { $0["channel"] as! Int }
                #expect(ours == channels, "\(name) outliers")
            }
        }
    }

    @Test("--stats gives the same bytes on one core as on all")
    func deterministic() throws {
        try requireAssets()
        let args = ["--stats", "--hist", "--json", "--filter", "blk.1*", gguf]
        let all = try Tool.run("qinspect", args)
        let one = try Tool.run("qinspect", args, launcher: ["/usr/bin/taskset", "-c", "0"])
        #expect(all.status == 0 && one.status == 0)
        #expect(all.stdout == one.stdout && all.stdout.count > 1000)
    }

    @Test("import f32 and bf16 with qpack: both verify clean; --diff sees bf16 rounding only")
    func importVerifyDiff() throws {
        try requireAssets()
        let dir = Tool.temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        for dtype in ["f32", "bf16"] {
            let r = try Tool.run("qpack", [gguf, "--to", "safetensors", "--dtype", dtype, "-o", dir + "/" + dtype])
            #expect(r.status == 0, "\(r.stderr)")
            let v = try Tool.run("qinspect", ["--verify", dir + "/" + dtype])
            #expect(v.status == 0 && v.stdout.contains("OK (272 tensors"), "\(v.stdout)")
        }
        // The GGUF against its import, matched by Hugging Face names with q/k rows permuted back: equal values.
        let g = try Tool.run("qinspect", ["--diff", gguf, dir + "/f32"])
        #expect(g.status == 0 && g.stdout.hasSuffix(": 272 identical\n"), "\(g.stdout)")
        let d = try Tool.run("qinspect", ["--diff", "--json", dir + "/f32", dir + "/bf16"])
        #expect(d.status == 0)
        let doc = try JSONSerialization.jsonObject(with: Data(d.stdout.utf8)) as! [String: Any]
        let tensors = doc["tensors"] as! [[String: Any]]
        #expect(tensors.count == 272)
        for t in tensors {
            // bf16 keeps 8 significant bits: a relative error of at most 2^-9 per element, SQNR above 45 dB.
            let status = t["status"] as! String
            #expect(status == "changed" || status == "identical")
            if status == "changed" { #expect((t["sqnr_db"] as! NSNumber).doubleValue > 45, "\(t["name"]!)") }
        }
    }

    @Test("a GGUF file packs directly: the same files as packing its f32 import, no scratch left; qinspect names an MLC directory's architecture")
    func ggufAsPackInput() throws {
        try requireAssets()
        let dir = Tool.temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        var r = try Tool.run("qpack", [gguf, "--to", "safetensors", "--dtype", "f32", "-o", dir + "/f32"], release: true)
        #expect(r.status == 0, "\(r.stderr)")
        for (name, args) in [("gptq", ["--to", "vllm-gptq", "--scheme", "int4:g32:sym"])] {
            r = try Tool.run("qpack", [gguf] + args + ["-o", dir + "/direct-" + name], release: true)
            #expect(r.status == 0, "\(r.stderr)")
            r = try Tool.run("qpack", [dir + "/f32"] + args + ["-o", dir + "/imported-" + name], release: true)
            #expect(r.status == 0, "\(r.stderr)")
            let files = try FileManager.default.contentsOfDirectory(atPath: dir + "/direct-" + name).sorted()
            #expect(files == (try FileManager.default.contentsOfDirectory(atPath: dir + "/imported-" + name).sorted()))
            for f in files {
                #expect(FileManager.default.contentsEqual(atPath: dir + "/direct-\(name)/" + f, andPath: dir + "/imported-\(name)/" + f), "\(name)/\(f)")
            }
        }
        #expect(try FileManager.default.contentsOfDirectory(atPath: dir).filter { $0.hasPrefix(".") }.isEmpty)
        // A flag error comes before the import: nothing is written.
        r = try Tool.run("qpack", [gguf, "--to", "mlc", "--scheme", "int4:g32", "-o", dir + "/bad"], release: true)
        #expect(r.status == 64 && !FileManager.default.fileExists(atPath: dir + "/bad"))
        r = try Tool.run("qpack", [gguf, "--to", "mlc", "-o", dir + "/direct-mlc"], release: true)
        #expect(r.status == 0, "\(r.stderr)")
        let summary = try Tool.run("qinspect", ["--summary", dir + "/direct-mlc"], release: true)
        #expect(summary.stdout.contains("architecture  llama\n") && summary.stdout.contains("layers 30, hidden 576"), "\(summary.stdout)")
    }
}
