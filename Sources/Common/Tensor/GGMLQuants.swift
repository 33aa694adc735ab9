/// The element types of ggml tensors (GGUF tensor-info `type`), with ggml's numeric ids.
///
/// Ids follow `enum ggml_type` in ggml-org/ggml `include/ggml.h`; 4, 5 and 31–33, 36–38 were removed
/// upstream and are not valid in a GGUF file. Block sizes and bytes per block follow the block structs of
/// `src/ggml-common.h` (`QK_K` = 256).
public enum GGMLType: UInt32, CaseIterable, Sendable {
    case f32 = 0
    case f16 = 1
    case q4_0 = 2
    case q4_1 = 3
    case q5_0 = 6
    case q5_1 = 7
    case q8_0 = 8
    case q8_1 = 9
    case q2_K = 10
    case q3_K = 11
    case q4_K = 12
    case q5_K = 13
    case q6_K = 14
    case q8_K = 15
    case iq2_XXS = 16
    case iq2_XS = 17
    case iq3_XXS = 18
    case iq1_S = 19
    case iq4_NL = 20
    case iq3_S = 21
    case iq2_S = 22
    case iq4_XS = 23
    case i8 = 24
    case i16 = 25
    case i32 = 26
    case i64 = 27
    case f64 = 28
    case iq1_M = 29
    case bf16 = 30
    case tq1_0 = 34
    case tq2_0 = 35
    case mxfp4 = 39
    case nvfp4 = 40
    case q1_0 = 41
    case q2_0 = 42

    /// The name llama.cpp prints (`Q4_K`, `F16`, `IQ2_XXS`, `MXFP4`).
    public var name: String {
        switch self {
        case .f32: "F32"
        case .f16: "F16"
        case .q4_0: "Q4_0"
        case .q4_1: "Q4_1"
        case .q5_0: "Q5_0"
        case .q5_1: "Q5_1"
        case .q8_0: "Q8_0"
        case .q8_1: "Q8_1"
        case .q2_K: "Q2_K"
        case .q3_K: "Q3_K"
        case .q4_K: "Q4_K"
        case .q5_K: "Q5_K"
        case .q6_K: "Q6_K"
        case .q8_K: "Q8_K"
        case .iq2_XXS: "IQ2_XXS"
        case .iq2_XS: "IQ2_XS"
        case .iq3_XXS: "IQ3_XXS"
        case .iq1_S: "IQ1_S"
        case .iq4_NL: "IQ4_NL"
        case .iq3_S: "IQ3_S"
        case .iq2_S: "IQ2_S"
        case .iq4_XS: "IQ4_XS"
        case .i8: "I8"
        case .i16: "I16"
        case .i32: "I32"
        case .i64: "I64"
        case .f64: "F64"
        case .iq1_M: "IQ1_M"
        case .bf16: "BF16"
        case .tq1_0: "TQ1_0"
        case .tq2_0: "TQ2_0"
        case .mxfp4: "MXFP4"
        case .nvfp4: "NVFP4"
        case .q1_0: "Q1_0"
        case .q2_0: "Q2_0"
        }
    }

    /// The type named `name` (case-insensitive), or `nil`.
    public init?(name: String) {
        let u = name.uppercased()
        guard let t = GGMLType.allCases.first(where: { $0.name == u }) else { return nil }
        self = t
    }

    /// Elements per block (1 for plain types).
    public var blockSize: Int {
        switch self {
        case .f32, .f16, .bf16, .f64, .i8, .i16, .i32, .i64: 1
        case .q4_0, .q4_1, .q5_0, .q5_1, .q8_0, .q8_1, .iq4_NL, .mxfp4: 32
        case .nvfp4, .q2_0: 64
        case .q1_0: 128
        case .q2_K, .q3_K, .q4_K, .q5_K, .q6_K, .q8_K, .iq2_XXS, .iq2_XS, .iq3_XXS, .iq1_S, .iq3_S, .iq2_S,
            .iq4_XS, .iq1_M, .tq1_0, .tq2_0:
            256
        }
    }

