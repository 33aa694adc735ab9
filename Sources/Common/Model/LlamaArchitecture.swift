/// Llama 1/2/3/3.1+ and SmolLM (which is Llama): RMSNorm, RoPE (default, linear, dynamic, llama3), GQA,
/// SiLU-gated MLP, optional `attention_bias` (q/k/v/o) and `mlp_bias`.
public enum LlamaArchitecture: Architecture {
    public static let modelTypes = ["llama"]

    public static func configuration(_ view: ConfigReaderView) throws -> DecoderConfig {
        var c = try view.reader.decoderConfig(family: "llama")
        let bias = try view.reader.bool("attention_bias", default: false)
        c.attentionBias = bias
        c.outputBias = bias
        return c
    }
}
