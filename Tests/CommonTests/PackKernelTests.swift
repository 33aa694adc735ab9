import CKernels
import Glibc
import Testing
@testable import Common

/// Random bytes from a fixed seed (the kernels mask the low bits they use).
private func randomBytes(_ count: Int, seed: UInt64) -> [UInt8] {
    var rng = SplitMix(seed: seed)
    return (0..<count).map { _ in UInt8(truncatingIfNeeded: rng.next() >> 56) }
}

/// The packing kernels against their layouts' definitions, written out field by field: every path of the
/// kernels (whole and partial tiles, rows starting anywhere in a line, streamed and plain stores, K not a
/// multiple of the tile, a constant added to codes read in place).
@Suite("packing kernels: tiles, alignments and biases against the layout definitions")
struct PackKernelTests {
    @Test("AWQ qweight: nibble i of word [kk, c] is row 8c + [0,2,4,6,1,3,5,7][i] of column kk", arguments: [0, 8])
    func awq(bias: Int) throws {
        for (n, k) in [(8, 32), (128, 64), (136, 96), (256, 128), (128, 320), (264, 192)] {
            let storage = randomBytes(n * k + 64, seed: UInt64(n * k + bias))
            for offset in [0, 8, 56] {
                var out: [UInt32] = []
                try storage.withUnsafeBufferPointer { s in
                    let values = UnsafeBufferPointer(rebasing: s[offset..<(offset + n * k)])
                    try AWQLayout.packColumns(values, bias: UInt8(bias), rows: n, columns: k) {
                        out = Array($0.bindMemory(to: UInt32.self))
                    }
                }
                let words = n / 8
                var wrong = 0
                for kk in 0..<k {
                    for c in 0..<words {
                        var expected: UInt32 = 0
                        for i in 0..<8 {
                            let v = storage[offset + (8 * c + AWQLayout.order[i]) * k + kk] &+ UInt8(bias)
                            expected |= UInt32(v & 15) << UInt32(4 * i)
                        }
                        if out[kk * words + c] != expected { wrong += 1 }
                    }
                }
                #expect(out.count == k * words && wrong == 0, "n \(n) k \(k) offset \(offset): \(wrong) words differ")
            }
        }
    }

    @Test("GPTQ qweight: column r holds row r's codes as a little-endian bit stream along K", arguments: [2, 3, 4, 8])
    func gptq(bits: Int) throws {
        for n in [32, 40, 64] {
            let k = 96
            let raw = randomBytes(n * k, seed: UInt64(bits * 1000 + n))
            let mask = UInt8((1 << bits) - 1)
            let q = canonicalLinear(bits: bits, n: n, k: k, g: 32, code: { r, c in raw[r * k + c] & mask }, zero: { _, _ in 1 })
            let qweight = try emitted(GPTQLayout(), q)[0].withUnsafeBytes { Array($0.bindMemory(to: UInt32.self)) }
            let kw = k * bits / 32
            var expected = [UInt32](repeating: 0, count: kw * n)
            for r in 0..<n {
                for t in 0..<k {
                    for bit in 0..<bits where (raw[r * k + t] & mask) >> UInt8(bit) & 1 == 1 {
                        let p = t * bits + bit
                        expected[(p / 32) * n + r] |= 1 << UInt32(p % 32)
                    }
                }
            }
            #expect(qweight == expected, "\(bits) bits, N = \(n)")
        }
    }

