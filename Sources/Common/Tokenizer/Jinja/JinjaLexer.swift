/// Splits a Jinja2 template into text and tag tokens, applying whitespace control exactly as Jinja2's
/// lexer does with transformers' settings: `trim_blocks` (the newline after a block or comment tag is
/// dropped), `lstrip_blocks` (spaces and tabs before a block or comment tag at the start of a line are
/// dropped), `-` / `+` modifiers, newlines normalized to `\n` and one trailing newline removed.
struct JinjaLexer {
    enum TokenKind: Equatable {
        case text(String)
        /// `{{` … the expression tokens … `end`
        case variableBegin
        /// `{%` … the statement tokens … `end`
        case blockBegin
        case end
        case name(String)
        case string(String)
        case integer(Int)
        case float(Double)
        case op(String)
    }

    struct Token {
        var kind: TokenKind
        var line: Int
    }

    static let trimBlocks = true
    static let lstripBlocks = true

    let s: [Unicode.Scalar]
    private var lineStarts: [Int] = [0]
    private(set) var tokens: [Token] = []

    /// Lexes `source`; throws a syntax failure with its line for an unterminated tag, string or comment,
    /// or a character that cannot start a token.
    /// - Returns: the tokens and the number of lines of the (normalized) template.
    static func tokenize(_ source: String) throws(JinjaFailure) -> (tokens: [Token], lines: Int) {
        var lexer = JinjaLexer(source)
        try lexer.run()
        return (lexer.tokens, lexer.lineStarts.count)
    }

    private init(_ source: String) {
        var out: [Unicode.Scalar] = []
        out.reserveCapacity(source.unicodeScalars.count)
        var it = source.unicodeScalars.makeIterator()
        var pending = it.next()
        while let c = pending {
            pending = it.next()
            if c == "\r" {
                out.append("\n")
                if pending == "\n" { pending = it.next() }
            } else {
                out.append(c)
            }
        }
        if out.last == "\n" { out.removeLast() }
        s = out
        for (i, c) in s.enumerated() where c == "\n" { lineStarts.append(i + 1) }
    }

    func line(at pos: Int) -> Int {
        var lo = 0, hi = lineStarts.count - 1
        while lo < hi {
            let mid = (lo + hi + 1) / 2
            if lineStarts[mid] <= pos { lo = mid } else { hi = mid - 1 }
        }
        return lo + 1
    }

    static func isSpace(_ c: Unicode.Scalar) -> Bool { c.properties.isWhitespace || (c.value >= 0x1C && c.value <= 0x1F) }

    private func at(_ pos: Int, _ lit: String) -> Bool {
        var p = pos
        for c in lit.unicodeScalars {
            guard p < s.count, s[p] == c else { return false }
            p += 1
        }
        return true
    }

    private func skipSpace(_ pos: Int) -> Int {
        var p = pos
        while p < s.count, Self.isSpace(s[p]) { p += 1 }
        return p
    }

    private mutating func emitText(_ text: ArraySlice<Unicode.Scalar>, at pos: Int) {
        guard !text.isEmpty else { return }
        var str = ""
        str.unicodeScalars.append(contentsOf: text)
        tokens.append(Token(kind: .text(str), line: line(at: pos)))
    }

    /// Applies `-` (strip all trailing whitespace) or lstrip_blocks to the text before a tag.
    private func stripBefore(_ text: ArraySlice<Unicode.Scalar>, sign: Unicode.Scalar?, isVariable: Bool,
                             lineStarting: Bool) -> ArraySlice<Unicode.Scalar> {
        if sign == "-" {
            var end = text.endIndex
            while end > text.startIndex, Self.isSpace(text[end - 1]) { end -= 1 }
            return text[text.startIndex..<end]
        }
        guard sign != "+", Self.lstripBlocks, !isVariable else { return text }
        var lpos = text.startIndex
        if let nl = text.lastIndex(of: "\n") { lpos = nl + 1 }
        guard lpos > text.startIndex || lineStarting else { return text }
        guard lpos < text.endIndex, text[lpos...].allSatisfy({ Self.isSpace($0) }) else { return text }
        return text[text.startIndex..<lpos]
    }

    /// Where a `{% raw %}` opening tag that starts at `pos` ends, or nil when the tag is not `raw`.
    private func rawOpening(_ pos: Int) -> Int? {
        var p = pos + 2
        if p < s.count, s[p] == "-" || s[p] == "+" { p += 1 }
        p = skipSpace(p)
        guard at(p, "raw") else { return nil }
        p = skipSpace(p + 3)
        if at(p, "-%}") { return skipSpace(p + 3) }
        if at(p, "%}") { return p + 2 }
        return nil
    }

