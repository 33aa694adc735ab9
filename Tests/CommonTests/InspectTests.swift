#if canImport(Glibc)
import Glibc
#endif
import Testing
@testable import Common

/// A naive double-precision reference for the statistics the SIMD engine computes.
private func reference(_ x: [Float]) -> (mean: Double, std: Double, kurtosis: Double, min: Float, max: Float, zeros: Int) {
    let f = x.filter { $0.isFinite }.map(Double.init)
    let n = Double(f.count)
    let mean = f.reduce(0, +) / n
    let m2 = f.reduce(0) { $0 + ($1 - mean) * ($1 - mean) } / n
    let m4 = f.reduce(0) { $0 + pow4($1 - mean) } / n
    return (mean, m2.squareRoot(), m4 / (m2 * m2) - 3, x.filter(\.isFinite).min()!, x.filter(\.isFinite).max()!, x.filter { $0 == 0 }.count)
}

private func pow4(_ v: Double) -> Double { v * v * v * v }

/// Deterministic heavy-tailed values.
private func values(_ n: Int, seed: UInt64) -> [Float] {
    var s = seed
    return (0..<n).map { _ in
        s = s &* 6364136223846793005 &+ 1442695040888963407
        let u = Float(s >> 40) / Float(1 << 24) - 0.5
        return u * u * u * 8 + (s >> 63 == 1 ? 0.25 : -0.1)
    }
}

private func stats(_ x: [Float], shape: [Int], encoding: TensorEncoding = .dtype(.f32), histogram: Bool = false,
                   outliers: Int = 3) throws -> TensorStatistics {
    try x.withUnsafeBytes { try StatisticsEngine.compute(data: $0, encoding: encoding, shape: shape, histogram: histogram, outliers: outliers) }
}

@Suite("tensor statistics")
struct StatisticsTests {
    @Test("hand-worked example: 1 2 3 4")
    func handWorked() throws {
        let s = try stats([1, 2, 3, 4], shape: [4])
        #expect(s.mean == 2.5)
        #expect(abs(s.std - 1.25.squareRoot()) < 1e-12)
        #expect(abs(s.kurtosis - (2.5625 / 1.5625 - 3)) < 1e-12)  // m4 = 2.5625, m2 = 1.25: excess −1.36
        #expect(s.min == 1 && s.max == 4 && s.absMax == 4 && s.zeroCount == 0)
    }

    @Test("matches a double-precision reference across chunk boundaries", arguments: [[3_000_001], [1500, 1999], [3, 700_001], [2049, 1024]])
    func matchesReference(_ shape: [Int]) throws {
        let x = values(shape.reduce(1, *), seed: 7)
        let s = try stats(x, shape: shape)
        let r = reference(x)
        #expect(abs(s.mean - r.mean) <= 1e-6 * r.std)
        #expect(abs(s.std - r.std) / r.std < 1e-5)
        #expect(abs(s.kurtosis - r.kurtosis) / abs(r.kurtosis) < 1e-4)
        #expect(s.min == r.min && s.max == r.max)
        #expect(s.zeroCount == r.zeros)
        #expect(s.count == x.count)
    }

    @Test("a shifted distribution (norm weights near 1) keeps its precision")
    func shifted() throws {
        let x = values(100_000, seed: 3).map { 1 + $0 * 1e-3 }
        let s = try stats(x, shape: [100_000])
        let r = reference(x)
        #expect(abs(s.std - r.std) / r.std < 1e-4)
    }

    @Test("the shift: 0 for centred values (the kernel then skips the subtraction), the sampled mean otherwise")
    func shiftChoice() throws {
        let centred = values(10_000, seed: 4)
        let nearOne = centred.map { 1 + $0 * 0.1 }
        for (x, expected) in [(centred, 0.0), (nearOne, 1.0)] {
            let shift = try x.withUnsafeBytes { try StatisticsEngine.shift($0, count: 4096, encoding: .dtype(.f32)) }
            #expect(abs(shift - expected) < 0.02)
            #expect((shift == 0) == (expected == 0))
        }
        // Both kernel paths in bf16 (even and odd elements in separate lanes), rows of odd length so that
        // segments end mid-vector: the moments match a double-precision reference of the same values.
        for x in [centred, nearOne] {
            let bf: [UInt16] = x.map { UInt16($0.bitPattern >> 16) }
            let s = try bf.withUnsafeBytes { try StatisticsEngine.compute(data: $0, encoding: .dtype(.bf16), shape: [400, 25]) }
            let r = reference(bf.map { Float(bitPattern: UInt32($0) << 16) })
            #expect(abs(s.mean - r.mean) <= 1e-6 * r.std)
            #expect(abs(s.std - r.std) / r.std < 1e-5 && abs(s.kurtosis - r.kurtosis) / abs(r.kurtosis) < 1e-4)
            #expect(s.min == r.min && s.max == r.max && s.zeroCount == r.zeros)
        }
    }

