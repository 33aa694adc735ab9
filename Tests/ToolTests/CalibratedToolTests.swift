import Common
import Foundation
import Testing


@Suite("qquant awq/gptq/smoothquant and qcalib (tiny models)")
struct CalibratedToolTests {
    @Test("kill -9 after a block, rerun: continues and writes the same bytes; one thread writes the same bytes too")
    func resumeAndThreads() throws {
        let dir = Tool.temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let ids = try idsFile(dir)
        let common = [fixtureModel("qwen2"), "--algo", "gptq", "--group", "32", "--act-order", "--ids", ids, "--samples", "6", "--seqlen", "48"]
        let whole = try Tool.run("qquant", common + ["-o", dir + "/whole"])
        #expect(whole.status == 0, "\(whole.stderr)")
        // Killed (SIGKILL) right after block 0's progress is committed.
        let killed = try Tool.run("qquant", common + ["-o", dir + "/resumed"], launcher: ["/usr/bin/env", "QKIT_TEST_KILL_AFTER_BLOCK=0"])
        #expect(killed.status == 9, "status \(killed.status): \(killed.stderr)")
        #expect(!FileManager.default.fileExists(atPath: dir + "/resumed"))
        #expect(FileManager.default.fileExists(atPath: dir + "/.resumed.qkit-progress/block-0000.safetensors"))
        let resumed = try Tool.run("qquant", common + ["-o", dir + "/resumed", "--resume"])
        #expect(resumed.status == 0, "\(resumed.stderr)")
        #expect(resumed.stderr.contains("resuming after block 0"))
        #expect(try files(dir + "/whole") == files(dir + "/resumed"))
        #expect(!FileManager.default.fileExists(atPath: dir + "/.resumed.qkit-progress"))
        // One thread: the same bytes.
        let single = try Tool.run("qquant", common + ["-o", dir + "/single"], launcher: ["/usr/bin/env", "QKIT_THREADS=1"])
        #expect(single.status == 0, "\(single.stderr)")
        #expect(try files(dir + "/whole") == files(dir + "/single"))
        // A different command does not continue the old progress.
        let k2 = try Tool.run("qquant", common + ["-o", dir + "/other"], launcher: ["/usr/bin/env", "QKIT_TEST_KILL_AFTER_BLOCK=0"])
        #expect(k2.status == 9)
        let changed = try Tool.run("qquant", common + ["--seed", "3", "-o", dir + "/other"])
        #expect(changed.status == 0 && !changed.stderr.contains("resuming"), "\(changed.stderr)")
        // Damaged progress (as a power loss could leave it: progress files are not fsynced) is detected by its
        // recorded hashes, and the run starts over.
        let k3 = try Tool.run("qquant", common + ["-o", dir + "/torn"], launcher: ["/usr/bin/env", "QKIT_TEST_KILL_AFTER_BLOCK=0"])
        #expect(k3.status == 9)
        let block = dir + "/.torn.qkit-progress/block-0000.safetensors"
        var bytes = try Data(contentsOf: URL(fileURLWithPath: block))
        bytes[bytes.count - 5] ^= 0xFF
        try bytes.write(to: URL(fileURLWithPath: block))
        let torn = try Tool.run("qquant", common + ["-o", dir + "/torn"])
        #expect(torn.status == 0 && !torn.stderr.contains("resuming"), "\(torn.stderr)")
        #expect(try files(dir + "/whole") == files(dir + "/torn"))
        let none = try Tool.run("qquant", common + ["-o", dir + "/never", "--resume"])
        #expect(none.status == 66 && none.stderr.contains("--resume"), "\(none.stderr)")
    }

