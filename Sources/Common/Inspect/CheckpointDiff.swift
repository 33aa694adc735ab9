#if canImport(Glibc)
import Glibc
#endif

/// How one tensor differs between two checkpoints.
public struct TensorDifference: Sendable {
    public enum Status: String, Sendable {
        case identical, changed, added, removed
        case shapeChanged = "shape-changed"
        case notComparable = "not-comparable"
    }

    public var name: String
    public var status: Status
    public var encodingA: String?
    public var encodingB: String?
    public var shapeA: [Int]?
    public var shapeB: [Int]?
    /// Largest |a − b| over elements.
    public var maxAbsDiff: Double = 0
    /// ‖a − b‖ / ‖a‖.
    public var relativeError: Double = 0
    /// Signal-to-quantization-noise ratio 10·log10(‖a‖² / ‖a − b‖²) in dB (+∞ when equal).
    public var sqnrDB: Double = .infinity
    /// Elements where exactly one side is NaN, or both are infinite with different signs.
    public var nonFiniteMismatches = 0

    mutating func apply(_ t: CheckpointDiff.Sums) {
        maxAbsDiff = t.maxAbs
        nonFiniteMismatches = t.mismatches
        relativeError = t.signal > 0 ? (t.noise / t.signal).squareRoot() : (t.noise > 0 ? .infinity : 0)
        sqnrDB = t.noise > 0 ? (t.signal > 0 ? 10 * log10(t.signal / t.noise) : -.infinity) : .infinity
    }
}

/// Tensor-by-tensor comparison of two checkpoints, over decoded values when the dtypes differ.
/// Streams both through mmap in parallel chunks; memory stays bounded.
public struct CheckpointDiff {
    public let pathA: String
    public let pathB: String
    public let differences: [TensorDifference]

    /// Compares every tensor of `a` with the tensor of the same name in `b`. A GGUF checkpoint compared with a
    /// Hugging Face one is matched by Hugging Face names, its q/k rows permuted back as the import does.
    public init(a: Checkpoint, b: Checkpoint) throws {
        pathA = a.path
        pathB = b.path
        let mapA = Self.comparable(a, against: b), mapB = Self.comparable(b, against: a)
        var out: [TensorDifference] = []
        for name in mapA.keys.sorted(by: naturalLess) {
            let (ta, pa) = mapA[name]!
            guard let (tb, pb) = mapB[name] else {
                out.append(TensorDifference(name: name, status: .removed, encodingA: ta.encoding.description, shapeA: ta.shape))
                continue
            }
            var d = TensorDifference(name: name, status: .identical, encodingA: ta.encoding.description,
                                     encodingB: tb.encoding.description, shapeA: ta.shape, shapeB: tb.shape)
            if ta.shape != tb.shape {
                d.status = .shapeChanged
                out.append(d)
                continue
            }
            let da = a.data(ta), db = b.data(tb)
            if ta.encoding == tb.encoding, pa == pb, da.count == db.count, da.elementsEqual(db) {
                out.append(d)
                continue
            }
            guard ta.encoding.canDecode, tb.encoding.canDecode else {
                d.status = .notComparable
                out.append(d)
                continue
            }
            if pa != nil || pb != nil {
                try Self.comparePermuted(da, ta.encoding, pa, db, tb.encoding, pb, shape: ta.shape, into: &d)
            } else {
                try Self.compare(da, ta.encoding, db, tb.encoding, count: ta.elementCount, into: &d)
            }
            d.status = d.maxAbsDiff == 0 && d.nonFiniteMismatches == 0 ? .identical : .changed
            out.append(d)
        }
        for name in mapB.keys.sorted(by: naturalLess) where mapA[name] == nil {
            let tb = mapB[name]!.tensor
            out.append(TensorDifference(name: name, status: .added, encodingB: tb.encoding.description, shapeB: tb.shape))
        }
        differences = out.sorted { naturalLess($0.name, $1.name) }
    }

