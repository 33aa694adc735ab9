import Common
import Foundation
import Testing

/// Seeded token ids below the synthetic model's vocabulary.
private func svdqIDs(_ dir: String) throws -> String {
    var state: UInt64 = 5
    var ids: [String] = []
    for _ in 0..<3000 {
        state = state &* 6364136223846793005 &+ 1442695040888963407
        ids.append(String((state >> 33) % 300))
    }
    let path = dir + "/ids.txt"
    try (ids.joined(separator: " ") + "\n").write(toFile: path, atomically: true, encoding: .utf8)
    return path
}

private func directoryFiles(_ dir: String) throws -> [String: Data] {
    var out: [String: Data] = [:]
    for name in try FileManager.default.contentsOfDirectory(atPath: dir) {
        out[name] = try Data(contentsOf: URL(fileURLWithPath: dir + "/" + name))
    }
    return out
}

/// The mean KL divergence qeval reports against `--ref`.
private func meanKL(_ stdout: String) -> Double? {
    guard let line = stdout.split(separator: "\n").first(where: { $0.hasPrefix("KL") }) else { return nil }
    return line.split(separator: " ").compactMap { Double($0) }.first
}

@Suite("qquant --algo svdquant, qeval W4A4, qpack --to nunchaku (synthetic model)")
struct SVDQuantToolTests {
    /// A two-block model with K = 128 and 256 (INT4 g64 divides both).
    static func model(_ dir: String) throws -> String {
        let r = try Tool.run("qsynth", ["--preset", "tiny", "--hidden", "128", "--intermediate", "256", "--layers", "2", "-q", "-o", dir + "/m"])
        #expect(r.status == 0, "\(r.stderr)")
        return dir + "/m"
    }

    @Test("W4A4: the branch lowers the KL of plain RTN W4A4; one thread writes the same bytes; the Nunchaku packing scores the same")
    func w4a4() throws {
        let dir = Tool.temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let m = try Self.model(dir), ids = try svdqIDs(dir)
        let data = ["--ids", ids, "--samples", "4", "--seqlen", "64"]
        let svdq = try Tool.run("qquant", [m, "--algo", "svdquant", "--grid", "4"] + data + ["-o", dir + "/svdq"])
        #expect(svdq.status == 0, "\(svdq.stderr)")
        let single = try Tool.run("qquant", [m, "--algo", "svdquant", "--grid", "4"] + data + ["-o", dir + "/single"], launcher: ["/usr/bin/env", "QKIT_THREADS=1"])
        #expect(single.status == 0)
        #expect(try directoryFiles(dir + "/svdq") == directoryFiles(dir + "/single"))
        let rtn = try Tool.run("qquant", [m, "--algo", "svdquant", "--rank", "0", "--grid", "0"] + data + ["-o", dir + "/rtn"])
        #expect(rtn.status == 0, "\(rtn.stderr)")
        // The recipe records the branch tensors' owner and the activation format.
        let config = try JSONParser.parse(Array(try Data(contentsOf: URL(fileURLWithPath: dir + "/svdq/config.json"))))
        #expect(config["quantization_config"]?["activation_format"]?["group_size"]?.intValue == 64)
        #expect(config["quantization_config"]?["algorithm"]?.stringValue == "svdquant")
        let ck = try Checkpoint(path: dir + "/svdq")
        #expect(ck["model.layers.1.mlp.up_proj.lora_up"]?.shape == [256, 32])
        #expect(ck["model.layers.1.mlp.down_proj.lora_down"]?.shape == [32, 256])
        #expect(ck["model.layers.0.self_attn.k_proj.smooth"]?.shape == [128])
        #expect(try Checkpoint(path: dir + "/rtn")["model.layers.0.self_attn.k_proj.smooth"] == nil)

        let eval = ["--ids", ids, "--seqlen", "64", "--windows", "6", "--ref", m]
        let kSVDQ = try Tool.run("qeval", [dir + "/svdq"] + eval), kRTN = try Tool.run("qeval", [dir + "/rtn"] + eval)
        #expect(kSVDQ.status == 0 && kRTN.status == 0, "\(kSVDQ.stderr)\(kRTN.stderr)")
        let (a, b) = (meanKL(kSVDQ.stdout) ?? .infinity, meanKL(kRTN.stdout) ?? 0)
        #expect(a < 0.5 * b, "svdquant KL \(a), rtn W4A4 KL \(b)")

        // Nunchaku: packed, verified, and qeval computes the same numbers from it.
        let p = try Tool.run("qpack", [dir + "/svdq", "--to", "nunchaku", "-o", dir + "/n"])
        #expect(p.status == 0, "\(p.stderr)")
        let v = try Tool.run("qpack", ["--verify", dir + "/n", "--source", dir + "/svdq"])
        #expect(v.status == 0, "\(v.stdout)\(v.stderr)")
        let kPacked = try Tool.run("qeval", [dir + "/n"] + eval)
        #expect(kPacked.status == 0, "\(kPacked.stderr)")
        let lines = { (s: String) in s.split(separator: "\n").filter { $0.hasPrefix("perplexity") || $0.hasPrefix("KL") || $0.hasPrefix("top-1") } }
        #expect(lines(kPacked.stdout) == lines(kSVDQ.stdout) && !lines(kSVDQ.stdout).isEmpty, "\(kPacked.stdout)\n\(kSVDQ.stdout)")
    }

