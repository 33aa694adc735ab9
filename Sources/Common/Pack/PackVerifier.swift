#if canImport(Glibc)
import Glibc
#endif

/// What `qpack --verify` checked.
public struct PackVerifyReport: Sendable {
    public var layout = ""
    public var packedLinears = 0
    public var otherTensors = 0
    /// Whether codes, scales and zeros were compared with a source.
    public var comparedWithSource = false
}

/// Reads a packed checkpoint back and checks it: config keys the backend's loader reads, tensor names and
/// shapes, every linear unpacks; with a source (a qkit checkpoint, or a float model quantized with the
/// layout's default RTN scheme), codes, zero points and act-order indices equal the source's bit for bit,
/// scales equal the source's rounded to the stored dtype, and every other tensor is byte-identical.
public enum PackVerifier {
    /// Config keys each layout's loader reads.
    static let requiredKeys: [String: [String]] = [
        "vllm-awq": ["quant_method", "zero_point", "group_size", "bits", "version"],
        "vllm-gptq": ["quant_method", "bits", "group_size", "desc_act", "sym", "checkpoint_format"],
        "compressed-tensors": ["quant_method", "format", "config_groups", "ignore", "quantization_status"],
        "tinychat": ["quant_method", "w_bit", "q_group_size", "zero_point"],
        "lightllm": ["quant_method", "weight_block_size"],
    ]

    /// Verifies `output`; throws `PackError.verifyFailed` with every difference found (up to 20 lines).
    public static func verify(output: String, source: String?, scheme: QuantScheme? = nil) throws -> PackVerifyReport {
        let ck = try Checkpoint(path: output)
        if ck.kind == .gguf { return try GGUFExport.verify(output: output, source: source) }
        guard let reader = try openPackedWeights(ck) else {
            let m = ck.config?["quantization_config"]?["quant_method"]?.stringValue ?? "none"
            throw PackError.verifyFailed(path: output, what: "not a packed checkpoint (quant_method \(m); qpack writes awq, gptq, compressed-tensors, tinychat, fp8)")
        }
        if let mlc = reader as? MLCWeights { return try MLCVerifier.verify(mlc, output: output, source: source) }
        if let n = reader as? NunchakuWeights { return try NunchakuVerifier.verify(n, output: output, source: source) }
        var report = PackVerifyReport()
        report.layout = reader.layoutName
        var issues: [String] = []
        let qc = FormatDetector.quantizationConfig(ck)
        for key in requiredKeys[reader.layoutName] ?? [] where qc?[key] == nil { issues.append("quantization_config has no '\(key)'") }

        var owned = Set<String>()
        for p in reader.packedPrefixes {
            owned.formUnion(reader.tensorNames(of: p))
            let (n, _) = try reader.shape(of: p + ".weight").first.map { ($0, 0) } ?? (0, 0)
            _ = try reader.unpack(p, rows: 0..<n)
        }
        report.packedLinears = reader.packedPrefixes.count
        for t in ck.tensors where !owned.contains(t.name) {
            guard case .dtype(let d) = t.encoding, d.isFloatingPoint else {
                issues.append("\(t.name) (\(t.encoding)) is neither a float tensor nor part of a packed linear")
                continue
            }
            report.otherTensors += 1
        }

        if let source {
            report.comparedWithSource = true
            try withSource(source, layout: Packer.layout(named: reader.layoutName)!, scheme: scheme) { src in
                let s = src.checkpoint
                let packed = Set(reader.packedPrefixes)
                for plan in src.linears {
                    guard packed.contains(plan.prefix) else { issues.append("\(plan.prefix) is quantized in the source but not packed"); continue }
                    let a = try src.linear(plan)
                    let b = try reader.unpack(plan.prefix, rows: 0..<plan.n)
                    issues += compare(a, b, scaleDType: reader.scaleDType(of: plan.prefix))
                }
                for t in s.tensors where !src.consumed.contains(t.name) {
                    guard let o = ck[t.name] else { issues.append("\(t.name) is missing"); continue }
                    // Static KV-cache scales may be reshaped for the layout ([kvHeads] → [kvHeads, 1, 1]): same values.
                    let kvScale = (t.name.hasSuffix(".self_attn.k_scale") || t.name.hasSuffix(".self_attn.v_scale")) && o.elementCount == t.elementCount
                    if o.encoding != t.encoding || (o.shape != t.shape && !kvScale) || !s.data(t).elementsEqual(ck.data(o)) {
                        issues.append("\(t.name) differs from the source")
                    }
                }
            }
        }
        if !issues.isEmpty {
            let shown = issues.prefix(20).joined(separator: "; ")
            throw PackError.verifyFailed(path: output, what: shown + (issues.count > 20 ? "; … \(issues.count - 20) more" : ""))
        }
        return report
    }

