/// `qpack --to nunchaku` for diffusers transformers: a qkit checkpoint of FLUX.1 or SANA (from `qquant`, RTN or
/// SVDQuant) written as Nunchaku's single-file model — the per-block module names of Nunchaku's C++ models
/// (mit-han-lab/nunchaku: src/FluxModel.cpp, src/SanaModel.cpp; deepcompressor: backend/nunchaku/convert.py), the W4A4
/// tile layout of `NunchakuLayout`, and the non-block tensors under their diffusers names (Nunchaku loads those into
/// the diffusers model). One `diffusion_pytorch_model.safetensors` whose metadata holds `config` (the transformer's
/// config.json), `model_class` and `quantization_config`, as `nunchaku.merge_safetensors` writes them.
///
/// FLUX, per `transformer_blocks.N`: `norm1.linear`, `norm1_context.linear` (W4A16, GEMV_AWQ: `qweight` I32
/// `[N/4, K/2]` in TinyChat's order, `wscales`/`wzeros` `[K/64, N]` in the model dtype, `bias`; rows interleaved over the
/// 6 modulation chunks and +1 added to the bias of the two scale chunks, as deepcompressor's `adanorm_zero`);
/// `qkv_proj` = to_q ‖ to_k ‖ to_v, `qkv_proj_context` = add_q_proj ‖ add_k_proj ‖ add_v_proj, `out_proj` = to_out.0,
/// `out_proj_context` = to_add_out, `mlp_fc1/2` = ff.net.0.proj / ff.net.2, `mlp_context_fc1/2` = ff_context…;
/// `norm_q`, `norm_k`, `norm_added_q`, `norm_added_k` (RMSNorm weights, float). Per `single_transformer_blocks.N`:
/// `norm.linear` (W4A16, 3 chunks), `qkv_proj`, `mlp_fc1` = proj_mlp, and diffusers' `proj_out` [d, d + 4d] split
/// along K into `out_proj` (attention part, with the bias) and `mlp_fc2` (MLP part, zero bias); `norm_q`, `norm_k`.
///
/// SANA, per `transformer_blocks.N`: `attn.qkv_proj` = attn1.to_q ‖ to_k ‖ to_v, each padded to ⌈d/128⌉·128 rows;
/// `attn.out_proj` = attn1.to_out.0; `cross_attn.q_linear` = attn2.to_q; `cross_attn.kv_linear` = attn2.to_k ‖ to_v in
/// 16-bit (`weight`, `bias`); `cross_attn.out_proj` = attn2.to_out.0; `ff.inverted_conv` = conv_inverted (value and
/// gate halves each padded to Nunchaku's width ⌈round(mlp_ratio·d)/64⌉·64), `ff.depth_conv` = conv_depth as
/// `[C, 3, 3, 1]`, `ff.point_conv` = conv_point (K padded alike); `scale_shift_table`.
///
/// W4A4 linears (`NunchakuLayout`): `qweight`, `wscales` (+ `wtscale` for NVFP4), `bias` (zeros when none),
/// `smooth`, `smooth_orig` (ones when the linear has no smoothing), `lora_down`/`lora_up` (rank 0 — Nunchaku's "no
/// low-rank branch" — for a plain RTN checkpoint). Fused linears must have been quantized together (`qquant` does):
/// one smoothing and one NVFP4 global scale; their low-rank branches are concatenated (a shared `lora_down` once,
/// else stacked with `lora_up` block-diagonal). Nunchaku has no PixArt model: PixArt-Σ is refused (exit 69).
public enum NunchakuDiffusionPacker {
    /// One piece of a target linear: rows of a qkit linear (optionally a column range of it) placed at a row offset.
    struct Piece {
        var source: String
        /// Source rows taken (all of them when nil).
        var rows: Range<Int>? = nil
        var rowOffset: Int
        /// Source columns taken (all of them when nil); they land at target column 0.
        var columns: Range<Int>?
        var keepsBias = true
    }

    /// A Nunchaku module built from qkit linears.
    struct Target {
        enum Kind { case w4a4, adanorm(splits: Int) }
        var name: String
        var kind: Kind
        var n: Int, k: Int
        var pieces: [Piece]
    }

