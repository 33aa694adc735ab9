#if canImport(Glibc)
import Glibc
#endif

/// The names of the filters and tests qkit implements (Jinja2's builtins that chat templates use,
/// and transformers' `tojson`).
enum JinjaFilters {
    static let names: Set<String> = [
        "abs", "attr", "capitalize", "center", "count", "d", "default", "dictsort", "e", "escape", "first", "float",
        "forceescape", "format", "indent", "int", "items", "join", "last", "length", "list", "lower", "map", "max", "min",
        "reject", "rejectattr", "replace", "reverse", "round", "safe", "select", "selectattr", "sort", "string", "sum",
        "title", "tojson", "trim", "unique", "upper", "wordcount",
    ]

    static let testNames: Set<String> = [
        "boolean", "callable", "defined", "divisibleby", "eq", "equalto", "escaped", "even", "false", "float", "ge",
        "greaterthan", "gt", "in", "integer", "iterable", "le", "lessthan", "lower", "lt", "mapping", "ne", "none",
        "number", "odd", "sameas", "sequence", "string", "true", "undefined", "upper",
    ]
}

extension JinjaRenderer {
    // MARK: Tests

    func test(_ name: String, _ v: JinjaValue, _ args: [JinjaValue]) throws(JinjaFailure) -> Bool {
        func arg() throws(JinjaFailure) -> JinjaValue {
            guard let a = args.first else { throw .render("test '\(name)' needs an argument") }
            return a
        }
        switch name {
        case "defined": return !v.isUndefined
        case "undefined": return v.isUndefined
        case "none": return v.isNone
        case "boolean": if case .bool = v { return true } else { return false }
        case "true": if case .bool(true) = v { return true } else { return false }
        case "false": if case .bool(false) = v { return true } else { return false }
        case "integer": if case .int = v { return true } else { return false }
        case "float": if case .double = v { return true } else { return false }
        case "number": return v.number != nil
        case "string": return v.stringValue != nil
        case "mapping": return v.isDict
        case "iterable", "sequence":
            switch v {
            case .list, .tuple, .dict, .string, .undefined: return true
            case .namespace: return name == "iterable"
            default: return false
            }
        case "callable":
            switch v {
            case .function, .macro: return true
            default: return false
            }
        case "escaped": return false
        case "lower": return v.stringValue.map { $0 == $0.lowercased() } ?? false
        case "upper": return v.stringValue.map { $0 == $0.uppercased() } ?? false
        case "even", "odd":
            if case .undefined(let w) = v { throw .render(w) }
            guard let i = v.integer else {
                guard let d = v.number else { throw .render("test '\(name)' needs a number, not \(v.typeName)") }
                let r = d.truncatingRemainder(dividingBy: 2)
                return name == "even" ? r == 0 : r != 0
            }
            return (i & 1 == 0) == (name == "even")
        case "divisibleby":
            let d = try arg()
            guard let x = v.integer, let y = d.integer else {
                guard let x = v.number, let y = d.number, y != 0 else { throw .render("divisibleby needs numbers") }
                return x.truncatingRemainder(dividingBy: y) == 0
            }
            guard y != 0 else { throw .render("integer division or modulo by zero") }
            return x % y == 0
        case "eq", "equalto": return JinjaValue.pythonEqual(v, try arg())
        case "ne": return !JinjaValue.pythonEqual(v, try arg())
        case "lt", "lessthan": return try compare(.less, v, try arg())
        case "le": return try compare(.lessOrEqual, v, try arg())
        case "gt", "greaterthan": return try compare(.greater, v, try arg())
        case "ge": return try compare(.greaterOrEqual, v, try arg())
        case "in": return try contains(try arg(), v)
        case "sameas":
            let o = try arg()
            switch (v, o) {
            case (.none, .none): return true
            case (.bool(let a), .bool(let b)): return a == b
            case (.namespace(let a), .namespace(let b)): return a === b
            case (.int(let a), .int(let b)) where (-5...256).contains(a): return a == b
            default: return false
            }
        default: throw .render("no test named '\(name)'")
        }
    }

