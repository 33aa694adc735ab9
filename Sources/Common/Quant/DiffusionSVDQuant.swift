/// SVDQuant's weight side on a diffusers transformer (`qquant --algo svdquant` on FLUX.1, SANA, PixArt-Σ): every
/// selected W4A4 linear (or fused group: q/k/v share one smoothing and one low-rank branch) goes through
/// `SVDQuantLinear` — smoothing from the per-channel input maxima `P.input.absmax` of a statistics file (`--stats`),
/// or none (data-free); the rank-r branch; the 4-bit residual. The AdaLN modulation linears (weight-only in Nunchaku)
/// get plain RTN, as deepcompressor's low-rank and smoothing skips (`transformer_norm`) say. Written by
/// `DiffusionQuantizer` as `P.smooth` F32 [K], `P.lora_down` [R, K] and `P.lora_up` [N, R] (the model's 16-bit type).
public enum DiffusionSVDQuant {
    /// Settings of a run.
    public struct Options: Sendable {
        public var rank = 32
        /// A qcalib-style statistics file with `P.input.absmax` per selected W4A4 linear (`nil`: data-free, no smoothing).
        public var statistics: String?
        /// Refinement iterations of the branch (`SVDQuantLinear.Settings.iterations`).
        public var iterations = 100
        /// Smoothing grid α = i/grid, with statistics (0: no smoothing).
        public var grid = 20
        public init() {}
    }

    /// Runs SVDQuant over the diffusers transformer `model` into the qkit checkpoint `output`.
    public static func run(model: String, output: String, options: QuantizeOptions, svd: Options, log: ((String) -> Void)? = nil) throws -> QuantizeReport {
        let stats = try svd.statistics.map { try Checkpoint(path: $0) }
        let source = try Checkpoint(path: model)
        let lowRankType: DType = source.tensors.first { $0.name.hasSuffix(".weight") }.map { $0.encoding == .dtype(.f16) ? .f16 : .bf16 } ?? .bf16
        let statisticsPath = svd.statistics
        let quantizer: DiffusionQuantizer.UnitQuantizer = { w, n, k, scheme, members in
            if members.allSatisfy(\.weightOnly) { return try DiffusionQuantizer.rtn(w, n, k, scheme, members) }
            var absmax: [Float]?
            if let stats {
                // Members of a fused unit read the same input: the channel maxima are merged.
                for m in members {
                    let name = m.prefix + ".input.absmax"
                    guard stats[name] != nil else {
                        throw CalibrationError("has no \(name) (statistics of another model?)", path: statisticsPath)
                    }
                    let v = try StatisticsFile.vector(stats, name, count: k)
                    absmax = absmax.map { zip($0, v).map { max($0, $1) } } ?? v
                }
            }
            var settings = SVDQuantLinear.Settings(rank: svd.rank, iterations: svd.iterations,
                                                   activation: scheme.format == .nvfp4 ? .nvfp4 : .int4Group64, lowRankDType: lowRankType)
            settings.grid = absmax == nil ? 0 : svd.grid
            let r = try w.withUnsafeBufferPointer { p in
                try SVDQuantLinear.quantize(weight: p.baseAddress!, rows: n, columns: k, scheme: scheme,
                                            statistics: SVDQuantLinear.Statistics(absmax: absmax), settings: settings)
            }
            return DiffusionQuantizer.Parts(weight: r.residual, smooth: absmax != nil ? r.smooth : nil,
                                            loraDown: r.rank > 0 ? r.loraDown : nil, loraUp: r.rank > 0 ? r.loraUp : nil, rank: r.rank)
        }
        var extra: [(String, JSONValue)] = [("svdquant", .object(JSONObject([
            ("rank", .int(svd.rank)), ("iterations", .int(svd.iterations)), ("grid", .int(svd.statistics == nil ? 0 : svd.grid)), ("smoothing", svd.statistics == nil ? "off (data-free)" : "input absmax"),
            ("statistics", svd.statistics.map { .string($0) } ?? .null), ("weight_only", "AdaLN modulation linears: rtn, no branch"),
        ])))]
        extra.append(("activation_format", .string(options.recipe.defaultScheme.format == .nvfp4 ? "nvfp4" : "int4:g64 (per token group, dynamic)")))
        let rank = svd.rank, smoothing = stats != nil
        let planner: DiffusionQuantizer.UnitPlanner = { members, _, n, k in
            members.allSatisfy(\.weightOnly) ? (0, false) : (min(rank, n, k), smoothing)
        }
        return try DiffusionQuantizer.run(model: model, output: output, options: options, quantizer: quantizer, planner: planner, algorithm: "svdquant",
                                          extra: extra, log: log)
    }
}