    /// A float tensor written under a Nunchaku name: source tensors concatenated along rows, zero-padded to `shape`.
    struct FloatTarget {
        var name: String
        var shape: [Int]
        /// (source tensor, its elements taken (all when nil), first element in the target).
        var pieces: [(String, Range<Int>?, Int)]
    }

    /// Why a family cannot be packed for Nunchaku (exit 69).
    public struct Unavailable: QKitError, Equatable {
        public var file: String
        public var message: String
        public var exitStatus: ExitStatus { .unavailable }
        public var path: String? { file }
        public var description: String { message }
    }

    /// Nunchaku's modules for a FLUX or SANA checkpoint: quantized targets, float targets, and the source tensors
    /// they consume.
    static func mapping(_ d: DiTDescriptor, _ ck: Checkpoint) throws -> (targets: [Target], floats: [FloatTarget], consumed: Set<String>) {
        var targets: [Target] = []
        var floats: [FloatTarget] = []
        var consumed = Set<String>()
        func lin(_ p: String) -> DiTLinear { d.linears.first { $0.prefix == p }! }
        func w4(_ name: String, _ sources: [String], n: Int? = nil, offsets: [Int]? = nil, k: Int? = nil) {
            let ls = sources.map(lin)
            var pieces: [Piece] = []
            var row = 0
            for (i, l) in ls.enumerated() {
                pieces.append(Piece(source: l.prefix, rowOffset: offsets?[i] ?? row))
                row += l.n
            }
            targets.append(Target(name: name, kind: .w4a4, n: n ?? row, k: k ?? ls[0].k, pieces: pieces))
        }
        func rename(_ from: String, _ to: String) {
            guard let t = ck[from] else { return }
            floats.append(FloatTarget(name: to, shape: t.shape, pieces: [(from, nil, 0)]))
            consumed.insert(from)
        }
        switch d.family {
        case FluxTransformer.family:
            let dim = d.hidden
            for (list, count) in d.blockLists {
                for i in 0..<count {
                    let p = "\(list).\(i)"
                    if list == "transformer_blocks" {
                        for m in ["norm1", "norm1_context"] {
                            let l = lin("\(p).\(m).linear")
                            targets.append(Target(name: "\(p).\(m).linear", kind: .adanorm(splits: l.n / dim), n: l.n, k: l.k,
                                                  pieces: [Piece(source: l.prefix, rowOffset: 0)]))
                        }
                        w4("\(p).qkv_proj", ["to_q", "to_k", "to_v"].map { "\(p).attn.\($0)" })
                        w4("\(p).qkv_proj_context", ["add_q_proj", "add_k_proj", "add_v_proj"].map { "\(p).attn.\($0)" })
                        w4("\(p).out_proj", ["\(p).attn.to_out.0"])
                        w4("\(p).out_proj_context", ["\(p).attn.to_add_out"])
                        w4("\(p).mlp_fc1", ["\(p).ff.net.0.proj"])
                        w4("\(p).mlp_fc2", ["\(p).ff.net.2"])
                        w4("\(p).mlp_context_fc1", ["\(p).ff_context.net.0.proj"])
                        w4("\(p).mlp_context_fc2", ["\(p).ff_context.net.2"])
                        for x in ["norm_q", "norm_k", "norm_added_q", "norm_added_k"] { rename("\(p).attn.\(x).weight", "\(p).\(x).weight") }
                    } else {
                        let l = lin("\(p).norm.linear")
                        targets.append(Target(name: "\(p).norm.linear", kind: .adanorm(splits: 3), n: l.n, k: l.k, pieces: [Piece(source: l.prefix, rowOffset: 0)]))
                        w4("\(p).qkv_proj", ["to_q", "to_k", "to_v"].map { "\(p).attn.\($0)" })
                        w4("\(p).mlp_fc1", ["\(p).proj_mlp"])
                        let out = lin("\(p).proj_out")
                        targets.append(Target(name: "\(p).out_proj", kind: .w4a4, n: out.n, k: dim,
                                              pieces: [Piece(source: out.prefix, rowOffset: 0, columns: 0..<dim)]))
                        targets.append(Target(name: "\(p).mlp_fc2", kind: .w4a4, n: out.n, k: out.k - dim,
                                              pieces: [Piece(source: out.prefix, rowOffset: 0, columns: dim..<out.k, keepsBias: false)]))
                        for x in ["norm_q", "norm_k"] { rename("\(p).attn.\(x).weight", "\(p).\(x).weight") }
                    }
                }
            }
        case SanaTransformer.family:
            let dim = d.hidden, pad = NunchakuLayout.padded(dim, 128)
            let cfg = DiTConfig(json: ck.config ?? .null, path: ck.path)
            let nunchakuHidden = NunchakuLayout.padded(Int((try cfg.double("mlp_ratio", default: 2.5) * Double(dim)).rounded()), 64)
            for i in 0..<d.blockCount {
                let p = "transformer_blocks.\(i)"
                if ck["\(p).attn1.norm_q.weight"] != nil {
                    throw Unavailable(file: ck.path, message: "\(p).attn1.norm_q: Nunchaku's SANA model has no q/k norms (SANA 1.5); only SANA 1.0 packs")
                }
                w4("\(p).attn.qkv_proj", ["to_q", "to_k", "to_v"].map { "\(p).attn1.\($0)" }, n: 3 * pad, offsets: [0, pad, 2 * pad])
                w4("\(p).attn.out_proj", ["\(p).attn1.to_out.0"], k: pad)
                w4("\(p).cross_attn.q_linear", ["\(p).attn2.to_q"])
                w4("\(p).cross_attn.out_proj", ["\(p).attn2.to_out.0"])
                let kx = lin("\(p).attn2.to_k"), vx = lin("\(p).attn2.to_v")
                floats.append(FloatTarget(name: "\(p).cross_attn.kv_linear.weight", shape: [kx.n + vx.n, kx.k],
                                          pieces: [(kx.prefix + ".weight", nil, 0), (vx.prefix + ".weight", nil, kx.n * kx.k)]))
                if ck[kx.prefix + ".bias"] != nil, ck[vx.prefix + ".bias"] != nil {
                    floats.append(FloatTarget(name: "\(p).cross_attn.kv_linear.bias", shape: [kx.n + vx.n],
                                              pieces: [(kx.prefix + ".bias", nil, 0), (vx.prefix + ".bias", nil, kx.n)]))
                }
                consumed.formUnion([kx.prefix + ".weight", vx.prefix + ".weight", kx.prefix + ".bias", vx.prefix + ".bias"])
                let inv = lin("\(p).ff.conv_inverted"), h = inv.n / 2
                guard h <= nunchakuHidden else {
                    throw PackError.unsupported(path: ck.path, backend: "nunchaku", what: "\(inv.prefix): FFN width \(h) above Nunchaku's \(nunchakuHidden) (from mlp_ratio)")
                }
                targets.append(Target(name: "\(p).ff.inverted_conv", kind: .w4a4, n: 2 * nunchakuHidden, k: inv.k,
                                      pieces: [Piece(source: inv.prefix, rows: 0..<h, rowOffset: 0), Piece(source: inv.prefix, rows: h..<(2 * h), rowOffset: nunchakuHidden)]))
                w4("\(p).ff.point_conv", ["\(p).ff.conv_point"], k: nunchakuHidden)
                let depth = "\(p).ff.conv_depth"
                floats.append(FloatTarget(name: "\(p).ff.depth_conv.weight", shape: [2 * nunchakuHidden, 3, 3, 1],
                                          pieces: [(depth + ".weight", 0..<(9 * h), 0), (depth + ".weight", (9 * h)..<(18 * h), 9 * nunchakuHidden)]))
                floats.append(FloatTarget(name: "\(p).ff.depth_conv.bias", shape: [2 * nunchakuHidden], pieces: [(depth + ".bias", 0..<h, 0), (depth + ".bias", h..<(2 * h), nunchakuHidden)]))
                consumed.formUnion([depth + ".weight", depth + ".bias"])
            }
        default:
            throw Unavailable(file: ck.path, message: "Nunchaku has no \(d.className) model (it runs FLUX.1 and SANA); keep the qkit checkpoint")
        }
        return (targets, floats, consumed)
    }
}