    // MARK: Filters

    func applyFilter(_ name: String, _ v: JinjaValue, _ argExprs: [Expr], _ kwargExprs: [(String, Expr)],
                     _ scope: JinjaScope, line: Int) throws(JinjaFailure) -> JinjaValue {
        var args: [JinjaValue] = []
        for e in argExprs { args.append(try eval(e, scope)) }
        var kwargs: [(String, JinjaValue)] = []
        for (k, e) in kwargExprs { kwargs.append((k, try eval(e, scope))) }
        do throws(JinjaFailure) {
            return try filter(name, v, args, kwargs)
        } catch {
            throw error.at(line)
        }
    }

    func filter(_ name: String, _ v: JinjaValue, _ args: [JinjaValue], _ kwargs: [(String, JinjaValue)]) throws(JinjaFailure) -> JinjaValue {
        func params(_ names: [String]) throws(JinjaFailure) -> Arguments { try Arguments(args, kwargs, names, function: name) }
        func text() -> String { v.pythonString }
        switch name {
        case "trim":
            return .string(PyString.strip(text(), chars: try params(["chars"]).optionalString(0), leading: true, trailing: true))
        case "upper": return .string(text().uppercased())
        case "lower": return .string(text().lowercased())
        case "capitalize": return .string(PyString.capitalize(text()))
        case "title": return .string(jinjaTitle(text()))
        case "string", "safe": return .string(text())
        case "e", "escape", "forceescape": return .string(htmlEscape(text()))
        case "length", "count":
            switch v {
            case .string(let s): return .int(s.unicodeScalars.count)
            case .list(let a), .tuple(let a): return .int(a.count)
            case .dict(let d): return .int(d.count)
            case .undefined: return .int(0)
            default: throw .render("object of type '\(v.typeName)' has no len()")
            }
        case "wordcount":
            var n = 0, inWord = false
            for c in text().unicodeScalars {
                let w = c.properties.isAlphabetic || c.properties.numericType != nil || c == "_"
                if w && !inWord { n += 1 }
                inWord = w
            }
            return .int(n)
        case "default", "d":
            let a = try params(["default_value", "boolean"])
            let fallback = a[0] ?? .string("")
            if v.isUndefined || (a.bool(1, default: false) && !v.isTruthy) { return fallback }
            return v
        case "first":
            let items = try iterate(v)
            return items.first ?? .undefined(what: "No first item, sequence was empty.")
        case "last":
            let items = try iterate(v)
            return items.last ?? .undefined(what: "No last item, sequence was empty.")
        case "list": return .list(try iterate(v))
        case "reverse":
            if case .string(let s) = v { return .string(String(String.UnicodeScalarView(s.unicodeScalars.reversed()))) }
            return .list(try iterate(v).reversed())
        case "items":
            switch v {
            case .dict(let d): return .list(d.pairs.map { .tuple([$0.0, $0.1]) })
            case .undefined: return .list([])
            default: throw .render("Can only get item pairs from a mapping.")
            }
        case "join":
            let a = try params(["d", "attribute"])
            let sep = a[0]?.pythonString ?? ""
            var items = try iterate(v)
            if let attr = a[1] { items = try items.map { x throws(JinjaFailure) in try attributePath(x, attr) } }
            var total = 0
            for x in items { total += x.pythonString.utf8.count + sep.utf8.count; if total > Self.maxOutput { throw .limit("a string grew beyond \(Self.maxOutput) bytes") } }
            return .string(items.map(\.pythonString).joined(separator: sep))
        case "replace":
            let a = try params(["old", "new", "count"])
            return .string(try PyString.replace(text(), try a.required(0).pythonString, try a.required(1).pythonString, count: try a.int(2, default: -1)))
        case "indent":
            let a = try params(["width", "first", "blank"])
            let indent: String
            if case .string(let s)? = a[0] { indent = s } else {
                let width = try a.int(0, default: 4)
                guard width <= Self.maxOutput / 4 else { throw .limit("a string grew beyond \(Self.maxOutput) bytes") }
                indent = String(repeating: " ", count: max(0, width))
            }
            let body = text()
            let lines = body.utf8.reduce(1) { $1 == 10 ? $0 + 1 : $0 }
            guard body.utf8.count + lines * indent.utf8.count <= Self.maxOutput else { throw .limit("a string grew beyond \(Self.maxOutput) bytes") }
            return .string(jinjaIndent(body, indent, first: a.bool(1, default: false), blank: a.bool(2, default: false)))
        case "center":
            return .string(try PyString.pad(text(), width: try params(["width"]).int(0, default: 80), fill: " ", mode: "center"))
        case "tojson":
            // transformers: tojson(x, ensure_ascii=False, indent=None, separators=None, sort_keys=False)
            let a = try params(["ensure_ascii", "indent", "separators", "sort_keys"])
            var indent: String?
            switch a[1] {
            case nil, .none?: indent = nil
            case .string(let s)?: indent = s
            case let i? where i.integer != nil: indent = String(repeating: " ", count: max(0, i.integer!))
            case let x?: throw .render("tojson: indent must be an int or a str, not \(x.typeName)")
            }
            var separators: (String, String)?
            if let sep = a[2], !sep.isNone {
                guard let pair = sep.sequence, pair.count == 2, case .string(let i) = pair[0], case .string(let k) = pair[1] else {
                    throw .render("tojson: separators must be a pair of strings")
                }
                separators = (i, k)
            }
            let options = JSONDumpOptions(indent: indent, separators: separators, sortKeys: a.bool(3, default: false),
                                          ensureASCII: a.bool(0, default: false))
            return .string(try v.jsonDumps(options))
        case "int":
            let a = try params(["default", "base"])
            let fallback = a[0] ?? .int(0)
            let base = try a.int(1, default: 10)
            switch v {
            case .int: return v
            case .bool(let b): return .int(b ? 1 : 0)
            case .double(let d): return d.isFinite && abs(d) < 9.2e18 ? .int(Int(d)) : fallback
            case .string(let s):
                let t = PyString.strip(s, chars: nil, leading: true, trailing: true).replacingOccurrences("_", "")
                if let i = Int(t, radix: base) { return .int(i) }
                if let d = Double(t), d.isFinite, abs(d) < 9.2e18 { return .int(Int(d)) }
                return fallback
            default: return fallback
            }
        case "float":
            let fallback = try params(["default"])[0] ?? .double(0)
            switch v {
            case .int(let i): return .double(Double(i))
            case .bool(let b): return .double(b ? 1 : 0)
            case .double: return v
            case .string(let s):
                let t = PyString.strip(s, chars: nil, leading: true, trailing: true)
                if let d = Double(t) { return .double(d) }
                switch t.lowercased() {
                case "inf", "+inf", "infinity": return .double(.infinity)
                case "-inf", "-infinity": return .double(-.infinity)
                case "nan": return .double(.nan)
                default: return fallback
                }
            default: return fallback
            }
        case "abs":
            switch v {
            case .int(let i): guard i != .min else { throw .render("integer overflow") }; return .int(abs(i))
            case .bool(let b): return .int(b ? 1 : 0)
            case .double(let d): return .double(abs(d))
            default: throw .render("bad operand type for abs(): '\(v.typeName)'")
            }
        case "round":
            let a = try params(["precision", "method"])
            let precision = try a.int(0, default: 0)
            let method = try a.optionalString(1) ?? "common"
            guard let x = v.number else { throw .render("round: a number is required, not \(v.typeName)") }
            let scale = jinjaPow(10, Double(precision))
            switch method {
            case "common": return .double((x * scale).rounded(.toNearestOrEven) / scale)
            case "ceil": return .double((x * scale).rounded(.up) / scale)
            case "floor": return .double((x * scale).rounded(.down) / scale)
            default: throw .render("method must be common, ceil or floor")
            }
        case "attr":
            let n = try params(["name"]).string(0)
            switch v {
            case .namespace(let ns): return ns.attributes[n] ?? .undefined(what: "'Namespace object' has no attribute '\(n)'")
            case .undefined(let w): throw .render(w)
            default: return method(v, n) ?? .undefined(what: "'\(v.typeName) object' has no attribute '\(n)'")
            }
        case "selectattr", "rejectattr", "select", "reject":
            let byAttribute = name.hasSuffix("attr")
            let select = name.hasPrefix("select")
            var rest = args
            var attribute: JinjaValue?
            if byAttribute {
                guard !rest.isEmpty else { throw .render("\(name) needs an attribute name") }
                attribute = rest.removeFirst()
            }
            var testName: String?
            if !rest.isEmpty {
                guard case .string(let t) = rest.removeFirst() else { throw .render("\(name): the test name must be a string") }
                guard JinjaFilters.testNames.contains(t) else { throw .render("no test named '\(t)'") }
                testName = t
            }
            var out: [JinjaValue] = []
            for x in try iterate(v) {
                try step()
                let subject = try attribute.map { a throws(JinjaFailure) in try attributePath(x, a) } ?? x
                let ok = try testName.map { t throws(JinjaFailure) in try test(t, subject, rest) } ?? subject.isTruthy
                if ok == select { out.append(x) }
            }
            return .list(out)
        case "map":
            let items = try iterate(v)
            if let attr = kwargs.first(where: { $0.0 == "attribute" })?.1 {
                let fallback = kwargs.first(where: { $0.0 == "default" })?.1
                return .list(try items.map { x throws(JinjaFailure) in
                    let r = try attributePath(x, attr)
                    if r.isUndefined, let fallback { return fallback }
                    return r
                })
            }
            guard case .string(let f)? = args.first else { throw .render("map needs a filter name or attribute=") }
            guard JinjaFilters.names.contains(f) else { throw .render("no filter named '\(f)'") }
            let rest = Array(args.dropFirst())
            var out: [JinjaValue] = []
            for x in items {
                try step()
                out.append(try filter(f, x, rest, kwargs))
            }
            return .list(out)
        case "unique":
            let a = try params(["case_sensitive", "attribute"])
            let caseSensitive = a.bool(0, default: false)
            var seen: [JinjaValue] = []
            var out: [JinjaValue] = []
            for x in try iterate(v) {
                var key = try a[1].map { p throws(JinjaFailure) in try attributePath(x, p) } ?? x
                if !caseSensitive, case .string(let s) = key { key = .string(s.lowercased()) }
                if !seen.contains(where: { JinjaValue.pythonEqual($0, key) }) {
                    seen.append(key)
                    out.append(x)
                }
            }
            return .list(out)
        case "sort", "min", "max":
            let a = name == "sort" ? try params(["reverse", "case_sensitive", "attribute"]) : try params(["case_sensitive", "attribute"])
            let reverse = name == "sort" ? a.bool(0, default: false) : false
            let caseSensitive = a.bool(name == "sort" ? 1 : 0, default: false)
            let attribute = a[name == "sort" ? 2 : 1]
            let items = try iterate(v)
            var keyed: [(JinjaValue, JinjaValue)] = []
            for x in items {
                var key = try attribute.map { p throws(JinjaFailure) in try attributePath(x, p) } ?? x
                if !caseSensitive, case .string(let s) = key { key = .string(s.lowercased()) }
                keyed.append((key, x))
            }
            let sorted = try stableSort(keyed)
            if name == "sort" { return .list(reverse ? sorted.reversed().map(\.1) : sorted.map(\.1)) }
            guard !sorted.isEmpty else { return .undefined(what: "No aggregated item, sequence was empty.") }
            return name == "min" ? sorted.first!.1 : sorted.last!.1
        case "dictsort":
            let a = try params(["case_sensitive", "by", "reverse"])
            guard case .dict(let d) = v else { throw .render("dictsort: a mapping is required, not \(v.typeName)") }
            let byValue = (try a.optionalString(1) ?? "key") == "value"
            var keyed: [(JinjaValue, JinjaValue)] = []
            for (k, x) in d.pairs {
                var key = byValue ? x : k
                if !a.bool(0, default: false), case .string(let s) = key { key = .string(s.lowercased()) }
                keyed.append((key, .tuple([k, x])))
            }
            let sorted = try stableSort(keyed).map(\.1)
            return .list(a.bool(2, default: false) ? sorted.reversed() : sorted)
        case "sum":
            let a = try params(["attribute", "start"])
            var total = a[1] ?? .int(0)
            for x in try iterate(v) {
                total = try binary(.add, total, try a[0].map { p throws(JinjaFailure) in try attributePath(x, p) } ?? x)
            }
            return total
        case "format":
            return .string(try percentFormat(text(), .tuple(args)))
        default:
            throw .render("no filter named '\(name)'")
        }
    }

