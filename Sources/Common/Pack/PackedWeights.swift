/// A packed checkpoint read back: a `WeightSource` that dequantizes each packed linear on read, and
/// gives its codes in canonical form (`QuantizedLinear`) for `--verify` and conversions.
public protocol PackedWeightSource: WeightSource {
    /// The layout's `--to` name.
    var layoutName: String { get }
    /// Module paths of the packed linears, in natural order.
    var packedPrefixes: [String] { get }
    /// The element type the layout stores scales in (what a source's F32 scales are rounded to).
    func scaleDType(of prefix: String) -> DType
    /// Rows `rows` of a packed linear, unpacked.
    func unpack(_ prefix: String, rows: Range<Int>) throws -> QuantizedLinear
    /// The names of the tensors of one packed linear.
    func tensorNames(of prefix: String) -> [String]
}

/// Shared plumbing of the packed readers: virtual `P.weight` tensors dequantized through `unpack`, every
/// other tensor read as a float tensor.
public class PackedWeightsBase: @unchecked Sendable {
    public let checkpoint: Checkpoint
    let base: CheckpointWeights
    /// `P` → `[N, K]` of each packed linear.
    var shapes: [String: (n: Int, k: Int)] = [:]

    init(base ck: Checkpoint) {
        checkpoint = ck
        base = CheckpointWeights(ck)
    }

    public var label: String { checkpoint.path }
    public var config: JSONValue? { checkpoint.config }
    public var directory: String? { checkpoint.directory }
    public var packedPrefixes: [String] { shapes.keys.sorted(by: naturalLess) }

    func fail(_ what: String) -> PackError { PackError.malformed(path: checkpoint.path, what: what) }

    func prefix(ofWeight name: String) -> String? {
        guard name.hasSuffix(".weight") else { return nil }
        let p = String(name.dropLast(".weight".count))
        return shapes[p] == nil ? nil : p
    }

    public func contains(_ name: String) -> Bool { prefix(ofWeight: name) != nil || base.contains(name) }

    public func shape(of name: String) throws -> [Int] {
        if let p = prefix(ofWeight: name), let s = shapes[p] { return [s.n, s.k] }
        return try base.shape(of: name)
    }

    /// Checks a tensor's presence, dtype and shape.
    func tensor(_ name: String, _ dtypes: [DType], _ shape: [Int]?) throws -> CheckpointTensor {
        guard let t = checkpoint[name] else { throw fail("missing tensor \(name)") }
        guard case .dtype(let d) = t.encoding, dtypes.contains(d) else {
            throw fail("\(name) is \(t.encoding), expected \(dtypes.map(\.rawValue).joined(separator: " or "))")
        }
        if let shape, t.shape != shape {
            throw fail("\(name) has shape \(t.shape), expected \(shape)")
        }
        return t
    }
}

extension PackedWeightSource {
    /// Reads rows of a virtual weight by unpacking and dequantizing them; other names through the file.
    func readPacked(_ name: String, rows: Range<Int>, into destination: UnsafeMutableBufferPointer<Float>,
                    shapes: [String: (n: Int, k: Int)], base: CheckpointWeights) throws {
        guard name.hasSuffix(".weight"), let s = shapes[String(name.dropLast(".weight".count))] else {
            return try base.readFloat32(name, rows: rows, into: destination)
        }
        guard rows.lowerBound >= 0, rows.upperBound <= s.n else {
            throw WeightSourceError.badRows(source: label, name: name, rows: rows, count: s.n)
        }
        precondition(destination.count == rows.count * s.k)
        let q = try unpack(String(name.dropLast(".weight".count)), rows: rows)
        q.dequantize(into: destination)
    }
}

/// Opens a packed checkpoint whose `config.json` `quantization_config.quant_method` is `awq`, `gptq`,
/// `compressed-tensors`, `tinychat`, `fp8` (LightLLM's block-128 FP8) or `svdquant` (Nunchaku), or an MLC tensor
/// cache, as a `WeightSource` (dequantizing on read); `nil` for any other checkpoint.
public func openPackedWeights(_ checkpoint: Checkpoint) throws -> (any PackedWeightSource)? {
    if checkpoint.kind == .tensorCache { return try MLCWeights(checkpoint) }
    return switch FormatDetector.quantizationConfig(checkpoint)?["quant_method"]?.stringValue?.lowercased() {
    case "awq": try AWQWeights(checkpoint)
    case "gptq": try GPTQWeights(checkpoint)
    case "compressed-tensors": try CompressedTensorsWeights(checkpoint)
    case "svdquant": try NunchakuWeights(checkpoint)
    case "tinychat": try TinyChatWeights(checkpoint)
    case "fp8": try FP8BlockWeights(checkpoint)
    default: nil
    }
}
