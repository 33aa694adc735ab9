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
        if extra.contains("--w8a8") {
            // compressed-tensors W8A8 declares per-token int8 activations, which qeval applies: close, not equal.
            #expect(a != b && abs(a - b) / a < 1e-3, "\(layout) W8A8: \(a) vs \(b)")
        } else {
            // F32 scales (compressed-tensors of an F32 model, LightLLM's FP8 block scales): the same numbers.
            #expect(abs(a - b) / a < (layout == "compressed-tensors" || layout == "lightllm" ? 1e-12 : 1e-4), "\(layout): \(a) vs \(b)")
        }
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

    @Test("mlc: float model → MLC directory → --verify; qeval of MLC's quantization as qkit equals qeval of its MLC pack; refusals")
    func mlc() throws {
        let dir = Tool.temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let p = try Tool.run("qpack", [Packing.model, "--to", "mlc", "-o", dir + "/mlc"])
        #expect(p.status == 0 && p.stderr.contains("mlc q4f16_1, 15 linears packed") && p.stderr.contains("mlc's rounding"), "\(p.stderr)")
        let files = try FileManager.default.contentsOfDirectory(atPath: dir + "/mlc").sorted()
        #expect(files.contains("tensor-cache.json") && files.contains("params_shard_0.bin") && files.contains("mlc-chat-config.json")
                && !files.contains("model.safetensors"), "\(files)")
        let v = try Tool.run("qpack", ["--verify", dir + "/mlc", "--source", Packing.model])
        #expect(v.status == 0 && v.stdout.contains("ok: mlc, 15 packed linears") && v.stdout.contains("equal to"), "\(v.stdout)\(v.stderr)")
        let s = try Tool.run("qinspect", [dir + "/mlc", "--summary"])
        #expect(s.status == 0 && s.stdout.contains("quantization  mlc") && s.stdout.contains("q4f16_1"), "\(s.stdout)")
        // --ndarray-cache writes the legacy name too; q4f32_1 stores its float32 records as bf16 (and the b16 copy).
        let l = try Tool.run("qpack", [Packing.model, "--to", "mlc", "--quantization", "q4f32_1", "--ndarray-cache", "-q", "-o", dir + "/f32"])
        #expect(l.status == 0 && FileManager.default.fileExists(atPath: dir + "/f32/ndarray-cache.json")
                && FileManager.default.fileExists(atPath: dir + "/f32/tensor-cache-b16.json"), "\(l.stderr)")

        // MLC's quantization written as a qkit checkpoint; its pack is the float model's pack; qeval scores both the same.
        try MLCPacker.quantizeToQKit(model: Packing.model, output: dir + "/q", preset: .q4f16_1)
        let pq = try Tool.run("qpack", [dir + "/q", "--to", "mlc", "-q", "-o", dir + "/mlc-q"])
        #expect(pq.status == 0, "\(pq.stderr)")
        for f in ["params_shard_0.bin", "tensor-cache.json", "mlc-chat-config.json"] {
            #expect(FileManager.default.contents(atPath: dir + "/mlc/" + f) == FileManager.default.contents(atPath: dir + "/mlc-q/" + f), "\(f)")
        }
        let ids = (0..<192).map { String(3 + ($0 * 97) % 311) }.joined(separator: " ")
        try ids.write(toFile: dir + "/ids", atomically: true, encoding: .utf8)
        func ppl(_ m: String) throws -> Double {
            let r = try Tool.run("qeval", [m, "--ids", dir + "/ids", "--seqlen", "64", "--json", "-q"])
            #expect(r.status == 0, "\(r.stderr)")
            return try #require(try JSONParser.parse(r.stdout)["perplexity"]?.doubleValue)
        }
        let a = try ppl(dir + "/q"), b = try ppl(dir + "/mlc-q"), f = try ppl(Packing.model)
        #expect(a == b && a != f, "qkit \(a), mlc \(b), float \(f)")

        // qquant's symmetric int4 reaches code −8, which MLC's fixed zero point cannot hold: refused, nothing written.
        _ = try Tool.run("qquant", [Packing.model, "--algo", "rtn", "--rule", "proj=int4:g32:sym", "-q", "-o", dir + "/sym"])
        let r = try Tool.run("qpack", [dir + "/sym", "--to", "mlc", "-o", dir + "/x"])
        #expect(r.status == 65 && r.stderr.hasPrefix("qpack: ") && r.stderr.contains("zero point is fixed at 7")
                && r.stderr.split(separator: "\n").count == 1, "\(r.stderr)")
        let u = try Tool.run("qpack", [Packing.model, "--to", "mlc", "--quantization", "q8f16_1", "-o", dir + "/x"])
        #expect(u.status == 64, "\(u.stderr)")
        let t = try Tool.run("qpack", [Packing.model, "--to", "vllm-awq", "--conv-template", "chatml", "-o", dir + "/x"])
        #expect(t.status == 64, "\(t.stderr)")
        #expect(!FileManager.default.fileExists(atPath: dir + "/x"))
    }

    @Test("nunchaku: a synthetic qkit W4A4 checkpoint → qpack → --verify → qinspect names the layout; a float model is refused")
    func nunchaku() throws {
        let dir = Tool.temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        // Two INT4 g64 linears with smooth and a rank-16 branch (what the SVDQuant algorithm will write).
        let (n, k, r) = (128, 192, 16)
        var specs: [TensorSpec] = []
        for p in ["model.layers.0.self_attn.q_proj", "model.layers.0.self_attn.o_proj"] {
            specs += [TensorSpec(name: p + ".weight_q", dtype: .i8, shape: [n, k]), TensorSpec(name: p + ".weight_scale", dtype: .f32, shape: [n, k / 64]),
                      TensorSpec(name: p + ".smooth", dtype: .f32, shape: [k]), TensorSpec(name: p + ".lora_down", dtype: .bf16, shape: [r, k]),
                      TensorSpec(name: p + ".lora_up", dtype: .bf16, shape: [n, r])]
        }
        try FileManager.default.createDirectory(atPath: dir + "/q", withIntermediateDirectories: true)
        let w = try SafetensorsWriter(path: dir + "/q/model.safetensors", tensors: specs)
        for (i, s) in specs.enumerated() {
            let count = s.shape.reduce(1, *)
            switch s.dtype {
            case .i8: try w.write((0..<count).map { Int8(($0 * 7 + i) % 16 - 8) })
            case .f32: try w.write((0..<count).map { Float(1 + ($0 + i) % 5) / 64 })
            default: try w.write((0..<count).map { Conversion.bfloat16Bits(Float(($0 + i) % 9 - 4) / 16) })
            }
        }
        try w.finish()
        let modules = #"{"model.layers.0.self_attn.q_proj": "int4:g64:sym", "model.layers.0.self_attn.o_proj": "int4:g64:sym"}"#
        try (#"{"model_type": "llama", "torch_dtype": "bfloat16", "quantization_config": {"quant_method": "qkit", "version": 1, "modules": "#
             + modules + "}}").write(toFile: dir + "/q/config.json", atomically: true, encoding: .utf8)
        let p = try Tool.run("qpack", [dir + "/q", "--to", "nunchaku", "-o", dir + "/n"])
        #expect(p.status == 0 && p.stderr.contains("nunchaku, 2 linears packed"), "\(p.stderr)")
        let v = try Tool.run("qpack", ["--verify", dir + "/n", "--source", dir + "/q"])
        #expect(v.status == 0 && v.stdout.contains("ok: nunchaku, 2 packed linears") && v.stdout.contains("equal to"), "\(v.stdout)\(v.stderr)")
        let s = try Tool.run("qinspect", [dir + "/n", "--summary"])
        #expect(s.status == 0 && s.stdout.contains("nunchaku-svdquant"), "\(s.stdout)")
        let f = try Tool.run("qpack", [Packing.model, "--to", "nunchaku", "-o", dir + "/x"])
        #expect(f.status == 65 && f.stderr.contains("low-rank branch") && f.stderr.split(separator: "\n").count == 1, "\(f.stderr)")
        #expect(!FileManager.default.fileExists(atPath: dir + "/x"))
    }
}
