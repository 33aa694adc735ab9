/// Quantizes the weights of a diffusers transformer (FLUX.1, SANA, PixArt-Σ; `DiffusionTransformers`) into a qkit
/// checkpoint in the diffusers layout: `config.json` (with `quantization_config`) and
/// `diffusion_pytorch_model.safetensors` (sharded with its index past the shard size), every tensor that is not
/// quantized copied byte for byte. Weight side only: no diffusion forward pass.
///
/// Selection: the family descriptor's block linears that are quantized by default (deepcompressor's skips), then
/// `--rule` (which may also select any other 2-D `.weight`, e.g. `proj_out`), then `--skip`. A 1×1 convolution
/// `[N, K, 1, 1]` is quantized as the linear `[N, K]` (its codes are `[N, K]`; `quantization_config.weight_shapes`
/// records the original shape, and `--fake` keeps it). Linears a runtime fuses (q/k/v, FLUX's added q/k/v) are
/// quantized together when they share a scheme: one NVFP4 global scale, one SVDQuant smoothing and low-rank branch
/// (the same `lora_down` in each, `lora_up` split by rows), so that a backend can concatenate them.
public enum DiffusionQuantizer {
    /// One linear's quantized parts.
    public struct Parts: Sendable {
        public var weight: QuantizedWeight
        /// λ `[K]` (the codes quantize `W·diag(λ)`; the input is divided by λ at run time), nil when none.
        public var smooth: [Float]?
        /// `[R, K]` and `[N, R]`, nil when there is no low-rank branch.
        public var loraDown: [Float]?
        public var loraUp: [Float]?
        public var rank = 0
    }

    /// Quantizes a (fused) weight `[n, k]` f32 for linears `members`; returns its parts for all rows.
    public typealias UnitQuantizer = @Sendable (_ weight: [Float], _ n: Int, _ k: Int, _ scheme: QuantScheme, _ members: [DiTLinear]) throws -> Parts

    /// The rank of a unit's low-rank branch (0: none) and whether it has `P.smooth`, known before quantizing it
    /// (members, scheme, rows of the fused weight, K); the quantizer's parts must match.
    public typealias UnitPlanner = @Sendable (_ members: [DiTLinear], _ scheme: QuantScheme, _ n: Int, _ k: Int) -> (rank: Int, smooth: Bool)

    /// Round to nearest (or the scheme's algorithm: mse, hqq) of the whole unit.
    public static let rtn: UnitQuantizer = { w, n, k, scheme, _ in
        let q = w.withUnsafeBufferPointer { QuantizedWeight.quantize($0.baseAddress!, rows: n, columns: k, scheme: scheme) }
        return Parts(weight: q)
    }

    /// One unit of work: linears quantized together (a fused group, or one linear).
    struct Unit {
        var prefixes: [String]
        var scheme: QuantScheme
        var linears: [DiTLinear]
    }

