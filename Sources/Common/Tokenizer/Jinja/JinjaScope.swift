/// Variables visible at one point of a template. `{% for %}` bodies (one scope per iteration), macro
/// calls and `{% with %}` open a child scope; `{% if %}` does not, so `{% set %}` inside an `if` changes
/// the enclosing scope, as in Jinja2.
final class JinjaScope {
    var variables: [String: JinjaValue]
    let parent: JinjaScope?

    init(_ variables: [String: JinjaValue] = [:], parent: JinjaScope?) {
        self.variables = variables
        self.parent = parent
    }

    func lookup(_ name: String) -> JinjaValue? {
        var s: JinjaScope? = self
        while let c = s {
            if let v = c.variables[name] { return v }
            s = c.parent
        }
        return nil
    }
}
