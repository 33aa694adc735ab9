/// Methods of Python's str, dict and list that templates call (`s.strip()`, `d.items()`, …),
/// with Python's semantics.
extension JinjaRenderer {
    func method(_ base: JinjaValue, _ name: String) -> JinjaValue? {
        switch base {
        case .string(let s): return stringMethod(s, name)
        case .dict(let d): return dictMethod(d, name)
        case .list(let a), .tuple(let a): return listMethod(a, name)
        default: return nil
        }
    }

    private func bound(_ name: String, _ f: @escaping ([JinjaValue], [(String, JinjaValue)]) throws(JinjaFailure) -> JinjaValue) -> JinjaValue {
        .function(JinjaFunction(name: name, call: f))
    }

    private func dictMethod(_ d: JinjaDict, _ name: String) -> JinjaValue? {
        switch name {
        case "items": return bound(name) { _, _ in .list(d.pairs.map { .tuple([$0.0, $0.1]) }) }
        case "keys": return bound(name) { _, _ in .list(d.keys) }
        case "values": return bound(name) { _, _ in .list(d.values) }
        case "get":
            return bound(name) { args, kwargs throws(JinjaFailure) in
                let a = try Arguments(args, kwargs, ["key", "default"], function: "get")
                return d[try a.required(0)] ?? (a[1] ?? .none)
            }
        case "copy": return bound(name) { _, _ in .dict(d) }
        default: return nil
        }
    }

    private func listMethod(_ x: [JinjaValue], _ name: String) -> JinjaValue? {
        switch name {
        case "count":
            return bound(name) { args, kwargs throws(JinjaFailure) in
                let v = try Arguments(args, kwargs, ["value"], function: "count").required(0)
                return .int(x.filter { JinjaValue.pythonEqual($0, v) }.count)
            }
        case "index":
            return bound(name) { args, kwargs throws(JinjaFailure) in
                let v = try Arguments(args, kwargs, ["value"], function: "index").required(0)
                guard let i = x.firstIndex(where: { JinjaValue.pythonEqual($0, v) }) else { throw .render("\(v.pythonRepr) is not in list") }
                return .int(i)
            }
        default: return nil
        }
    }

