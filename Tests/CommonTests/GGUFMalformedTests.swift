import Testing
@testable import Common

/// Builds GGUF bytes by hand, so that every field can be made wrong.
struct GGUFBytes {
    var b: [UInt8] = []

    init(version: UInt32 = 3, tensors: UInt64, keys: UInt64) {
        b = Array("GGUF".utf8)
        u32(version)
        u64(tensors)
        u64(keys)
    }

    mutating func u32(_ v: UInt32) { withUnsafeBytes(of: v.littleEndian) { b.append(contentsOf: $0) } }
    mutating func u64(_ v: UInt64) { withUnsafeBytes(of: v.littleEndian) { b.append(contentsOf: $0) } }
    mutating func str(_ s: String) { u64(UInt64(s.utf8.count)); b.append(contentsOf: s.utf8) }
    mutating func kvU32(_ k: String, _ v: UInt32) { str(k); u32(4); u32(v) }
    mutating func tensor(_ name: String, _ dims: [UInt64], type: UInt32 = 0, offset: UInt64 = 0) {
        str(name)
        u32(UInt32(dims.count))
        for d in dims { u64(d) }
        u32(type)
        u64(offset)
    }
    /// Pads to `alignment` and appends `data` zero bytes.
    mutating func data(_ count: Int, alignment: Int = 32) {
        while b.count % alignment != 0 { b.append(0) }
        b.append(contentsOf: [UInt8](repeating: 0, count: count))
    }
}

private func parse(_ bytes: [UInt8]) throws(GGUFError) -> GGUFFile.Parsed {
    var result: Result<GGUFFile.Parsed, GGUFError>!
    bytes.withUnsafeBytes { p in
        do throws(GGUFError) { result = .success(try GGUFFile.parse(p)) } catch { result = .failure(error) }
    }
    return try result.get()
}

/// One well-formed file with metadata and two tensors, the base of the truncation sweep.
private func validFile() -> [UInt8] {
    var g = GGUFBytes(tensors: 2, keys: 3)
    g.str("general.architecture"); g.u32(8); g.str("llama")
    g.kvU32("general.alignment", 32)
    g.str("tokens"); g.u32(9); g.u32(8); g.u64(2); g.str("a"); g.str("bc")
    g.tensor("x", [4, 2], type: 0, offset: 0)
    g.tensor("q", [32], type: 8, offset: 32)
    g.data(66)
    return g.b
}