    private mutating func run() throws(JinjaFailure) {
        var pos = 0
        var lineStarting = true
        while pos < s.count {
            // Find the next tag opening.
            var q = pos
            var found = false
            while q + 1 < s.count {
                if s[q] == "{", s[q + 1] == "{" || s[q + 1] == "%" || s[q + 1] == "#" { found = true; break }
                q += 1
            }
            guard found else {
                emitText(s[pos..<s.count], at: pos)
                return
            }
            let kind = s[q + 1]
            var sign: Unicode.Scalar?
            if q + 2 < s.count, s[q + 2] == "-" || s[q + 2] == "+" { sign = s[q + 2] }
            let text = stripBefore(s[pos..<q], sign: sign, isVariable: kind == "{", lineStarting: lineStarting)
            emitText(text, at: pos)
            let openLine = line(at: q)
            var p = q + 2 + (sign == nil ? 0 : 1)
            switch kind {
            case "#":
                // The comment ends at the first `#}`; a `-` or `+` just before it is its modifier.
                var e = p
                while e + 1 < s.count, !(s[e] == "#" && s[e + 1] == "}") { e += 1 }
                guard e + 1 < s.count else { throw .syntax("missing end of comment tag", line: openLine) }
                var endSign: Unicode.Scalar?
                if e - 1 >= p, s[e - 1] == "-" || s[e - 1] == "+" { endSign = s[e - 1] }
                p = e + 2
                p = afterBlockEnd(p, sign: endSign)
            case "%" where rawOpening(q) != nil:
                p = rawOpening(q)!
                p = try raw(from: p, openLine: openLine)
            default:
                tokens.append(Token(kind: kind == "{" ? .variableBegin : .blockBegin, line: openLine))
                p = try tagTokens(from: p, isBlock: kind == "%", openLine: openLine)
            }
            lineStarting = p > 0 && s[p - 1] == "\n"
            pos = p
        }
    }

    /// The position after a block or comment end whose modifier is `sign`: `-` also eats the following
    /// whitespace, plain ends eat one newline (trim_blocks).
    private func afterBlockEnd(_ p: Int, sign: Unicode.Scalar?) -> Int {
        if sign == "-" { return skipSpace(p) }
        if sign == nil, Self.trimBlocks, p < s.count, s[p] == "\n" { return p + 1 }
        return p
    }

    private mutating func raw(from start: Int, openLine: Int) throws(JinjaFailure) -> Int {
        var q = start
        while q + 1 < s.count {
            if s[q] == "{", s[q + 1] == "%" {
                var p = q + 2
                var sign: Unicode.Scalar?
                if p < s.count, s[p] == "-" || s[p] == "+" { sign = s[p]; p += 1 }
                p = skipSpace(p)
                if at(p, "endraw") {
                    p = skipSpace(p + 6)
                    var endSign: Unicode.Scalar?
                    if p < s.count, s[p] == "-" || s[p] == "+" { endSign = s[p]; p += 1 }
                    if at(p, "%}") {
                        let text = stripBefore(s[start..<q], sign: sign, isVariable: false, lineStarting: false)
                        emitText(text, at: start)
                        return afterBlockEnd(p + 2, sign: endSign)
                    }
                }
            }
            q += 1
        }
        throw .syntax("missing end of raw directive", line: openLine)
    }

    private static let operators2: Set<String> = ["**", "//", "==", "!=", ">=", "<="]
    private static let operators1: Set<Unicode.Scalar> = ["+", "-", "/", "*", "%", "~", "[", "]", "(", ")", "{", "}",
                                                          ">", "<", "=", ".", ":", "|", ",", ";"]

    private mutating func tagTokens(from start: Int, isBlock: Bool, openLine: Int) throws(JinjaFailure) -> Int {
        var p = start
        var balance: [Unicode.Scalar] = []
        while true {
            p = skipSpace(p)
            guard p < s.count else {
                throw .syntax("unexpected end of template: the \(isBlock ? "block" : "variable") tag opened on line \(openLine) is not closed", line: line(at: p))
            }
            if balance.isEmpty {
                if isBlock {
                    if at(p, "+%}") { tokens.append(Token(kind: .end, line: line(at: p))); return p + 3 }
                    if at(p, "-%}") { tokens.append(Token(kind: .end, line: line(at: p))); return afterBlockEnd(p + 3, sign: "-") }
                    if at(p, "%}") { tokens.append(Token(kind: .end, line: line(at: p))); return afterBlockEnd(p + 2, sign: nil) }
                } else {
                    if at(p, "-}}") { tokens.append(Token(kind: .end, line: line(at: p))); return skipSpace(p + 3) }
                    if at(p, "}}") { tokens.append(Token(kind: .end, line: line(at: p))); return p + 2 }
                }
            }
            let c = s[p]
            let tokLine = line(at: p)
            if c.properties.isASCIIHexDigit && c.value < 0x3A {
                p = number(from: p, line: tokLine)
            } else if c == "_" || c.properties.isAlphabetic {
                var e = p + 1
                while e < s.count, s[e] == "_" || s[e].properties.isAlphabetic || s[e].properties.numericType != nil { e += 1 }
                var name = ""
                name.unicodeScalars.append(contentsOf: s[p..<e])
                tokens.append(Token(kind: .name(name), line: tokLine))
                p = e
            } else if c == "'" || c == "\"" {
                p = try string(from: p, quote: c, line: tokLine)
            } else {
                var op: String?
                if p + 1 < s.count {
                    var two = ""
                    two.unicodeScalars.append(contentsOf: s[p...p + 1])
                    if Self.operators2.contains(two) { op = two }
                }
                if op == nil, Self.operators1.contains(c) { op = String(Character(c)) }
                guard let op else { throw .syntax("unexpected char '\(Character(c))'", line: tokLine) }
                switch op {
                case "(": balance.append(")")
                case "[": balance.append("]")
                case "{": balance.append("}")
                case ")", "]", "}":
                    guard let expected = balance.popLast() else { throw .syntax("unexpected '\(op)'", line: tokLine) }
                    guard String(Character(expected)) == op else {
                        throw .syntax("unexpected '\(op)', expected '\(Character(expected))'", line: tokLine)
                    }
                default: break
                }
                tokens.append(Token(kind: .op(op), line: tokLine))
                p += op.unicodeScalars.count
            }
        }
    }

