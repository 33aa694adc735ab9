import Foundation
import Testing

/// Where the imported models live during a test run (780 MB), removed when the test process exits.
private let smolLM2Directory = NSTemporaryDirectory() + "qkit-qeval-tests-\(getpid())"

/// SmolLM2-135M imported by the release `qpack` into f32 and bf16 directories (once per test run).
private let smolLM2: (f32: String, bf16: String)? = {
    let gguf = Tool.assets + "/gguf/SmolLM2-135M-Instruct.Q4_1.gguf"
    guard FileManager.default.fileExists(atPath: gguf) else { return nil }
    let dir = smolLM2Directory
    try? FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
    atexit { try? FileManager.default.removeItem(atPath: smolLM2Directory) }
    for dtype in ["f32", "bf16"] {
        let r = try? Tool.run("qpack", [gguf, "--to", "safetensors", "--dtype", dtype, "-o", dir + "/" + dtype], release: true)
        guard r?.status == 0 else { return nil }
    }
    return (dir + "/f32", dir + "/bf16")
}()

let tutorial = Tool.assets + "/corpora/pydoc-tutorial.txt"

func requireModel() throws -> (f32: String, bf16: String) {
    guard let m = smolLM2, FileManager.default.fileExists(atPath: tutorial) else {
        Issue.record("missing SmolLM2 GGUF or pydoc-tutorial.txt under \(Tool.assets), or the release build: run scripts/test.sh")
        throw CancellationError()
    }
    return m
}

func json(_ text: String) throws -> [String: Any] {
    try #require(JSONSerialization.jsonObject(with: Data(text.utf8)) as? [String: Any])
}

/// qeval runs from the release build: the forward pass is numeric code, tens of times slower in debug.
@Suite("qeval on the real model (release binaries)", .serialized)
struct QEvalToolTests {
    /// The ids transformers' tokenizer gives for the first 10240 tokens of the tutorial (Fixtures/*.ids, from
    /// the `tokenizers` package on the transformers conversion's tokenizer.json): the exact protocol of the
    /// reference, so only the forward pass is compared.
    @Test("on transformers' own ids, SmolLM2 f32 perplexity (20 × 512) is transformers' 14.183 within 0.01%")
    func referencePerplexityOnReferenceIDs() throws {
        let m = try requireModel()
        let ids = Tool.root + "/Tests/ToolTests/Fixtures/pydoc-tutorial-smollm2-hf-10240.ids"
        let r = try Tool.run("qeval", [m.f32, "--ids", ids, "--seqlen", "512", "--json"], release: true)
        #expect(r.status == 0, "\(r.stderr)")
        let ppl = try #require(try json(r.stdout)["perplexity"] as? Double)
        #expect(abs(ppl - 14.183) / 14.183 < 0.0001, "ppl \(ppl)")
    }

    /// From the text, with qkit's tokenizer of the imported GGUF (llama.cpp's `smollm` pre-tokenizer splits
    /// digits, which transformers' conversion drops: 68341 tokens instead of 68537), the protocol's 0.05%.
    @Test("perplexity of SmolLM2 f32 on 20 × 512 tokens of pydoc-tutorial is transformers' 14.183 within 0.05%")
    func referencePerplexity() throws {
        let m = try requireModel()
        let r = try Tool.run("qeval", [m.f32, "--data", tutorial, "--seqlen", "512", "--windows", "20", "--json"], release: true)
        #expect(r.status == 0, "\(r.stderr)")
        let o = try json(r.stdout)
        let ppl = try #require(o["perplexity"] as? Double)
        #expect(abs(ppl - 14.183) / 14.183 < 0.0005, "ppl \(ppl)")
        #expect(o["windows"] as? Int == 20 && o["seqlen"] as? Int == 512 && o["bos"] as? Bool == false)
        #expect(o["predicted_tokens"] as? Int == 20 * 511 && o["data_tokens"] as? Int == 68341)
        #expect(o["model_dtype"] as? String == "f32")
        #expect((o["data_xxh64"] as? String)?.count == 16 && (o["model_xxh64"] as? String)?.count == 16)
        let ci = try #require(o["perplexity_ci95"] as? [Double])
        #expect(ci[0] < ppl && ppl < ci[1])
        #expect((o["tokens_per_second"] as? Double ?? 0) > 0)
    }

