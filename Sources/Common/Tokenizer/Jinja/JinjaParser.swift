/// Builds the statement tree of a template from its tokens, following Jinja2's grammar and operator
/// precedence (`or` < `and` < `not` < comparisons < `+ -` < `~` < `* / // %` < `**` < unary `- +` <
/// postfix `. [] ()` and filters `|`, tests `is`).
struct JinjaParser {
    typealias Token = JinjaLexer.Token

    /// Deepest nesting of expressions or blocks accepted; deeper input is refused rather than risking the stack.
    static let maxDepth = 400

    private let tokens: [Token]
    private var i = 0
    private var depth = 0
    private var loopDepth = 0
    private let lastLine: Int

    static func parse(_ source: String) throws(JinjaFailure) -> [Node] {
        let (tokens, lines) = try JinjaLexer.tokenize(source)
        var p = JinjaParser(tokens: tokens, lines: lines)
        let (nodes, end) = try p.body(until: [])
        if let end { throw .syntax("unexpected '\(end.name)'", line: end.line) }
        return nodes
    }

    private init(tokens: [Token], lines: Int) {
        self.tokens = tokens
        lastLine = lines
    }

    // MARK: Token helpers

    private var current: JinjaLexer.TokenKind? { i < tokens.count ? tokens[i].kind : nil }
    private var line: Int { i < tokens.count ? tokens[i].line : lastLine }

    private func isName(_ n: String, ahead k: Int = 0) -> Bool {
        guard i + k < tokens.count, case .name(let x) = tokens[i + k].kind else { return false }
        return x == n
    }

    private func isOp(_ o: String) -> Bool {
        if case .op(let x) = current { return x == o }
        return false
    }

    private mutating func skipName(_ n: String) -> Bool {
        guard isName(n) else { return false }
        i += 1
        return true
    }

    private mutating func skipOp(_ o: String) -> Bool {
        guard isOp(o) else { return false }
        i += 1
        return true
    }

    private func describe(_ k: JinjaLexer.TokenKind?) -> String {
        switch k {
        case nil: "end of template"
        case .text: "template text"
        case .variableBegin: "'{{'"
        case .blockBegin: "'{%'"
        case .end: "end of tag"
        case .name(let n): "'\(n)'"
        case .string: "string literal"
        case .integer(let v): "'\(v)'"
        case .float(let v): "'\(v)'"
        case .op(let o): "'\(o)'"
        }
    }

    private func unexpected(_ expected: String) -> JinjaFailure {
        .syntax("expected \(expected), got \(describe(current))", line: line)
    }

    private mutating func expectOp(_ o: String) throws(JinjaFailure) {
        guard skipOp(o) else { throw unexpected("'\(o)'") }
    }

    private mutating func expectName() throws(JinjaFailure) -> String {
        guard case .name(let n) = current else { throw unexpected("a name") }
        i += 1
        return n
    }

    private mutating func expectEnd() throws(JinjaFailure) {
        guard case .end = current else { throw unexpected("end of tag") }
        i += 1
    }

    private mutating func enter() throws(JinjaFailure) {
        depth += 1
        guard depth <= Self.maxDepth else { throw .syntax("template nested more than \(Self.maxDepth) levels deep", line: line) }
    }

    // MARK: Statements

    struct EndTag { var name: String; var line: Int }

    /// Parses nodes until a block tag named in `until` (returned, with the tag's name consumed) or the end.
    private mutating func body(until: Set<String>) throws(JinjaFailure) -> ([Node], EndTag?) {
        var nodes: [Node] = []
        while let k = current {
            switch k {
            case .text(let t):
                i += 1
                nodes.append(.text(t))
            case .variableBegin:
                i += 1
                let e = try tuple(condexpr: true)
                try expectEnd()
                nodes.append(.output(e))
            case .blockBegin:
                let tagLine = line
                i += 1
                let name = try expectName()
                if until.contains(name) { return (nodes, EndTag(name: name, line: tagLine)) }
                nodes.append(contentsOf: try statement(name, line: tagLine))
            default:
                throw unexpected("template text or a tag")
            }
        }
        return (nodes, nil)
    }

    /// Parses a block up to one of `ends`, failing with the opening line when the template ends first.
    private mutating func block(_ opener: String, line: Int, until ends: Set<String>) throws(JinjaFailure) -> ([Node], String) {
        try enter()
        defer { depth -= 1 }
        let (nodes, end) = try body(until: ends)
        guard let end else {
            let list = ends.sorted().map { "'\($0)'" }.joined(separator: " or ")
            throw .syntax("unexpected end of template: the '\(opener)' block opened on line \(line) is never closed (expected \(list))", line: lastLine)
        }
        return (nodes, end.name)
    }

