import Testing
#if canImport(Glibc)
import Glibc
#endif
@testable import Common

/// Fixtures of the chat-template tests (Fixtures/chat: real templates, and the reference renderings
/// Tests/peer-checks/chat_template_reference.py made with transformers and Jinja2).
enum ChatFixtures {
    static var directory: String {
        let here = "\(#filePath)"
        return String(here[..<here.lastIndex(of: "/")!]) + "/Fixtures/chat"
    }

    static func text(_ name: String) throws -> String {
        String(decoding: try TokenizerFixtures.read(directory + "/" + name), as: UTF8.self)
    }

    static func json(_ name: String) throws -> JSONValue {
        try JSONParser.parse(try TokenizerFixtures.read(directory + "/" + name), rejectDuplicateKeys: false)
    }

    static let templateFiles = ["smollm2.jinja", "llama-3.1-instruct.jinja", "qwen2.5-instruct.jinja", "qwen3.jinja",
                                "mistral-7b-instruct-v0.3.jinja", "llama-2-chat.jinja", "zephyr-7b-beta.jinja"]
    static let allTemplateFiles = templateFiles + ["llama-3.2-instruct.jinja"]
}

/// Renders a small template with variables given as JSON.
private func render(_ source: String, _ variables: [String: JSONValue] = [:]) throws(JinjaFailure) -> String {
    var context: [String: JinjaValue] = [:]
    for (k, v) in variables { context[k] = JinjaValue(json: v) }
    return try JinjaTemplate(source: source).render(context)
}

private func failure(_ source: String, _ variables: [String: JSONValue] = [:]) -> JinjaFailure? {
    do throws(JinjaFailure) {
        _ = try render(source, variables)
        return nil
    } catch {
        return error
    }
}

private func user(_ s: String) -> JSONValue { .object(JSONObject([("role", .string("user")), ("content", .string(s))])) }
private func assistant(_ s: String) -> JSONValue { .object(JSONObject([("role", .string("assistant")), ("content", .string(s))])) }

@Suite("Chat templates")
struct ChatTemplateTests {
    // MARK: Reference renderings (transformers' apply_chat_template)

    @Test("Real templates render as transformers does, byte for byte", arguments: ChatFixtures.templateFiles)
    func referenceRenderings(file: String) throws {
        let reference = try ChatFixtures.json("chat_reference.json")
        let entry = try #require(reference["templates"]?.arrayValue?.first { $0["file"]?.stringValue == file })
        var tokens: [String: String] = [:]
        for m in try #require(entry["special_tokens"]?.objectValue).members { tokens[m.key] = m.value.stringValue }
        let template = try ChatTemplate(source: try ChatFixtures.text(file), specialTokens: tokens, path: file)
        let cases = try #require(entry["cases"]?.arrayValue)
        #expect(cases.count >= 6)
        for c in cases {
            let name = c["name"]?.stringValue ?? "?"
            let messages = try #require(c["messages"]?.arrayValue)
            let gen = try #require(c["add_generation_prompt"]?.boolValue)
            var variables: [String: JSONValue] = [:]
            for m in c["variables"]?.objectValue?.members ?? [] { variables[m.key] = m.value }
            let result = Result { () throws(ChatTemplateError) -> String in
                try template.render(messages: messages, addGenerationPrompt: gen, variables: variables)
            }
            if let expected = c["output"]?.stringValue {
                switch result {
                case .success(let out): #expect(out == expected, "\(file): \(name)")
                case .failure(let e): Issue.record("\(file): \(name): unexpected error \(e)")
                }
            } else {
                let error = try #require(c["error"])
                guard case .failure(let e) = result else { Issue.record("\(file): \(name): rendered, transformers refused it"); continue }
                if error["type"]?.stringValue == "TemplateError" {
                    guard case .raised(_, _, let message) = e else { Issue.record("\(file): \(name): \(e) is not raise_exception"); continue }
                    #expect(message == error["message"]?.stringValue, "\(file): \(name)")
                }
            }
        }
    }

