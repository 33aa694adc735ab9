#if canImport(Glibc)
import Glibc
#endif

/// What `qinspect` was asked to show.
public struct InspectOptions: Sendable {
    public enum Output: Sendable { case table, json, jsonl }
    public var output: Output = .table
    /// Shell globs on tensor names; a tensor is shown when any matches (all when empty).
    public var filters: [String] = []
    public var summary = false
    public var stats = false
    public var histogram = false
    public var logHistogram = false
    public init() {}
}

/// Renders what `qinspect` prints for one checkpoint. Listing and summary read headers only.
public struct Inspector {
    public let checkpoint: Checkpoint
    public let options: InspectOptions

    public init(checkpoint: Checkpoint, options: InspectOptions) {
        self.checkpoint = checkpoint
        self.options = options
    }

    /// The tensors the filters select.
    public var selected: [CheckpointTensor] {
        guard !options.filters.isEmpty else { return checkpoint.tensors }
        return checkpoint.tensors.filter { t in options.filters.contains { fnmatch($0, t.name, 0) == 0 } }
    }

    /// Writes the report to `emit` (called with chunks of text, in order).
    public func run(_ emit: (String) -> Void) throws {
        let tensors = selected
        switch options.output {
        case .jsonl:
            for t in tensors {
                var o = tensorJSON(t)
                o["checkpoint"] = .string(checkpoint.path)
                if options.stats { o["stats"] = statsJSON(try statistics(t)) }
                emit(JSONValue.object(o).serialized() + "\n")
            }
            if options.summary {
                var s = summaryJSON(CheckpointSummary(checkpoint))
                s["checkpoint"] = .string(checkpoint.path)
                s["record"] = "summary"
                emit(JSONValue.object(s).serialized() + "\n")
            }
        case .json:
            emit(JSONValue.object(try document(tensors)).serialized(indent: 2) + "\n")
        case .table:
            if options.summary {
                emit(summaryText(CheckpointSummary(checkpoint)))
                if !options.stats && options.filters.isEmpty { return }
                emit("\n")
            }
            if options.stats {
                emit(try statsTable(tensors))
            } else {
                emit(listing(tensors))
            }
        }
    }

    /// The whole report as one JSON object.
    public func document(_ tensors: [CheckpointTensor]) throws -> JSONObject {
        var root = JSONObject()
        root["path"] = .string(checkpoint.path)
        root["kind"] = .string(checkpoint.kind.rawValue)
        root["files"] = .array(zip(checkpoint.filePaths, checkpoint.files).map { ["path": .string($0), "bytes": .int($1.count)] })
        var list: [JSONValue] = []
        let stats = options.stats ? try allStatistics(tensors) : []
        for (i, t) in tensors.enumerated() {
            var o = tensorJSON(t)
            if options.stats { o["stats"] = statsJSON(stats[i]) }
            list.append(.object(o))
        }
        root["tensors"] = .array(list)
        root["tensor_count"] = .int(tensors.count)
        root["parameters"] = .int(tensors.reduce(0) { $0 + $1.elementCount })
        root["bytes"] = .int(tensors.reduce(0) { $0 + $1.byteCount })
        if let md = checkpoint.safetensorsMetadata.first, let md {
            root["metadata"] = .object(JSONObject(md.map { (key: $0.key, value: .string($0.value)) }))
        }
        if options.summary { root["summary"] = .object(summaryJSON(CheckpointSummary(checkpoint))) }
        return root
    }

    func tensorJSON(_ t: CheckpointTensor) -> JSONObject {
        var o = JSONObject()
        o["name"] = .string(t.name)
        o["dtype"] = .string(t.encoding.description)
        o["shape"] = .array(t.shape.map { .int($0) })
        o["params"] = .int(t.elementCount)
        o["bytes"] = .int(t.byteCount)
        if checkpoint.files.count > 1 { o["file"] = .string(checkpoint.filePaths[t.fileIndex]) }
        o["offset"] = .int(t.fileRange.lowerBound)
        return o
    }

    func allStatistics(_ tensors: [CheckpointTensor], progress: Progress? = nil) throws -> [TensorStatistics] {
        try StatisticsEngine.compute(tensors, in: checkpoint, histogram: options.histogram, progress: progress)
    }

    func statistics(_ t: CheckpointTensor) throws -> TensorStatistics {
        try StatisticsEngine.compute(t, in: checkpoint, histogram: options.histogram)
    }

    // MARK: listing

    func listing(_ tensors: [CheckpointTensor]) -> String {
        let rows = tensors.map { t in
            [t.name, t.encoding.description, shapeText(t.shape), humanCount(t.elementCount), humanBytes(t.byteCount)]
        }
        var out = renderTable(header: ["NAME", "DTYPE", "SHAPE", "PARAMS", "BYTES"], rows: rows, rightAligned: [3, 4])
        out += totalsLine(tensors) + "\n"
        return out
    }

