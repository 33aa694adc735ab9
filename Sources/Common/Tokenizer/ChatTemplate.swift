#if canImport(Glibc)
import Glibc
#endif

/// A model's chat template: the Jinja2 program that turns a conversation into the text an instruct
/// model was trained on, rendered exactly as transformers' `tokenizer.apply_chat_template(messages,
/// tokenize=False, add_generation_prompt=…)` renders it.
///
/// qkit interprets the template itself (no Python): Jinja2 statements, expressions, filters and tests,
/// with transformers' environment (`trim_blocks`, `lstrip_blocks`, loop controls, `{% generation %}`,
/// `raise_exception`, `strftime_now`, a `tojson` that keeps non-ASCII text). Undefined names behave as
/// Jinja2's default `Undefined`: they print as nothing and are false, but using one in arithmetic or
/// looking a member up on it is an error. Rendering is bounded in steps, output size and recursion, so a
/// broken template fails with an error instead of running forever.
public struct ChatTemplate: Sendable {
    /// The template text.
    public let source: String
    /// The special tokens the template sees as variables (`bos_token`, `eos_token`, and any of
    /// `unk_token`, `sep_token`, `pad_token`, `cls_token`, `mask_token` the tokenizer has).
    public let specialTokens: [String: String]
    /// The file the template came from, for error messages.
    public let path: String?

    private let program: Program

    /// The parsed template, shared by copies of the value (it is never modified after parsing).
    private final class Program: @unchecked Sendable {
        let template: JinjaTemplate
        init(_ t: JinjaTemplate) { template = t }
    }

    /// Parses `source`.
    /// - Parameters:
    ///   - bosToken: the value of `bos_token` in the template (transformers passes the tokenizer's).
    ///   - eosToken: the value of `eos_token`.
    ///   - specialTokens: further special tokens by attribute name (`unk_token`, `pad_token`, …).
    ///   - path: the file the text came from, named in errors.
    /// - Throws: `ChatTemplateError.syntax` with the line of the first error.
    public init(source: String, bosToken: String? = nil, eosToken: String? = nil, specialTokens: [String: String] = [:],
                path: String? = nil) throws(ChatTemplateError) {
        self.source = source
        var tokens = specialTokens
        if let bosToken { tokens["bos_token"] = bosToken }
        if let eosToken { tokens["eos_token"] = eosToken }
        self.specialTokens = tokens
        self.path = path
        do throws(JinjaFailure) {
            program = Program(try JinjaTemplate(source: source))
        } catch {
            throw ChatTemplateError(error, path: path)
        }
    }

    /// Renders a conversation.
    ///
    /// The template sees `messages`, `add_generation_prompt`, `tools` and `documents` (both `none`, as
    /// transformers passes them when not given), the special tokens, and `variables` (e.g. `tools`,
    /// `enable_thinking`, `date_string`), which take precedence.
    /// - Parameters:
    ///   - messages: the conversation, each message a JSON object (`role`, `content`, and any other field:
    ///     `tool_calls`, `reasoning_content`, …, which pass through to the template unchanged).
    ///   - addGenerationPrompt: append the header that opens the assistant's reply.
    ///   - variables: extra template variables.
    /// - Throws: a `ChatTemplateError` naming the template line: `.raised` when the template calls
    ///   `raise_exception`, `.render` for other failures, `.limitExceeded` when a bound is reached.
    public func render(messages: [JSONValue], addGenerationPrompt: Bool,
                       variables: [String: JSONValue] = [:]) throws(ChatTemplateError) -> String {
        var context: [String: JinjaValue] = [
            "messages": .list(messages.map(JinjaValue.init(json:))),
            "add_generation_prompt": .bool(addGenerationPrompt),
            "tools": .none,
            "documents": .none,
        ]
        for (k, v) in specialTokens { context[k] = .string(v) }
        for (k, v) in variables { context[k] = JinjaValue(json: v) }
        do throws(JinjaFailure) {
            return try program.template.render(context)
        } catch {
            throw ChatTemplateError(error, path: path)
        }
    }
}

// MARK: - Loading from a model directory

extension ChatTemplate {
    /// The special-token attributes transformers passes to templates.
    static let specialTokenNames = ["bos_token", "eos_token", "unk_token", "sep_token", "pad_token", "cls_token", "mask_token"]

    /// Loads the chat template of a Hugging Face model directory, as transformers does:
    /// `chat_template.jinja` if present, else `tokenizer_config.json`'s `chat_template`, which is either
    /// the template text or a list of `{"name", "template"}` entries (the one named `default` is used).
    /// Special tokens come from `tokenizer_config.json` (a string, or an object with a `content` string).
    /// - Throws: `.noTemplate` when the directory has no template, `.unreadable`, `.malformedConfig`,
    ///   `.syntax`.
    public static func load(modelDirectory dir: String) throws(ChatTemplateError) -> ChatTemplate {
        let configPath = dir + "/tokenizer_config.json"
        var config: JSONValue?
        if let bytes = try readIfPresent(configPath) {
            do throws(JSONError) {
                config = try JSONParser.parse(bytes, rejectDuplicateKeys: false)
            } catch {
                throw .malformedConfig(path: configPath, "not valid JSON: \(error)")
            }
            guard config?.objectValue != nil else { throw .malformedConfig(path: configPath, "the top level is not an object") }
        }
        var tokens: [String: String] = [:]
        for name in specialTokenNames {
            guard let v = config?[name], v != .null else { continue }
            if let s = v.stringValue {
                tokens[name] = s
            } else if let s = v["content"]?.stringValue {
                tokens[name] = s
            } else {
                throw .malformedConfig(path: configPath, "'\(name)' is neither a string nor an object with a 'content' string")
            }
        }
        let filePath = dir + "/chat_template.jinja"
        if let bytes = try readIfPresent(filePath) {
            guard let text = String(validating: bytes, as: UTF8.self) else { throw .syntax(path: filePath, line: 1, "the file is not valid UTF-8") }
            return try ChatTemplate(source: text, specialTokens: tokens, path: filePath)
        }
        guard let entry = config?["chat_template"], entry != .null else { throw .noTemplate(path: dir) }
        let text: String
        if let s = entry.stringValue {
            text = s
        } else if let list = entry.arrayValue {
            var named: [String: String] = [:]
            for item in list {
                guard let n = item["name"]?.stringValue, let t = item["template"]?.stringValue else {
                    throw .malformedConfig(path: configPath, "'chat_template' list entries need a 'name' and a 'template' string")
                }
                named[n] = t
            }
            guard let d = named["default"] else {
                throw .malformedConfig(path: configPath, "several chat templates and none named 'default'")
            }
            text = d
        } else {
            throw .malformedConfig(path: configPath, "'chat_template' is neither a string nor a list of named templates")
        }
        return try ChatTemplate(source: text, specialTokens: tokens, path: configPath)
    }

    /// The bytes of `path`, or nil when it does not exist.
    private static func readIfPresent(_ path: String) throws(ChatTemplateError) -> [UInt8]? {
        let fd = open(path, O_RDONLY)
        guard fd >= 0 else {
            let e = errno
            if e == ENOENT { return nil }
            throw .unreadable(path: path, .cannotOpen(path: path, errno: e))
        }
        defer { close(fd) }
        var out: [UInt8] = []
        var buf = [UInt8](repeating: 0, count: 1 << 16)
        while true {
            let n = buf.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
            if n < 0 {
                if errno == EINTR { continue }
                throw .unreadable(path: path, .readFailed(path: path, errno: errno))
            }
            if n == 0 { break }
            out.append(contentsOf: buf[0..<n])
        }
        return out
    }
}
