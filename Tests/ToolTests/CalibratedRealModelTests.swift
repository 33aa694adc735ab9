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
}
