import Testing
@testable import Common

/// Same value, or both NaN.
private func same(_ a: Float, _ b: Float) -> Bool {
    (a.isNaN && b.isNaN) || a.bitPattern == b.bitPattern
}

private func decodeAll(_ dtype: DType, _ bytes: [UInt8], count: Int) -> [Float] {
    var out = [Float](repeating: -1, count: count)
    bytes.withUnsafeBytes { s in out.withUnsafeMutableBufferPointer { Conversion.decode(dtype, s, into: $0) } }
    return out
}

private func encodeAll(_ dtype: DType, _ values: [Float]) -> [UInt8] {
    var out = [UInt8](repeating: 0xAA, count: (values.count * dtype.bitSize + 7) / 8)
    values.withUnsafeBufferPointer { s in out.withUnsafeMutableBytes { Conversion.encode(s, as: dtype, into: $0) } }
    return out
}

private func u16(_ bytes: [UInt8]) -> [UInt16] {
    stride(from: 0, to: bytes.count, by: 2).map { UInt16(bytes[$0]) | UInt16(bytes[$0 + 1]) << 8 }
}

private func bytes(_ words: [UInt16]) -> [UInt8] { words.flatMap { [UInt8($0 & 0xFF), UInt8($0 >> 8)] } }

@Suite struct ConversionExhaustiveTests {
    @Test func f16AllPatterns() {
        let codes = (0...0xFFFF).map { UInt16($0) }
        let decoded = decodeAll(.f16, bytes(codes), count: codes.count)
        for (c, v) in zip(codes, decoded) {
            let viaInit = Float(Float16(bitPattern: c))
            let viaBits = Conversion.decodeMinifloat(UInt32(c), exponentBits: 5, mantissaBits: 10, bias: 15, fn: false)
            #expect(same(v, viaInit) && same(v, viaBits), "f16 0x\(String(c, radix: 16))")
        }
        let back = u16(encodeAll(.f16, decoded))
        for (c, b) in zip(codes, back) {
            if decoded[Int(c)].isNaN {
                #expect(Conversion.float(fromHalfBits: b).isNaN && (b & 0x8000) == (c & 0x8000))
            } else {
                #expect(b == c, "f16 0x\(String(c, radix: 16)) re-encoded as 0x\(String(b, radix: 16))")
            }
            #expect(Conversion.halfBits(decoded[Int(c)]) == b)
        }
    }

    @Test func bf16AllPatterns() {
        let codes = (0...0xFFFF).map { UInt16($0) }
        let decoded = decodeAll(.bf16, bytes(codes), count: codes.count)
        for (c, v) in zip(codes, decoded) {
            #expect(v.bitPattern == UInt32(c) << 16)
            #expect(Conversion.float(fromBFloat16Bits: c).bitPattern == UInt32(c) << 16)
        }
        let back = u16(encodeAll(.bf16, decoded))
        for (c, b) in zip(codes, back) {
            if decoded[Int(c)].isNaN {
                // NaN stays NaN, same sign; a signalling NaN is quieted.
                #expect(b == c | 0x0040)
            } else {
                #expect(b == c)
            }
            #expect(Conversion.bfloat16Bits(decoded[Int(c)]) == b)
        }
    }

    static let eightBit: [DType] = [.f8E4M3, .f8E5M2, .f8E4M3FNUZ, .f8E5M2FNUZ, .f8E8M0]

    @Test(arguments: eightBit) func f8AllCodes(_ dtype: DType) {
        let codes = (0...255).map { UInt8($0) }
        let decoded = decodeAll(dtype, codes, count: 256)
        for c in codes {
            let v = decoded[Int(c)]
            let ref: Float
            switch dtype {
            case .f8E4M3: ref = Conversion.decodeMinifloat(UInt32(c), exponentBits: 4, mantissaBits: 3, bias: 7, fn: true)
            case .f8E5M2: ref = Conversion.decodeMinifloat(UInt32(c), exponentBits: 5, mantissaBits: 2, bias: 15, fn: false)
            case .f8E4M3FNUZ: ref = c == 0x80 ? .nan : Conversion.decodeMinifloat(UInt32(c), exponentBits: 4, mantissaBits: 3, bias: 8, fn: true, noNaN: true)
            case .f8E5M2FNUZ: ref = c == 0x80 ? .nan : Conversion.decodeMinifloat(UInt32(c), exponentBits: 5, mantissaBits: 2, bias: 16, fn: true, noNaN: true)
            default: ref = c == 0xFF ? .nan : Float(sign: .plus, exponent: Int(c) - 127, significand: 1)
            }
            #expect(same(v, ref), "\(dtype) 0x\(String(c, radix: 16)): \(v) vs \(ref)")
        }
        let back = encodeAll(dtype, decoded)
        for c in codes {
            if decoded[Int(c)].isNaN {
                #expect(decodeAll(dtype, [back[Int(c)]], count: 1)[0].isNaN)
            } else {
                #expect(back[Int(c)] == c, "\(dtype) 0x\(String(c, radix: 16)) re-encoded as 0x\(String(back[Int(c)], radix: 16))")
            }
        }
    }

