/// A `REGEX=SCHEME` rule: tensors whose name contains a match of the pattern get the scheme
/// (`nil` = keep).
public struct QuantRule: @unchecked Sendable, CustomStringConvertible {
    public let pattern: String
    public let scheme: QuantScheme?
    private let regex: Regex<AnyRegexOutput>

    /// A rule from its pattern and scheme.
    public init(pattern: String, scheme: QuantScheme?) throws(SchemeError) {
        self.pattern = pattern
        self.scheme = scheme
        do { regex = try Regex(pattern) } catch { throw SchemeError("bad regular expression '\(pattern)': \(error)") }
    }

    /// Parses `REGEX=SCHEME` (split at the last `=`; surrounding spaces are ignored).
    public init(parsing text: String) throws(SchemeError) {
        guard let eq = text.lastIndex(of: "=") else { throw SchemeError("rule '\(text)' is not REGEX=SCHEME") }
        let pattern = String(text[..<eq]).trimmingSpaces()
        let scheme = String(text[text.index(after: eq)...]).trimmingSpaces()
        guard !pattern.isEmpty else { throw SchemeError("rule '\(text)' has an empty pattern") }
        try self.init(pattern: pattern, scheme: QuantScheme.parse(scheme))
    }

    /// Whether `name` contains a match of the pattern.
    public func matches(_ name: String) -> Bool { (try? regex.firstMatch(in: name)) != nil }

    public var description: String { pattern + "=" + (scheme?.description ?? "keep") }

    /// Parses a rules file: one `REGEX=SCHEME` per line; blank lines and lines starting with `#` are ignored.
    public static func parseFile(_ text: String, path: String) throws(SchemeError) -> [QuantRule] {
        var rules: [QuantRule] = []
        for (i, raw) in text.split(omittingEmptySubsequences: false, whereSeparator: \.isNewline).enumerated() {
            let line = String(raw).trimmingSpaces()
            if line.isEmpty || line.hasPrefix("#") { continue }
            do { rules.append(try QuantRule(parsing: line)) } catch {
                throw SchemeError("\(path):\(i + 1): \(error.message)", exitStatus: error.exitStatus)
            }
        }
        return rules
    }
}

/// What to quantize and how: a default scheme for the linear weights of the decoder blocks, rules that
/// override it per tensor (first match wins, and may select tensors outside the default set, e.g.
/// `lm_head`), and skip patterns that keep matching tensors whatever the rules say.
public struct QuantRecipe: Sendable {
    public var defaultScheme: QuantScheme
    public var rules: [QuantRule]
    public var skips: [QuantRule]
    /// Members added to (or replacing) the recorded recipe: `rotation` (a QuaRot rotation applied first),
    /// `activation_format` (run-time activation quantization asked for with a weight-only algorithm).
    public var record = JSONObject()

    /// The version string recorded in `quantization_config.tool_version`.
    public static let toolVersion = "0.1.0"

    public init(defaultScheme: QuantScheme, rules: [QuantRule] = [], skipPatterns: [String] = []) throws(SchemeError) {
        self.defaultScheme = defaultScheme
        self.rules = rules
        var skips: [QuantRule] = []
        for p in skipPatterns { skips.append(try QuantRule(pattern: p, scheme: nil)) }
        self.skips = skips
    }

    /// The scheme for tensor `name` of `shape`, or `nil` to copy it unchanged. Only 2-D tensors whose
    /// name ends in `.weight` can be quantized.
    public func scheme(for name: String, shape: [Int]) -> QuantScheme? {
        guard shape.count == 2, name.hasSuffix(".weight") else { return nil }
        if skips.contains(where: { $0.matches(name) }) { return nil }
        if let rule = rules.first(where: { $0.matches(name) }) { return rule.scheme }
        return QuantRecipe.isDecoderLinear(name) ? defaultScheme : nil
    }

    /// Whether `name` is a linear weight inside a decoder block (`….layers.N.….X_proj.weight`, MoE experts
    /// included); embeddings, norms, routers and `lm_head` are not.
    public static func isDecoderLinear(_ name: String) -> Bool {
        guard name.hasSuffix(".weight") else { return false }
        let parts = name.split(separator: ".")
        guard let i = parts.firstIndex(where: { $0 == "layers" || $0 == "h" || $0 == "blocks" }), i + 1 < parts.count,
            parts[i + 1].allSatisfy(\.isASCIIDigit)
        else { return false }
        return FormatDetector.isLinearWeight(name)
    }
}

extension String {
    func trimmingSpaces() -> String {
        var s = Substring(self)
        while let c = s.first, c == " " || c == "\t" || c == "\r" { s.removeFirst() }
        while let c = s.last, c == " " || c == "\t" || c == "\r" { s.removeLast() }
        return String(s)
    }
}