    /// Differences between a source linear and the same linear read back.
    static func compare(_ a: QuantizedLinear, _ b: QuantizedLinear, scaleDType: DType) -> [String] {
        var out: [String] = []
        let p = a.prefix
        guard a.k == b.k, a.n == b.n else { return ["\(p): shape [\(b.n), \(b.k)], source [\(a.n), \(a.k)]"] }
        let (ac, bc) = (a.codes.array, b.codes.array)
        if let i = ac.indices.first(where: { ac[$0] != bc[$0] }) {
            out.append("\(p): code [\(i / a.k), \(i % a.k)] is \(bc[i]), source \(ac[i])")
        }
        // Scales and zeros per element, as each row sees them (layouts may store a shared scale per row).
        let g = a.groups
        guard b.groups == g else { return out + ["\(p): \(b.groups) scale groups, source \(g)"] }
        for r in 0..<a.n {
            for j in 0..<g {
                let sa = scaleDType.rounding(a.scales[(a.scaleRows == 1 ? 0 : r) * g + j])
                let sb = b.scales[(b.scaleRows == 1 ? 0 : r) * g + j]
                if sa.bitPattern != sb.bitPattern {
                    out.append("\(p): scale [\(r), \(j)] is \(sb), source \(sa) as \(scaleDType.rawValue)")
                    return out
                }
                if let za = a.zeros {
                    let zb = b.zeros?[(b.scaleRows == 1 ? 0 : r) * g + j]
                    if zb != za[(a.scaleRows == 1 ? 0 : r) * g + j] {
                        out.append("\(p): zero point [\(r), \(j)] is \(zb.map(String.init) ?? "absent"), source \(za[(a.scaleRows == 1 ? 0 : r) * g + j])")
                        return out
                    }
                }
            }
        }
        if a.globalScale.bitPattern != b.globalScale.bitPattern { out.append("\(p): global scale \(b.globalScale), source \(a.globalScale)") }
        let ga = (0..<a.k).map { a.group(ofColumn: $0) }, gb = (0..<b.k).map { b.group(ofColumn: $0) }
        if ga != gb { out.append("\(p): act-order group indices differ") }
        return out
    }

    /// Opens `input` as a pack source: a qkit checkpoint as it is, a packed checkpoint through its reader, a
    /// float model quantized with RTN (`scheme`, else the layout's default) into a scratch directory removed
    /// afterwards.
    static func withSource<T>(_ input: String, layout: any PackLayout, scheme: QuantScheme?, scratchBeside: String? = nil,
                              _ body: (PackSource) throws -> T) throws -> T {
        let ck = try Checkpoint(path: input)
        let method = FormatDetector.quantizationConfig(ck)?["quant_method"]?.stringValue
        if method == "qkit" { return try body(PackSource(ck)) }
        if ck.kind != .gguf, let reader = try openPackedWeights(ck) {
            if scheme != nil { throw PackError.usage("\(input): --scheme quantizes a float model; a packed input keeps its codes") }
            return try body(PackSource(packed: reader, checkpoint: ck))
        }
        if let method { throw PackError.usage("\(input): input quantized as '\(method)' (sources: float models, qkit checkpoints and the packed layouts qpack reads)") }
        guard ck.kind != .gguf else { throw PackError.usage("\(input): import a GGUF file first ('qpack \(input) --to safetensors -o DIR')") }
        let target = scratchBeside ?? input
        let dir = Checkpoint.parentDirectory(target.hasSuffix("/") ? String(target.dropLast()) : target)
        let tmp = dir + "/.qpack-rtn-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
        defer { removeTree(tmp) }
        _ = try QKitQuantizer.run(model: input, output: tmp,
                                  options: QuantizeOptions(recipe: try QuantRecipe(defaultScheme: scheme ?? layout.defaultScheme)))
        return try body(PackSource(try Checkpoint(path: tmp)))
    }
}
