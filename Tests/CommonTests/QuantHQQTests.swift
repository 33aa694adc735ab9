#if canImport(Glibc)
import Glibc
#endif
import Testing
@testable import Common

/// HQQ on real SmolLM2-135M matrices against the hqq package's errors (Fixtures/quant/hqq-reference.json,
/// written by Tests/peer-checks/quant_hqq_check.py). Missing assets fail the test.
@Suite("HQQ against the hqq package")
struct QuantHQQTests {
    static let assets = (getenvString("QKIT_ASSETS") ?? ((getenvString("HOME") ?? "/root") + "/.cache/qkit-assets")) + "/smollm2-135m"

    /// Mean |W − Ŵ| of our HQQ on a matrix.
    static func hqqError(_ w: [Float], n: Int, k: Int, bits: Int, group: Int) -> (error: Double, reported: Double) {
        var codes = [UInt8](repeating: 0, count: n * k)
        var params = [GroupCodec.Parameters](repeating: .init(scale: 0, storedScale: 0, zero: 0), count: n * k / group)
        let reported = w.withUnsafeBufferPointer { wb in
            codes.withUnsafeMutableBufferPointer { cb in
                params.withUnsafeMutableBufferPointer { pb in
                    HQQ.quantize(wb.baseAddress!, n: n, k: k, groupLength: group, bits: bits, codes: cb.baseAddress!, parameters: pb.baseAddress!)
                }
            }
        }
        let codec = GroupCodec(scheme: QuantScheme(format: .int(bits: bits), granularity: .group(group), symmetric: false, algorithm: .hqq))
        var back = [Float](repeating: 0, count: n * k)
        codes.withUnsafeBufferPointer { c in
            back.withUnsafeMutableBufferPointer { b in
                for g in 0..<(n * k / group) { codec.decode(c.baseAddress! + g * group, count: group, params[g], into: b.baseAddress! + g * group) }
            }
        }
        var sum = 0.0
        for i in 0..<(n * k) { sum += Double(abs(w[i] - back[i])) }
        return (sum / Double(n * k), reported)
    }

    @Test("mean |W − Ŵ| within 1% of hqq's (or better), and never above RTN's")
    func againstPackage() throws {
        guard fileExists(Self.assets + "/model.safetensors") else {
            Issue.record("missing \(Self.assets)/model.safetensors: run scripts/fetch-assets.sh")
            return
        }
        let here = "\(#filePath)"
        let doc = try JSONParser.parse(try readSmallFile(String(here[..<here.lastIndex(of: "/")!]) + "/Fixtures/quant/hqq-reference.json"))
        let source = try CheckpointWeights(path: Self.assets)
        var checked = 0
        for row in try #require(doc["rows"]?.arrayValue) {
            let name = row["tensor"]!.stringValue!, bits = row["bits"]!.intValue!, group = row["group"]!.intValue!
            // Debug builds are slow: the two smaller matrices here; `qbench quant-hqq` runs every row in release.
            guard name.contains("q_proj") || name.contains("k_proj"), group != 128 else { continue }
            let (w, shape) = try source.float32(name)
            let ours = Self.hqqError(w, n: shape[0], k: shape[1], bits: bits, group: group)
            let theirs = row["hqq_mean_abs_error"]!.doubleValue!, rtn = row["rtn_mean_abs_error"]!.doubleValue!
            #expect(ours.error <= theirs * 1.01, "\(name) int\(bits) g\(group): \(ours.error) vs hqq \(theirs)")
            // The solver keeps its best iterate, so it is never worse than its min/max start (RTN).
            #expect(ours.error <= rtn * (1 + 1e-6), "\(name) int\(bits) g\(group): \(ours.error) vs RTN \(rtn)")
            #expect(abs(ours.reported - ours.error) <= 1e-3 * ours.error)
            checked += 1
        }
        #expect(checked == 6)
    }
}

/// An environment variable.
func getenvString(_ name: String) -> String? { getenv(name).map { String(cString: $0) } }