    private mutating func statement(_ name: String, line: Int) throws(JinjaFailure) -> [Node] {
        switch name {
        case "if": return [try ifStatement(line: line)]
        case "for": return [try forStatement(line: line)]
        case "set": return [try setStatement(line: line)]
        case "macro": return [try macroStatement(line: line)]
        case "filter":
            let filters = try filterChain()
            try expectEnd()
            let (nodes, _) = try block("filter", line: line, until: ["endfilter"])
            try expectEnd()
            return [.filterBlock(filters: filters, body: nodes, line: line)]
        case "with":
            var assignments: [(AssignTarget, Expr)] = []
            while current != .end {
                if !assignments.isEmpty { try expectOp(",") }
                let target = try assignTarget(allowNamespace: false)
                try expectOp("=")
                assignments.append((target, try expression()))
            }
            try expectEnd()
            let (nodes, _) = try block("with", line: line, until: ["endwith"])
            try expectEnd()
            return [.with(assignments: assignments, body: nodes, line: line)]
        case "generation":
            // transformers' AssistantTracker extension: the content renders as it is.
            try expectEnd()
            let (nodes, _) = try block("generation", line: line, until: ["endgeneration"])
            try expectEnd()
            return nodes
        case "break", "continue":
            guard loopDepth > 0 else { throw .syntax("'\(name)' outside of a loop", line: line) }
            try expectEnd()
            return [name == "break" ? .breakLoop(line: line) : .continueLoop(line: line)]
        default:
            throw .syntax("unknown tag '\(name)'", line: line)
        }
    }

    private mutating func ifStatement(line: Int) throws(JinjaFailure) -> Node {
        var branches: [(Expr, [Node])] = []
        var cond = try tuple(condexpr: false)
        try expectEnd()
        while true {
            let (nodes, end) = try block("if", line: line, until: ["elif", "else", "endif"])
            branches.append((cond, nodes))
            switch end {
            case "elif":
                cond = try tuple(condexpr: false)
                try expectEnd()
            case "else":
                try expectEnd()
                let (other, _) = try block("if", line: line, until: ["endif"])
                try expectEnd()
                return .conditional(branches: branches, otherwise: other)
            default:
                try expectEnd()
                return .conditional(branches: branches, otherwise: nil)
            }
        }
    }

    private mutating func forStatement(line: Int) throws(JinjaFailure) -> Node {
        let target = try assignTarget(allowNamespace: false, endName: "in")
        guard skipName("in") else { throw unexpected("'in'") }
        let iterable = try tuple(condexpr: false, endName: "if")
        var filter: Expr?
        if skipName("if") { filter = try expression() }
        if isName("recursive") { throw .syntax("recursive loops are not supported", line: self.line) }
        try expectEnd()
        loopDepth += 1
        let (nodes, end) = try block("for", line: line, until: ["endfor", "else"])
        loopDepth -= 1
        try expectEnd()
        var otherwise: [Node]?
        if end == "else" {
            let saved = loopDepth
            loopDepth = 0
            (otherwise, _) = try block("for", line: line, until: ["endfor"])
            loopDepth = saved
            try expectEnd()
        }
        return .forLoop(target: target, iterable: iterable, filter: filter, body: nodes, otherwise: otherwise, line: line)
    }

    private mutating func setStatement(line: Int) throws(JinjaFailure) -> Node {
        let target = try assignTarget(allowNamespace: true)
        if skipOp("=") {
            let value = try tuple(condexpr: true)
            try expectEnd()
            return .set(target, value, line: line)
        }
        let filters = try filterChain()
        try expectEnd()
        let (nodes, _) = try block("set", line: line, until: ["endset"])
        try expectEnd()
        return .setBlock(target, filters: filters, body: nodes, line: line)
    }

