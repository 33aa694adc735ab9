import Testing
@testable import Common

/// Whole-corpus equality with Hugging Face `tokenizers`: token count and FNV-1a hash of the id stream of every
/// pydoc corpus (Fixtures/tokenizer/references.json), and the full id stream of pydoc-tutorial.txt where one is
/// committed. Debug builds check the three smallest corpora plus the tutorial (about 0.55 MB a tokenizer);
/// release builds (`swift test -c release`) and `qbench tokenize` check all six (7.9 MB).
@Suite("Tokenizer: whole corpora equal HF tokenizers")
struct TokenizerCorpusTests {
    static let references: JSONValue = {
        (try? JSONParser.parse(TokenizerFixtures.read(TokenizerFixtures.directory + "/references.json"))) ?? .null
    }()

    #if DEBUG
    static let corpora = ["pydoc-LICENSE.txt", "pydoc-faq.txt", "pydoc-tutorial.txt"]
    #else
    static let corpora = ["pydoc-LICENSE.txt", "pydoc-faq.txt", "pydoc-howto.txt", "pydoc-library.txt", "pydoc-reference.txt", "pydoc-tutorial.txt"]
    #endif

    static func tokenizer(_ name: String) throws -> Tokenizer {
        let json: JSONValue
        switch name {
        case "smollm2-qkit": json = try TokenizerFixtures.smolLM2FromGGUF()
        case "qwen2-llama3": json = try TokenizerFixtures.llama3Variant(of: try TokenizerFixtures.json("qwen2"))
        default: json = try TokenizerFixtures.json(name)
        }
        return try Tokenizer(json: json, path: name)
    }

    /// smollm2-qkit: qkit's own GGUF import (Digits + ByteLevel, as llama.cpp's `smollm`); smollm2-transformers:
    /// transformers' conversion (plain ByteLevel); llama-spm: Llama-2 SentencePiece BPE (Prepend/Replace, byte
    /// fallback); qwen2: NFC + Qwen2 Split regex; llama3: the Llama-3 vocabulary with Llama-3's Split regex and
    /// ignore_merges.
    @Test(arguments: ["smollm2-qkit", "smollm2-transformers", "llama-spm", "qwen2", "llama3"])
    func corpusEqualsReference(_ name: String) throws {
        let tokenizer = try Self.tokenizer(name)
        let refs = try #require(Self.references[name], "no references for \(name) in references.json")
        for corpus in Self.corpora {
            let path = TokenizerFixtures.assets + "/corpora/" + corpus
            try TokenizerFixtures.requireAsset(path)
            let text = String(decoding: try TokenizerFixtures.read(path), as: UTF8.self)
            let ids = tokenizer.encode(text)
            let ref = try #require(refs[corpus], "no reference for \(name) on \(corpus)")
            #expect(ref["bytes"]?.intValue == text.utf8.count, "\(corpus) is not the text the references were made from")
            #expect(ids.count == ref["tokens"]?.intValue, "\(name) on \(corpus): \(ids.count) tokens, HF \(ref["tokens"]?.intValue ?? -1)")
            #expect(TokenizerFixtures.fnv1a64(ids) == ref["fnv1a64"]?.stringValue, "\(name) on \(corpus): ids differ from HF")
            if corpus == "pydoc-tutorial.txt", name == "smollm2-qkit" || name == "llama-spm" {
                let reference = try TokenizerFixtures.ids("\(name).tutorial.ids.gz")
                if let report = TokenizerFixtures.firstDifference(ids, reference, tokenizer) {
                    Issue.record("\(name) on \(corpus): \(report)")
                }
            }
        }
    }

    @Test("Decoding the tutorial's ids gives the tutorial back (byte-level and SentencePiece)", arguments: ["smollm2-transformers", "llama-spm"])
    func corpusRoundTrip(_ name: String) throws {
        let tokenizer = try Self.tokenizer(name)
        let path = TokenizerFixtures.assets + "/corpora/pydoc-tutorial.txt"
        try TokenizerFixtures.requireAsset(path)
        let text = String(decoding: try TokenizerFixtures.read(path), as: UTF8.self)
        #expect(tokenizer.decode(tokenizer.encode(text)) == text)
    }

    @Test("Encoding on all cores gives the ids of one core")
    func parallelEqualsSerial() throws {
        let tokenizer = try Self.tokenizer("smollm2-transformers")
        let path = TokenizerFixtures.assets + "/corpora/pydoc-tutorial.txt"
        try TokenizerFixtures.requireAsset(path)
        let text = String(decoding: try TokenizerFixtures.read(path), as: UTF8.self)
        var bytes = Array(text.utf8)
        var serial: [Int32] = []
        let p = PreTokenizer.sequence([tokenizer.preTokenizer!]).apply(Pieces(bytes: bytes, atOrigin: true))
        var scratch = BPEScratch()
        p.bytes.withUnsafeBufferPointer { b in
            for r in p.ranges { tokenizer.model.encode(UnsafeBufferPointer(rebasing: b[r]), into: &serial, scratch: &scratch) }
        }
        #expect(p.ranges.count >= Tokenizer.parallelPieces)
        #expect(tokenizer.encode(text) == serial)
        bytes.removeAll()
    }
}
