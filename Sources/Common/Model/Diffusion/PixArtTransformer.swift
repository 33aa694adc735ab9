/// PixArt-α/Σ: `PixArtTransformer2DModel` (`norm_type` ada_norm_single). `num_layers` blocks `transformer_blocks.N`,
/// each: self-attention `attn1.to_q/k/v`, `attn1.to_out.0` [d, d] (with biases); cross-attention `attn2.to_q` [d, d],
/// `attn2.to_k/to_v` [d, cross_attention_dim] (the projected caption), `attn2.to_out.0`; GELU (tanh) feed-forward
/// `ff.net.0.proj` [4d, d], `ff.net.2` [d, 4d]; `scale_shift_table` [6, d]. The modulation linear is global
/// (`adaln_single.linear` [6d, d]). d = `num_attention_heads` × `attention_head_dim` (16 × 72 = 1152 for Σ XL).
///
/// Quantized by default, as deepcompressor's PixArt-Σ config does (weight skips: embed, proj_in/out, norms,
/// `attn_add`, `ffn_add`): attn1 q/k/v (fused) and out, attn2 q and out, ff up and down. Kept in float: attn2 k/v
/// (text side), `pos_embed`, `adaln_single`, `caption_projection`, `proj_out`, scale-shift tables, biases.
public enum PixArtTransformer: DiffusionFamily {
    public static let family = "pixart"
    public static let classNames = ["PixArtTransformer2DModel"]

    public static func describe(_ config: DiTConfig, _ ck: Checkpoint) throws -> DiTDescriptor {
        let heads = try config.int("num_attention_heads"), headDim = try config.int("attention_head_dim")
        let d = heads * headDim
        let cross = try config.int("cross_attention_dim", default: d)
        if let nt = config.json["norm_type"], nt != .null, nt.stringValue != "ada_norm_single" {
            throw DiffusionModelError.badConfig(path: config.path, key: "norm_type", why: "\(nt.stringValue.map { "'\($0)'" } ?? "not a string") (PixArt uses ada_norm_single)")
        }
        let ffInner = ck["transformer_blocks.0.ff.net.0.proj.weight"]?.shape.first ?? 4 * d
        var b = DiTBuilder(ck, config)
        let blocks = try b.blockCount("transformer_blocks", key: "num_layers")
        for i in 0..<blocks {
            let p = "transformer_blocks.\(i)"
            try b.addSelfAndCrossAttention(block: p, d: d, crossInner: d, cross: cross)
            try b.add(p + ".ff.net.0.proj", block: p, role: .feedForwardUp, n: ffInner, k: d)
            try b.add(p + ".ff.net.2", block: p, role: .feedForwardDown, n: d, k: ffInner)
        }
        return b.descriptor(family: family, className: classNames[0], blockLists: [("transformer_blocks", blocks)], hidden: d) { name in
            if name.hasPrefix("pos_embed") { return "patch embedder (proj_in)" }
            return DiTBuilder.commonReason(name)
        }
    }
}