extension NunchakuDiffusionPacker {
    /// A W4A4 target assembled in canonical form (unpadded; `NunchakuLayout` pads).
    struct Assembled {
        var n: Int, k: Int
        var scheme: QuantScheme
        /// `[n, k]` canonical codes (INT4: unsigned u = q + 8; NVFP4: E2M1 nibbles).
        var codes: [UInt8]
        /// `[n, k / g]` scale values; NVFP4: before the global divisor.
        var scales: [Float]
        var zeros: [UInt8]?
        var globalScale: Float
        var bias: [Float]
        var smooth: [Float]
        var loraDown: [Float]
        var loraUp: [Float]
        var rank: Int
    }

    /// Gathers a target's pieces from the qkit linears.
    /// A W4A4 target's K is padded to a multiple of 128 (zero codes, unit scales and smoothing), so that `wscales`
    /// has the `Kp/G` rows Nunchaku's `GEMM_W4A4` allocates (also for NVFP4, whose scale groups `pad_scale` would
    /// otherwise round to a multiple of 4 only).
    static func assemble(_ target: Target, _ source: PackSource, _ plans: [String: LinearPlan], _ ck: Checkpoint) throws -> Assembled {
        var t = target
        if case .w4a4 = t.kind { t.k = NunchakuLayout.padded(t.k, NunchakuLayout.padK) }
        func fail(_ what: String) -> PackError { PackError.unsupported(path: ck.path, backend: "nunchaku", what: "\(t.name): \(what)") }
        var scheme: QuantScheme?
        var out: Assembled?
        var downs: [(rows: [Float], rank: Int)] = []
        var ups: [(values: [Float], rank: Int, rowOffset: Int, rows: Int)] = []
        var smoothSet = false
        for piece in t.pieces {
            guard let plan = plans[piece.source] else {
                throw fail("\(piece.source) is not quantized (Nunchaku runs it in 4 bits: quantize it, or --skip nothing there)")
            }
            if let scheme, scheme != plan.scheme { throw fail("\(piece.source) is \(plan.scheme), the rest \(scheme) (quantize fused linears alike)") }
            scheme = plan.scheme
            guard !plan.hasGroupIndex else { throw fail("act-order (g_idx)") }
            let g = plan.scheme.granularity.groupLength(k: plan.k)
            let q = try source.linear(plan)
            let rows = piece.rows ?? 0..<plan.n
            let cols = piece.columns ?? 0..<plan.k
            guard cols.lowerBound % g == 0, cols.count % g == 0, t.k % g == 0 else { throw fail("columns \(cols) do not split at whole groups of \(g)") }
            if out == nil {
                let nvfp4 = plan.scheme.format == .nvfp4
                out = Assembled(n: t.n, k: t.k, scheme: plan.scheme, codes: [UInt8](repeating: nvfp4 ? 0 : 8, count: t.n * t.k),
                                scales: [Float](repeating: 1, count: t.n * (t.k / g)), zeros: q.zeros == nil ? nil : [UInt8](repeating: 8, count: t.n * (t.k / g)),
                                globalScale: q.globalScale, bias: [Float](repeating: 0, count: t.n), smooth: [Float](repeating: 1, count: t.k),
                                loraDown: [], loraUp: [], rank: 0)
            }
            guard out!.globalScale == q.globalScale else { throw fail("NVFP4 global scales differ between pieces (quantize fused linears together)") }
            let (gk, tg) = (plan.k / g, t.k / g)
            for (i, r) in rows.enumerated() {
                let tr = piece.rowOffset + i
                for (j, c) in cols.enumerated() { out!.codes[tr * t.k + j] = q.codes[r * plan.k + c] }
                for j in 0..<(cols.count / g) {
                    let sg = cols.lowerBound / g + j
                    out!.scales[tr * tg + j] = q.scales[(q.scaleRows == 1 ? 0 : r) * gk + sg]
                    if let z = q.zeros { out!.zeros![tr * tg + j] = z[(q.scaleRows == 1 ? 0 : r) * gk + sg] }
                }
            }
            if piece.keepsBias, let b = ck[piece.source + ".bias"] {
                let v = try readFloats(ck, b)
                for (i, r) in rows.enumerated() { out!.bias[piece.rowOffset + i] = v[r] }
            }
            let smooth = try ck[piece.source + ".smooth"].map { try readFloats(ck, $0) }.map { Array($0[cols]) } ?? [Float](repeating: 1, count: cols.count)
            if smoothSet {
                guard Array(out!.smooth[0..<cols.count]) == smooth else { throw fail("pieces have different smoothing (quantize fused linears together)") }
            } else {
                for (j, v) in smooth.enumerated() { out!.smooth[j] = v }
                smoothSet = true
            }
            if let down = ck[piece.source + ".lora_down"], let up = ck[piece.source + ".lora_up"] {
                let r = down.shape[0]
                let dv = try readFloats(ck, down), uv = try readFloats(ck, up)
                var ds = [Float](repeating: 0, count: r * t.k)
                for i in 0..<r { for (j, c) in cols.enumerated() { ds[i * t.k + j] = dv[i * plan.k + c] } }
                var us = [Float](repeating: 0, count: rows.count * r)
                for (i, row) in rows.enumerated() { for j in 0..<r { us[i * r + j] = uv[row * r + j] } }
                downs.append((ds, r))
                ups.append((us, r, piece.rowOffset, rows.count))
            }
        }
        var a = out!
        // One shared lora_down (fused linears quantized together), else stacked with a block-diagonal lora_up.
        if let first = downs.first {
            let shared = downs.allSatisfy { $0.rows == first.rows } && downs.count == t.pieces.count
            a.rank = shared ? first.rank : downs.reduce(0) { $0 + $1.rank }
            a.loraDown = shared ? first.rows : downs.flatMap(\.rows)
            a.loraUp = [Float](repeating: 0, count: t.n * a.rank)
            var column = 0
            for u in ups {
                for i in 0..<u.rows { for j in 0..<u.rank { a.loraUp[(u.rowOffset + i) * a.rank + column + j] = u.values[i * u.rank + j] } }
                if !shared { column += u.rank }
            }
        }
        return a
    }