    /// Bytes per block (`sizeof(block_…)` in ggml-common.h).
    public var typeSize: Int {
        switch self {
        case .f32: 4
        case .f16, .bf16: 2
        case .f64, .i64: 8
        case .i8: 1
        case .i16: 2
        case .i32: 4
        case .q4_0: 18
        case .q4_1: 20
        case .q5_0: 22
        case .q5_1: 24
        case .q8_0: 34
        case .q8_1: 36
        case .q2_K: 84
        case .q3_K: 110
        case .q4_K: 144
        case .q5_K: 176
        case .q6_K: 210
        case .q8_K: 292
        case .iq2_XXS: 66
        case .iq2_XS: 74
        case .iq3_XXS: 98
        case .iq1_S: 50
        case .iq4_NL: 18
        case .iq3_S: 110
        case .iq2_S: 82
        case .iq4_XS: 136
        case .iq1_M: 56
        case .tq1_0: 54
        case .tq2_0: 66
        case .mxfp4: 17
        case .nvfp4: 36
        case .q1_0: 18
        case .q2_0: 18
        }
    }

    /// Storage bits per weight, scales included (`Q4_K` = 4.5).
    public var bitsPerWeight: Double { Double(typeSize * 8) / Double(blockSize) }

    /// Whether the type is block-quantized (not a plain float or integer type).
    public var isQuantized: Bool { blockSize > 1 }

    /// Whether `GGMLQuants.dequantize` decodes this type.
    public var canDequantize: Bool {
        switch self {
        case .f32, .f16, .bf16, .f64, .i8, .i16, .i32, .i64, .q4_0, .q4_1, .q5_0, .q5_1, .q8_0, .q2_K, .q3_K,
            .q4_K, .q5_K, .q6_K:
            true
        default: false
        }
    }

    /// Bytes of `elements` values, or `nil` if `elements` is not a whole number of blocks or the size overflows.
    public func byteCount(elements: Int) -> Int? {
        guard elements >= 0, elements % blockSize == 0 else { return nil }
        let (n, o) = (elements / blockSize).multipliedReportingOverflow(by: typeSize)
        return o ? nil : n
    }
}

/// Why a block buffer could not be decoded or encoded.
public enum GGMLQuantsError: QKitError, Equatable {
    case unsupportedType(GGMLType)
    case notWholeBlocks(type: GGMLType, elements: Int)
    case wrongByteCount(type: GGMLType, expected: Int, actual: Int)

    public var exitStatus: ExitStatus { .dataError }
    public var description: String {
        switch self {
        case .unsupportedType(let t): "ggml type \(t.name) cannot be dequantized by this version of qkit"
        case .notWholeBlocks(let t, let n): "\(n) elements are not a whole number of \(t.name) blocks of \(t.blockSize)"
        case .wrongByteCount(let t, let e, let a): "\(t.name) data has \(a) bytes, \(e) expected"
        }
    }
}

/// Decoding (and reference encoding) of ggml's block formats, bit-exact with ggml's scalar
/// `dequantize_row_*` and `quantize_row_*_ref` (ggml-org/ggml `src/ggml-quants.c`): every product is
/// evaluated in `Float` in the same order as the C code, without fused multiply-add.
public enum GGMLQuants {
    /// Decodes `dst.count` values of `type` from `src`. `dst.count` must be a multiple of the block size and
    /// `src` exactly the bytes of those blocks.
    public static func dequantize(_ type: GGMLType, _ src: UnsafeRawBufferPointer, into dst: UnsafeMutableBufferPointer<Float>) throws(GGMLQuantsError) {
        let n = dst.count
        guard type.canDequantize else { throw .unsupportedType(type) }
        guard let bytes = type.byteCount(elements: n) else { throw .notWholeBlocks(type: type, elements: n) }
        guard src.count == bytes else { throw .wrongByteCount(type: type, expected: bytes, actual: src.count) }
        guard n > 0, let s = src.baseAddress, let y = dst.baseAddress else { return }
        let nb = n / type.blockSize
        switch type {
        case .f32: y.update(from: s.assumingMemoryBound(to: Float.self), count: n)
        case .f16: for i in 0..<n { y[i] = half(s, 2 * i) }
        case .bf16: for i in 0..<n { y[i] = Float(bitPattern: UInt32(s.loadUnaligned(fromByteOffset: 2 * i, as: UInt16.self)) << 16) }
        case .f64: for i in 0..<n { y[i] = Float(s.loadUnaligned(fromByteOffset: 8 * i, as: Double.self)) }
        case .i8: for i in 0..<n { y[i] = Float(s.load(fromByteOffset: i, as: Int8.self)) }
        case .i16: for i in 0..<n { y[i] = Float(s.loadUnaligned(fromByteOffset: 2 * i, as: Int16.self)) }
        case .i32: for i in 0..<n { y[i] = Float(s.loadUnaligned(fromByteOffset: 4 * i, as: Int32.self)) }
        case .i64: for i in 0..<n { y[i] = Float(s.loadUnaligned(fromByteOffset: 8 * i, as: Int64.self)) }
        case .q4_0: q4_0(s, y, nb)
        case .q4_1: q4_1(s, y, nb)
        case .q5_0: q5(s, y, nb, withMin: false)
        case .q5_1: q5(s, y, nb, withMin: true)
        case .q8_0: q8_0(s, y, nb)
        case .q2_K: q2_K(s, y, nb)
        case .q3_K: q3_K(s, y, nb)
        case .q4_K: q4_K(s, y, nb)
        case .q5_K: q5_K(s, y, nb)
        case .q6_K: q6_K(s, y, nb)
        default: throw .unsupportedType(type)
        }
    }

