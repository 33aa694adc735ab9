import Common
import Foundation
import Testing

/// A Llama-shaped model directory with `layers` decoder blocks of q/k/v/o and gate/up/down projections
/// (`hidden` × `hidden` and `hidden` × 2·`hidden`, BF16), an embedding, norms, config.json and tokenizer.json.
private func syntheticModel(hidden: Int = 64, layers: Int = 2, extra: [TensorSpec] = []) throws -> String {
    let dir = Tool.temporaryDirectory()
    var specs: [TensorSpec] = [TensorSpec(name: "model.embed_tokens.weight", dtype: .bf16, shape: [32, hidden])]
    for l in 0..<layers {
        let p = "model.layers.\(l)."
        specs += ["q_proj", "k_proj", "v_proj", "o_proj"].map { TensorSpec(name: p + "self_attn.\($0).weight", dtype: .bf16, shape: [hidden, hidden]) }
        specs += [TensorSpec(name: p + "mlp.gate_proj.weight", dtype: .bf16, shape: [2 * hidden, hidden]),
                  TensorSpec(name: p + "mlp.up_proj.weight", dtype: .bf16, shape: [2 * hidden, hidden]),
                  TensorSpec(name: p + "mlp.down_proj.weight", dtype: .bf16, shape: [hidden, 2 * hidden]),
                  TensorSpec(name: p + "input_layernorm.weight", dtype: .bf16, shape: [hidden])]
    }
    specs += [TensorSpec(name: "model.norm.weight", dtype: .bf16, shape: [hidden])] + extra
    let w = try SafetensorsWriter(path: dir + "/model.safetensors", tensors: specs)
    var state: UInt64 = 12345
    for s in specs {
        let n = s.byteCount!
        var bytes = [UInt8](repeating: 0, count: n)
        if s.dtype == .bf16 {
            for i in stride(from: 0, to: n, by: 2) {
                state = state &* 6364136223846793005 &+ 1442695040888963407
                let v = Float(Int64(bitPattern: state >> 11) % 2000) / 20000   // ±0.1
                let b = Conversion.bfloat16Bits(v)
                bytes[i] = UInt8(b & 0xFF)
                bytes[i + 1] = UInt8(b >> 8)
            }
        }
        try w.write(bytes)
    }
    try w.finish()
    try writeSmallFile(dir + "/config.json", "{\"model_type\": \"llama\", \"hidden_size\": \(hidden), \"num_hidden_layers\": \(layers)}\n")
    try writeSmallFile(dir + "/tokenizer.json", "{}\n")
    return dir
}

/// Whether `parent` holds neither `name` nor a staging directory of it.
private func nothingLeft(_ parent: String, _ name: String) -> Bool {
    let names = (try? FileManager.default.contentsOfDirectory(atPath: parent)) ?? []
    return !names.contains { $0 == name || $0.hasPrefix("." + name + ".qkit-") }
}

