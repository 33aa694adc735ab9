/// Qwen2 / Qwen2.5: Llama anatomy with biases on q/k/v (not o); sliding windows only when
/// `use_sliding_window` is set, on the layers from `max_window_layers` on.
public enum Qwen2Architecture: Architecture {
    public static let modelTypes = ["qwen2"]

    public static func configuration(_ view: ConfigReaderView) throws -> DecoderConfig {
        var c = try view.reader.decoderConfig(family: "qwen2")
        c.attentionBias = true
        c.slidingWindow = try qwenSlidingWindows(view, layers: c.layerCount)
        return c
    }
}

/// The per-layer windows of the Qwen families: `layer_types` when present, else `use_sliding_window` with
/// `max_window_layers`.
func qwenSlidingWindows(_ view: ConfigReaderView, layers: Int) throws -> [Int?] {
    guard try view.reader.bool("use_sliding_window", default: false) else { return Array(repeating: nil, count: layers) }
    guard let window = view.json["sliding_window"]?.intValue, window > 0 else {
        throw ModelError.badConfig(path: view.path, key: "sliding_window", why: "use_sliding_window is set without a positive window")
    }
    if let types = view.json["layer_types"]?.arrayValue {
        guard types.count == layers else {
            throw ModelError.badConfig(path: view.path, key: "layer_types", why: "\(types.count) entries for \(layers) layers")
        }
        return types.map { $0.stringValue == "sliding_attention" ? window : nil }
    }
    let firstWindowed = view.reader.optionalInt("max_window_layers") ?? layers
    return (0..<layers).map { $0 >= firstWindowed ? window : nil }
}
