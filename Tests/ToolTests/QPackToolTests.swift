import Common
import Foundation
import Testing

/// Shared inputs of the qpack tool tests.
private enum Packing {
    /// The tiny random Llama (F32, hidden 64, intermediate 96) of the unit tests.
    static let model = Tool.root + "/Tests/CommonTests/Fixtures/model/llama3"
}

@Suite("qpack tool: pack, verify, refuse, evaluate")
struct QPackToolTests {
    @Test("qquant → qpack --to each layout → qpack --verify --source → qeval equal to the source's", arguments: [
        ("vllm-awq", "int4:g32:asym", [String]()), ("vllm-gptq", "int4:g32:sym", []), ("vllm-gptq", "int4:g32:asym", ["--gptq-v2"]),
        ("compressed-tensors", "int4:g32:sym", []), ("compressed-tensors", "int8:ch:sym", ["--w8a8"]), ("lightllm", "fp8:tensor", []),
    ])
    func packVerifyEvaluate(_ layout: String, _ scheme: String, _ extra: [String]) throws {
        let dir = Tool.temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let q = try Tool.run("qquant", [Packing.model, "--algo", "rtn", "--rule", "proj=" + scheme, "-q", "-o", dir + "/q"])
        #expect(q.status == 0, "\(q.stderr)")
        let p = try Tool.run("qpack", [dir + "/q", "--to", layout, "-o", dir + "/p"] + extra)
        #expect(p.status == 0 && p.stdout.isEmpty && p.stderr.contains("14 linears packed"), "\(p.stderr)")
        let v = try Tool.run("qpack", ["--verify", dir + "/p", "--source", dir + "/q"])
        #expect(v.status == 0 && v.stdout.contains("ok: \(layout), 14 packed linears") && v.stdout.contains("equal to"), "\(v.stdout)\(v.stderr)")
        // qeval reads the packed layout; perplexity equal to the source's within the scales' rounding.
        let ids = (0..<192).map { String(3 + ($0 * 97) % 311) }.joined(separator: " ")
        try ids.write(toFile: dir + "/ids", atomically: true, encoding: .utf8)
        func ppl(_ m: String) throws -> Double {
            let r = try Tool.run("qeval", [m, "--ids", dir + "/ids", "--seqlen", "64", "--json", "-q"])
            #expect(r.status == 0, "\(r.stderr)")
            let j = try JSONParser.parse(r.stdout)
            return try #require(j["perplexity"]?.doubleValue)
        }
        let a = try ppl(dir + "/q"), b = try ppl(dir + "/p")
        // F32 scales (compressed-tensors of an F32 model, LightLLM's FP8 block scales): the same numbers.
        #expect(abs(a - b) / a < (layout == "compressed-tensors" || layout == "lightllm" ? 1e-12 : 1e-4), "\(layout): \(a) vs \(b)")
    }

    @Test("qquant → qpack --to tinychat → --verify → qeval within F16 scaled zeros; qinspect names the layout; converted to AWQ")
    func tinychat() throws {
        let dir = Tool.temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        // down_proj has K = 96, which the v2 packing (K % 64 == 0) cannot hold: it stays float.
        let q = try Tool.run("qquant", [Packing.model, "--algo", "rtn", "--rule", "proj=int4:g32:asym", "--skip", "down_proj", "-q", "-o", dir + "/q"])
        #expect(q.status == 0, "\(q.stderr)")
        let p = try Tool.run("qpack", [dir + "/q", "--to", "tinychat", "-o", dir + "/t"])
        #expect(p.status == 0 && p.stderr.contains("12 linears packed"), "\(p.stderr)")
        let v = try Tool.run("qpack", ["--verify", dir + "/t", "--source", dir + "/q"])
        #expect(v.status == 0 && v.stdout.contains("ok: tinychat, 12 packed linears"), "\(v.stdout)\(v.stderr)")
        let i = try Tool.run("qinspect", [dir + "/t", "--summary"])
        #expect(i.status == 0 && i.stdout.contains("tinychat"), "\(i.stdout)")
        let ids = (0..<192).map { String(3 + ($0 * 97) % 311) }.joined(separator: " ")
        try ids.write(toFile: dir + "/ids", atomically: true, encoding: .utf8)
        func ppl(_ m: String) throws -> Double {
            let r = try Tool.run("qeval", [m, "--ids", dir + "/ids", "--seqlen", "64", "--json", "-q"])
            #expect(r.status == 0, "\(r.stderr)")
            return try #require(try JSONParser.parse(r.stdout)["perplexity"]?.doubleValue)
        }
        let a = try ppl(dir + "/q"), b = try ppl(dir + "/t")
        #expect(abs(a - b) / a < 1e-3, "tinychat: \(a) vs \(b)")
        // A packed input converts without requantizing: tinychat → vllm-awq, verified against the qkit source.
        let c = try Tool.run("qpack", [dir + "/t", "--to", "vllm-awq", "-q", "-o", dir + "/awq"])
        #expect(c.status == 0, "\(c.stderr)")
        let cv = try Tool.run("qpack", ["--verify", dir + "/awq", "--source", dir + "/t"])
        #expect(cv.status == 0, "\(cv.stderr)")
    }

