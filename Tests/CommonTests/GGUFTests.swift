import Testing
#if canImport(Glibc)
import Glibc
#endif
@testable import Common

/// A fresh temporary directory for one test.
func ggufTemporaryDirectory(_ tag: String) -> String {
    var template = Array("/tmp/qkit-gguf-\(tag)-XXXXXX".utf8CString)
    let p = template.withUnsafeMutableBufferPointer { mkdtemp($0.baseAddress!) }
    return String(cString: p!)
}

/// Writes a GGUF with `GGUFWriter`, each tensor's bytes given.
func writeGGUF(_ path: String, metadata: [(key: String, value: GGUFValue)], tensors: [(GGUFTensorSpec, [UInt8])]) throws {
    let w = try GGUFWriter(path: path, metadata: metadata, tensors: tensors.map(\.0))
    for (_, bytes) in tensors { try bytes.withUnsafeBytes { try w.write($0) } }
    try w.finish()
}

@Suite struct GGUFRoundTripTests {
    static let metadata: [(key: String, value: GGUFValue)] = [
        ("general.architecture", .string("llama")),
        ("general.name", .string("tiny ✓ test")),
        ("u8", .uint8(200)), ("i8", .int8(-5)), ("u16", .uint16(65000)), ("i16", .int16(-30000)),
        ("u32", .uint32(4_000_000_000)), ("i32", .int32(-2_000_000_000)), ("f32", .float32(9.999999747378752e-06)),
        ("bool", .bool(true)), ("u64", .uint64(UInt64.max)), ("i64", .int64(Int64.min)), ("f64", .float64(-0.125)),
        ("strings", .array(.string, [.string("a"), .string(""), .string("Ġthe")])),
        ("nested", .array(.array, [.array(.int32, [.int32(1), .int32(2)]), .array(.int32, [])])),
        ("empty", .array(.float32, [])),
    ]

    @Test func writeThenRead() throws {
        let dir = ggufTemporaryDirectory("rt")
        defer { removeTree(dir) }
        let path = dir + "/t.gguf"
        var g = SplitMix(seed: 11)
        let f32 = (0..<6).map { _ in Float(g.nextDouble()) }
        let q8 = (0..<64).map { _ in Float(g.nextDouble() * 4 - 2) }
        let q8bytes = try quantized(.q8_0, q8)
        let q4k = (0..<144).map { _ in UInt8(g.next() & 0xFF) }
        try writeGGUF(path, metadata: Self.metadata, tensors: [
            (GGUFTensorSpec(name: "a.weight", dimensions: [3, 2], type: .f32), f32.withUnsafeBytes { Array($0) }),
            (GGUFTensorSpec(name: "b.weight", dimensions: [32, 2], type: .q8_0), q8bytes),
            (GGUFTensorSpec(name: "c.weight", dimensions: [256], type: .q4_K), q4k),
            (GGUFTensorSpec(name: "scalar", dimensions: [], type: .f32), [0, 0, 0x80, 0x3F]),
        ])
        let file = try GGUFFile(path: path)
        #expect(file.version == 3 && file.alignment == 32)
        #expect(file.metadata.map(\.key) == Self.metadata.map(\.key))
        for (k, v) in Self.metadata { #expect(file[k] == v, "\(k)") }
        #expect(file["missing"] == nil)
        #expect(file["u32"]?.intValue == 4_000_000_000 && file["f32"]?.doubleValue == Double(Float(9.999999747378752e-06)))
        #expect(file.tensors.map(\.name) == ["a.weight", "b.weight", "c.weight", "scalar"])
        let a = file.tensors[0], b = file.tensors[1], c = file.tensors[2], s = file.tensors[3]
        #expect(a.dimensions == [3, 2] && a.shape == [2, 3] && a.type == .f32 && a.byteCount == 24 && a.offset == 0)
        #expect(b.shape == [2, 32] && b.byteCount == 68 && b.offset == 32 && b.rowByteCount == 34 && b.rowCount == 2)
        #expect(c.offset == 128 && c.byteCount == 144 && c.type == .q4_K)
        #expect(s.dimensions == [] && s.shape == [] && s.elementCount == 1)
        #expect(file.dataStart % 32 == 0)
        #expect(Array(file.data(a)) == f32.withUnsafeBytes { Array($0) })
        #expect(Array(file.data(b)) == q8bytes && Array(file.data(c)) == q4k)
        #expect(file.fileRange(c) == file.dataStart + 128..<file.dataStart + 272)
        let y = try dequantized(.q8_0, Array(file.data(b)), count: 64)
        for (u, v) in zip(q8, y) { #expect(abs(u - v) < 0.02) }
    }

    @Test func customAlignmentAndVersion2() throws {
        let dir = ggufTemporaryDirectory("al")
        defer { removeTree(dir) }
        let path = dir + "/t.gguf"
        try writeGGUF(path, metadata: [("general.alignment", .uint32(64))], tensors: [
            (GGUFTensorSpec(name: "x", dimensions: [1], type: .f32), [0, 0, 0, 0]),
            (GGUFTensorSpec(name: "y", dimensions: [2], type: .f16), [0, 0x3C, 0, 0xC0]),
        ])
        let file = try GGUFFile(path: path)
        #expect(file.alignment == 64 && file.dataStart % 64 == 0 && file.tensors[1].offset == 64)
        #expect(try dequantized(.f16, Array(file.data(file.tensors[1])), count: 2) == [1, -2])
        // The same bytes labelled version 2 read the same way.
        var bytes = try readSmallFile(path)
        bytes[4] = 2
        let v2 = try bytes.withUnsafeBytes { try GGUFFile.parse($0) }
        #expect(v2.version == 2 && v2.tensors == file.tensors)
    }

    @Test func emptyFileWithNoTensors() throws {
        let header = try GGUFWriter.header(metadata: [], tensors: [])
        let p = try header.bytes.withUnsafeBytes { try GGUFFile.parse($0) }
        #expect(p.tensors.isEmpty && p.metadata.isEmpty && p.version == 3)
    }

    @Test func headerBytesMatchFormatsSpec() throws {
        // formats.md §7: a Q8_0 [2,32] tensor named "a" (HF shape [2, 32], ggml dims [32, 2]).
        let h = try GGUFWriter.header(metadata: [], tensors: [GGUFTensorSpec(name: "a", dimensions: [32, 2], type: .q8_0)])
        #expect(Array(h.bytes[0..<8]) == [0x47, 0x47, 0x55, 0x46, 0x03, 0, 0, 0])
        let info: [UInt8] = [1, 0, 0, 0, 0, 0, 0, 0, 0x61, 2, 0, 0, 0, 0x20, 0, 0, 0, 0, 0, 0, 0, 2, 0, 0, 0, 0, 0, 0, 0, 8, 0, 0, 0]
            + [UInt8](repeating: 0, count: 8)
        #expect(Array(h.bytes[24..<24 + info.count]) == info)
        #expect(h.bytes.count == 96 && h.sizes == [68])
    }

    @Test func missingFileIsNoInput() {
        do {
            _ = try GGUFFile(path: "/nonexistent/x.gguf")
            Issue.record("opened a missing file")
        } catch {
            #expect(error.exitStatus == .noInput && error.path == "/nonexistent/x.gguf")
        }
    }
}
