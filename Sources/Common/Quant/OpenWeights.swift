/// Opens any model directory (or checkpoint path) as a `WeightSource`: a qkit checkpoint (config.json
/// `quantization_config.quant_method` is `qkit`) dequantizes its weights on read (`QKitWeights`), a packed
/// layout through its reader, a GGUF file under Hugging Face names (`GGUFWeights`); anything else is read as a
/// float checkpoint (`CheckpointWeights`).
public func openWeights(path: String) throws -> any WeightSource {
    let ck = try Checkpoint(path: path)
    if ck.config?["quantization_config"]?["quant_method"]?.stringValue == "qkit" { return try QKitWeights(ck) }
    if let packed = try openPackedWeights(ck) { return packed }
    if ck.kind == .gguf, let g = ck.gguf { return try GGUFWeights(g) }
    return CheckpointWeights(ck)
}
