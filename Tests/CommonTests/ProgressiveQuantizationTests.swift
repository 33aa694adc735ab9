import Testing
@testable import Common

@Suite("Progressive group quantization (QServe): int8 intermediate, integer level-1 scales and zeros")
struct ProgressiveQuantizationTests {
    @Test("level-1 parameters, hand-worked; the zero clamp keeps every grid point in int8")
    func groupParameters() {
        // s0 = 1: the intermediate is the weight itself.
        let a = ProgressiveQuantization.groupParameters(minimum: -30, maximum: 60, rowScale: 1, bits: 4)
        #expect(a == GroupCodec.Parameters(scale: 6, storedScale: 6, zero: 5))   // 90/15 = 6, 30/6 = 5
        // The full protective range: s1 = round(238/15) = 16; round(119/16) = 7 would put (15 − 7)·16 = 128 on the
        // grid, so z is clamped to 8: the grid is (q − 8)·16 ∈ [−128, 112].
        let b = ProgressiveQuantization.groupParameters(minimum: -119, maximum: 119, rowScale: 1, bits: 4)
        #expect(b == GroupCodec.Parameters(scale: 16, storedScale: 16, zero: 8))
        // Positive values only: the range is widened to 0; s1 = round(119/15) = 8, z = 0, grid up to 120.
        let c = ProgressiveQuantization.groupParameters(minimum: 3, maximum: 119, rowScale: 1, bits: 4)
        #expect(c == GroupCodec.Parameters(scale: 8, storedScale: 8, zero: 0))
        // A tiny range: s1 is at least 1.
        let d = ProgressiveQuantization.groupParameters(minimum: -0.5, maximum: 0.25, rowScale: 0.5, bits: 4)
        #expect(d.storedScale == 1 && d.scale == 0.5 && d.zero == 1)
        // Every group of every range: the whole grid fits in [−128, 127].
        for lo in stride(from: -119, through: 0, by: 7) {
            for hi in stride(from: 0, through: 119, by: 7) {
                let p = ProgressiveQuantization.groupParameters(minimum: Float(lo), maximum: Float(hi), rowScale: 1, bits: 4)
                let s1 = Float(p.storedScale)
                #expect(-p.zero * s1 >= -128 && (15 - p.zero) * s1 <= 127, "[\(lo), \(hi)]: s1 \(s1) z \(p.zero)")
                #expect(s1 >= 1 && s1 <= 16 && p.zero >= 0 && p.zero <= 15)
            }
        }
    }

    @Test("a whole weight, hand-worked: codes, I8 scales, U8 zeros, F32 row scales; dequantized into int8 × s0")
    func weight() throws {
        // Row 0: absmax 119 → s0 = 1. Group [119, −30, 60, 0]: s1 = round(149/15) = 10, z = 3 → codes 15, 0, 9, 3 →
        // 120, −30, 60, 0. Group [10, −5, 2.5, 1]: s1 = 1, z = 5 → codes 15, 0, 8 (7.5, ties to even), 6 → 10, −5, 3, 1.
        // Row 1 = row 0 / 2: s0 = 0.5, the same codes.
        let row: [Float] = [119, -30, 60, 0, 10, -5, 2.5, 1]
        let w = row + row.map { $0 / 2 }
        let scheme = try #require(try QuantScheme.parse("int4:g4:prog"))
        #expect(scheme.description == "int4:g4:asym:prog" && scheme.scaleDType == .i8 && scheme.zeroPointDType == .u8)
        let q = w.withUnsafeBufferPointer { QuantizedWeight.quantize($0.baseAddress!, rows: 2, columns: 8, scheme: scheme) }
        #expect(q.codes == [15, 0, 9, 3, 15, 0, 8, 6, 15, 0, 9, 3, 15, 0, 8, 6])
        #expect(q.rowScales == [1, 0.5])
        var out = [Float](repeating: 0, count: 16)
        out.withUnsafeMutableBufferPointer { q.dequantize(into: $0.baseAddress!) }
        let row0: [Float] = [120, -30, 60, 0, 10, -5, 3, 1]
        #expect(out == row0 + row0.map { $0 / 2 })
        let tensors = q.tensors(prefix: "m")
        #expect(tensors.map(\.spec.name) == ["m.weight_q", "m.weight_scale", "m.weight_zero_point", "m.weight_scale_2"])
        #expect(tensors.map(\.spec.dtype) == [.u8, .i8, .u8, .f32])
        #expect(tensors[1].bytes == [10, 1, 10, 1] && tensors[2].bytes == [3, 5, 3, 5] && tensors[3].spec.shape == [2, 1])
        // Bits per weight: 4 (codes) + (8 + 4)/G (scale, zero) + 32/K (row scale).
        #expect(abs(scheme.bitsPerWeight(n: 2, k: 8) - (4 + 12.0 / 4 + 32.0 / 8)) < 1e-12)
    }

