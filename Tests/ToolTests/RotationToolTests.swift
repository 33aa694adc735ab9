import Common
import Foundation
import Testing

/// Logits of seeded sequences through qkit's forward pass (any layout `openWeights` reads).
private func logits(_ path: String) throws -> [Float] {
    let model = try DecoderModel(source: openWeights(path: path))
    var state: UInt64 = 5
    let seqs: [[Int32]] = (0..<2).map { _ in
        (0..<32).map { _ in
            state = state &* 6364136223846793005 &+ 1442695040888963407
            return Int32((state >> 33) % 320)
        }
    }
    return try model.logits(seqs).array
}

private func relativeError(_ a: [Float], _ b: [Float]) -> Float {
    var err: Float = 0, scale: Float = 0
    for i in a.indices { err = max(err, abs(a[i] - b[i])); scale = max(scale, abs(b[i])) }
    return err / scale
}

@Suite("qquant --rotate (tiny models)")
struct RotationToolTests {
    @Test("--algo none --rotate[-online] writes a float model with the original's logits; the recipe-less config records the rotation")
    func rotatedFloat() throws {
        let dir = Tool.temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let reference = try logits(fixtureModel("qwen3"))
        for (name, flags) in [("offline", ["--rotate"]), ("online", ["--rotate-online", "--rotate-seed", "9"])] {
            let r = try Tool.run("qquant", [fixtureModel("qwen3"), "--algo", "none", "-o", dir + "/" + name] + flags)
            #expect(r.status == 0, "\(r.stderr)")
            #expect(r.stdout.contains("rotated float model"))
            let err = relativeError(try logits(dir + "/" + name), reference)
            #expect(err < 1e-4, "\(name): \(err)")
            let config = try String(contentsOfFile: dir + "/" + name + "/config.json", encoding: .utf8)
            #expect(config.contains("\"qkit_rotation\"") && config.contains("\"tie_word_embeddings\": false"))
            #expect(config.contains("\"down_proj\"") == (name == "online"))
        }
        // bf16 output on request.
        let bf = try Tool.run("qquant", [fixtureModel("qwen3"), "--algo", "none", "--rotate", "--dtype", "bf16", "-o", dir + "/bf16"])
        #expect(bf.status == 0, "\(bf.stderr)")
        let ck = try Checkpoint(path: dir + "/bf16")
        #expect(ck["model.layers.0.self_attn.q_proj.weight"]!.encoding.description.uppercased().contains("BF16"))
    }

    @Test("rtn, hqq, gptq, smoothquant after the rotation; --fake; --abits recorded and simulated; one thread writes the same bytes")
    func composes() throws {
        let dir = Tool.temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let ids = try idsFile(dir, seed: 17)
        let m = fixtureModel("llama3")
        let data = ["--ids", ids, "--samples", "6", "--seqlen", "48"]
        let runs: [(String, [String])] = [
            ("rtn", ["--rotate", "--group", "32"]),
            ("rtn-a8", ["--rotate-online", "--group", "32", "--abits", "8"]),
            ("hqq", ["--algo", "hqq", "--rotate", "--group", "32"]),
            ("gptq", ["--algo", "gptq", "--rotate-online", "--group", "32"] + data),
            ("awq", ["--algo", "awq", "--rotate", "--group", "32"] + data),
            ("sq", ["--algo", "smoothquant", "--rotate", "--abits", "8"] + data),
            ("fake", ["--rotate", "--group", "32", "--fake", "--abits", "4"]),
        ]
        let reference = try logits(m)
        for (name, args) in runs {
            let r = try Tool.run("qquant", [m] + args + ["-o", dir + "/" + name])
            #expect(r.status == 0, "\(name): \(r.stderr)")
            let config = try String(contentsOfFile: dir + "/" + name + "/config.json", encoding: .utf8)
            #expect(config.contains("\"rotation\"") && config.contains("\"quarot\""), "\(name)")
            #expect(config.contains("\"activation_format\": {") == args.contains("--abits"), "\(name)")
            let err = relativeError(try logits(dir + "/" + name), reference)
            // 4-bit weights on a random tiny model: close, not equal.
            #expect(err < 0.5, "\(name): \(err)")
            #expect(!FileManager.default.fileExists(atPath: dir + "/." + name + ".qkit-rotated"))
        }
        // No backend applies the online Hadamard: packing such a checkpoint is refused, the offline one packs.
        let online = try Tool.run("qpack", [dir + "/gptq", "--to", "vllm-gptq", "-o", dir + "/packed"])
        #expect(online.status == 65 && online.stderr.contains("online down_proj Hadamard"), "\(online.stderr)")
        #expect(!FileManager.default.fileExists(atPath: dir + "/packed"))
        let offline = try Tool.run("qpack", [dir + "/rtn", "--to", "vllm-gptq", "-o", dir + "/packed"])
        #expect(offline.status == 0, "\(offline.stderr)")
        // The activation quantization changes the logits (qeval's forward applies it).
        let a8 = try logits(dir + "/rtn-a8")
        let fake = try logits(dir + "/fake")
        #expect(a8 != fake)
        // One thread: the same bytes (rotation, online Hadamard in the calibration forward, GPTQ).
        let args = [m, "--algo", "gptq", "--rotate-online", "--group", "32"] + data
        let single = try Tool.run("qquant", args + ["-o", dir + "/gptq1"], launcher: ["/usr/bin/env", "QKIT_THREADS=1"])
        #expect(single.status == 0, "\(single.stderr)")
        #expect(try files(dir + "/gptq") == files(dir + "/gptq1"))
        // Another seed, other bytes; the same seed, the same bytes.
        let s1 = try Tool.run("qquant", [m, "--rotate", "--rotate-seed", "1", "--group", "32", "-o", dir + "/s1"])
        let s1b = try Tool.run("qquant", [m, "--rotate", "--rotate-seed", "1", "--group", "32", "-o", dir + "/s1b"])
        #expect(s1.status == 0 && s1b.status == 0)
        #expect(try files(dir + "/s1") == files(dir + "/s1b"))
        #expect(try files(dir + "/s1")["model.safetensors"] != files(dir + "/rtn")["model.safetensors"])
    }