    @inline(__always)
    static func half(_ p: UnsafeRawPointer, _ offset: Int) -> Float {
        Float(Float16(bitPattern: p.loadUnaligned(fromByteOffset: offset, as: UInt16.self)))
    }

    @inline(__always)
    static func byte(_ p: UnsafeRawPointer, _ offset: Int) -> UInt8 { p.load(fromByteOffset: offset, as: UInt8.self) }

    private static func q4_0(_ s: UnsafeRawPointer, _ y: UnsafeMutablePointer<Float>, _ nb: Int) {
        for b in 0..<nb {
            let p = s + 18 * b, o = y + 32 * b
            let d = half(p, 0)
            for j in 0..<16 {
                let q = byte(p, 2 + j)
                o[j] = Float(Int32(q & 0x0F) - 8) * d
                o[j + 16] = Float(Int32(q >> 4) - 8) * d
            }
        }
    }

    private static func q4_1(_ s: UnsafeRawPointer, _ y: UnsafeMutablePointer<Float>, _ nb: Int) {
        for b in 0..<nb {
            let p = s + 20 * b, o = y + 32 * b
            let d = half(p, 0), m = half(p, 2)
            for j in 0..<16 {
                let q = byte(p, 4 + j)
                o[j] = Float(q & 0x0F) * d + m
                o[j + 16] = Float(q >> 4) * d + m
            }
        }
    }

    private static func q5(_ s: UnsafeRawPointer, _ y: UnsafeMutablePointer<Float>, _ nb: Int, withMin: Bool) {
        let size = withMin ? 24 : 22
        let qhAt = withMin ? 4 : 2
        for b in 0..<nb {
            let p = s + size * b, o = y + 32 * b
            let d = half(p, 0)
            let qh = p.loadUnaligned(fromByteOffset: qhAt, as: UInt32.self)
            if withMin {
                let m = half(p, 2)
                for j in 0..<16 {
                    let q = UInt32(byte(p, qhAt + 4 + j))
                    let h0 = ((qh >> UInt32(j)) << 4) & 0x10
                    let h1 = (qh >> UInt32(j + 12)) & 0x10
                    o[j] = Float((q & 0x0F) | h0) * d + m
                    o[j + 16] = Float((q >> 4) | h1) * d + m
                }
            } else {
                for j in 0..<16 {
                    let q = UInt32(byte(p, qhAt + 4 + j))
                    let h0 = ((qh >> UInt32(j)) << 4) & 0x10
                    let h1 = (qh >> UInt32(j + 12)) & 0x10
                    o[j] = Float(Int32((q & 0x0F) | h0) - 16) * d
                    o[j + 16] = Float(Int32((q >> 4) | h1) - 16) * d
                }
            }
        }
    }

    private static func q8_0(_ s: UnsafeRawPointer, _ y: UnsafeMutablePointer<Float>, _ nb: Int) {
        for b in 0..<nb {
            let p = s + 34 * b, o = y + 32 * b
            let d = half(p, 0)
            for j in 0..<32 { o[j] = Float(p.load(fromByteOffset: 2 + j, as: Int8.self)) * d }
        }
    }