    @Test("scheme strings: prog goes with asymmetric int2-4 groups only")
    func schemes() throws {
        for bad in ["int8:g128:prog", "int4:g128:sym:prog", "int4:ch:prog", "fp8:prog", "int4:g128:mse:prog", "int4:prog:prog"] {
            #expect(throws: SchemeError.self, "\(bad)") { try QuantScheme.parse(bad) }
        }
        #expect(try QuantScheme.parse("int4:prog")?.granularity == .group(128))
    }

    @Test("qquant rtn with a prog rule: the checkpoint stores both levels and reads back exactly; fake gives the same values")
    func checkpoint() throws {
        let scratch = ScratchDirectory("prog")
        let source = modelFixtureDirectory() + "/llama3"
        let scheme = try #require(try QuantScheme.parse("int4:g32:prog"))
        var options = QuantizeOptions(recipe: try QuantRecipe(defaultScheme: scheme))
        _ = try QKitQuantizer.run(model: source, output: scratch.path + "/real", options: options)
        options.fake = true
        _ = try QKitQuantizer.run(model: source, output: scratch.path + "/fake", options: options)
        let ck = try Checkpoint(path: scratch.path + "/real")
        let name = "model.layers.1.mlp.down_proj"
        #expect(ck[name + ".weight_scale"]?.encoding == .dtype(.i8) && ck[name + ".weight_scale_2"]?.shape == [64, 1])
        let real = try QKitWeights(ck), fake = try openWeights(path: scratch.path + "/fake"), float = try openWeights(path: source)
        let shape = try real.shape(of: name + ".weight")
        var a = [Float](repeating: 0, count: shape[0] * shape[1]), b = a, f = a
        try a.withUnsafeMutableBufferPointer { try real.readFloat32(name + ".weight", rows: 0..<shape[0], into: $0) }
        try b.withUnsafeMutableBufferPointer { try fake.readFloat32(name + ".weight", rows: 0..<shape[0], into: $0) }
        try f.withUnsafeMutableBufferPointer { try float.readFloat32(name + ".weight", rows: 0..<shape[0], into: $0) }
        #expect(a == b)
        let q = f.withUnsafeBufferPointer { QuantizedWeight.quantize($0.baseAddress!, rows: shape[0], columns: shape[1], scheme: scheme) }
        var c = a
        c.withUnsafeMutableBufferPointer { q.dequantize(into: $0.baseAddress!) }
        #expect(a == c)
        // Every value is an int8 times its row's scale; the error is at most half a step beyond the clamp to the
        // group's grid (an integer s1 may make the grid slightly narrower than the group's range).
        for r in 0..<shape[0] {
            let s0 = q.rowScales![r]
            for i in 0..<shape[1] {
                let v = a[r * shape[1] + i] / s0
                #expect(abs(v - v.rounded()) < 1e-3 && abs(v) <= 128)
                let p = q.parameters(row: r, group: i / 32)
                let x = f[r * shape[1] + i], clamped = min(max(x, -p.zero * p.scale), (15 - p.zero) * p.scale)
                #expect(abs(a[r * shape[1] + i] - x) <= abs(clamped - x) + p.scale / 2 * 1.001)
            }
        }
    }
}