    private func stringMethod(_ s: String, _ name: String) -> JinjaValue? {
        switch name {
        case "upper": return bound(name) { _, _ in .string(s.uppercased()) }
        case "lower": return bound(name) { _, _ in .string(s.lowercased()) }
        case "title": return bound(name) { _, _ in .string(PyString.title(s)) }
        case "capitalize": return bound(name) { _, _ in .string(PyString.capitalize(s)) }
        case "swapcase":
            return bound(name) { _, _ in
                .string(String(s.map { c in c.isUppercase ? Character(c.lowercased()) : c.isLowercase ? Character(c.uppercased()) : c }))
            }
        case "strip", "lstrip", "rstrip":
            return bound(name) { args, kwargs throws(JinjaFailure) in
                let a = try Arguments(args, kwargs, ["chars"], function: name)
                let chars = try a.optionalString(0)
                return .string(PyString.strip(s, chars: chars, leading: name != "rstrip", trailing: name != "lstrip"))
            }
        case "startswith", "endswith":
            return bound(name) { args, kwargs throws(JinjaFailure) in
                let a = try Arguments(args, kwargs, ["prefix"], function: name)
                let p = try a.required(0)
                let options: [JinjaValue] = p.sequence ?? [p]
                for o in options {
                    guard case .string(let t) = o else { throw .render("\(name) first arg must be str or a tuple of str, not \(o.typeName)") }
                    if name == "startswith" ? s.unicodeScalars.starts(with: t.unicodeScalars) : s.unicodeScalars.reversed().starts(with: t.unicodeScalars.reversed()) {
                        return .bool(true)
                    }
                }
                return .bool(false)
            }
        case "split", "rsplit":
            return bound(name) { args, kwargs throws(JinjaFailure) in
                let a = try Arguments(args, kwargs, ["sep", "maxsplit"], function: name)
                let sep = try a.optionalString(0)
                let maxsplit = try a.int(1, default: -1)
                return .list(try PyString.split(s, sep: sep, maxsplit: maxsplit, fromRight: name == "rsplit").map { .string($0) })
            }
        case "splitlines":
            return bound(name) { args, kwargs throws(JinjaFailure) in
                let keep = try Arguments(args, kwargs, ["keepends"], function: name)[0]?.isTruthy ?? false
                return .list(PyString.splitlines(s, keepEnds: keep).map { .string($0) })
            }
        case "replace":
            return bound(name) { args, kwargs throws(JinjaFailure) in
                let a = try Arguments(args, kwargs, ["old", "new", "count"], function: name)
                return .string(try PyString.replace(s, try a.string(0), try a.string(1), count: try a.int(2, default: -1)))
            }
        case "find", "rfind", "index", "rindex", "count":
            return bound(name) { args, kwargs throws(JinjaFailure) in
                let sub = try Arguments(args, kwargs, ["sub"], function: name).string(0)
                let hay = Array(s.unicodeScalars), needle = Array(sub.unicodeScalars)
                var found: [Int] = []
                if needle.isEmpty {
                    found = Array(0...hay.count)
                } else if needle.count <= hay.count {
                    var i = 0
                    while i + needle.count <= hay.count {
                        if hay[i..<i + needle.count].elementsEqual(needle) {
                            found.append(i)
                            if name == "count" { i += needle.count; continue }
                        }
                        i += 1
                    }
                }
                switch name {
                case "count": return .int(found.count)
                case "find": return .int(found.first ?? -1)
                case "rfind": return .int(found.last ?? -1)
                default:
                    guard let i = name == "index" ? found.first : found.last else { throw .render("substring not found") }
                    return .int(i)
                }
            }
        case "join":
            return bound(name) { args, kwargs throws(JinjaFailure) in
                let items = try self.iterate(try Arguments(args, kwargs, ["iterable"], function: name).required(0))
                var parts: [String] = []
                for x in items {
                    guard case .string(let t) = x else { throw .render("sequence item \(parts.count): expected str instance, \(x.typeName) found") }
                    parts.append(t)
                }
                let total = parts.reduce(0) { $0 + $1.utf8.count } + s.utf8.count * max(0, parts.count - 1)
                guard total <= JinjaRenderer.maxOutput else { throw .limit("a string grew beyond \(JinjaRenderer.maxOutput) bytes") }
                return .string(parts.joined(separator: s))
            }
        case "isdigit", "isalpha", "isalnum", "isspace", "islower", "isupper", "isnumeric", "isdecimal":
            return bound(name) { _, _ in .bool(PyString.classify(s, name)) }
        case "zfill", "center", "ljust", "rjust":
            return bound(name) { args, kwargs throws(JinjaFailure) in
                let a = try Arguments(args, kwargs, ["width", "fillchar"], function: name)
                let width = try a.int(0, default: 0)
                let fill = try a.optionalString(1) ?? (name == "zfill" ? "0" : " ")
                return .string(try PyString.pad(s, width: width, fill: fill, mode: name))
            }
        case "format":
            return bound(name) { args, kwargs throws(JinjaFailure) in .string(try PyString.format(s, args, kwargs)) }
        default: return nil
        }
    }
}

/// Call arguments bound to parameter names, Python style.
struct Arguments {
    private var values: [JinjaValue?]
    let names: [String]
    let function: String

