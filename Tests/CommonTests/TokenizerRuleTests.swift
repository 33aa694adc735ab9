import Testing
#if canImport(Glibc)
import Glibc
#endif
@testable import Common

/// The engine rules, each checked against Hugging Face `tokenizers` on real vocabularies (Fixtures/tokenizer/cases.json,
/// made by Tests/peer-checks/tokenizer_cases.py: ids without and with special tokens, decoded text with and without
/// special tokens, for 36 texts × 13 tokenizer set-ups), plus small hand-made vocabularies and malformed files.
@Suite("Tokenizer: engine rules")
struct TokenizerRuleTests {
    static let cases: JSONValue = {
        (try? JSONParser.parse(TokenizerFixtures.read(TokenizerFixtures.directory + "/cases.json"))) ?? .null
    }()

    /// The tokenizer `name` of cases.json: its base fixture with the patch applied.
    static func caseTokenizer(_ name: String) throws -> Tokenizer {
        let spec = try #require(cases["tokenizers"]?[name], "no tokenizer \(name) in cases.json")
        guard case .object(var root) = try TokenizerFixtures.json(try #require(spec["base"]?.stringValue)) else { throw FixtureError("bad base") }
        for (k, v) in spec["set"]?.objectValue?.members ?? [] { root[k] = v }
        guard case .object(var model) = root["model"] else { throw FixtureError("bad model") }
        for (k, v) in spec["model"]?.objectValue?.members ?? [] { model[k] = v }
        root["model"] = .object(model)
        root["added_tokens"] = .array((root["added_tokens"]?.arrayValue ?? []) + (spec["added"]?.arrayValue ?? []))
        return try Tokenizer(json: .object(root), path: name)
    }

    static var caseNames: [String] { cases["tokenizers"]?.objectValue?.keys ?? ["cases.json is missing"] }

    @Test("ids and decoded text equal HF tokenizers on every case", arguments: caseNames)
    func casesEqualHF(_ name: String) throws {
        let tokenizer = try Self.caseTokenizer(name)
        let texts = try #require(Self.cases["texts"]?.arrayValue).map { $0.stringValue ?? "" }
        let rows = try #require(Self.cases["results"]?[name]?.arrayValue)
        #expect(rows.count == texts.count)
        func ids(_ v: JSONValue?) -> [Int32] { (v?.arrayValue ?? []).map { Int32($0.intValue ?? -1) } }
        for (text, row) in zip(texts, rows) {
            let plain = tokenizer.encode(text)
            #expect(plain == ids(row["ids"]), "\(name): \(String(reflecting: text))")
            #expect(tokenizer.encode(text, addSpecialTokens: true) == ids(row["ids_special"]), "\(name) with special tokens: \(String(reflecting: text))")
            let reference = ids(row["ids"])
            #expect(tokenizer.decode(reference) == row["decoded"]?.stringValue, "\(name) decode: \(String(reflecting: text))")
            #expect(tokenizer.decode(reference, skipSpecialTokens: true) == row["decoded_skip"]?.stringValue,
                    "\(name) decode skipping specials: \(String(reflecting: text))")
        }
    }

    @Test("Byte-level round trips: decode(encode(x)) == x, whatever the Unicode", arguments: ["smollm2", "qwen2-llama3", "smollm2-digits-prefix"])
    func byteLevelRoundTrip(_ name: String) throws {
        let tokenizer = try Self.caseTokenizer(name)
        var texts = try #require(Self.cases["texts"]?.arrayValue).compactMap(\.stringValue)
        texts += ["\u{1F9D1}\u{200D}\u{1F4BB} \u{0301}lead mark", "\r\r\n\n\r", String(repeating: "\u{3000}", count: 5) + "end"]
        for text in texts {
            var expected = text
            if name == "smollm2-digits-prefix" { continue }  // add_prefix_space changes the text
            if name == "qwen2-llama3" { expected = String(decoding: Normalizer.nfc.apply(Array(text.utf8)), as: UTF8.self) }
            #expect(tokenizer.decode(tokenizer.encode(text)) == expected, "\(String(reflecting: text))")
        }
    }