    func totalsLine(_ tensors: [CheckpointTensor]) -> String {
        var byType: [String: Int] = [:]
        for t in tensors { byType[t.encoding.description, default: 0] += 1 }
        let types = byType.sorted { ($0.value, $1.key) > ($1.value, $0.key) }.map { "\($0.key) ×\($0.value)" }.joined(separator: ", ")
        let params = tensors.reduce(0) { $0 + $1.elementCount }
        let bytes = tensors.reduce(0) { $0 + $1.byteCount }
        var s = "\(tensors.count) tensors"
        if tensors.count != checkpoint.tensors.count { s += " (of \(checkpoint.tensors.count))" }
        s += ", \(humanCount(params)) elements, \(humanBytes(bytes))"
        if !types.isEmpty { s += " (\(types))" }
        if checkpoint.files.count > 1 { s += " in \(checkpoint.files.count) files" }
        return s
    }

    // MARK: statistics

    func statsTable(_ tensors: [CheckpointTensor]) throws -> String {
        var rows: [[String]] = []
        var header = ["NAME", "DTYPE", "SHAPE", "MIN", "MAX", "MEAN", "STD", "ABSMAX", "ZEROS", "NAN", "INF", "KURT", "OUTLIER CHANNELS"]
        if options.histogram { header.append("HISTOGRAM") }
        let progress = Progress(total: tensors.reduce(0) { $0 + $1.byteCount }, label: "stats")
        let all = try allStatistics(tensors, progress: progress)
        for (t, s) in zip(tensors, all) {
            var r = [t.name, t.encoding.description, shapeText(t.shape)]
            if !t.encoding.canDecode || t.elementCount == 0 {
                r += Array(repeating: "-", count: 10)
            } else {
                r += [Double(s.min), Double(s.max), s.mean, s.std, Double(s.absMax)].map { shortFloat($0) }
                r += [String(s.zeroCount), String(s.nanCount), String(s.infCount), shortFloat(s.kurtosis, digits: 3)]
                r.append(s.outlierChannels.map { "\($0.channel)×\(shortFloat(Double($0.ratio), digits: 3))" }.joined(separator: " "))
            }
            if options.histogram { r.append(s.histogram.map { "|" + sparkline($0, logarithmic: options.logHistogram) + "|" } ?? "") }
            rows.append(r)
        }
        progress.finish()
        return renderTable(header: header, rows: rows, rightAligned: Set(3...11)) + totalsLine(tensors) + "\n"
    }

    func statsJSON(_ s: TensorStatistics) -> JSONValue {
        func num(_ v: Double) -> JSONValue { v.isFinite ? .double(v) : .null }
        var o: JSONObject = JSONObject()
        o["count"] = .int(s.count)
        o["min"] = num(Double(s.min))
        o["max"] = num(Double(s.max))
        o["mean"] = num(s.mean)
        o["std"] = num(s.std)
        o["absmax"] = num(Double(s.absMax))
        o["zeros"] = .int(s.zeroCount)
        o["nan"] = .int(s.nanCount)
        o["inf"] = .int(s.infCount)
        o["kurtosis"] = num(s.kurtosis)
        o["outlier_channels"] = .array(s.outlierChannels.map {
            ["channel": .int($0.channel), "absmax": num(Double($0.absMax)), "ratio": num(Double($0.ratio))]
        })
        if let h = s.histogram { o["histogram"] = .array(h.map { .int($0) }) }
        return .object(o)
    }

    // MARK: summary

    func summaryText(_ s: CheckpointSummary) -> String {
        var out = "\(checkpoint.path): \(s.kind.rawValue), \(s.files) file\(s.files == 1 ? "" : "s"), \(humanBytes(s.fileBytes))\n"
        if let a = s.architecture {
            var parts: [String] = []
            if let f = a.family { parts.append(f) }
            if let x = a.architecture { parts.append("(\(x))") }
            out += "architecture  " + parts.joined(separator: " ") + "\n"
            var dims: [String] = []
            if let v = a.layers { dims.append("layers \(v)") }
            if let v = a.hidden { dims.append("hidden \(v)") }
            if let v = a.intermediate { dims.append("intermediate \(v)") }
            if let h = a.heads { dims.append("heads \(h)/\(a.kvHeads ?? h) kv") }
            if let v = a.headDim { dims.append("head_dim \(v)") }
            if let v = a.vocab { dims.append("vocab \(v)") }
            if let v = a.tiedEmbeddings { dims.append(v ? "tied embeddings" : "untied lm_head") }
            if let v = a.contextLength { dims.append("context \(v)") }
            if let v = a.dtype { dims.append("dtype \(v)") }
            out += "              " + dims.joined(separator: ", ") + "\n"
        } else {
            out += "architecture  unknown (no config.json)\n"
        }
        out += "parameters    \(humanCount(s.parameters)) (\(s.parameters)) in \(s.tensors) tensors, \(humanBytes(s.dataBytes)) of data, "
        out += shortFloat(s.bitsPerParameter, digits: 4) + " bits/param\n"
        out += "quantization  \(s.format)\n"
        for (k, v) in s.settings { out += "              \(k): \(v)\n" }
        if let b = s.quantizedBitsPerWeight {
            out += "              \(shortFloat(b, digits: 4)) bits/weight over \(humanCount(s.quantizedParameters)) quantized weights (scales and zeros included)\n"
        }
        if let d = s.diffusion { out += d.text }
        out += "\n"
        let rows = s.groups.map { g in
            [g.name, String(g.tensors), humanCount(g.parameters), humanBytes(g.bytes), shortFloat(g.bitsPerParameter, digits: 4),
             cFormat("%.1f%%", s.dataBytes > 0 ? 100 * Double(g.bytes) / Double(s.dataBytes) : 0)]
        }
        out += renderTable(header: ["GROUP", "TENSORS", "PARAMS", "BYTES", "BITS/PARAM", "SHARE"], rows: rows, rightAligned: Set(1...5))
        out += "\n"
        let typeRows = s.bytesByType.map { [$0.type, String($0.tensors), humanBytes($0.bytes)] }
        out += renderTable(header: ["DTYPE", "TENSORS", "BYTES"], rows: typeRows, rightAligned: [1, 2])
        if !s.metadata.isEmpty {
            out += "\nmetadata\n"
            for (k, v) in s.metadata { out += "  \(k): \(v.count > 120 ? String(v.prefix(117)) + "..." : v)\n" }
        }
        return out
    }

