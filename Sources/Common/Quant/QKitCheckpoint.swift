/// A qkit checkpoint that cannot be read.
public struct QKitCheckpointError: QKitError, Equatable {
    public var message: String
    public var file: String
    public init(_ message: String, path: String) {
        self.message = message
        file = path
    }
    public var exitStatus: ExitStatus { .dataError }
    public var path: String? { file }
    public var description: String { message }
}

/// `config.json`'s `quantization_config` of a qkit checkpoint (`man 5 qkit`).
public enum QKitConfig {
    /// The key a fake-quantized (dequantized, plain float) output records its recipe under, so that
    /// loaders that do not know qkit load it as an ordinary model.
    public static let fakeKey = "qkit_fake_quantization"

    /// The recipe as recorded: quant_method, version, algorithm, weight format, bits, group size
    /// (−1 per channel, 0 per tensor), symmetry, the default scheme, rules, skips, every quantized module's
    /// scheme, and the tool's version. Activation and KV formats and calibration are null (data-free).
    public static func recipeObject(_ recipe: QuantRecipe, modules: [(prefix: String, scheme: QuantScheme)], fake: Bool) -> JSONValue {
        let d = recipe.defaultScheme
        let group: Int = switch d.granularity {
        case .tensor: 0
        case .channel: -1
        case .group(let g): g
        }
        let format: String = switch d.format {
        case .int: "int"
        default: d.format.info.name
        }
        var moduleMap = JSONObject()
        for m in modules { moduleMap.members.append((m.prefix, .string(m.scheme.description))) }
        var o: JSONObject = JSONObject([
            ("quant_method", "qkit"), ("version", 1), ("algorithm", .string(d.algorithm.rawValue)),
            ("weight_format", .string(format)), ("bits", .int(d.bits)), ("group_size", .int(group)), ("sym", .bool(d.symmetric)),
            ("weight_scheme", .string(d.description)), ("activation_format", .null), ("kv_cache_format", .null), ("calibration", .null),
            ("rules", .array(recipe.rules.map { .string($0.description) })),
            ("skip", .array(recipe.skips.map { .string($0.pattern) })),
            ("modules", .object(moduleMap)), ("tool", "qquant"), ("tool_version", .string(QuantRecipe.toolVersion)),
        ])
        if fake { o["fake"] = .bool(true) }
        for (key, value) in recipe.record.members { o[key] = value }
        return .object(o)
    }

    /// The output `config.json`: the input's members with the recipe added (replacing an older one).
    /// `activation` and `kvCache`, when given, are recorded as `activation_format` and `kv_cache_format`.
    public static func outputConfig(_ input: JSONValue?, recipe: QuantRecipe, items: [(String, QuantScheme)], fake: Bool,
                                    activation: ActivationQuantization? = nil, kvCache: KVCacheQuantization? = nil) throws -> JSONValue {
        var o = input?.objectValue ?? JSONObject()
        var r = recipeObject(recipe, modules: items.map { (prefix: $0.0, scheme: $0.1) }, fake: fake).objectValue!
        if let activation { r["activation_format"] = activation.json() }
        if let kvCache { r["kv_cache_format"] = kvCache.json }
        o[fake ? fakeKey : "quantization_config"] = .object(r)
        return .object(o)
    }

    /// Reads and checks a qkit `quantization_config`: the module → scheme map (empty if absent).
    public static func parse(_ config: JSONValue?, path: String) throws(QKitCheckpointError) -> [String: QuantScheme] {
        guard let qc = config?["quantization_config"]?.objectValue else {
            throw QKitCheckpointError("config.json has no quantization_config object", path: path)
        }
        guard qc["quant_method"]?.stringValue == "qkit" else {
            throw QKitCheckpointError("quantization_config.quant_method is not \"qkit\"", path: path)
        }
        guard let v = qc["version"]?.intValue else { throw QKitCheckpointError("quantization_config.version is missing or not an integer", path: path) }
        guard v == 1 else { throw QKitCheckpointError("qkit checkpoint version \(v) is not supported (this qkit reads version 1)", path: path) }
        var modules: [String: QuantScheme] = [:]
        switch qc["modules"] {
        case nil, .null?: break
        case .object(let m)?:
            for (prefix, value) in m.members {
                guard let text = value.stringValue else {
                    throw QKitCheckpointError("quantization_config.modules.\(prefix) is not a scheme string", path: path)
                }
                do {
                    guard let s = try QuantScheme.parse(text) else {
                        throw QKitCheckpointError("quantization_config.modules.\(prefix): 'keep' is not a quantized scheme", path: path)
                    }
                    modules[prefix] = s
                } catch let e as SchemeError {
                    throw QKitCheckpointError("quantization_config.modules.\(prefix): \(e.message)", path: path)
                } catch let e as QKitCheckpointError {
                    throw e
                } catch {
                    throw QKitCheckpointError("quantization_config.modules.\(prefix): \(error)", path: path)
                }
            }
        default: throw QKitCheckpointError("quantization_config.modules is not an object", path: path)
        }
        return modules
    }
}

