/// SVDQuant W4A4 on a decoder (arXiv 2411.05007 §4; ../shared/specs/algorithms.md §4.9), block by block.
///
/// One full-precision forward pass of the block gathers, for each linear input, its per-channel absolute
/// maximum over every calibration token and a subsample of at most `samples` token rows (every ⌈T/samples⌉-th);
/// the block's full-precision output is the next block's input. Then the linears reading one input — q/k/v,
/// o_proj, gate/up, down_proj — are decomposed together (their weights concatenated, one smoothing and one
/// `lora_down`) by `SVDQuantLinear`: smoothing searched over the α grid with the low-rank branch and the 4-bit
/// weights and activations in the loop, scored by the exact layer-output error on the subsampled tokens; then
/// the SVD/quantization refinement; optionally GPTQ on the residual. Without calibration data (`dataFree`) the
/// same decomposition runs on the weights alone with smoothing off (the engine is not used then).
///
/// The smoothing cannot be folded into the producer (the 4-bit activations must see `x/λ` while the branch
/// reads `x`), so it is stored as `P.smooth` beside `P.lora_down`, `P.lora_up` and the residual's codes.
public struct SVDQuant: BlockAlgorithm {
    /// The per-linear settings (rank, grid, iterations, activation format, GPTQ, low-rank dtype).
    public var linear: SVDQuantLinear.Settings
    /// Token rows kept per input for the loss.
    public var samples = 1024

    public init(linear: SVDQuantLinear.Settings) { self.linear = linear }

    public var name: String { "svdquant" }
    public var settings: JSONObject {
        var o = JSONObject([("rank", .int(linear.rank)), ("alpha_grid", .int(linear.grid)), ("beta_variants", .bool(linear.betaVariants)),
                            ("iterations", .int(linear.iterations)), ("gptq", .bool(linear.gptq != nil)),
                            ("lowrank_dtype", .string(linear.lowRankDType.rawValue)), ("loss_tokens", .int(samples)),
                            ("loss", "linear outputs with 4-bit weights and activations, subsampled tokens"),
                            ("shared_branches", "q/k/v, gate/up")])
        if let g = linear.gptq {
            o["gptq_dampening"] = .double(Double(g.dampening))
            o["gptq_act_order"] = .bool(g.actOrder)
        }
        return o
    }
    public var activationQuantization: ActivationQuantization? { linear.activation }

    public func process(_ block: BlockWeights, plan: [String: QuantScheme], activations: CalibrationActivations,
                        log: (String) -> Void) throws -> [String: QuantizedWeight] {
        let inputs = Set(LinearInput.allCases.filter { $0.consumers.contains { plan[$0] != nil } })
        let stride = max(1, (activations.tokenCount + samples - 1) / samples)
        let observer = SampleObserver(config: block.config, inputs: inputs, stride: stride, capacity: (activations.tokenCount + stride - 1) / stride)
        activations.forward(block, on: activations.hidden, observer: observer)
        var out: [String: QuantizedWeight] = [:]
        for input in LinearInput.allCases where inputs.contains(input) {
            let stats = SVDQuantLinear.Statistics(absmax: observer.absmax[input]!, samples: observer.matrix(input))
            for (name, q) in try Self.decompose(block, input: input, plan: plan, statistics: stats, settings: linear, log: log) {
                out[name] = q
            }
        }
        return out
    }

    /// Decomposes the linears reading `input` together and returns each one's part.
    static func decompose(_ block: BlockWeights, input: LinearInput, plan: [String: QuantScheme], statistics: SVDQuantLinear.Statistics,
                          settings: SVDQuantLinear.Settings, log: (String) -> Void) throws -> [String: QuantizedWeight] {
        let names = input.consumers
        let label = BlockWeights.prefix(block.layer) + names.joined(separator: "/")
        let schemes = names.compactMap { plan[$0] }
        guard schemes.count == names.count, let scheme = schemes.first, schemes.allSatisfy({ $0 == scheme }) else {
            throw CalibrationError("\(label): svdquant quantizes these linears together (one smoothing and branch): give them one scheme, or keep all of them",
                                   exitStatus: .usage)
        }
        let weights = names.map { block.linear($0)! }
        let fused: Matrix = switch input {
        case .attention: block.qkv
        case .mlp: block.gateUp
        default: weights[0]
        }
        let start = monotonicSeconds()
        let r: SVDQuantLinear.Result
        do {
            r = try SVDQuantLinear.quantize(weight: fused.pointer, rows: fused.rows, columns: fused.columns, scheme: scheme,
                                            statistics: statistics, settings: settings)
        } catch let e as QKitError {
            throw CalibrationError("\(label): \(e.description)", exitStatus: e.exitStatus)
        }
        log(label + ": α " + cFormat("%.2f", Double(r.alpha)) + " β " + cFormat("%.2f", Double(r.beta)) + ", \(r.iterations) iterations"
            + (r.gptqUsed ? ", GPTQ residual" : "") + ", error " + cFormat("%.4g", r.loss) + " (RTN " + cFormat("%.4g", r.baselineLoss) + "), "
            + cFormat("%.2f s", monotonicSeconds() - start))
        var whole = r.residual
        // Rank 0 without smoothing is plain RTN (the W4A4 baseline): no extra tensors.
        if r.rank > 0 || r.smooth.contains(where: { $0 != 1 }) {
            whole.lowRank = QuantizedWeight.LowRankParts(smooth: r.smooth, down: r.loraDown, up: r.loraUp, rank: r.rank, dtype: settings.lowRankDType)
        }
        var out: [String: QuantizedWeight] = [:]
        var row = 0
        for (name, w) in zip(names, weights) {
            out[name] = whole.slice(rows: row..<(row + w.rows))
            row += w.rows
        }
        return out
    }
}