@Suite("qquant end to end")
struct QQuantToolTests {
    @Test("usage and data errors: sysexits status, one line on stderr, no output left behind")
    func errors() throws {
        let model = try syntheticModel(extra: [TensorSpec(name: "model.layers.9.mlp.up_proj.weight", dtype: .i8, shape: [4, 64])])
        let out = Tool.temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: model); try? FileManager.default.removeItem(atPath: out) }
        try writeSmallFile(out + "/rules.txt", "# mine\nq_proj=int8:ch\nk_proj=int4:g33x\n")
        try writeSmallFile(out + "/file", "x")
        let cases: [([String], Int32, String)] = [
            (["--format", "q4_k"], 64, "unknown format 'q4_k'"),
            (["--algo", "magic"], 64, "unknown algorithm 'magic'"),
            (["--algo", "omniquant"], 69, "not available"),
            (["--algo", "qoq", "--group", "32"], 64, "--data"),
            (["--algo", "qoq", "--group", "32", "--sym", "--ids", out + "/file"], 64, "prog (progressive) is asymmetric"),
            (["--algo", "awq", "--group", "32"], 64, "--data"),
            (["--algo", "hqq", "--sym"], 64, "hqq is asymmetric"),
            (["--group", "48"], 64, "group 48 does not divide K = "),
            (["--format", "nvfp4", "--group", "32"], 64, "nvfp4 uses groups of 16"),
            (["--rule", "q_proj"], 64, "not REGEX=SCHEME"),
            (["--rules", out + "/rules.txt"], 64, "rules.txt:3: 'int4:g33x': unknown option 'g33x'"),
            (["--group", "32"], 65, "model.layers.9.mlp.up_proj.weight is I8, not floating point"),
            (["--fake", "--dtype", "f8"], 64, "--dtype"),
            (["--kvbits", "3"], 64, "--kvbits: 3 is not 4, 8 or 16"),
            (["--abits", "9"], 64, "--abits: integer activations are 2 to 8 bits"),
        ]
        for (args, status, message) in cases {
            let r = try Tool.run("qquant", [model] + args + ["-o", out + "/q"])
            #expect(r.status == status, "\(args): \(r.stderr)")
            #expect(r.stderr.hasPrefix("qquant: ") && r.stderr.contains(message), "\(args): \(r.stderr)")
            #expect(r.stdout.isEmpty && nothingLeft(out, "q"), "\(args)")
        }
        let missing = try Tool.run("qquant", [out + "/nowhere", "-o", out + "/q"])
        #expect(missing.status == 66 && nothingLeft(out, "q"))
        let blocked = try Tool.run("qquant", [model, "--group", "32", "--rule", "up_proj=keep", "-o", out + "/file/q"])
        #expect(blocked.status == 73, "\(blocked.stderr)")
    }

    @Test("--kvbits and --abits go with any algorithm: they are recorded for qeval to simulate")
    func runtimeRecords() throws {
        let model = try syntheticModel()
        let out = Tool.temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: model); try? FileManager.default.removeItem(atPath: out) }
        let r = try Tool.run("qquant", [model, "--group", "32", "--kvbits", "4", "--abits", "8", "-q", "-o", out + "/q"])
        #expect(r.status == 0, "\(r.stderr)")
        let config = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: out + "/q/config.json"))) as! [String: Any]
        let q = config["quantization_config"] as! [String: Any]
        let kv = q["kv_cache_format"] as! [String: Any], a = q["activation_format"] as! [String: Any]
        #expect(kv["bits"] as? Int == 4 && kv["dynamic"] as? Bool == true && kv["granularity"] as? String == "head")
        #expect(a["bits"] as? Int == 8 && a["granularity"] as? String == "token")
    }

    @Test("a full disk (write failure) exits 74 and leaves nothing")
    func writeFailure() throws {
        let model = try syntheticModel(hidden: 256)
        let out = Tool.temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: model); try? FileManager.default.removeItem(atPath: out) }
        // A file-size limit of 256 kB makes write(2) fail with EFBIG part-way, as ENOSPC would.
        let r = try Tool.run("qquant", [model, "--group", "64", "-o", out + "/q"], launcher: ["/bin/sh", "-c", "ulimit -f 256; exec \"$0\" \"$@\""])
        #expect(r.status == 74, "\(r.stderr)")
        #expect(r.stderr.contains("write failed"), "\(r.stderr)")
        #expect(nothingLeft(out, "q"))
    }

    @Test("a killed run leaves no output directory")
    func killed() throws {
        let model = try syntheticModel(hidden: 512, layers: 2)
        let out = Tool.temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: model); try? FileManager.default.removeItem(atPath: out) }
        let p = Process()
        p.executableURL = URL(fileURLWithPath: Tool.builtDirectory + "/qquant")
        p.arguments = [model, "--algo", "hqq", "--group", "64", "-q", "-o", out + "/q"]
        p.standardError = FileHandle.nullDevice
        try p.run()
        // Wait until it is writing (its staging directory exists), then kill it.
        let deadline = Date().addingTimeInterval(60)
        while Date() < deadline, !((try? FileManager.default.contentsOfDirectory(atPath: out)) ?? []).contains(where: { $0.hasPrefix(".q.qkit-") }) {
            usleep(2000)
        }
        kill(p.processIdentifier, SIGKILL)
        p.waitUntilExit()
        #expect(p.terminationReason == .uncaughtSignal, "qquant finished before it could be killed")
        #expect(!FileManager.default.fileExists(atPath: out + "/q"))
        // A new run over the leftovers succeeds.
        let r = try Tool.run("qquant", [model, "--group", "64", "-q", "-o", out + "/q"])
        #expect(r.status == 0 && FileManager.default.fileExists(atPath: out + "/q/model.safetensors"), "\(r.stderr)")
    }

    @Test("same bytes on one core as on all; --json says what was done")
    func deterministicAndJSON() throws {
        let model = try syntheticModel(hidden: 128)
        let out = Tool.temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: model); try? FileManager.default.removeItem(atPath: out) }
        let args = [model, "--group", "32", "--asym", "--rule", "down_proj=int3:g64:hqq", "--rule", "o_proj=nvfp4", "--rule", "q_proj=int4:g32:mse",
                    "--json"]
        let all = try Tool.run("qquant", args + ["-o", out + "/a"])
        let one = try Tool.run("qquant", args + ["-o", out + "/b"], launcher: ["/usr/bin/taskset", "-c", "0"])
        #expect(all.status == 0 && one.status == 0, "\(all.stderr) \(one.stderr)")
        let a = try Data(contentsOf: URL(fileURLWithPath: out + "/a/model.safetensors"))
        let b = try Data(contentsOf: URL(fileURLWithPath: out + "/b/model.safetensors"))
        #expect(a == b)
        let doc = try JSONSerialization.jsonObject(with: Data(all.stdout.utf8)) as! [String: Any]
        #expect(doc["quantized"] as? Int == 14 && doc["copied"] as? Int == 4)
        let schemes = doc["schemes"] as! [String: Int]
        #expect(schemes == ["int4:g32:asym": 8, "int3:g64:asym:hqq": 2, "nvfp4:g16": 2, "int4:g32:sym:mse": 2])
        let summary = try Tool.run("qinspect", ["--summary", out + "/a"])
        #expect(summary.status == 0 && summary.stdout.contains("quantization  qkit"), "\(summary.stdout)")
        #expect(summary.stdout.contains("int3:g64:asym:hqq×2"), "\(summary.stdout)")
    }

    @Test("SmolLM2-135M: layer 0 quantized, the rest copied; qinspect sees it")
    func realModel() throws {
        let smol = Tool.assets + "/smollm2-135m"
        guard FileManager.default.fileExists(atPath: smol + "/model.safetensors") else {
            Issue.record("missing \(smol): run scripts/fetch-assets.sh")
            return
        }
        let out = Tool.temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: out) }
        let r = try Tool.run("qquant", [smol, "--group", "64", "--skip", "layers\\.([1-9]|[12][0-9])\\.", "-o", out + "/q"])
        #expect(r.status == 0, "\(r.stderr)")
        #expect(r.stdout.contains("quantized 7 weights (7 × int4:g64:sym), copied 265 tensors"), "\(r.stdout)")
        let s = try Tool.run("qinspect", ["--summary", out + "/q"])
        for needle in ["quantization  qkit", "group size: 64", "quantized weights: 7 of 210 linear weights", "int4:g64:sym×7",
                       "packed bits/weight: 4.500"] {
            #expect(s.stdout.contains(needle), "missing '\(needle)' in \(s.stdout)")
        }
        for name in ["tokenizer.json", "generation_config.json"] {
            #expect(FileManager.default.contentsEqual(atPath: smol + "/" + name, andPath: out + "/q/" + name))
        }
    }
}