    /// The W4A4 tensors of an assembled target, in `NunchakuPacker.Plan.outputs` order.
    static func packW4A4(_ name: String, _ a: Assembled, dtype: DType) -> [(TensorSpec, [UInt8])] {
        let g = a.scheme.granularity.groupLength(k: a.k)
        let p = NunchakuPacker.Plan(plan: LinearPlan(prefix: name, scheme: a.scheme, n: a.n, k: a.k, groups: a.k / g, scaleRows: a.n,
                                                     hasGroupIndex: false, unsupportedParts: []), rank: a.rank)
        let (n, k, kp, rp, np) = (a.n, a.k, p.kp, p.rp, p.np)
        func channels(_ v: [Float], padded: Int) -> [Float] {
            var o = [Float](repeating: 1, count: padded)
            for i in 0..<v.count { o[(i / 128) * 128 + NunchakuLayout.scalePosition(i % 128)] = v[i] }
            return o
        }
        var bytes = NunchakuPacker.weightTensors(p, codes: a.codes, scales: a.scales, realGroups: k / g, globalScale: a.globalScale, dtype: dtype)
        var bias = channels(a.bias, padded: np)
        for i in n..<np { bias[(i / 128) * 128 + NunchakuLayout.scalePosition(i % 128)] = 0 }
        bytes.append(NunchakuPacker.encode(bias, dtype))
        let smooth = NunchakuPacker.encode(channels(a.smooth, padded: kp), dtype)
        bytes += [smooth, smooth]
        var d = [Float](repeating: 0, count: kp * rp), u = [Float](repeating: 0, count: np * rp)
        for i in 0..<a.rank { for j in 0..<k { d[NunchakuLayout.lowRankIndex(i: i, j: j, rows: rp, columns: kp, down: true)] = a.loraDown[i * k + j] } }
        for i in 0..<n { for j in 0..<a.rank { u[NunchakuLayout.lowRankIndex(i: i, j: j, rows: np, columns: rp, down: false)] = a.loraUp[i * a.rank + j] } }
        bytes += [NunchakuPacker.encode(d, dtype), NunchakuPacker.encode(u, dtype)]
        return Array(zip(p.outputs(dtype), bytes))
    }