    /// The tensors of `ck` under the names they are compared by, with the head count of a q/k permutation to undo.
    static func comparable(_ ck: Checkpoint, against other: Checkpoint) -> [String: (tensor: CheckpointTensor, permuteHeads: Int?)] {
        var map: [String: (tensor: CheckpointTensor, permuteHeads: Int?)] = [:]
        guard let g = ck.gguf, other.gguf == nil, let config = try? GGUFModelConfig(g) else {
            for t in ck.tensors { map[t.name] = (t, nil) }
            return map
        }
        for t in ck.tensors {
            if let m = try? config.hfTensor(t.name) {
                map[m.name] = (t, m.permuteHeads)
            } else {
                map[t.name] = (t, nil)
            }
        }
        return map
    }

    /// Compares head by head when one side's rows are in llama.cpp's permuted order.
    static func comparePermuted(_ da: UnsafeRawBufferPointer, _ ea: TensorEncoding, _ pa: Int?, _ db: UnsafeRawBufferPointer,
                                _ eb: TensorEncoding, _ pb: Int?, shape: [Int], into d: inout TensorDifference) throws {
        let heads = pa ?? pb!
        let rowLength = shape.last ?? 1
        let rows = (elementCount(shape) ?? 0) / max(1, rowLength)
        guard heads > 0, rows % heads == 0 else { throw CheckpointError.unknownTensor(d.name) }
        let m = rows / heads * rowLength
        var x = [Float](repeating: 0, count: m), y = x, scratch = x
        var t = Sums()
        for h in 0..<heads {
            for (data, encoding, permuted, isA) in [(da, ea, pa != nil, true), (db, eb, pb != nil, false)] {
                let start = encoding.byteCount(elements: h * m)
                let bytes = UnsafeRawBufferPointer(rebasing: data[start..<start + encoding.byteCount(elements: m)])
                try scratch.withUnsafeMutableBufferPointer { try encoding.decode(bytes, into: $0) }
                if permuted {
                    scratch.withUnsafeBufferPointer { s in
                        if isA {
                            x.withUnsafeMutableBufferPointer { GGUFImport.unpermuteHead(s, into: $0, rows: rows / heads, rowLength: rowLength) }
                        } else {
                            y.withUnsafeMutableBufferPointer { GGUFImport.unpermuteHead(s, into: $0, rows: rows / heads, rowLength: rowLength) }
                        }
                    }
                } else if isA {
                    x = scratch
                } else {
                    y = scratch
                }
            }
            t.add(x, y)
        }
        d.apply(t)
    }

    struct Sums {
        var signal = 0.0, noise = 0.0, maxAbs = 0.0, mismatches = 0

        /// Accumulates the element pairs of `x` (reference) and `y`.
        mutating func add(_ x: [Float], _ y: [Float]) {
            for i in 0..<min(x.count, y.count) {
                let p = Double(x[i]), q = Double(y[i])
                if p.isFinite && q.isFinite {
                    let e = p - q
                    signal += p * p
                    noise += e * e
                    maxAbs = max(maxAbs, abs(e))
                } else if !(p == q || (p.isNaN && q.isNaN)) {
                    mismatches += 1
                }
            }
        }

        mutating func merge(_ o: Sums) {
            signal += o.signal; noise += o.noise; maxAbs = max(maxAbs, o.maxAbs); mismatches += o.mismatches
        }
    }

