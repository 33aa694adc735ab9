/// How Python prints values: `str()` (what `{{ x }}` and `|string` output), `repr()` (inside lists and
/// dicts) and `json.dumps` as transformers' `tojson` filter calls it (`ensure_ascii=False`).
extension JinjaValue {
    /// Python `str(value)`; Jinja prints an undefined value as the empty string.
    var pythonString: String {
        switch self {
        case .string(let s): return s
        case .undefined: return ""
        default:
            var out = ""
            writeRepr(to: &out)
            return out
        }
    }

    /// Python `repr(value)`.
    var pythonRepr: String {
        var out = ""
        writeRepr(to: &out)
        return out
    }

    func writeRepr(to out: inout String) {
        switch self {
        case .undefined: out += ""
        case .none: out += "None"
        case .bool(let b): out += b ? "True" : "False"
        case .int(let i): out += String(i)
        case .double(let d): out += JinjaValue.pythonFloat(d)
        case .string(let s): JinjaValue.writeStringRepr(s, to: &out)
        case .list(let a):
            out += "["
            for (k, v) in a.enumerated() {
                if k > 0 { out += ", " }
                v.writeRepr(to: &out)
            }
            out += "]"
        case .tuple(let a):
            out += "("
            for (k, v) in a.enumerated() {
                if k > 0 { out += ", " }
                v.writeRepr(to: &out)
            }
            out += a.count == 1 ? ",)" : ")"
        case .dict(let d):
            out += "{"
            for (k, (key, v)) in d.pairs.enumerated() {
                if k > 0 { out += ", " }
                key.writeRepr(to: &out)
                out += ": "
                v.writeRepr(to: &out)
            }
            out += "}"
        case .namespace(let n):
            out += "<Namespace "
            JinjaValue.dict(n.attributes).writeRepr(to: &out)
            out += ">"
        case .loop: out += "<LoopContext>"
        case .function(let f): out += "<built-in function \(f.name)>"
        case .macro(let m): out += "<Macro '\(m.name)'>"
        }
    }

    /// Python's `repr(str)`: single quotes unless the text has a single quote and no double quote.
    static func writeStringRepr(_ s: String, to out: inout String) {
        let quote: Unicode.Scalar = s.contains("'") && !s.contains("\"") ? "\"" : "'"
        out.unicodeScalars.append(quote)
        for c in s.unicodeScalars {
            switch c {
            case "\\": out += "\\\\"
            case "\n": out += "\\n"
            case "\r": out += "\\r"
            case "\t": out += "\\t"
            case quote: out += "\\"; out.unicodeScalars.append(c)
            default:
                if isPrintable(c) {
                    out.unicodeScalars.append(c)
                } else if c.value < 0x100 {
                    out += "\\x" + hex(c.value, width: 2)
                } else if c.value < 0x10000 {
                    out += "\\u" + hex(c.value, width: 4)
                } else {
                    out += "\\U" + hex(c.value, width: 8)
                }
            }
        }
        out.unicodeScalars.append(quote)
    }

    /// Python's `str.isprintable` for one character: not a control, format, surrogate, private-use,
    /// unassigned or separator character, except the ASCII space.
    static func isPrintable(_ c: Unicode.Scalar) -> Bool {
        if c.value < 0x7F { return c.value >= 0x20 }
        switch c.properties.generalCategory {
        case .control, .format, .surrogate, .privateUse, .unassigned, .lineSeparator, .paragraphSeparator,
            .spaceSeparator:
            return false
        default: return true
        }
    }

    static func hex(_ v: UInt32, width: Int) -> String {
        let s = String(v, radix: 16)
        return String(repeating: "0", count: max(0, width - s.count)) + s
    }

    /// Python's `repr(float)`: the shortest digits that round-trip, in fixed notation when the decimal
    /// exponent is in [-4, 16), else in exponent notation with at least two exponent digits.
    static func pythonFloat(_ d: Double) -> String {
        if d.isNaN { return "nan" }
        if d.isInfinite { return d < 0 ? "-inf" : "inf" }
        if d == 0 { return d.sign == .minus ? "-0.0" : "0.0" }
        // Swift's description also prints the shortest round-tripping digits; take them apart.
        let text = "\(abs(d))"
        var mantissa = Substring(text)
        var exponent = 0
        if let e = text.firstIndex(where: { $0 == "e" || $0 == "E" }) {
            mantissa = text[..<e]
            exponent = Int(text[text.index(after: e)...]) ?? 0
        }
        var digits = ""
        var pointAt = 0
        if let dot = mantissa.firstIndex(of: ".") {
            let whole = mantissa[..<dot]
            let frac = mantissa[mantissa.index(after: dot)...]
            digits = String(whole) + String(frac)
            pointAt = whole.count
        } else {
            digits = String(mantissa)
            pointAt = digits.count
        }
        // Strip leading zeros (moving the point) and trailing zeros.
        while digits.count > 1, digits.first == "0" { digits.removeFirst(); pointAt -= 1 }
        while digits.count > 1, digits.last == "0" { digits.removeLast() }
        let decpt = pointAt + exponent  // value = 0.digits × 10^decpt
        var out = d < 0 ? "-" : ""
        if decpt > -4 && decpt <= 16 {
            if decpt <= 0 {
                out += "0." + String(repeating: "0", count: -decpt) + digits
            } else if decpt >= digits.count {
                out += digits + String(repeating: "0", count: decpt - digits.count) + ".0"
            } else {
                let i = digits.index(digits.startIndex, offsetBy: decpt)
                out += digits[..<i] + "." + digits[i...]
            }
        } else {
            out += String(digits.first!)
            if digits.count > 1 { out += "." + digits.dropFirst() }
            let e = decpt - 1
            out += e < 0 ? "e-" : "e+"
            let m = String(abs(e))
            out += m.count < 2 ? "0" + m : m
        }
        return out
    }
}