    /// The W4A16 (GEMV_AWQ) tensors of an AdaLN modulation linear: rows interleaved over `splits` chunks, TinyChat's
    /// nibble order, `wscales`/`wzeros` `[⌈K/64⌉, N]` with `W = u·wscales + wzeros`, bias +1 on the scale chunks.
    static func packAdaNorm(_ name: String, _ a: Assembled, splits: Int, dtype: DType, path: String) throws -> [(TensorSpec, [UInt8])] {
        let (n, k) = (a.n, a.k)
        guard case .int(4) = a.scheme.format, a.scheme.granularity == .group(64), let zeros = a.zeros else {
            throw PackError.unsupported(path: path, backend: "nunchaku", what: "\(name): \(a.scheme) (Nunchaku's AdaLN GEMV takes int4:g64, e.g. --rule 'norm1?(_context)?\\.linear=int4:g64')")
        }
        guard n % (4 * splits) == 0, k % 64 == 0 else { throw PackError.unsupported(path: path, backend: "nunchaku", what: "\(name): [\(n), \(k)] (GEMV_AWQ needs N % 4 = 0, K % 64 = 0)") }
        let chunk = n / splits, groups = k / 64
        // New row i·splits + j holds old row j·chunk + i.
        func old(_ r: Int) -> Int { (r % splits) * chunk + r / splits }
        var words = [UInt16](repeating: 0, count: n / 4 * k)
        var scales = [Float](repeating: 0, count: groups * n), wz = [Float](repeating: 0, count: groups * n), bias = [Float](repeating: 0, count: n)
        for r in 0..<n {
            let o = old(r)
            for c in 0..<k {
                let (w, nib) = TinyChatLayout.position(n: r, k: c, columns: k)
                words[w] |= UInt16(a.codes[o * k + c] & 0xF) << UInt16(4 * nib)
            }
            for j in 0..<groups {
                let s = dtype.rounding(a.scales[o * groups + j])
                scales[j * n + r] = s
                wz[j * n + r] = -s * Float(zeros[o * groups + j])
            }
            let chunkIndex = r % splits
            bias[r] = a.bias[o] + (chunkIndex == 1 || chunkIndex == splits - 2 ? 1 : 0)
        }
        let qweight = words.withUnsafeBytes { Array($0) }
        return [(TensorSpec(name: name + ".qweight", dtype: .i32, shape: [n / 4, k / 2]), qweight),
                (TensorSpec(name: name + ".wscales", dtype: dtype, shape: [groups, n]), NunchakuPacker.encode(scales, dtype)),
                (TensorSpec(name: name + ".wzeros", dtype: dtype, shape: [groups, n]), NunchakuPacker.encode(wz, dtype)),
                (TensorSpec(name: name + ".bias", dtype: dtype, shape: [n]), NunchakuPacker.encode(bias, dtype))]
    }

