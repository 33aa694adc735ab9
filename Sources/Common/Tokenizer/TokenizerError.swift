/// Why a tokenizer could not be loaded.
public enum TokenizerError: QKitError, Equatable {
    /// The file could not be read.
    case unreadable(path: String, IOError)
    /// The file is not JSON.
    case malformedJSON(path: String, JSONError)
    /// The JSON does not describe a valid tokenizer: a field is missing or has the wrong type, a merge
    /// names a token that is not in the vocabulary, …
    case invalid(path: String, String)
    /// A valid tokenizer of a kind qkit does not implement (model type, normalizer, pre-tokenizer, decoder).
    case unsupported(path: String, String)

    public var exitStatus: ExitStatus {
        switch self {
        case .unreadable(_, let e): e.exitStatus
        case .malformedJSON, .invalid: .dataError
        case .unsupported: .unavailable
        }
    }

    public var path: String? {
        switch self {
        case .unreadable(let p, _), .malformedJSON(let p, _), .invalid(let p, _), .unsupported(let p, _): p
        }
    }

    public var description: String {
        switch self {
        case .unreadable(_, let e): e.description
        case .malformedJSON(_, let e): "not valid JSON: \(e)"
        case .invalid(_, let what): "invalid tokenizer: \(what)"
        case .unsupported(_, let what): "unsupported tokenizer: \(what)"
        }
    }
}
