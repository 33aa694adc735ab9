import Common
import Foundation
import Testing

/// A synthetic diffusers transformer (qsynth's `--family`) in a fresh directory.
private func dit(_ family: SyntheticDiffusionConfig.Family, pipeline: Bool = false) throws -> String {
    var c = SyntheticDiffusionConfig.tiny(family)
    c.pipeline = pipeline
    let dir = Tool.temporaryDirectory() + "/model"
    try SyntheticCheckpoint.write(diffusion: c, to: dir)
    return dir
}

/// The bytes of every file of a directory, by name.
private func contents(_ dir: String) throws -> [String: Data] {
    var out: [String: Data] = [:]
    for name in try FileManager.default.contentsOfDirectory(atPath: dir) { out[name] = try Data(contentsOf: URL(fileURLWithPath: dir + "/" + name)) }
    return out
}

@Suite("diffusion transformers end to end: qinspect, qquant, qpack")
struct DiffusionToolTests {
    @Test("qinspect --summary names the family, class, blocks and how the block linears are stored")
    func summary() throws {
        let model = try dit(.flux, pipeline: true)
        var r = try Tool.run("qinspect", ["--summary", model])
        #expect(r.status == 0 && r.stdout.contains("diffusion     flux (FluxTransformer2DModel), 2 transformer_blocks + 2 single_transformer_blocks"))
        let q = Tool.temporaryDirectory() + "/q"
        r = try Tool.run("qquant", [model, "--group", "64", "--rule", "norm1\\.linear=int8:ch", "-o", q, "-q"])
        #expect(r.status == 0, "\(r.stderr)")
        r = try Tool.run("qinspect", ["--summary", "--json", q])
        let s = try JSONParser.parse(r.stdout)["summary"]?["diffusion"]
        #expect(s?["family"]?.stringValue == "flux" && s?["class"]?.stringValue == "FluxTransformer2DModel" && s?["block_count"]?.intValue == 4)
        #expect(s?["quantized_linears"]?.intValue == 40 && s?["roles"]?["adaln"]?["int8:channel:sym"]?.intValue == 2)
        #expect(s?["roles"]?["adaln"]?["int4:g64:sym"]?.intValue == 4 && s?["roles"]?["attn-qkv"]?["int4:g64:sym"]?.intValue == 12)
        #expect((s?["bits_per_weight"]?.doubleValue ?? 0) > 4)
    }

    @Test("qquant (rtn, svdquant) writes the same bytes whatever the thread count; qpack --to nunchaku packs it")
    func deterministic() throws {
        let model = try dit(.pixart)
        for args in [["--format", "nvfp4"], ["--algo", "svdquant", "--rank", "16"]] {
            let a = Tool.temporaryDirectory() + "/a", b = Tool.temporaryDirectory() + "/b"
            let r1 = try Tool.run("qquant", [model] + args + ["-o", a, "-q"], launcher: ["/usr/bin/env", "QKIT_THREADS=1"])
            let r2 = try Tool.run("qquant", [model] + args + ["-o", b, "-q"])
            #expect(r1.status == 0 && r2.status == 0, "\(r1.stderr) \(r2.stderr)")
            #expect(try contents(a) == contents(b), "\(args)")
        }
        let flux = try dit(.flux)
        let q = Tool.temporaryDirectory() + "/q", n = Tool.temporaryDirectory() + "/n"
        #expect(try Tool.run("qquant", [flux, "--algo", "svdquant", "--rank", "16", "-o", q, "-q"]).status == 0)
        let r = try Tool.run("qpack", [q, "--to", "nunchaku", "-o", n])
        #expect(r.status == 0, "\(r.stderr)")
        #expect(FileManager.default.fileExists(atPath: n + "/diffusion_pytorch_model.safetensors"))
    }

    @Test("exit statuses: unknown _class_name 69 naming the supported ones, malformed config 65, PixArt to nunchaku 69, calibrated algorithms 69")
    func errors() throws {
        let model = try dit(.sana)
        var o = try JSONParser.parse(String(contentsOfFile: model + "/config.json", encoding: .utf8)).objectValue!
        o["_class_name"] = "HunyuanDiT2DModel"
        try writeSmallFile(model + "/config.json", JSONValue.object(o).serialized())
        var r = try Tool.run("qquant", [model, "-o", Tool.temporaryDirectory() + "/x"])
        #expect(r.status == 69 && r.stderr.contains("HunyuanDiT2DModel") && r.stderr.contains("SanaTransformer2DModel"))
        #expect(r.stderr.split(separator: "\n").count == 1)
        o["_class_name"] = "SanaTransformer2DModel"
        o["num_attention_heads"] = "ten"
        try writeSmallFile(model + "/config.json", JSONValue.object(o).serialized())
        r = try Tool.run("qquant", [model, "-o", Tool.temporaryDirectory() + "/x"])
        #expect(r.status == 65 && r.stderr.contains("num_attention_heads"))
        let pixart = try dit(.pixart), q = Tool.temporaryDirectory() + "/q"
        #expect(try Tool.run("qquant", [pixart, "--group", "64", "-o", q, "-q"]).status == 0)
        r = try Tool.run("qpack", [q, "--to", "nunchaku", "-o", Tool.temporaryDirectory() + "/n"])
        #expect(r.status == 69 && r.stderr.contains("Nunchaku has no PixArtTransformer2DModel"))
        r = try Tool.run("qquant", [pixart, "--algo", "gptq", "--data", "/dev/null", "-o", Tool.temporaryDirectory() + "/g"])
        #expect(r.status == 69 && r.stderr.contains("diffusion transformer"))
    }
}
