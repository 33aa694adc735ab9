import Testing
@testable import Common

/// Directory of the GGUF fixtures (located from this file, no bundle resources).
func ggufFixtureDirectory() -> String {
    let here = "\(#filePath)"
    return String(here[..<here.lastIndex(of: "/")!]) + "/Fixtures/gguf"
}

func hexBytes(_ s: String) -> [UInt8] {
    let u = Array(s.utf8)
    func nib(_ c: UInt8) -> UInt8 { c <= 57 ? c - 48 : (c | 0x20) - 87 }
    return stride(from: 0, to: u.count - 1, by: 2).map { nib(u[$0]) << 4 | nib(u[$0 + 1]) }
}

func dequantized(_ type: GGMLType, _ bytes: [UInt8], count: Int) throws -> [Float] {
    var out = [Float](repeating: .nan, count: count)
    try bytes.withUnsafeBytes { s in try out.withUnsafeMutableBufferPointer { try GGMLQuants.dequantize(type, s, into: $0) } }
    return out
}

func quantized(_ type: GGMLType, _ values: [Float]) throws -> [UInt8] {
    var out = [UInt8](repeating: 0xEE, count: type.byteCount(elements: values.count)!)
    try values.withUnsafeBufferPointer { s in try out.withUnsafeMutableBytes { try GGMLQuants.quantize(type, s, into: $0) } }
    return out
}

private func le16(_ v: UInt16) -> [UInt8] { [UInt8(v & 0xFF), UInt8(v >> 8)] }

@Suite struct GGMLTypeTests {
    @Test func tableMatchesGGMLCommon() {
        let expected: [(GGMLType, UInt32, Int, Int)] = [
            (.f32, 0, 1, 4), (.f16, 1, 1, 2), (.q4_0, 2, 32, 18), (.q4_1, 3, 32, 20), (.q5_0, 6, 32, 22),
            (.q5_1, 7, 32, 24), (.q8_0, 8, 32, 34), (.q8_1, 9, 32, 36), (.q2_K, 10, 256, 84), (.q3_K, 11, 256, 110),
            (.q4_K, 12, 256, 144), (.q5_K, 13, 256, 176), (.q6_K, 14, 256, 210), (.q8_K, 15, 256, 292),
            (.iq2_XXS, 16, 256, 66), (.iq2_XS, 17, 256, 74), (.iq3_XXS, 18, 256, 98), (.iq1_S, 19, 256, 50),
            (.iq4_NL, 20, 32, 18), (.iq3_S, 21, 256, 110), (.iq2_S, 22, 256, 82), (.iq4_XS, 23, 256, 136),
            (.i8, 24, 1, 1), (.i16, 25, 1, 2), (.i32, 26, 1, 4), (.i64, 27, 1, 8), (.f64, 28, 1, 8),
            (.iq1_M, 29, 256, 56), (.bf16, 30, 1, 2), (.tq1_0, 34, 256, 54), (.tq2_0, 35, 256, 66),
            (.mxfp4, 39, 32, 17), (.nvfp4, 40, 64, 36), (.q1_0, 41, 128, 18), (.q2_0, 42, 64, 18),
        ]
        #expect(expected.count == GGMLType.allCases.count)
        for (t, id, bs, ts) in expected {
            #expect(t.rawValue == id && t.blockSize == bs && t.typeSize == ts, "\(t.name)")
        }
        #expect(GGMLType.q4_K.bitsPerWeight == 4.5)
        #expect(GGMLType.q6_K.bitsPerWeight == 6.5625)
        #expect(GGMLType.q4_K.name == "Q4_K" && GGMLType(name: "q4_k") == .q4_K && GGMLType(name: "IQ2_XXS") == .iq2_XXS)
        #expect(GGMLType(rawValue: 4) == nil && GGMLType(rawValue: 31) == nil && GGMLType(rawValue: 43) == nil)
        #expect(GGMLType.q4_K.byteCount(elements: 512) == 288 && GGMLType.q4_K.byteCount(elements: 100) == nil)
    }
}