    @Test("bad rotation requests exit with one line and the right code")
    func errors() throws {
        let dir = Tool.temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let ids = try idsFile(dir, count: 500, seed: 17)
        // hidden 156 = 2^2·3·13: no Hadamard matrix qkit can build.
        var odd = SyntheticModelConfig.tiny
        odd.hidden = 156
        odd.heads = 2
        odd.kvHeads = 1
        odd.intermediate = 320
        odd.vocab = 64
        odd.layers = 1
        try SyntheticCheckpoint.write(config: odd, to: dir + "/odd")
        let m = fixtureModel("qwen2")
        let cases: [([String], Int32, String)] = [
            ([m, "--algo", "none", "-o", dir + "/x"], 64, "--rotate"),
            ([m, "--algo", "none", "--rotate", "--group", "32", "-o", dir + "/x"], 64, "--group"),
            ([m, "--rotate-seed", "3", "-o", dir + "/x"], 64, "--rotate-seed"),
            ([m, "--algo", "awq", "--rotate-online", "--group", "32", "--ids", ids, "-o", dir + "/x"], 64, "awq"),
            ([m, "--algo", "smoothquant", "--rotate", "--stats", ids, "-o", dir + "/x"], 64, "--stats"),
            ([m, "--abits", "9", "-o", dir + "/x"], 64, "--abits"),
            ([dir + "/odd", "--rotate", "-o", dir + "/x"], 69, "156 = 2^2 · 3 · 13"),
        ]
        for (args, code, text) in cases {
            let r = try Tool.run("qquant", args)
            #expect(r.status == code, "\(args): \(r.status) \(r.stderr)")
            #expect(r.stderr.contains(text) && r.stderr.split(separator: "\n").count == 1, "\(args): \(r.stderr)")
            #expect(!FileManager.default.fileExists(atPath: dir + "/x"))
            #expect(!FileManager.default.fileExists(atPath: dir + "/.x.qkit-rotated"))
        }
        // Rotating a rotated model is refused (65).
        let once = try Tool.run("qquant", [m, "--algo", "none", "--rotate", "-o", dir + "/once"])
        #expect(once.status == 0)
        let twice = try Tool.run("qquant", [dir + "/once", "--algo", "none", "--rotate", "-o", dir + "/x"])
        #expect(twice.status == 65 && twice.stderr.contains("already rotated"), "\(twice.stderr)")
    }
}

/// QuaRot on SmolLM2-135M with the release binaries (4 evaluation windows; the README has the full protocol).
@Suite("qquant --rotate on the real model (release binaries)", .serialized)
struct RotationRealModelTests {
    func perplexity(_ model: String) throws -> Double {
        let r = try Tool.run("qeval", [model, "--data", tutorial, "--seqlen", "512", "--windows", "4", "--json", "-q"], release: true)
        #expect(r.status == 0, "\(r.stderr)")
        return try json(r.stdout)["perplexity"] as? Double ?? .nan
    }

    @Test("the rotated float model (576 = 16·paley2(17), online 1536 = 128·paley1(11)) has the original's perplexity; W4A4 per channel is far better rotated")
    func smolLM2() throws {
        let m = try requireModel()
        let dir = Tool.temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        for (name, args) in [("rot", ["--algo", "none", "--rotate-online"]),
                             ("w4a4", ["--group", "channel", "--abits", "4", "-q"]),
                             ("rot-w4a4", ["--rotate-online", "--group", "channel", "--abits", "4", "-q"])] {
            let r = try Tool.run("qquant", [m.f32] + args + ["-o", dir + "/" + name], release: true)
            #expect(r.status == 0, "\(name): \(r.stderr)")
        }
        let float = try perplexity(m.f32), rotated = try perplexity(dir + "/rot")
        #expect(abs(rotated - float) / float < 1e-4, "rotated \(rotated) vs float \(float)")
        let plain = try perplexity(dir + "/w4a4"), rot = try perplexity(dir + "/rot-w4a4")
        #expect(rot < plain / 2, "W4A4: rotated \(rot) vs plain \(plain)")
    }
}