    @Test("NaN and infinities are counted and excluded")
    func nonFinite() throws {
        var x = values(10_000, seed: 1)
        x[17] = .nan; x[5000] = .infinity; x[9999] = -.infinity; x[20] = 0
        let s = try stats(x, shape: [100, 100])
        #expect(s.nanCount == 1 && s.infCount == 2)
        let r = reference(x)
        #expect(abs(s.mean - r.mean) < 1e-9 + 1e-6 * r.std)
        #expect(s.min == r.min && s.max == r.max)
    }

    @Test("outlier channels: a planted column is found with its ratio")
    func outliers() throws {
        let rows = 64, cols = 96
        var x = [Float](repeating: 0, count: rows * cols)
        for r in 0..<rows { for c in 0..<cols { x[r * cols + c] = Float((r + c) % 5 + 1) * 0.01 } }
        x[10 * cols + 37] = 3
        x[20 * cols + 90] = -1.5
        let s = try stats(x, shape: [rows, cols])
        #expect(s.outlierChannels.map(\.channel).prefix(2) == [37, 90])
        #expect(abs(s.outlierChannels[0].ratio - 3 / 0.05) < 1e-3)
    }

    @Test("bf16 and f16 fast paths agree with decoding to f32")
    func halfPaths() throws {
        let x = values(70_000, seed: 9)
        let bf: [UInt16] = x.map { UInt16($0.bitPattern >> 16) }
        let h: [Float16] = x.map { Float16($0) }
        let sb = try bf.withUnsafeBytes { try StatisticsEngine.compute(data: $0, encoding: .dtype(.bf16), shape: [700, 100]) }
        let sh = try h.withUnsafeBytes { try StatisticsEngine.compute(data: $0, encoding: .dtype(.f16), shape: [700, 100]) }
        let rb = try stats(bf.map { Float(bitPattern: UInt32($0) << 16) }, shape: [700, 100])
        let rh = try stats(h.map { Float($0) }, shape: [700, 100])
        // Same values, same extremes and channels; the moments only differ by summation order.
        for (fast, slow) in [(sb, rb), (sh, rh)] {
            #expect(fast.min == slow.min && fast.max == slow.max && fast.zeroCount == slow.zeroCount)
            #expect(fast.outlierChannels == slow.outlierChannels)
            #expect(abs(fast.mean - slow.mean) < 1e-9 && abs(fast.std - slow.std) / slow.std < 1e-7)
            #expect(abs(fast.kurtosis - slow.kurtosis) < 1e-6)
        }
    }

    @Test("bf16 and f16 with NaN and infinities: counted, kept out of the moments, NaN kept out of the column maxima")
    func halfNonFinite() throws {
        var x = values(193 * 64, seed: 5)  // 3 blocks of 4096 and a tail of 64
        x[100] = .nan; x[5000] = .infinity; x[9000] = -.infinity; x[12_300] = .nan; x[7] = 0; x[8] = -0.0
        let cols = 64  // NaN at column 100 % 64 = 36, ±inf at columns 5000 % 64 = 8 and 9000 % 64 = 40
        let bf: [UInt16] = x.map { UInt16($0.bitPattern >> 16) }
        let h: [UInt16] = x.map { Float16($0).bitPattern }
        let wide = [bf.map { Float(bitPattern: UInt32($0) << 16) }, h.map { Float(Float16(bitPattern: $0)) }]
        for (i, raw) in [bf, h].enumerated() {
            let fast = try raw.withUnsafeBytes {
                try StatisticsEngine.compute(data: $0, encoding: .dtype(i == 0 ? .bf16 : .f16), shape: [x.count / cols, cols], outliers: cols)
            }
            let slow = try stats(wide[i], shape: [x.count / cols, cols], encoding: .dtype(.f32), outliers: cols)
            let r = reference(wide[i])
            #expect(fast.nanCount == 2 && fast.infCount == 2 && fast.zeroCount == r.zeros && r.zeros >= 2)
            #expect(fast.min == r.min && fast.max == r.max)
            #expect(abs(fast.mean - r.mean) < 1e-6 * r.std && abs(fast.std - r.std) / r.std < 1e-5)
            #expect(fast.outlierChannels == slow.outlierChannels)
            #expect(fast.outlierChannels.prefix(2).map(\.channel).sorted() == [8, 40])
            #expect(fast.outlierChannels.first?.absMax == .infinity)
            let column36 = wide[i].enumerated().filter { $0.offset % cols == 36 && !$0.element.isNaN }.map { abs($0.element) }.max()
            #expect(fast.outlierChannels.first { $0.channel == 36 }?.absMax == column36)
        }
    }