@Suite struct GGMLQuantsTests {
    // formats.md §7 test vectors (verified against gguf==0.19.0).
    @Test func q4_0Vector() throws {
        let x = (0..<32).map { Float($0 % 16 - 8) }
        let b = try quantized(.q4_0, x)
        #expect(b == [0x00, 0x3C] + (0..<16).map { UInt8($0 * 0x11) })
        #expect(try dequantized(.q4_0, b, count: 32) == x)
    }

    @Test func q8_0Vector() throws {
        let x: [Float] = [127, -127] + (0..<30).map(Float.init)
        let b = try quantized(.q8_0, x)
        #expect(b == [0x00, 0x3C, 0x7F, 0x81] + (0..<30).map(UInt8.init))
        #expect(try dequantized(.q8_0, b, count: 32) == x)
    }

    @Test(arguments: [
        (GGMLType.q4_0, [7, 13, -20, 13, -1, 1, 5, -9, 20, -18, -9, -5, 3, -4, -15, -19, -20, -19, -14, 20, -13, 6, 10, -11, -9, -3, -10, 19, -13, 16, 12, 14], 4,
         "00390B0D20FD38A8CA444F7144F639E6D2E0"),
        (.q4_0, [8, -4, 2, 1, 0, -1, 3, 7] + [Int](repeating: 0, count: 24), 1, "00BC808C8687888985818888888888888888"),
        (.q4_1, [-16, -4, 5, 0, 7, 7, 7, -18, 19, 2, 17, -9, -6, 16, -13, -18, -5, 7, -15, 15, -7, -11, 2, 16, 16, 15, -8, -20, 11, 9, 11, -20], 4,
         "333900C562A62AD85A3A8AE1EFD85E04C5BEC301"),
        (.q8_0, [-93, 1, -33, -13, 87, -60, 6, -35, -41, 62, -70, -37, -77, -71, -44, 40, 16, -10, -66, 60, 60, -53, -88, -36, -71, 60, 4, 1, -42, 1, 94, -53], 8,
         "EC2D8201D3EE76AF08D1C954A1CE98A0C53616F2A75151B889CFA0510501C7017FB8"),
    ] as [(GGMLType, [Int], Int, String)])
    func ggufPyQuantizeVectors(type: GGMLType, scaled: [Int], divisor: Int, hex: String) throws {
        let x = scaled.map { Float($0) / Float(divisor) }
        let expected = hexBytes(hex.replacingSpaces())
        #expect(try quantized(type, x) == expected)
    }

    @Test func q8_0HalfAwayFromZero() throws {
        let x: [Float] = [127, 0.5, 1.5, 2.5, -0.5, -1.5, -2.5] + [Float](repeating: 0, count: 25)
        let b = try quantized(.q8_0, x)
        #expect(Array(b[0..<9]) == [0x00, 0x3C, 0x7F, 0x01, 0x02, 0x03, 0xFF, 0xFE, 0xFD])
        #expect(b[9...].allSatisfy { $0 == 0 })
    }

