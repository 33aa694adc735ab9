import Testing
@testable import Common

/// One malformed (or odd but valid) safetensors file and what the reader must say about it.
struct MalformedCase: CustomTestStringConvertible, Sendable {
    let label: String
    let bytes: [UInt8]
    /// The expected error's case name, or nil when the file must be accepted.
    let expected: String?
    var testDescription: String { label }
}

/// The case name of an error, for matching without comparing message text.
func caseName(_ e: SafetensorsError) -> String {
    switch e {
    case .headerTooSmall: "headerTooSmall"
    case .headerTooLarge: "headerTooLarge"
    case .headerPastEnd: "headerPastEnd"
    case .invalidJSON: "invalidJSON"
    case .invalidHeader: "invalidHeader"
    case .invalidTensor: "invalidTensor"
    case .unknownDType: "unknownDType"
    case .sizeOverflow: "sizeOverflow"
    case .misaligned: "misaligned"
    case .sizeMismatch: "sizeMismatch"
    case .offsetMismatch: "offsetMismatch"
    case .dataLengthMismatch: "dataLengthMismatch"
    case .invalidIndex: "invalidIndex"
    case .duplicateTensor: "duplicateTensor"
    }
}

private func h(_ header: String, data: Int = 0) -> [UInt8] { SafetensorsFixture.file(header: header, data: [UInt8](repeating: 0, count: data)) }
private func t(_ name: String = "a", dtype: String = "\"F32\"", shape: String = "[2]", offsets: String = "[0,8]") -> String {
    "\"\(name)\":{\"dtype\":\(dtype),\"shape\":\(shape),\"data_offsets\":\(offsets)}"
}
private func rawHeader(_ header: [UInt8]) -> [UInt8] { lengthPrefix(UInt64(header.count), then: header) }
private func lengthPrefix(_ n: UInt64, then rest: [UInt8] = []) -> [UInt8] { withUnsafeBytes(of: n.littleEndian) { Array($0) } + rest }

