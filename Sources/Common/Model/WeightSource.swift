/// Where the forward pass gets its weights: a tensor name (Hugging Face naming, e.g.
/// `model.layers.0.self_attn.q_proj.weight`) → dense f32 values, dequantized on demand.
///
/// Float checkpoints (`CheckpointWeights`), qkit checkpoints (Quant) and every backend reader (Pack)
/// implement it; the model runtime knows no layout. Implementations must be safe to call from several
/// threads at once.
public protocol WeightSource: AnyObject, Sendable {
    /// A short description for messages (usually the path).
    var label: String { get }
    /// `config.json` of the model, when there is one.
    var config: JSONValue? { get }
    /// The directory holding the model (for `tokenizer.json`), when there is one.
    var directory: String? { get }
    /// Whether the source has the (possibly virtual, dequantized) tensor `name`.
    func contains(_ name: String) -> Bool
    /// The logical shape of `name` (`[N, K]` for a linear weight).
    func shape(of name: String) throws -> [Int]
    /// Writes rows `rows` of `name` (the first dimension; a 1-D tensor has one element per row) as f32
    /// into `destination`, which holds exactly `rows.count × (elements per row)` values.
    func readFloat32(_ name: String, rows: Range<Int>, into destination: UnsafeMutableBufferPointer<Float>) throws
}

extension WeightSource {
    /// The whole tensor `name` as f32, with its shape.
    public func float32(_ name: String) throws -> (values: [Float], shape: [Int]) {
        let shape = try shape(of: name)
        let count = shape.reduce(1, *)
        var values = [Float](repeating: 0, count: count)
        try values.withUnsafeMutableBufferPointer {
            try readFloat32(name, rows: 0..<(shape.first ?? 1), into: $0)
        }
        return (values, shape)
    }
}

/// Errors of reading weights through a `WeightSource`.
public enum WeightSourceError: QKitError, Equatable {
    case missingTensor(source: String, name: String)
    case notFloat(source: String, name: String, encoding: String)
    case badRows(source: String, name: String, rows: Range<Int>, count: Int)

    public var exitStatus: ExitStatus { .dataError }

    public var description: String {
        switch self {
        case .missingTensor(let s, let n): "\(s): no tensor \(n)"
        case .notFloat(let s, let n, let e): "\(s): \(n) is \(e), not a floating-point tensor"
        case .badRows(let s, let n, let r, let c): "\(s): \(n): rows \(r.lowerBound)..<\(r.upperBound) outside 0..<\(c)"
        }
    }
}

/// A plain float checkpoint (safetensors of any float dtype, sharded or not, or GGUF after name mapping)
/// read straight from its mapping, one row range at a time.
public final class CheckpointWeights: WeightSource, @unchecked Sendable {
    public let checkpoint: Checkpoint
    public var label: String { checkpoint.path }
    public var config: JSONValue? { checkpoint.config }
    public var directory: String? { checkpoint.directory }

    public init(_ checkpoint: Checkpoint) { self.checkpoint = checkpoint }

    public convenience init(path: String) throws { self.init(try Checkpoint(path: path)) }

    public func contains(_ name: String) -> Bool { checkpoint[name] != nil }

    public func shape(of name: String) throws -> [Int] {
        guard let t = checkpoint[name] else { throw WeightSourceError.missingTensor(source: label, name: name) }
        return t.shape
    }

    public func readFloat32(_ name: String, rows: Range<Int>, into destination: UnsafeMutableBufferPointer<Float>) throws {
        guard let t = checkpoint[name] else { throw WeightSourceError.missingTensor(source: label, name: name) }
        guard t.encoding.isFloatingPoint, t.encoding.canDecode else {
            throw WeightSourceError.notFloat(source: label, name: name, encoding: t.encoding.description)
        }
        let rowCount = t.shape.first ?? 1
        guard rows.lowerBound >= 0, rows.upperBound <= rowCount else {
            throw WeightSourceError.badRows(source: label, name: name, rows: rows, count: rowCount)
        }
        let perRow = t.shape.count <= 1 ? 1 : t.shape.dropFirst().reduce(1, *)
        let data = checkpoint.data(t)
        let granule = t.encoding.decodeGranule
        let first = rows.lowerBound * perRow, count = rows.count * perRow
        precondition(destination.count == count, "destination holds \(destination.count) values, not \(count)")
        guard count > 0 else { return }
        if first % granule == 0 && count % granule == 0 {
            let start = t.encoding.byteCount(elements: first)
            let bytes = t.encoding.byteCount(elements: count)
            try t.encoding.decode(UnsafeRawBufferPointer(rebasing: data[start..<(start + bytes)]), into: destination)
            // The values are now in f32: drop the mapping's pages (the page cache keeps them), so resident
            // memory is the decoded block, not the whole file.
            let offset = t.fileRange.lowerBound + start
            checkpoint.files[t.fileIndex].release(offset..<(offset + bytes))
        } else {
            // Rows that straddle a granule (sub-byte or block types): decode the covering granules.
            let lo = first / granule * granule
            let hi = (first + count + granule - 1) / granule * granule
            var tmp = [Float](repeating: 0, count: hi - lo)
            let start = t.encoding.byteCount(elements: lo)
            let bytes = t.encoding.byteCount(elements: hi - lo)
            try tmp.withUnsafeMutableBufferPointer {
                try t.encoding.decode(UnsafeRawBufferPointer(rebasing: data[start..<(start + bytes)]), into: $0)
            }
            for i in 0..<count { destination[i] = tmp[first - lo + i] }
        }
    }
}