    private func isDigit(_ p: Int) -> Bool { p < s.count && s[p].value >= 0x30 && s[p].value <= 0x39 }

    /// Integer (`12`, `1_000`, `0x1F`, `0o7`, `0b1`) or float (`1.5`, `1e3`, `1.5e-3`) literal.
    private mutating func number(from start: Int, line: Int) -> Int {
        var p = start
        func digits(_ p: inout Int) {
            while isDigit(p) || (p < s.count && s[p] == "_" && isDigit(p + 1)) { p += 1 }
        }
        if s[p] == "0", p + 1 < s.count, let radix = ["x": 16, "X": 16, "o": 8, "O": 8, "b": 2, "B": 2][Character(s[p + 1])] {
            var e = p + 2
            var text = ""
            while e < s.count, s[e] == "_" || Int(String(Character(s[e])), radix: radix) != nil {
                if s[e] != "_" { text.unicodeScalars.append(s[e]) }
                e += 1
            }
            if let v = Int(text, radix: radix) {
                tokensAppend(.integer(v), line)
                return e
            }
        }
        digits(&p)
        var isFloat = false
        if p + 1 < s.count, s[p] == ".", isDigit(p + 1) {
            isFloat = true
            p += 1
            digits(&p)
        }
        if p < s.count, s[p] == "e" || s[p] == "E" {
            var e = p + 1
            if e < s.count, s[e] == "+" || s[e] == "-" { e += 1 }
            if isDigit(e) {
                isFloat = true
                p = e
                digits(&p)
            }
        }
        var text = ""
        for c in s[start..<p] where c != "_" { text.unicodeScalars.append(c) }
        if isFloat {
            tokensAppend(.float(Double(text) ?? .infinity), line)
        } else if let v = Int(text) {
            tokensAppend(.integer(v), line)
        } else {
            tokensAppend(.float(Double(text) ?? .infinity), line)
        }
        return p
    }

    private mutating func tokensAppend(_ k: TokenKind, _ line: Int) { tokens.append(Token(kind: k, line: line)) }

    /// A string literal with Python escapes (`\n`, `\t`, `\xNN`, `\uNNNN`, `\UNNNNNNNN`, octal, `\\`, quotes);
    /// an unknown escape keeps its backslash, as Python does.
    private mutating func string(from start: Int, quote: Unicode.Scalar, line: Int) throws(JinjaFailure) -> Int {
        var p = start + 1
        var out = String.UnicodeScalarView()
        while true {
            guard p < s.count else { throw .syntax("unterminated string literal", line: line) }
            let c = s[p]
            if c == quote { p += 1; break }
            if c != "\\" { out.append(c); p += 1; continue }
            guard p + 1 < s.count else { throw .syntax("unterminated string literal", line: line) }
            let e = s[p + 1]
            p += 2
            switch e {
            case "n": out.append("\n")
            case "t": out.append("\t")
            case "r": out.append("\r")
            case "\\": out.append("\\")
            case "'": out.append("'")
            case "\"": out.append("\"")
            case "a": out.append("\u{07}")
            case "b": out.append("\u{08}")
            case "f": out.append("\u{0C}")
            case "v": out.append("\u{0B}")
            case "\n": break
            case "0"..."7":
                var v = e.value - 0x30
                var n = 1
                while n < 3, p < s.count, s[p].value >= 0x30, s[p].value <= 0x37 {
                    v = v * 8 + s[p].value - 0x30
                    p += 1
                    n += 1
                }
                out.append(Unicode.Scalar(v)!)
            case "x", "u", "U":
                let width = e == "x" ? 2 : e == "u" ? 4 : 8
                guard p + width <= s.count else { throw .syntax("truncated \\\(e) escape in a string literal", line: line) }
                var hex = ""
                hex.unicodeScalars.append(contentsOf: s[p..<p + width])
                guard let v = UInt32(hex, radix: 16), let u = Unicode.Scalar(v) else {
                    throw .syntax("invalid \\\(e) escape in a string literal", line: line)
                }
                out.append(u)
                p += width
            default:
                out.append("\\")
                out.append(e)
            }
        }
        tokens.append(Token(kind: .string(String(out)), line: line))
        return p
    }
}