    static func compare(_ da: UnsafeRawBufferPointer, _ ea: TensorEncoding, _ db: UnsafeRawBufferPointer, _ eb: TensorEncoding,
                        count n: Int, into d: inout TensorDifference) throws {
        let chunk = 1 << 18  // a multiple of every granule (2, 4, 32, 256)
        let chunks = (n + chunk - 1) / chunk
        var partial = [Sums](repeating: Sums(), count: chunks)
        try partial.withUnsafeMutableBufferPointer { out in
            try parallelFor(chunks) { c in
                let start = c * chunk
                let m = min(chunk, n - start)
                var x = [Float](repeating: 0, count: m)
                var y = [Float](repeating: 0, count: m)
                let ra = ea.byteCount(elements: start), rb = eb.byteCount(elements: start)
                try x.withUnsafeMutableBufferPointer { try ea.decode(UnsafeRawBufferPointer(rebasing: da[ra..<ra + ea.byteCount(elements: m)]), into: $0) }
                try y.withUnsafeMutableBufferPointer { try eb.decode(UnsafeRawBufferPointer(rebasing: db[rb..<rb + eb.byteCount(elements: m)]), into: $0) }
                var s = Sums()
                s.add(x, y)
                out[c] = s
            }
        }
        var t = Sums()
        for p in partial { t.merge(p) }
        d.apply(t)
    }

    /// Counts by status.
    public var counts: [TensorDifference.Status: Int] {
        var c: [TensorDifference.Status: Int] = [:]
        for d in differences { c[d.status, default: 0] += 1 }
        return c
    }

    /// The human report: changed tensors with their error, then added/removed, then a totals line.
    public func text() -> String {
        var rows: [[String]] = []
        for d in differences where d.status != .identical {
            var r = [d.name, d.status.rawValue]
            let enc = d.encodingA == d.encodingB ? (d.encodingA ?? "") : "\(d.encodingA ?? "-")→\(d.encodingB ?? "-")"
            let shape = d.shapeA == d.shapeB ? shapeText(d.shapeA ?? []) : "\(d.shapeA.map(shapeText) ?? "-")→\(d.shapeB.map(shapeText) ?? "-")"
            r += [enc, shape]
            if d.status == .changed {
                r += [shortFloat(d.maxAbsDiff), shortFloat(d.relativeError), cFormat("%.2f", d.sqnrDB)]
                if d.nonFiniteMismatches > 0 { r[1] += " (\(d.nonFiniteMismatches) NaN/Inf differ)" }
            } else {
                r += ["", "", ""]
            }
            rows.append(r)
        }
        var out = ""
        if !rows.isEmpty {
            out += renderTable(header: ["NAME", "STATUS", "DTYPE", "SHAPE", "MAX|A-B|", "REL ERR", "SQNR dB"], rows: rows, rightAligned: [4, 5, 6])
        }
        let c = counts
        let parts: [String] = [TensorDifference.Status.identical, .changed, .shapeChanged, .added, .removed, .notComparable].compactMap { s in
            c[s].map { "\($0) \(s.rawValue)" }
        }
        out += "\(pathA) vs \(pathB): " + (parts.isEmpty ? "no tensors" : parts.joined(separator: ", ")) + "\n"
        return out
    }

    /// The report as JSON.
    public func json() -> JSONValue {
        func num(_ v: Double) -> JSONValue { v.isFinite ? .double(v) : (v.isNaN ? .null : .string(v > 0 ? "inf" : "-inf")) }
        var counts = JSONObject()
        for (k, v) in self.counts.sorted(by: { $0.key.rawValue < $1.key.rawValue }) { counts[k.rawValue] = .int(v) }
        return [
            "a": .string(pathA), "b": .string(pathB), "counts": .object(counts),
            "tensors": .array(differences.map { d in
                var o = JSONObject()
                o["name"] = .string(d.name)
                o["status"] = .string(d.status.rawValue)
                if let e = d.encodingA { o["dtype_a"] = .string(e) }
                if let e = d.encodingB { o["dtype_b"] = .string(e) }
                if let s = d.shapeA { o["shape_a"] = .array(s.map { .int($0) }) }
                if let s = d.shapeB { o["shape_b"] = .array(s.map { .int($0) }) }
                if d.status == .changed || d.status == .identical {
                    o["max_abs_diff"] = num(d.maxAbsDiff)
                    o["relative_error"] = num(d.relativeError)
                    o["sqnr_db"] = num(d.sqnrDB)
                    o["nonfinite_mismatches"] = .int(d.nonFiniteMismatches)
                }
                return .object(o)
            }),
        ]
    }
}