    /// Jinja's attribute getter for `map(attribute=)`, `selectattr`, `join(attribute=)`: dotted paths,
    /// integer parts as indices, each step an item lookup.
    func attributePath(_ x: JinjaValue, _ path: JinjaValue) throws(JinjaFailure) -> JinjaValue {
        guard case .string(let p) = path else { return try item(x, path) }
        var v = x
        for part in p.split(separator: ".", omittingEmptySubsequences: false) {
            let key: JinjaValue = Int(part).map { .int($0) } ?? .string(String(part))
            v = try item(v, key)
        }
        return v
    }

    private func stableSort(_ keyed: [(JinjaValue, JinjaValue)]) throws(JinjaFailure) -> [(JinjaValue, JinjaValue)] {
        var failure: JinjaFailure?
        let sorted = keyed.enumerated().sorted { a, b in
            guard failure == nil else { return false }
            guard let less = JinjaValue.pythonLess(a.element.0, b.element.0, orEqual: false) else {
                failure = .render("'<' not supported between instances of '\(a.element.0.typeName)' and '\(b.element.0.typeName)'")
                return false
            }
            if less { return true }
            if JinjaValue.pythonLess(b.element.0, a.element.0, orEqual: false) == true { return false }
            return a.offset < b.offset
        }
        if let failure { throw failure }
        return sorted.map(\.element)
    }