    init(_ args: [JinjaValue], _ kwargs: [(String, JinjaValue)], _ names: [String], function: String) throws(JinjaFailure) {
        guard args.count <= names.count else {
            throw .render("\(function)() takes at most \(names.count) argument\(names.count == 1 ? "" : "s") (\(args.count) given)")
        }
        values = Array(repeating: nil, count: names.count)
        for (k, a) in args.enumerated() { values[k] = a }
        for (n, v) in kwargs {
            guard let k = names.firstIndex(of: n) else { throw .render("\(function)() got an unexpected keyword argument '\(n)'") }
            guard values[k] == nil else { throw .render("\(function)() got multiple values for argument '\(n)'") }
            values[k] = v
        }
        self.names = names
        self.function = function
    }

    subscript(_ k: Int) -> JinjaValue? { values[k] }

    func required(_ k: Int) throws(JinjaFailure) -> JinjaValue {
        guard let v = values[k] else { throw .render("\(function)() missing required argument '\(names[k])'") }
        return v
    }

    func string(_ k: Int) throws(JinjaFailure) -> String {
        let v = try required(k)
        guard case .string(let s) = v else { throw .render("\(function)(): '\(names[k])' must be str, not \(v.typeName)") }
        return s
    }

    func optionalString(_ k: Int) throws(JinjaFailure) -> String? {
        guard let v = values[k], !v.isNone else { return nil }
        guard case .string(let s) = v else { throw .render("\(function)(): '\(names[k])' must be str or None, not \(v.typeName)") }
        return s
    }

    func int(_ k: Int, default d: Int) throws(JinjaFailure) -> Int {
        guard let v = values[k], !v.isNone else { return d }
        guard let i = v.integer else { throw .render("\(function)(): '\(names[k])' must be an integer, not \(v.typeName)") }
        return i
    }

    func bool(_ k: Int, default d: Bool) -> Bool { values[k].map(\.isTruthy) ?? d }
}

/// Python str operations on code points.
enum PyString {
    static func isSpace(_ c: Unicode.Scalar) -> Bool { JinjaLexer.isSpace(c) }

    static func strip(_ s: String, chars: String?, leading: Bool, trailing: Bool) -> String {
        let set = chars.map { Set($0.unicodeScalars) }
        func drop(_ c: Unicode.Scalar) -> Bool { set.map { $0.contains(c) } ?? isSpace(c) }
        let u = Array(s.unicodeScalars)
        var lo = 0, hi = u.count
        if leading { while lo < hi, drop(u[lo]) { lo += 1 } }
        if trailing { while hi > lo, drop(u[hi - 1]) { hi -= 1 } }
        var out = String.UnicodeScalarView()
        out.append(contentsOf: u[lo..<hi])
        return String(out)
    }

    static func split(_ s: String, sep: String?, maxsplit: Int, fromRight: Bool) throws(JinjaFailure) -> [String] {
        let u = Array(s.unicodeScalars)
        func str(_ r: ArraySlice<Unicode.Scalar>) -> String { var v = String.UnicodeScalarView(); v.append(contentsOf: r); return String(v) }
        var parts: [String] = []
        if let sep {
            let p = Array(sep.unicodeScalars)
            guard !p.isEmpty else { throw .render("empty separator") }
            var cuts: [Int] = []
            if fromRight {
                var i = u.count - p.count
                while i >= 0, maxsplit < 0 || cuts.count < maxsplit {
                    if u[i..<i + p.count].elementsEqual(p) { cuts.insert(i, at: 0); i -= p.count } else { i -= 1 }
                }
            } else {
                var i = 0
                while i + p.count <= u.count, maxsplit < 0 || cuts.count < maxsplit {
                    if u[i..<i + p.count].elementsEqual(p) { cuts.append(i); i += p.count } else { i += 1 }
                }
            }
            var start = 0
            for c in cuts { parts.append(str(u[start..<c])); start = c + p.count }
            parts.append(str(u[start...]))
            return parts
        }
        // Runs of whitespace; leading and trailing whitespace gives no empty parts.
        var ranges: [Range<Int>] = []
        var i = 0
        while i < u.count {
            while i < u.count, isSpace(u[i]) { i += 1 }
            guard i < u.count else { break }
            let start = i
            while i < u.count, !isSpace(u[i]) { i += 1 }
            ranges.append(start..<i)
        }
        guard maxsplit >= 0, ranges.count > maxsplit + 1 else { return ranges.map { str(u[$0]) } }
        if fromRight {
            let keep = ranges.suffix(maxsplit)
            var firstEnd = keep.first!.lowerBound
            while firstEnd > 0, isSpace(u[firstEnd - 1]) { firstEnd -= 1 }
            var firstStart = 0
            while firstStart < firstEnd, isSpace(u[firstStart]) { firstStart += 1 }
            return [str(u[firstStart..<firstEnd])] + keep.map { str(u[$0]) }
        }
        let head = ranges.prefix(maxsplit)
        var restStart = head.last!.upperBound
        while restStart < u.count, isSpace(u[restStart]) { restStart += 1 }
        var restEnd = u.count
        while restEnd > restStart, isSpace(u[restEnd - 1]) { restEnd -= 1 }
        return head.map { str(u[$0]) } + [str(u[restStart..<restEnd])]
    }

