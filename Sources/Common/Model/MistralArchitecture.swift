/// Mistral: Llama anatomy with sliding-window attention (`sliding_window`, when set, on every layer).
public enum MistralArchitecture: Architecture {
    public static let modelTypes = ["mistral"]

    public static func configuration(_ view: ConfigReaderView) throws -> DecoderConfig {
        var c = try view.reader.decoderConfig(family: "mistral")
        if let w = view.json["sliding_window"], w != .null {
            guard let window = w.intValue, window > 0 else {
                throw ModelError.badConfig(path: view.path, key: "sliding_window", why: "not a positive integer")
            }
            c.slidingWindow = Array(repeating: window, count: c.layerCount)
        }
        return c
    }
}