    @Test("median and top channels: selection equals sorting, ties go to the lower channel")
    func selection() {
        var state: UInt64 = 3
        for n in [1, 2, 3, 10, 101, 4096] {
            let v: [Float] = (0..<n).map { _ in
                state = state &* 6364136223846793005 &+ 1442695040888963407
                return Float(state >> 58)  // many ties
            }
            #expect(StatisticsEngine.Partial.median(v) == v.sorted()[n / 2])
            let sorted = v.indices.sorted { (v[$0], -$0) > (v[$1], -$1) }
            #expect(StatisticsEngine.Partial.topChannels(v, 3) == Array(sorted.prefix(3)))
        }
    }

    @Test("sub-byte rows that straddle bytes (F4 rows of 3) chunk correctly")
    func oddF4Rows() throws {
        let rows = 400_000, cols = 3  // 1,200,000 codes: a whole number of bytes; chunks must hold even row counts
        var codes = [UInt8](repeating: 0, count: rows * cols / 2)
        var state: UInt64 = 11
        for i in codes.indices {
            state = state &* 6364136223846793005 &+ 1442695040888963407
            codes[i] = UInt8(truncatingIfNeeded: state >> 40)
        }
        let shape = [rows, cols]
        let count = rows * cols
        let bytes = codes
        var decoded = [Float](repeating: 0, count: count)
        bytes.withUnsafeBytes { raw in decoded.withUnsafeMutableBufferPointer { Conversion.decode(.f4, raw, into: $0) } }
        let fast = try bytes.withUnsafeBytes { try StatisticsEngine.compute(data: $0, encoding: .dtype(.f4), shape: shape) }
        let slow = try stats(decoded, shape: shape)
        #expect(fast.min == slow.min && fast.max == slow.max && fast.zeroCount == slow.zeroCount)
        #expect(abs(fast.mean - slow.mean) < 1e-9 && abs(fast.std - slow.std) < 1e-9)
        #expect(fast.outlierChannels == slow.outlierChannels)
    }

    @Test("histogram counts every finite value")
    func histogram() throws {
        let x = values(50_000, seed: 2)
        let s = try stats(x, shape: [50_000], histogram: true)
        #expect(s.histogram?.count == StatisticsEngine.histogramBins)
        #expect(s.histogram?.reduce(0, +) == 50_000)
        #expect(sparkline([0, 1, 4, 8], logarithmic: false) == " ▁▄█")
    }
}

@Suite("summary, format detection, diff, verify")
struct InspectTests {
    static func write(_ tensors: [(name: String, dtype: DType, shape: [Int], bytes: [UInt8])], config: String? = nil) -> String {
        let dir = SafetensorsFixture.temporaryDirectory()
        SafetensorsFixture.write(SafetensorsFixture.file(tensors), to: dir + "/model.safetensors")
        if let config { try! writeSmallFile(dir + "/config.json", config) }
        return dir
    }

