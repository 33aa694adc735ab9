/// One model family: which `config.json` it claims and how its configuration reads. The decoder block is
/// shared (Llama anatomy, see ../shared/specs/algorithms.md §1); a family only switches features on.
public protocol Architecture: Sendable {
    /// `model_type` values of the family.
    static var modelTypes: [String] { get }
    /// Reads `config.json` into a `DecoderConfig`, refusing what the runtime cannot compute.
    static func configuration(_ reader: ConfigReaderView) throws -> DecoderConfig
}

/// What an `Architecture` sees of `config.json`.
public struct ConfigReaderView {
    let reader: ConfigReader
    public var json: JSONValue { reader.json }
    public var path: String { reader.path }
}

/// The families qkit runs, one descriptor each.
public enum Architectures {
    public static let all: [any Architecture.Type] = [
        LlamaArchitecture.self, MistralArchitecture.self, Qwen2Architecture.self, Qwen3Architecture.self,
    ]

    /// The configuration of the model whose `config.json` is `json` (`path` for messages).
    public static func configuration(json: JSONValue, path: String) throws -> DecoderConfig {
        guard let modelType = json["model_type"]?.stringValue else {
            throw ModelError.badConfig(path: path, key: "model_type", why: "missing")
        }
        guard let arch = all.first(where: { $0.modelTypes.contains(modelType) }) else {
            throw ModelError.unsupportedFamily(path: path, modelType: modelType, known: all.flatMap { $0.modelTypes })
        }
        let config = try arch.configuration(ConfigReaderView(reader: ConfigReader(path: path, json: json)))
        guard config.headDim % 2 == 0 else {
            throw ModelError.badConfig(path: path, key: "head_dim", why: "\(config.headDim) is odd; RoPE needs pairs")
        }
        return config
    }
}
