/// Runs a parsed template: statements, expressions, and the bounds that keep a hostile or broken
/// template from running forever or exhausting memory.
final class JinjaRenderer {
    /// Most statements, loop iterations and macro calls one render may execute.
    static let maxSteps = 1_000_000
    /// Deepest macro call nesting (recursive macros).
    static let maxCallDepth = 64
    /// Largest output (and largest string or list built by `*`), in UTF-8 bytes or elements.
    static let maxOutput = 64 << 20
    /// Longest list a template may build.
    static let maxListLength = 1 << 20
    /// Deepest nesting of a value stored into a namespace (the one way a template can grow a value
    /// across loop iterations).
    static let maxValueDepth = 64

    private var steps = 0
    private var callDepth = 0

    enum Flow { case normal, breakLoop, continueLoop }

    func step() throws(JinjaFailure) {
        steps += 1
        if steps > Self.maxSteps { throw .limit("the template ran more than \(Self.maxSteps) steps") }
    }

    // MARK: Statements

    func render(_ nodes: [Node], _ scope: JinjaScope, into out: inout String) throws(JinjaFailure) -> Flow {
        for node in nodes {
            try step()
            switch node {
            case .text(let t):
                out += t
            case .output(let e):
                let v = try eval(e, scope)
                do throws(JinjaFailure) {
                    try append(v.pythonString, to: &out)
                } catch {
                    throw error.at(e.line)
                }
            case .conditional(let branches, let otherwise):
                var taken = false
                for (cond, body) in branches {
                    guard try eval(cond, scope).isTruthy else { continue }
                    taken = true
                    let f = try render(body, scope, into: &out)
                    if f != .normal { return f }
                    break
                }
                if !taken, let otherwise {
                    let f = try render(otherwise, scope, into: &out)
                    if f != .normal { return f }
                }
            case .forLoop(let target, let iterable, let filter, let body, let otherwise, let line):
                try forLoop(target, iterable, filter, body, otherwise, line: line, scope, &out)
            case .set(let target, let e, let line):
                let v = try eval(e, scope)
                try assign(target, v, scope, line: line)
            case .setBlock(let target, let filters, let body, let line):
                var captured = ""
                _ = try render(body, scope, into: &captured)
                var v = JinjaValue.string(captured)
                for f in filters { v = try applyFilter(f.name, v, f.args, f.kwargs, scope, line: f.line) }
                try assign(target, v, scope, line: line)
            case .macro(let name, let parameters, let defaults, let body, _):
                scope.variables[name] = .macro(JinjaMacro(name: name, parameters: parameters, defaults: defaults, body: body, scope: scope))
            case .filterBlock(let filters, let body, let line):
                var captured = ""
                let f = try render(body, scope, into: &captured)
                var v = JinjaValue.string(captured)
                for f in filters { v = try applyFilter(f.name, v, f.args, f.kwargs, scope, line: f.line) }
                do throws(JinjaFailure) { try append(v.pythonString, to: &out) } catch { throw error.at(line) }
                if f != .normal { return f }
            case .with(let assignments, let body, let line):
                let inner = JinjaScope(parent: scope)
                for (t, e) in assignments { try assign(t, try eval(e, scope), inner, line: line) }
                let f = try render(body, inner, into: &out)
                if f != .normal { return f }
            case .breakLoop:
                return .breakLoop
            case .continueLoop:
                return .continueLoop
            }
        }
        return .normal
    }

    func append(_ s: String, to out: inout String) throws(JinjaFailure) {
        out += s
        if out.utf8.count > Self.maxOutput { throw .limit("the output grew beyond \(Self.maxOutput) bytes") }
    }

    private func forLoop(_ target: AssignTarget, _ iterable: Expr, _ filter: Expr?, _ body: [Node], _ otherwise: [Node]?,
                         line: Int, _ scope: JinjaScope, _ out: inout String) throws(JinjaFailure) {
        let source = try eval(iterable, scope)
        var items: [JinjaValue]
        do throws(JinjaFailure) { items = try iterate(source) } catch { throw error.at(iterable.line) }
        if let filter {
            var kept: [JinjaValue] = []
            for item in items {
                try step()
                let s = JinjaScope(parent: scope)
                try assign(target, item, s, line: line)
                if try eval(filter, s).isTruthy { kept.append(item) }
            }
            items = kept
        }
        if items.isEmpty {
            if let otherwise { _ = try render(otherwise, scope, into: &out) }
            return
        }
        // `loop.depth` counts recursive-loop levels; qkit has no recursive loops, so it is always 1.
        let loop = JinjaLoop(items: items, depth: 1)
        for (k, item) in items.enumerated() {
            try step()
            loop.index0 = k
            let s = JinjaScope(["loop": .loop(loop)], parent: scope)
            try assign(target, item, s, line: line)
            if try render(body, s, into: &out) == .breakLoop { break }
        }
    }