let malformedCases: [MalformedCase] = [
    MalformedCase(label: "empty file", bytes: [], expected: "headerTooSmall"),
    MalformedCase(label: "7 bytes", bytes: [1, 0, 0, 0, 0, 0, 0], expected: "headerTooSmall"),
    MalformedCase(label: "header length 100000001", bytes: lengthPrefix(100_000_001, then: Array("{}".utf8)), expected: "headerTooLarge"),
    MalformedCase(label: "header length u64 max", bytes: lengthPrefix(UInt64.max), expected: "headerTooLarge"),
    MalformedCase(label: "header length past EOF", bytes: lengthPrefix(100, then: Array("{}".utf8)), expected: "headerPastEnd"),
    MalformedCase(label: "header length one past EOF", bytes: lengthPrefix(3, then: Array("{}".utf8)), expected: "headerPastEnd"),
    MalformedCase(label: "top level array", bytes: h("[]"), expected: "invalidHeader"),
    MalformedCase(label: "top level string", bytes: h("\"x\""), expected: "invalidHeader"),
    MalformedCase(label: "empty header", bytes: h(""), expected: "invalidJSON"),
    MalformedCase(label: "unterminated object", bytes: h("{"), expected: "invalidJSON"),
    MalformedCase(label: "invalid UTF-8", bytes: rawHeader(Array("{\"".utf8) + [0xC3, 0x28] + Array("\":{}}".utf8)), expected: "invalidJSON"),
    MalformedCase(label: "overlong UTF-8", bytes: rawHeader(Array("{\"".utf8) + [0xC0, 0xAF] + Array("\":{}}".utf8)), expected: "invalidJSON"),
    MalformedCase(label: "UTF-16 surrogate encoded in UTF-8", bytes: rawHeader(Array("{\"".utf8) + [0xED, 0xA0, 0x80] + Array("\":{}}".utf8)), expected: "invalidJSON"),
    MalformedCase(label: "metadata int value", bytes: h("{\"__metadata__\":{\"a\":1}}"), expected: "invalidHeader"),
    MalformedCase(label: "metadata nested object", bytes: h("{\"__metadata__\":{\"a\":{}}}"), expected: "invalidHeader"),
    MalformedCase(label: "metadata array", bytes: h("{\"__metadata__\":[\"a\"]}"), expected: "invalidHeader"),
    MalformedCase(label: "missing dtype", bytes: h("{\"a\":{\"shape\":[2],\"data_offsets\":[0,8]}}", data: 8), expected: "invalidTensor"),
    MalformedCase(label: "missing shape", bytes: h("{\"a\":{\"dtype\":\"F32\",\"data_offsets\":[0,8]}}", data: 8), expected: "invalidTensor"),
    MalformedCase(label: "missing data_offsets", bytes: h("{\"a\":{\"dtype\":\"F32\",\"shape\":[2]}}", data: 8), expected: "invalidTensor"),
    MalformedCase(label: "lower-case dtype", bytes: h("{" + t(dtype: "\"f32\"") + "}", data: 8), expected: "unknownDType"),
    MalformedCase(label: "unknown dtype I4", bytes: h("{" + t(dtype: "\"I4\"") + "}", data: 8), expected: "unknownDType"),
    MalformedCase(label: "dtype not a string", bytes: h("{" + t(dtype: "1") + "}", data: 8), expected: "invalidTensor"),
    MalformedCase(label: "negative dimension", bytes: h("{" + t(shape: "[-2]") + "}", data: 8), expected: "invalidTensor"),
    MalformedCase(label: "float dimension", bytes: h("{" + t(shape: "[2.0]") + "}", data: 8), expected: "invalidTensor"),
    MalformedCase(label: "dimension beyond 2^64", bytes: h("{" + t(shape: "[36893488147419103232]") + "}", data: 8), expected: "invalidTensor"),
    MalformedCase(label: "string dimension", bytes: h("{" + t(shape: "[\"2\"]") + "}", data: 8), expected: "invalidTensor"),
    MalformedCase(label: "element count overflow", bytes: h("{" + t(shape: "[4294967296,4294967296]") + "}", data: 8), expected: "sizeOverflow"),
    MalformedCase(label: "bit count overflow", bytes: h("{" + t(shape: "[2305843009213693952]") + "}", data: 8), expected: "sizeOverflow"),
    MalformedCase(label: "three offsets", bytes: h("{" + t(offsets: "[0,8,8]") + "}", data: 8), expected: "invalidTensor"),
    MalformedCase(label: "one offset", bytes: h("{" + t(offsets: "[0]") + "}", data: 8), expected: "invalidTensor"),
    MalformedCase(label: "negative offset", bytes: h("{" + t(offsets: "[-8,0]") + "}", data: 8), expected: "invalidTensor"),
    MalformedCase(label: "float offset", bytes: h("{" + t(offsets: "[0,8.0]") + "}", data: 8), expected: "invalidTensor"),
    MalformedCase(label: "end before begin", bytes: h("{" + t(offsets: "[8,0]") + "}", data: 8), expected: "invalidTensor"),
    MalformedCase(label: "first tensor not at 0", bytes: h("{" + t(offsets: "[4,12]") + "}", data: 12), expected: "offsetMismatch"),
    MalformedCase(label: "overlapping tensors", bytes: h("{" + t("a", offsets: "[0,8]") + "," + t("b", offsets: "[4,12]") + "}", data: 12), expected: "offsetMismatch"),
    MalformedCase(label: "gap between tensors", bytes: h("{" + t("a", offsets: "[0,8]") + "," + t("b", offsets: "[12,20]") + "}", data: 20), expected: "offsetMismatch"),
    MalformedCase(label: "offsets past the end", bytes: h("{" + t(offsets: "[0,8]") + "}", data: 4), expected: "dataLengthMismatch"),
    MalformedCase(label: "trailing bytes (polyglot)", bytes: h("{" + t(offsets: "[0,8]") + "}", data: 9), expected: "dataLengthMismatch"),
    MalformedCase(label: "byte range too small for shape", bytes: h("{" + t(shape: "[2]", offsets: "[0,4]") + "}", data: 4), expected: "sizeMismatch"),
    MalformedCase(label: "byte range too large for shape", bytes: h("{" + t(shape: "[1]", offsets: "[0,8]") + "}", data: 8), expected: "sizeMismatch"),
    MalformedCase(label: "F4 odd element count", bytes: h("{" + t(dtype: "\"F4\"", shape: "[3]", offsets: "[0,2]") + "}", data: 2), expected: "misaligned"),
    MalformedCase(label: "F6 element count not filling bytes", bytes: h("{" + t(dtype: "\"F6_E2M3\"", shape: "[3]", offsets: "[0,3]") + "}", data: 3), expected: "misaligned"),
    MalformedCase(label: "duplicate tensor names", bytes: h("{" + t("a", offsets: "[0,8]") + "," + t("a", offsets: "[8,16]") + "}", data: 16), expected: "invalidJSON"),
    MalformedCase(label: "duplicate identical entries", bytes: h("{" + t("a", shape: "[0]", offsets: "[0,0]") + "," + t("a", shape: "[0]", offsets: "[0,0]") + "}"), expected: "invalidJSON"),
    MalformedCase(label: "duplicate __metadata__", bytes: h("{\"__metadata__\":{},\"__metadata__\":{}}"), expected: "invalidJSON"),
    MalformedCase(label: "deep nesting", bytes: h("{\"a\":" + String(repeating: "[", count: 5000) + String(repeating: "]", count: 5000) + "}"), expected: "invalidJSON"),
    MalformedCase(label: "trailing garbage after JSON", bytes: h("{} x"), expected: "invalidJSON"),
    MalformedCase(label: "NUL padding after JSON", bytes: SafetensorsFixture.file(header: "{}\u{0}\u{0}"), expected: "invalidJSON"),
    MalformedCase(label: "trailing comma", bytes: h("{" + t() + ",}", data: 8), expected: "invalidJSON"),
    MalformedCase(label: "single-quoted key", bytes: h("{'a':{}}"), expected: "invalidJSON"),
    MalformedCase(label: "control character in name", bytes: h("{\"a\tb\":{}}"), expected: "invalidJSON"),
    MalformedCase(label: "lone surrogate escape", bytes: h("{\"\\ud800\":{}}"), expected: "invalidJSON"),
    MalformedCase(label: "leading zero in offset", bytes: h("{" + t(offsets: "[00,8]") + "}", data: 8), expected: "invalidJSON"),
    MalformedCase(label: "NaN literal", bytes: h("{" + t(offsets: "[0,NaN]") + "}", data: 8), expected: "invalidJSON"),
    MalformedCase(label: "entry not an object", bytes: h("{\"a\":5}"), expected: "invalidTensor"),
    MalformedCase(label: "shape not an array", bytes: h("{" + t(shape: "2") + "}", data: 8), expected: "invalidTensor"),
    MalformedCase(label: "offsets not an array", bytes: h("{" + t(offsets: "8") + "}", data: 8), expected: "invalidTensor"),
    MalformedCase(label: "comment in JSON", bytes: h("{/* x */}"), expected: "invalidJSON"),
    MalformedCase(label: "unterminated string", bytes: h("{\"a"), expected: "invalidJSON"),
    MalformedCase(label: "bad escape", bytes: h("{\"\\x41\":{}}"), expected: "invalidJSON"),
    // Odd but valid: accepted like the reference implementation accepts them.
    MalformedCase(label: "no tensors", bytes: h("{}"), expected: nil),
    MalformedCase(label: "whitespace around the header", bytes: h("  \n{} \t\r\n"), expected: nil),
    MalformedCase(label: "metadata null", bytes: h("{\"__metadata__\":null}"), expected: nil),
    MalformedCase(label: "zero-size tensors at one offset", bytes: h("{" + t("a", shape: "[0,4]", offsets: "[0,0]") + "," + t("b", shape: "[3,0]", offsets: "[0,0]") + "," + t("c", offsets: "[0,8]") + "}", data: 8), expected: nil),
    MalformedCase(label: "scalar", bytes: h("{" + t(shape: "[]", offsets: "[0,4]") + "}", data: 4), expected: nil),
    MalformedCase(label: "unknown extra field", bytes: h("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8],\"x\":[1]}}", data: 8), expected: nil),
    MalformedCase(label: "empty tensor name", bytes: h("{" + t("") + "}", data: 8), expected: nil),
    MalformedCase(label: "out-of-order keys, contiguous data", bytes: h("{" + t("b", offsets: "[8,16]") + "," + t("a", offsets: "[0,8]") + "}", data: 16), expected: nil),
    MalformedCase(label: "F4 even count", bytes: h("{" + t(dtype: "\"F4\"", shape: "[4]", offsets: "[0,2]") + "}", data: 2), expected: nil),
    MalformedCase(label: "every dtype", bytes: SafetensorsFixture.file(DType.allCases.map { (name: $0.rawValue, dtype: $0, shape: [8], bytes: [UInt8](repeating: 0, count: $0.bitSize)) }), expected: nil),
]