private func malformed() -> [(String, [UInt8], GGUFError)] {
    var cases: [(String, [UInt8], GGUFError)] = []
    func add(_ name: String, _ error: GGUFError, _ build: (inout GGUFBytes) -> Void, version: UInt32 = 3, tensors: UInt64 = 0, keys: UInt64 = 0) {
        var g = GGUFBytes(version: version, tensors: tensors, keys: keys)
        build(&g)
        cases.append((name, g.b, error))
    }
    cases.append(("empty file", [], .badMagic))
    cases.append(("three bytes", Array("GGU".utf8), .truncated("the magic")))
    cases.append(("bad magic", Array("GGML".utf8) + [3, 0, 0, 0] + [UInt8](repeating: 0, count: 16), .badMagic))
    add("version 1", .unsupportedVersion(1), { _ in }, version: 1)
    add("version 0", .unsupportedVersion(0), { _ in }, version: 0)
    add("version 4", .unsupportedVersion(4), { _ in }, version: 4)
    add("big-endian version", .unsupportedVersion(0x0300_0000), { _ in }, version: 0x0300_0000)
    add("absurd tensor count", .tooManyTensors(UInt64.max), { $0.data(64) }, tensors: UInt64.max)
    add("tensor count just past the file", .tooManyTensors(3), { $0.data(40, alignment: 1) }, tensors: 3)
    add("absurd key count", .tooManyKeys(1 << 62), { $0.data(64) }, keys: 1 << 62)
    add("key length past EOF", .stringTooLong(length: 100, remaining: 10), { $0.u64(100); $0.data(10, alignment: 1) }, keys: 1)
    add("key length 2^63", .stringTooLong(length: 1 << 63, remaining: 30), { $0.u64(1 << 63); $0.data(30, alignment: 1) }, keys: 1)
    add("empty key", .emptyKey(index: 0), { $0.str(""); $0.u32(0); $0.b.append(1) }, keys: 1)
    add("duplicate key", .duplicateKey("a"), { $0.kvU32("a", 1); $0.kvU32("a", 2) }, keys: 2)
    add("invalid UTF-8 key", .invalidUTF8("metadata key 0"), { $0.u64(2); $0.b += [0xC3, 0x28]; $0.u32(0); $0.b.append(1) }, keys: 1)
    add("bad value type", .badValueType(key: "k", type: 13), { $0.str("k"); $0.u32(13); $0.u64(0) }, keys: 1)
    add("bad array element type", .badValueType(key: "k", type: 99), { $0.str("k"); $0.u32(9); $0.u32(99); $0.u64(0) }, keys: 1)
    add("absurd array length", .arrayTooLong(key: "k", count: 1 << 40), { $0.str("k"); $0.u32(9); $0.u32(4); $0.u64(1 << 40); $0.data(64, alignment: 1) }, keys: 1)
    add("string array longer than the file", .arrayTooLong(key: "k", count: 10), { $0.str("k"); $0.u32(9); $0.u32(8); $0.u64(10); $0.data(72, alignment: 1) }, keys: 1)
    add("string value past EOF", .stringTooLong(length: 1000, remaining: 4), { $0.str("k"); $0.u32(8); $0.u64(1000); $0.data(4, alignment: 1) }, keys: 1)
    add("deep array nesting", .arrayTooDeep(key: "k"), { g in
        g.str("k")
        g.u32(9)
        for _ in 0..<GGUFFile.maxArrayDepth { g.u32(9); g.u64(1) }
        g.u32(9); g.u64(1)
        g.data(64, alignment: 1)
    }, keys: 1)
    add("alignment of type u64", .badAlignmentType(.uint64), { $0.str("general.alignment"); $0.u32(10); $0.u64(32) }, keys: 1)
    add("alignment 48", .badAlignment(48), { $0.kvU32("general.alignment", 48) }, keys: 1)
    add("alignment 0", .badAlignment(0), { $0.kvU32("general.alignment", 0) }, keys: 1)
    add("truncated value", .truncated("the value of 'k'"), { $0.str("k"); $0.u32(4); $0.b += [1, 2] }, keys: 1)
    let longName = String(repeating: "n", count: 64)
    add("tensor name of 64 bytes", .nameTooLong(longName), { $0.tensor(longName, [1]); $0.data(4) }, tensors: 1)
    add("invalid UTF-8 tensor name", .invalidUTF8("the name of tensor 0"), { $0.u64(1); $0.b.append(0xFF); $0.u32(1); $0.u64(1); $0.u32(0); $0.u64(0); $0.data(4) }, tensors: 1)
    add("duplicate tensor", .duplicateTensor("t"), { $0.tensor("t", [1]); $0.tensor("t", [1], offset: 32); $0.data(64) }, tensors: 2)
    add("five dimensions", .tooManyDimensions(tensor: "t", count: 5), { $0.tensor("t", [1, 1, 1, 1, 1]); $0.data(4) }, tensors: 1)
    add("absurd dimension count", .tooManyDimensions(tensor: "t", count: UInt32.max), { $0.str("t"); $0.u32(UInt32.max); $0.data(64, alignment: 1) }, tensors: 1)
    add("zero dimension", .badDimension(tensor: "t", index: 1, value: 0), { $0.tensor("t", [4, 0]); $0.data(4) }, tensors: 1)
    add("dimension above 2^63-1", .badDimension(tensor: "t", index: 0, value: UInt64.max), { $0.tensor("t", [UInt64.max]); $0.data(4) }, tensors: 1)
    add("element count overflow", .tooManyElements(tensor: "t"), { $0.tensor("t", [1 << 32, 1 << 32]); $0.data(4) }, tensors: 1)
    add("byte count overflow", .tooManyElements(tensor: "t"), { $0.tensor("t", [1 << 31, 1 << 31]); $0.data(4) }, tensors: 1)
    add("removed type 4", .unknownType(tensor: "t", type: 4), { $0.tensor("t", [32], type: 4); $0.data(32) }, tensors: 1)
    add("type 1000", .unknownType(tensor: "t", type: 1000), { $0.tensor("t", [32], type: 1000); $0.data(32) }, tensors: 1)
    add("row not whole blocks", .notWholeBlocks(tensor: "t", type: .q4_0, rowLength: 16), { $0.tensor("t", [16, 2], type: 2); $0.data(36) }, tensors: 1)
    add("misaligned offset", .misalignedOffset(tensor: "t", offset: 8, alignment: 32), { $0.tensor("t", [1], offset: 8); $0.data(64) }, tensors: 1)
    add("offset past the end", .dataOutOfRange(tensor: "t"), { $0.tensor("t", [1], offset: 1 << 40); $0.data(64) }, tensors: 1)
    add("offset + size overflow", .dataOutOfRange(tensor: "t"), { $0.tensor("t", [8], offset: UInt64.max - 31); $0.data(64) }, tensors: 1)
    add("data shorter than the tensor", .dataOutOfRange(tensor: "t"), { $0.tensor("t", [100]); $0.data(399) }, tensors: 1)
    add("overlapping tensors", .overlappingTensors("a", "b"), { $0.tensor("a", [16]); $0.tensor("b", [4], offset: 32); $0.data(64) }, tensors: 2)
    add("same offset twice", .overlappingTensors("a", "b"), { $0.tensor("a", [1]); $0.tensor("b", [1]); $0.data(4) }, tensors: 2)
    add("no room for the data padding", .truncated("the padding before the data section"), { $0.tensor("t", [1]) }, tensors: 1)
    return cases
}

