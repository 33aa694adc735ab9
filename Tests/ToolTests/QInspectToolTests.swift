import Foundation
import Testing

/// A small valid checkpoint with config.json, written for the tool tests.
private func tinyModel() throws -> String {
    let dir = Tool.temporaryDirectory()
    let w: [Float] = (0..<32).map { Float($0) - 16 }
    let header = #"{"__metadata__":{"format":"pt"},"model.embed_tokens.weight":{"dtype":"F32","shape":[8,4],"data_offsets":[0,128]},"model.layers.0.mlp.up_proj.weight":{"dtype":"BF16","shape":[4,4],"data_offsets":[128,160]}}"#
    var data = w.withUnsafeBytes { Array($0) }
    data += (0..<16).flatMap { i -> [UInt8] in let b = (Float(i) * 0.25).bitPattern >> 16; return [UInt8(b & 0xFF), UInt8(b >> 8)] }
    try Tool.safetensors(header: header, data: data).write(to: URL(fileURLWithPath: dir + "/model.safetensors"))
    try #"{"model_type":"llama","architectures":["LlamaForCausalLM"],"num_hidden_layers":1,"hidden_size":4,"num_attention_heads":2,"num_key_value_heads":1,"vocab_size":8,"tie_word_embeddings":true}"#
        .write(toFile: dir + "/config.json", atomically: true, encoding: .utf8)
    return dir
}

@Suite("qinspect, run as a user runs it")
struct QInspectToolTests {
    @Test func listingAndTotals() throws {
        let dir = try tinyModel()
        let r = try Tool.run("qinspect", [dir])
        #expect(r.status == 0)
        #expect(r.stdout.contains("model.layers.0.mlp.up_proj.weight  BF16   [4, 4]"))
        #expect(r.stdout.hasSuffix("2 tensors, 48 elements, 160 B (BF16 ×1, F32 ×1)\n"))
        #expect(r.stderr.isEmpty)
    }

    @Test("paths alone (listed without the argument parser) print what the parsed command prints")
    func plainListingMatchesParsed() throws {
        let dir = try tinyModel()
        for paths in [[dir], [dir, dir + "/model.safetensors"]] {
            let plain = try Tool.run("qinspect", paths)
            let parsed = try Tool.run("qinspect", ["--filter", "*"] + paths)
            #expect(plain.status == 0 && parsed.status == 0)
            #expect(plain.stdout == parsed.stdout && plain.stderr == parsed.stderr)
        }
        let missing = try Tool.run("qinspect", [dir, "/nonexistent/x.safetensors"])
        #expect(missing.status == 66)
        #expect(missing.stderr.hasPrefix("qinspect: /nonexistent/x.safetensors: ") && missing.stderr.filter { $0 == "\n" }.count == 1)
        #expect(missing.stdout.contains("2 tensors, 48 elements, 160 B (BF16 ×1, F32 ×1)\n"), "the first checkpoint is listed")
    }

    @Test func jsonAndJsonl() throws {
        let dir = try tinyModel()
        let j = try Tool.run("qinspect", ["--json", "--summary", "--stats", dir + "/model.safetensors"])
        #expect(j.status == 0)
        let doc = try JSONSerialization.jsonObject(with: Data(j.stdout.utf8)) as! [String: Any]
        let tensors = doc["tensors"] as! [[String: Any]]
        #expect(tensors.count == 2)
        let stats = tensors[0]["stats"] as! [String: Any]
        #expect(stats["min"] as? Double == -16 && stats["max"] as? Double == 15 && stats["mean"] as? Double == -0.5)
        #expect((doc["summary"] as! [String: Any])["parameters"] as? Int == 48)
        let l = try Tool.run("qinspect", ["--jsonl", "--filter", "*embed*", dir])
        let lines = l.stdout.split(separator: "\n")
        #expect(lines.count == 1)
        let o = try JSONSerialization.jsonObject(with: Data(lines[0].utf8)) as! [String: Any]
        #expect(o["name"] as? String == "model.embed_tokens.weight" && (o["shape"] as? [Int]) == [8, 4])
    }

