import Common

/// `--rotate`, `--rotate-online`, `--algo none`: the rotation stage before any algorithm.
extension Qquant {
    /// The rotation the options ask for.
    var rotationOptions: RotationOptions {
        RotationOptions(seed: rotateSeed ?? RotationOptions.defaultSeed, onlineDown: rotateOnline)
    }

    /// Writes the rotated float model of `original` into `path`; returns the rotation and the seconds it took.
    func rotateModel(_ original: Checkpoint, to path: String, dtype: (String, DType, [Int]) -> DType) throws -> (RotatedWeights, Double) {
        let rotated = try Rotation.apply(to: CheckpointWeights(original), options: rotationOptions)
        guard let shard = parseByteSize(maxShardSize) else { throw UsageError("--max-shard-size: cannot read '\(maxShardSize)'") }
        let report = try Rotation.write(rotated, checkpoint: original, to: path, dtype: dtype, maxShardSize: shard)
        return (rotated, report.seconds)
    }

    /// `--algo none`: only the rotation, written as a float model (its dtype, or --dtype).
    func writeRotated() throws {
        guard rotating else { throw UsageError("--algo none writes the rotated float model: give --rotate (or --rotate-online)") }
        for (flag, given) in [("--wbits", wbits != nil), ("--group", group != nil), ("--abits", abits != nil), ("--data", calibration.data != nil),
                              ("--ids", calibration.ids != nil), ("--stats", stats != nil), ("--fake", fake), ("--rule", !rules.isEmpty),
                              ("--rules", rulesFile != nil), ("--skip", !skips.isEmpty), ("--act-order", actOrder), ("--resume", resume)] where given {
            throw UsageError("\(flag) does not go with --algo none (no quantization)")
        }
        var target: DType?
        if let dtype {
            guard let d = ["f32": DType.f32, "f16": .f16, "bf16": .bf16][dtype.lowercased()] else {
                throw UsageError("--dtype: '\(dtype)' is not f32, f16 or bf16")
            }
            target = d
        }
        let original = try Checkpoint(path: model)
        let (rotated, seconds) = try rotateModel(original, to: output) { _, d, _ in target ?? d }
        if json {
            print(JSONValue.object(JSONObject([("rotation", rotated.record), ("seconds", .double((seconds * 1000).rounded() / 1000))])).serialized(indent: 2))
        } else if !quiet {
            print("\(output): rotated float model (hidden \(rotated.residual.order) = \(rotated.residual.description)"
                  + "\(rotated.down.map { ", online down_proj \($0.order) = \($0.description)" } ?? "")) in \(fixedDecimals(seconds, 2)) s")
        }
    }
}
