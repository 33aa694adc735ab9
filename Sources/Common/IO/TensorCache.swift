#if canImport(Glibc)
import Glibc
#endif

/// TVM's tensor cache, the parameter container MLC-LLM loads (formats.md §3c): `tensor-cache.json` beside
/// `params_shard_<n>.bin` files. The JSON holds `{"metadata": {...}, "records": [shard, ...]}`; a shard is
/// `{"dataPath", "format": "raw-shard", "nbytes", "records": [param, ...], "md5sum"}` and a param
/// `{"name", "shape", "dtype", "format", "nbytes", "byteOffset"}`. With the `f32-to-bf16` encoding (what MLC
/// passes), `float32` records are stored as bfloat16, 2 bytes an element; every other dtype is stored raw.
public enum TensorCache {
    /// The file TVM's loaders open.
    public static let jsonName = "tensor-cache.json"
    /// The name runtimes from before TVM's NDArray → Tensor rename open.
    public static let legacyJSONName = "ndarray-cache.json"
    /// The copy `dump_tensor_cache` writes when float32 records were encoded, with them relabelled bfloat16/raw.
    public static let b16JSONName = "tensor-cache-b16.json"
    /// `dump_tensor_cache`'s default shard cap (32 MiB).
    public static let defaultShardCap = 32 << 20

    /// The safetensors-style element type of a TVM dtype string as stored (`float32` encoded f32-to-bf16 is BF16).
    public static func storedDType(_ tvmDType: String, format: String) -> DType? {
        switch tvmDType {
        case "float32": format == "f32-to-bf16" ? .bf16 : .f32
        case "float16": .f16
        case "bfloat16": .bf16
        case "float64": .f64
        case "uint32": .u32
        case "int32": .i32
        case "uint8": .u8
        case "int8": .i8
        case "uint16": .u16
        case "int16": .i16
        case "int64": .i64
        case "uint64": .u64
        case "float8_e4m3fn": .f8E4M3
        case "float8_e5m2": .f8E5M2
        default: nil
        }
    }

    /// TVM's f32 → bf16 encoding: round to nearest even strictly inside ±0x7F7F0000 (the largest bf16), truncation
    /// elsewhere (so ±inf and NaN keep their top bits) — `tvm.contrib.tvmjs._convert_f32_to_bf16`.
    @inline(__always)
    public static func bfloat16Bits(_ x: Float) -> UInt16 {
        let limit = Float(bitPattern: 0x7F7F_0000)
        let b = x.bitPattern
        let bias: UInt32 = (x < limit && x > -limit) ? ((b >> 16) & 1) &+ 0x7FFF : 0
        return UInt16(truncatingIfNeeded: (b &+ bias) >> 16)
    }
}

/// A tensor cache that cannot be read.
public enum TensorCacheError: QKitError, Equatable {
    case malformed(path: String, what: String)

    public var exitStatus: ExitStatus { .dataError }
    public var path: String? { if case .malformed(let p, _) = self { p } else { nil } }
    public var description: String { if case .malformed(_, let w) = self { w } else { "" } }
}

/// A tensor cache opened for reading: the JSON parsed and checked, the shards mapped.
public final class TensorCacheFile: @unchecked Sendable {
    /// One param record.
    public struct Entry: Sendable {
        public var name: String
        public var shape: [Int]
        /// The TVM dtype string (`uint32`, `float16`, `float32`, …).
        public var tvmDType: String
        /// The record's `format` (`raw` or `f32-to-bf16`).
        public var format: String
        /// The element type as stored.
        public var dtype: DType
        public var shard: Int
        public var range: Range<Int>
    }

    /// The JSON file read.
    public let path: String
    public let directory: String
    public let metadata: JSONValue?
    public let shards: [MappedFile]
    public let shardPaths: [String]
    /// Records in file order.
    public let entries: [Entry]

    /// Opens `directory/tensor-cache.json`, else `directory/ndarray-cache.json`.
    public convenience init(directory: String) throws {
        let names = listDirectory(directory)
        let json = names.contains(TensorCache.jsonName) ? TensorCache.jsonName : TensorCache.legacyJSONName
        try self.init(json: directory + "/" + json)
    }