    // block_q2_K: scales[16], qs[64], d, dmin
    private static func q2_K(_ s: UnsafeRawPointer, _ y: UnsafeMutablePointer<Float>, _ nb: Int) {
        for b in 0..<nb {
            let p = s + 84 * b
            var o = y + 256 * b
            let d = half(p, 80), mn = half(p, 82)
            var q = p + 16
            var isc = 0
            for _ in 0..<2 {
                var shift: UInt8 = 0
                for _ in 0..<4 {
                    for half16 in 0..<2 {
                        let sc = byte(p, isc); isc += 1
                        let dl = d * Float(sc & 0xF), ml = mn * Float(sc >> 4)
                        for l in 0..<16 { o[l] = dl * Float((byte(q, l + 16 * half16) >> shift) & 3) - ml }
                        o += 16
                    }
                    shift += 2
                }
                q += 32
            }
        }
    }

    // block_q3_K: hmask[32], qs[64], scales[12], d
    private static func q3_K(_ s: UnsafeRawPointer, _ y: UnsafeMutablePointer<Float>, _ nb: Int) {
        let kmask1: UInt32 = 0x0303_0303, kmask2: UInt32 = 0x0f0f_0f0f
        var scales = [Int8](repeating: 0, count: 16)
        for b in 0..<nb {
            let p = s + 110 * b
            var o = y + 256 * b
            let dAll = half(p, 108)
            let a0 = p.loadUnaligned(fromByteOffset: 96, as: UInt32.self)
            let a1 = p.loadUnaligned(fromByteOffset: 100, as: UInt32.self)
            let tmp = p.loadUnaligned(fromByteOffset: 104, as: UInt32.self)
            let aux0 = (a0 & kmask2) | (((tmp >> 0) & kmask1) << 4)
            let aux1 = (a1 & kmask2) | (((tmp >> 2) & kmask1) << 4)
            let aux2 = ((a0 >> 4) & kmask2) | (((tmp >> 4) & kmask1) << 4)
            let aux3 = ((a1 >> 4) & kmask2) | (((tmp >> 6) & kmask1) << 4)
            for i in 0..<4 {
                let sh = UInt32(8 * i)
                scales[i] = Int8(bitPattern: UInt8(truncatingIfNeeded: aux0 >> sh))
                scales[4 + i] = Int8(bitPattern: UInt8(truncatingIfNeeded: aux1 >> sh))
                scales[8 + i] = Int8(bitPattern: UInt8(truncatingIfNeeded: aux2 >> sh))
                scales[12 + i] = Int8(bitPattern: UInt8(truncatingIfNeeded: aux3 >> sh))
            }
            let hm = p
            var q = p + 32
            var isc = 0
            var m: UInt8 = 1
            for _ in 0..<2 {
                var shift: UInt8 = 0
                for _ in 0..<4 {
                    for half16 in 0..<2 {
                        let dl = dAll * Float(Int32(scales[isc]) - 32); isc += 1
                        for l in 0..<16 {
                            let k = l + 16 * half16
                            let lo = Int32((byte(q, k) >> shift) & 3)
                            let hi: Int32 = byte(hm, k) & m != 0 ? 0 : 4
                            o[l] = dl * Float(lo - hi)
                        }
                        o += 16
                    }
                    shift += 2
                    m <<= 1
                }
                q += 32
            }
        }
    }

    /// The 6-bit scale and min of sub-block `j` of a Q4_K/Q5_K block (ggml's get_scale_min_k4).
    @inline(__always)
    static func scaleMinK4(_ j: Int, _ q: UnsafeRawPointer) -> (UInt8, UInt8) {
        if j < 4 { return (byte(q, j) & 63, byte(q, j + 4) & 63) }
        let d = (byte(q, j + 4) & 0xF) | ((byte(q, j - 4) >> 6) << 4)
        let m = (byte(q, j + 4) >> 4) | ((byte(q, j) >> 6) << 4)
        return (d, m)
    }

    // block_q4_K: d, dmin, scales[12], qs[128]
    private static func q4_K(_ s: UnsafeRawPointer, _ y: UnsafeMutablePointer<Float>, _ nb: Int) {
        for b in 0..<nb {
            let p = s + 144 * b
            var o = y + 256 * b
            let d = half(p, 0), mn = half(p, 2)
            let sc = p + 4
            var q = p + 16
            for j in 0..<4 {
                let (s1, m1b) = scaleMinK4(2 * j, sc), (s2, m2b) = scaleMinK4(2 * j + 1, sc)
                let d1 = d * Float(s1), m1 = mn * Float(m1b)
                let d2 = d * Float(s2), m2 = mn * Float(m2b)
                for l in 0..<32 { o[l] = d1 * Float(byte(q, l) & 0xF) - m1 }
                for l in 0..<32 { o[32 + l] = d2 * Float(byte(q, l) >> 4) - m2 }
                o += 64
                q += 32
            }
        }
    }