@Suite struct GGUFMalformedTests {
    @Test(arguments: malformed())
    func refused(name: String, bytes: [UInt8], expected: GGUFError) {
        #expect(throws: expected, "\(name)") { try parse(bytes) }
    }

    @Test func caseCount() { #expect(malformed().count >= 40) }

    @Test func validBaseParses() throws {
        let p = try parse(validFile())
        #expect(p.tensors.count == 2 && p.metadata.count == 3 && p.tensors[1].type == .q8_0)
    }

    /// Every proper prefix of a valid file is refused with an error (never a crash or a success).
    @Test func everyTruncationRefused() throws {
        let full = validFile()
        let p = try parse(full)
        let end = p.dataStart + 32 + 34
        for n in 0..<end {
            #expect(throws: GGUFError.self, "prefix of \(n) bytes") { try parse(Array(full[0..<n])) }
        }
    }

    /// Single-byte corruptions of the header either parse or throw a GGUFError (checks there is no trap).
    @Test func byteFlipsNeverCrash() {
        let full = validFile()
        var g = SplitMix(seed: 5)
        for i in 0..<full.count - 66 {
            for _ in 0..<3 {
                var b = full
                b[i] = UInt8(truncatingIfNeeded: g.next())
                _ = try? parse(b)
            }
        }
    }

    @Test func errorsCarryThePathAndExit65() throws {
        let dir = ggufTemporaryDirectory("bad")
        defer { removeTree(dir) }
        let path = dir + "/bad.gguf"
        try writeSmallFile(path, "GGUF\u{1}\0\0\0")
        do {
            _ = try GGUFFile(path: path)
            Issue.record("opened a v1 file")
        } catch {
            #expect(error.path == path && error.exitStatus == .dataError)
            #expect(error.description == "GGUF version 1 is not supported (only versions 2 and 3)")
        }
    }
}
