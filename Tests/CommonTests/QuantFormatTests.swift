#if canImport(Glibc)
import Glibc
#endif
import Testing
import CKernels
@testable import Common

/// Quantizes a row-major [n, k] matrix the way qquant does (whole-tensor pass for per-tensor scales and
/// NVFP4's global scale, then RTN row by row).
func quantizeMatrix(_ w: [Float], n: Int, k: Int, scheme: QuantScheme)
    -> (codes: [UInt8], parameters: [GroupCodec.Parameters], codec: GroupCodec)
{
    let r = w.withUnsafeBufferPointer { RTN.range($0.baseAddress!, count: w.count) }
    let global = scheme.format == .nvfp4 ? GroupCodec.nvfp4GlobalScale(absmax: r.absmax) : 1
    let codec = GroupCodec(scheme: scheme, globalScale: global)
    let fixed = scheme.granularity == .tensor ? codec.parameters(minimum: r.minimum, maximum: r.maximum, absmax: r.absmax) : nil
    let gl = scheme.granularity.groupLength(k: k)
    let perRow = fixed == nil ? k / gl : 0
    var codes = [UInt8](repeating: 0, count: n * k)
    var params = [GroupCodec.Parameters](repeating: .init(scale: 0, storedScale: 0, zero: 0), count: max(1, n * perRow))
    if let fixed { params[0] = fixed }
    w.withUnsafeBufferPointer { wb in
        codes.withUnsafeMutableBufferPointer { cb in
            params.withUnsafeMutableBufferPointer { pb in
                for row in 0..<n {
                    RTN.quantizeRow(wb.baseAddress! + row * k, k: k, groupLength: gl, codec: codec, fixed: fixed,
                                    codes: cb.baseAddress! + row * k, parameters: pb.baseAddress! + row * perRow)
                }
            }
        }
    }
    return (codes, params, codec)
}

/// Dequantizes what `quantizeMatrix` produced.
func dequantizeMatrix(_ q: (codes: [UInt8], parameters: [GroupCodec.Parameters], codec: GroupCodec), n: Int, k: Int) -> [Float] {
    let gl = q.codec.scheme.granularity.groupLength(k: k)
    var out = [Float](repeating: 0, count: n * k)
    q.codes.withUnsafeBufferPointer { c in
        out.withUnsafeMutableBufferPointer { o in
            for g in 0..<(n * k / gl) {
                let p = q.codec.scheme.granularity == .tensor ? q.parameters[0] : q.parameters[g]
                q.codec.decode(c.baseAddress! + g * gl, count: gl, p, into: o.baseAddress! + g * gl)
            }
        }
    }
    return out
}

