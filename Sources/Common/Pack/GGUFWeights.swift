/// A GGUF file of the Llama or Qwen2 family read as a `WeightSource` under Hugging Face names: each tensor is
/// dequantized row by row (`GGMLQuants`), the q/k rows llama.cpp's converter permuted are put back, and
/// `config` is the `config.json` the importer writes. qeval and qinspect read GGUF files through it.
public final class GGUFWeights: WeightSource, @unchecked Sendable {
    public let file: GGUFFile
    public let config: JSONValue?
    /// HF name → the GGUF tensor and the rows per head of its permutation.
    let tensors: [String: (info: GGUFTensorInfo, headRows: Int?)]

    public var label: String { file.path }
    public var directory: String? { nil }

    /// Maps every tensor of `file`; unknown names, shapes that disagree with the metadata and types qkit
    /// cannot dequantize are refused.
    public init(_ file: GGUFFile) throws {
        self.file = file
        do {
            let model = try GGUFModelConfig(file)
            var map: [String: (info: GGUFTensorInfo, headRows: Int?)] = [:]
            for t in file.tensors {
                guard let m = try model.hfTensor(t.name) else { continue }
                if let expected = model.expectedShape(m.name), expected != t.shape { throw GGUFImportError.badTensorShape(t.name) }
                guard t.type.canDequantize else { throw GGUFImportError.badKey("type of tensor '\(t.name)': \(t.type.name) cannot be dequantized yet") }
                var headRows: Int?
                if let h = m.permuteHeads {
                    guard t.shape[0] % h == 0, (t.shape[0] / h) % 2 == 0 else { throw GGUFImportError.badTensorShape(t.name) }
                    headRows = t.shape[0] / h
                }
                map[m.name] = (t, headRows)
            }
            tensors = map
            let vocab = try? GGUFTokenizer.Vocabulary(file)
            config = model.json(dtype: .f32, bos: vocab?.bos, eos: vocab?.eos, pad: vocab?.pad, unk: vocab?.unk)
        } catch let e as GGUFImportError {
            throw LocatedError(e, path: file.path)
        }
    }

    public func contains(_ name: String) -> Bool { tensors[name] != nil }

    public func shape(of name: String) throws -> [Int] {
        guard let t = tensors[name] else { throw WeightSourceError.missingTensor(source: label, name: name) }
        return t.info.shape
    }

    /// The GGUF row holding Hugging Face row `r` of a permuted head (the inverse of `GGUFExport.hfRow`).
    @inline(__always) static func ggufRow(ofHF r: Int, headRows: Int) -> Int {
        let head = r / headRows, within = r % headRows, half = headRows / 2
        return head * headRows + 2 * (within % half) + within / half
    }

    public func readFloat32(_ name: String, rows: Range<Int>, into destination: UnsafeMutableBufferPointer<Float>) throws {
        guard let (t, headRows) = tensors[name] else { throw WeightSourceError.missingTensor(source: label, name: name) }
        let count = t.shape.first ?? 1
        guard rows.lowerBound >= 0, rows.upperBound <= count else {
            throw WeightSourceError.badRows(source: label, name: name, rows: rows, count: count)
        }
        let data = file.data(t)
        do {
            if t.dimensions.count == 1 {
                // A 1-D tensor: its elements are the rows.
                var all = [Float](repeating: 0, count: t.elementCount)
                try all.withUnsafeMutableBufferPointer { try GGMLQuants.dequantize(t.type, data, into: $0) }
                for (i, r) in rows.enumerated() { destination[i] = all[headRows.map { Self.ggufRow(ofHF: r, headRows: $0) } ?? r] }
                return
            }
            let k = t.rowLength, rowBytes = t.rowByteCount
            precondition(destination.count == rows.count * k)
            for (i, r) in rows.enumerated() {
                let g = headRows.map { Self.ggufRow(ofHF: r, headRows: $0) } ?? r
                try GGMLQuants.dequantize(t.type, UnsafeRawBufferPointer(rebasing: data[(g * rowBytes)..<((g + 1) * rowBytes)]),
                                          into: UnsafeMutableBufferPointer(rebasing: destination[(i * k)..<((i + 1) * k)]))
            }
        } catch let e as GGMLQuantsError {
            throw LocatedError(e, path: file.path)
        }
    }
}