    // MARK: - Hand-made vocabularies

    /// A byte-level tokenizer: the 256 byte characters (ids 0…255 in byte-table order) and a few merges.
    static func tinyByteLevel(ignoreMerges: Bool = false, extra: String = "") -> String {
        var vocab: [String] = ByteTable.charOfByte.map { String(Character(Unicode.Scalar($0)!)) }
        vocab += ["ab", "abc", "\u{120}a", "abcd", "<s>", "</s>"]
        let v = vocab.enumerated().map { "\(JSONValue.string($0.element).serialized()): \($0.offset)" }.joined(separator: ",")
        return """
        {"added_tokens": [{"id": 260, "content": "<s>", "special": true, "normalized": false},
                          {"id": 261, "content": "</s>", "special": true, "normalized": false}],
         "normalizer": null,
         "pre_tokenizer": {"type": "ByteLevel", "add_prefix_space": false, "use_regex": true},
         "post_processor": {"type": "TemplateProcessing", "single": [{"SpecialToken": {"id": "<s>", "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}}],
                            "special_tokens": {"<s>": {"id": "<s>", "ids": [260], "tokens": ["<s>"]}}},
         "decoder": {"type": "ByteLevel"},
         "model": {"type": "BPE", "ignore_merges": \(ignoreMerges), "vocab": {\(v)},
                   "merges": ["a b", ["ab", "c"], "\u{120} a"]\(extra)}}
        """
    }

    static func load(_ text: String, path: String = "test.json") throws(TokenizerError) -> Tokenizer {
        let json: JSONValue
        do { json = try JSONParser.parse(text, rejectDuplicateKeys: false) } catch { throw .malformedJSON(path: path, error) }
        return try Tokenizer(json: json, path: path)
    }

    @Test("Merges apply lowest rank first, leftmost first; ignore_merges takes a whole word from the vocabulary")
    func mergeOrderAndIgnoreMerges() throws {
        let t = try Self.load(Self.tinyByteLevel())
        // " abc": (a,b) rank 0 beats (Ġ,a) rank 2, then (ab,c) rank 1: Ġ + abc.
        #expect(t.encode("abc abc") == [257, t.id(of: "\u{120}")!, 257])
        #expect(t.encode(" abcd") == [t.id(of: "\u{120}")!, 257, t.id(of: "d")!])
        #expect(t.encode("abcd") == [257, t.id(of: "d")!])
        let ignoring = try Self.load(Self.tinyByteLevel(ignoreMerges: true))
        #expect(ignoring.encode("abcd") == [259])
        #expect(ignoring.encode("abcd abcd") == [259, t.id(of: "\u{120}")!, 257, t.id(of: "d")!])
        #expect(t.encode("aaa") == [t.id(of: "a")!, t.id(of: "a")!, t.id(of: "a")!])
    }

    @Test("Special tokens: matched first, added with addSpecialTokens, skipped on decode when asked")
    func specialTokens() throws {
        let t = try Self.load(Self.tinyByteLevel())
        #expect(t.encode("ab<s>ab</s>") == [256, 260, 256, 261])
        #expect(t.encode("ab", addSpecialTokens: true) == [260, 256])
        #expect(t.decode([260, 256, 261]) == "<s>ab</s>")
        #expect(t.decode([260, 256, 261], skipSpecialTokens: true) == "ab")
        #expect(t.bosTokenID == 260 && t.eosTokenID == nil)
        #expect(t.decode([9999, -1, 256]) == "ab")
        #expect(t.token(of: 256) == "ab" && t.id(of: "ab") == 256 && t.id(of: "nope") == nil && t.token(of: 100_000) == nil)
        #expect(t.vocabularySize == 262)
    }

    @Test("Empty text gives no ids; with special tokens only the template's")
    func emptyText() throws {
        let t = try Self.load(Self.tinyByteLevel())
        #expect(t.encode("").isEmpty)
        #expect(t.encode("", addSpecialTokens: true) == [260])
        #expect(t.decode([]) == "")
    }

