import Testing
@testable import Common
#if canImport(Glibc)
import Glibc
#endif

private func temporaryDirectory(_ tag: String) -> String {
    var template = Array("/tmp/qkit-synth-\(tag)-XXXXXX".utf8CString)
    let p = template.withUnsafeMutableBufferPointer { mkdtemp($0.baseAddress!) }
    return String(cString: p!)
}

private func fileBytes(_ path: String) throws -> [UInt8] { try readSmallFile(path) }

@Suite struct SyntheticCheckpointTests {
    @Test func tinyReadsBack() throws {
        let dir = temporaryDirectory("tiny")
        defer { removeTree(dir) }
        let out = dir + "/model"
        let config = SyntheticModelConfig.tiny
        try SyntheticCheckpoint.write(config: config, to: out)
        #expect(listDirectory(out) == ["config.json", "generation_config.json", "model.safetensors"])

        let json = try JSONParser.parse(try fileBytes(out + "/config.json"))
        #expect(json["model_type"]?.stringValue == "llama")
        #expect(json["architectures"]?.arrayValue?.first?.stringValue == "LlamaForCausalLM")
        #expect(json["hidden_size"]?.intValue == 256)
        #expect(json["intermediate_size"]?.intValue == 704)
        #expect(json["num_hidden_layers"]?.intValue == 2)
        #expect(json["num_attention_heads"]?.intValue == 4)
        #expect(json["num_key_value_heads"]?.intValue == 2)
        #expect(json["vocab_size"]?.intValue == 1024)
        #expect(json["tie_word_embeddings"]?.boolValue == false)
        #expect(json["torch_dtype"]?.stringValue == "bfloat16")

        let f = try SafetensorsFile(path: out + "/model.safetensors")
        let expected = config.tensors
        #expect(f.tensors.count == expected.count)
        #expect(Set(f.tensors.map(\.name)) == Set(expected.map(\.name)))
        for spec in expected {
            guard let t = f.tensors.first(where: { $0.name == spec.name }) else { continue }
            #expect(t.dtype == .bf16 && t.shape == spec.shape, "\(spec.name)")
        }
        #expect(f.tensors.first { $0.name == "model.layers.1.self_attn.k_proj.weight" }?.shape == [128, 256])
        #expect(f.tensors.first { $0.name == "lm_head.weight" }?.shape == [1024, 256])
        #expect(f.tensors.contains { $0.name.hasSuffix(".bias") } == false)

        // Values: the stored bf16 are the generator's floats rounded, norms near 1, linears small with outlier columns.
        let down = f.tensors.first { $0.name == "model.layers.0.mlp.down_proj.weight" }!
        var w = [Float](repeating: 0, count: down.elementCount)
        w.withUnsafeMutableBufferPointer { Conversion.decode(.bf16, f.data(down), into: $0) }
        let ref = SyntheticCheckpoint.values(config: config, tensor: down.name, range: 0..<down.elementCount)!
        #expect(w == ref.map { Conversion.float(fromBFloat16Bits: Conversion.bfloat16Bits($0)) })
        let cols = down.shape[1]
        var colMax = [Float](repeating: 0, count: cols)
        for (i, v) in w.enumerated() { colMax[i % cols] = max(colMax[i % cols], abs(v)) }
        let sorted = colMax.sorted()
        #expect(sorted.last! > 10 * sorted[cols / 2], "outlier input channels")
        let typical = w.enumerated().filter { colMax[$0.offset % cols] < 4 * sorted[cols / 2] }.map(\.element)
        let std = (typical.reduce(0) { $0 + $1 * $1 } / Float(typical.count)).squareRoot()
        #expect(std > 0.015 && std < 0.025, "std of ordinary channels \(std)")
        let norm = f.tensors.first { $0.name == "model.norm.weight" }!
        var nv = [Float](repeating: 0, count: norm.elementCount)
        nv.withUnsafeMutableBufferPointer { Conversion.decode(.bf16, f.data(norm), into: $0) }
        let mean = nv.reduce(0, +) / Float(nv.count)
        #expect(abs(mean - 1) < 0.02 && nv.allSatisfy { $0 > 0.5 && $0 < 1.5 })
    }

    @Test func deterministicWhateverTheThreads() throws {
        let dir = temporaryDirectory("det")
        defer { removeTree(dir) }
        var config = SyntheticModelConfig(family: .llama, hidden: 128, intermediate: 256, layers: 1, heads: 2, kvHeads: 1,
                                          vocab: 512, tiedEmbeddings: false, dtype: .f16, seed: 7)
        try SyntheticCheckpoint.write(config: config, to: dir + "/a", threads: 1)
        try SyntheticCheckpoint.write(config: config, to: dir + "/b", threads: 3)
        #expect(try fileBytes(dir + "/a/model.safetensors") == fileBytes(dir + "/b/model.safetensors"))
        #expect(try fileBytes(dir + "/a/config.json") == fileBytes(dir + "/b/config.json"))
        config.seed = 8
        try SyntheticCheckpoint.write(config: config, to: dir + "/c")
        #expect(try fileBytes(dir + "/a/model.safetensors") != fileBytes(dir + "/c/model.safetensors"))
    }

    @Test func shardedQwen2HasIndexCoveringEveryTensor() throws {
        let dir = temporaryDirectory("shard")
        defer { removeTree(dir) }
        let out = dir + "/q"
        let config = SyntheticModelConfig.qwen2Tiny
        try SyntheticCheckpoint.write(config: config, to: out, maxShardSize: 1_000_000)
        let files = listDirectory(out)
        let shards = files.filter { $0.hasSuffix(".safetensors") }
        #expect(shards.count > 1)
        #expect(files.contains("model.safetensors.index.json"))
        let index = try JSONParser.parse(try fileBytes(out + "/model.safetensors.index.json"))
        guard let map = index["weight_map"]?.objectValue else { Issue.record("no weight_map"); return }
        var seen: [String: String] = [:]
        var total = 0
        for shard in shards {
            let f = try SafetensorsFile(path: out + "/" + shard)
            for t in f.tensors {
                seen[t.name] = shard
                total += t.byteCount
            }
        }
        #expect(Set(map.keys) == Set(config.tensors.map(\.name)))
        #expect(map.members.allSatisfy { seen[$0.key] == $0.value.stringValue })
        #expect(index["metadata"]?["total_size"]?.intValue == total)
        // Qwen2 layout: q/k/v biases, tied embeddings (no lm_head).
        #expect(map["model.layers.0.self_attn.q_proj.bias"] != nil && map["model.layers.1.self_attn.v_proj.bias"] != nil)
        #expect(map["lm_head.weight"] == nil)
        let json = try JSONParser.parse(try fileBytes(out + "/config.json"))
        #expect(json["model_type"]?.stringValue == "qwen2" && json["tie_word_embeddings"]?.boolValue == true)
    }

    @Test func presetsAndValidation() {
        #expect(SyntheticModelConfig.llama8B.parameterCount == 8_030_261_248)
        #expect(SyntheticModelConfig.preset("llama8b") == .llama8B)
        var bad = SyntheticModelConfig.tiny
        bad.heads = 3
        #expect(bad.problem != nil)
        #expect(throws: SyntheticError.self) { try SyntheticCheckpoint.write(config: bad, to: "/tmp/qkit-never-written") }
        #expect(!fileExists("/tmp/qkit-never-written"))
    }
}