    // block_q5_K: d, dmin, scales[12], qh[32], qs[128]
    private static func q5_K(_ s: UnsafeRawPointer, _ y: UnsafeMutablePointer<Float>, _ nb: Int) {
        for b in 0..<nb {
            let p = s + 176 * b
            var o = y + 256 * b
            let d = half(p, 0), mn = half(p, 2)
            let sc = p + 4, qh = p + 16
            var ql = p + 48
            var u1: UInt8 = 1, u2: UInt8 = 2
            for j in 0..<4 {
                let (s1, m1b) = scaleMinK4(2 * j, sc), (s2, m2b) = scaleMinK4(2 * j + 1, sc)
                let d1 = d * Float(s1), m1 = mn * Float(m1b)
                let d2 = d * Float(s2), m2 = mn * Float(m2b)
                for l in 0..<32 { o[l] = d1 * Float((byte(ql, l) & 0xF) + (byte(qh, l) & u1 != 0 ? 16 : 0)) - m1 }
                for l in 0..<32 { o[32 + l] = d2 * Float((byte(ql, l) >> 4) + (byte(qh, l) & u2 != 0 ? 16 : 0)) - m2 }
                o += 64
                ql += 32
                u1 <<= 2
                u2 <<= 2
            }
        }
    }

    // block_q6_K: ql[128], qh[64], scales[16] (int8), d
    private static func q6_K(_ s: UnsafeRawPointer, _ y: UnsafeMutablePointer<Float>, _ nb: Int) {
        for b in 0..<nb {
            let p = s + 210 * b
            var o = y + 256 * b
            let d = half(p, 208)
            var ql = p, qh = p + 128, sc = p + 192
            for _ in 0..<2 {
                for l in 0..<32 {
                    let isc = l / 16
                    let a = byte(ql, l), c = byte(ql, l + 32), h = byte(qh, l)
                    let q1 = Int32((a & 0xF) | ((h & 3) << 4)) - 32
                    let q2 = Int32((c & 0xF) | (((h >> 2) & 3) << 4)) - 32
                    let q3 = Int32((a >> 4) | (((h >> 4) & 3) << 4)) - 32
                    let q4 = Int32((c >> 4) | (((h >> 6) & 3) << 4)) - 32
                    o[l] = d * Float(sc.load(fromByteOffset: isc, as: Int8.self)) * Float(q1)
                    o[l + 32] = d * Float(sc.load(fromByteOffset: isc + 2, as: Int8.self)) * Float(q2)
                    o[l + 64] = d * Float(sc.load(fromByteOffset: isc + 4, as: Int8.self)) * Float(q3)
                    o[l + 96] = d * Float(sc.load(fromByteOffset: isc + 6, as: Int8.self)) * Float(q4)
                }
                o += 128
                ql += 64
                qh += 32
                sc += 8
            }
        }
    }

    // MARK: - Reference quantizers (quantize_row_*_ref)

    /// The types `quantize` encodes.
    public static let quantizable: Set<GGMLType> = [.q4_0, .q4_1, .q5_0, .q8_0, .q4_K, .q6_K]