    @Test("NVFP4 and data-free runs; usage errors")
    func nvfp4DataFreeAndUsage() throws {
        let dir = Tool.temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let m = try Self.model(dir), ids = try svdqIDs(dir)
        let fp4 = try Tool.run("qquant", [m, "--algo", "svdquant", "--format", "nvfp4", "--ids", ids, "--samples", "2", "--seqlen", "64",
                                          "--grid", "2", "--rank", "16", "-o", dir + "/fp4"])
        let gptq = try Tool.run("qquant", [m, "--algo", "svdquant", "--format", "nvfp4", "--gptq", "--ids", ids, "--samples", "2", "--seqlen", "64",
                                           "--grid", "2", "--rank", "16", "-o", dir + "/gptq"])
        #expect(gptq.status == 0, "\(gptq.stderr)")
        #expect(fp4.status == 0, "\(fp4.stderr)")
        let config = try JSONParser.parse(Array(try Data(contentsOf: URL(fileURLWithPath: dir + "/fp4/config.json"))))
        #expect(config["quantization_config"]?["activation_format"]?["format"]?.stringValue == "nvfp4")
        let gc = try JSONParser.parse(Array(try Data(contentsOf: URL(fileURLWithPath: dir + "/gptq/config.json"))))
        #expect(gc["quantization_config"]?["calibration"]?["gptq"]?.boolValue == true)
        let p = try Tool.run("qpack", [dir + "/fp4", "--to", "nunchaku", "-o", dir + "/n"])
        #expect(p.status == 0, "\(p.stderr)")
        let eval = ["--ids", ids, "--seqlen", "64", "--windows", "4", "--ref", m]
        let a = try Tool.run("qeval", [dir + "/fp4"] + eval), b = try Tool.run("qeval", [dir + "/n"] + eval)
        #expect(a.status == 0 && b.status == 0)
        let lines = { (s: String) in s.split(separator: "\n").filter { $0.hasPrefix("perplexity") || $0.hasPrefix("KL") || $0.hasPrefix("top-1") } }
        #expect(lines(a.stdout) == lines(b.stdout) && !lines(a.stdout).isEmpty, "\(a.stdout)\n\(b.stdout)")

        let free = try Tool.run("qquant", [m, "--algo", "svdquant", "--rank", "8", "-o", dir + "/free"])
        #expect(free.status == 0, "\(free.stderr)")
        let fc = try JSONParser.parse(Array(try Data(contentsOf: URL(fileURLWithPath: dir + "/free/config.json"))))
        #expect(fc["quantization_config"]?["calibration"]?["data"]?.stringValue == "none")
        #expect(try Checkpoint(path: dir + "/free")["model.layers.0.mlp.down_proj.lora_up"]?.shape == [128, 8])

        for (args, needle) in [(["--fake"], "--fake"), (["--abits", "8"], "--abits"), (["--format", "fp8"], "4-bit"),
                               (["--asym"], "4-bit"), (["--rank=-1"], "--rank")] {
            let r = try Tool.run("qquant", [m, "--algo", "svdquant", "-o", dir + "/x"] + args)
            #expect(r.status == 64 && r.stderr.contains(needle) && r.stderr.split(separator: "\n").count == 1, "\(args): \(r.stderr)")
        }
        let g = try Tool.run("qquant", [m, "--gptq", "-o", dir + "/x"])
        #expect(g.status == 64 && g.stderr.contains("--gptq"), "\(g.stderr)")
        #expect(!FileManager.default.fileExists(atPath: dir + "/x"))
    }
}