/// A qkit checkpoint read as a `WeightSource`: every quantized `P.weight` is a virtual tensor, dequantized
/// from `P.weight_q`, `P.weight_scale` (and `P.weight_zero_point`, `P.weight_scale_2`,
/// `P.weight_global_scale`, `P.g_idx`) on each read, as `man 5 qkit` defines; other tensors pass through.
public final class QKitWeights: WeightSource, @unchecked Sendable {
    public let checkpoint: Checkpoint
    /// Each quantized module's scheme, as the config records it.
    public let modules: [String: QuantScheme]
    private let base: CheckpointWeights
    private let virtuals: [String: Virtual]

    /// One quantized weight's stored parts.
    struct Virtual {
        var q: CheckpointTensor
        var scale: CheckpointTensor
        var zero: CheckpointTensor?
        var scale2: CheckpointTensor?
        var global: Float
        var groupIndex: [Int32]?
        var n: Int, k: Int
        var scaleRows: Int, scaleColumns: Int
    }

    public var label: String { checkpoint.path }
    public var config: JSONValue? { checkpoint.config }
    public var directory: String? { checkpoint.directory }

    /// Opens a qkit checkpoint directory and checks every quantized weight's tensors.
    public convenience init(path: String) throws { try self.init(try Checkpoint(path: path)) }

    /// Reads the quantized weights of an opened checkpoint (its config must say quant_method qkit).
    public init(_ ck: Checkpoint) throws {
        checkpoint = ck
        base = CheckpointWeights(ck)
        let path = ck.directory.map { $0 + "/config.json" } ?? ck.path
        modules = try QKitConfig.parse(ck.config, path: path)
        var virtuals: [String: Virtual] = [:]
        func fail(_ m: String) -> QKitCheckpointError { QKitCheckpointError(m, path: ck.path) }
        func dtype(_ t: CheckpointTensor) -> DType? { if case .dtype(let d) = t.encoding { d } else { nil } }
        for t in ck.tensors where t.name.hasSuffix(".weight_q") {
            let p = String(t.name.dropLast(".weight_q".count))
            guard t.shape.count == 2, let qd = dtype(t), [.i8, .u8, .f8E4M3, .f8E5M2].contains(qd) else {
                throw fail("\(t.name): codes must be a 2-D I8, U8, F8_E4M3 or F8_E5M2 tensor")
            }
            let (n, k) = (t.shape[0], t.shape[1])
            guard let s = ck[p + ".weight_scale"] else { throw fail("\(t.name) has no \(p).weight_scale") }
            guard s.shape.count == 2, let sd = dtype(s), [.f32, .f16, .bf16, .f8E4M3, .f8E8M0, .i8].contains(sd) else {
                throw fail("\(s.name): scales must be a 2-D F32, F16, BF16, F8_E4M3, F8_E8M0 or I8 (progressive) tensor")
            }
            let (sr, sc) = (s.shape[0], s.shape[1])
            guard sr == 1 || sr == n, sc >= 1, sc <= max(k, 1) else { throw fail("\(s.name): shape [\(sr), \(sc)] does not fit codes [\(n), \(k)]") }
            var v = Virtual(q: t, scale: s, zero: nil, scale2: nil, global: 1, groupIndex: nil, n: n, k: k, scaleRows: sr, scaleColumns: sc)
            if let z = ck[p + ".weight_zero_point"] {
                guard z.shape == s.shape, let zd = dtype(z), zd == .u8 || zd == .f32 else {
                    throw fail("\(z.name): zero points must be U8 or F32 of the scales' shape \(s.shape)")
                }
                v.zero = z
            }
            if let s2 = ck[p + ".weight_scale_2"] {
                guard s2.shape == [n, 1] || s2.shape == [n], dtype(s2) == .f32 else { throw fail("\(s2.name): must be F32 [\(n), 1]") }
                v.scale2 = s2
            }
            if let g = ck[p + ".weight_global_scale"] {
                guard g.elementCount == 1, dtype(g) == .f32 else { throw fail("\(g.name): must be one F32") }
                let value = ck.data(g).loadUnaligned(as: Float.self)
                guard value.isFinite, value != 0 else { throw fail("\(g.name): \(value) is not a usable global scale") }
                v.global = value
            }
            if let gi = ck[p + ".g_idx"] {
                guard gi.shape == [k], dtype(gi) == .i32 else { throw fail("\(gi.name): must be I32 [\(k)]") }
                let raw = ck.data(gi)
                let idx = (0..<k).map { raw.loadUnaligned(fromByteOffset: 4 * $0, as: Int32.self) }
                guard idx.allSatisfy({ $0 >= 0 && Int($0) < sc }) else { throw fail("\(gi.name): a group index is outside 0..<\(sc)") }
                v.groupIndex = idx
            } else if k % sc != 0 {
                throw fail("\(s.name): \(sc) groups do not divide K = \(k)")
            }
            if let m = modules[p] {
                guard m.codeDType == qd, m.scaleDType == sd, (m.zeroPointDType == nil) == (v.zero == nil),
                      !m.progressive || v.scale2 != nil else {
                    throw fail("\(p): stored tensors do not match the recorded scheme \(m)")
                }
            }
            guard virtuals[p + ".weight"] == nil, ck[p + ".weight"] == nil else { throw fail("\(p).weight is stored beside \(t.name)") }
            virtuals[p + ".weight"] = v
        }
        self.virtuals = virtuals
    }