    /// Runs the quantization of the diffusers transformer `model` (its directory, or a pipeline root) into `output`.
    /// - Parameters:
    ///   - quantizer: how a unit is quantized (`rtn` by default; SVDQuant passes its own).
    ///   - planner: the shapes of a unit's extra parts, before quantizing (no branch, no smoothing by default).
    ///   - algorithm: recorded as `quantization_config.algorithm` when not the scheme's (e.g. `svdquant`).
    ///   - extra: members added to `quantization_config` (e.g. SVDQuant's settings).
    public static func run(model: String, output: String, options: QuantizeOptions, quantizer: UnitQuantizer = rtn,
                           planner: UnitPlanner = { _, _, _, _ in (0, false) }, algorithm: String? = nil,
                           extra: [(String, JSONValue)] = [], log: ((String) -> Void)? = nil) throws -> QuantizeReport {
        let start = monotonicSeconds()
        let ck = try Checkpoint(path: model)
        guard ck.kind != .gguf else { throw QuantizeError.unsupportedInput(path: model, kind: "GGUF") }
        guard ck.directory != nil, model != "-" else { throw QuantizeError.unsupportedInput(path: model, kind: "standard") }
        if ck.config?["quantization_config"]?["quant_method"]?.stringValue == "qkit" { throw QuantizeError.alreadyQuantized(path: model) }
        let d = try DiffusionTransformers.describe(ck)
        let recipe = options.recipe

        // Selection: the descriptor's linears, and rules over the other 2-D weights.
        var selected: [String: (QuantScheme, DiTLinear)] = [:]
        for t in ck.tensors where t.name.hasSuffix(".weight") {
            let linear = d.linear(weight: t.name)
            let shape2 = linear.map { [$0.n, $0.k] } ?? t.shape
            guard shape2.count == 2, !recipe.skips.contains(where: { $0.matches(t.name) }) else { continue }
            var scheme: QuantScheme?
            if let rule = recipe.rules.first(where: { $0.matches(t.name) }) {
                scheme = rule.scheme
            } else if linear?.quantizedByDefault == true {
                scheme = recipe.defaultScheme
            }
            guard let scheme else { continue }
            guard case .dtype(let dt) = t.encoding, dt.isFloatingPoint else {
                throw QuantizeError.notFloat(path: model, tensor: t.name, encoding: t.encoding.description)
            }
            try scheme.check(tensor: t.name, k: shape2[1])
            let p = String(t.name.dropLast(".weight".count))
            selected[p] = (scheme, linear ?? DiTLinear(prefix: p, role: .attentionOut, block: "", n: shape2[0], k: shape2[1], convolution: false,
                                                        quantizedByDefault: false, weightOnly: false, fusion: nil))
        }
        // Units: fused groups whose members are all selected with one scheme; every other linear alone.
        var units: [Unit] = []
        var unitOf: [String: Int] = [:]
        for t in ck.tensors where t.name.hasSuffix(".weight") {
            let p = String(t.name.dropLast(".weight".count))
            guard let (scheme, linear) = selected[p], unitOf[p] == nil else { continue }
            var members = [linear]
            if let f = linear.fusion {
                let group = d.linears.filter { $0.fusion == f }
                if group.allSatisfy({ selected[$0.prefix]?.0 == scheme }) { members = group }
            }
            for m in members { unitOf[m.prefix] = units.count }
            units.append(Unit(prefixes: members.map(\.prefix), scheme: scheme, linears: members))
        }

        // Output plan, in checkpoint order; a unit's parts are made when its first member's weight comes up.
        func specs(_ p: String, _ linear: DiTLinear, _ source: CheckpointTensor, _ scheme: QuantScheme, rank: Int, smooth: Bool) -> [TensorSpec] {
            guard case .dtype(let dt) = source.encoding else { return [] }
            if options.fake { return [TensorSpec(name: p + ".weight", dtype: options.fakeDType ?? dt, shape: source.shape)] }
            var o = QKitQuantizer.outputSpecs(name: p + ".weight", dtype: dt, shape: [linear.n, linear.k], scheme: scheme, options: options)
            if smooth { o.append(TensorSpec(name: p + ".smooth", dtype: .f32, shape: [linear.k])) }
            if rank > 0 {
                let lt: DType = dt == .f16 ? .f16 : .bf16
                o += [TensorSpec(name: p + ".lora_down", dtype: lt, shape: [rank, linear.k]), TensorSpec(name: p + ".lora_up", dtype: lt, shape: [linear.n, rank])]
            }
            return o
        }
        // The plan: every output tensor's shape is known before anything is quantized (rank and smoothing from `planner`).
        var planned: [String: [TensorSpec]] = [:]
        for unit in units {
            let p = planner(unit.linears, unit.scheme, unit.linears.reduce(0) { $0 + $1.n }, unit.linears[0].k)
            for l in unit.linears {
                planned[l.prefix] = specs(l.prefix, l, ck[l.prefix + ".weight"]!, unit.scheme, rank: options.fake ? 0 : p.rank,
                                          smooth: !options.fake && p.smooth)
            }
        }
        var plan: [TensorSpec] = []
        enum Item { case copy(CheckpointTensor), parts(String) }
        var items: [Item] = []
        for t in ck.tensors {
            if t.name.hasSuffix(".weight"), let o = planned[String(t.name.dropLast(".weight".count))] {
                plan += o
                items.append(.parts(String(t.name.dropLast(".weight".count))))
            } else {
                guard case .dtype(let dt) = t.encoding else { throw QuantizeError.unsupportedInput(path: model, kind: "GGUF") }
                plan.append(TensorSpec(name: t.name, dtype: dt, shape: t.shape))
                items.append(.copy(t))
            }
        }
        var seen = Set<String>()
        for s in plan where !seen.insert(s.name).inserted { throw QuantizeError.nameClash(path: model, tensor: s.name) }

        // Streaming: a unit is quantized when its first member's weight comes up in checkpoint order; the other
        // members' bytes wait (inside the same block) until theirs does. Memory: one fused unit.
        var pending: [String: [(TensorSpec, [UInt8])]] = [:]
        var report = QuantizeReport()
        func quantizeUnit(_ unit: Unit) throws {
            let (n, k) = (unit.linears.reduce(0) { $0 + $1.n }, unit.linears[0].k)
            var w = [Float](repeating: 0, count: n * k)
            var row = 0
            for l in unit.linears {
                let t = ck[l.prefix + ".weight"]!
                guard case .dtype(let dt) = t.encoding else { continue }
                w.withUnsafeMutableBufferPointer { b in
                    Conversion.decode(dt, ck.data(t), into: UnsafeMutableBufferPointer(rebasing: b[(row * k)..<((row + l.n) * k)]))
                }
                row += l.n
            }
            let parts = try quantizer(w, n, k, unit.scheme, unit.linears)
            row = 0
            for l in unit.linears {
                let t = ck[l.prefix + ".weight"]!
                guard case .dtype(let dt) = t.encoding else { continue }
                let q = slice(parts.weight, rows: row..<(row + l.n))
                var bytes: [(TensorSpec, [UInt8])] = []
                if options.fake {
                    var f = [Float](repeating: 0, count: l.n * k)
                    f.withUnsafeMutableBufferPointer { q.dequantize(into: $0.baseAddress!) }
                    if let s = parts.smooth { for r in 0..<l.n { for c in 0..<k { f[r * k + c] /= s[c] } } }
                    if let down = parts.loraDown, let up = parts.loraUp {
                        for r in 0..<l.n { for j in 0..<parts.rank { let u = up[(row + r) * parts.rank + j]; for c in 0..<k { f[r * k + c] += u * down[j * k + c] } } }
                    }
                    let type = options.fakeDType ?? dt
                    bytes = [(TensorSpec(name: t.name, dtype: type, shape: t.shape), encode(f, type))]
                } else {
                    bytes = q.tensors(prefix: l.prefix)
                    if let s = parts.smooth { bytes.append((TensorSpec(name: l.prefix + ".smooth", dtype: .f32, shape: [k]), encode(s, .f32))) }
                    if let down = parts.loraDown, let up = parts.loraUp {
                        let lt: DType = dt == .f16 ? .f16 : .bf16
                        let upRows = Array(up[(row * parts.rank)..<((row + l.n) * parts.rank)])
                        bytes += [(TensorSpec(name: l.prefix + ".lora_down", dtype: lt, shape: [parts.rank, k]), encode(down, lt)),
                                  (TensorSpec(name: l.prefix + ".lora_up", dtype: lt, shape: [l.n, parts.rank]), encode(upRows, lt))]
                    }
                }
                guard bytes.map(\.0) == planned[l.prefix] else {
                    throw QuantizeError.nameClash(path: model, tensor: l.prefix + " (the quantizer's parts do not match the plan)")
                }
                pending[l.prefix] = bytes
                report.quantized.append((t.name, unit.scheme, [l.n, k]))
                log?("\(t.name) [\(l.n), \(k)] \(t.encoding) → \(unit.scheme)\(unit.linears.count > 1 ? " (with \(unit.linears.count - 1) fused)" : "")"
                     + (parts.loraDown != nil ? ", rank \(parts.rank)" : ""))
                row += l.n
            }
        }


        let out = try OutputDirectory(path: output)
        let writer = try ShardedSafetensorsWriter(directory: out.stagingPath, tensors: plan, metadata: [("format", "pt")],
                                                  maxShardSize: options.maxShardSize, prefix: "diffusion_pytorch_model")
        for item in items {
            switch item {
            case .copy(let t):
                try QKitQuantizer.copyTensor(t, ck: ck, writer: writer)
                report.copied += 1
                report.bytesRead += t.byteCount
            case .parts(let p):
                if pending[p] == nil { try quantizeUnit(units[unitOf[p]!]) }
                for (_, bytes) in pending.removeValue(forKey: p)! { try bytes.withUnsafeBytes { try writer.write($0) } }
                report.bytesRead += ck[p + ".weight"]!.byteCount
            }
        }
        try writer.finish()
        report.bytesWritten = plan.reduce(0) { $0 + ($1.byteCount ?? 0) }

        // config.json: the recipe, the family, original shapes of quantized convolutions.
        let modules = report.quantized.map { (String($0.name.dropLast(".weight".count)), $0.scheme) }
        var config = (try QKitConfig.outputConfig(ck.config, recipe: recipe, items: modules, fake: options.fake)).objectValue!
        let key = options.fake ? QKitConfig.fakeKey : "quantization_config"
        var qc = config[key]!.objectValue!
        if let algorithm { qc["algorithm"] = .string(algorithm) }
        qc["diffusion"] = .object(JSONObject([("family", .string(d.family)), ("class", .string(d.className))]))
        let convs = d.linears.filter { $0.convolution && selected[$0.prefix] != nil }
        if !convs.isEmpty, !options.fake {
            qc["weight_shapes"] = .object(JSONObject(convs.map { ($0.prefix, JSONValue.array([.int($0.n), .int($0.k), 1, 1])) }))
        }
        for (k, v) in extra { qc[k] = v }
        config[key] = .object(qc)
        try writeSmallFile(out.stagedPath("config.json"), JSONValue.object(config).serialized(indent: 2) + "\n")
        try QKitQuantizer.copyModelFiles(from: ck.directory!, to: out)
        report.files = listDirectory(out.stagingPath)
        try out.commit()
        report.seconds = monotonicSeconds() - start
        return report
    }

    /// Rows `rows` of a quantized weight (per-tensor parameters are shared by every slice).
    static func slice(_ q: QuantizedWeight, rows: Range<Int>) -> QuantizedWeight {
        let k = q.columns, g = q.groupsPerRow
        let codes = Array(q.codes[(rows.lowerBound * k)..<(rows.upperBound * k)])
        let params = g == 0 ? q.parameters : Array(q.parameters[(rows.lowerBound * g)..<(rows.upperBound * g)])
        return QuantizedWeight(scheme: q.scheme, rows: rows.count, columns: k, codes: codes, parameters: params, globalScale: q.globalScale)
    }

    static func encode(_ values: [Float], _ dtype: DType) -> [UInt8] {
        var out = [UInt8](repeating: 0, count: dtype.byteCount(elements: values.count)!)
        values.withUnsafeBufferPointer { v in out.withUnsafeMutableBytes { Conversion.encode(v, as: dtype, into: $0) } }
        return out
    }
}
