/// One problem `qinspect --verify` found.
public struct VerifyProblem: Sendable, Equatable {
    /// The tensor concerned, if any.
    public var tensor: String?
    public var message: String
}

/// The outcome of a full check of a checkpoint.
public struct VerifyResult: Sendable {
    public var tensors = 0
    public var bytes = 0
    public var problems: [VerifyProblem] = []
    public var isClean: Bool { problems.isEmpty }

    public func text(path: String) -> String {
        var out = ""
        for p in problems { out += "\(path): \(p.tensor.map { "\($0): " } ?? "")\(p.message)\n" }
        out += "\(path): " + (isClean ? "OK" : "\(problems.count) problem\(problems.count == 1 ? "" : "s")")
        out += " (\(tensors) tensors, \(humanBytes(bytes)) checked)\n"
        return out
    }

    public func json(path: String) -> JSONValue {
        [
            "path": .string(path), "ok": .bool(isClean), "tensors": .int(tensors), "bytes": .int(bytes),
            "problems": .array(problems.map { p in
                var o = JSONObject()
                if let t = p.tensor { o["tensor"] = .string(t) }
                o["message"] = .string(p.message)
                return .object(o)
            }),
        ]
    }
}

/// `qinspect --verify`: the structural checks done on opening (header rules, shard index), then every
/// value of every floating-point tensor (NaN and Inf are reported; quantized GGUF blocks are decoded, so a
/// broken block scale shows), then consistency with config.json.
public enum CheckpointVerifier {
    /// Thrown by the tool when problems were found (exit 65).
    public static func verify(_ ck: Checkpoint) throws -> VerifyResult {
        var r = VerifyResult()
        r.tensors = ck.tensors.count
        r.bytes = ck.dataBytes
        let checked = ck.tensors.filter { $0.encoding.isFloatingPoint && $0.encoding.canDecode }
        for (t, s) in zip(checked, try StatisticsEngine.compute(checked, in: ck, outliers: 0)) {
            if s.nanCount > 0 { r.problems.append(VerifyProblem(tensor: t.name, message: "\(s.nanCount) NaN value\(s.nanCount == 1 ? "" : "s")")) }
            if s.infCount > 0 { r.problems.append(VerifyProblem(tensor: t.name, message: "\(s.infCount) infinite value\(s.infCount == 1 ? "" : "s")")) }
        }
        r.problems += configProblems(ck)
        return r
    }

    /// Shapes that contradict config.json (embedding size, layer count).
    static func configProblems(_ ck: Checkpoint) -> [VerifyProblem] {
        guard let c = ck.config else { return [] }
        let a = ArchitectureSummary(config: c)
        var out: [VerifyProblem] = []
        if let e = ck["model.embed_tokens.weight"], e.shape.count == 2 {
            if let v = a.vocab, e.shape[0] != v {
                out.append(VerifyProblem(tensor: e.name, message: "\(e.shape[0]) rows but config.json says vocab_size \(v)"))
            }
            if let h = a.hidden, e.shape[1] != h {
                out.append(VerifyProblem(tensor: e.name, message: "\(e.shape[1]) columns but config.json says hidden_size \(h)"))
            }
        }
        if let layers = a.layers {
            var maxLayer = -1
            for t in ck.tensors {
                let parts = t.name.split(separator: ".")
                guard let i = parts.firstIndex(of: "layers"), i + 1 < parts.count, let n = Int(parts[i + 1]) else { continue }
                maxLayer = max(maxLayer, n)
            }
            if maxLayer >= 0, maxLayer + 1 != layers {
                out.append(VerifyProblem(tensor: nil, message: "tensors for \(maxLayer + 1) layers but config.json says num_hidden_layers \(layers)"))
            }
        }
        if a.tiedEmbeddings == false, ck["model.embed_tokens.weight"] != nil, ck["lm_head.weight"] == nil,
            !ck.tensors.contains(where: { $0.name.hasPrefix("lm_head.") })
        {
            out.append(VerifyProblem(tensor: nil, message: "config.json says tie_word_embeddings false but there is no lm_head"))
        }
        return out
    }
}

/// `--verify` found problems (they were printed); exit 65.
public struct VerifyFailed: QKitError {
    public init() {}
    public var exitStatus: ExitStatus { .dataError }
    public var description: String { "verification failed" }
}