    @Test("gptq --clip mse: the recipe says mse, the codes differ from plain gptq's, one thread writes the same bytes")
    func gptqWithMSEClipping() throws {
        let dir = Tool.temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let ids = try idsFile(dir)
        let common = [fixtureModel("llama3"), "--algo", "gptq", "--group", "32", "--act-order", "--ids", ids, "--samples", "6", "--seqlen", "48"]
        let plain = try Tool.run("qquant", common + ["-o", dir + "/plain"])
        let mse = try Tool.run("qquant", common + ["--clip", "mse", "-o", dir + "/mse"])
        let single = try Tool.run("qquant", common + ["--clip", "mse", "-o", dir + "/single"], launcher: ["/usr/bin/env", "QKIT_THREADS=1"])
        #expect(plain.status == 0 && mse.status == 0 && single.status == 0, "\(plain.stderr) \(mse.stderr) \(single.stderr)")
        #expect(try files(dir + "/mse") == files(dir + "/single"))
        #expect(try files(dir + "/mse")["model.safetensors"] != files(dir + "/plain")["model.safetensors"])
        let config = try String(contentsOfFile: dir + "/mse/config.json", encoding: .utf8)
        #expect(config.contains(":mse"), "\(config)")
    }

    @Test("awq, smoothquant and qoq: one thread writes the same bytes as all cores", arguments: ["awq", "smoothquant", "qoq"])
    func threadsDoNotChangeBytes(algo: String) throws {
        let dir = Tool.temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let ids = try idsFile(dir)
        let args = [fixtureModel("llama3"), "--algo", algo, "--ids", ids, "--samples", "6", "--seqlen", "48"] + (algo == "smoothquant" ? [] : ["--group", "32"])
        let a = try Tool.run("qquant", args + ["-o", dir + "/a"])
        let b = try Tool.run("qquant", args + ["-o", dir + "/b"], launcher: ["/usr/bin/env", "QKIT_THREADS=1"])
        #expect(a.status == 0 && b.status == 0, "\(a.stderr) \(b.stderr)")
        #expect(try files(dir + "/a") == files(dir + "/b"))
        if algo == "qoq" {
            // W4A8KV4 recorded; qinspect counts the progressive grid's bits (4 + 12/32 + 32/K).
            let config = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: dir + "/a/config.json"))) as! [String: Any]
            let q = config["quantization_config"] as! [String: Any]
            #expect(q["weight_scheme"] as? String == "int4:g32:asym:prog")
            #expect((q["kv_cache_format"] as? [String: Any])?["bits"] as? Int == 4 && (q["activation_format"] as? [String: Any])?["bits"] as? Int == 8)
            let s = try Tool.run("qinspect", ["--summary", dir + "/a"])
            #expect(s.status == 0 && s.stdout.contains("int4:g32:asym:prog"), "\(s.stdout)")
        }
    }

    @Test("qcalib: the file and the stream are the same bytes; smoothquant from it equals smoothquant from the data")
    func statisticsFile() throws {
        let dir = Tool.temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let ids = try idsFile(dir)
        let data = ["--ids", ids, "--samples", "5", "--seqlen", "40", "--seed", "4"]
        let file = try Tool.run("qcalib", [fixtureModel("qwen2")] + data + ["--hessian", "-o", dir + "/stats.safetensors"])
        #expect(file.status == 0, "\(file.stderr)")
        let ck = try Checkpoint(path: dir + "/stats.safetensors")
        #expect(ck.tensors.count == 2 * (7 * 4 + 2 + 1))
        func vector(_ name: String) -> [Float] {
            let t = ck[name]!
            return ck.data(t).withMemoryRebound(to: Float.self) { Array($0) }
        }
        // q, k and v read the same input; the Hessian's diagonal is 2·sqmean.
        #expect(vector("model.layers.1.self_attn.q_proj.input.absmax") == vector("model.layers.1.self_attn.v_proj.input.absmax"))
        let h = vector("model.layers.0.mlp.down_proj.input.hessian"), sq = vector("model.layers.0.mlp.down_proj.input.sqmean")
        #expect(abs(h[5 * 96 + 5] - 2 * sq[5]) < 1e-4 * max(1, 2 * sq[5]))
        let cosine = vector("model.layers.0.cosine")[0]
        #expect(cosine > -1 && cosine <= 1)
        #expect(ck.safetensorsMetadata[0]!.contains { $0.key == "tokens" && $0.value == "200" })
        // Streamed to standard output (a pipe): the same bytes.
        let piped = try Tool.run("qcalib", [fixtureModel("qwen2")] + data + ["--hessian", "-q"],
                                 launcher: ["/bin/sh", "-c", "\"$0\" \"$@\" -o - | cmp - \(dir)/stats.safetensors && echo same"])
        #expect(piped.stdout.contains("same"), "\(piped.stdout) \(piped.stderr)")
        // SmoothQuant from the statistics file = SmoothQuant on the same windows.
        let viaStats = try Tool.run("qquant", [fixtureModel("qwen2"), "--algo", "smoothquant", "--stats", dir + "/stats.safetensors", "-o", dir + "/sq1"])
        let viaData = try Tool.run("qquant", [fixtureModel("qwen2"), "--algo", "smoothquant"] + data + ["-o", dir + "/sq2"])
        #expect(viaStats.status == 0 && viaData.status == 0, "\(viaStats.stderr) \(viaData.stderr)")
        #expect(try files(dir + "/sq1")["model.safetensors"] == files(dir + "/sq2")["model.safetensors"])
        let config = try String(contentsOfFile: dir + "/sq1/config.json", encoding: .utf8)
        #expect(config.contains("\"activation_format\"") && config.contains("\"smoothquant\""))
    }

    @Test("bad calibrated requests exit with one line and the right code")
    func errors() throws {
        let dir = Tool.temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let ids = try idsFile(dir, count: 100)
        let m = fixtureModel("qwen2")
        let g = ["--group", "32"]
        let cases: [([String], Int32, String)] = [
            ([m, "--algo", "gptq", "-o", dir + "/x"] + g, 64, "--data"),
            ([m, "--algo", "awq", "--act-order", "--ids", ids, "-o", dir + "/x"] + g, 64, "--act-order"),
            ([m, "--algo", "gptq", "--rule", "q_proj=int4:g32:hqq", "--ids", ids, "--samples", "1", "--seqlen", "50", "-o", dir + "/x"] + g, 64, "hqq"),
            ([m, "--algo", "gptq", "--ids", ids, "--samples", "4", "--seqlen", "50", "--sampling", "first", "-o", dir + "/x"] + g, 65, "100 tokens"),
            ([m, "--algo", "gptq", "--group", "48", "--ids", ids, "-o", dir + "/x"], 64, "does not divide"),
            ([m, "--algo", "rtn", "--ids", ids, "-o", dir + "/x"], 64, "calibrated"),
            ([m, "--algo", "gptq", "--static-activations", "--ids", ids, "-o", dir + "/x"] + g, 64, "--static-activations"),
            ([m, "--algo", "rtn", "--static-activations", "-o", dir + "/x"], 64, "--static-activations"),
            ([m, "--algo", "awq", "--stats", ids, "-o", dir + "/x"] + g, 64, "smoothquant"),
        ]
        for (args, code, text) in cases {
            let r = try Tool.run("qquant", args)
            #expect(r.status == code, "\(args): \(r.status) \(r.stderr)")
            #expect(r.stderr.contains(text) && r.stderr.split(separator: "\n").count == 1, "\(args): \(r.stderr)")
            #expect(!FileManager.default.fileExists(atPath: dir + "/x"))
        }
        let calib = try Tool.run("qcalib", [m, "--ids", ids, "-o", dir + "/s.safetensors"])
        #expect(calib.status == 65 && calib.stderr.contains("tokens"), "\(calib.stderr)")
        #expect(!FileManager.default.fileExists(atPath: dir + "/s.safetensors"))
    }
}
