/// Qwen3 (dense): Llama anatomy with per-head RMSNorm of q and k (`q_norm`, `k_norm`) before RoPE,
/// `head_dim` from the configuration, optional `attention_bias`.
public enum Qwen3Architecture: Architecture {
    public static let modelTypes = ["qwen3"]

    public static func configuration(_ view: ConfigReaderView) throws -> DecoderConfig {
        var c = try view.reader.decoderConfig(family: "qwen3")
        let bias = try view.reader.bool("attention_bias", default: false)
        c.attentionBias = bias
        c.outputBias = bias
        c.qkNorm = true
        c.slidingWindow = try qwenSlidingWindows(view, layers: c.layerCount)
        return c
    }
}
