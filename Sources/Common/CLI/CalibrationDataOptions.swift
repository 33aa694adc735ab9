import ArgumentParser

/// The calibration-data options `qcalib` and `qquant` share (DESIGN.md's command-line contract).
public struct CalibrationDataOptions: ParsableArguments {
    @Option(help: "Calibration text (- for standard input).") public var data: String?
    @Option(help: "Pre-tokenized calibration ids, whitespace separated, as qeval --tokenize prints (- for standard input).") public var ids: String?
    @Option(help: "Calibration windows.") public var samples = 128
    @Option(help: "Tokens per calibration window.") public var seqlen = 512
    @Option(help: "How windows are drawn: random (with --seed) or first (the first N non-overlapping windows).") public var sampling = "random"
    @Option(help: "Seed of --sampling random.") public var seed: UInt64 = 0
    @Flag(help: "Render each line (or JSONL record) of --data through the model's chat template first.") public var chat = false

    public init() {}

    /// Whether --data or --ids was given.
    public var given: Bool { data != nil || ids != nil }

    /// The request the options describe.
    public func request() throws -> CalibrationDataRequest {
        try CalibrationDataRequest(data: data, ids: ids, samples: samples, sequenceLength: seqlen, sampling: sampling, seed: seed, chat: chat)
    }
}