    @Test func q4_KDecodeVector() throws {
        let scales: [UInt8] = [0xCA, 0xD4, 0xDE, 0xA8, 0x85, 0xCF, 0xD9, 0x63, 0xD2, 0x7C, 0xEF, 0x11]
        var block: [UInt8] = le16(0x3C00)
        block += le16(0x3800)
        block += scales
        block += (0..<128).map { (b: Int) -> UInt8 in UInt8((7 * b + 3) % 256) }
        let y = try dequantized(.q4_K, block, count: 256)
        let want: [(Int, Float)] = [(0, 27.5), (1, 97.5), (31, 117.5), (32, -7.5), (33, -7.5), (64, 77.5), (100, 582.5),
                                    (128, 127.5), (200, 662), (255, 222.5)]
        for (i, v) in want { #expect(y[i] == v, "y[\(i)]") }
        // The packed scales decode back to the 6-bit scales and mins they were made from.
        let ls: [UInt8] = [10, 20, 30, 40, 50, 60, 63, 33], lm: [UInt8] = [5, 15, 25, 35, 45, 55, 62, 17]
        scales.withUnsafeBytes { p in
            for j in 0..<8 { #expect(GGMLQuants.scaleMinK4(j, p.baseAddress!) == (ls[j], lm[j])) }
        }
    }

    @Test func q6_KDecodeVector() throws {
        let ql: [UInt8] = (0..<128).map { (b: Int) -> UInt8 in UInt8((5 * b + 1) % 256) }
        let qh: [UInt8] = (0..<64).map { (b: Int) -> UInt8 in UInt8((11 * b + 7) % 256) }
        let sc: [UInt8] = (0..<16).map { (i: Int) -> UInt8 in
            let v: Int = i % 2 == 0 ? i + 1 : -(i + 1)
            return UInt8(bitPattern: Int8(v))
        }
        var block: [UInt8] = ql
        block += qh
        block += sc
        block += le16(0x3800)
        let y = try dequantized(.q6_K, block, count: 256)
        let want: [(Int, Float)] = [(0, 8.5), (1, 3), (16, -17), (31, 20), (32, -22.5), (63, -56), (64, -80), (95, 21), (96, -77),
                                    (127, 52), (128, 76.5), (160, -82.5), (255, -56)]
        for (i, v) in want { #expect(y[i] == v, "y[\(i)]") }
    }

    /// Random blocks dequantized by gguf-py 0.19.0 (Fixtures/gguf/generate_dequant.py): equal bit for bit.
    @Test(arguments: ["Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q8_0", "Q2_K", "Q3_K", "Q4_K", "Q5_K", "Q6_K", "F16", "BF16"])
    func matchesGGUFPy(name: String) throws {
        let text = try readSmallFile(ggufFixtureDirectory() + "/dequant-vectors.json")
        let root = try JSONParser.parse(text)
        let entry = try #require(root[name])
        let n = try #require(entry["elements"]?.intValue)
        let bytes = hexBytes(try #require(entry["bytes"]?.stringValue))
        let want = hexBytes(try #require(entry["values"]?.stringValue))
        let type = try #require(GGMLType(name: name))
        let y = try dequantized(type, bytes, count: n)
        let got = y.withUnsafeBytes { Array($0) }
        #expect(got == want)
    }

    @Test func plainTypes() throws {
        #expect(try dequantized(.i8, [0xFF, 0x05], count: 2) == [-1, 5])
        #expect(try dequantized(.i16, [0x00, 0x80], count: 1) == [-32768])
        #expect(try dequantized(.i32, [0x10, 0, 0, 0], count: 1) == [16])
        let d = withUnsafeBytes(of: 2.5) { Array($0) }
        #expect(try dequantized(.f64, d, count: 1) == [2.5])
        let f = withUnsafeBytes(of: Float(-3.25)) { Array($0) }
        #expect(try dequantized(.f32, f, count: 1) == [-3.25])
    }

    @Test func errors() {
        #expect(throws: GGMLQuantsError.unsupportedType(.iq2_XXS)) { try dequantized(.iq2_XXS, [UInt8](repeating: 0, count: 66), count: 256) }
        #expect(throws: GGMLQuantsError.notWholeBlocks(type: .q4_0, elements: 16)) { try dequantized(.q4_0, [UInt8](repeating: 0, count: 9), count: 16) }
        #expect(throws: GGMLQuantsError.wrongByteCount(type: .q4_0, expected: 18, actual: 17)) {
            try dequantized(.q4_0, [UInt8](repeating: 0, count: 17), count: 32)
        }
        #expect(throws: GGMLQuantsError.unsupportedType(.q2_K)) { try quantized(.q2_K, [Float](repeating: 0, count: 256)) }
    }

    @Test func roundTripQ4_1IsClose() throws {
        var g = SplitMix(seed: 3)
        let x = (0..<256).map { _ in Float(g.nextDouble() * 2 - 1) }
        let y = try dequantized(.q4_1, try quantized(.q4_1, x), count: 256)
        for (a, b) in zip(x, y) { #expect(abs(a - b) < 0.08) }
    }
}

/// A small deterministic generator for tests.
struct SplitMix {
    var state: UInt64
    init(seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
    mutating func nextDouble() -> Double { Double(next() >> 11) / Double(1 << 53) }
}

extension String {
    func replacingSpaces() -> String { String(filter { $0 != " " }) }
}
