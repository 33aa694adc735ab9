import Testing
@testable import Common

/// The stored signed nibble of packed code (n, k) of a Nunchaku W4A4 `qweight`.
private func nibble(_ ck: Checkpoint, _ name: String, n: Int, k: Int) -> UInt8 {
    let t = ck[name]!
    let (byte, high) = NunchakuLayout.weightByte(n: n, k: k, kp: t.shape[1] * 2)
    let b = ck.data(t)[byte]
    return high ? b >> 4 : b & 0xF
}

/// The qkit I8 code of (n, k) as the signed nibble Nunchaku stores.
private func qkitNibble(_ ck: Checkpoint, _ prefix: String, n: Int, k: Int) -> UInt8 {
    let t = ck[prefix + ".weight_q"]!
    return ck.data(t)[n * t.shape[1] + k] & 0xF
}

@Suite("qpack --to nunchaku for diffusion transformers: Nunchaku's block names, shapes and tiles")
struct DiffusionNunchakuTests {
    @Test("FLUX: fused qkv, split single proj_out, AdaLN W4A16 GEMV, renamed q/k norms, metadata")
    func flux() throws {
        let model = try syntheticDiT(.flux)
        let q = SafetensorsFixture.temporaryDirectory() + "/q", out = SafetensorsFixture.temporaryDirectory() + "/n"
        var svd = DiffusionSVDQuant.Options()
        svd.rank = 16
        svd.iterations = 2
        _ = try DiffusionSVDQuant.run(model: model, output: q, options: QuantizeOptions(recipe: try QuantRecipe(defaultScheme: QuantScheme(format: .int(bits: 4), granularity: .group(64)))), svd: svd)
        let report = try NunchakuDiffusionPacker.run(input: q, output: out)
        #expect(report.packed == 30)
        let src = try Checkpoint(path: q), n = try Checkpoint(path: out)
        let d = 128, mlp = 512
        let expected: [String: [Int]] = [
            "transformer_blocks.0.qkv_proj.qweight": [3 * d, d / 2], "transformer_blocks.0.qkv_proj.wscales": [2, 3 * d],
            "transformer_blocks.0.qkv_proj.lora_down": [d, 16], "transformer_blocks.0.qkv_proj.lora_up": [3 * d, 16],
            "transformer_blocks.0.qkv_proj_context.qweight": [3 * d, d / 2], "transformer_blocks.0.out_proj.qweight": [d, d / 2],
            "transformer_blocks.0.out_proj_context.qweight": [d, d / 2], "transformer_blocks.0.mlp_fc1.qweight": [mlp, d / 2],
            "transformer_blocks.0.mlp_fc2.qweight": [d, mlp / 2], "transformer_blocks.1.mlp_context_fc2.smooth": [mlp],
            "transformer_blocks.0.norm1.linear.qweight": [6 * d / 4, d / 2], "transformer_blocks.0.norm1.linear.wzeros": [2, 6 * d],
            "transformer_blocks.0.norm1_context.linear.bias": [6 * d], "transformer_blocks.0.norm_added_k.weight": [32],
            "single_transformer_blocks.1.norm.linear.qweight": [3 * d / 4, d / 2], "single_transformer_blocks.1.out_proj.qweight": [d, d / 2],
            "single_transformer_blocks.1.mlp_fc2.qweight": [d, mlp / 2], "single_transformer_blocks.1.mlp_fc1.qweight": [mlp, d / 2],
            "single_transformer_blocks.1.norm_q.weight": [32], "x_embedder.weight": [d, 16], "proj_out.weight": [16, d],
        ]
        for (name, shape) in expected { #expect(n[name]?.shape == shape, "\(name): \(n[name]?.shape ?? [])") }
        #expect(n.tensors.allSatisfy { !$0.name.contains(".attn.") && !$0.name.contains("weight_q") })
        let meta = Dictionary(uniqueKeysWithValues: n.safetensorsMetadata[0]!.map { ($0.key, $0.value) })
        #expect(meta["model_class"] == "NunchakuFluxTransformer2dModel" && meta["quantization_config"]?.contains("\"rank\": 16") == true)
        #expect(try JSONParser.parse(meta["config"]!)["_class_name"]?.stringValue == "FluxTransformer2DModel")

        // qkv_proj rows: to_q, to_k, to_v; one shared lora_down, lora_up by rows.
        for (i, x) in ["to_q", "to_k", "to_v"].enumerated() {
            for (r, c) in [(0, 0), (5, 77), (127, 127)] {
                #expect(nibble(n, "transformer_blocks.0.qkv_proj.qweight", n: i * d + r, k: c) == qkitNibble(src, "transformer_blocks.0.attn.\(x)", n: r, k: c))
            }
        }
        let down = try readFloats(src, src["transformer_blocks.0.attn.to_k.lora_down"]!), upV = try readFloats(src, src["transformer_blocks.0.attn.to_v.lora_up"]!)
        let pd = try readFloats(n, n["transformer_blocks.0.qkv_proj.lora_down"]!), pu = try readFloats(n, n["transformer_blocks.0.qkv_proj.lora_up"]!)
        #expect(pd[NunchakuLayout.lowRankIndex(i: 3, j: 40, rows: 16, columns: d, down: true)] == down[3 * d + 40])
        #expect(pu[NunchakuLayout.lowRankIndex(i: 2 * d + 9, j: 7, rows: 3 * d, columns: 16, down: false)] == upV[9 * 16 + 7])
        // The single block's proj_out [d, d + 4d] splits along K.
        for (r, c) in [(0, 0), (17, 100), (127, 127)] {
            #expect(nibble(n, "single_transformer_blocks.1.out_proj.qweight", n: r, k: c) == qkitNibble(src, "single_transformer_blocks.1.proj_out", n: r, k: c))
            #expect(nibble(n, "single_transformer_blocks.1.mlp_fc2.qweight", n: r, k: 4 * c) == qkitNibble(src, "single_transformer_blocks.1.proj_out", n: r, k: d + 4 * c))
        }
        let mlpBias = try readFloats(n, n["single_transformer_blocks.1.mlp_fc2.bias"]!)
        #expect(mlpBias.allSatisfy { $0 == 0 })
        // AdaLN: row i·6 + j is chunk j's row i; W = u·wscales + wzeros reproduces qkit's weight; +1 on the scale chunks' bias.
        let qk = try QKitWeights(src)
        let w = try qk.float32("transformer_blocks.0.norm1.linear.weight").values
        let bias = try readFloats(src, src["transformer_blocks.0.norm1.linear.bias"]!)
        let ws = try readFloats(n, n["transformer_blocks.0.norm1.linear.wscales"]!), wz = try readFloats(n, n["transformer_blocks.0.norm1.linear.wzeros"]!)
        let pb = try readFloats(n, n["transformer_blocks.0.norm1.linear.bias"]!)
        let raw = n.data(n["transformer_blocks.0.norm1.linear.qweight"]!)
        let rows = 6 * d
        for (chunk, i, c) in [(0, 0, 0), (1, 3, 70), (4, 127, 127), (5, 64, 1)] {
            let r = i * 6 + chunk, old = chunk * d + i
            let (word, nib) = TinyChatLayout.position(n: r, k: c, columns: d)
            let u = Float((raw.loadUnaligned(fromByteOffset: 2 * word, as: UInt16.self) >> UInt16(4 * nib)) & 0xF)
            let value = u * ws[(c / 64) * rows + r] + wz[(c / 64) * rows + r]
            #expect(abs(value - w[old * d + c]) <= 0.01 * abs(w[old * d + c]) + 1e-6, "row \(r) col \(c)")
            #expect(pb[r] == DType.bf16.rounding(bias[old] + (chunk == 1 || chunk == 4 ? 1 : 0)))
        }
    }

    @Test("SANA: padded qkv and GLU widths, kv_linear and depth_conv in 16 bits, NVFP4 scales of Nunchaku's shape")
    func sana() throws {
        let model = try syntheticDiT(.sana)
        let q = SafetensorsFixture.temporaryDirectory() + "/q", out = SafetensorsFixture.temporaryDirectory() + "/n"
        _ = try QKitQuantizer.run(model: model, output: q, options: QuantizeOptions(recipe: try QuantRecipe(defaultScheme: QuantScheme(format: .nvfp4))))
        _ = try NunchakuDiffusionPacker.run(input: q, output: out)
        let src = try Checkpoint(path: q), n = try Checkpoint(path: out)
        let d = 320, pad = 384, h = 768
        let expected: [String: [Int]] = [
            "transformer_blocks.0.attn.qkv_proj.qweight": [3 * pad, pad / 2], "transformer_blocks.0.attn.qkv_proj.wscales": [pad / 16, 3 * pad],
            "transformer_blocks.0.attn.qkv_proj.wtscale": [1], "transformer_blocks.0.attn.out_proj.qweight": [pad, pad / 2],
            "transformer_blocks.0.cross_attn.q_linear.wscales": [pad / 16, pad], "transformer_blocks.0.cross_attn.kv_linear.weight": [2 * d, d],
            "transformer_blocks.0.cross_attn.kv_linear.bias": [2 * d], "transformer_blocks.1.cross_attn.out_proj.qweight": [pad, pad / 2],
            "transformer_blocks.1.ff.inverted_conv.qweight": [2 * h, pad / 2], "transformer_blocks.1.ff.depth_conv.weight": [2 * h, 3, 3, 1],
            "transformer_blocks.1.ff.point_conv.qweight": [pad, h / 2], "transformer_blocks.1.scale_shift_table": [6, d],
            "caption_projection.linear_1.weight": [d, 128], "patch_embed.proj.weight": [d, 8, 1, 1],
        ]
        for (name, shape) in expected { #expect(n[name]?.shape == shape, "\(name): \(n[name]?.shape ?? [])") }
        #expect(n.tensors.allSatisfy { !$0.name.contains(".attn1.") && !$0.name.contains(".attn2.") && !$0.name.contains("conv_") })
        // q, k, v at row offsets 0, 384, 768; the padding rows are zero codes.
        for (i, x) in ["to_q", "to_k", "to_v"].enumerated() {
            #expect(nibble(n, "transformer_blocks.0.attn.qkv_proj.qweight", n: i * pad + 11, k: 300) == qkitNibble(src, "transformer_blocks.0.attn1.\(x)", n: 11, k: 300))
            #expect(nibble(n, "transformer_blocks.0.attn.qkv_proj.qweight", n: i * pad + d + 5, k: 7) == 0)
        }
        // NVFP4: one global scale for the fused q/k/v, stored as its reciprocal.
        let g = src.data(src["transformer_blocks.0.attn1.to_k.weight_global_scale"]!).loadUnaligned(as: Float.self)
        #expect(n.data(n["transformer_blocks.0.attn.qkv_proj.wtscale"]!).loadUnaligned(as: Float.self) == 1 / g)
        let kv = try readFloats(n, n["transformer_blocks.0.cross_attn.kv_linear.weight"]!)
        let v = try readFloats(src, src["transformer_blocks.0.attn2.to_v.weight"]!)
        #expect(Array(kv[(d * d)...]) == v)
        let depth = try readFloats(src, src["transformer_blocks.1.ff.conv_depth.weight"]!), packed = try readFloats(n, n["transformer_blocks.1.ff.depth_conv.weight"]!)
        #expect(Array(packed[0..<(18 * h)]) == depth)
    }

    @Test("PixArt-Σ has no Nunchaku model: unavailable (69); a float model is refused (65)")
    func refusals() throws {
        let model = try syntheticDiT(.pixart)
        let q = SafetensorsFixture.temporaryDirectory() + "/q"
        _ = try QKitQuantizer.run(model: model, output: q, options: QuantizeOptions(recipe: try QuantRecipe(defaultScheme: QuantScheme(format: .int(bits: 4), granularity: .group(64)))))
        let out = SafetensorsFixture.temporaryDirectory() + "/n"
        #expect { try NunchakuDiffusionPacker.run(input: q, output: out) } throws: { e in
            (e as? any QKitError)?.exitStatus == .unavailable && "\(e)".contains("PixArtTransformer2DModel")
        }
        #expect(!fileExists(out))
        #expect(NunchakuDiffusionPacker.handles(model))
        #expect { try NunchakuDiffusionPacker.run(input: try syntheticDiT(.flux), output: out) } throws: { e in (e as? PackError)?.exitStatus == .dataError }
    }
}
