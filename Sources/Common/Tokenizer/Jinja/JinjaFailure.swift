/// Why a template could not be parsed or rendered, before it is turned into a `ChatTemplateError`.
struct JinjaFailure: Error, Equatable {
    enum Kind: Equatable {
        /// The template text is not valid Jinja (or uses a construct qkit does not implement).
        case syntax
        /// Rendering failed: an undefined value used, a type error, a bad argument.
        case render
        /// The template called `raise_exception(message)`.
        case raised
        /// A bound on work, output size or nesting was reached.
        case limit
    }

    var kind: Kind
    var message: String
    /// 1-based template line, once known.
    var line: Int?

    static func syntax(_ m: String, line: Int) -> JinjaFailure { JinjaFailure(kind: .syntax, message: m, line: line) }
    static func render(_ m: String) -> JinjaFailure { JinjaFailure(kind: .render, message: m, line: nil) }
    static func limit(_ m: String) -> JinjaFailure { JinjaFailure(kind: .limit, message: m, line: nil) }

    /// The same failure, placed on `line` unless it already has a line.
    func at(_ line: Int) -> JinjaFailure {
        var f = self
        if f.line == nil { f.line = line }
        return f
    }
}