    /// Jinja's `title` filter: upper-cases the first character of each word (words start after spaces,
    /// `-`, `(`, `{`, `[`, `<`) and lower-cases the rest.
    private func jinjaTitle(_ s: String) -> String {
        var out = ""
        var atStart = true
        for c in s {
            let separator = c.unicodeScalars.allSatisfy(JinjaLexer.isSpace) || "-({[<".contains(c)
            if separator {
                out.append(c)
                atStart = true
            } else {
                out += atStart ? c.uppercased() : c.lowercased()
                atStart = false
            }
        }
        return out
    }

    /// Jinja's `indent`: every line but the first (and the first too with `first`) gets `indent`; blank
    /// lines only with `blank`.
    private func jinjaIndent(_ s: String, _ indent: String, first: Bool, blank: Bool) -> String {
        let lines = PyString.splitlines(s + "\n", keepEnds: false)
        var rv: String
        if blank {
            rv = lines.joined(separator: "\n" + indent)
        } else {
            rv = lines.first ?? ""
            let rest = lines.dropFirst()
            if !rest.isEmpty {
                rv += "\n" + rest.map { $0.isEmpty ? $0 : indent + $0 }.joined(separator: "\n")
            }
        }
        if first { rv = indent + rv }
        return rv
    }

    private func htmlEscape(_ s: String) -> String {
        var out = ""
        for c in s.unicodeScalars {
            switch c {
            case "&": out += "&amp;"
            case "<": out += "&lt;"
            case ">": out += "&gt;"
            case "\"": out += "&#34;"
            case "'": out += "&#39;"
            default: out.unicodeScalars.append(c)
            }
        }
        return out
    }
}

private extension String {
    func replacingOccurrences(_ a: String, _ b: String) -> String { (try? PyString.replace(self, a, b, count: -1)) ?? self }
}