    /// The items a `for` loop (or a filter) walks: list and tuple elements, dict keys, the characters
    /// of a string; an undefined value is empty.
    func iterate(_ v: JinjaValue) throws(JinjaFailure) -> [JinjaValue] {
        switch v {
        case .list(let a), .tuple(let a): return a
        case .dict(let d): return d.keys
        case .string(let s): return s.unicodeScalars.map { .string(String($0)) }
        case .undefined: return []
        case .namespace(let n): return n.attributes.keys
        default: throw .render("'\(v.typeName)' object is not iterable")
        }
    }

    func assign(_ target: AssignTarget, _ v: JinjaValue, _ scope: JinjaScope, line: Int) throws(JinjaFailure) {
        switch target {
        case .name(let n):
            scope.variables[n] = v
        case .tuple(let targets):
            let items: [JinjaValue]
            do throws(JinjaFailure) { items = try iterate(v) } catch { throw error.at(line) }
            guard !v.isUndefined || targets.isEmpty else { throw JinjaFailure.render(undefinedMessage(v)).at(line) }
            guard items.count == targets.count else {
                throw JinjaFailure.render(items.count < targets.count
                    ? "not enough values to unpack (expected \(targets.count), got \(items.count))"
                    : "too many values to unpack (expected \(targets.count))").at(line)
            }
            for (t, x) in zip(targets, items) { try assign(t, x, scope, line: line) }
        case .attribute(let name, let attr):
            guard case .namespace(let ns)? = scope.lookup(name) else {
                throw JinjaFailure.render("cannot assign attribute on non-namespace object").at(line)
            }
            guard Self.nestingDepth(v, limit: Self.maxValueDepth) <= Self.maxValueDepth else {
                throw JinjaFailure.limit("a value nested more than \(Self.maxValueDepth) levels deep").at(line)
            }
            ns.attributes[.string(attr)] = v
        }
    }

    static func nestingDepth(_ v: JinjaValue, limit: Int) -> Int {
        guard limit >= 0 else { return 1 }
        switch v {
        case .list(let a), .tuple(let a): return 1 + (a.lazy.map { nestingDepth($0, limit: limit - 1) }.max() ?? 0)
        case .dict(let d): return 1 + (d.values.lazy.map { nestingDepth($0, limit: limit - 1) }.max() ?? 0)
        default: return 0
        }
    }

    func undefinedMessage(_ v: JinjaValue) -> String {
        if case .undefined(let what) = v { return what }
        return "undefined value"
    }

    // MARK: Macros and calls

    func call(_ callee: JinjaValue, _ args: [JinjaValue], _ kwargs: [(String, JinjaValue)]) throws(JinjaFailure) -> JinjaValue {
        switch callee {
        case .function(let f): return try f.call(args, kwargs)
        case .macro(let m): return try callMacro(m, args, kwargs)
        case .undefined(let what): throw .render(what)
        default: throw .render("'\(callee.typeName)' object is not callable")
        }
    }

    private func callMacro(_ m: JinjaMacro, _ args: [JinjaValue], _ kwargs: [(String, JinjaValue)]) throws(JinjaFailure) -> JinjaValue {
        try step()
        callDepth += 1
        defer { callDepth -= 1 }
        guard callDepth <= Self.maxCallDepth else { throw .limit("macro calls nested more than \(Self.maxCallDepth) deep") }
        let s = JinjaScope(parent: m.scope)
        var extra: [JinjaValue] = []
        var kw = JinjaDict()
        for (k, a) in args.enumerated() {
            if k < m.parameters.count { s.variables[m.parameters[k]] = a } else { extra.append(a) }
        }
        for (name, v) in kwargs {
            if m.parameters.contains(name) {
                guard s.variables[name] == nil else { throw .render("macro '\(m.name)' got multiple values for argument '\(name)'") }
                s.variables[name] = v
            } else {
                kw[.string(name)] = v
            }
        }
        for (k, p) in m.parameters.enumerated() where s.variables[p] == nil {
            if let d = m.defaults[k] {
                s.variables[p] = try eval(d, s)
            } else {
                s.variables[p] = .undefined(what: "parameter '\(p)' was not provided")
            }
        }
        s.variables["varargs"] = .list(extra)
        s.variables["kwargs"] = .dict(kw)
        var out = ""
        _ = try render(m.body, s, into: &out)
        return .string(out)
    }
}
