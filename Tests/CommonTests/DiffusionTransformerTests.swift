import Testing
@testable import Common

/// A synthetic diffusers transformer of `family` (the real names, widths scaled down) in a fresh directory.
func syntheticDiT(_ family: SyntheticDiffusionConfig.Family, pipeline: Bool = false, maxShardSize: Int = SyntheticCheckpoint.defaultMaxShardSize,
                  dtype: DType = .bf16) throws -> String {
    var c = SyntheticDiffusionConfig.tiny(family)
    c.pipeline = pipeline
    c.dtype = dtype
    let dir = SafetensorsFixture.temporaryDirectory() + "/model"
    try SyntheticCheckpoint.write(diffusion: c, to: dir, maxShardSize: maxShardSize)
    return dir
}

/// Replaces members of a model directory's config.json (`nil` removes the member).
func editConfig(_ dir: String, _ edits: [(String, JSONValue?)]) throws {
    var o = try JSONParser.parse(Array(readSmallFile(dir + "/config.json", limit: 1 << 20))).objectValue!
    for (k, v) in edits {
        if let v { o[k] = v } else { o.members.removeAll { $0.key == k } }
    }
    try writeSmallFile(dir + "/config.json", JSONValue.object(o).serialized(indent: 2))
}

/// Relative RMS error of `b` against `a`.
func relativeError(_ a: [Float], _ b: [Float]) -> Double {
    var num = 0.0, den = 0.0
    for (x, y) in zip(a, b) { num += Double(x - y) * Double(x - y); den += Double(x) * Double(x) }
    return (num / max(den, 1e-30)).squareRoot()
}

@Suite("Diffusion transformers: descriptors, qquant, qpack --to nunchaku")
struct DiffusionTransformerTests {
    @Test("each family is detected: class, blocks, linears, roles, default selection, fusion", arguments: [
        (SyntheticDiffusionConfig.Family.flux, 4, 40, 40), (.sana, 2, 20, 16), (.pixart, 2, 20, 16),
    ])
    func detection(_ family: SyntheticDiffusionConfig.Family, blocks: Int, linears: Int, selected: Int) throws {
        let ck = try Checkpoint(path: try syntheticDiT(family))
        #expect(DiffusionTransformers.isDiffusers(ck))
        let d = try DiffusionTransformers.describe(ck)
        #expect(d.family == family.rawValue && d.blockCount == blocks && d.linears.count == linears)
        #expect(d.linears.filter(\.quantizedByDefault).count == selected)
        // q/k/v of the first block are one fusion group; cross-attention k/v are text-side and kept in float.
        let qkv = d.linears.filter { $0.block == "transformer_blocks.0" && $0.role == .attentionQKV }
        #expect(qkv.count == 3 && Set(qkv.compactMap(\.fusion)).count == 1)
        let crossKV = d.linears.filter { $0.role == .crossKeyValue }
        #expect(crossKV.allSatisfy { !$0.quantizedByDefault } && crossKV.count == (family == .flux ? 0 : 4))
        // Embedders, final layer and norms are kept, with a reason.
        let kept = Dictionary(uniqueKeysWithValues: d.kept)
        #expect(kept["proj_out.weight"] == "final layer")
        switch family {
        case .flux:
            #expect(kept["x_embedder.weight"] == "patch embedder (proj_in)" && kept["time_text_embed.timestep_embedder.linear_1.weight"] != nil)
            #expect(d.linears.filter { $0.role == .modulation }.allSatisfy { $0.weightOnly })
            #expect(d.linear(weight: "single_transformer_blocks.1.proj_out.weight")?.k == 5 * 128)
        case .sana:
            #expect(kept["transformer_blocks.0.ff.conv_depth.weight"] == "depthwise 3x3 convolution")
            #expect(d.linear(weight: "transformer_blocks.1.ff.conv_point.weight")?.convolution == true)
        case .pixart:
            #expect(kept["adaln_single.linear.weight"] == "embedder" && kept["pos_embed.proj.weight"] == "patch embedder (proj_in)")
        }
    }

    @Test("a pipeline root opens its transformer/, a sharded transformer its diffusion_pytorch_model index")
    func layouts() throws {
        let root = try syntheticDiT(.flux, pipeline: true)
        let ck = try Checkpoint(path: root)
        #expect(ck.directory == root + "/transformer" && ck.config?["_class_name"]?.stringValue == "FluxTransformer2DModel")
        let sharded = try syntheticDiT(.sana, maxShardSize: 2_000_000)
        #expect(listDirectory(sharded).contains(Checkpoint.diffusersIndexName))
        let s = try Checkpoint(path: sharded)
        #expect(s.kind == .shardedSafetensors && s.files.count > 1)
        #expect(try DiffusionTransformers.describe(s).linears.count == 20)
    }

