/// What `qinspect --summary` reports about a diffusers transformer: the family and class, the blocks, and for the
/// block linears of the family's descriptor how each role is stored (float, or the qkit scheme / layout) and the bits
/// per weight over them.
public struct DiffusionSummary: Sendable {
    public var family: String
    public var className: String
    /// `(block list, count)`.
    public var blocks: [(name: String, count: Int)]
    /// Per role: linears, and how they are stored (`float`, `int4:g64:sym`, `nunchaku-svdquant`…) with counts.
    public var roles: [(role: String, linears: Int, storage: [(String, Int)])]
    public var linears: Int
    public var quantizedLinears: Int
    /// Stored bits per weight over the quantized block linears (codes, scales, zeros, smooth and low-rank included).
    public var bitsPerWeight: Double?
    /// Why the descriptor could not be applied (e.g. a backend layout with other names), if it could not.
    public var note: String?

    /// Summarizes `ck` (a diffusers transformer) from its descriptor and the detected weight groups.
    public init(_ ck: Checkpoint, groups: [WeightGroup]) {
        let cls = ck.config?["_class_name"]?.stringValue ?? "?"
        className = cls
        family = DiffusionTransformers.all.first { $0.classNames.contains(cls) }.map { $0.family } ?? "unknown"
        blocks = []
        roles = []
        linears = 0
        quantizedLinears = 0
        if let qc = FormatDetector.quantizationConfig(ck), qc["backend"]?.stringValue == "nunchaku", let m = qc["modules"]?.objectValue {
            // qpack --to nunchaku's output: Nunchaku's module names, not diffusers'.
            let kinds = m.members.compactMap { $0.value["kind"]?.stringValue }
            note = "Nunchaku layout (\(qc["model_class"]?.stringValue ?? "?")): \(kinds.filter { $0 == "w4a4" }.count) W4A4 and "
                + "\(kinds.filter { $0 == "w4a16" }.count) W4A16 modules, rank \(qc["rank"]?.intValue ?? 0)"
            return
        }
        let descriptor: DiTDescriptor
        do { descriptor = try DiffusionTransformers.describe(ck) } catch {
            note = "\(error)"
            return
        }
        blocks = descriptor.blockLists
        linears = descriptor.linears.count
        let byPrefix = Dictionary(groups.map { ($0.prefix, $0) }, uniquingKeysWith: { a, _ in a })
        let modules = FormatDetector.quantizationConfig(ck)?["modules"]?.objectValue
        var perRole: [String: (Int, [String: Int])] = [:]
        var order: [String] = []
        var bytes = 0, params = 0
        for l in descriptor.linears {
            let g = byPrefix[l.prefix] ?? byPrefix[l.prefix + ".weight"]
            var storage = "float"
            if let g, g.scheme != .float {
                storage = g.scheme == .qkit ? (modules?[l.prefix]?.stringValue ?? "qkit") : g.scheme.rawValue
                let extra = ["smooth", "lora_down", "lora_up"].compactMap { ck[l.prefix + "." + $0] }
                if extra.contains(where: { $0.name.hasSuffix("lora_down") }) { storage += " + low-rank" }
                quantizedLinears += 1
                bytes += g.bytes + extra.reduce(0) { $0 + $1.byteCount }
                params += g.parameters
            }
            if perRole[l.role.rawValue] == nil { order.append(l.role.rawValue) }
            perRole[l.role.rawValue, default: (0, [:])].0 += 1
            perRole[l.role.rawValue, default: (0, [:])].1[storage, default: 0] += 1
        }
        roles = order.map { r in (role: r, linears: perRole[r]!.0, storage: perRole[r]!.1.sorted { $0.key < $1.key }.map { ($0.key, $0.value) }) }
        bitsPerWeight = params > 0 ? Double(bytes) * 8 / Double(params) : nil
    }

    /// The summary's text lines.
    public var text: String {
        var out = "diffusion     \(family) (\(className))"
        if !blocks.isEmpty { out += ", " + blocks.map { "\($0.count) \($0.name)" }.joined(separator: " + ") }
        out += "\n"
        if let note { return out + "              \(note)\n" }
        out += "              \(linears) block linears, \(quantizedLinears) quantized"
        if let b = bitsPerWeight { out += ", \(shortFloat(b, digits: 4)) bits/weight over them" }
        out += "\n"
        for r in roles {
            out += "              \(r.role): " + r.storage.map { "\($0.1) × \($0.0)" }.joined(separator: ", ") + "\n"
        }
        return out
    }

    /// The summary as JSON.
    public var json: JSONValue {
        var o = JSONObject()
        o["family"] = .string(family)
        o["class"] = .string(className)
        o["blocks"] = .object(JSONObject(blocks.map { ($0.name, JSONValue.int($0.count)) }))
        o["block_count"] = .int(blocks.reduce(0) { $0 + $1.count })
        o["linears"] = .int(linears)
        o["quantized_linears"] = .int(quantizedLinears)
        if let b = bitsPerWeight { o["bits_per_weight"] = .double(b) }
        o["roles"] = .object(JSONObject(roles.map { r in
            (r.role, JSONValue.object(JSONObject(r.storage.map { ($0.0, JSONValue.int($0.1)) })))
        }))
        if let note { o["note"] = .string(note) }
        return .object(o)
    }
}