    @Test("float Llama: groups, params, architecture")
    func floatSummary() throws {
        let dir = Self.write([
            (name: "model.embed_tokens.weight", dtype: .f32, shape: [10, 4], bytes: [UInt8](repeating: 0, count: 160)),
            (name: "model.layers.0.self_attn.q_proj.weight", dtype: .bf16, shape: [4, 4], bytes: [UInt8](repeating: 0, count: 32)),
            (name: "model.layers.0.mlp.up_proj.weight", dtype: .bf16, shape: [8, 4], bytes: [UInt8](repeating: 0, count: 64)),
            (name: "model.layers.0.input_layernorm.weight", dtype: .f32, shape: [4], bytes: [UInt8](repeating: 0, count: 16)),
        ], config: #"{"model_type":"llama","architectures":["LlamaForCausalLM"],"num_hidden_layers":1,"hidden_size":4,"num_attention_heads":2,"vocab_size":10,"tie_word_embeddings":true}"#)
        defer { removeTree(dir) }
        let s = CheckpointSummary(try Checkpoint(path: dir))
        #expect(s.format == "none")
        #expect(s.parameters == 40 + 16 + 32 + 4)
        #expect(s.architecture?.family == "llama" && s.architecture?.kvHeads == 2 && s.architecture?.headDim == 2)
        #expect(s.groups.map(\.name) == ["embeddings", "attention", "mlp", "norms"])
        #expect(s.groups.first { $0.name == "mlp" }?.bitsPerParameter == 16)
    }

    @Test("AutoAWQ GEMM, GPTQ with act-order, compressed-tensors pack-quantized and NVFP4 are recognized")
    func quantizedFormats() throws {
        let k = 128, n = 64, g = 32
        let awq = Self.write([
            (name: "model.layers.0.self_attn.q_proj.qweight", dtype: .i32, shape: [k, n / 8], bytes: [UInt8](repeating: 0, count: k * n / 2)),
            (name: "model.layers.0.self_attn.q_proj.qzeros", dtype: .i32, shape: [k / g, n / 8], bytes: [UInt8](repeating: 0, count: k / g * n / 2)),
            (name: "model.layers.0.self_attn.q_proj.scales", dtype: .f16, shape: [k / g, n], bytes: [UInt8](repeating: 0, count: k / g * n * 2)),
        ], config: #"{"quantization_config":{"quant_method":"awq","bits":4,"group_size":32,"zero_point":true,"version":"gemm"}}"#)
        defer { removeTree(awq) }
        let sa = CheckpointSummary(try Checkpoint(path: awq))
        #expect(sa.format == "awq-gemm")
        #expect(sa.quantizedParameters == k * n)
        #expect(sa.settings.contains { $0 == ("group size", "32") })
        // 4 bits of codes + (16-bit scale + 4-bit zero) per 32 weights = 4.625 bits/weight.
        #expect(abs((sa.quantizedBitsPerWeight ?? 0) - 4.625) < 1e-9)

        let perm = (0..<k).map { Int32(($0 * 7) % k / g) }
        let gptq = Self.write([
            (name: "l.qweight", dtype: .i32, shape: [k / 8, n], bytes: [UInt8](repeating: 0, count: k * n / 2)),
            (name: "l.qzeros", dtype: .i32, shape: [k / g, n / 8], bytes: [UInt8](repeating: 0, count: k / g * n / 2)),
            (name: "l.scales", dtype: .f16, shape: [k / g, n], bytes: [UInt8](repeating: 0, count: k / g * n * 2)),
            (name: "l.g_idx", dtype: .i32, shape: [k], bytes: SafetensorsFixture.bytes(perm)),
        ])
        defer { removeTree(gptq) }
        let sg = CheckpointSummary(try Checkpoint(path: gptq))
        #expect(sg.format == "gptq-v1")
        #expect(sg.settings.contains { $0 == ("act-order", "yes") })
        #expect(sg.settings.contains { $0 == ("bits", "4") })

        let ct = Self.write([
            (name: "l.weight_packed", dtype: .i32, shape: [n, k / 8], bytes: [UInt8](repeating: 0, count: k * n / 2)),
            (name: "l.weight_scale", dtype: .bf16, shape: [n, k / g], bytes: [UInt8](repeating: 0, count: n * k / g * 2)),
            (name: "l.weight_shape", dtype: .i64, shape: [2], bytes: SafetensorsFixture.bytes([Int64(n), Int64(k)])),
            (name: "m.weight_packed", dtype: .u8, shape: [n, k / 2], bytes: [UInt8](repeating: 0, count: k * n / 2)),
            (name: "m.weight_scale", dtype: .f8E4M3, shape: [n, k / 16], bytes: [UInt8](repeating: 0, count: n * k / 16)),
            (name: "m.weight_global_scale", dtype: .f32, shape: [1], bytes: [0, 0, 0x80, 0x3F]),
        ])
        defer { removeTree(ct) }
        let groups = FormatDetector.weightGroups(try Checkpoint(path: ct))
        #expect(groups.map(\.scheme) == [.packQuantized, .nvfp4PackQuantized])
        #expect(groups[0].groupSize == g && groups[0].bits == 4 && groups[0].parameters == n * k)
        #expect(groups[1].parameters == n * k)
    }

    @Test("diff: identical, changed with SQNR, dtype change, added, removed")
    func diff() throws {
        let x = values(4096, seed: 5)
        var y = x
        y[3] += 0.5
        let a = Self.write([
            (name: "same", dtype: .f32, shape: [4096], bytes: SafetensorsFixture.bytes(x)),
            (name: "moved", dtype: .f32, shape: [4096], bytes: SafetensorsFixture.bytes(x)),
            (name: "cast", dtype: .f32, shape: [4096], bytes: SafetensorsFixture.bytes(x)),
            (name: "gone", dtype: .u8, shape: [1], bytes: [1]),
        ])
        let b = Self.write([
            (name: "same", dtype: .f32, shape: [4096], bytes: SafetensorsFixture.bytes(x)),
            (name: "moved", dtype: .f32, shape: [4096], bytes: SafetensorsFixture.bytes(y)),
            (name: "cast", dtype: .bf16, shape: [4096], bytes: SafetensorsFixture.bytes(x.map { UInt16($0.bitPattern >> 16) })),
            (name: "new", dtype: .u8, shape: [1], bytes: [1]),
        ])
        defer { removeTree(a); removeTree(b) }
        let d = try CheckpointDiff(a: Checkpoint(path: a), b: Checkpoint(path: b))
        let by = Dictionary(uniqueKeysWithValues: d.differences.map { ($0.name, $0) })
        #expect(by["same"]?.status == .identical)
        #expect(by["gone"]?.status == .removed && by["new"]?.status == .added)
        #expect(by["moved"]?.status == .changed)
        #expect(abs((by["moved"]?.maxAbsDiff ?? 0) - 0.5) < 1e-6)
        let signal = x.reduce(0.0) { $0 + Double($1) * Double($1) }
        #expect(abs((by["moved"]?.sqnrDB ?? 0) - 10 * log10(signal / 0.25)) < 1e-3)
        #expect(by["cast"]?.status == .changed && (by["cast"]?.sqnrDB ?? 0) > 40)
        #expect(d.text().contains("1 identical"))
    }

    @Test("verify: clean model passes; NaN and a config mismatch are reported")
    func verify() throws {
        let config = #"{"model_type":"llama","num_hidden_layers":2,"hidden_size":4,"vocab_size":3,"tie_word_embeddings":true}"#
        var w = [Float](repeating: 0.5, count: 12)
        let good = Self.write([(name: "model.embed_tokens.weight", dtype: .f32, shape: [3, 4], bytes: SafetensorsFixture.bytes(w)),
                               (name: "model.layers.1.w", dtype: .f32, shape: [1], bytes: SafetensorsFixture.bytes([Float(1)]))], config: config)
        defer { removeTree(good) }
        #expect(try CheckpointVerifier.verify(Checkpoint(path: good)).isClean)
        w[4] = .nan
        let bad = Self.write([(name: "model.embed_tokens.weight", dtype: .f32, shape: [3, 4], bytes: SafetensorsFixture.bytes(w)),
                              (name: "model.layers.0.w", dtype: .f32, shape: [1], bytes: SafetensorsFixture.bytes([Float(1)]))], config: config)
        defer { removeTree(bad) }
        let r = try CheckpointVerifier.verify(Checkpoint(path: bad))
        #expect(r.problems.contains { $0.message == "1 NaN value" })
        #expect(r.problems.contains { $0.message.contains("num_hidden_layers 2") })
    }
}

@Suite("number formatting")
struct FormatTests {
    @Test("fixedDecimals agrees with printf's %.Nf", arguments: [0.0, 1.25, 134.515008, 538.1234, 0.05, 99.95, 12345.678, -3.14159, 1e-9, 7.0])
    func fixed(_ v: Double) {
        for d in 0...3 { #expect(fixedDecimals(v, d) == cFormat("%.\(d)f", v) || abs(v * pow(10, Double(d))).truncatingRemainder(dividingBy: 1) == 0.5) }
    }

    @Test func sizes() {
        #expect(humanCount(134_515_008) == "134.5M" && humanCount(8_030_261_248) == "8.03B" && humanCount(576) == "576")
        #expect(humanBytes(538_060_032) == "538.1 MB" && humanBytes(16_060_522_496) == "16.06 GB" && humanBytes(160) == "160 B")
    }
}