    static func splitlines(_ s: String, keepEnds: Bool) -> [String] {
        let breaks: Set<UInt32> = [0x0A, 0x0B, 0x0C, 0x0D, 0x1C, 0x1D, 0x1E, 0x85, 0x2028, 0x2029]
        let u = Array(s.unicodeScalars)
        var out: [String] = []
        var start = 0, i = 0
        while i < u.count {
            if breaks.contains(u[i].value) {
                var end = i + 1
                if u[i] == "\r", end < u.count, u[end] == "\n" { end += 1 }
                var v = String.UnicodeScalarView()
                v.append(contentsOf: u[start..<(keepEnds ? end : i)])
                out.append(String(v))
                start = end
                i = end
            } else {
                i += 1
            }
        }
        if start < u.count {
            var v = String.UnicodeScalarView()
            v.append(contentsOf: u[start...])
            out.append(String(v))
        }
        return out
    }

    /// Python `str.replace`; throws when the result would exceed the output bound.
    static func replace(_ s: String, _ old: String, _ new: String, count: Int) throws(JinjaFailure) -> String {
        let n = new.unicodeScalars.count
        if n > old.unicodeScalars.count {
            let occurrences = old.isEmpty ? s.unicodeScalars.count + 1 : s.components(old)
            let extra = (n - old.unicodeScalars.count).multipliedReportingOverflow(by: count < 0 ? occurrences : min(count, occurrences))
            guard !extra.overflow, s.utf8.count + 4 * extra.partialValue <= JinjaRenderer.maxOutput else {
                throw .limit("a string grew beyond \(JinjaRenderer.maxOutput) bytes")
            }
        }
        let u = Array(s.unicodeScalars), o = Array(old.unicodeScalars)
        var out = String.UnicodeScalarView()
        var done = 0
        if o.isEmpty {
            for (k, c) in u.enumerated() {
                if count < 0 || done < count { out.append(contentsOf: new.unicodeScalars); done += 1 }
                out.append(c)
                _ = k
            }
            if count < 0 || done < count { out.append(contentsOf: new.unicodeScalars) }
            return String(out)
        }
        var i = 0
        while i < u.count {
            if (count < 0 || done < count), i + o.count <= u.count, u[i..<i + o.count].elementsEqual(o) {
                out.append(contentsOf: new.unicodeScalars)
                i += o.count
                done += 1
            } else {
                out.append(u[i])
                i += 1
            }
        }
        return String(out)
    }

    static func isCased(_ c: Character) -> Bool { c.isUppercase || c.isLowercase }

    /// Python `str.title()`: a letter after a cased letter is lowered, any other letter is upper-cased.
    static func title(_ s: String) -> String {
        var out = ""
        var previousCased = false
        for c in s {
            if previousCased { out += c.lowercased() } else { out += c.uppercased() }
            previousCased = isCased(c)
        }
        return out
    }