    private mutating func macroStatement(line: Int) throws(JinjaFailure) -> Node {
        let name = try expectName()
        try expectOp("(")
        var parameters: [String] = []
        var defaults: [Expr?] = []
        while !skipOp(")") {
            if !parameters.isEmpty { try expectOp(",") }
            if skipOp(")") { break }
            let p = try expectName()
            parameters.append(p)
            if skipOp("=") {
                defaults.append(try expression())
            } else {
                guard defaults.allSatisfy({ $0 == nil }) else {
                    throw .syntax("non-default argument '\(p)' follows a default argument", line: self.line)
                }
                defaults.append(nil)
            }
        }
        try expectEnd()
        let savedLoops = loopDepth
        loopDepth = 0
        let (nodes, _) = try block("macro", line: line, until: ["endmacro"])
        loopDepth = savedLoops
        try expectEnd()
        return .macro(name: name, parameters: parameters, defaults: defaults, body: nodes, line: line)
    }

    /// `| name(args)` repeated (after `{% set x %}` and `{% filter %}`, the first `|` is optional).
    private mutating func filterChain() throws(JinjaFailure) -> [(name: String, args: [Expr], kwargs: [(String, Expr)], line: Int)] {
        var out: [(name: String, args: [Expr], kwargs: [(String, Expr)], line: Int)] = []
        var first = true
        while skipOp("|") || (first && !(current == .end)) {
            first = false
            let l = line
            let name = try expectName()
            guard JinjaFilters.names.contains(name) else { throw .syntax("no filter named '\(name)'", line: l) }
            var args: [Expr] = []
            var kwargs: [(String, Expr)] = []
            if skipOp("(") { (args, kwargs) = try callArguments() }
            out.append((name, args, kwargs, l))
        }
        return out
    }

    private mutating func assignTarget(allowNamespace: Bool, endName: String? = nil) throws(JinjaFailure) -> AssignTarget {
        if allowNamespace, case .name(let n) = current, i + 1 < tokens.count, tokens[i + 1].kind == .op(".") {
            i += 2
            let attr = try expectName()
            return .attribute(n, attr)
        }
        var parts: [AssignTarget] = []
        var sawComma = false
        repeat {
            if current == .end || isOp("=") || (endName.map { isName($0) } ?? false) { break }
            if skipOp("(") {
                let inner = try assignTarget(allowNamespace: false)
                try expectOp(")")
                parts.append(inner)
            } else {
                let n = try expectName()
                guard !["true", "false", "none", "True", "False", "None"].contains(n) else {
                    throw .syntax("cannot assign to '\(n)'", line: line)
                }
                parts.append(.name(n))
            }
            sawComma = skipOp(",")
        } while sawComma
        guard !parts.isEmpty else { throw unexpected("a name to assign to") }
        return parts.count == 1 && !sawComma ? parts[0] : .tuple(parts)
    }

    // MARK: Expressions

    private mutating func expression() throws(JinjaFailure) -> Expr { try conditional() }

    /// A comma-separated list of expressions: a tuple if there is a comma, else the one expression.
    private mutating func tuple(condexpr: Bool, endName: String? = nil) throws(JinjaFailure) -> Expr {
        let l = line
        var items: [Expr] = []
        var comma = false
        while true {
            if !items.isEmpty {
                guard skipOp(",") else { break }
                comma = true
            }
            if current == .end || isOp(")") || isOp("]") || (endName.map { isName($0) } ?? false) {
                if items.isEmpty { throw unexpected("an expression") }
                break
            }
            items.append(condexpr ? try conditional() : try or())
        }
        return comma ? Expr(kind: .tuple(items), line: l) : items[0]
    }

    private mutating func conditional() throws(JinjaFailure) -> Expr {
        try enter()
        defer { depth -= 1 }
        var e = try or()
        var chained = 0
        defer { depth -= chained }
        while skipName("if") {
            try enter()
            chained += 1
            let cond = try or()
            var other: Expr?
            if skipName("else") { other = try conditional() }
            e = Expr(kind: .conditional(condition: cond, then: e, otherwise: other), line: e.line)
        }
        return e
    }

    private mutating func or() throws(JinjaFailure) -> Expr {
        var e = try and()
        var chained = 0
        defer { depth -= chained }
        while skipName("or") { try enter(); chained += 1; e = Expr(kind: .or(e, try and()), line: e.line) }
        return e
    }

    private mutating func and() throws(JinjaFailure) -> Expr {
        var e = try not()
        var chained = 0
        defer { depth -= chained }
        while skipName("and") { try enter(); chained += 1; e = Expr(kind: .and(e, try not()), line: e.line) }
        return e
    }

    private mutating func not() throws(JinjaFailure) -> Expr {
        let l = line
        if isName("not") {
            i += 1
            try enter()
            defer { depth -= 1 }
            return Expr(kind: .not(try not()), line: l)
        }
        return try compare()
    }