    @Test("an unknown _class_name is unavailable (69) and names what is supported; malformed configs are data errors (65)")
    func errors() throws {
        let dir = try syntheticDiT(.pixart)
        try editConfig(dir, [("_class_name", "SD3Transformer2DModel")])
        #expect {
            try DiffusionTransformers.describe(Checkpoint(path: dir))
        } throws: { e in
            guard let e = e as? DiffusionModelError else { return false }
            return e.exitStatus == .unavailable && "\(e)".contains("SD3Transformer2DModel")
                && ["FluxTransformer2DModel", "SanaTransformer2DModel", "PixArtTransformer2DModel"].allSatisfy { "\(e)".contains($0) }
        }
        // qquant refuses it the same way, before writing anything.
        let out = SafetensorsFixture.temporaryDirectory() + "/q"
        #expect(throws: DiffusionModelError.self) {
            try QKitQuantizer.run(model: dir, output: out, options: QuantizeOptions(recipe: try QuantRecipe(defaultScheme: QuantScheme(format: .int(bits: 4), granularity: .group(64)))))
        }
        #expect(!fileExists(out))
        for edits: [(String, JSONValue?)] in [[("_class_name", "PixArtTransformer2DModel"), ("num_layers", "two")],
                                               [("_class_name", "PixArtTransformer2DModel"), ("num_layers", 3)],
                                               [("_class_name", "PixArtTransformer2DModel"), ("num_attention_heads", 5)],
                                               [("_class_name", 7)], [("_class_name", nil)]] {
            try editConfig(dir, edits)
            #expect {
                try DiffusionTransformers.describe(Checkpoint(path: dir))
            } throws: { e in (e as? DiffusionModelError)?.exitStatus == .dataError }
        }
        try writeSmallFile(dir + "/config.json", "{\"_class_name\": \"PixArtTransformer2DModel\", ")
        let ck = try Checkpoint(path: dir)
        #expect(DiffusionTransformers.isDiffusers(ck))
        #expect { try DiffusionTransformers.describe(ck) } throws: { e in (e as? DiffusionModelError)?.exitStatus == .dataError }
    }

    @Test("RTN int4 g64 / nvfp4: the descriptor's linears quantized, everything else byte for byte, read back within bounds",
          arguments: [(SyntheticDiffusionConfig.Family.flux, "int4:g64"), (.sana, "nvfp4"), (.pixart, "int4:g64")])
    func roundTrip(_ family: SyntheticDiffusionConfig.Family, scheme: String) throws {
        let model = try syntheticDiT(family)
        let out = SafetensorsFixture.temporaryDirectory() + "/q"
        let report = try QKitQuantizer.run(model: model, output: out, options: QuantizeOptions(recipe: try QuantRecipe(defaultScheme: QuantScheme.parse(scheme)!)))
        let src = try Checkpoint(path: model)
        let d = try DiffusionTransformers.describe(src)
        let selected = d.linears.filter(\.quantizedByDefault)
        #expect(report.quantized.count == selected.count)
        #expect(listDirectory(out).contains(Checkpoint.diffusersWeightsName) && !listDirectory(out).contains("model.safetensors"))
        let q = try QKitWeights(path: out)
        #expect(Set(q.quantizedWeights) == Set(selected.map { $0.prefix + ".weight" }))
        #expect(q.config?["quantization_config"]?["diffusion"]?["family"]?.stringValue == family.rawValue)
        let bound = 0.17  // 4-bit RTN of heavy-tailed weights with outlier columns: ~0.13–0.15 measured
        for l in selected {
            let original = try CheckpointWeights(src).float32(l.prefix + ".weight").values
            let back = try q.float32(l.prefix + ".weight")
            #expect(back.shape == [l.n, l.k])
            let e = relativeError(original, back.values)
            #expect(e < bound, "\(l.prefix): relative error \(e)")
        }
        // Every tensor that is not a quantized weight is copied byte for byte.
        let qck = q.checkpoint
        for t in src.tensors where !selected.contains(where: { $0.prefix + ".weight" == t.name }) {
            #expect(qck[t.name].map { qck.data($0).elementsEqual(src.data(t)) } == true, "\(t.name)")
        }
        if family == .sana {
            // A fused q/k/v shares one NVFP4 global scale; 1×1 convolutions record their shape.
            let g = ["to_q", "to_k", "to_v"].map { qck.data(qck["transformer_blocks.0.attn1.\($0).weight_global_scale"]!).loadUnaligned(as: Float.self) }
            #expect(Set(g).count == 1)
            #expect(q.config?["quantization_config"]?["weight_shapes"]?["transformer_blocks.0.ff.conv_inverted"] == [1536, 320, 1, 1])
        }
    }

    @Test("--fake keeps the diffusers shapes (a 1×1 convolution stays 4-D) and the source dtype")
    func fake() throws {
        let model = try syntheticDiT(.sana)
        let out = SafetensorsFixture.temporaryDirectory() + "/f"
        var o = QuantizeOptions(recipe: try QuantRecipe(defaultScheme: QuantScheme(format: .int(bits: 4), granularity: .group(64))))
        o.fake = true
        _ = try QKitQuantizer.run(model: model, output: out, options: o)
        let a = try Checkpoint(path: model), b = try Checkpoint(path: out)
        #expect(a.tensors.map(\.name) == b.tensors.map(\.name) && a.tensors.map(\.shape) == b.tensors.map(\.shape))
        #expect(b["transformer_blocks.0.ff.conv_point.weight"]?.encoding == .dtype(.bf16))
        #expect(!b.data(b["transformer_blocks.0.attn1.to_q.weight"]!).elementsEqual(a.data(a["transformer_blocks.0.attn1.to_q.weight"]!)))
    }

    @Test("svdquant: data-free low-rank branch shared by q/k/v lowers the weight error; --stats smoothing; missing statistics are a data error")
    func svdquant() throws {
        let model = try syntheticDiT(.pixart)
        let scheme = QuantScheme(format: .int(bits: 4), granularity: .group(64))
        let options = QuantizeOptions(recipe: try QuantRecipe(defaultScheme: scheme))
        let rtnOut = SafetensorsFixture.temporaryDirectory() + "/r", svdOut = SafetensorsFixture.temporaryDirectory() + "/s"
        _ = try QKitQuantizer.run(model: model, output: rtnOut, options: options)
        var svd = DiffusionSVDQuant.Options()
        svd.rank = 16
        svd.iterations = 4
        _ = try DiffusionSVDQuant.run(model: model, output: svdOut, options: options, svd: svd)
        let src = CheckpointWeights(try Checkpoint(path: model))
        let rtn = try QKitWeights(path: rtnOut), s = try QKitWeights(path: svdOut)
        let sck = s.checkpoint
        #expect(s.config?["quantization_config"]?["algorithm"]?.stringValue == "svdquant")
        var better = 0
        for p in ["transformer_blocks.0.attn1.to_q", "transformer_blocks.0.ff.net.0.proj", "transformer_blocks.1.attn2.to_out.0"] {
            let w = try src.float32(p + ".weight").values
            let q = try s.float32(p + ".weight").values  // residual only
            let down = try readFloats(sck, sck[p + ".lora_down"]!), up = try readFloats(sck, sck[p + ".lora_up"]!)
            #expect(sck[p + ".lora_down"]!.shape[0] == 16 && sck[p + ".smooth"] == nil)
            let k = w.count / up.count * 16
            var eff = q
            for r in 0..<(up.count / 16) { for j in 0..<16 { for c in 0..<k { eff[r * k + c] += up[r * 16 + j] * down[j * k + c] } } }
            if relativeError(w, eff) < relativeError(w, try rtn.float32(p + ".weight").values) { better += 1 }
        }
        #expect(better == 3)
        let down = ["to_q", "to_k", "to_v"].map { sck.data(sck["transformer_blocks.0.attn1.\($0).lora_down"]!) }
        #expect(down[0].elementsEqual(down[1]) && down[0].elementsEqual(down[2]))

        // Smoothing from a statistics file: P.input.absmax with outlier channels.
        let d = try DiffusionTransformers.describe(Checkpoint(path: model))
        var tensors: [(name: String, dtype: DType, shape: [Int], bytes: [UInt8])] = []
        for l in d.linears where l.quantizedByDefault {
            let v = (0..<l.k).map { Float($0 % 37 == 5 ? 40 : 1 + Float($0 % 7) / 7) }
            tensors.append((l.prefix + ".input.absmax", .f32, [l.k], SafetensorsFixture.bytes(v)))
        }
        let statsFile = SafetensorsFixture.temporaryDirectory() + "/stats.safetensors"
        SafetensorsFixture.write(SafetensorsFixture.file(tensors), to: statsFile)
        svd.statistics = statsFile
        let smoothed = SafetensorsFixture.temporaryDirectory() + "/m"
        _ = try DiffusionSVDQuant.run(model: model, output: smoothed, options: options, svd: svd)
        let m = try QKitWeights(path: smoothed)
        #expect(m.config?["quantization_config"]?["svdquant"]?["statistics"]?.stringValue == statsFile)
        #expect(m.checkpoint.tensors.contains { $0.name.hasSuffix(".lora_up") })
        SafetensorsFixture.write(SafetensorsFixture.file(Array(tensors.dropFirst())), to: statsFile)
        #expect { try DiffusionSVDQuant.run(model: model, output: SafetensorsFixture.temporaryDirectory() + "/x", options: options, svd: svd) } throws: { e in
            (e as? CalibrationError)?.exitStatus == .dataError && "\(e)".contains(tensors[0].name)
        }
    }
}