    // MARK: Interpreter constructs (checked against Jinja2 with transformers' environment)

    @Test("Each construct renders as Jinja2 does")
    func jinjaCases() throws {
        let cases = try #require(try ChatFixtures.json("jinja_cases.json")["cases"]?.arrayValue)
        #expect(cases.count > 80)
        for c in cases {
            let source = try #require(c["template"]?.stringValue)
            var variables: [String: JSONValue] = [:]
            for m in c["variables"]?.objectValue?.members ?? [] { variables[m.key] = m.value }
            let result = Result { () throws(JinjaFailure) -> String in try render(source, variables) }
            if let expected = c["output"]?.stringValue {
                switch result {
                case .success(let out): #expect(out == expected, "template: \(source)")
                case .failure(let e): Issue.record("template: \(source): unexpected error \(e)")
                }
            } else {
                let error = try #require(c["error"])
                guard case .failure(let e) = result else { Issue.record("template: \(source): rendered, Jinja2 refused it"); continue }
                let kind: JinjaFailure.Kind = switch error["kind"]?.stringValue {
                case "syntax": .syntax
                case "raised": .raised
                case "limit": .limit
                default: .render
                }
                #expect(e.kind == kind, "template: \(source): \(e)")
                if kind == .raised { #expect(e.message == error["message"]?.stringValue) }
                if let line = error["line"]?.intValue { #expect(e.line == line, "template: \(source): \(e)") }
            }
        }
    }

    // MARK: Errors

    @Test("Errors are typed, one line, with the template line and exit status 65")
    func errorsNameTheLine() throws {
        #expect(throws: ChatTemplateError.syntax(path: "t.jinja", line: 3, "no filter named 'nosuch'")) {
            try ChatTemplate(source: "a\nb\n{{ x | nosuch }}", path: "t.jinja")
        }
        do {
            _ = try ChatTemplate(source: "{% for m in messages %}\n{{ m.content }}\n", path: "t.jinja")
            Issue.record("an unclosed for block parsed")
        } catch {
            guard case .syntax(_, let line, let m) = error else { Issue.record("\(error)"); return }
            #expect(line == 2)
            #expect(m.contains("opened on line 1"))
            #expect(error.exitStatus == .dataError)
            #expect(!error.description.contains("\n"))
            #expect(error.description.hasPrefix("chat template line 2: "))
        }
        let t = try ChatTemplate(source: "ok\n{% if messages[0].role != 'user' %}\n{{ raise_exception('first must be user') }}\n{% endif %}")
        #expect(throws: ChatTemplateError.raised(path: nil, line: 3, "first must be user")) {
            try t.render(messages: [assistant("x")], addGenerationPrompt: false)
        }
        #expect(try t.render(messages: [user("x")], addGenerationPrompt: false) == "ok\n")
        // A member of an undefined value: Jinja2's UndefinedError, on the line that used it.
        let u = try ChatTemplate(source: "\n\n{{ messages[5].content }}")
        #expect(throws: ChatTemplateError.render(path: nil, line: 3, "list index out of range")) {
            try u.render(messages: [user("x")], addGenerationPrompt: false)
        }
    }

    @Test("Bounds: runaway loops, recursion, output and nesting fail instead of running on")
    func bounds() throws {
        let cases: [(String, JinjaFailure.Kind)] = [
            ("{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}", .limit),
            ("{% macro f(n) %}{{ f(n + 1) }}{% endmacro %}{{ f(0) }}", .limit),
            ("{{ 'ab' * 100000000 }}", .limit),
            ("{% set ns = namespace(s='x') %}{% for i in range(100) %}{% set ns.s = ns.s ~ ns.s %}{% endfor %}", .limit),
            ("{% set ns = namespace(x=[]) %}{% for i in range(1000) %}{% set ns.x = [ns.x] %}{% endfor %}", .limit),
            ("{{ range(1000000) }}", .limit),
            ("{{ 2 ** 64 }}", .render),
            ("{{ " + String(repeating: "(", count: 5000) + "1" + String(repeating: ")", count: 5000) + " }}", .syntax),
            ("{{ " + String(repeating: "[", count: 5000) + String(repeating: "]", count: 5000) + " }}", .syntax),
            ("{{ 1" + String(repeating: " + 1", count: 20000) + " }}", .syntax),
            ("{{ x" + String(repeating: ".a", count: 20000) + " }}", .syntax),
            ("{{ " + String(repeating: "not ", count: 20000) + "x }}", .syntax),
            (String(repeating: "{% if true %}", count: 5000) + String(repeating: "{% endif %}", count: 5000), .syntax),
        ]
        for (source, kind) in cases {
            let f = failure(source)
            #expect(f?.kind == kind, "\(source.prefix(80)): \(String(describing: f))")
        }
    }

    @Test("Truncated and mutated real templates render or throw, never crash or hang")
    func fuzzRealTemplates() throws {
        var rng = SplitMix64(seed: 0x5EED_C4A7)
        let pieces = ["{%", "%}", "{{", "}}", "{#", "#}", "-", "+", "(", ")", "[", "]", "{", "}", "'", "\"", "|", ".", ",",
                      " if ", " for ", " endfor ", " endif ", " else ", " is ", " not ", " in ", "\n", "loop", "messages",
                      "[0]", "[::-1]", "|tojson", "|length", "~", "*", "**", "//", "%", "ns.x", "{% set x = %}", "\\"]
        let conversation = [user("Hi 🦙"), assistant("Hello"), user("Bye")]
        var rendered = 0, refused = 0
        for file in ChatFixtures.allTemplateFiles {
            let source = Array(try ChatFixtures.text(file).unicodeScalars)
            var variants: [[Unicode.Scalar]] = []
            for k in stride(from: 0, through: source.count, by: max(1, source.count / 60)) { variants.append(Array(source[..<k])) }
            for _ in 0..<150 {
                var s = source
                for _ in 0..<(1 + Int(rng.next() % 4)) {
                    let i = Int(rng.next() % UInt64(s.count + 1))
                    switch rng.next() % 4 {
                    case 0: s.removeSubrange(i..<min(s.count, i + 1 + Int(rng.next() % 12)))
                    case 1: s.insert(contentsOf: pieces[Int(rng.next() % UInt64(pieces.count))].unicodeScalars, at: i)
                    case 2: let j = min(s.count, i + Int(rng.next() % 40)); s.insert(contentsOf: s[i..<j], at: i)
                    default: if i < s.count { s[i] = Unicode.Scalar(UInt8(32 + rng.next() % 95)) }
                    }
                }
                variants.append(s)
            }
            for v in variants {
                var text = ""
                text.unicodeScalars.append(contentsOf: v)
                do {
                    let t = try ChatTemplate(source: text, bosToken: "<s>", eosToken: "</s>")
                    _ = try t.render(messages: conversation, addGenerationPrompt: true)
                    rendered += 1
                } catch {
                    #expect(!error.description.isEmpty)
                    refused += 1
                }
            }
        }
        #expect(rendered > 100 && refused > 100, "rendered \(rendered), refused \(refused)")
    }

    // MARK: Loading

    @Test("Loads the SmolLM2 template and special tokens from the asset directory")
    func loadAsset() throws {
        let dir = testAssets() + "/smollm2-135m"
        let t = try ChatTemplate.load(modelDirectory: dir)
        // transformers' conversion (get-assets.sh) keeps the template in chat_template.jinja; qpack's import of the
        // GGUF (test.sh, no Python) puts it in tokenizer_config.json with the GGUF's padding token as pad_token.
        let special = ["bos_token": "<|im_start|>", "eos_token": "<|im_end|>", "unk_token": "<|endoftext|>"]
        if t.path == dir + "/chat_template.jinja" {
            #expect(t.specialTokens == special)
        } else {
            #expect(t.path == dir + "/tokenizer_config.json")
            #expect(t.specialTokens == special.merging(["pad_token": "<|im_end|>"]) { a, _ in a })
        }
        let out = try t.render(messages: [user("What is 2+2?")], addGenerationPrompt: true)
        #expect(out == "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n<|im_start|>user\nWhat is 2+2?<|im_end|>\n<|im_start|>assistant\n")
    }

    @Test("Loads tokenizer_config.json templates: a string, named templates, token objects; refuses bad ones")
    func loadConfig() throws {
        let dir = try ChatTemporaryDirectory()
        func put(_ name: String, _ text: String) throws {
            let fd = open(dir.path + "/" + name, O_WRONLY | O_CREAT | O_TRUNC, 0o644)
            try #require(fd >= 0)
            _ = text.utf8CString.withUnsafeBufferPointer { Glibc.write(fd, $0.baseAddress, $0.count - 1) }
            close(fd)
        }
        #expect(throws: ChatTemplateError.noTemplate(path: dir.path)) { try ChatTemplate.load(modelDirectory: dir.path) }
        try put("tokenizer_config.json", #"{"bos_token": {"content": "<s>", "lstrip": false}, "eos_token": "</s>", "pad_token": null, "chat_template": "{{ bos_token }}{{ messages[0].content }}{{ eos_token }}"}"#)
        let t = try ChatTemplate.load(modelDirectory: dir.path)
        #expect(try t.render(messages: [user("x")], addGenerationPrompt: false) == "<s>x</s>")
        try put("tokenizer_config.json", #"{"eos_token": "E", "chat_template": [{"name": "tool_use", "template": "T"}, {"name": "default", "template": "D{{ eos_token }}"}]}"#)
        #expect(try ChatTemplate.load(modelDirectory: dir.path).render(messages: [], addGenerationPrompt: false) == "DE")
        try put("tokenizer_config.json", #"{"chat_template": [{"name": "tool_use", "template": "T"}]}"#)
        #expect(throws: ChatTemplateError.malformedConfig(path: dir.path + "/tokenizer_config.json", "several chat templates and none named 'default'")) {
            try ChatTemplate.load(modelDirectory: dir.path)
        }
        try put("tokenizer_config.json", #"{"chat_template": "{{ x "#)
        #expect(throws: ChatTemplateError.self) { try ChatTemplate.load(modelDirectory: dir.path) }
        try put("tokenizer_config.json", #"{"chat_template": 3}"#)
        #expect(throws: ChatTemplateError.self) { try ChatTemplate.load(modelDirectory: dir.path) }
        try put("tokenizer_config.json", #"{"bos_token": 1, "chat_template": "x"}"#)
        #expect(throws: ChatTemplateError.self) { try ChatTemplate.load(modelDirectory: dir.path) }
        try put("tokenizer_config.json", "{not json")
        do {
            _ = try ChatTemplate.load(modelDirectory: dir.path)
            Issue.record("malformed JSON loaded")
        } catch {
            guard case .malformedConfig = error else { Issue.record("\(error)"); return }
            #expect(error.exitStatus == .dataError)
        }
        // chat_template.jinja wins over the config's template.
        try put("tokenizer_config.json", #"{"eos_token": "E", "chat_template": "config"}"#)
        try put("chat_template.jinja", "file{{ eos_token }}\n")
        #expect(try ChatTemplate.load(modelDirectory: dir.path).render(messages: [], addGenerationPrompt: false) == "fileE")
    }

    @Test("strftime_now gives the local date (Llama 3.2's default date string)")
    func strftimeNow() throws {
        let t = try ChatTemplate(source: try ChatFixtures.text("llama-3.2-instruct.jinja"), bosToken: "<|begin_of_text|>", eosToken: "<|eot_id|>")
        let out = try t.render(messages: [user("Hi")], addGenerationPrompt: true)
        var now = time(nil)
        var parts = tm()
        localtime_r(&now, &parts)
        var buf = [CChar](repeating: 0, count: 64)
        let n = strftime(&buf, 64, "%d %b %Y", &parts)
        let today = String(decoding: buf[0..<n].map { UInt8(bitPattern: $0) }, as: UTF8.self)
        #expect(out.contains("Today Date: \(today)\n"))
        #expect(out.hasSuffix("<|start_header_id|>user<|end_header_id|>\n\nHi<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n"))
    }

    // MARK: Calibration records

    @Test("Plain text: each non-blank line is one user turn, rendered with the generation prompt")
    func calibrationPlainText() throws {
        let text = "first line\n\n   \nsecond {line} with 'quotes'\r\n\tthird\n"
        let c = try ChatTemplate.calibrationConversations(in: text)
        #expect(c.map(\.line) == [1, 4, 5])
        #expect(c.map(\.messages) == [[user("first line")], [user("second {line} with 'quotes'")], [user("\tthird")]])
        #expect(c.map(\.addGenerationPrompt) == [true, true, true])
        let t = try ChatTemplate.load(modelDirectory: testAssets() + "/smollm2-135m")
        let docs = try t.renderCalibrationDocuments(text)
        try #require(docs.count == 3)
        #expect(docs[2].hasSuffix("<|im_start|>user\n\tthird<|im_end|>\n<|im_start|>assistant\n"))
        #expect(try ChatTemplate.calibrationConversations(in: "\n \n").isEmpty)
        // A line that is JSON but not first does not make the file JSONL.
        #expect(try ChatTemplate.calibrationConversations(in: "text\n{\"text\": \"x\"}").count == 2)
    }

    @Test("JSONL records of every supported shape become conversations")
    func calibrationJSONL() throws {
        let lines = [
            #"{"messages": [{"role": "system", "content": "S"}, {"role": "user", "content": "U"}, {"role": "assistant", "content": "A", "reasoning_content": "R"}]}"#,
            #"{"conversations": [{"from": "system", "value": "S"}, {"from": "human", "value": "H"}, {"from": "gpt", "value": "G"}]}"#,
            #"{"conversation": [{"role": "user", "content": "C"}]}"#,
            "",
            #"{"prompt": "P", "completion": "C"}"#,
            #"{"prompt": "P", "response": "R"}"#,
            #"{"prompt": "P"}"#,
            #"{"instruction": "I", "input": "In", "output": "O"}"#,
            #"{"instruction": "I", "input": "", "output": "O"}"#,
            #"{"text": "T", "tools": [{"type": "function"}]}"#,
        ]
        let c = try ChatTemplate.calibrationConversations(in: lines.joined(separator: "\n"))
        #expect(c.map(\.line) == [1, 2, 3, 5, 6, 7, 8, 9, 10])
        func msg(_ role: String, _ content: String) -> JSONValue { .object(JSONObject([("role", .string(role)), ("content", .string(content))])) }
        #expect(c[0].messages.count == 3 && c[0].messages[2]["reasoning_content"] == .string("R"))
        #expect(c[1].messages == [msg("system", "S"), msg("user", "H"), msg("assistant", "G")])
        #expect(c[2].messages == [msg("user", "C")])
        #expect(c[3].messages == [msg("user", "P"), msg("assistant", "C")])
        #expect(c[4].messages == [msg("user", "P"), msg("assistant", "R")])
        #expect(c[5].messages == [msg("user", "P")])
        #expect(c[6].messages == [msg("user", "I\n\nIn"), msg("assistant", "O")])
        #expect(c[7].messages == [msg("user", "I"), msg("assistant", "O")])
        #expect(c[8].messages == [msg("user", "T")] && c[8].tools == .array([.object(JSONObject([("type", .string("function"))]))]))
        #expect(c.map(\.addGenerationPrompt) == [false, false, true, false, false, true, false, false, true])
        let t = try ChatTemplate(source: "{% for m in messages %}[{{ m.role }}:{{ m.content }}]{% endfor %}{% if add_generation_prompt %}>{% endif %}{{ tools|length if tools else 0 }}")
        #expect(try t.renderCalibrationDocuments(lines.joined(separator: "\n")) == [
            "[system:S][user:U][assistant:A]0", "[system:S][user:H][assistant:G]0", "[user:C]>0", "[user:P][assistant:C]0",
            "[user:P][assistant:R]0", "[user:P]>0", "[user:I\n\nIn][assistant:O]0", "[user:I][assistant:O]0", "[user:T]>1",
        ])
    }

    @Test("Bad JSONL records are errors naming the line")
    func calibrationErrors() throws {
        let bad: [(String, Int)] = [
            ("{\"text\": \"a\"}\n{\"text\": \"b\"\n", 2),
            ("{\"text\": \"a\"}\n\nplain text line\n", 3),
            ("{\"text\": \"a\"}\n[1, 2]\n", 2),
            ("{\"text\": \"a\"}\n{\"other\": 1}\n", 2),
            ("{\"text\": 5}\n", 1),
            ("{\"messages\": []}\n", 1),
            ("{\"messages\": \"hi\"}\n", 1),
            ("{\"messages\": [{\"content\": \"no role\"}]}\n", 1),
            ("{\"text\": \"a\"}\n{\"prompt\": \"p\", \"completion\": 3}\n", 2),
        ]
        for (text, line) in bad {
            do {
                _ = try ChatTemplate.calibrationConversations(in: text, path: "data.jsonl")
                Issue.record("accepted: \(text)")
            } catch {
                guard case .badRecord(let p, let l, _) = error else { Issue.record("\(error)"); continue }
                #expect(p == "data.jsonl")
                #expect(l == line, "\(text): \(error)")
                #expect(error.description.hasPrefix("line \(line): "))
                #expect(error.exitStatus == .dataError)
            }
        }
        // A conversation the template refuses names the data line and keeps the template's message.
        let t = try ChatTemplate(source: try ChatFixtures.text("llama-2-chat.jinja"), bosToken: "<s>", eosToken: "</s>")
        let text = "{\"text\": \"fine\"}\n{\"messages\": [{\"role\": \"user\", \"content\": \"a\"}, {\"role\": \"user\", \"content\": \"b\"}]}"
        do {
            _ = try t.renderCalibrationDocuments(text)
            Issue.record("rendered a conversation whose roles do not alternate")
        } catch {
            guard case .badRecord(_, 2, let m) = error else { Issue.record("\(error)"); return }
            #expect(m.contains("Conversation roles must alternate user/assistant/user/assistant/..."))
        }
    }

    // MARK: Speed

    @Test("10,000 short conversations render correctly (the time is printed)")
    func renderTenThousand() throws {
        for file in ["smollm2.jinja", "qwen2.5-instruct.jinja", "llama-3.1-instruct.jinja"] {
            let t = try ChatTemplate(source: try ChatFixtures.text(file), bosToken: "<s>", eosToken: "</s>")
            let conversations = (0..<10_000).map { [user("Calibration sentence number \($0) about quantization.")] }
            var start = timespec()
            clock_gettime(CLOCK_MONOTONIC, &start)
            var total = 0
            var all = true
            for (k, c) in conversations.enumerated() {
                let out = try t.render(messages: c, addGenerationPrompt: true)
                total += out.utf8.count
                all = all && out.contains("Calibration sentence number \(k) about quantization.")
            }
            var end = timespec()
            clock_gettime(CLOCK_MONOTONIC, &end)
            let seconds = Double(end.tv_sec - start.tv_sec) + Double(end.tv_nsec - start.tv_nsec) / 1e9
            print("chat template \(file): 10000 conversations rendered in \((seconds * 1000).rounded() / 1000) s (\(total) bytes)")
            #expect(all)
        }
    }
}

/// A small deterministic generator for the fuzz test.
private struct SplitMix64 {
    var state: UInt64
    init(seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}

/// A fresh directory under /tmp, removed (with its files) when the value is released.
private final class ChatTemporaryDirectory {
    let path: String
    init() throws {
        var template = Array("/tmp/qkit-chat-XXXXXX".utf8CString)
        guard let p = mkdtemp(&template) else { throw FixtureError("mkdtemp failed") }
        path = String(cString: p)
    }
    deinit {
        for name in ["tokenizer_config.json", "chat_template.jinja"] { unlink(path + "/" + name) }
        rmdir(path)
    }
}
