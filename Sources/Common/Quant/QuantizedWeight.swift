/// One linear weight quantized in memory: codes (one byte per element, original column order), the group
/// parameters and NVFP4's global scale. What the calibrated algorithms produce and the qkit checkpoint stores
/// as `P.weight_q`, `P.weight_scale`, `P.weight_zero_point`, `P.weight_global_scale` (`man 5 qkit`).
public struct QuantizedWeight: Sendable {
    public let scheme: QuantScheme
    public let rows: Int
    public let columns: Int
    /// `rows × columns` code bytes.
    public var codes: [UInt8]
    /// One entry per (row, group) row-major, or a single one for a per-tensor scheme.
    public var parameters: [GroupCodec.Parameters]
    /// NVFP4's global scale (a divisor), 1 otherwise.
    public var globalScale: Float
    /// SVDQuant's input smoothing and low-rank branch (`P.smooth`, `P.lora_down`, `P.lora_up`), when the codes
    /// quantize a smoothed residual.
    public var lowRank: LowRankParts?

    /// The unfolded smoothing and low-rank branch of a W4A4 linear: `y = Q_a(x / smooth)·Ŵᵀ + (x·downᵀ)·upᵀ`.
    public struct LowRankParts: Sendable {
        /// `[K]`, stored F32.
        public var smooth: [Float]
        /// `[rank, K]` row-major, acting on the unsmoothed input.
        public var down: [Float]
        /// `[N, rank]` row-major.
        public var up: [Float]
        public var rank: Int
        /// Stored type of `down` and `up` (F16 or BF16).
        public var dtype: DType
        public init(smooth: [Float], down: [Float], up: [Float], rank: Int, dtype: DType) {
            self.smooth = smooth
            self.down = down
            self.up = up
            self.rank = rank
            self.dtype = dtype
        }
    }

    /// Rows `rows` of this weight (codes, parameters, and `up` rows of the branch; smooth and down shared): one
    /// linear of a fused q/k/v or gate/up product.
    public func slice(rows r: Range<Int>) -> QuantizedWeight {
        let gpr = groupsPerRow
        var q = QuantizedWeight(scheme: scheme, rows: r.count, columns: columns, codes: Array(codes[(r.lowerBound * columns)..<(r.upperBound * columns)]),
                                parameters: gpr == 0 ? parameters : Array(parameters[(r.lowerBound * gpr)..<(r.upperBound * gpr)]),
                                globalScale: globalScale)
        if var l = lowRank {
            l.up = Array(l.up[(r.lowerBound * l.rank)..<(r.upperBound * l.rank)])
            q.lowRank = l
        }
        return q
    }

    public init(scheme: QuantScheme, rows: Int, columns: Int, codes: [UInt8], parameters: [GroupCodec.Parameters], globalScale: Float) {
        self.scheme = scheme
        self.rows = rows
        self.columns = columns
        self.codes = codes
        self.parameters = parameters
        self.globalScale = globalScale
    }

    /// Elements per group.
    public var groupLength: Int { scheme.granularity.groupLength(k: columns) }
    /// Groups per row (0 for a per-tensor scheme).
    public var groupsPerRow: Int { scheme.granularity == .tensor ? 0 : columns / groupLength }

    /// The parameters of group `g` of row `r`.
    public func parameters(row r: Int, group g: Int) -> GroupCodec.Parameters {
        groupsPerRow == 0 ? parameters[0] : parameters[r * groupsPerRow + g]
    }

    /// The dequantized weight (`rows × columns` f32) into `out`.
    public func dequantize(into out: UnsafeMutablePointer<Float>) {
        let codec = GroupCodec(scheme: scheme, globalScale: globalScale)
        let gl = groupLength, gpr = max(1, groupsPerRow), k = columns
        nonisolated(unsafe) let out = out
        codes.withUnsafeBufferPointer { c in
            nonisolated(unsafe) let c = c.baseAddress!
            parallelFor((rows + 63) / 64) { t in
                for r in (t * 64)..<min(rows, (t + 1) * 64) {
                    for g in 0..<gpr {
                        codec.decode(c + r * k + g * gl, count: gl, parameters(row: r, group: g), into: out + r * k + g * gl)
                    }
                }
            }
        }
    }

