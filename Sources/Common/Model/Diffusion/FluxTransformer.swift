/// FLUX.1 (dev, schnell): `FluxTransformer2DModel`. `num_layers` dual-stream blocks (`transformer_blocks.N`: image and
/// text streams with their own AdaLN-Zero modulation `norm1.linear`/`norm1_context.linear` [6d, d], joint attention
/// `attn.to_q/k/v`, `attn.add_q_proj/add_k_proj/add_v_proj`, outputs `attn.to_out.0`/`attn.to_add_out`, GELU
/// feed-forwards `ff.net.0.proj` [4d, d], `ff.net.2` [d, 4d] and `ff_context.…`) and `num_single_layers` single-stream
/// blocks (`single_transformer_blocks.N`: `norm.linear` [3d, d], `attn.to_q/k/v`, `proj_mlp` [4d, d], and `proj_out`
/// [d, 5d] = attention output ‖ MLP down along K). d = `num_attention_heads` × `attention_head_dim` (24 × 128 = 3072).
///
/// Quantized by default, as deepcompressor's FLUX configs do (its weight skips are embed, proj_in/out): every block
/// linear; the AdaLN modulation linears weight-only (Nunchaku runs them W4A16), the others W4A4. q/k/v (and the
/// added q/k/v) are one fused linear in Nunchaku and are quantized together. Kept in float: `x_embedder`,
/// `context_embedder`, `time_text_embed.*`, `norm_out.linear`, `proj_out`, the q/k RMSNorms, biases.
public enum FluxTransformer: DiffusionFamily {
    public static let family = "flux"
    public static let classNames = ["FluxTransformer2DModel"]

    public static func describe(_ config: DiTConfig, _ ck: Checkpoint) throws -> DiTDescriptor {
        let heads = try config.int("num_attention_heads"), headDim = try config.int("attention_head_dim")
        let d = heads * headDim
        let mlp = Int(Double(d) * (try config.double("mlp_ratio", default: 4)))
        var b = DiTBuilder(ck, config)
        let dual = try b.blockCount("transformer_blocks", key: "num_layers")
        let single = try b.blockCount("single_transformer_blocks", key: "num_single_layers")
        for i in 0..<dual {
            let p = "transformer_blocks.\(i)"
            try b.add(p + ".norm1.linear", block: p, role: .modulation, n: 6 * d, k: d, weightOnly: true)
            try b.add(p + ".norm1_context.linear", block: p, role: .modulation, n: ck[p + ".norm1_context.linear.weight"]?.shape.first == 2 * d ? 2 * d : 6 * d,
                      k: d, weightOnly: true)
            for x in ["to_q", "to_k", "to_v"] { try b.add(p + ".attn." + x, block: p, role: .attentionQKV, n: d, k: d, fusion: p + ".attn.qkv") }
            for x in ["add_q_proj", "add_k_proj", "add_v_proj"] {
                try b.add(p + ".attn." + x, block: p, role: .contextQKV, n: d, k: d, fusion: p + ".attn.add_qkv")
            }
            try b.add(p + ".attn.to_out.0", block: p, role: .attentionOut, n: d, k: d)
            try b.add(p + ".attn.to_add_out", block: p, role: .contextOut, n: d, k: d)
            try b.add(p + ".ff.net.0.proj", block: p, role: .feedForwardUp, n: mlp, k: d)
            try b.add(p + ".ff.net.2", block: p, role: .feedForwardDown, n: d, k: mlp)
            try b.add(p + ".ff_context.net.0.proj", block: p, role: .contextFeedForwardUp, n: mlp, k: d)
            try b.add(p + ".ff_context.net.2", block: p, role: .contextFeedForwardDown, n: d, k: mlp)
        }
        for i in 0..<single {
            let p = "single_transformer_blocks.\(i)"
            try b.add(p + ".norm.linear", block: p, role: .modulation, n: 3 * d, k: d, weightOnly: true)
            for x in ["to_q", "to_k", "to_v"] { try b.add(p + ".attn." + x, block: p, role: .attentionQKV, n: d, k: d, fusion: p + ".attn.qkv") }
            try b.add(p + ".proj_mlp", block: p, role: .feedForwardUp, n: mlp, k: d)
            try b.add(p + ".proj_out", block: p, role: .singleOut, n: d, k: d + mlp)
        }
        return b.descriptor(family: family, className: classNames[0],
                            blockLists: [("transformer_blocks", dual), ("single_transformer_blocks", single)], hidden: d) { name in
            if name.hasPrefix("x_embedder") { return "patch embedder (proj_in)" }
            if name.hasPrefix("context_embedder") { return "text embedder" }
            if name.hasPrefix("time_text_embed") { return "time/guidance/text embedder" }
            return DiTBuilder.commonReason(name)
        }
    }
}