    private mutating func compare() throws(JinjaFailure) -> Expr {
        let e = try math1()
        var ops: [(CompareOperator, Expr)] = []
        var chained = 0
        defer { depth -= chained }
        while true {
            try enter()
            chained += 1
            if case .op(let o) = current, let op = CompareOperator(rawValue: o), op != .isIn, op != .notIn {
                i += 1
                ops.append((op, try math1()))
            } else if skipName("in") {
                ops.append((.isIn, try math1()))
            } else if isName("not"), isName("in", ahead: 1) {
                i += 2
                ops.append((.notIn, try math1()))
            } else {
                break
            }
        }
        return ops.isEmpty ? e : Expr(kind: .compare(e, ops), line: e.line)
    }

    private mutating func math1() throws(JinjaFailure) -> Expr {
        var e = try concat()
        var chained = 0
        defer { depth -= chained }
        while true {
            try enter()
            chained += 1
            if skipOp("+") {
                e = Expr(kind: .binary(.add, e, try concat()), line: e.line)
            } else if skipOp("-") {
                e = Expr(kind: .binary(.subtract, e, try concat()), line: e.line)
            } else {
                return e
            }
        }
    }

    private mutating func concat() throws(JinjaFailure) -> Expr {
        var e = try math2()
        var chained = 0
        defer { depth -= chained }
        while skipOp("~") { try enter(); chained += 1; e = Expr(kind: .binary(.concat, e, try math2()), line: e.line) }
        return e
    }

    private mutating func math2() throws(JinjaFailure) -> Expr {
        var e = try pow()
        var chained = 0
        defer { depth -= chained }
        while true {
            try enter()
            chained += 1
            let op: BinaryOperator
            if skipOp("*") { op = .multiply } else if skipOp("/") { op = .divide } else if skipOp("//") { op = .floorDivide } else if skipOp("%") { op = .modulo } else { return e }
            e = Expr(kind: .binary(op, e, try pow()), line: e.line)
        }
    }

    private mutating func pow() throws(JinjaFailure) -> Expr {
        var e = try unary(withFilter: true)
        var chained = 0
        defer { depth -= chained }
        while skipOp("**") { try enter(); chained += 1; e = Expr(kind: .binary(.power, e, try unary(withFilter: true)), line: e.line) }
        return e
    }

    private mutating func unary(withFilter: Bool) throws(JinjaFailure) -> Expr {
        try enter()
        defer { depth -= 1 }
        let l = line
        var e: Expr
        if skipOp("-") {
            e = Expr(kind: .negate(try unary(withFilter: false)), line: l)
        } else if skipOp("+") {
            e = Expr(kind: .plus(try unary(withFilter: false)), line: l)
        } else {
            e = try primary()
        }
        e = try postfix(e)
        if withFilter { e = try filterTestCall(e) }
        return e
    }

    private mutating func primary() throws(JinjaFailure) -> Expr {
        let l = line
        switch current {
        case .name(let n):
            i += 1
            switch n {
            case "true", "True": return Expr(kind: .literal(.bool(true)), line: l)
            case "false", "False": return Expr(kind: .literal(.bool(false)), line: l)
            case "none", "None": return Expr(kind: .literal(.none), line: l)
            default: return Expr(kind: .name(n), line: l)
            }
        case .string(var s):
            i += 1
            while case .string(let more) = current {
                s += more
                i += 1
            }
            return Expr(kind: .literal(.string(s)), line: l)
        case .integer(let v):
            i += 1
            return Expr(kind: .literal(.int(v)), line: l)
        case .float(let v):
            i += 1
            return Expr(kind: .literal(.double(v)), line: l)
        case .op("("):
            i += 1
            if skipOp(")") { return Expr(kind: .tuple([]), line: l) }
            let e = try tuple(condexpr: true)
            try expectOp(")")
            return e
        case .op("["):
            i += 1
            var items: [Expr] = []
            while !skipOp("]") {
                if !items.isEmpty { try expectOp(",") }
                if skipOp("]") { break }
                items.append(try expression())
            }
            return Expr(kind: .list(items), line: l)
        case .op("{"):
            i += 1
            var items: [(Expr, Expr)] = []
            while !skipOp("}") {
                if !items.isEmpty { try expectOp(",") }
                if skipOp("}") { break }
                let k = try expression()
                try expectOp(":")
                items.append((k, try expression()))
            }
            return Expr(kind: .dict(items), line: l)
        default:
            throw unexpected("an expression")
        }
    }