// MARK: - json.dumps

/// Options of transformers' `tojson(x, ensure_ascii=False, indent=None, separators=None, sort_keys=False)`.
struct JSONDumpOptions {
    /// `nil`: one line; otherwise the indentation of each level (an int n means n spaces).
    var indent: String?
    var itemSeparator: String
    var keySeparator: String
    var sortKeys = false
    var ensureASCII = false

    init(indent: String? = nil, separators: (String, String)? = nil, sortKeys: Bool = false, ensureASCII: Bool = false) {
        self.indent = indent
        self.itemSeparator = separators?.0 ?? (indent == nil ? ", " : ",")
        self.keySeparator = separators?.1 ?? ": "
        self.sortKeys = sortKeys
        self.ensureASCII = ensureASCII
    }
}

extension JinjaValue {
    /// Python's `json.dumps(self, …)`; throws for what JSON cannot hold (undefined, namespaces, …).
    func jsonDumps(_ o: JSONDumpOptions) throws(JinjaFailure) -> String {
        var out = ""
        try writeJSON(to: &out, o, level: 0)
        return out
    }

    private func newline(_ out: inout String, _ o: JSONDumpOptions, _ level: Int) {
        guard let ind = o.indent else { return }
        out += "\n"
        for _ in 0..<level { out += ind }
    }

    private func writeJSON(to out: inout String, _ o: JSONDumpOptions, level: Int) throws(JinjaFailure) {
        guard level < 512 else { throw .render("tojson: value nested too deeply") }
        switch self {
        case .none: out += "null"
        case .bool(let b): out += b ? "true" : "false"
        case .int(let i): out += String(i)
        case .double(let d):
            out += d.isNaN ? "NaN" : d.isInfinite ? (d < 0 ? "-Infinity" : "Infinity") : JinjaValue.pythonFloat(d)
        case .string(let s): JinjaValue.writeJSONString(s, ascii: o.ensureASCII, to: &out)
        case .list(let a), .tuple(let a):
            if a.isEmpty { out += "[]"; return }
            out += "["
            for (k, v) in a.enumerated() {
                if k > 0 { out += o.itemSeparator }
                newline(&out, o, level + 1)
                try v.writeJSON(to: &out, o, level: level + 1)
            }
            newline(&out, o, level)
            out += "]"
        case .dict(let d):
            if d.isEmpty { out += "{}"; return }
            var members: [(String, JinjaValue)] = []
            for (k, v) in d.pairs {
                let key: String
                switch k {
                case .string(let s): key = s
                case .int(let i): key = String(i)
                case .double(let x): key = JinjaValue.pythonFloat(x)
                case .bool(let b): key = b ? "true" : "false"
                case .none: key = "null"
                default: throw .render("keys must be str, int, float, bool or None, not \(k.typeName)")
                }
                members.append((key, v))
            }
            if o.sortKeys {
                members.sort { JinjaValue.compareScalars($0.0, $1.0) < 0 }
            }
            out += "{"
            for (k, m) in members.enumerated() {
                if k > 0 { out += o.itemSeparator }
                newline(&out, o, level + 1)
                JinjaValue.writeJSONString(m.0, ascii: o.ensureASCII, to: &out)
                out += o.keySeparator
                try m.1.writeJSON(to: &out, o, level: level + 1)
            }
            newline(&out, o, level)
            out += "}"
        default:
            throw .render("Object of type \(typeName) is not JSON serializable")
        }
    }

    static func writeJSONString(_ s: String, ascii: Bool, to out: inout String) {
        out += "\""
        for c in s.unicodeScalars {
            switch c {
            case "\"": out += "\\\""
            case "\\": out += "\\\\"
            case "\n": out += "\\n"
            case "\r": out += "\\r"
            case "\t": out += "\\t"
            case "\u{08}": out += "\\b"
            case "\u{0C}": out += "\\f"
            default:
                if c.value < 0x20 || (ascii && c.value > 0x7E) {
                    if c.value >= 0x10000 {
                        let v = c.value - 0x10000
                        out += "\\u" + hex(0xD800 + (v >> 10), width: 4) + "\\u" + hex(0xDC00 + (v & 0x3FF), width: 4)
                    } else {
                        out += "\\u" + hex(c.value, width: 4)
                    }
                } else {
                    out.unicodeScalars.append(c)
                }
            }
        }
        out += "\""
    }
}