    /// Opens a tensor-cache JSON file and the shards it names (beside it). Every record must lie inside its
    /// shard with the byte count its shape and dtype give; names are unique.
    public init(json path: String) throws {
        self.path = path
        directory = Checkpoint.parentDirectory(path)
        func fail(_ what: String) -> TensorCacheError { .malformed(path: path, what: what) }
        let root: JSONValue
        do { root = try JSONParser.parse(try readSmallFile(path, limit: 256 << 20), rejectDuplicateKeys: false) } catch let e as JSONError {
            throw fail("not valid JSON: \(e)")
        }
        guard case .object = root else { throw fail("the top level is not an object") }
        metadata = root["metadata"]
        guard let shardList = root["records"]?.arrayValue else { throw fail("no 'records' array") }
        var shards: [MappedFile] = []
        var paths: [String] = []
        var entries: [Entry] = []
        var seen = Set<String>()
        for (i, shard) in shardList.enumerated() {
            guard case .object = shard else { throw fail("records[\(i)] is not an object") }
            guard let dataPath = shard["dataPath"]?.stringValue, !dataPath.isEmpty, !dataPath.contains("/"), dataPath != ".", dataPath != ".." else {
                throw fail("records[\(i)].dataPath is not a plain file name")
            }
            guard shard["format"]?.stringValue == "raw-shard" else { throw fail("\(dataPath): format is not 'raw-shard'") }
            guard let nbytes = shard["nbytes"]?.intValue, nbytes >= 0 else { throw fail("\(dataPath): no integer nbytes") }
            let file = try MappedFile(path: directory + "/" + dataPath)
            guard file.count == nbytes else { throw fail("\(dataPath): \(file.count) bytes, the record says \(nbytes)") }
            guard let params = shard["records"]?.arrayValue else { throw fail("\(dataPath): no 'records' array") }
            for (j, p) in params.enumerated() {
                let at = "\(dataPath) record \(j)"
                guard case .object = p, let name = p["name"]?.stringValue else { throw fail("\(at): no name") }
                guard let dims = p["shape"]?.arrayValue else { throw fail("\(name): no shape") }
                let shape = dims.compactMap { $0.intValue.flatMap { $0 >= 0 ? $0 : nil } }
                guard shape.count == dims.count else { throw fail("\(name): shape is not a list of non-negative integers") }
                guard let tvmDType = p["dtype"]?.stringValue, let format = p["format"]?.stringValue else { throw fail("\(name): no dtype or format") }
                guard format == "raw" || format == "f32-to-bf16" else { throw fail("\(name): unknown format '\(format)'") }
                guard let dtype = TensorCache.storedDType(tvmDType, format: format) else { throw fail("\(name): unknown dtype '\(tvmDType)'") }
                guard let size = p["nbytes"]?.intValue, let offset = p["byteOffset"]?.intValue, size >= 0, offset >= 0 else {
                    throw fail("\(name): no integer nbytes and byteOffset")
                }
                guard let count = elementCount(shape), let expected = dtype.byteCount(elements: count), expected == size else {
                    throw fail("\(name): nbytes \(size) does not match shape \(shape) of \(tvmDType)")
                }
                guard offset <= nbytes - size else { throw fail("\(name): bytes \(offset)..<\(offset + size) outside the \(nbytes)-byte shard") }
                guard seen.insert(name).inserted else { throw fail("\(name): recorded twice") }
                entries.append(Entry(name: name, shape: shape, tvmDType: tvmDType, format: format, dtype: dtype, shard: shards.count,
                                     range: offset..<(offset + size)))
            }
            shards.append(file)
            paths.append(directory + "/" + dataPath)
        }
        self.shards = shards
        self.shardPaths = paths
        self.entries = entries
    }
}

/// Writes a tensor cache the way `tvm.contrib.tvmjs.dump_tensor_cache` does, streaming: records are appended
/// to the open shard until `pending + size ≥ cap`; then a record of at least half the cap gets a shard of its
/// own (the open one stays open) and a smaller one closes the open shard and starts the next. Shards are
/// numbered as they are closed. Each record is begun with `begin` and its bytes given with `write` (float32
/// records as F32 values, encoded to bf16 here).
public final class TensorCacheWriter {
    public let directory: String
    public let shardCap: Int
    /// The `format` label of every record (`f32-to-bf16` as MLC writes, or `raw`).
    public let encodeFormat: String

    private final class Shard {
        let file: AtomicFile
        var md5 = MD5()
        var records: [JSONValue] = []
        var bytes = 0
        init(_ file: AtomicFile) { self.file = file }
    }
    private var open: Shard?
    private var own: Shard?
    private var shardRecords: [JSONValue] = []
    private var counter = 0
    private var temporary = 0
    /// The record being written: its remaining stored bytes, and whether its F32 input is encoded to bf16.
    private var remaining = 0
    private var encoding = false
    private var anyEncoded = false
    /// Names written (duplicates are refused, as dump_tensor_cache does).
    private var names = Set<String>()
    /// Records written, and their bytes before encoding (what MLC's metadata counts).
    public private(set) var recordCount = 0
    public private(set) var sourceBytes = 0

    /// A writer into `directory` (which must exist).
    public init(directory: String, shardCap: Int = TensorCache.defaultShardCap, encodeFormat: String = "f32-to-bf16") {
        precondition(shardCap > 0 && (encodeFormat == "raw" || encodeFormat == "f32-to-bf16"))
        self.directory = directory
        self.shardCap = shardCap
        self.encodeFormat = encodeFormat
    }

