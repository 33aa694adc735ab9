import Testing
@testable import Common

/// Hex digits of a string as values (one code per character).
func hexDigits(_ s: String) -> [UInt8] { s.map { UInt8($0.hexDigitValue!) } }
private func words(_ s: String) -> [UInt32] { s.split(separator: " ").map { UInt32($0, radix: 16)! } }

/// Collects what a layout emits for one linear, tensor by tensor.
func emitted(_ layout: any PackLayout, _ q: QuantizedLinear) throws -> [[UInt8]] {
    var bytes: [UInt8] = []
    try layout.pack(q) { bytes += Array($0) }
    let plan = LinearPlan(prefix: q.prefix, scheme: q.scheme, n: q.n, k: q.k, groups: q.groups, scaleRows: q.scaleRows,
                          hasGroupIndex: q.groupIndex != nil, unsupportedParts: [])
    var out: [[UInt8]] = []
    var offset = 0
    for spec in layout.outputs(plan) {
        let n = spec.byteCount!
        out.append(Array(bytes[offset..<(offset + n)]))
        offset += n
    }
    #expect(offset == bytes.count, "emitted bytes match the planned tensors")
    return out
}

private func asWords(_ b: [UInt8]) -> [UInt32] {
    var out: [UInt32] = []
    for i in stride(from: 0, to: b.count, by: 4) {
        var w: UInt32 = 0
        for j in 0..<4 { w |= UInt32(b[i + j]) << UInt32(8 * j) }
        out.append(w)
    }
    return out
}

/// A canonical INT linear from codes `[n][k]` and zeros `[n][g]`, scale 1.
func canonicalLinear(bits: Int, symmetric: Bool = false, n: Int, k: Int, g: Int, code: (Int, Int) -> UInt8, zero: (Int, Int) -> UInt8) -> QuantizedLinear {
    let groups = k / g
    var codes = [UInt8](repeating: 0, count: n * k)
    var zeros = [UInt8](repeating: 0, count: n * groups)
    for r in 0..<n { for c in 0..<k { codes[r * k + c] = code(r, c) } }
    for r in 0..<n { for j in 0..<groups { zeros[r * groups + j] = zero(r, j) } }
    return QuantizedLinear(prefix: "l", scheme: QuantScheme(format: .int(bits: bits), granularity: g == k ? .channel : .group(g), symmetric: symmetric),
                           rows: 0..<n, k: k, codes: codes, scales: [Float](repeating: 1, count: n * groups), scaleRows: n, groups: groups, zeros: zeros)
}

@Suite("formats.md test vectors: AWQ, GPTQ, compressed-tensors packing")
struct PackVectorTests {
    @Test("AWQ: 0..7 along N → 0x75316420, zeros 8 → 0x88888888 (§1a)")
    func awqSimple() throws {
        let q = canonicalLinear(bits: 4, n: 8, k: 1, g: 1, code: { r, _ in UInt8(r) }, zero: { _, _ in 8 })
        let t = try emitted(AWQLayout(), q)
        #expect(asWords(t[0]) == [0x7531_6420])
        #expect(asWords(t[1]) == [0x8888_8888])
        #expect(asWords(t[0]) != [0x7654_3210])
    }

    @Test("AWQ GEMM: autoawq 0.2.9 from_linear vectors, K=8 G=4 N=32 (§1a)")
    func awqAutoAWQ() throws {
        let codeRows = ["FCACCB40CD34D5DC47FC46EFF9BCF382", "4980FDE1C71317B4BDDB92415BCDBD4F", "9E7B50907731F39582879C169684B0B0",
                        "676782707CBBFB9CA761D6DC783725E7", "384A8836A7BE2ACFA36AA8695175F7D6", "3906793F90193F3B6D5F02A8457ACF92",
                        "7EF35E8D353520E3BC65CB1CB59901A9", "7A7C063C04B92CE0FC54EA56CEC65D09"].map(hexDigits)
        let zeroRows = ["DBF09E5F0AEAC74C3A7F2C0980B59A85", "51E01132DA4B819E6C1070CE2F50B04C"].map(hexDigits)
        let qweight = words("0BCC4CAF C54DDD3C F6C7E4F4 23C98FBF 1D09EF84 4737B11C 12BD49DB FDDB4BC5 00BE9579 53179F37 6C721988 0046BB89 "
                            + "02777866 CBBC9FB7 C617DD6A 7578E237 68A83843 FAE7C2BA 98A36A6A 6751DF75 F9693703 BF903319 82FDA056 2FA59C74 "
                            + "DE3E85F7 3055E233 CB5C1C6B 9195A09B C6CA3077 0C94E2B0 6A4C5E5F 9D6E05CC")
        let qzeros = words("FE0B59FD C7AA4CE0 9CFA0273 5A5089B8 210131E5 E1BA984D E00CC716 C00F4B52")
        let q = canonicalLinear(bits: 4, n: 32, k: 8, g: 4, code: { n, k in codeRows[k][n] }, zero: { n, g in zeroRows[g][n] })
        let t = try emitted(AWQLayout(), q)
        #expect(asWords(t[0]) == qweight)
        #expect(asWords(t[1]) == qzeros)
    }

