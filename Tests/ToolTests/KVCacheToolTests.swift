import Common
import Foundation
import Testing

@Suite("qquant --kv-cache (static KV-cache scales) through qinspect, qeval and qpack (tiny models)")
struct KVCacheToolTests {
    @Test("bad --kv-cache combinations are usage errors (64)", arguments: [
        (["--kv-cache", "fp9"], "--kv-cache: 'fp9' is not fp8 or int2 to int8"),
        (["--kv-cache", "int9"], "is not fp8 or int2 to int8"),
        (["--kv-cache", "fp8", "--kvbits", "4"], "exclude each other"),
        (["--kv-granularity", "head"], "--kv-granularity goes with --kv-cache"),
        (["--kv-cache", "fp8", "--kv-granularity", "channel"], "is not tensor or head"),
        (["--kv-cache", "fp8"], "--kv-cache calibrates its scales"),
        (["--algo", "svdquant", "--kv-cache", "fp8"], "--kv-cache does not go with svdquant"),
    ])
    func usage(extra: [String], message: String) throws {
        let dir = Tool.temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let r = try Tool.run("qquant", [fixtureModel("llama3"), "--group", "32", "-q", "-o", dir + "/q"] + extra)
        #expect(r.status == 64 && r.stderr.contains(message), "\(r.status) \(r.stderr)")
        #expect(!FileManager.default.fileExists(atPath: dir + "/q"))
    }

    @Test("gptq --kv-cache fp8: scales written, qinspect names the cache, qeval simulates it, compressed-tensors takes it, vllm-awq refuses it (65)")
    func endToEnd() throws {
        let dir = Tool.temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let ids = try idsFile(dir)
        let data = ["--ids", ids, "--samples", "4", "--seqlen", "48"]
        let q = try Tool.run("qquant", [fixtureModel("llama3"), "--algo", "gptq", "--group", "32", "--kv-cache", "fp8", "-q", "-o", dir + "/q"] + data)
        #expect(q.status == 0, "\(q.stderr)")
        let ck = try Checkpoint(path: dir + "/q")
        #expect(ck["model.layers.0.self_attn.k_scale"]?.shape == [1] && ck["model.layers.1.self_attn.v_scale"]?.shape == [1])
        let record = ck.config?["quantization_config"]
        #expect(record?["kv_cache_format"]?["dynamic"]?.boolValue == false)
        #expect(record?["kv_cache_calibration"]?["observed"]?.stringValue?.contains("as stored") == true)
        let s = try Tool.run("qinspect", ["--summary", dir + "/q"])
        #expect(s.status == 0 && s.stdout.contains("fp8 static per tensor"), "\(s.stdout)")
        let plain = try Tool.run("qquant", [fixtureModel("llama3"), "--algo", "gptq", "--group", "32", "-q", "-o", dir + "/plain"] + data)
        #expect(plain.status == 0, "\(plain.stderr)")
        let e1 = try Tool.run("qeval", [dir + "/q", "--ids", ids, "--seqlen", "48", "--windows", "4", "--json"])
        let e0 = try Tool.run("qeval", [dir + "/plain", "--ids", ids, "--seqlen", "48", "--windows", "4", "--json"])
        #expect(e1.status == 0 && e0.status == 0, "\(e1.stderr) \(e0.stderr)")
        func ppl(_ r: Tool.Result) throws -> Double {
            try #require((try JSONSerialization.jsonObject(with: Data(r.stdout.utf8)) as? [String: Any])?["perplexity"] as? Double)
        }
        let (p1, p0) = (try ppl(e1), try ppl(e0))
        #expect(p1 != p0 && abs(p1 - p0) < 0.05 * p0, "the fp8 cache changes the perplexity a little: \(p1) vs \(p0)")
        let ct = try Tool.run("qpack", [dir + "/q", "--to", "compressed-tensors", "-q", "-o", dir + "/ct"])
        #expect(ct.status == 0, "\(ct.stderr)")
        let verify = try Tool.run("qpack", ["--verify", dir + "/ct", "--source", dir + "/q"])
        #expect(verify.status == 0, "\(verify.stdout) \(verify.stderr)")
        let awq = try Tool.run("qpack", [dir + "/q", "--to", "vllm-awq", "-q", "-o", dir + "/awq"])
        #expect(awq.status == 65 && awq.stderr.contains("KV-cache"), "\(awq.stderr)")
        #expect(!FileManager.default.fileExists(atPath: dir + "/awq"))
        // rtn with scales from a qcalib file; smoothquant from the same file.
        let stats = try Tool.run("qcalib", [fixtureModel("llama3"), "-q", "-o", dir + "/stats.safetensors"] + data)
        #expect(stats.status == 0, "\(stats.stderr)")
        for algo in ["rtn", "smoothquant"] {
            let r = try Tool.run("qquant", [fixtureModel("llama3"), "--algo", algo, "--kv-cache", "int8", "--kv-granularity", "head",
                                            "--stats", dir + "/stats.safetensors", "-q", "-o", dir + "/" + algo] + (algo == "rtn" ? ["--group", "32"] : []))
            #expect(r.status == 0, "\(algo): \(r.stderr)")
            let out = try Checkpoint(path: dir + "/" + algo)
            #expect(out["model.layers.0.self_attn.k_scale"]?.shape == [2], "\(algo): one scale per KV head")
        }
        // The same float-model scales whichever algorithm wrote them.
        let a = try Checkpoint(path: dir + "/rtn"), b = try Checkpoint(path: dir + "/smoothquant")
        #expect(Array(a.data(a["model.layers.1.self_attn.v_scale"]!)) == Array(b.data(b["model.layers.1.self_attn.v_scale"]!)))
    }

