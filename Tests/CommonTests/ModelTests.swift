import Testing
@testable import Common

/// Directory of the model fixtures (Tests/peer-checks/model_reference.py writes them with transformers).
func modelFixtureDirectory() -> String {
    let here = "\(#filePath)"
    return String(here[..<here.lastIndex(of: "/")!]) + "/Fixtures/model"
}

/// Largest |ours − theirs| relative to the largest |theirs|.
func maxRelativeError(_ ours: [Float], _ reference: [Float]) -> Float {
    precondition(ours.count == reference.count)
    var err: Float = 0, scale: Float = 0
    for i in ours.indices {
        err = max(err, abs(ours[i] - reference[i]))
        scale = max(scale, abs(reference[i]))
    }
    return err / scale
}

@Suite("Decoder forward pass against transformers")
struct ModelTests {
    static let families = ["llama3", "llama-linear", "llama-dynamic", "qwen2", "qwen3", "mistral"]

    @Test("logits of the tiny random models equal transformers f32 within 1e-4", arguments: families)
    func tinyLogits(family: String) throws {
        let dir = modelFixtureDirectory() + "/" + family
        let model = try DecoderModel(path: dir)
        let reference = try CheckpointWeights(path: dir + "/reference.safetensors")
        let ids = try reference.checkpoint.data(reference.checkpoint["input_ids"]!).withMemoryRebound(to: Int32.self) { Array($0) }
        let expected = try reference.float32("logits").values
        let sequences = [Array(ids[0..<40]), Array(ids[40..<80])]
        let logits = try model.logits(sequences)
        #expect(logits.rows == 80 && logits.columns == 320)
        let err = maxRelativeError(logits.array, expected)
        #expect(err < 1e-4, "\(family): max relative error \(err)")
        // The same sequences one at a time give the same values bit for bit (no cross-sequence leakage).
        let single = try model.logits([sequences[1]])
        let alone = maxRelativeError(single.array, Array(logits.array[(40 * 320)...]))
        #expect(alone < 1e-6, "\(family): sequence 2 alone differs from sequence 2 in a batch by \(alone)")
    }

    @Test("configuration of each family switches the right features on")
    func configurations() throws {
        func config(_ f: String) throws -> DecoderConfig { try DecoderModel(path: modelFixtureDirectory() + "/" + f).config }
        #expect(try config("qwen2").attentionBias && !config("qwen2").outputBias && !config("qwen2").tiedEmbeddings)
        #expect(try config("qwen3").qkNorm && config("qwen3").headDim == 16)
        #expect(try config("mistral").slidingWindow == [8, 8])
        #expect(try config("llama3").rope.kind == .llama3 && config("llama3").tiedEmbeddings)
        #expect(try config("llama-linear").headDim == 32)
    }

    @Test("rope_scaling and rope_parameters set to null mean plain RoPE (what qsynth and older exporters write)")
    func nullRopeScaling() throws {
        let text = try String(decoding: readSmallFile(modelFixtureDirectory() + "/qwen2/config.json"), as: UTF8.self)
        guard case .object(var o) = try JSONParser.parse(text) else { Issue.record("config is not an object"); return }
        let theta = o["rope_parameters"]?["rope_theta"]?.doubleValue ?? o["rope_theta"]?.doubleValue ?? 10000
        o["rope_parameters"] = .null
        o["rope_scaling"] = .null
        o["rope_theta"] = .double(theta)
        let c = try Architectures.configuration(json: .object(o), path: "m")
        #expect(c.rope.kind == .standard && Double(c.rope.theta) == theta)
    }