    /// Begins the record `name` of `shape` and TVM dtype (`uint32`, `float16`, `float32`, `bfloat16`…); its
    /// bytes follow through `write`.
    public func begin(name: String, shape: [Int], tvmDType: String) throws {
        precondition(remaining == 0, "the previous record is incomplete")
        guard let dtype = TensorCache.storedDType(tvmDType, format: encodeFormat), let count = elementCount(shape),
            let size = dtype.byteCount(elements: count)
        else { throw TensorCacheError.malformed(path: directory, what: "\(name): cannot store dtype \(tvmDType)") }
        guard names.insert(name).inserted else { throw TensorCacheError.malformed(path: directory, what: "\(name): written twice") }
        encoding = encodeFormat == "f32-to-bf16" && tvmDType == "float32"
        anyEncoded = anyEncoded || encoding
        sourceBytes += count * (encoding ? 4 : dtype.bitSize / 8)
        recordCount += 1
        var record = JSONObject([("name", .string(name)), ("shape", .array(shape.map { .int($0) })), ("dtype", .string(tvmDType)),
                                 ("format", .string(encodeFormat)), ("nbytes", .int(size))])
        let pending = open?.bytes ?? 0
        if pending + size >= shardCap {
            if 2 * size >= shardCap {
                record["byteOffset"] = .int(0)
                let s = try newShard()
                s.records.append(.object(record))
                own = s
                remaining = size
                if size == 0 { try commit(s); own = nil }
                return
            }
            try commitOpen()
        }
        if open == nil { open = try newShard() }
        record["byteOffset"] = .int(open!.bytes)
        open!.records.append(.object(record))
        remaining = size
    }

    /// Appends bytes of the current record (whole F32 values for an encoded float32 record).
    public func write(_ bytes: UnsafeRawBufferPointer) throws {
        guard bytes.count > 0 else { return }
        let shard = own ?? open!
        if encoding {
            precondition(bytes.count % 4 == 0 && bytes.count / 2 <= remaining)
            var out = [UInt16](repeating: 0, count: bytes.count / 4)
            for i in out.indices { out[i] = TensorCache.bfloat16Bits(bytes.loadUnaligned(fromByteOffset: 4 * i, as: Float.self)) }
            try out.withUnsafeBytes { try put($0, shard) }
        } else {
            precondition(bytes.count <= remaining)
            try put(bytes, shard)
        }
        if remaining == 0, let s = own {
            try commit(s)
            own = nil
        }
    }

    private func put(_ bytes: UnsafeRawBufferPointer, _ shard: Shard) throws {
        try shard.file.write(bytes)
        shard.md5.update(bytes)
        shard.bytes += bytes.count
        remaining -= bytes.count
    }

    private func newShard() throws -> Shard {
        temporary += 1
        return Shard(try AtomicFile(path: directory + "/.shard-\(temporary).tmp"))
    }

    private func commitOpen() throws {
        if let s = open, s.bytes > 0 { try commit(s) }
        open = nil
    }

    private func commit(_ s: Shard) throws {
        try s.file.commit()
        let name = "params_shard_\(counter).bin"
        counter += 1
        guard rename(s.file.path, directory + "/" + name) == 0 else { throw IOError.cannotCreate(path: directory + "/" + name, errno: errno) }
        shardRecords.append(.object(JSONObject([("dataPath", .string(name)), ("format", "raw-shard"), ("nbytes", .int(s.bytes)),
                                                ("records", .array(s.records)), ("md5sum", .string(s.md5.finalizeHex()))])))
    }

    /// Closes the last shard and writes `tensor-cache.json` (4-space indentation, no final newline, as
    /// `json.dump(..., indent=4)`), `tensor-cache-b16.json` when float32 records were encoded, and
    /// `ndarray-cache.json` too when `legacy`. Returns the names of the files written.
    @discardableResult
    public func finish(metadata: JSONValue, legacy: Bool = false) throws -> [String] {
        precondition(remaining == 0 && own == nil, "the last record is incomplete")
        try commitOpen()
        let json = JSONValue.object(JSONObject([("metadata", metadata), ("records", .array(shardRecords))])).serialized(indent: 4)
        var written = (0..<counter).map { "params_shard_\($0).bin" }
        try writeSmallFile(directory + "/" + TensorCache.jsonName, json)
        written.append(TensorCache.jsonName)
        if legacy {
            try writeSmallFile(directory + "/" + TensorCache.legacyJSONName, json)
            written.append(TensorCache.legacyJSONName)
        }
        if anyEncoded {
            let b16 = shardRecords.map { shard -> JSONValue in
                guard var s = shard.objectValue, let records = s["records"]?.arrayValue else { return shard }
                s["records"] = .array(records.map { r in
                    guard var o = r.objectValue, o["dtype"] == "float32", o["format"] == "f32-to-bf16" else { return r }
                    o["dtype"] = "bfloat16"
                    o["format"] = "raw"
                    return .object(o)
                })
                return .object(s)
            }
            try writeSmallFile(directory + "/" + TensorCache.b16JSONName,
                               JSONValue.object(JSONObject([("metadata", metadata), ("records", .array(b16))])).serialized(indent: 4))
            written.append(TensorCache.b16JSONName)
        }
        return written
    }
}