    private mutating func postfix(_ start: Expr) throws(JinjaFailure) -> Expr {
        var e = start
        var chained = 0
        defer { depth -= chained }
        while true {
            try enter()
            chained += 1
            let l = line
            if skipOp(".") {
                switch current {
                case .name(let n):
                    i += 1
                    e = Expr(kind: .attribute(e, n), line: l)
                case .integer(let v):
                    i += 1
                    e = Expr(kind: .item(e, Expr(kind: .literal(.int(v)), line: l)), line: l)
                default:
                    throw unexpected("an attribute name")
                }
            } else if skipOp("[") {
                e = try subscriptSuffix(e, line: l)
            } else if skipOp("(") {
                let (args, kwargs) = try callArguments()
                e = Expr(kind: .call(e, args: args, kwargs: kwargs), line: l)
            } else {
                return e
            }
        }
    }

    private mutating func subscriptSuffix(_ base: Expr, line l: Int) throws(JinjaFailure) -> Expr {
        var parts: [Expr?] = []
        var current: Expr?
        var colons = 0
        while !skipOp("]") {
            if skipOp(":") {
                parts.append(current)
                current = nil
                colons += 1
                guard colons <= 2 else { throw unexpected("']'") }
            } else {
                guard current == nil else { throw unexpected("']' or ':'") }
                current = try expression()
            }
        }
        parts.append(current)
        if colons == 0 {
            guard let index = parts[0] else { throw .syntax("expected an expression inside '[]'", line: l) }
            return Expr(kind: .item(base, index), line: l)
        }
        return Expr(kind: .slice(base, start: parts[0], stop: parts[1], step: parts.count > 2 ? parts[2] : nil), line: l)
    }

    private mutating func callArguments() throws(JinjaFailure) -> ([Expr], [(String, Expr)]) {
        var args: [Expr] = []
        var kwargs: [(String, Expr)] = []
        while !skipOp(")") {
            if !args.isEmpty || !kwargs.isEmpty {
                try expectOp(",")
                if skipOp(")") { break }
            }
            if isOp("*") || isOp("**") { throw .syntax("*args and **kwargs in calls are not supported", line: line) }
            if case .name(let n) = current, i + 1 < tokens.count, tokens[i + 1].kind == .op("=") {
                i += 2
                kwargs.append((n, try expression()))
            } else {
                guard kwargs.isEmpty else { throw .syntax("positional argument after a keyword argument", line: line) }
                args.append(try expression())
            }
        }
        return (args, kwargs)
    }

    private mutating func filterTestCall(_ start: Expr) throws(JinjaFailure) -> Expr {
        var e = start
        var chained = 0
        defer { depth -= chained }
        while true {
            try enter()
            chained += 1
            let l = line
            if skipOp("|") {
                let name = try expectName()
                guard JinjaFilters.names.contains(name) else { throw .syntax("no filter named '\(name)'", line: l) }
                var args: [Expr] = []
                var kwargs: [(String, Expr)] = []
                if skipOp("(") { (args, kwargs) = try callArguments() }
                e = Expr(kind: .filter(e, name: name, args: args, kwargs: kwargs), line: l)
            } else if skipName("is") {
                let negated = skipName("not")
                let name = try expectName()
                guard JinjaFilters.testNames.contains(name) else { throw .syntax("no test named '\(name)'", line: l) }
                var args: [Expr] = []
                if skipOp("(") {
                    let (a, kw) = try callArguments()
                    guard kw.isEmpty else { throw .syntax("keyword arguments to tests are not supported", line: l) }
                    args = a
                } else if startsPrimary, !isName("else"), !isName("or"), !isName("and") {
                    if isName("is") { throw .syntax("you cannot chain multiple tests with is", line: l) }
                    args = [try postfix(try primary())]
                }
                e = Expr(kind: .test(e, name: name, args: args, negated: negated), line: l)
            } else if skipOp("(") {
                let (args, kwargs) = try callArguments()
                e = Expr(kind: .call(e, args: args, kwargs: kwargs), line: l)
            } else {
                return e
            }
        }
    }

    private var startsPrimary: Bool {
        switch current {
        case .name, .string, .integer, .float: true
        case .op(let o): o == "(" || o == "[" || o == "{"
        default: false
        }
    }
}