    @Test("GPTQ: codes 0..7 along K → 0x76543210; symmetric 4-bit qzeros v1 0x77777777, v2 0x88888888 (§1b)")
    func gptqSimple() throws {
        let q = canonicalLinear(bits: 4, symmetric: true, n: 8, k: 8, g: 8, code: { _, k in UInt8(k) }, zero: { _, _ in 8 })
        let v1 = try emitted(GPTQLayout(), q), v2 = try emitted(GPTQLayout(v2: true), q)
        #expect(asWords(v1[0]) == [UInt32](repeating: 0x7654_3210, count: 8))
        #expect(asWords(v1[1]) == [0x7777_7777] && asWords(v2[1]) == [0x8888_8888])
    }

    @Test("GPTQ: gptqmodel 7.7.0 vectors (a) 4-bit asym K=32 N=8 G=16, v1 and v2 (§1b)")
    func gptq4bit() throws {
        let codes = ["A8938805D3AB99A57604CD7E8A1A622F", "C13A58E1DA8BE78B1BF054E15FE4C760", "0924F58875DE111557ABC43B0F00022B",
                     "70FD5E0D141C22C4A8C0BA604B151887", "D0091F7C87B4A00C4CCB30827213D241", "2F2734E16CB791B0CCC0B5B8488EC349",
                     "A2C547F9A190DEC7C4DA8CA84ECE1405", "67CF0781C53AFCB69C137DF4FEF9DD08"].map(hexDigits)
        let zeros = ["E1", "8A", "4C", "82", "9B", "B3", "BD", "4E"].map(hexDigits)
        let q = canonicalLinear(bits: 4, n: 8, k: 32, g: 16, code: { n, k in codes[n][k] }, zero: { n, g in zeros[n][g] })
        let v2 = try emitted(GPTQLayout(v2: true), q), v1 = try emitted(GPTQLayout(), q)
        let expected = words("5088398A 1E85A31C 885F4290 D0E5DF07 C7F1900D 1E4372F2 9F745C2A 1870FC76 "
                             + "5A99BA3D B87EB8AD 5111ED57 4C22C141 C00A4B78 0B197BC6 7CED091A 6BCFA35C "
                             + "E7DC4067 1E450FB1 B34CBA75 06AB0C8A 2803BCC4 8B5B0CCC 8AC8AD4C 4FD731C9 "
                             + "F226A1A8 067C4EF5 B22000F0 788151B4 142D3127 943CE884 5041ECE4 80DD9FEF")
        #expect(asWords(v2[0]) == expected && asWords(v1[0]) == expected)
        #expect(asWords(v2[1]) == [0x4BB9_848E, 0xED3B_2CA1])
        #expect(asWords(v1[1]) == [0x3AA8_737D, 0xDC2A_1B90])
        // g_idx k / G, scales F16.
        #expect(asWords(v1[3]) == (0..<32).map { UInt32($0 / 16) })
    }