    @Test("Byte-level decoding of an invalid byte sequence gives U+FFFD, as HF's lossy UTF-8 does")
    func invalidBytesDecode() throws {
        let t = try Self.load(Self.tinyByteLevel())
        let c3 = t.id(of: String(Character(Unicode.Scalar(ByteTable.charOfByte[0xC3])!)))!
        #expect(t.decode([c3, 256]) == "\u{FFFD}ab")
        #expect(t.decode(t.encode("é")) == "é")
    }

    @Test("tokenizer_config.json decides BOS/EOS and what addSpecialTokens adds")
    func directoryWithConfig() throws {
        let dir = "/tmp/qkit-tokenizer-test-\(getpid())"
        mkdir(dir, 0o755)
        defer { unlink(dir + "/tokenizer.json"); unlink(dir + "/tokenizer_config.json"); rmdir(dir) }
        func write(_ name: String, _ text: String) {
            let f = fopen(dir + "/" + name, "w")!
            fputs(text, f)
            fclose(f)
        }
        write("tokenizer.json", Self.tinyByteLevel())
        write("tokenizer_config.json", #"{"add_bos_token": false, "add_eos_token": true, "bos_token": {"content": "<s>"}, "eos_token": "</s>"}"#)
        let t = try Tokenizer(directory: dir)
        #expect(t.bosTokenID == 260 && t.eosTokenID == 261)
        #expect(t.encode("ab", addSpecialTokens: true) == [256, 261])
        write("tokenizer_config.json", #"{"eos_token": "</nope>"}"#)
        #expect(throws: TokenizerError.self) { try Tokenizer(directory: dir) }
        write("tokenizer_config.json", #"{"eos_token": "#)
        #expect(throws: TokenizerError.self) { try Tokenizer(directory: dir) }
        unlink(dir + "/tokenizer_config.json")
        #expect(try Tokenizer(directory: dir).encode("ab", addSpecialTokens: true) == [260, 256])
    }

    @Test("The pre-tokenizer scanners split exactly where the regexes do")
    func scannerSplits() throws {
        func pieces(_ p: SplitPattern, _ s: String) -> [String] {
            let b = Array(s.utf8)
            var out: [Range<Int>] = []
            b.withUnsafeBufferPointer { p.matches($0, 0, b.count, into: &out) }
            return out.map { String(decoding: b[$0], as: UTF8.self) }
        }
        #expect(pieces(.gpt2, "Hello  world\n\n  x 's") == ["Hello", " ", " world", "\n\n ", " x", " '", "s"])
        #expect(pieces(.gpt2, "it's  ") == ["it", "'s", "  "])
        #expect(pieces(.llama3(maxDigits: 3), "12345 I'LL\r\n\r\nok!!\n") == ["123", "45", " I", "'LL", "\r\n\r\n", "ok", "!!\n"])
        #expect(pieces(.llama3(maxDigits: 1), "ab12 \t\nx") == ["ab", "1", "2", " \t\n", "x"])
        #expect(pieces(.llama3(maxDigits: 3), "(x) \u{17F}'\u{17F}") == ["(x", ")", " \u{17F}", "'\u{17F}"])
    }

    @Test("The scanning merge loop (short words) gives the priority-queue loop's result")
    func mergeLoopsAgree() throws {
        let t = try TokenizerCorpusTests.tokenizer("llama-spm")
        var rng = SplitMix(seed: 11)
        let alphabet = Array("▁▁▁eeeaaattnnssrrllooii,.()=-\n0123é".unicodeScalars).compactMap { t.id(of: String($0)) } + [t.id(of: "<0xF0>")!]
        var scratch = BPEScratch()
        for _ in 0..<3000 {
            let n = 1 + Int(rng.next() % 60)
            let word = (0..<n).map { _ in alphabet[Int(rng.next() % UInt64(alphabet.count))] }
            var a = word, b = word
            t.model.mergeByScanning(&a)
            t.model.mergeWithQueue(&b, scratch: &scratch)
            #expect(a == b, "\(word)")
        }
    }

    @Test("NFC by stretches equals NFC of the whole text")
    func nfcByStretches() {
        for text in ["plain ascii", "e\u{301} cafe\u{301}s A\u{30A}\u{301}x", "\u{1100}\u{1161}\u{11A8} 한", "x\u{327}\u{301}\u{300}y",
                     "\u{301}leading mark", "ǅ\u{30C} Å Ω \u{FB01}", "mixed e\u{301}\u{1F600}e\u{302}\n\u{0F73}"] {
            #expect(Normalizer.nfc(Array(text.utf8)) == text._nfcCodeUnits, "\(String(reflecting: text))")
        }
    }

    // MARK: - Malformed and unsupported files

    @Test("Malformed tokenizer.json: a typed error naming the file, never a crash")
    func malformed() throws {
        let good = Self.tinyByteLevel()
        func error(_ text: String) -> TokenizerError? {
            do { _ = try Self.load(text, path: "bad.json"); return nil } catch { return error }
        }
        let invalid: [String] = [
            "[]", "{}", #"{"model": []}"#, #"{"model": {"type": "BPE", "vocab": [], "merges": []}}"#,
            #"{"model": {"type": "BPE", "vocab": {"a": 0}, "merges": ["a b"]}}"#,
            #"{"model": {"type": "BPE", "vocab": {"a": 0, "b": 1}, "merges": ["a b"]}}"#,
            #"{"model": {"type": "BPE", "vocab": {"a": 0}, "merges": [["a"]]}}"#,
            #"{"model": {"type": "BPE", "vocab": {"a": 0}, "merges": [1]}}"#,
            #"{"model": {"type": "BPE", "vocab": {"a": -1}, "merges": []}}"#,
            #"{"model": {"type": "BPE", "vocab": {"a": "0"}, "merges": []}}"#,
            #"{"model": {"type": "BPE", "vocab": {"a": 0}, "merges": [], "unk_token": "<unk>"}}"#,
            #"{"model": {"type": "BPE", "vocab": {"a": 0}, "merges": [], "byte_fallback": "yes"}}"#,
            #"{"model": {"type": "BPE", "vocab": {"a": 0}, "merges": []}, "added_tokens": [{"id": -3, "content": "x"}]}"#,
            #"{"model": {"type": "BPE", "vocab": {"a": 0}, "merges": []}, "added_tokens": {"id": 3}}"#,
            #"{"model": {"type": "BPE", "vocab": {"a": 0}, "merges": []}, "pre_tokenizer": {"type": "Split", "pattern": {}, "behavior": "Isolated"}}"#,
            #"{"model": {"type": "BPE", "vocab": {"a": 0}, "merges": []}, "pre_tokenizer": {"type": "Split", "pattern": {"String": "x"}, "behavior": "Sideways"}}"#,
            #"{"model": {"type": "BPE", "vocab": {"a": 0}, "merges": []}, "pre_tokenizer": 7}"#,
            #"{"model": {"type": "BPE", "vocab": {"a": 0}, "merges": []}, "post_processor": {"type": "TemplateProcessing", "single": [{"SpecialToken": {"id": "<s>"}}]}}"#,
            #"{"model": {"type": "BPE", "vocab": {"a": 0}, "merges": []}, "decoder": {"type": "Strip", "content": "", "start": 1, "stop": 0}}"#,
        ]
        for text in invalid {
            let e = error(text)
            guard case .invalid(let path, _)? = e else { Issue.record("expected invalid for \(text), got \(String(describing: e))"); continue }
            #expect(path == "bad.json" && e?.exitStatus == .dataError)
        }
        let unsupported: [(String, String)] = [
            (#"{"model": {"type": "Unigram", "vocab": []}}"#, "model type 'Unigram'"),
            (#"{"model": {"type": "WordPiece", "vocab": {}}}"#, "model type 'WordPiece'"),
            (#"{"model": {"type": "BPE", "vocab": {"a": 0}, "merges": []}, "normalizer": {"type": "NFKC"}}"#, "normalizer 'NFKC'"),
            (#"{"model": {"type": "BPE", "vocab": {"a": 0}, "merges": []}, "pre_tokenizer": {"type": "Whitespace"}}"#, "pre-tokenizer 'Whitespace'"),
            (#"{"model": {"type": "BPE", "vocab": {"a": 0}, "merges": []}, "pre_tokenizer": {"type": "Split", "pattern": {"Regex": "\\w+"}, "behavior": "Isolated"}}"#, #"Split regex '\w+'"#),
            (#"{"model": {"type": "BPE", "vocab": {"a": 0}, "merges": []}, "decoder": {"type": "WordPiece"}}"#, "decoder 'WordPiece'"),
            (#"{"model": {"type": "BPE", "vocab": {"a": 0}, "merges": [], "dropout": 0.1}}"#, "dropout"),
            ("{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0}, \"merges\": [], \"continuing_subword_prefix\": \"##\"}}", "continuing_subword_prefix"),
            (#"{"model": {"type": "BPE", "vocab": {"a": 0}, "merges": []}, "post_processor": {"type": "Weird"}}"#, "post-processor 'Weird'"),
            (#"{"model": {"type": "BPE", "vocab": {"a": 0}, "merges": []}, "pre_tokenizer": {"type": "Sequence", "pretokenizers": [{"type": "ByteLevel"}, {"type": "Digits"}]}}"#, "after ByteLevel"),
        ]
        for (text, needle) in unsupported {
            let e = error(text)
            guard case .unsupported(_, let what)? = e else { Issue.record("expected unsupported for \(text), got \(String(describing: e))"); continue }
            #expect(what.contains(needle), "\(what)")
            #expect(e?.exitStatus == .unavailable && e?.description.hasPrefix("unsupported tokenizer: ") == true)
        }
        // Truncations of a valid file: malformed JSON, never a crash.
        let bytes = Array(good.utf8)
        for cut in stride(from: 0, to: bytes.count, by: max(1, bytes.count / 97)) {
            guard case .malformedJSON? = error(String(decoding: bytes[..<cut], as: UTF8.self)) else {
                Issue.record("truncation at \(cut) was not refused as malformed JSON"); continue
            }
        }
        #expect(throws: TokenizerError.self) { try Tokenizer(path: "/nonexistent/tokenizer.json") }
        do { _ = try Tokenizer(path: "/nonexistent/tokenizer.json") } catch { #expect(error.exitStatus == .noInput && error.path == "/nonexistent/tokenizer.json") }
    }

    @Test("Random byte mutations of a valid file load or throw TokenizerError, and what loads encodes without crashing")
    func mutations() throws {
        var rng = SplitMix(seed: 7)
        let good = Array(Self.tinyByteLevel().utf8)
        var loaded = 0
        for _ in 0..<300 {
            var b = good
            for _ in 0..<(1 + Int(rng.next() % 4)) {
                let i = Int(rng.next() % UInt64(b.count))
                let choices: [UInt8] = Array("{}[]\",:0123456789-aZ \\".utf8) + [0xC3, 0xFF]
                b[i] = choices[Int(rng.next() % UInt64(choices.count))]
            }
            let json: JSONValue
            do { json = try JSONParser.parse(b, rejectDuplicateKeys: false) } catch { continue }
            do {
                let t = try Tokenizer(json: json, path: "mutated.json")
                loaded += 1
                for text in ["", "abc abcd", "<s>é😀\r\n 12", String(repeating: "ab ", count: 50)] {
                    _ = t.decode(t.encode(text, addSpecialTokens: true), skipSpecialTokens: true)
                }
            } catch {
                #expect(error.exitStatus == .dataError || error.exitStatus == .unavailable)
            }
        }
        #expect(loaded > 0)
    }
}