    @Test("unsupported families and features are refused, naming what is missing")
    func refusals() throws {
        func check(_ json: String, _ expected: String) {
            do {
                _ = try Architectures.configuration(json: try JSONParser.parse(json), path: "m")
                Issue.record("accepted \(json)")
            } catch let e as ModelError {
                #expect(e.description.contains(expected), "\(e.description)")
            } catch { Issue.record("\(error)") }
        }
        let base = #""hidden_size": 64, "intermediate_size": 96, "num_hidden_layers": 2, "num_attention_heads": 4, "vocab_size": 10"#
        check(#"{"model_type": "gemma2", \#(base)}"#, "model_type 'gemma2' is not supported (qkit runs llama, mistral, qwen2, qwen3)")
        check(#"{"model_type": "llama", \#(base), "rope_scaling": {"rope_type": "yarn", "factor": 4}}"#, "rope_type 'yarn'")
        check(#"{"model_type": "llama", \#(base), "hidden_act": "gelu"}"#, "hidden_act 'gelu'")
        check(#"{"model_type": "llama", \#(base), "num_key_value_heads": 3}"#, "does not divide")
        check(#"{"model_type": "llama", "hidden_size": 64}"#, "num_attention_heads: missing")
        check(#"{"model_type": "llama", "hidden_size": 64, "intermediate_size": 96, "num_hidden_layers": -1, "num_attention_heads": 4, "vocab_size": 10}"#, "num_hidden_layers: not a positive integer")
        check(#"{"hidden_size": 64}"#, "model_type: missing")
    }

    /// SmolLM2-135M imported from the GGUF by qkit (bit-exact with transformers' conversion) against the
    /// logits transformers computes on the first 128 tokens of pydoc-tutorial.txt (smollm2-reference.safetensors).
    @Test("SmolLM2-135M logits equal transformers f32 within 1e-4")
    func smolLM2() throws {
        let gguf = testAssets() + "/gguf/SmolLM2-135M-Instruct.Q4_1.gguf"
        guard fileExists(gguf) else {
            Issue.record("missing test asset \(gguf): run scripts/fetch-assets.sh (or set QKIT_ASSETS)")
            return
        }
        let dir = ggufTemporaryDirectory("smol-model")
        defer { removeTree(dir) }
        try GGUFImport.run(gguf: gguf, output: dir, dtype: .f32, maxShardSize: nil)
        let model = try DecoderModel(path: dir)
        let ref = try CheckpointWeights(path: modelFixtureDirectory() + "/smollm2-reference.safetensors")
        func ints(_ n: String) throws -> [Int32] { try ref.float32(n).values.map { Int32($0) } }
        let ids = try ref.checkpoint.data(ref.checkpoint["input_ids"]!).withMemoryRebound(to: Int32.self) { Array($0) }
        let logits = try model.logits([ids])
        let v = model.config.vocabularySize
        let columns = try ref.checkpoint.data(ref.checkpoint["columns"]!).withMemoryRebound(to: Int32.self) { Array($0) }
        let columnLogits = try ref.float32("column_logits").values
        let topIDs = try ref.checkpoint.data(ref.checkpoint["top_ids"]!).withMemoryRebound(to: Int32.self) { Array($0) }
        let topLogits = try ref.float32("top_logits").values, lse = try ref.float32("logsumexp").values
        let nll = try ref.float32("nll").values
        var ours: [Float] = [], theirs: [Float] = [], ourNLL: [Float] = [], topAgree = 0
        for t in 0..<ids.count {
            let row = Array(UnsafeBufferPointer(start: logits.row(t), count: v))
            for (j, c) in columns.enumerated() { ours.append(row[Int(c)]); theirs.append(columnLogits[t * columns.count + j]) }
            for j in 0..<5 { ours.append(row[Int(topIDs[t * 5 + j])]); theirs.append(topLogits[t * 5 + j]) }
            let m = row.max()!
            let ourLSE = m + Float(log(row.reduce(0.0) { $0 + Double(Foundation_exp(Double($1 - m))) }))
            ours.append(ourLSE); theirs.append(lse[t])
            if t + 1 < ids.count { ourNLL.append(ourLSE - row[Int(ids[t + 1])]) }
            if row.firstIndex(of: m)! == Int(topIDs[t * 5]) { topAgree += 1 }
        }
        let err = maxRelativeError(ours, theirs)
        #expect(err < 1e-4, "max relative error \(err)")
        #expect(maxRelativeError(ourNLL, nll) < 1e-4)
        #expect(topAgree == ids.count)
    }

    @Test("the exp kernel is accurate to 3e-7 relative over the softmax range")
    func expAccuracy() {
        var worst: Double = 0
        var x: Float = -87
        while x < 88 {
            let ours = Double(Kernels.exp(SIMD8<Float>(repeating: x))[0]), exact = Foundation_exp(Double(x))
            worst = max(worst, abs(ours - exact) / exact)
            x += 0.0137
        }
        #expect(worst < 3e-7, "worst relative error \(worst)")
        #expect(Kernels.exp(SIMD8<Float>(repeating: -100))[0] == 0)
        #expect(Kernels.exp(SIMD8<Float>(repeating: 0))[0] == 1)
    }
}

#if canImport(Glibc)
import Glibc
private func Foundation_exp(_ x: Double) -> Double { Glibc.exp(x) }
private func log(_ x: Double) -> Double { Glibc.log(x) }
#endif

/// The real-model assets directory ($QKIT_ASSETS or ~/.cache/qkit-assets).
func testAssets() -> String {
    getenv("QKIT_ASSETS").map { String(cString: $0) } ?? (String(cString: getenv("HOME")) + "/.cache/qkit-assets")
}