    @Test("TinyChat: code [r][c] in nibble (c % 32) / 8 of word (c / 64)·64 + r·16 + ((c % 64) / 32)·8 + c % 8, aligned or not",
          arguments: [0, 8])
    func tinychat(bias: Int) {
        let k = 192
        let rows = randomBytes(4 * k, seed: UInt64(7 + bias))
        for shift in [0, 1] {  // output 64-byte aligned (streamed) or 2 bytes off (plain stores)
            let base = UnsafeMutableRawPointer.allocate(byteCount: 2 * k + 64, alignment: 64)
            defer { base.deallocate() }
            let out = (base + 2 * shift).bindMemory(to: UInt16.self, capacity: k)
            rows.withUnsafeBufferPointer { qkit_pack_tinychat($0.baseAddress!, k, UInt8(bias), out) }
            var expected = [UInt16](repeating: 0, count: k)
            for r in 0..<4 {
                for c in 0..<k {
                    let (word, nibble) = TinyChatLayout.position(n: r, k: c, columns: k)
                    expected[word] |= UInt16((rows[r * k + c] &+ UInt8(bias)) & 15) << UInt16(4 * nibble)
                }
            }
            #expect(Array(UnsafeBufferPointer(start: out, count: k)) == expected, "shift \(shift)")
        }
    }

    @Test("transposed store of 16 rows: whole blocks, a ragged edge, streamed and plain")
    func transposed16() {
        for (cols, dstStride, shift) in [(24, 16, 0), (13, 32, 0), (16, 20, 0), (16, 16, 1)] {
            let src = (0..<(16 * cols)).map { UInt32($0 * 7 + 3) }
            let base = UnsafeMutablePointer<UInt32>.allocate(capacity: cols * dstStride + 16)
            defer { base.deallocate() }
            base.initialize(repeating: 0xFFFF_FFFF, count: cols * dstStride + 16)
            let dst = base + shift
            src.withUnsafeBufferPointer { qkit_store_transposed($0.baseAddress!, 16, cols, cols, dst, dstStride) }
            var wrong = 0
            for j in 0..<cols {
                for r in 0..<16 where dst[j * dstStride + r] != src[r * cols + j] { wrong += 1 }
                for r in 16..<dstStride where dst[j * dstStride + r] != 0xFFFF_FFFF { wrong += 1 }  // left alone
            }
            #expect(wrong == 0, "cols \(cols) stride \(dstStride) shift \(shift)")
        }
    }

    @Test("codes read in place from a map with 8 added pack as the same codes owned, in every 4-bit layout")
    func mappedCodes() throws {
        let (n, k) = (128, 256)
        let path = ggufTemporaryDirectory("codes") + "/codes.bin"
        defer { unlink(path); rmdir(String(path.dropLast("/codes.bin".count))) }
        // Signed INT4 codes as qkit stores them (I8 in [−8, 7]), 24 bytes in: the rows start inside a line.
        let signed = randomBytes(n * k, seed: 5).map { UInt8(bitPattern: Int8(Int($0 % 16) - 8)) }
        try ([UInt8](repeating: 0, count: 24) + signed).withUnsafeBytes { b in
            let f = fopen(path, "wb")!
            defer { fclose(f) }
            #expect(fwrite(b.baseAddress!, 1, b.count, f) == b.count)
        }
        let file = try MappedFile(path: path)
        let mapped = LinearCodes(mapped: file.bytes.baseAddress!.assumingMemoryBound(to: UInt8.self) + 24, count: n * k, bias: 8,
                                 file: file, range: 24..<(24 + n * k))
        let owned = LinearCodes(signed.map { $0 &+ 8 })
        #expect(mapped == owned && mapped.array == owned.array && mapped[5] == owned[5])
        mapped.withUnsafeBufferPointer(adding: 248) { #expect(Array($0) == signed) }  // −8: the stored bytes, in place
        var linear = canonicalLinear(bits: 4, symmetric: true, n: n, k: k, g: 64, code: { _, _ in 0 }, zero: { _, _ in 8 })
        for layout in [AWQLayout(), GPTQLayout(), TinyChatLayout(), CompressedTensorsLayout()] as [any PackLayout] {
            linear.codes = owned
            let a = try emitted(layout, linear)
            linear.codes = mapped
            #expect(try emitted(layout, linear) == a, "\(layout.name)")
        }
    }
}
