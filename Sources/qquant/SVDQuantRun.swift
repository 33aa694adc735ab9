import Common

/// `--algo svdquant`: its options checked and turned into the algorithm's settings (decoder models and diffusers transformers).
extension Qquant {
    /// Runs svdquant: calibrated with --data/--ids, data-free (smoothing off) without.
    func runSVDQuant(_ quantize: QuantizeOptions, model: String) throws -> CalibrationEngine.Report {
        guard !quantize.fake else { throw UsageError("--fake: svdquant's smoothing and low-rank branch cannot be folded into a float weight") }
        guard stats == nil else { throw UsageError("--stats: svdquant needs the block forward passes (give --data or --ids)") }
        guard rank >= 0 else { throw UsageError("--rank must not be negative (0: no low-rank branch)") }
        guard grid >= 0, iterations >= 1, lossTokens >= 1 else { throw UsageError("--grid must be ≥ 0, --iterations and --loss-tokens ≥ 1") }
        let d = quantize.recipe.defaultScheme
        let nvfp4 = d.format == .nvfp4
        guard nvfp4 || (d.format == .int(bits: 4) && d.symmetric) else {
            throw UsageError("--algo svdquant: 4-bit weights, --format int (INT4 symmetric, group 64 by default) or nvfp4")
        }
        var activation: ActivationQuantization?
        switch abits ?? 4 {
        case 4: activation = nvfp4 ? .nvfp4 : .int4Group64
        case 16: activation = nil
        default: throw UsageError("--abits: svdquant runs 4-bit (W4A4) or 16-bit (W4A16) activations")
        }
        var checkpointDType = DType.bf16
        if let ck = try? Checkpoint(path: model),
           (ck.config?["torch_dtype"]?.stringValue ?? ck.config?["dtype"]?.stringValue) == "float16" { checkpointDType = .f16 }
        var settings = SVDQuantLinear.Settings(rank: rank, grid: grid, iterations: iterations, activation: activation, lowRankDType: checkpointDType)
        if gptq {
            guard damp > 0, damp < 1 else { throw UsageError("--damp must be in (0, 1)") }
            guard blockSize >= 1 else { throw UsageError("--block-size must be positive") }
            settings.gptq = GPTQSolver.Settings(dampening: damp, blockSize: blockSize, actOrder: actOrder)
        } else if actOrder {
            throw UsageError("--act-order goes with gptq (or svdquant --gptq)")
        }
        var algorithm = SVDQuant(linear: settings)
        algorithm.samples = lossTokens
        let log: (String) -> Void = { if !quiet && verbose { logLine("qquant: " + $0) } else if !quiet && $0.hasPrefix("block ") { logLine("qquant: " + $0) } }
        if !calibration.given {
            return try algorithm.runDataFree(model: model, output: output, options: quantize, log: log)
        }
        var options = CalibratedOptions(quantize: quantize, data: try calibration.request())
        options.batchTokens = max(calibration.seqlen, batchTokens)
        options.restart = restart
        options.requireResume = resume
        if resume && restart { throw UsageError("--resume and --restart exclude each other") }
        return try CalibrationEngine.run(model: model, output: output, algorithm: algorithm, options: options, log: log)
    }

    /// `--algo svdquant` on a diffusers transformer: per linear, data-free or smoothed from `--stats`.
    func runDiffusionSVDQuant(_ options: QuantizeOptions) throws {
        if calibration.given || gptq || abits != nil {
            throw UsageError("a diffusion transformer's svdquant is per linear: --stats FILE or data-free (no --data/--ids, --gptq, --abits)")
        }
        guard rank >= 0, grid >= 0, iterations >= 1 else { throw UsageError("--rank and --grid must not be negative, --iterations positive") }
        var svd = DiffusionSVDQuant.Options()
        svd.rank = rank
        svd.grid = grid
        svd.iterations = iterations
        svd.statistics = stats
        let report = try DiffusionSVDQuant.run(model: model, output: output, options: options, svd: svd,
                                               log: verbose && !quiet ? { logLine("qquant: " + $0) } : nil)
        if json { print(report.json.serialized(indent: 2)) } else if !quiet {
            print("\(output): svdquant rank \(rank)\(stats == nil ? " (data-free, no smoothing)" : ", smoothing from \(stats!)"), "
                  + "quantized \(report.quantized.count) weights, copied \(report.copied) tensors in \(fixedDecimals(report.seconds, 2)) s")
        }
    }
}