    @Test("a float model is quantized with RTN first (--scheme), and verifies against itself")
    func floatInput() throws {
        let dir = Tool.temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let p = try Tool.run("qpack", [Packing.model, "--to", "vllm-awq", "--scheme", "int4:g32:asym", "-o", dir + "/awq"])
        #expect(p.status == 0 && p.stderr.contains("float input quantized with rtn"), "\(p.stderr)")
        let v = try Tool.run("qpack", ["--verify", dir + "/awq", "--source", Packing.model, "--scheme", "int4:g32:asym"])
        #expect(v.status == 0, "\(v.stderr)")
        // The default scheme (g128) does not divide K = 64: refused as a usage error, nothing written.
        let d = try Tool.run("qpack", [Packing.model, "--to", "vllm-awq", "-o", dir + "/bad"])
        #expect(d.status == 64 && d.stderr.contains("group 128 does not divide"), "\(d.stderr)")
        #expect(!FileManager.default.fileExists(atPath: dir + "/bad"))
        #expect(try FileManager.default.contentsOfDirectory(atPath: dir).filter { $0.hasPrefix(".") }.isEmpty)
    }

    @Test("refusals and usage errors: one line, sysexits status, no output")
    func refusals() throws {
        let dir = Tool.temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        _ = try Tool.run("qquant", [Packing.model, "--algo", "rtn", "--rule", "proj=int8:g32", "-q", "-o", dir + "/q8"])
        let awq = try Tool.run("qpack", [dir + "/q8", "--to", "vllm-awq", "-o", dir + "/x"])
        #expect(awq.status == 65 && awq.stderr.hasPrefix("qpack: ") && awq.stderr.contains("4-bit integers only")
                && awq.stderr.split(separator: "\n").count == 1, "\(awq.stderr)")
        let flag = try Tool.run("qpack", [dir + "/q8", "--to", "vllm-awq", "--gptq-v2", "-o", dir + "/x"])
        #expect(flag.status == 64, "\(flag.stderr)")
        let later = try Tool.run("qpack", [dir + "/q8", "--to", "nunchaku", "-o", dir + "/x"])
        #expect(later.status == 69 || later.status == 65)
        // --verify of something that is not a packed layout, and a mismatching source.
        let notPacked = try Tool.run("qpack", ["--verify", dir + "/q8"])
        #expect(notPacked.status == 65 && notPacked.stderr.contains("not a packed checkpoint"), "\(notPacked.stderr)")
        _ = try Tool.run("qquant", [Packing.model, "--algo", "rtn", "--rule", "proj=int4:g32", "-q", "-o", dir + "/q4"])
        _ = try Tool.run("qquant", [Packing.model, "--algo", "rtn", "--rule", "proj=int4:g32:mse", "-q", "-o", dir + "/q4mse"])
        _ = try Tool.run("qpack", [dir + "/q4", "--to", "vllm-gptq", "-q", "-o", dir + "/g"])
        let mismatch = try Tool.run("qpack", ["--verify", dir + "/g", "--source", dir + "/q4mse"])
        #expect(mismatch.status == 65 && mismatch.stderr.contains("verify failed"), "\(mismatch.stderr)")
        #expect(!FileManager.default.fileExists(atPath: dir + "/x"))
    }
}
