/// `x.name` and `x[key]` as Jinja2's immutable sandbox resolves them: attribute first then item for
/// `.`, item first then attribute for `[]`; a missing member is undefined, a member of an undefined
/// value is an error. Methods of str, dict and list come back bound to their receiver; methods that
/// would modify a value (`append`, `update`, …) are refused, as the sandbox refuses them.
extension JinjaRenderer {
    func attribute(_ base: JinjaValue, _ name: String) throws(JinjaFailure) -> JinjaValue {
        if case .undefined(let w) = base { throw .render(w) }
        if let m = method(base, name) { return m }
        switch base {
        case .dict(let d):
            if let v = d[name] { return v }
        case .namespace(let n):
            if let v = n.attributes[name] { return v }
        case .loop(let l):
            if let v = loopAttribute(l, name) { return v }
        default: break
        }
        if Self.mutatingMethods.contains(name), base.sequence != nil || base.isDict {
            return .undefined(what: "access to attribute '\(name)' of '\(base.typeName)' object is unsafe")
        }
        return .undefined(what: "'\(base.typeName) object' has no attribute '\(name)'")
    }

    func item(_ base: JinjaValue, _ key: JinjaValue) throws(JinjaFailure) -> JinjaValue {
        if case .undefined(let w) = base { throw .render(w) }
        switch base {
        case .list(let a), .tuple(let a):
            if let i = key.integer {
                let j = i < 0 ? i + a.count : i
                if j >= 0 && j < a.count { return a[j] }
                return .undefined(what: "list index out of range")
            }
        case .string(let s):
            if let i = key.integer {
                let scalars = s.unicodeScalars
                let n = scalars.count
                let j = i < 0 ? i + n : i
                if j >= 0 && j < n { return .string(String(scalars[scalars.index(scalars.startIndex, offsetBy: j)])) }
                return .undefined(what: "string index out of range")
            }
        case .dict(let d):
            if let v = d[key] { return v }
        default: break
        }
        if case .string(let name) = key { return try attribute(base, name) }
        return .undefined(what: "'\(base.typeName) object' has no element \(key.pythonRepr)")
    }

    static let mutatingMethods: Set<String> = ["append", "extend", "insert", "pop", "remove", "reverse", "sort", "clear",
                                               "update", "setdefault", "popitem"]

    private func loopAttribute(_ l: JinjaLoop, _ name: String) -> JinjaValue? {
        let n = l.items.count, i = l.index0
        switch name {
        case "index0": return .int(i)
        case "index": return .int(i + 1)
        case "revindex": return .int(n - i)
        case "revindex0": return .int(n - i - 1)
        case "first": return .bool(i == 0)
        case "last": return .bool(i == n - 1)
        case "length": return .int(n)
        case "depth": return .int(l.depth)
        case "depth0": return .int(l.depth - 1)
        case "previtem": return i > 0 ? l.items[i - 1] : .undefined(what: "there is no previous item")
        case "nextitem": return i + 1 < n ? l.items[i + 1] : .undefined(what: "there is no next item")
        case "cycle":
            return .function(JinjaFunction(name: "cycle") { args, _ throws(JinjaFailure) in
                guard !args.isEmpty else { throw .render("no items for cycling given") }
                return args[i % args.count]
            })
        default: return nil
        }
    }
}

extension JinjaValue {
    var isDict: Bool { if case .dict = self { true } else { false } }
}
