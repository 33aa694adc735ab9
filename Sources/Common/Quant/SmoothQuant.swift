/// SmoothQuant (arXiv 2211.10438 §4; ../shared/specs/algorithms.md §4.4): migrate activation outliers into the
/// weights with a per-channel scale `s_j = max|x_j|^α / max|W_j|^(1−α)` (clamped to ≥ 1e-5), folded exactly into
/// the RMSNorm before each norm→linear subset (q/k/v after `input_layernorm`, gate/up after
/// `post_attention_layernorm`; o_proj and down_proj are not smoothed, as deepcompressor and llmc do). The
/// smoothed weights are then quantized with the recipe's scheme (W8 per channel by default) and the output
/// records per-token dynamic INT8 activations (W8A8), which qeval simulates — or, with `staticActivations`,
/// one static scale per linear input (`P.input_scale`, `2·max|x̂|/(2^b − 1)` over the calibration tokens of
/// the smoothed input, as compressed-tensors' static per-tensor minmax observer computes it).
///
/// The next block's input is the block's full-precision output (smoothing does not change it).
public struct SmoothQuant: BlockAlgorithm {
    public var alpha: Float
    public var activationBits: Int
    /// Static per-tensor activation scales (calibrated once) instead of per-token dynamic ones.
    public var staticActivations: Bool

    public init(alpha: Float = 0.5, activationBits: Int = 8, staticActivations: Bool = false) {
        self.alpha = alpha
        self.activationBits = activationBits
        self.staticActivations = staticActivations
    }

    public var name: String { "smoothquant" }
    public var settings: JSONObject {
        JSONObject([("alpha", .double(Double(alpha))), ("smoothed", .array(["q_proj,k_proj,v_proj", "gate_proj,up_proj"])),
                    ("activation_scales", .string(staticActivations ? "static per tensor" : "dynamic per token"))])
    }
    public var activationQuantization: ActivationQuantization? { ActivationQuantization(bits: activationBits) }
    public var staticActivationScales: Bool { staticActivations }

    public func process(_ block: BlockWeights, plan: [String: QuantScheme], activations: CalibrationActivations,
                        log: (String) -> Void) throws -> [String: QuantizedWeight] {
        let stats = BlockStatistics(config: block.config, observed: staticActivations ? Set(LinearInput.allCases) : [.attention, .mlp])
        activations.forward(block, on: activations.hidden, observer: stats)
        return smooth(block, plan: plan, attentionMax: stats[.attention]!.absmax.array, mlpMax: stats[.mlp]!.absmax.array,
                      outputMax: stats[.attentionOutput]?.absmax.array, downMax: stats[.mlpHidden]?.absmax.array)
    }

    /// Smooths `block` with the per-channel input maxima of its attention and MLP inputs and quantizes the
    /// planned linears. With `staticActivations`, the per-channel maxima of the o_proj and down_proj inputs
    /// (`outputMax`, `downMax`) are needed too, and the block's `activationQuantization` gets the static scale
    /// of each input (that `writeBlock` stores as `P.input_scale`).
    public func smooth(_ block: BlockWeights, plan: [String: QuantScheme], attentionMax: [Float], mlpMax: [Float],
                       outputMax: [Float]? = nil, downMax: [Float]? = nil) -> [String: QuantizedWeight] {
        var smoothedMax: [LinearInput: Float] = [:]
        for (input, xmax, norm, members) in [(LinearInput.attention, attentionMax, block.inputNorm, ["q_proj", "k_proj", "v_proj"]),
                                             (.mlp, mlpMax, block.postAttentionNorm, ["gate_proj", "up_proj"])] {
            guard members.contains(where: { plan[$0] != nil }) else {
                smoothedMax[input] = xmax.max() ?? 0
                continue
            }
            let weights = members.compactMap { block.linear($0) }
            let s = scales(activationMax: xmax, weights: weights)
            Smoothing.fold(s, intoNorm: norm, consumers: weights)
            smoothedMax[input] = zip(xmax, s).reduce(0) { max($0, $1.0 / $1.1) }
        }
        if staticActivations {
            smoothedMax[.attentionOutput] = outputMax?.max() ?? 0
            smoothedMax[.mlpHidden] = downMax?.max() ?? 0
            var a = ActivationQuantization(bits: activationBits)
            for (input, m) in smoothedMax { a.staticScales[input] = a.scale(absmax: m) }
            block.activationQuantization = a
        }
        var out: [String: QuantizedWeight] = [:]
        for (name, scheme) in plan {
            guard let w = block.linear(name) else { continue }
            out[name] = QuantizedWeight.quantize(w.pointer, rows: w.rows, columns: w.columns, scheme: scheme)
        }
        return out
    }

    /// The smoothing scales of a subset: `max|x_j|^α / max_rows|W_j|^(1−α)` over every weight of the subset.
    func scales(activationMax: [Float], weights: [Matrix]) -> [Float] {
        let k = activationMax.count
        var wmax = [Float](repeating: 0, count: k)
        for w in weights {
            for r in 0..<w.rows {
                let row = w.row(r)
                for j in 0..<k { wmax[j] = max(wmax[j], abs(row[j])) }
            }
        }
        return (0..<k).map { j in
            let a = max(activationMax[j], 1e-5), b = max(wmax[j], 1e-5)
            return max(powf(a, alpha) / powf(b, 1 - alpha), 1e-5)
        }
    }
}

/// Exact folding of per-channel input scales (../shared/specs/algorithms.md §1): the consumers' columns are
/// multiplied by `s`, the producer (an RMSNorm weight, or a producer linear's output rows and bias) divided.
public enum Smoothing {
    /// `norm /= s`, every consumer's column j `*= s_j`.
    public static func fold(_ s: [Float], intoNorm norm: FloatBuffer, consumers: [Matrix]) {
        for j in 0..<s.count { norm[j] /= s[j] }
        scaleColumns(consumers, by: s)
    }

    /// Producer rows (and bias entries) `/= s`, every consumer's column j `*= s_j`. `producerRows` maps
    /// consumer channel j to the producer row it comes from (GQA: several query-head channels share one
    /// value row; their scales must then be equal).
    public static func fold(_ s: [Float], intoProducer producer: Matrix, bias: UnsafeMutablePointer<Float>?,
                            producerRows: [Int], consumers: [Matrix]) {
        var done = Set<Int>()
        for (j, row) in producerRows.enumerated() where done.insert(row).inserted {
            let p = producer.row(row)
            for i in 0..<producer.columns { p[i] /= s[j] }
            bias?[row] /= s[j]
        }
        scaleColumns(consumers, by: s)
    }

    static func scaleColumns(_ weights: [Matrix], by s: [Float]) {
        for w in weights {
            nonisolated(unsafe) let w = w
            parallelFor((w.rows + 63) / 64) { t in
                for r in (t * 64)..<min(w.rows, (t + 1) * 64) {
                    let row = w.row(r)
                    for j in 0..<w.columns { row[j] *= s[j] }
                }
            }
        }
    }
}

#if canImport(Glibc)
import Glibc
#endif
