/// Why a chat template could not be loaded or rendered, or a calibration file could not be turned into
/// conversations. Every case is bad input data (exit status 65) except an unreadable file.
public enum ChatTemplateError: QKitError, Equatable {
    /// A file of the model directory could not be read.
    case unreadable(path: String, IOError)
    /// `tokenizer_config.json` is not valid JSON or its `chat_template` / special-token fields have the wrong type.
    case malformedConfig(path: String, String)
    /// The model directory has neither `chat_template.jinja` nor a `chat_template` in `tokenizer_config.json`.
    case noTemplate(path: String)
    /// The template is not valid Jinja, or uses a construct qkit does not implement.
    case syntax(path: String?, line: Int, String)
    /// Rendering failed: an undefined value used where Jinja2 refuses it, a type error, a bad argument.
    case render(path: String?, line: Int, String)
    /// The template called `raise_exception(message)` (e.g. roles that do not alternate).
    case raised(path: String?, line: Int, String)
    /// The template exceeded a bound on steps, output size, nesting or macro recursion.
    case limitExceeded(path: String?, line: Int, String)
    /// Line `line` of a calibration file is not a usable record.
    case badRecord(path: String?, line: Int, String)

    public var exitStatus: ExitStatus {
        if case .unreadable(_, let e) = self { return e.exitStatus }
        return .dataError
    }

    public var path: String? {
        switch self {
        case .unreadable(let p, _), .malformedConfig(let p, _), .noTemplate(let p): p
        case .syntax(let p, _, _), .render(let p, _, _), .raised(let p, _, _), .limitExceeded(let p, _, _),
            .badRecord(let p, _, _):
            p
        }
    }

    public var description: String {
        switch self {
        case .unreadable(_, let e): e.description
        case .malformedConfig(_, let what): "invalid tokenizer_config.json: \(what)"
        case .noTemplate: "no chat template (neither chat_template.jinja nor a chat_template in tokenizer_config.json)"
        case .syntax(_, let line, let m): "chat template line \(line): syntax error: \(m)"
        case .render(_, let line, let m): "chat template line \(line): \(m)"
        case .raised(_, let line, let m): "chat template line \(line): the template raised an exception: \(m)"
        case .limitExceeded(_, let line, let m): "chat template line \(line): \(m)"
        case .badRecord(_, let line, let m): "line \(line): \(m)"
        }
    }

    init(_ f: JinjaFailure, path: String?) {
        let line = f.line ?? 1
        switch f.kind {
        case .syntax: self = .syntax(path: path, line: line, f.message)
        case .render: self = .render(path: path, line: line, f.message)
        case .raised: self = .raised(path: path, line: line, f.message)
        case .limit: self = .limitExceeded(path: path, line: line, f.message)
        }
    }
}
