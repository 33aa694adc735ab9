/// SANA (600M, 1600M): `SanaTransformer2DModel`. `num_layers` blocks `transformer_blocks.N`, each: linear (ReLU-kernel)
/// self-attention `attn1.to_q/k/v` [d, d] (no bias) and `attn1.to_out.0`; cross-attention `attn2.to_q` [d, d] from the
/// image tokens, `attn2.to_k/to_v` [d, cross_attention_dim] from the caption, `attn2.to_out.0`; the GLU-MBConv
/// feed-forward as 1×1 convolutions `ff.conv_inverted` [2h, d, 1, 1] (value ‖ gate), the depthwise `ff.conv_depth`
/// [2h, 1, 3, 3] and `ff.conv_point` [d, h, 1, 1]; a per-block `scale_shift_table` [6, d] (AdaLN-single: no linear in
/// the block). d = `num_attention_heads` × `attention_head_dim` (70 × 32 = 2240 for 1600M), h = int(`mlp_ratio` × d)
/// (5600; deepcompressor quantizes the "ch5632" variant, whose width is a multiple of 64).
///
/// Quantized by default, as deepcompressor's SANA config does (weight skips: embed, proj_in/out, norms, `attn_add`,
/// `ffn_add`): attn1 q/k/v (fused) and out, attn2 q and out, conv_inverted, conv_point. Kept in float: the
/// cross-attention k/v (text side; Nunchaku runs them 16-bit as `cross_attn.kv_linear`), the depthwise convolution,
/// `patch_embed`, `time_embed`, `caption_projection`, `caption_norm`, `proj_out`, scale-shift tables, biases.
public enum SanaTransformer: DiffusionFamily {
    public static let family = "sana"
    public static let classNames = ["SanaTransformer2DModel"]

    public static func describe(_ config: DiTConfig, _ ck: Checkpoint) throws -> DiTDescriptor {
        let heads = try config.int("num_attention_heads"), headDim = try config.int("attention_head_dim")
        let d = heads * headDim
        let cross = try config.int("cross_attention_dim", default: d)
        let crossInner = try config.int("num_cross_attention_heads", default: heads) * (try config.int("cross_attention_head_dim", default: headDim))
        let h = Int(try config.double("mlp_ratio", default: 2.5) * Double(d))
        var b = DiTBuilder(ck, config)
        let blocks = try b.blockCount("transformer_blocks", key: "num_layers")
        for i in 0..<blocks {
            let p = "transformer_blocks.\(i)"
            try b.addSelfAndCrossAttention(block: p, d: d, crossInner: crossInner, cross: cross)
            try b.add(p + ".ff.conv_inverted", block: p, role: .feedForwardUp, n: 2 * h, k: d, convolution: true)
            try b.add(p + ".ff.conv_point", block: p, role: .feedForwardDown, n: d, k: h, convolution: true)
        }
        return b.descriptor(family: family, className: classNames[0], blockLists: [("transformer_blocks", blocks)], hidden: d) { name in
            if name.contains(".ff.conv_depth.") { return "depthwise 3x3 convolution" }
            if name.hasPrefix("patch_embed") { return "patch embedder (proj_in)" }
            return DiTBuilder.commonReason(name)
        }
    }
}