    @Test("--ref: bf16 against f32 on the same windows: small KL, high agreement, and the same bytes on one core")
    func reference() throws {
        let m = try requireModel()
        let args = [m.bf16, "--ref", m.f32, "--data", tutorial, "--windows", "3", "--seqlen", "256", "--json"]
        let r = try Tool.run("qeval", args, release: true)
        #expect(r.status == 0, "\(r.stderr)")
        let o = try json(r.stdout)
        let ref = try #require(o["reference"] as? [String: Any])
        let kl = try #require(ref["kl_mean"] as? Double), top1 = try #require(ref["top1_agreement"] as? Double)
        #expect(kl > 0 && kl < 0.01, "KL \(kl)")
        #expect(top1 > 0.9 && top1 <= 1, "top-1 \(top1)")
        #expect((ref["kl_p99"] as? Double ?? -1) >= kl)
        let delta = try #require(ref["delta_perplexity"] as? Double)
        #expect(abs(delta) < 0.1 && o["model_dtype"] as? String == "bf16")
        // One core: the numbers are the same bytes.
        let one = try Tool.run("qeval", args, release: true, launcher: ["/usr/bin/taskset", "-c", "0"])
        let o1 = try json(one.stdout)
        #expect(o1["perplexity"] as? Double == o["perplexity"] as? Double)
        #expect((o1["reference"] as? [String: Any])?["kl_mean"] as? Double == kl)
    }

    @Test("--tokenize prints the ids --ids reads back: same perplexity as from the text")
    func tokenizeRoundTrip() throws {
        let m = try requireModel()
        let ids = try Tool.run("qeval", [m.f32, "--tokenize", tutorial], release: true)
        #expect(ids.status == 0)
        let list = ids.stdout.split(separator: " ")
        #expect(list.count == 68341 && ids.stdout.hasSuffix("\n") && !ids.stdout.dropLast().contains("\n"))
        let a = try Tool.run("qeval", [m.f32, "--ids", "-", "--windows", "2", "--seqlen", "128", "--json"],
                             stdin: Data(ids.stdout.utf8), release: true)
        let b = try Tool.run("qeval", [m.f32, "--data", tutorial, "--windows", "2", "--seqlen", "128", "--json"], release: true)
        #expect(a.status == 0 && b.status == 0)
        #expect(try json(a.stdout)["perplexity"] as? Double == json(b.stdout)["perplexity"] as? Double)
        #expect(try json(a.stdout)["data_kind"] as? String == "ids")
    }

    @Test("bad input: one line on stderr and a sysexits status")
    func errors() throws {
        let m = try requireModel()
        let dir = Tool.temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        func check(_ args: [String], _ status: Int32, _ needle: String, stdin: Data? = nil) throws {
            let r = try Tool.run("qeval", args, stdin: stdin, release: true)
            #expect(r.status == status, "\(args): \(r.status) \(r.stderr)")
            // Usage errors come from the argument parser (its message and the usage line); the rest are one line.
            let oneLine = status == 64 || (r.stderr.hasPrefix("qeval: ") && r.stderr.split(separator: "\n").count == 1)
            #expect(r.stderr.contains(needle) && oneLine, "\(args): \(r.stderr)")
            #expect(r.stdout.isEmpty)
        }
        try check([dir + "/none", "--data", tutorial], 66, "none")
        try check([m.f32, "--data", dir + "/none.txt"], 66, "none.txt")
        try check([m.f32, "--ids", "-"], 65, "'12x' is not a token id", stdin: Data("1 2 12x 3".utf8))
        try check([m.f32, "--ids", "-"], 65, "outside the vocabulary", stdin: Data("1 2 99999".utf8))
        try check([m.f32, "--ids", "-", "--seqlen", "16"], 65, "fewer than one window", stdin: Data("1 2 3".utf8))
        try check([m.f32, "--seqlen", "1", "--data", tutorial], 64, "--seqlen")
        try check([m.f32], 64, "--data")
        // Another family: refused, naming what qkit runs.
        try FileManager.default.createDirectory(atPath: dir + "/gemma", withIntermediateDirectories: true)
        try FileManager.default.copyItem(atPath: m.f32 + "/model.safetensors", toPath: dir + "/gemma/model.safetensors")
        let config = try String(contentsOfFile: m.f32 + "/config.json", encoding: .utf8)
            .replacingOccurrences(of: "\"llama\"", with: "\"gemma2\"")
        try config.write(toFile: dir + "/gemma/config.json", atomically: true, encoding: .utf8)
        try check([dir + "/gemma", "--data", tutorial], 69, "model_type 'gemma2' is not supported (qkit runs llama, mistral, qwen2, qwen3)")
        // No tokenizer.json: said so.
        try FileManager.default.createDirectory(atPath: dir + "/notok", withIntermediateDirectories: true)
        for f in ["model.safetensors", "config.json"] {
            try FileManager.default.copyItem(atPath: m.f32 + "/" + f, toPath: dir + "/notok/" + f)
        }
        let r = try Tool.run("qeval", [dir + "/notok", "--data", tutorial], release: true)
        #expect(r.status != 0 && r.stderr.contains("tokenizer.json"), "\(r.stderr)")
    }
}
