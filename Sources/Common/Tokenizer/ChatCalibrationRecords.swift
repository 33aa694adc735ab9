/// One conversation read from a calibration file, ready to render through a chat template.
public struct CalibrationConversation: Sendable, Equatable {
    /// The messages, JSON objects with at least a `role` string.
    public var messages: [JSONValue]
    /// `tools` of a JSONL record, passed to the template when present.
    public var tools: JSONValue?
    /// The 1-based line of the file the conversation came from.
    public var line: Int

    /// Whether rendering appends the assistant header: true unless the conversation ends with an
    /// assistant turn.
    public var addGenerationPrompt: Bool { messages.last?["role"]?.stringValue != "assistant" }
}

extension ChatTemplate {
    /// Reads the conversations of a calibration file for `--chat`.
    ///
    /// The rule (`qcalib`/`qquant --data FILE --chat`):
    /// - The file is JSONL when its first non-blank line is a JSON object; then every non-blank line must
    ///   be a JSON object, one conversation each. Otherwise the file is plain text and each non-blank line
    ///   (a line with something other than whitespace; its text kept as it is) becomes the conversation
    ///   `[{"role": "user", "content": line}]`.
    /// - A JSONL record gives its conversation from the first of these fields it has:
    ///   `messages` (a list of message objects with a `role`, passed through with all their fields);
    ///   `conversations` or `conversation` (the same, or ShareGPT turns `{"from", "value"}` where `from`
    ///   `human`, `gpt`, `system` become the roles `user`, `assistant`, `system`);
    ///   `prompt` with `completion` or `response` (a user turn and an assistant turn; the prompt alone is
    ///   a user turn); `instruction` with optional `input` and `output` (Alpaca: the user turn is the
    ///   instruction, followed by a blank line and the input when the input is not empty; the output is
    ///   the assistant turn); `text` (a user turn). A record's `tools` list is passed to the template.
    /// - Each conversation is rendered with `add_generation_prompt` false when it ends with an assistant
    ///   turn, true otherwise.
    /// - Throws: `.badRecord` naming the line: malformed JSON, a line that is not an object, a record
    ///   with none of the fields above, a field of the wrong type, an empty conversation.
    public static func calibrationConversations(in text: String, path: String? = nil) throws(ChatTemplateError) -> [CalibrationConversation] {
        var lines: [(number: Int, text: Substring)] = []
        var number = 0
        // Split on "\n" and "\r\n" (one Character in Swift); a lone trailing "\r" is dropped below.
        for raw in text.split(omittingEmptySubsequences: false, whereSeparator: { $0 == "\n" || $0 == "\r\n" }) {
            number += 1
            var line = raw
            if line.last == "\r" { line = line.dropLast() }
            guard !line.unicodeScalars.allSatisfy(PyString.isSpace) else { continue }
            lines.append((number, line))
        }
        guard let first = lines.first else { return [] }
        let jsonl = first.text.drop(while: { $0.unicodeScalars.allSatisfy(PyString.isSpace) }).first == "{"
            && (try? JSONParser.parse(String(first.text)))?.objectValue != nil
        guard jsonl else {
            return lines.map {
                CalibrationConversation(messages: [.object(JSONObject([("role", .string("user")), ("content", .string(String($0.text)))]))],
                                        tools: nil, line: $0.number)
            }
        }
        var out: [CalibrationConversation] = []
        for (n, line) in lines {
            func bad(_ m: String) -> ChatTemplateError { .badRecord(path: path, line: n, m) }
            let record: JSONValue
            do throws(JSONError) {
                record = try JSONParser.parse(String(line), rejectDuplicateKeys: false)
            } catch {
                throw bad("not valid JSON (\(error)); a JSONL calibration file has one JSON object per line")
            }
            guard record.objectValue != nil else { throw bad("not a JSON object; a JSONL calibration file has one JSON object per line") }
            var tools: JSONValue?
            if let t = record["tools"], t != .null {
                guard t.arrayValue != nil else { throw bad("'tools' is not a list") }
                tools = t
            }
            out.append(CalibrationConversation(messages: try messages(of: record, bad), tools: tools, line: n))
        }
        return out
    }

    private static func message(_ role: String, _ content: String) -> JSONValue {
        .object(JSONObject([("role", .string(role)), ("content", .string(content))]))
    }

    private static func messages(of r: JSONValue, _ bad: (String) -> ChatTemplateError) throws(ChatTemplateError) -> [JSONValue] {
        func present(_ k: String) -> JSONValue? {
            guard let v = r[k], v != .null else { return nil }
            return v
        }
        func string(_ k: String) throws(ChatTemplateError) -> String? {
            guard let v = present(k) else { return nil }
            guard let s = v.stringValue else { throw bad("'\(k)' is not a string") }
            return s
        }
        if let key = ["messages", "conversations", "conversation"].first(where: { present($0) != nil }) {
            guard let list = present(key)!.arrayValue else { throw bad("'\(key)' is not a list") }
            guard !list.isEmpty else { throw bad("'\(key)' is empty") }
            var out: [JSONValue] = []
            for (k, m) in list.enumerated() {
                guard var o = m.objectValue else { throw bad("'\(key)'[\(k)] is not an object") }
                if o["role"] == nil, key != "messages", let from = o["from"]?.stringValue {
                    let roles = ["human": "user", "user": "user", "gpt": "assistant", "assistant": "assistant", "system": "system"]
                    var converted = JSONObject([("role", .string(roles[from] ?? from)), ("content", o["value"] ?? .null)])
                    for member in o.members where member.key != "from" && member.key != "value" { converted[member.key] = member.value }
                    o = converted
                }
                guard o["role"]?.stringValue != nil else { throw bad("'\(key)'[\(k)] has no 'role' string") }
                out.append(.object(o))
            }
            return out
        }
        if let prompt = try string("prompt") {
            var out = [message("user", prompt)]
            var answer = try string("completion")
            if answer == nil { answer = try string("response") }
            if let answer { out.append(message("assistant", answer)) }
            return out
        }
        if let instruction = try string("instruction") {
            var user = instruction
            if let input = try string("input"), !input.isEmpty { user += "\n\n" + input }
            var out = [message("user", user)]
            if let output = try string("output") { out.append(message("assistant", output)) }
            return out
        }
        if let text = try string("text") { return [message("user", text)] }
        throw bad("no usable field: expected 'messages', 'conversations', 'conversation', 'prompt', 'instruction' or 'text'")
    }

    /// Renders every conversation of a calibration file (see `calibrationConversations(in:path:)` for the
    /// rule) into the documents to tokenize.
    /// - Throws: `.badRecord` naming the file's line, for a bad record or a conversation the template
    ///   refuses (the template's own message is kept).
    public func renderCalibrationDocuments(_ text: String, path: String? = nil) throws(ChatTemplateError) -> [String] {
        var out: [String] = []
        for c in try Self.calibrationConversations(in: text, path: path) {
            do throws(ChatTemplateError) {
                out.append(try render(messages: c.messages, addGenerationPrompt: c.addGenerationPrompt,
                                      variables: c.tools.map { ["tools": $0] } ?? [:]))
            } catch {
                throw .badRecord(path: path, line: c.line, "the chat template failed: \(error.description)")
            }
        }
        return out
    }
}