    @Test func f8KnownValues() {
        let e4 = decodeAll(.f8E4M3, [0x7E, 0xFE, 0x7F, 0xFF, 0x01, 0x08, 0x38, 0x80], count: 8)
        let e4Expected: [Float] = [448, -448, .nan, .nan, 0x1p-9, 0x1p-6, 1, -0.0]
        for i in 0..<8 { #expect(same(e4[i], e4Expected[i])) }
        let e5 = decodeAll(.f8E5M2, [0x7B, 0x7C, 0xFC, 0x7D, 0x01, 0x3C], count: 6)
        let e5Expected: [Float] = [57344, .infinity, -.infinity, .nan, 0x1p-16, 1]
        for i in 0..<6 { #expect(same(e5[i], e5Expected[i])) }
        let e8 = decodeAll(.f8E8M0, [0x00, 0x7F, 0xFE, 0xFF], count: 4)
        let e8Expected: [Float] = [0x1p-127, 1, 0x1p127, .nan]
        for i in 0..<4 { #expect(same(e8[i], e8Expected[i])) }
        #expect(MinifloatFormat.e4m3fn.maxFinite == 448 && MinifloatFormat.e5m2.maxFinite == 57344)
        #expect(MinifloatFormat.e4m3fnuz.maxFinite == 240 && MinifloatFormat.e5m2fnuz.maxFinite == 57344)
    }

    @Test func f4AllCodes() {
        let expected: [Float] = [0, 0.5, 1, 1.5, 2, 3, 4, 6, -0.0, -0.5, -1, -1.5, -2, -3, -4, -6]
        // Two codes per byte, low nibble first: byte k holds codes 2k and 2k+1.
        let packed: [UInt8] = (0..<8).map { (k: Int) -> UInt8 in UInt8(2 * k) | (UInt8(2 * k + 1) << 4) }
        let decoded = decodeAll(.f4, packed, count: 16)
        for i in 0..<16 { #expect(decoded[i].bitPattern == expected[i].bitPattern, "f4 code \(i)") }
        #expect(encodeAll(.f4, decoded) == packed)
        // An odd count decodes the low nibble of the last byte.
        #expect(decodeAll(.f4, [0x75], count: 1) == [3])
        #expect(encodeAll(.f4, [3]) == [0x05])
        // Saturation, ties to even, NaN → zero.
        let special: [Float] = [7, -100, .infinity, -.infinity, 2.5, 5, 0.25, 0.75, 1.25, 1.75, 3.5, .nan]
        let specialCodes: [UInt8] = [0xF7, 0xF7, 0x64, 0x20, 0x42, 0x06]
        #expect(encodeAll(.f4, special) == specialCodes)
        #expect(MinifloatFormat.e2m1.maxFinite == 6)
    }

    @Test(arguments: [DType.f6E2M3, .f6E3M2]) func f6AllCodes(_ dtype: DType) {
        let f: MinifloatFormat = dtype == .f6E2M3 ? .e2m3 : .e3m2
        #expect(f.maxFinite == (dtype == .f6E2M3 ? 7.5 : 28))
        // Pack all 64 codes little-endian, 4 per 3 bytes.
        var packed: [UInt8] = []
        for g in 0..<16 {
            var v: UInt32 = 0
            for k in 0..<4 { v |= UInt32(4 * g + k) << UInt32(6 * k) }
            packed += [UInt8(v & 0xFF), UInt8((v >> 8) & 0xFF), UInt8(v >> 16)]
        }
        let decoded = decodeAll(dtype, packed, count: 64)
        for c in 0..<64 {
            let ref = Conversion.decodeMinifloat(UInt32(c), exponentBits: f.exponentBits, mantissaBits: f.mantissaBits, bias: f.bias, fn: true, noNaN: true)
            #expect(decoded[c].bitPattern == ref.bitPattern, "\(dtype) code \(c)")
        }
        #expect(encodeAll(dtype, decoded) == packed)
    }

    /// The vector encoder (`qkit_encode_minifloat`) against the scalar rule, format by format: every bf16 bit
    /// pattern widened (all exponents, ±0, ±inf, NaNs), every code's value and the midpoints between neighbouring
    /// codes with the floats just beside them (the ties), and random bit patterns; lengths that leave a tail.
    @Test(arguments: [("e4m3fn", MinifloatFormat.e4m3fn), ("e5m2", .e5m2), ("e4m3fnuz", .e4m3fnuz), ("e5m2fnuz", .e5m2fnuz),
                      ("e2m1", .e2m1), ("e2m3", .e2m3), ("e3m2", .e3m2)])
    func vectorEncoderMatchesScalar(_ named: (String, MinifloatFormat)) {
        let f = named.1
        var x = (0..<65536).map { Float(bitPattern: UInt32($0) << 16) }
        let values = f.table.filter(\.isFinite).sorted()
        for (a, b) in zip(values, values.dropFirst()) {
            let mid = (a + b) / 2
            x += [a, mid, mid.nextUp, mid.nextDown, -mid, -mid.nextUp, b * 1.5, -a]
        }
        var state: UInt64 = 0x5EED
        for _ in 0..<200_001 {
            state = state &* 6364136223846793005 &+ 1442695040888963407
            x.append(Float(bitPattern: UInt32(truncatingIfNeeded: state >> 32)))
        }
        var codes = [UInt8](repeating: 0, count: x.count)
        x.withUnsafeBufferPointer { s in
            codes.withUnsafeMutableBytes { Conversion.encodeMinifloat8(f, s.baseAddress!, $0.baseAddress!, s.count) }
        }
        let mismatches = x.indices.filter { codes[$0] != UInt8(truncatingIfNeeded: f.encode(x[$0])) }
        #expect(mismatches.count == 0, "\(named.0): \(mismatches.count) codes differ, first at \(mismatches.first.map { x[$0] } ?? 0)")
        if f == .e2m1 {  // F4 packs two codes a byte across the encoder's blocks of 4096, an odd count leaving a half byte
            let odd = Array(x.prefix(3 * 4096 + 1))
            var packed = [UInt8](repeating: 0xAA, count: (odd.count + 1) / 2)
            odd.withUnsafeBufferPointer { s in packed.withUnsafeMutableBytes { Conversion.encode(s, as: .f4, into: $0) } }
            #expect(odd.indices.allSatisfy { packed[$0 / 2] >> (4 * UInt8($0 % 2)) & 0xF == UInt8(f.encode(odd[$0])) })
            #expect(packed.last! >> 4 == 0)
        }
    }

    @Test func integersAndWideTypes() {
        #expect(decodeAll(.i8, [0xFF, 0x80, 0x7F], count: 3) == [-1, -128, 127])
        #expect(decodeAll(.u8, [0xFF, 0x80], count: 2) == [255, 128])
        #expect(decodeAll(.bool, [0, 1], count: 2) == [0, 1])
        #expect(decodeAll(.i16, [0xFE, 0xFF, 0x00, 0x80], count: 2) == [-2, -32768])
        #expect(decodeAll(.u16, [0xFE, 0xFF], count: 1) == [65534])
        #expect(decodeAll(.i32, [0xFF, 0xFF, 0xFF, 0xFF], count: 1) == [-1])
        #expect(decodeAll(.u32, [0x00, 0x00, 0x00, 0x01], count: 1) == [16_777_216])
        #expect(decodeAll(.i64, [UInt8](repeating: 0xFF, count: 8), count: 1) == [-1])
        #expect(decodeAll(.u64, [0, 0, 0, 0, 0, 0, 0, 0x80], count: 1) == [0x1p63])
        var c64: [UInt8] = []
        withUnsafeBytes(of: (Float(1.5), Float(-2), Float(3), Float(4))) { c64 = Array($0) }
        #expect(decodeAll(.c64, c64, count: 2) == [1.5, 3])
        let f64 = encodeAll(.f64, [0.1, -2])
        #expect(decodeAll(.f64, f64, count: 2) == [0.1, -2])
        #expect(decodeAll(.f32, encodeAll(.f32, [1, -0.25, .infinity]), count: 3) == [1, -0.25, .infinity])
    }

    @Test func unalignedBuffers() {
        // Source and destination one byte off alignment must give the same results as aligned ones.
        let values: [Float] = (0..<1000).map { Float($0) * 0.37 - 100 }
        let i16: [UInt8] = values.flatMap { v in withUnsafeBytes(of: Int16(v).littleEndian) { Array($0) } }
        let i32: [UInt8] = values.flatMap { v in withUnsafeBytes(of: Int32(v).littleEndian) { Array($0) } }
        for dtype in [DType.f16, .bf16, .i16, .i32, .f32, .f64, .f8E4M3] {
            let enc = dtype == .i16 ? i16 : dtype == .i32 ? i32 : encodeAll(dtype, values)
            if dtype.isFloatingPoint {
                var shifted = [UInt8](repeating: 0, count: enc.count + 1)
                shifted.withUnsafeMutableBytes { d in
                    values.withUnsafeBufferPointer { Conversion.encode($0, as: dtype, into: UnsafeMutableRawBufferPointer(rebasing: d[1...])) }
                }
                #expect(Array(shifted[1...]) == enc, "\(dtype) unaligned encode")
            }
            let ref = decodeAll(dtype, enc, count: values.count)
            if dtype.isInteger { #expect(ref == values.map { $0.rounded(.towardZero) }) }
            var out = [Float](repeating: 0, count: values.count)
            ([0] + enc).withUnsafeBytes { s in
                out.withUnsafeMutableBufferPointer { Conversion.decode(dtype, UnsafeRawBufferPointer(rebasing: s[1...]), into: $0) }
            }
            #expect(out == ref, "\(dtype) unaligned decode")
        }
    }

    @Test func e8m0RoundingFollowsTorch() {
        // 1.5·2^e rounds up (normal), 1.5·2^e − ulp down, 0 → 2^−127, sign ignored, inf/NaN → 0xFF,
        // and ≥ 1.5·2^127 rounds up into NaN as torch does.
        let x: [Float] = [1.5, 1.4999999, 0.75, -4, 0, .infinity, .nan, 0x1.8p-127, 0x1p-127, 0x1.fp127]
        let codes: [UInt8] = [0x80, 0x7F, 0x7F, 0x81, 0x00, 0xFF, 0xFF, 0x01, 0x00, 0xFF]
        #expect(encodeAll(.f8E8M0, x) == codes)
    }
}

/// Checks `Conversion.encode` bit for bit against the peers' casts of 65,536 float32 values (ties,
/// subnormals, overflow, ±0, NaN), stored in Fixtures/conversion/encode.bin by generate.py.
@Suite struct ConversionFixtureTests {
    struct FixtureError: Error {}

    struct Fixture: Sendable {
        var inputs: [Float]
        var columns: [String: [UInt32]]
    }

    /// Loaded once for all the test cases.
    static let fixture: Result<Fixture, any Error> = Result { try load() }

    static func load() throws -> Fixture {
        let here = "\(#filePath)"
        let dir = here[..<here.lastIndex(of: "/")!]
        let raw = try readSmallFile(dir + "/Fixtures/conversion/encode.bin")
        guard raw.count > 12, Array(raw[0..<8]) == Array("QKCONV01".utf8) else { throw FixtureError() }
        let n = Int(raw[8]) | Int(raw[9]) << 8 | Int(raw[10]) << 16 | Int(raw[11]) << 24
        var off = 12
        func take(_ width: Int) -> [UInt32] {
            defer { off += width * n }
            return (0..<n).map { i in
                var v: UInt32 = 0
                for k in 0..<width { v |= UInt32(raw[off + width * i + k]) << UInt32(8 * k) }
                return v
            }
        }
        let inputs = take(4).map { Float(bitPattern: $0) }
        var cols: [String: [UInt32]] = [:]
        for (name, w) in [("F16", 2), ("BF16", 2), ("F8_E4M3", 1), ("F8_E5M2", 1), ("F8_E8M0", 1), ("F8_E4M3FNUZ", 1),
                          ("F8_E5M2FNUZ", 1), ("F4", 1), ("F6_E2M3", 1), ("F6_E3M2", 1)] {
            cols[name] = take(w)
        }
        guard off == raw.count else { throw FixtureError() }
        return Fixture(inputs: inputs, columns: cols)
    }

    static let dtypes: [DType] = [.f16, .bf16, .f8E4M3, .f8E5M2, .f8E8M0, .f8E4M3FNUZ, .f8E5M2FNUZ, .f4, .f6E2M3, .f6E3M2]

    @Test(arguments: dtypes) func matchesPeers(_ dtype: DType) throws {
        let fx = try Self.fixture.get()
        let expected = fx.columns[dtype.rawValue]!
        // Our codes, one per element (F4/F6 unpacked through the scalar encoder, and packed below).
        let ours: [UInt32]
        switch dtype {
        case .f16, .bf16: ours = u16(encodeAll(dtype, fx.inputs)).map(UInt32.init)
        case .f4, .f6E2M3, .f6E3M2:
            let f = Conversion.minifloatFormat(dtype)!
            ours = fx.inputs.map { f.encode($0) }
            let packed = encodeAll(dtype, fx.inputs)
            #expect(decodeAll(dtype, packed, count: fx.inputs.count).map(\.bitPattern) == ours.map { f.decode($0).bitPattern })
        default: ours = encodeAll(dtype, fx.inputs).map(UInt32.init)
        }
        var mismatches = 0
        for i in 0..<fx.inputs.count where ours[i] != expected[i] {
            let x = fx.inputs[i]
            if x.isNaN {
                // Documented NaN policies: BF16 keeps sign and payload (torch writes 0xFFFF); FP4/FP6 have
                // no NaN and give a zero of the NaN's sign (ml_dtypes gives a zero of either sign).
                switch dtype {
                case .bf16: if Conversion.float(fromBFloat16Bits: UInt16(ours[i])).isNaN { continue }
                case .f4, .f6E2M3, .f6E3M2:
                    if Conversion.value(ofCode: ours[i], dtype) == 0 && Conversion.value(ofCode: expected[i], dtype) == 0 { continue }
                default: break
                }
            }
            mismatches += 1
            if mismatches <= 5 {
                Issue.record("\(dtype) of 0x\(String(x.bitPattern, radix: 16)) (\(x)): ours 0x\(String(ours[i], radix: 16)), peer 0x\(String(expected[i], radix: 16))")
            }
        }
        #expect(mismatches == 0, "\(dtype): \(mismatches) mismatches of \(fx.inputs.count)")
    }
}

/// Buffers of `Conversion.streamingElements` and more decode with streaming stores (`CKernels`): every one of
/// the 2^16 patterns, repeated, lands as the plain path decodes it, at an unaligned destination (the kernel's
/// scalar head), with a tail of fewer than 16, and nothing past the end is written.
@Suite struct ConversionStreamingTests {
    @Test(arguments: [DType.bf16, .f16])
    func largeBuffersDecodeLikeSmallOnes(_ dtype: DType) {
        let n = Conversion.streamingElements + 37
        var bits = [UInt16](repeating: 0, count: n)
        for i in 0..<n { bits[i] = UInt16(truncatingIfNeeded: i &* 40503) }   // every pattern, shuffled
        var reference = [Float](repeating: 0, count: 65_536)
        let patterns = (0..<65_536).map { UInt16($0) }
        patterns.withUnsafeBytes { s in reference.withUnsafeMutableBufferPointer { Conversion.decode(dtype, s, into: $0) } }
        #expect(65_536 < Conversion.streamingElements)
        var out = [Float](repeating: -7, count: n + 2)
        bits.withUnsafeBytes { s in
            out.withUnsafeMutableBufferPointer { o in
                Conversion.decode(dtype, s, into: UnsafeMutableBufferPointer(start: o.baseAddress! + 1, count: n))
            }
        }
        var mismatches = 0
        for i in 0..<n where !same(out[i + 1], reference[Int(bits[i])]) { mismatches += 1 }
        #expect(mismatches == 0, "\(dtype): \(mismatches) of \(n) differ from the plain decode")
        #expect(out[0] == -7 && out[n + 1] == -7)
    }
}