    /// Encodes `src` (a whole number of blocks) as Q4_0, Q4_1, Q5_0, Q8_0, Q4_K or Q6_K blocks into `dst`,
    /// byte-exact with ggml's reference quantizers (`quantize_row_<type>_ref` in ggml-quants.c, what
    /// llama-quantize runs without an importance matrix), the float operations in the same order.
    public static func quantize(_ type: GGMLType, _ src: UnsafeBufferPointer<Float>, into dst: UnsafeMutableRawBufferPointer) throws(GGMLQuantsError) {
        let n = src.count
        guard quantizable.contains(type) else { throw .unsupportedType(type) }
        guard let bytes = type.byteCount(elements: n) else { throw .notWholeBlocks(type: type, elements: n) }
        guard dst.count == bytes else { throw .wrongByteCount(type: type, expected: bytes, actual: dst.count) }
        guard n > 0, let x = src.baseAddress, let out = dst.baseAddress else { return }
        switch type {
        case .q4_K:
            for b in 0..<n / 256 { KQuants.q4_K(x + 256 * b, out + 144 * b) }
            return
        case .q6_K:
            for b in 0..<n / 256 { KQuants.q6_K(x + 256 * b, out + 210 * b) }
            return
        case .q5_0:
            for b in 0..<n / 32 { q5_0Block(x + 32 * b, out + 22 * b) }
            return
        default: break
        }
        for b in 0..<n / 32 {
            let v = x + 32 * b
            switch type {
            case .q4_0:
                let p = out + 18 * b
                var amax: Float = 0, mx: Float = 0
                for j in 0..<32 where amax < abs(v[j]) { amax = abs(v[j]); mx = v[j] }
                let d = mx / -8
                let id: Float = d != 0 ? 1 / d : 0
                p.storeBytes(of: Float16(d).bitPattern, as: UInt16.self)
                for j in 0..<16 {
                    let q0 = truncatedCode(v[j] * id + 8.5), q1 = truncatedCode(v[j + 16] * id + 8.5)
                    p.storeBytes(of: q0 | (q1 << 4), toByteOffset: 2 + j, as: UInt8.self)
                }
            case .q4_1:
                let p = out + 20 * b
                var mn = Float.greatestFiniteMagnitude, mx = -Float.greatestFiniteMagnitude
                for j in 0..<32 {
                    if v[j] < mn { mn = v[j] }
                    if v[j] > mx { mx = v[j] }
                }
                let d = (mx - mn) / 15
                let id: Float = d != 0 ? 1 / d : 0
                p.storeBytes(of: Float16(d).bitPattern, as: UInt16.self)
                p.storeBytes(of: Float16(mn).bitPattern, toByteOffset: 2, as: UInt16.self)
                for j in 0..<16 {
                    let q0 = truncatedCode((v[j] - mn) * id + 0.5), q1 = truncatedCode((v[j + 16] - mn) * id + 0.5)
                    p.storeBytes(of: q0 | (q1 << 4), toByteOffset: 4 + j, as: UInt8.self)
                }
            default:
                let p = out + 34 * b
                var amax: Float = 0
                for j in 0..<32 { amax = max(amax, abs(v[j])) }
                let d = amax / 127
                let id: Float = d != 0 ? 1 / d : 0
                p.storeBytes(of: Float16(d).bitPattern, as: UInt16.self)
                for j in 0..<32 {
                    let r = (v[j] * id).rounded()  // roundf: half away from zero
                    let q = r.isNaN ? 0 : Int8(max(-128, min(127, r)))
                    p.storeBytes(of: q, toByteOffset: 2 + j, as: Int8.self)
                }
            }
        }
    }

    /// `quantize_row_q5_0_ref` for one block of 32.
    private static func q5_0Block(_ v: UnsafePointer<Float>, _ p: UnsafeMutableRawPointer) {
        var amax: Float = 0, mx: Float = 0
        for j in 0..<32 where amax < abs(v[j]) { amax = abs(v[j]); mx = v[j] }
        let d = mx / -16
        let id: Float = d != 0 ? 1 / d : 0
        p.storeBytes(of: Float16(d).bitPattern, as: UInt16.self)
        var qh: UInt32 = 0
        for j in 0..<16 {
            let q0 = fiveBitCode(v[j] * id + 16.5), q1 = fiveBitCode(v[j + 16] * id + 16.5)
            p.storeBytes(of: (q0 & 0xF) | ((q1 & 0xF) << 4), toByteOffset: 6 + j, as: UInt8.self)
            qh |= UInt32(q0 >> 4) << UInt32(j)
            qh |= UInt32(q1 >> 4) << UInt32(j + 16)
        }
        p.storeBytes(of: qh, toByteOffset: 2, as: UInt32.self)
    }

    /// `MIN(31, (int8_t)x)` for 0 ≤ x < 32.5.
    @inline(__always)
    private static func fiveBitCode(_ x: Float) -> UInt8 {
        let t = x.rounded(.towardZero)
        guard t > 0 else { return 0 }
        return UInt8(min(31, t))
    }

    /// `MIN(15, (int8_t)x)` for the values the 4-bit reference quantizers produce (0 ≤ x < 16.5).
    @inline(__always)
    private static func truncatedCode(_ x: Float) -> UInt8 {
        let t = x.rounded(.towardZero)
        guard t > 0 else { return 0 }
        return UInt8(min(15, t))
    }
}
