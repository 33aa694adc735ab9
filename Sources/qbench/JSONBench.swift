import CJSONC
import Common
import Foundation

/// `qbench json`: parse a synthetic safetensors header (MoE-like names, 17,200 tensors plus
/// `__metadata__`, about 2 MB) and pull dtype, shape and offsets out of every entry, with
/// qkit's `SafetensorsHeader.parse(json:)` (strict, validating), json-c and Foundation's JSONSerialization.
func runJSON(_ args: [String]) throws {
    let o = try Options(args)
    let entries = try o.int("entries", 17_200)
    let reps = try o.int("reps", 5)
    let header = syntheticHeader(entries: entries)
    print("json: \(entries) tensors, \(header.count) bytes of header, best of \(reps)")

    var rows: [[String]] = [["parser", "ms", "vs qkit"]]
    var results: [(String, Double)] = []
    var failure: (any Error)?
    header.withUnsafeBytes { raw in
        do {
            let checksum = try qkitWalk(raw)
            guard jsoncWalk(raw) == checksum, foundationWalk(raw) == checksum else {
                failure = UsageError(description: "the parsers disagree on the header")
                return
            }
            results.append(("qkit SafetensorsHeader.parse(json:)", try bestOf(reps) { blackHole(try qkitWalk(raw)) }))
            results.append(("qkit JSONParser.parse (tree only)", try bestOf(reps) { blackHole(try JSONParser.parse(raw)) }))
            results.append(("json-c tokener_parse_ex + iterator", bestOf(reps) { blackHole(jsoncWalk(raw)) }))
            results.append(("Foundation JSONSerialization", bestOf(reps) { blackHole(foundationWalk(raw)) }))
        } catch {
            failure = error
        }
    }
    if let failure { throw failure }
    let base = results[0].1
    for (name, t) in results { rows.append([name, fmt(t * 1000, 1), fmt(t / base) + "x"]) }
    printTable(rows)
}

/// A safetensors header as `SafetensorsHeader.encode` writes it.
func syntheticHeader(entries: Int) -> [UInt8] {
    var infos: [TensorInfo] = []
    infos.reserveCapacity(entries)
    var offset = 0
    let projs = ["gate_proj", "up_proj", "down_proj"]
    var i = 0
    outer: for layer in 0... {
        for expert in 0..<128 {
            for p in projs {
                if i == entries { break outer }
                let shape = p == "down_proj" ? [2048, 768] : [768, 2048]
                let n = shape[0] * shape[1] * 2
                infos.append(TensorInfo(name: "model.layers.\(layer).mlp.experts.\(expert).\(p).weight", dtype: .bf16, shape: shape,
                                        dataOffsets: offset..<offset + n))
                offset += n
                i += 1
            }
        }
    }
    return SafetensorsHeader.encode(tensors: infos, metadata: [("format", "pt"), ("producer", "qbench")])
}

/// Sum over entries of shape and offsets, so the three parsers can be checked against each other.
func qkitWalk(_ raw: UnsafeRawBufferPointer) throws -> Int {
    let h = try SafetensorsHeader.parse(json: raw)
    var sum = 0
    for t in h.tensors { sum &+= t.shape.reduce(0, &+) &+ t.dataOffsets.lowerBound &+ t.dataOffsets.upperBound &+ t.dtype.bitSize }
    return sum
}

func jsoncWalk(_ raw: UnsafeRawBufferPointer) -> Int {
    guard let tok = json_tokener_new() else { return -1 }
    defer { json_tokener_free(tok) }
    let base = raw.baseAddress!.assumingMemoryBound(to: CChar.self)
    guard let root = json_tokener_parse_ex(tok, base, Int32(raw.count)),
          json_tokener_get_error(tok) == json_tokener_success else { return -1 }
    defer { json_object_put(root) }
    var sum = 0
    var it = json_object_iter_begin(root)
    var end = json_object_iter_end(root)
    while json_object_iter_equal(&it, &end) == 0 {
        let name = json_object_iter_peek_name(&it)!
        let v = json_object_iter_peek_value(&it)
        if strcmp(name, "__metadata__") != 0 {
            var d: OpaquePointer?
            var s: OpaquePointer?
            var off: OpaquePointer?
            if json_object_object_get_ex(v, "dtype", &d) != 0, json_object_object_get_ex(v, "shape", &s) != 0,
               json_object_object_get_ex(v, "data_offsets", &off) != 0 {
                let dt = DType(rawValue: String(cString: json_object_get_string(d)))
                sum &+= dt?.bitSize ?? 0
                for k in 0..<json_object_array_length(s) { sum &+= Int(json_object_get_int64(json_object_array_get_idx(s, k))) }
                for k in 0..<json_object_array_length(off) { sum &+= Int(json_object_get_int64(json_object_array_get_idx(off, k))) }
            }
        }
        json_object_iter_next(&it)
    }
    return sum
}

func foundationWalk(_ raw: UnsafeRawBufferPointer) -> Int {
    let data = Data(raw)
    guard let root = try? JSONSerialization.jsonObject(with: data) as? [String: Any] else { return -1 }
    var sum = 0
    for (k, v) in root where k != "__metadata__" {
        guard let d = v as? [String: Any], let dt = d["dtype"] as? String, let shape = d["shape"] as? [Int],
              let off = d["data_offsets"] as? [Int] else { return -1 }
        sum &+= DType(rawValue: dt)?.bitSize ?? 0
        sum &+= shape.reduce(0, &+) &+ off.reduce(0, &+)
    }
    return sum
}