    @Test("awq, smoothquant and qoq take --kv-cache too (qoq's KV4 default is replaced); gguf and mlc refuse the scales (65)", arguments: ["awq", "smoothquant", "qoq"])
    func everyCalibratedAlgorithm(algo: String) throws {
        let dir = Tool.temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let ids = try idsFile(dir)
        let r = try Tool.run("qquant", [fixtureModel("qwen2"), "--algo", algo, "--kv-cache", "fp8", "--kv-granularity", "head", "--ids", ids,
                                        "--samples", "4", "--seqlen", "48", "-q", "-o", dir + "/q"] + (algo == "smoothquant" ? [] : ["--group", "32"]))
        #expect(r.status == 0, "\(r.stderr)")
        let ck = try Checkpoint(path: dir + "/q")
        let kv = ck.config?["quantization_config"]?["kv_cache_format"]
        #expect(kv?["format"]?.stringValue == "fp8" && kv?["granularity"]?.stringValue == "head" && kv?["dynamic"]?.boolValue == false)
        #expect(ck["model.layers.1.self_attn.k_scale"]?.shape == [2])
        let e = try Tool.run("qeval", [dir + "/q", "--ids", ids, "--seqlen", "48", "--windows", "2", "-q"])
        #expect(e.status == 0, "\(e.stderr)")
        if algo != "qoq" {   // (QoQ's progressive grid has no compressed-tensors format)
            // Per-head scales are reshaped to [kvHeads, 1, 1] for compressed-tensors; --verify accepts the same values.
            let ct = try Tool.run("qpack", [dir + "/q", "--to", "compressed-tensors", "-q", "-o", dir + "/ct"])
            let verify = try Tool.run("qpack", ["--verify", dir + "/ct", "--source", dir + "/q"])
            #expect(ct.status == 0 && verify.status == 0, "\(ct.stderr) \(verify.stderr)")
        } else {
            for to in ["gguf", "mlc"] {
                let p = try Tool.run("qpack", [dir + "/q", "--to", to, "-q", "-o", dir + "/" + to])
                #expect(p.status == 65 && p.stderr.contains("KV-cache"), "\(to): \(p.status) \(p.stderr)")
            }
        }
    }
}
