import Common
import Foundation
import Testing

/// Calibrated quantization of SmolLM2-135M (imported from the GGUF by the release qpack) with the release
/// binaries: small calibration sets, so it fits the test budget; the README's table has the full protocol.
@Suite("qquant awq/gptq on the real model (release binaries)", .serialized)
struct CalibratedRealModelTests {
    static let howto = Tool.assets + "/corpora/pydoc-howto.txt"

    func perplexity(_ model: String) throws -> Double {
        let r = try Tool.run("qeval", [model, "--data", tutorial, "--seqlen", "512", "--windows", "4", "--json", "-q"], release: true)
        #expect(r.status == 0, "\(r.stderr)")
        return try json(r.stdout)["perplexity"] as? Double ?? .nan
    }

    @Test("int3 g64: gptq and awq give a lower perplexity than rtn of the same scheme")
    func calibratedBeatRTN() throws {
        let m = try requireModel()
        let dir = Tool.temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let data = ["--data", Self.howto, "--samples", "8", "--seqlen", "256", "--sampling", "first", "-q"]
        for (name, args) in [("rtn-sym", ["--wbits", "3", "--group", "64"]), ("rtn-asym", ["--wbits", "3", "--group", "64", "--asym"]),
                             ("gptq", ["--algo", "gptq", "--wbits", "3", "--group", "64", "--act-order"] + data),
                             ("awq", ["--algo", "awq", "--wbits", "3", "--group", "64"] + data)] {
            let r = try Tool.run("qquant", [m.f32] + args + ["-o", dir + "/" + name], release: true)
            #expect(r.status == 0, "\(name): \(r.stderr)")
        }
        let rtnSym = try perplexity(dir + "/rtn-sym"), rtnAsym = try perplexity(dir + "/rtn-asym")
        let gptq = try perplexity(dir + "/gptq"), awq = try perplexity(dir + "/awq")
        #expect(gptq < rtnSym, "gptq \(gptq) vs rtn \(rtnSym)")
        #expect(awq < rtnAsym, "awq \(awq) vs rtn \(rtnAsym)")
        let config = try String(contentsOfFile: dir + "/gptq/config.json", encoding: .utf8)
        #expect(config.contains("\"act_order\": \"static\"") && config.contains("\"samples\": 8"))
    }

    @Test("--chat: each line and JSONL record is rendered through the model's chat template before tokenizing")
    func chatCalibration() throws {
        let m = try requireModel()
        let dir = Tool.temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let text = "{\"prompt\": \"Explain decorators.\", \"completion\": \"A decorator wraps a function.\"}\n{\"title\": 1}\n"
        try text.write(toFile: dir + "/chat.jsonl", atomically: true, encoding: .utf8)
        let model = try DecoderModel(path: m.bf16)
        var request = CalibrationDataRequest(data: dir + "/chat.jsonl")
        request.chat = true
        request.samples = 1
        request.sequenceLength = 8
        request.sampling = .first
        // A JSONL record without a usable field is refused, naming its line.
        #expect { try CalibrationData.load(request, model: model) } throws: { "\($0)".contains("2") }
        try "How do I sort a list?\nWhat is a generator?\n".write(toFile: dir + "/chat.txt", atomically: true, encoding: .utf8)
        request.data = dir + "/chat.txt"
        let data = try CalibrationData.load(request, model: model)
        let tokenizer = try Tokenizer(directory: m.bf16)
        let template = try ChatTemplate.load(modelDirectory: m.bf16)
        let expected = try template.render(messages: [["role": "user", "content": "How do I sort a list?"]], addGenerationPrompt: true)
        #expect(expected.hasPrefix("<|im_start|>"))
        #expect(data.sequences[0] == Array(tokenizer.encode(expected, addSpecialTokens: false).prefix(8)))
        let r = try Tool.run("qcalib", [m.bf16, "--data", dir + "/chat.txt", "--chat", "--samples", "2", "--seqlen", "16", "-o", dir + "/s.safetensors", "-q"],
                             release: true)
        #expect(r.status == 0, "\(r.stderr)")
        let stats = try Checkpoint(path: dir + "/s.safetensors")
        #expect(stats.safetensorsMetadata[0]!.contains { $0.key == "data" && $0.value == "text, chat template" })
    }
}
