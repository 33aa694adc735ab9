import CZlib
import Testing
#if canImport(Glibc)
import Glibc
#endif
@testable import Common

/// Fixtures of the tokenizer tests (Fixtures/tokenizer, made by Tests/peer-checks/tokenizer_fixtures.py and
/// tokenizer_cases.py) and the real assets they are checked on.
enum TokenizerFixtures {
    static var directory: String {
        let here = "\(#filePath)"
        return String(here[..<here.lastIndex(of: "/")!]) + "/Fixtures/tokenizer"
    }

    static var assets: String {
        getenv("QKIT_ASSETS").map { String(cString: $0) } ?? (String(cString: getenv("HOME")) + "/.cache/qkit-assets")
    }

    /// The whole file at `path`.
    static func read(_ path: String) throws -> [UInt8] {
        let f = try MappedFile(path: path)
        return Array(f.bytes)
    }

    /// The decompressed content of a gzip file.
    static func gunzip(_ path: String) throws -> [UInt8] {
        let input = try read(path)
        var out = [UInt8]()
        var stream = z_stream()
        guard inflateInit2_(&stream, 16 + 15, zlibVersion(), Int32(MemoryLayout<z_stream>.size)) == Z_OK else {
            throw FixtureError("inflateInit2 failed for \(path)")
        }
        defer { inflateEnd(&stream) }
        var chunk = [UInt8](repeating: 0, count: 1 << 20)
        var status: Int32 = Z_OK
        try input.withUnsafeBufferPointer { inp in
            stream.next_in = UnsafeMutablePointer(mutating: inp.baseAddress)
            stream.avail_in = UInt32(inp.count)
            repeat {
                try chunk.withUnsafeMutableBufferPointer { c in
                    stream.next_out = c.baseAddress
                    stream.avail_out = UInt32(c.count)
                    status = inflate(&stream, Z_NO_FLUSH)
                    guard status == Z_OK || status == Z_STREAM_END else { throw FixtureError("corrupt gzip \(path) (zlib \(status))") }
                    out.append(contentsOf: c[0..<(c.count - Int(stream.avail_out))])
                }
            } while status != Z_STREAM_END
        }
        return out
    }

    /// A committed tokenizer (`NAME.tokenizer.json.gz`), parsed.
    static func json(_ name: String) throws -> JSONValue {
        try JSONParser.parse(try gunzip(directory + "/\(name).tokenizer.json.gz"), rejectDuplicateKeys: false)
    }

    /// The ids of a committed `.ids.gz` file (u32 little-endian).
    static func ids(_ name: String) throws -> [Int32] {
        let b = try gunzip(directory + "/\(name)")
        var out = [Int32]()
        out.reserveCapacity(b.count / 4)
        for k in stride(from: 0, to: b.count - 3, by: 4) {
            let lo = UInt32(b[k]) | UInt32(b[k + 1]) << 8
            let hi = UInt32(b[k + 2]) << 16 | UInt32(b[k + 3]) << 24
            out.append(Int32(bitPattern: lo | hi))
        }
        return out
    }

    /// `qwen2` with Llama-3's Split regex and `ignore_merges` (how tokenizer_fixtures.py derives "qwen2-llama3").
    static func llama3Variant(of qwen2: JSONValue) throws -> JSONValue {
        guard case .object(var root) = qwen2, case .object(var pre) = root["pre_tokenizer"], var steps = pre["pretokenizers"]?.arrayValue,
              case .object(var model) = root["model"] else { throw FixtureError("qwen2 fixture has an unexpected shape") }
        for (i, s) in steps.enumerated() where s["type"]?.stringValue == "Split" {
            guard case .object(var split) = s, case .object(var pattern) = split["pattern"], pattern["Regex"]?.stringValue == SplitPattern.qwen2Text else {
                throw FixtureError("qwen2 fixture: the Split step is not Qwen2's regex")
            }
            pattern["Regex"] = .string(SplitPattern.llama3Text)
            split["pattern"] = .object(pattern)
            steps[i] = .object(split)
        }
        pre["pretokenizers"] = .array(steps)
        root["pre_tokenizer"] = .object(pre)
        model["ignore_merges"] = .bool(true)
        root["model"] = .object(model)
        return .object(root)
    }

    /// The tokenizer.json qkit's GGUF import writes for the SmolLM2 asset (what `qpack … --to safetensors` writes).
    static func smolLM2FromGGUF() throws -> JSONValue {
        let gguf = assets + "/gguf/SmolLM2-135M-Instruct.Q4_1.gguf"
        try requireAsset(gguf)
        return try GGUFTokenizer.tokenizerJSON(GGUFTokenizer.Vocabulary(GGUFFile(path: gguf)))
    }

    /// Records a failure naming the missing asset (never a silent skip) and stops the test.
    static func requireAsset(_ path: String) throws {
        guard access(path, R_OK) == 0 else {
            Issue.record("missing test asset \(path): run scripts/fetch-assets.sh (or set QKIT_ASSETS)")
            throw FixtureError("missing test asset \(path)")
        }
    }

    /// FNV-1a 64 of the ids as u32 little-endian bytes (the hash of references.json).
    static func fnv1a64(_ ids: [Int32]) -> String {
        var h: UInt64 = 0xCBF2_9CE4_8422_2325
        for id in ids {
            var v = UInt32(bitPattern: id)
            for _ in 0..<4 {
                h = (h ^ UInt64(v & 0xFF)) &* 0x100_0000_01B3
                v >>= 8
            }
        }
        let hex = String(h, radix: 16)
        return String(repeating: "0", count: 16 - hex.count) + hex
    }

    /// A mismatch report: the first differing position and the text around it.
    static func firstDifference(_ ours: [Int32], _ reference: [Int32], _ tokenizer: Tokenizer) -> String? {
        guard ours != reference else { return nil }
        let k = (0..<min(ours.count, reference.count)).first { ours[$0] != reference[$0] } ?? min(ours.count, reference.count)
        let lo = max(0, k - 8)
        let context = tokenizer.decode(Array(reference[lo..<min(reference.count, k + 8)]))
        return "first difference at id \(k) of \(reference.count) (ours \(ours.count)): ours \(Array(ours[k..<min(ours.count, k + 5)])), "
            + "reference \(Array(reference[k..<min(reference.count, k + 5)])), around \(String(reflecting: context))"
    }
}

struct FixtureError: Error, CustomStringConvertible {
    var description: String
    init(_ d: String) { description = d }
}