    func summaryJSON(_ s: CheckpointSummary) -> JSONObject {
        var o = JSONObject()
        o["kind"] = .string(s.kind.rawValue)
        o["files"] = .int(s.files)
        o["file_bytes"] = .int(s.fileBytes)
        o["tensors"] = .int(s.tensors)
        o["parameters"] = .int(s.parameters)
        o["data_bytes"] = .int(s.dataBytes)
        o["bits_per_param"] = .double(s.bitsPerParameter)
        if let a = s.architecture {
            var j = JSONObject()
            func put(_ k: String, _ v: Int?) { if let v { j[k] = .int(v) } }
            if let f = a.family { j["family"] = .string(f) }
            if let x = a.architecture { j["architecture"] = .string(x) }
            put("layers", a.layers); put("hidden", a.hidden); put("intermediate", a.intermediate)
            put("heads", a.heads); put("kv_heads", a.kvHeads); put("head_dim", a.headDim); put("vocab", a.vocab)
            put("context_length", a.contextLength)
            if let t = a.tiedEmbeddings { j["tied_embeddings"] = .bool(t) }
            if let d = a.dtype { j["dtype"] = .string(d) }
            o["architecture"] = .object(j)
        }
        var q = JSONObject()
        q["format"] = .string(s.format)
        for (k, v) in s.settings { q[k.replacingSpaces()] = .string(v) }
        if let b = s.quantizedBitsPerWeight { q["bits_per_weight"] = .double(b) }
        q["quantized_parameters"] = .int(s.quantizedParameters)
        o["quantization"] = .object(q)
        if let d = s.diffusion { o["diffusion"] = d.json }
        o["groups"] = .array(s.groups.map {
            ["name": .string($0.name), "tensors": .int($0.tensors), "parameters": .int($0.parameters), "bytes": .int($0.bytes),
             "bits_per_param": .double($0.bitsPerParameter)]
        })
        o["dtypes"] = .array(s.bytesByType.map { ["dtype": .string($0.type), "tensors": .int($0.tensors), "bytes": .int($0.bytes)] })
        return o
    }
}

extension String {
    func replacingSpaces() -> String { String(map { $0 == " " || $0 == "-" ? "_" : $0 }) }
}

/// Progress with an ETA on stderr, shown only when stderr is a terminal.
public final class Progress {
    var total: Int
    let label: String
    /// `nil`: the rate is bytes per second; otherwise the name of what is counted.
    let unit: String?
    var done = 0
    let start = monotonicSeconds()
    var lastPrint = 0.0
    let enabled: Bool

    public init(total: Int, label: String, quiet: Bool = false, unit: String? = nil) {
        self.total = total
        self.label = label
        self.unit = unit
        enabled = !quiet && isatty(2) == 1
    }

    public func advance(_ n: Int) { update(done: done + n, total: total) }

    /// Sets how much of how much is done.
    public func update(done: Int, total: Int) {
        self.done = done
        self.total = total
        guard enabled else { return }
        let now = monotonicSeconds()
        guard now - lastPrint > 0.2 else { return }
        lastPrint = now
        let elapsed = now - start
        let rate = elapsed > 0 ? Double(done) / elapsed : 0
        let eta = rate > 0 ? Double(total - done) / rate : 0
        let pct = total > 0 ? 100 * Double(done) / Double(total) : 100
        let speed = unit.map { "\(done)/\(total) \($0)" } ?? "\(humanBytes(Int(rate)))/s"
        writeStandardError("\r\(label) " + cFormat("%5.1f%%", pct) + "  \(speed)  ETA " + cFormat("%.0fs   ", eta))
    }

    public func finish() {
        if enabled && lastPrint > 0 { writeStandardError("\r\u{1B}[K") }
    }
}

/// Seconds from a monotonic clock.
public func monotonicSeconds() -> Double {
    var ts = timespec()
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return Double(ts.tv_sec) + Double(ts.tv_nsec) * 1e-9
}