    /// Names of the quantized (virtual) weights.
    public var quantizedWeights: [String] { virtuals.keys.sorted(by: naturalLess) }

    public func contains(_ name: String) -> Bool { virtuals[name] != nil || base.contains(name) }

    public func shape(of name: String) throws -> [Int] {
        if let v = virtuals[name] { return [v.n, v.k] }
        return try base.shape(of: name)
    }

    public func readFloat32(_ name: String, rows: Range<Int>, into destination: UnsafeMutableBufferPointer<Float>) throws {
        guard let v = virtuals[name] else { return try base.readFloat32(name, rows: rows, into: destination) }
        guard rows.lowerBound >= 0, rows.upperBound <= v.n else {
            throw WeightSourceError.badRows(source: label, name: name, rows: rows, count: v.n)
        }
        precondition(destination.count == rows.count * v.k, "destination holds \(destination.count) values, not \(rows.count * v.k)")
        guard case .dtype(let qd) = v.q.encoding, case .dtype(let sd) = v.scale.encoding else { return }
        let table = CodeTable.table(for: qd, hasZeroPoint: v.zero != nil)
        let codes = checkpoint.data(v.q), scales = checkpoint.data(v.scale)
        let zeros = v.zero.map { checkpoint.data($0) }
        let zd: DType? = v.zero.flatMap { if case .dtype(let d) = $0.encoding { d } else { nil } }
        let sc = v.scaleColumns, k = v.k
        let groupLength = v.groupIndex == nil ? k / sc : 0
        var s = [Float](repeating: 0, count: sc)
        var z = [Float](repeating: 0, count: sc)
        let scaleRowBytes = sd.byteCount(elements: sc)!
        table.withUnsafeBufferPointer { t in
            for (i, r) in rows.enumerated() {
                let sr = v.scaleRows == 1 ? 0 : r
                s.withUnsafeMutableBufferPointer { sb in
                    Conversion.decode(sd, UnsafeRawBufferPointer(rebasing: scales[(sr * scaleRowBytes)..<((sr + 1) * scaleRowBytes)]), into: sb)
                    if v.global != 1 { for g in 0..<sc { sb[g] = sb[g] / v.global } }
                }
                if let zeros, let zd {
                    let zb = zd.byteCount(elements: sc)!
                    z.withUnsafeMutableBufferPointer { Conversion.decode(zd, UnsafeRawBufferPointer(rebasing: zeros[(sr * zb)..<((sr + 1) * zb)]), into: $0) }
                }
                var s2: Float = 1
                if let t2 = v.scale2 { s2 = checkpoint.data(t2).loadUnaligned(fromByteOffset: 4 * r, as: Float.self) }
                let out = destination.baseAddress! + i * k
                let row = UnsafeRawBufferPointer(rebasing: codes[(r * k)..<((r + 1) * k)])
                if let gi = v.groupIndex {
                    for c in 0..<k { let g = Int(gi[c]); out[c] = (t[Int(row[c])] - z[g]) * s[g] }
                } else {
                    for g in 0..<sc {
                        let (sg, zg) = (s[g], z[g])
                        for c in (g * groupLength)..<((g + 1) * groupLength) { out[c] = (t[Int(row[c])] - zg) * sg }
                    }
                }
                if s2 != 1 { for c in 0..<k { out[c] *= s2 } }
            }
        }
    }
}