    @Test("reads a checkpoint from a pipe")
    func stdin() throws {
        let dir = try tinyModel()
        let data = try Data(contentsOf: URL(fileURLWithPath: dir + "/model.safetensors"))
        let r = try Tool.run("qinspect", ["--stats", "-"], stdin: data)
        #expect(r.status == 0)
        #expect(r.stdout.contains("model.embed_tokens.weight"))
        let bad = try Tool.run("qinspect", ["-"], stdin: Data([1, 2, 3]))
        #expect(bad.status == 65)
        #expect(bad.stderr == "qinspect: -: file too small for a safetensors header (3 bytes, need at least 8)\n")
    }

    @Test("malformed input: one line on stderr, exit 65, nothing on stdout", arguments: [
        ("gap", #"{"a":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}}"#, 8),
        ("dup", #"{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"a":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}}"#, 8),
        ("dtype", #"{"a":{"dtype":"f32","shape":[1],"data_offsets":[0,4]}}"#, 4),
        ("short", #"{"a":{"dtype":"F32","shape":[4],"data_offsets":[0,16]}}"#, 8),
    ])
    func malformed(_ c: (String, String, Int)) throws {
        let dir = Tool.temporaryDirectory()
        let path = dir + "/\(c.0).safetensors"
        try Tool.safetensors(header: c.1, data: [UInt8](repeating: 0, count: c.2)).write(to: URL(fileURLWithPath: path))
        for args in [[path], ["--summary", path], ["--stats", path], ["--verify", path]] {
            let r = try Tool.run("qinspect", args)
            #expect(r.status == 65)
            #expect(r.stdout.isEmpty)
            #expect(r.stderr.hasPrefix("qinspect: \(path): ") && r.stderr.filter { $0 == "\n" }.count == 1, "\(r.stderr)")
        }
    }

    @Test("exit codes: missing input 66, usage 64")
    func exitCodes() throws {
        #expect(try Tool.run("qinspect", ["/nonexistent/model.safetensors"]).status == 66)
        #expect(try Tool.run("qinspect", []).status == 64)
        #expect(try Tool.run("qinspect", ["--json", "--jsonl", "x"]).status == 64)
        #expect(try Tool.run("qinspect", ["--bogus", "x"]).status == 64)
    }

    @Test func verifyAndDiff() throws {
        let a = try tinyModel()
        let v = try Tool.run("qinspect", ["--verify", a])
        #expect(v.status == 0 && v.stdout.contains(": OK (2 tensors"))
        // Change one byte of the f32 embedding in a copy.
        let b = Tool.temporaryDirectory()
        var data = try Data(contentsOf: URL(fileURLWithPath: a + "/model.safetensors"))
        let dataStart = 8 + Int(data.withUnsafeBytes { $0.loadUnaligned(as: UInt64.self) })
        data[dataStart + 3] = 0x7F; data[dataStart + 2] = 0xC0  // element 0 becomes NaN
        try data.write(to: URL(fileURLWithPath: b + "/model.safetensors"))
        let bad = try Tool.run("qinspect", ["--verify", b])
        #expect(bad.status == 65)
        #expect(bad.stdout.contains("model.embed_tokens.weight: 1 NaN value"))
        let d = try Tool.run("qinspect", ["--diff", a, b])
        #expect(d.status == 0)
        #expect(d.stdout.contains("1 identical, 1 changed"))
        #expect(d.stdout.contains("(1 NaN/Inf differ)"))
    }

    @Test("algorithms of later issues say so and exit 69", arguments: ["omniquant"])
    func notYet(_ algo: String) throws {
        let r = try Tool.run("qquant", ["model", "--algo", algo, "-o", "x"])
        #expect(r.status == 69)
        #expect(r.stderr.hasPrefix("qquant: not available yet"))
        #expect(r.stdout.isEmpty)
    }
}