@Suite("safetensors: malformed and odd files")
struct SafetensorsMalformedTests {
    @Test("each case is refused with its error, or accepted", arguments: malformedCases)
    func malformed(_ c: MalformedCase) {
        switch SafetensorsFixture.parse(c.bytes) {
        case .success:
            #expect(c.expected == nil, "accepted, expected \(c.expected ?? "")")
        case .failure(let e):
            #expect(caseName(e) == c.expected, "\(e)")
            #expect(e.exitStatus == .dataError)
            #expect(!e.description.isEmpty && !e.description.contains("\n"))
        }
    }

    @Test("at least 40 malformed cases")
    func coverage() {
        #expect(malformedCases.filter { $0.expected != nil }.count >= 40)
    }

    @Test("every truncation of a valid file is refused")
    func truncations() {
        let valid = SafetensorsFixture.file([
            (name: "w", dtype: .f32, shape: [2, 3], bytes: SafetensorsFixture.bytes([Float](repeating: 1, count: 6))),
            (name: "b", dtype: .bf16, shape: [3], bytes: [1, 2, 3, 4, 5, 6]),
        ], metadata: [("format", "pt")])
        guard case .success = SafetensorsFixture.parse(valid) else { Issue.record("the base file must parse"); return }
        for n in 0..<valid.count {
            let r = SafetensorsFixture.parse(Array(valid[..<n]))
            guard case .failure(let e) = r else { Issue.record("truncation at \(n) accepted"); continue }
            #expect(e.exitStatus == .dataError)
        }
    }

    @Test("random byte flips never crash the reader")
    func byteFlips() {
        let valid = SafetensorsFixture.file([
            (name: "model.layers.0.w", dtype: .f16, shape: [4, 4], bytes: [UInt8](repeating: 0x3C, count: 32)),
            (name: "z", dtype: .i64, shape: [1], bytes: [UInt8](repeating: 0, count: 8)),
        ])
        var state: UInt64 = 0x9E37_79B9_7F4A_7C15
        var refused = 0
        for _ in 0..<3000 {
            var b = valid
            for _ in 0..<3 {
                state = state &* 6364136223846793005 &+ 1442695040888963407
                let pos = Int(state >> 33) % b.count
                b[pos] = UInt8(truncatingIfNeeded: state >> 17)
            }
            if case .failure = SafetensorsFixture.parse(b) { refused += 1 }
        }
        #expect(refused > 0)
    }
}