private func scheme(_ s: String) throws -> QuantScheme { try #require(try QuantScheme.parse(s)) }

@Suite("Quant number formats")
struct QuantFormatTests {
    @Test("integer RTN from a stored bf16/f16/f32 row (C kernels) equals the f32 row path, ties and clamps included",
          arguments: ["int4:g8:sym", "int4:g128:asym", "int8:g64:sym", "int3:g32:asym", "int2:channel:sym", "int8:channel:asym"])
    func storedRow(_ text: String) throws {
        let sc = try scheme(text)
        let n = 12, k = 256
        var state: UInt64 = 21
        var w: [Float] = (0..<(n * k)).map { i in
            state = state &* 6364136223846793005 &+ 1442695040888963407
            // Rows 5 on span magnitudes 2^-70 … 2^62: the encoder divides by scales outside [2^-60, 2^60]
            // and multiplies by reciprocals inside (bf16 and f16 flush or overflow some of them: so much the better).
            let magnitude: Float = i / k < 5 ? 3 : Float(sign: .plus, exponent: -70 + 19 * (i / k - 5), significand: 1)
            return (Float(state >> 40) / Float(1 << 24) - 0.5) * magnitude
        }
        // Ties: values that land exactly on a half step once their group's scale is known (absmax 7.5 → scale 1 at int4).
        for i in stride(from: 0, to: 16, by: 1) { w[i] = [7.5, -7.5, 2.5, 0.5, -0.5, 1.5, -2.5, 3.25][i % 8] }
        w[300] = 0; w[301] = -0.0
        // A row of signed zeros; NaN and infinities in others (the range kernel skips NaN in each group).
        for i in (4 * k)..<(5 * k) { w[i] = i % 3 == 0 ? -0.0 : 0 }
        w[3 * k + 17] = .nan; w[3 * k + 40] = .infinity; w[6 * k + 200] = -.infinity; w[7 * k + 5] = .nan
        let gl = sc.granularity.groupLength(k: k)
        for dtype in [DType.f32, .bf16, .f16] {
            let stored: [UInt8]
            let widened: [Float]
            switch dtype {
            case .bf16:
                let h = w.map { UInt16($0.bitPattern >> 16) }
                stored = h.withUnsafeBytes { Array($0) }
                widened = h.map { Float(bitPattern: UInt32($0) << 16) }
            case .f16:
                let h = w.map { Float16($0) }
                stored = h.withUnsafeBytes { Array($0) }
                widened = h.map { Float($0) }
            default:
                stored = w.withUnsafeBytes { Array($0) }
                widened = w
            }
            let reference = quantizeMatrix(widened, n: n, k: k, scheme: sc)
            let kind = try #require(TensorEncoding.dtype(dtype).kernelKind)
            var codes = [UInt8](repeating: 0, count: n * k)
            var params = [GroupCodec.Parameters](repeating: .init(scale: 0, storedScale: 0, zero: 0), count: n * k / gl)
            var scratch = [Float](repeating: 0, count: k)
            let rowBytes = dtype.byteCount(elements: k)!
            stored.withUnsafeBytes { src in
                codes.withUnsafeMutableBufferPointer { c in
                    params.withUnsafeMutableBufferPointer { p in
                        scratch.withUnsafeMutableBufferPointer { f in
                            for row in 0..<n {
                                RTN.quantizeStoredRow(src.baseAddress! + row * rowBytes, kind: kind, k: k, groupLength: gl,
                                                      codec: reference.codec, scratch: f.baseAddress!, codes: c.baseAddress! + row * k,
                                                      parameters: p.baseAddress! + row * (k / gl),
                                                      ahead: row + 1 < n ? src.baseAddress! + (row + 1) * rowBytes : nil)
                            }
                        }
                    }
                }
            }
            #expect(codes == reference.codes, "\(text) \(dtype)")
            #expect(params.map(\.storedScale) == reference.parameters.map(\.storedScale) && params.map(\.zero.bitPattern) == reference.parameters.map(\.zero.bitPattern))
        }
    }

    @Test("integer code kernel equals the scalar encoder for scales far below a group's range, any integer zero point, NaN",
          arguments: ["int4:g32:sym", "int4:g64:asym", "int8:g32:sym", "int8:g32:asym", "int2:g32:sym"])
    func codeKernel(_ text: String) throws {
        // Quotients up to 2^41 and beyond int16 take the kernel's float path, the others its byte narrowing and
        // clamp: both must give the scalar encoder's bytes, for f32 and bf16 rows. (Infinities are outside the
        // kernel's contract, |x| <= 2^64·|s|: RTN gives their groups an infinite scale, which divides.)
        let codec = GroupCodec(scheme: try scheme(text))
        let g = codec.scheme.granularity.groupLength(k: 4096), k = 4096, groups = k / g
        var state: UInt64 = 5
        func next() -> UInt64 { state = state &* 6364136223846793005 &+ 1442695040888963407; return state >> 33 }
        var x: [Float] = (0..<k).map { _ in Float(bitPattern: UInt32(truncatingIfNeeded: next()) & 0x3F_FF_00_00 | 0x3C_00_00_00) * (next() % 2 == 0 ? 1 : -1) }
        x[5] = .nan; x[700] = -.nan; x[1500] = -0.0; x[2000] = 0
        let scales: [Float] = (0..<groups).map { _ in Float(sign: .plus, exponent: -Int(next() % 41), significand: 1 + Float(next() % 1000) / 1000) }
        let zeros: [Float] = (0..<groups).map { _ in codec.scheme.symmetric ? 0 : Float(next() % UInt64(codec.maxCode + 1)) }
        let bf16 = x.map { UInt16($0.bitPattern >> 16) }
        for (kind, widened) in [(TensorEncoding.dtype(.f32).kernelKind!, x), (TensorEncoding.dtype(.bf16).kernelKind!, bf16.map { Float(bitPattern: UInt32($0) << 16) })] {
            var expected = [UInt8](repeating: 0, count: k), codes = [UInt8](repeating: 1, count: k)
            widened.withUnsafeBufferPointer { w in
                expected.withUnsafeMutableBufferPointer { e in
                    for gi in 0..<groups {
                        codec.encodeInteger(w.baseAddress! + gi * g, count: g, scale: scales[gi], zero: zeros[gi], into: e.baseAddress! + gi * g)
                    }
                }
            }
            let source: [UInt8] = kind == TensorEncoding.dtype(.f32).kernelKind! ? x.withUnsafeBytes { Array($0) } : bf16.withUnsafeBytes { Array($0) }
            source.withUnsafeBytes { src in
                qkit_encode_int(kind, src.baseAddress!, k, g, scales, zeros, codec.minCode, codec.maxCode, &codes, nil)
            }
            #expect(zip(codes, expected).filter { $0 != $1 }.count == 0, "\(text) kind \(kind)")
        }
    }

    @Test("INT4 symmetric, hand-worked: scale 2·absmax/15, ties to even, clamp at 7")
    func int4Symmetric() throws {
        // absmax 7.5 → scale 1: 7.5 rounds to 8 and clamps to 7; −7.5 → −8; 2.5 → 2; ±0.5 → 0; 1.5 → 2.
        let q = quantizeMatrix([7.5, -7.5, 2.5, 0.5, -0.5, 1.5, -2.5, 3.25], n: 1, k: 8, scheme: try scheme("int4:g8:sym"))
        #expect(q.codes == [7, 0xF8, 2, 0, 0, 2, 0xFE, 3])
        #expect(q.parameters[0].scale == 1 && q.parameters[0].zero == 0)
        #expect(dequantizeMatrix(q, n: 1, k: 8) == [7, -8, 2, 0, 0, 2, -2, 3])
    }

    @Test("INT4 asymmetric, hand-worked: unsigned codes, integer zero point")
    func int4Asymmetric() throws {
        // min −1, max 14 → scale 1, zero 1; codes round(x + 1) with ties to even.
        let q = quantizeMatrix([-1, 14, 6.5, 7.5, 0.5, 2, 3.5, 13.6], n: 1, k: 8, scheme: try scheme("int4:g8:asym"))
        #expect(q.codes == [0, 15, 8, 8, 2, 3, 4, 15])
        #expect(q.parameters[0].scale == 1 && q.parameters[0].zero == 1)
        // A group of positives still includes zero in its range: min 0 → zero point 0.
        let p = quantizeMatrix([1, 2, 3, 15, 4, 5, 6, 7], n: 1, k: 8, scheme: try scheme("int4:g8:asym"))
        #expect(p.parameters[0].zero == 0 && p.parameters[0].scale == 1 && p.codes == [1, 2, 3, 15, 4, 5, 6, 7])
        // All zeros: a tiny scale, zero codes, exact zeros back.
        let z = quantizeMatrix([Float](repeating: 0, count: 8), n: 1, k: 8, scheme: try scheme("int4:g8:asym"))
        #expect(z.codes.allSatisfy { $0 == 0 } && dequantizeMatrix(z, n: 1, k: 8).allSatisfy { $0 == 0 })
    }

    @Test("FP4 E2M1 ties to even; MXFP4 shared exponent floor(log2 amax) − 2 saturates")
    func fp4AndMX() throws {
        let q = quantizeMatrix([0.25, 0.75, 1.25, 1.75, 2.5, 3.5, 5, -6], n: 1, k: 8, scheme: try scheme("fp4:g8"))
        #expect(q.parameters[0].scale == 1)
        #expect(q.codes == [0, 2, 2, 4, 4, 6, 6, 0xF])
        var w = [Float](repeating: 0, count: 32)
        w[0] = 7.5; w[1] = -1.25; w[2] = 0.75
        let mx = quantizeMatrix(w, n: 1, k: 32, scheme: try scheme("mxfp4"))
        #expect(mx.parameters[0].storedScale == 127)     // 2^(2 − 2) = 1
        #expect(Array(mx.codes[0..<3]) == [7, 0xA, 2])    // 7.5 saturates to 6; −1.25 → −1; 0.75 → 1
        w[0] = 0.75
        let small = quantizeMatrix(w, n: 1, k: 32, scheme: try scheme("mxfp4"))
        #expect(small.parameters[0].storedScale == 125)   // amax 1.25: floor(log2 1.25) − 2 = −2
        let mx8 = quantizeMatrix(w, n: 1, k: 32, scheme: try scheme("mxfp8"))
        #expect(mx8.parameters[0].storedScale == 127 - 8)
        #expect(mx8.codes[1] == Conversion.float8E4M3Bits(-1.25 * 256))
    }

    @Test("every format matches compressed-tensors' codes and scales (committed fixture)")
    func peerVectors() throws {
        let here = "\(#filePath)"
        let bytes = try readSmallFile(String(here[..<here.lastIndex(of: "/")!]) + "/Fixtures/quant/vectors.json")
        let doc = try JSONParser.parse(bytes)
        let cases = try #require(doc["cases"]?.arrayValue)
        #expect(cases.count == 13)
        for c in cases {
            let name = c["name"]!.stringValue!
            let s = try scheme(c["scheme"]!.stringValue!)
            let shape = c["shape"]!.arrayValue!.map { $0.intValue! }
            let w = c["input"]!.arrayValue!.map { Float(bitPattern: UInt32($0.intValue!)) }
            let q = quantizeMatrix(w, n: shape[0], k: shape[1], scheme: s)
            #expect(q.codes == c["codes"]!.arrayValue!.map { UInt8($0.intValue!) }, "\(name): codes")
            let scales = c["scales"]!.arrayValue!.map { UInt32($0.intValue!) }
            #expect(q.parameters.map(\.storedScale) == scales, "\(name): scales")
            if let z = c["zero_points"]?.arrayValue {
                #expect(q.parameters.map(\.zero) == z.map { Float($0.intValue!) }, "\(name): zero points")
            }
            if let g = c["global_scale"]?.intValue { #expect(q.codec.globalScale.bitPattern == UInt32(g), "\(name): global scale") }
        }
    }

    @Test("round trip: every code decodes within half a step of its value", arguments: ["int2:g16:sym", "int3:g16:asym", "int4:g32:sym",
        "int8:ch:sym", "int8:tensor:asym", "fp8:ch", "fp8e5m2:tensor", "fp4:g32", "nvfp4", "mxfp4", "mxfp8"])
    func roundTrip(_ text: String) throws {
        let s = try scheme(text)
        var rng = SplitMix(seed: 7)
        let (n, k) = (3, 64)
        let w = (0..<(n * k)).map { _ in Float(rng.normal() * 0.1) }
        let q = quantizeMatrix(w, n: n, k: k, scheme: s)
        let back = dequantizeMatrix(q, n: n, k: k)
        let gl = s.granularity.groupLength(k: k)
        for i in 0..<(n * k) {
            let p = s.granularity == .tensor ? q.parameters[0] : q.parameters[i / gl]
            // Integers: half a scale step; floats: half the element spacing at the value, ≤ 2^-m of |x|/s.
            let bound: Float = if case .int = s.format { p.scale / 2 * 1.0001 } else {
                max(abs(w[i]) * (s.format.elementFormat == .e5m2 ? 0.125 : (s.bits == 4 ? 0.25 : 0.0625)), p.scale * 0.25 + 1e-30)
            }
            #expect(abs(back[i] - w[i]) <= bound * 1.0001, "\(text) element \(i): \(w[i]) → \(back[i])")
        }
    }
}

@Suite("Quant schemes and rules")
struct QuantSchemeTests {
    @Test("scheme strings parse to their meaning and print canonically")
    func parse() throws {
        #expect(try scheme("int4:g64:asym") == QuantScheme(format: .int(bits: 4), granularity: .group(64), symmetric: false))
        #expect(try scheme("INT8:ch").description == "int8:channel:sym")
        #expect(try scheme("int3:g64:hqq").description == "int3:g64:asym:hqq")
        #expect(try scheme("fp8").description == "fp8:channel")
        #expect(try scheme("fp8e4m3:tensor").format == .fp8E4M3)
        #expect(try scheme("nvfp4").description == "nvfp4:g16")
        #expect(try scheme("mxfp8:g32").granularity == .group(32))
        #expect(try QuantScheme.parse("keep") == nil)
        for bad in ["", "int9", "int1", "int4:g0", "int4:g-1", "int4:g12x", "nvfp4:g32", "mxfp4:ch", "fp8:asym", "int4:hqq:sym",
                    "int4:g64:g32", "int4:sym:asym", "keep:g64", "int4::sym", "fp4:hqq", "nvfp4:mse", "int4:tensor:mse", "int4:bogus", "q4_0"] {
            #expect(throws: SchemeError.self, "'\(bad)'") { try QuantScheme.parse(bad) }
        }
    }

    @Test("every valid scheme's canonical string parses back to it")
    func canonicalRoundTrip() throws {
        for f in QuantFormat.all {
            for g: QuantGranularity in [.tensor, .channel, .group(16), .group(32), .group(128)] {
                for sym in [true, false] {
                    for a in QuantAlgorithm.allCases {
                        let s = QuantScheme(format: f, granularity: g, symmetric: sym, algorithm: a)
                        guard (try? s.validate()) != nil else { continue }
                        #expect(try QuantScheme.parse(s.description) == s, "\(s)")
                    }
                }
            }
        }
    }

    @Test("random scheme strings never crash the parser")
    func fuzzSchemes() {
        var rng = SplitMix(seed: 11)
        let pieces = ["int", "int4", "fp8", "nvfp4", "mxfp4", "g", "g64", "g0", ":", "::", "sym", "asym", "hqq", "mse", "ch", "tensor",
                      "keep", "=", "é", "\u{0}", "9999999999999999999999", "-", " "]
        for _ in 0..<3000 {
            var s = ""
            for _ in 0..<rng.below(6) { s += pieces[rng.below(pieces.count)] }
            let parsed: QuantScheme?? = try? QuantScheme.parse(s)
            if case .some(.some(let p)) = parsed { #expect((try? QuantScheme.parse(p.description)) == .some(p)) }
        }
    }

    @Test("groups must divide K, with a hint")
    func groupCheck() throws {
        #expect(throws: SchemeError.self) { try scheme("int4:g128").check(tensor: "x.weight", k: 576) }
        do { try scheme("int4:g128").check(tensor: "x.weight", k: 576) } catch let e as SchemeError { #expect(e.description.contains("try g64")) }
        try scheme("int4:g64").check(tensor: "x.weight", k: 576)
        try scheme("int4:ch").check(tensor: "x.weight", k: 577)
    }

    @Test("default selection: decoder linears only; rules first match wins; skip wins over rules")
    func selection() throws {
        let recipe = try QuantRecipe(defaultScheme: scheme("int4:g64"),
                                     rules: [QuantRule(parsing: "down_proj=int8:ch"), QuantRule(parsing: "lm_head=fp8"),
                                             QuantRule(parsing: "layers\\.1\\.=keep"), QuantRule(parsing: "proj=int2:g16")],
                                     skipPatterns: ["layers\\.7\\.mlp"])
        #expect(recipe.scheme(for: "model.layers.0.self_attn.q_proj.weight", shape: [8, 64])?.description == "int2:g16:sym")
        #expect(recipe.scheme(for: "model.layers.0.mlp.down_proj.weight", shape: [8, 64])?.description == "int8:channel:sym")
        #expect(recipe.scheme(for: "lm_head.weight", shape: [8, 64])?.description == "fp8:channel")
        #expect(recipe.scheme(for: "model.layers.1.self_attn.q_proj.weight", shape: [8, 64]) == nil)
        #expect(recipe.scheme(for: "model.layers.7.mlp.up_proj.weight", shape: [8, 64]) == nil)
        let plain = try QuantRecipe(defaultScheme: scheme("int4:g64"))
        #expect(plain.scheme(for: "model.layers.3.mlp.gate_proj.weight", shape: [8, 64]) != nil)
        #expect(plain.scheme(for: "model.layers.3.block_sparse_moe.experts.5.w2.weight", shape: [8, 64]) != nil)
        for kept in ["model.embed_tokens.weight", "lm_head.weight", "model.norm.weight", "model.layers.3.input_layernorm.weight",
                     "model.layers.3.mlp.gate.weight", "model.layers.3.self_attn.q_proj.bias"] {
            #expect(plain.scheme(for: kept, shape: [8, 64]) == nil, "\(kept)")
        }
        #expect(plain.scheme(for: "model.layers.3.mlp.gate_proj.weight", shape: [64]) == nil)
    }

    @Test("rules files: comments, blank lines, '=' inside the pattern, errors with the line number")
    func rulesFile() throws {
        let rules = try QuantRule.parseFile("# comment\n\n  q_proj = int8:ch  \nx=y=int4:g32\r\nlm_head=keep\n", path: "r.txt")
        #expect(rules.map(\.description) == ["q_proj=int8:channel:sym", "x=y=int4:g32:sym", "lm_head=keep"])
        #expect(rules[1].matches("ax=yb"))
        for (text, line) in [("ok=int4\nbroken\n", 2), ("=int4", 1), ("a=int4\n\nb=int12", 3), ("(=int4", 1)] {
            do {
                _ = try QuantRule.parseFile(text, path: "r.txt")
                Issue.record("'\(text)' was accepted")
            } catch {
                #expect(error.message.hasPrefix("r.txt:\(line):"), "\(error.message)")
            }
        }
        var rng = SplitMix(seed: 3)
        let alphabet = Array("ab.=\\*+()[]^$#:\n \tint4g64fp8keep")
        for _ in 0..<2000 {
            let s = String((0..<rng.below(40)).map { _ in alphabet[rng.below(alphabet.count)] })
            _ = try? QuantRule.parseFile(s, path: "f")
        }
    }

    @Test("bits per weight count codes, scales, zero points and the global scale")
    func bitsPerWeight() throws {
        #expect(try scheme("int4:g128:sym").bitsPerWeight(n: 8, k: 128) == 4 + 32.0 / 128)
        #expect(try scheme("int4:g128:asym").bitsPerWeight(n: 8, k: 128) == 4 + 36.0 / 128)
        #expect(try scheme("mxfp4").bitsPerWeight(n: 8, k: 64) == 4.25)
        #expect(try scheme("nvfp4").bitsPerWeight(n: 1, k: 16) == 4 + 0.5 + 2)
    }
}

extension SplitMix {
    /// A uniform integer in 0..<n.
    mutating func below(_ n: Int) -> Int { n <= 0 ? 0 : Int(next() % UInt64(n)) }
    /// A standard normal value (Box–Muller).
    mutating func normal() -> Double {
        let u = max(nextDouble(), 1e-300), v = nextDouble()
        return (-2 * log(u)).squareRoot() * cos(2 * Double.pi * v)
    }
}