/// Per-channel absolute maxima of the observed inputs and every `stride`-th token row.
final class SampleObserver: BlockObserver {
    var absmax: [LinearInput: [Float]] = [:]
    var rows: [LinearInput: Matrix] = [:]
    var seen: [LinearInput: Int] = [:]
    var kept: [LinearInput: Int] = [:]
    let stride: Int

    init(config: DecoderConfig, inputs: Set<LinearInput>, stride: Int, capacity: Int) {
        self.stride = stride
        for i in inputs {
            let k = BlockStatistics.columns(of: i, config)
            absmax[i] = [Float](repeating: 0, count: k)
            rows[i] = Matrix(rows: capacity, columns: k)
            seen[i] = 0
            kept[i] = 0
        }
    }

    func observe(_ input: LinearInput, layer: Int, rows range: Range<Int>, values: UnsafePointer<Float>, columns: Int) {
        guard let m = rows[input] else { return }
        absmax[input]!.withUnsafeMutableBufferPointer { a in
            for r in 0..<range.count {
                let row = values + r * columns
                for j in 0..<columns { a[j] = max(a[j], abs(row[j])) }
            }
        }
        var s = seen[input]!, k = kept[input]!
        for r in 0..<range.count {
            if s % stride == 0 && k < m.rows {
                (m.pointer + k * columns).update(from: values + r * columns, count: columns)
                k += 1
            }
            s += 1
        }
        seen[input] = s
        kept[input] = k
    }

    /// The kept rows of `input`.
    func matrix(_ input: LinearInput) -> Matrix {
        let m = rows[input]!
        return Matrix(rows: kept[input]!, columns: m.columns, storage: m.storage)
    }
}

extension SVDQuant {
    /// SVDQuant without calibration data: every block's linears decomposed from their weights alone (smoothing
    /// off, the weight error as the loss), written like a calibrated run.
    public func runDataFree(model path: String, output: String, options: QuantizeOptions,
                            log: @escaping (String) -> Void = { _ in }) throws -> CalibrationEngine.Report {
        let start = monotonicSeconds()
        let (ck, model) = try CalibrationEngine.openSource(path)
        let plans = try CalibrationEngine.plan(ck, layers: model.config.layerCount, recipe: options.recipe, algorithm: name)
        let progress = ProgressDirectory(output: output)
        try progress.reset(key: "svdquant-data-free")
        var report = CalibrationEngine.Report()
        report.blocks = plans.count
        for (layer, plan) in plans.enumerated() {
            let t0 = monotonicSeconds()
            let block = try model.loadBlock(layer)
            var quantized: [String: QuantizedWeight] = [:]
            for input in LinearInput.allCases where input.consumers.contains(where: { plan[$0] != nil }) {
                for (n, q) in try Self.decompose(block, input: input, plan: plan, statistics: SVDQuantLinear.Statistics(), settings: linear, log: log) {
                    quantized[n] = q
                }
            }
            try progress.writeBlock(layer, block: block, quantized: quantized, checkpoint: ck, options: options)
            report.blockSeconds.append(monotonicSeconds() - t0)
            log("block \(layer + 1)/\(plans.count): " + cFormat("%.2f s", report.blockSeconds.last!))
        }
        var calibration = settings
        calibration["data"] = "none"
        report.quantize = try CalibrationEngine.assemble(ck, plans: plans, progress: progress, output: output, algorithm: self,
                                                         options: options, calibration: calibration)
        progress.remove()
        report.quantize.seconds = monotonicSeconds() - start
        return report
    }
}