    /// Whether `input` is a diffusers transformer checkpoint (this packer's, not `NunchakuPacker`'s).
    public static func handles(_ input: String) -> Bool {
        guard input != "-", let ck = try? Checkpoint(path: input) else { return false }
        return DiffusionTransformers.isDiffusers(ck)
    }

    /// Packs a qkit checkpoint of a FLUX.1 or SANA transformer into Nunchaku's single-file model in `output`.
    public static func run(input: String, output: String, log: ((String) -> Void)? = nil) throws -> PackReport {
        let start = monotonicSeconds()
        let ck = try Checkpoint(path: input)
        let method = ck.config?["quantization_config"]?["quant_method"]?.stringValue
        guard method == "qkit" else {
            if let method { throw PackError.usage("\(input): input quantized as '\(method)' (nunchaku packs qkit checkpoints)") }
            throw PackError.unsupported(path: input, backend: "nunchaku", what: "a float model: quantize it first (qquant --group 64, --format nvfp4 or --algo svdquant)")
        }
        let d = try DiffusionTransformers.describe(ck)
        let (targets, floats, floatConsumed) = try mapping(d, ck)
        let source = try PackSource(ck)
        let plans = Dictionary(uniqueKeysWithValues: source.linears.map { ($0.prefix, $0) })
        let dtype = NunchakuPacker.modelDType(ck.config)

        var packed: [(TensorSpec, [UInt8])] = []
        var consumed = floatConsumed
        var formats = Set<Bool>(), ranks = Set<Int>()
        for t in targets {
            let a = try assemble(t, source, plans, ck)
            for piece in t.pieces {
                consumed.insert(piece.source + ".bias")
                for (name, owner) in source.owners where owner == piece.source { consumed.insert(name) }
            }
            switch t.kind {
            case .w4a4:
                guard a.scheme.format == .nvfp4 || (a.scheme.format == .int(bits: 4) && a.scheme.symmetric && a.scheme.granularity == .group(64)) else {
                    throw PackError.unsupported(path: input, backend: "nunchaku", what: "\(t.name): \(a.scheme) (Nunchaku's W4A4 kernels take int4:g64:sym or nvfp4)")
                }
                formats.insert(a.scheme.format == .nvfp4)
                ranks.insert(NunchakuLayout.padded(a.rank, NunchakuLayout.rankTile))
                packed += packW4A4(t.name, a, dtype: dtype)
            case .adanorm(let splits):
                packed += try packAdaNorm(t.name, a, splits: splits, dtype: dtype, path: input)
            }
            log?("\(t.name) ← \(t.pieces.map(\.source).joined(separator: " ‖ ")) [\(t.n), \(t.k)] \(a.scheme)\(a.rank > 0 ? " rank \(a.rank)" : "")")
        }
        if formats.count > 1 { throw PackError.unsupported(path: input, backend: "nunchaku", what: "int4 and nvfp4 linears in one model") }
        if ranks.count > 1 { throw PackError.unsupported(path: input, backend: "nunchaku", what: "low-rank branches of ranks \(ranks.sorted()) (one rank per model)") }
        for f in floats {
            var v = [Float](repeating: 0, count: f.shape.reduce(1, *))
            var sourceType = dtype
            for (name, range, at) in f.pieces {
                guard let t = ck[name] else { throw PackError.malformed(path: input, what: "no tensor \(name)") }
                if case .dtype(let dt) = t.encoding { sourceType = dt }
                let x = try readFloats(ck, t)
                let part = range.map { Array(x[$0]) } ?? x
                for (i, e) in part.enumerated() { v[at + i] = e }
            }
            packed.append((TensorSpec(name: f.name, dtype: sourceType, shape: f.shape), NunchakuPacker.encode(v, sourceType)))
        }
        var specs = packed.map(\.0)
        var copies: [CheckpointTensor] = []
        for t in ck.tensors where !consumed.contains(t.name) {
            guard case .dtype(let dt) = t.encoding else { continue }
            specs.append(TensorSpec(name: t.name, dtype: dt, shape: t.shape))
            copies.append(t)
        }
        var seen = Set<String>()
        for s in specs where !seen.insert(s.name).inserted { throw PackError.unsupported(path: input, backend: "nunchaku", what: "two tensors named \(s.name)") }

        var config = ck.config?.objectValue ?? JSONObject()
        config.members.removeAll { $0.key == "quantization_config" || $0.key == QKitConfig.fakeKey }
        let nvfp4 = formats.first ?? false, rank = ranks.first ?? 0
        let qc = NunchakuPacker.nunchakuConfig(nvfp4: nvfp4, rank: rank)
        let modelClass = d.family == FluxTransformer.family ? "NunchakuFluxTransformer2dModel" : "NunchakuSanaTransformer2DModel"
        let metadata: [(key: String, value: String)] = [("format", "pt"), ("config", JSONValue.object(config).serialized()),
                                                        ("model_class", modelClass), ("quantization_config", qc)]
        let out = try OutputDirectory(path: output)
        let writer = try ShardedSafetensorsWriter(directory: out.stagingPath, tensors: specs, metadata: metadata, maxShardSize: Int.max / 4,
                                                  prefix: "diffusion_pytorch_model")
        var report = PackReport()
        for (_, bytes) in packed { try bytes.withUnsafeBytes { try writer.write($0) } }
        report.packed = targets.count
        for t in copies {
            try QKitQuantizer.copyTensor(t, ck: ck, writer: writer)
            report.copied += 1
        }
        try writer.finish()
        report.bytesWritten = specs.reduce(0) { $0 + ($1.byteCount ?? 0) }
        var q = (try? JSONParser.parse(qc))?.objectValue ?? JSONObject()
        q.members.insert(("quant_method", "svdquant"), at: 0)
        q["backend"] = "nunchaku"
        q["model_class"] = .string(modelClass)
        q["modules"] = .object(JSONObject(targets.map { t in
            let kind: String = if case .adanorm = t.kind { "w4a16" } else { "w4a4" }
            return (t.name, JSONValue.object(JSONObject([("kind", .string(kind)), ("shape", [.int(t.n), .int(t.k)]),
                                                          ("from", .array(t.pieces.map { .string($0.source) }))])))
        }))
        config["quantization_config"] = .object(q)
        try writeSmallFile(out.stagedPath("config.json"), JSONValue.object(config).serialized(indent: 2) + "\n")
        report.files = listDirectory(out.stagingPath)
        try out.commit()
        report.seconds = monotonicSeconds() - start
        return report
    }
}