    /// RTN (or the MSE search, or HQQ, as the scheme's algorithm says) of an f32 `[rows, columns]` weight.
    /// `clip`, when given, holds one range factor per (row, group) (AWQ's clipping search): each group is
    /// clamped to ±factor·absmax before its range is taken.
    public static func quantize(_ w: UnsafePointer<Float>, rows n: Int, columns k: Int, scheme: QuantScheme,
                                hqq: HQQ.Settings = HQQ.Settings(), clip: [Float]? = nil) -> QuantizedWeight {
        let gl = scheme.granularity.groupLength(k: k)
        let gpr = scheme.granularity == .tensor ? 0 : k / gl
        var codes = [UInt8](repeating: 0, count: n * k)
        var params = [GroupCodec.Parameters](repeating: GroupCodec.Parameters(scale: 0, storedScale: 0, zero: 0), count: max(1, n * gpr))
        var globalScale: Float = 1
        var fixed: GroupCodec.Parameters?
        if scheme.granularity == .tensor || scheme.format == .nvfp4 {
            let r = RTN.range(w, count: n * k)
            if scheme.format == .nvfp4 { globalScale = GroupCodec.nvfp4GlobalScale(absmax: r.absmax) }
            if scheme.granularity == .tensor {
                fixed = GroupCodec(scheme: scheme).parameters(minimum: r.minimum, maximum: r.maximum, absmax: r.absmax)
                params[0] = fixed!
            }
        }
        let codec = GroupCodec(scheme: scheme, globalScale: globalScale)
        codes.withUnsafeMutableBufferPointer { cb in
            params.withUnsafeMutableBufferPointer { pb in
                nonisolated(unsafe) let (c, p, w) = (cb.baseAddress!, pb.baseAddress!, w)
                if scheme.algorithm == .hqq {
                    HQQ.quantize(w, n: n, k: k, groupLength: gl, bits: scheme.bits, settings: hqq, codes: c, parameters: p)
                    return
                }
                let pool = ScratchPool(byteCount: gl)
                parallelFor((n + 7) / 8) { t in
                    pool.withBuffer { raw in
                        let scratch = raw.assumingMemoryBound(to: UInt8.self)
                        for r in (t * 8)..<min(n, (t + 1) * 8) {
                            let row = w + r * k
                            if let clip {
                                for g in 0..<gpr {
                                    let x = row + g * gl
                                    let range = RTN.range(x, count: gl)
                                    let m = clip[r * gpr + g] * range.absmax
                                    let q = codec.parameters(minimum: max(range.minimum, -m), maximum: min(range.maximum, m), absmax: min(range.absmax, m))
                                    p[r * gpr + g] = q
                                    codec.encode(x, count: gl, q, into: c + r * k + g * gl)
                                }
                            } else if scheme.algorithm == .mse {
                                MSEClip.quantizeRow(row, k: k, groupLength: gl, codec: codec, codes: c + r * k,
                                                    parameters: p + r * gpr, scratch: scratch)
                            } else {
                                RTN.quantizeRow(row, k: k, groupLength: gl, codec: codec, fixed: fixed, codes: c + r * k,
                                                parameters: p + r * gpr)
                            }
                        }
                    }
                }
            }
        }
        return QuantizedWeight(scheme: scheme, rows: n, columns: k, codes: codes, parameters: params, globalScale: globalScale)
    }

    /// The qkit tensors of this weight for module `prefix` (`P.weight_q`, `P.weight_scale`, and as the scheme
    /// needs `P.weight_zero_point`, `P.weight_global_scale`), with their bytes.
    public func tensors(prefix p: String) -> [(spec: TensorSpec, bytes: [UInt8])] {
        let (n, k) = (rows, columns)
        var out: [(TensorSpec, [UInt8])] = [(TensorSpec(name: p + ".weight_q", dtype: scheme.codeDType, shape: [n, k]), codes)]
        let shape = scheme.scaleShape(n: n, k: k)
        for (i, bytes) in Self.parameterBytes(parameters, scheme: scheme, globalScale: globalScale).enumerated() {
            let spec: TensorSpec = switch i {
            case 0: TensorSpec(name: p + ".weight_scale", dtype: scheme.format.info.scaleDType, shape: shape)
            case 1 where scheme.zeroPointDType != nil: TensorSpec(name: p + ".weight_zero_point", dtype: scheme.zeroPointDType!, shape: shape)
            default: TensorSpec(name: p + ".weight_global_scale", dtype: .f32, shape: [1])
            }
            out.append((spec, bytes))
        }
        if let l = lowRank {
            out.append((TensorSpec(name: p + ".smooth", dtype: .f32, shape: [k]), l.smooth.withUnsafeBytes { Array($0) }))
            for (name, values, shape) in [("lora_down", l.down, [l.rank, k]), ("lora_up", l.up, [n, l.rank])] where l.rank > 0 {
                var bytes = [UInt8](repeating: 0, count: l.dtype.byteCount(elements: values.count)!)
                values.withUnsafeBufferPointer { v in bytes.withUnsafeMutableBytes { Conversion.encode(v, as: l.dtype, into: $0) } }
                out.append((TensorSpec(name: p + "." + name, dtype: l.dtype, shape: shape), bytes))
            }
        }
        return out
    }

    /// The stored bytes of group parameters, in output order: scales (F32, or the F8_E4M3/E8M0 code bytes),
    /// then zero points (U8 integers or F32) when the scheme has them, then NVFP4's F32 global scale.
    public static func parameterBytes(_ parameters: [GroupCodec.Parameters], scheme: QuantScheme, globalScale: Float) -> [[UInt8]] {
        let width = scheme.format.info.scaleDType == .f32 ? 4 : 1
        var scales = [UInt8](repeating: 0, count: parameters.count * width)
        scales.withUnsafeMutableBytes { out in
            for (i, p) in parameters.enumerated() {
                if width == 4 {
                    out.storeBytes(of: p.storedScale.littleEndian, toByteOffset: 4 * i, as: UInt32.self)
                } else {
                    out[i] = UInt8(truncatingIfNeeded: p.storedScale)
                }
            }
        }
        var result = [scales]
        if let z = scheme.zeroPointDType {
            result.append(z == .u8 ? parameters.map { UInt8($0.zero) } : parameters.map(\.zero).withUnsafeBytes { Array($0) })
        }
        if scheme.format == .nvfp4 { result.append(withUnsafeBytes(of: globalScale) { Array($0) }) }
        return result
    }
}