    static func capitalize(_ s: String) -> String {
        guard let f = s.first else { return s }
        return f.uppercased() + s.dropFirst().lowercased()
    }

    static func classify(_ s: String, _ what: String) -> Bool {
        guard !s.isEmpty else { return false }
        switch what {
        case "isdigit", "isdecimal", "isnumeric": return s.unicodeScalars.allSatisfy { $0.properties.numericType != nil }
        case "isalpha": return s.unicodeScalars.allSatisfy { $0.properties.isAlphabetic }
        case "isalnum": return s.unicodeScalars.allSatisfy { $0.properties.isAlphabetic || $0.properties.numericType != nil }
        case "isspace": return s.unicodeScalars.allSatisfy(isSpace)
        case "islower": return s.contains(where: isCased) && !s.contains(where: { $0.isUppercase })
        default: return s.contains(where: isCased) && !s.contains(where: { $0.isLowercase })
        }
    }

    static func pad(_ s: String, width: Int, fill: String, mode: String) throws(JinjaFailure) -> String {
        let n = s.unicodeScalars.count
        guard width <= JinjaRenderer.maxOutput / 4 else { throw .limit("a string grew beyond \(JinjaRenderer.maxOutput) bytes") }
        guard width > n, let f = fill.unicodeScalars.first else { return s }
        let total = width - n
        func run(_ k: Int) -> String { String(repeating: String(f), count: k) }
        switch mode {
        case "ljust": return s + run(total)
        case "rjust": return run(total) + s
        case "zfill":
            if let first = s.unicodeScalars.first, first == "+" || first == "-" {
                return String(first) + run(total) + String(s.unicodeScalars.dropFirst())
            }
            return run(total) + s
        default:
            let left = total / 2 + (total & width & 1)
            return run(left) + s + run(total - left)
        }
    }

    /// Python `str.format` with `{}`, `{0}`, `{name}`, `{name.attr}` fields and `{{` / `}}`; format specs
    /// and conversions are not supported.
    static func format(_ s: String, _ args: [JinjaValue], _ kwargs: [(String, JinjaValue)]) throws(JinjaFailure) -> String {
        var out = ""
        var it = Array(s.unicodeScalars)[...]
        var auto = 0
        while let c = it.popFirst() {
            if c == "{" {
                if it.first == "{" { it.removeFirst(); out += "{"; continue }
                var field = ""
                while let d = it.popFirst(), d != "}" { field.unicodeScalars.append(d) }
                guard !field.contains(":"), !field.contains("!") else { throw .render("str.format: format specs are not supported") }
                let v: JinjaValue
                if field.isEmpty {
                    guard auto < args.count else { throw .render("Replacement index \(auto) out of range for positional args tuple") }
                    v = args[auto]
                    auto += 1
                } else if let i = Int(field) {
                    guard i < args.count else { throw .render("Replacement index \(i) out of range for positional args tuple") }
                    v = args[i]
                } else {
                    guard let kv = kwargs.first(where: { $0.0 == field }) else { throw .render("KeyError: '\(field)'") }
                    v = kv.1
                }
                out += v.pythonString
            } else if c == "}" {
                guard it.first == "}" else { throw .render("Single '}' encountered in format string") }
                it.removeFirst()
                out += "}"
            } else {
                out.unicodeScalars.append(c)
            }
        }
        return out
    }
}

extension String {
    /// Non-overlapping occurrences of a non-empty `needle`, counted on code points.
    fileprivate func components(_ needle: String) -> Int {
        let u = Array(unicodeScalars), p = Array(needle.unicodeScalars)
        var i = 0, n = 0
        while i + p.count <= u.count {
            if u[i..<i + p.count].elementsEqual(p) { n += 1; i += p.count } else { i += 1 }
        }
        return n
    }
}