    @Test("GPTQ: gptqmodel 7.7.0 vectors (b) 8-bit asym K=16 N=4 (§1b)")
    func gptq8bit() throws {
        let codes: [[UInt8]] = [[184, 94, 173, 199, 97, 226, 149, 162, 250, 238, 29, 170, 7, 222, 158, 76],
                                [203, 246, 167, 57, 177, 245, 231, 108, 172, 21, 94, 41, 199, 220, 34, 143],
                                [22, 45, 36, 168, 90, 52, 9, 147, 232, 69, 182, 140, 26, 163, 152, 180],
                                [226, 43, 119, 151, 178, 18, 64, 199, 218, 181, 160, 78, 122, 211, 26, 3]]
        let zeros: [UInt8] = [156, 23, 63, 105]
        let q = canonicalLinear(bits: 8, n: 4, k: 16, g: 16, code: { n, k in codes[n][k] }, zero: { n, _ in zeros[n] })
        let v2 = try emitted(GPTQLayout(v2: true), q), v1 = try emitted(GPTQLayout(), q)
        // qweight [4, 4]: row r, column n; the vector lists rows r0..r3 across n.
        #expect(asWords(v2[0]) == words("C7AD5EB8 39A7F6CB A8242D16 97772BE2 A295E261 6CE7F5B1 9309345A C74012B2 "
                                        + "AA1DEEFA 295E15AC 8CB645E8 4EA0B5DA 4C9EDE07 8F22DCC7 B498A31A 031AD37A"))
        #expect(asWords(v2[1]) == [0x693F_179C] && asWords(v1[1]) == [0x683E_169B])
    }

    @Test("GPTQ: gptqmodel 7.7.0 vectors (c) 3-bit K=32 N=32, qzeros v1 per field (§1b)")
    func gptq3bit() throws {
        let column1: [UInt8] = [2, 5, 5, 5, 1, 7, 1, 6, 3, 5, 0, 1, 7, 7, 0, 3, 7, 5, 1, 3, 2, 6, 5, 6, 4, 3, 6, 1, 7, 5, 3, 6]
        let z: [UInt8] = [6, 6, 5, 3, 7, 3, 5, 6, 1, 7, 2, 1, 5, 1, 5, 1, 1, 1, 7, 3, 5, 6, 3, 1, 7, 5, 7, 2, 3, 3, 3, 7]
        let q = canonicalLinear(bits: 3, n: 32, k: 32, g: 32, code: { n, k in n == 0 ? UInt8(k % 8) : (n == 1 ? column1[k] : 0) }, zero: { n, _ in z[n] })
        let v2 = try emitted(GPTQLayout(v2: true), q), v1 = try emitted(GPTQLayout(), q)
        let qw = asWords(v2[0])  // [3, 32]
        #expect([qw[0], qw[32], qw[64]] == [0x88FA_C688, 0xC688_FAC6, 0xFAC6_88FA])
        #expect([qw[1], qw[33], qw[65]] == [0x2BC7_9B6A, 0x266F_63F2, 0xCEF3_9CD7])
        #expect(asWords(v2[1]) == [0xB9D5_F776, 0x57C9_34D2, 0xEDB5_EF2F])
        #expect(asWords(v1[1]) == [0x70B1_652D, 0xC580_1040, 0xC923_A60A])
    }

    @Test("compressed-tensors: pack_to_int32 rows incl. 8-bit, 3-bit dense and ragged 3/2-bit (§1c)")
    func ctPackToInt32() {
        func pack(_ signed: [Int], bits: Int) -> [UInt32] {
            var out = [UInt32](repeating: 0, count: BitPacking.wordCount(signed.count, bits: bits))
            out.withUnsafeMutableBufferPointer { o in
                BitPacking.pack(count: signed.count, bits: bits, into: o.baseAddress!) { UInt32(signed[$0] + (1 << (bits - 1))) }
            }
            return out
        }
        #expect(pack([-8, -7, -6, -5, -4, -3, -2, -1], bits: 4) == [0x7654_3210])
        #expect(pack([0, 1, 2, 3, 4, 5, 6, 7], bits: 4) == [0xFEDC_BA98])
        #expect(pack([-1, 0, 1, 2, 3, -4, 7, -8], bits: 4) == [0x0F4B_A987])
        #expect(pack([-128, -1, 0, 127], bits: 8) == [0xFF80_7F00])
        #expect(pack((0..<32).map { $0 % 8 - 4 }, bits: 3) == [0x88FA_C688, 0xC688_FAC6, 0xFAC6_88FA])
        #expect(pack([2, 0, 2, 1, 2, -4, -1, 2, 1, -3, 2, 0, -1, -4, -2, -3, -4, 1, -1, -3, 1, 0, -4, 0, 2, -1, -4, -2, -4, 1,
                      2, -2, 0, -4, 0, -2, 2, -4, -3, -4], bits: 3) == [0x8DCC_6BA6, 0x52E8_2839, 0x5A84_1E82, 0x0004_6504])
        #expect(pack([1, 1, -1, 1, 0, 1, -1, -2, -2, -1, 1, -2, -1, 1, 0, -1, -1, -1, -2, 0], bits: 2) == [0x6D34_1EDF, 0x0000_0085])
        // Fields read back.
        let w: [UInt32] = [0x8DCC_6BA6, 0x52E8_2839, 0x5A84_1E82, 0x0004_6504]
        w.withUnsafeBytes { b in
            #expect((0..<40).map { Int(BitPacking.field(b.baseAddress!, $0, bits: 3)) - 4 }.prefix(6) == [2, 0, 2, 1, 2, -4])
        }
    }

    @Test("compressed-tensors 0.19.0 vector (a): W4 asym group 8, N=8 K=16, packed rows and zero points along N (§1c)")
    func ctPackQuantizedAsym() throws {
        let q: [[Int]] = [[-3, 3, 4, 0, 7, 1, 3, -3, 7, -8, -8, -7, 4, -1, 5, 4], [-2, 1, -6, -4, 6, -3, -6, -4, 3, 4, 2, 4, 5, 6, -6, -4],
                          [-1, -1, 1, -7, -1, 6, -8, -2, 5, 1, 1, -1, 7, 5, -2, 1], [-7, -8, 4, -7, 0, 0, 5, -5, 7, 2, 1, 0, 6, -1, -5, -2],
                          [-3, -7, 1, -5, -4, 0, -7, 3, 4, 2, -4, -8, 5, -5, 1, -6], [7, -8, -4, 1, 7, -6, -1, -1, 2, 1, 0, -2, 1, -5, -1, 6],
                          [-1, 5, -4, 3, -3, 1, -5, -2, 0, -8, -6, 2, -1, 7, 7, -1], [1, -1, -5, 4, 2, 6, 6, -8, 0, -1, -1, -7, -7, 5, -5, -8]]
        let zp: [[Int]] = [[0, 5], [5, -2], [-4, -3], [-2, -6], [4, 3], [-3, 3], [-1, 5], [0, 3]]
        let lin = canonicalLinear(bits: 4, n: 8, k: 16, g: 8, code: { n, k in UInt8(q[n][k] + 8) }, zero: { n, g in UInt8(zp[n][g] + 8) })
        var layout = CompressedTensorsLayout()
        layout.scaleDType = .bf16
        let t = try emitted(layout, lin)
        #expect(asWords(t[0]) == words("5B9F8CB5 CD7C100F 425E4296 42EDCACB 60E71977 96DF799D 3D881C01 637E89AF "
                                       + "B1843915 293D04AC 772F940F E739689A 6395B4D7 7FF7A208 0EEAC379 03D11778"))
        #expect(t[2] == [8, 0, 0, 0, 0, 0, 0, 0, 16, 0, 0, 0, 0, 0, 0, 0])  // weight_shape I64 [8, 16]
        #expect(asWords(t[3]) == [0x875C_64D8, 0xBDBB_256D])
    }

    @Test("compressed-tensors NVFP4: FP4 bytes 10 32 54 76 and 29 7F, even column in the low nibble (§1c)")
    func ctNVFP4Bytes() throws {
        let values: [Float] = [0, 0.5, 1, 1.5, 2, 3, 4, 6, -0.5, 1, -6, 6] + [Float](repeating: 0, count: 4)
        let codes = values.map { Conversion.float4Bits($0) }
        let lin = QuantizedLinear(prefix: "l", scheme: QuantScheme(format: .nvfp4), rows: 0..<1, k: 16, codes: codes, scales: [1],
                                  scaleRows: 1, groups: 1, zeros: nil, globalScale: 1)
        let t = try emitted(CompressedTensorsLayout(), lin)
        #expect(Array(t[0].prefix(6)) == [0x10, 0x32, 0x54, 0x76, 0x29, 0x7F])
    }
}
