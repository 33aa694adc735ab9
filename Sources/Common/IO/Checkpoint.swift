#if canImport(Glibc)
import Glibc
#endif

/// How one tensor's elements are stored.
public enum TensorEncoding: Sendable, Equatable, CustomStringConvertible {
    /// A safetensors element type.
    case dtype(DType)
    /// A ggml type (GGUF files), block-quantized or plain.
    case ggml(GGMLType)

    public var description: String {
        switch self {
        case .dtype(let d): d.rawValue
        case .ggml(let g): g.name
        }
    }

    /// Elements that must be decoded together (1 for plain types, 2 for F4, 4 for F6, the block for ggml).
    public var decodeGranule: Int {
        switch self {
        case .dtype(let d): d.bitSize >= 8 ? 1 : (d.bitSize == 4 ? 2 : 4)
        case .ggml(let g): g.blockSize
        }
    }

    /// Bytes of `count` elements (`count` a multiple of `decodeGranule`).
    public func byteCount(elements count: Int) -> Int {
        switch self {
        case .dtype(let d): d.byteCount(elements: count) ?? 0
        case .ggml(let g): count / g.blockSize * g.typeSize
        }
    }

    /// Whether values of this encoding can be decoded to `Float`.
    public var canDecode: Bool {
        switch self {
        case .dtype: true
        case .ggml(let g): g.canDequantize
        }
    }

    /// Whether the stored values are floating-point numbers (quantized GGUF blocks count as such).
    public var isFloatingPoint: Bool {
        switch self {
        case .dtype(let d): d.isFloatingPoint
        case .ggml(let g): g.canDequantize && !g.isIntegerType
        }
    }

    /// Decodes whole granules of `src` into `dst`.
    public func decode(_ src: UnsafeRawBufferPointer, into dst: UnsafeMutableBufferPointer<Float>) throws {
        switch self {
        case .dtype(let d): Conversion.decode(d, src, into: dst)
        case .ggml(let g): try GGMLQuants.dequantize(g, src, into: dst)
        }
    }
}

/// One tensor of a checkpoint, wherever it is stored.
public struct CheckpointTensor: Sendable {
    public var name: String
    /// Row-major shape, slowest dimension first (the Hugging Face order, also for GGUF).
    public var shape: [Int]
    public var encoding: TensorEncoding
    /// Index into `Checkpoint.files`.
    public var fileIndex: Int
    /// Absolute byte range in that file.
    public var fileRange: Range<Int>

    public var byteCount: Int { fileRange.count }
    public var elementCount: Int { Common.elementCount(shape) ?? 0 }
}

/// The kind of thing a checkpoint path named.
public enum CheckpointKind: String, Sendable {
    case safetensors
    case shardedSafetensors = "sharded-safetensors"
    case gguf
    /// TVM's tensor cache (`tensor-cache.json` + `params_shard_*.bin`), MLC-LLM's parameter container.
    case tensorCache = "tensor-cache"
}

/// A checkpoint opened for reading: a safetensors file, a sharded set through its index, a model
/// directory, a GGUF file, or standard input. Only headers are read on opening; tensor data is mapped.
public final class Checkpoint: @unchecked Sendable {
    /// The path as given.
    public let path: String
    public let kind: CheckpointKind
    /// The mapped files, shards in index order.
    public let files: [MappedFile]
    /// Paths of the files (as opened).
    public let filePaths: [String]
    /// Tensors in natural name order (numbers inside names compared as numbers).
    public let tensors: [CheckpointTensor]
    /// `__metadata__` of each safetensors file (nil entries where absent).
    public let safetensorsMetadata: [[(key: String, value: String)]?]
    /// The GGUF file, when the checkpoint is one.
    public let gguf: GGUFFile?
    /// The tensor cache, when the checkpoint is one (its records' TVM dtypes and metadata).
    public let tensorCache: TensorCacheFile?
    /// `config.json` beside the checkpoint, when present and valid.
    public let config: JSONValue?
    /// The directory holding the checkpoint (for config.json and friends), if any.
    public let directory: String?

    private let byName: [String: Int]

    /// Opens `path`. A directory is searched for `model.safetensors.index.json`, then
    /// `model.safetensors`, then diffusers' `diffusion_pytorch_model.safetensors.index.json` and
    /// `diffusion_pytorch_model.safetensors`, then any `*.safetensors` (all of them, as one checkpoint), then
    /// one `*.gguf`. A diffusers pipeline root (`model_index.json`, no `config.json`) opens its `transformer/`.
    public init(path: String) throws {
        self.path = path
        var files: [MappedFile] = []
        var paths: [String] = []
        var tensors: [CheckpointTensor] = []
        var metadata: [[(key: String, value: String)]?] = []
        var gguf: GGUFFile?
        var kind = CheckpointKind.safetensors
        var directory: String?
        var ggufPath: String?
        var cache: TensorCacheFile?

        func addSafetensors(_ p: String) throws {
            let f = try SafetensorsFile(path: p)
            let index = files.count
            files.append(f.file)
            paths.append(p)
            metadata.append(f.header.metadata)
            for t in f.tensors {
                tensors.append(CheckpointTensor(name: t.name, shape: t.shape, encoding: .dtype(t.dtype),
                                                fileIndex: index, fileRange: f.fileRange(t)))
            }
        }

        func openIndex(_ indexPath: String, dir: String) throws {
            kind = .shardedSafetensors
            let shards = try Checkpoint.readIndex(indexPath)
            for shard in shards.files { try addSafetensors(dir + "/" + shard) }
            // Every tensor the index names must be in the shard it names, and vice versa.
            var location: [String: String] = [:]
            for t in tensors { location[t.name] = paths[t.fileIndex] }
            for (name, file) in shards.weightMap {
                guard let actual = location[name] else {
                    throw LocatedError(SafetensorsError.invalidIndex("tensor '\(name)' is listed for \(file) but is in no shard"), path: indexPath)
                }
                guard actual == dir + "/" + file else {
                    throw LocatedError(SafetensorsError.invalidIndex("tensor '\(name)' is listed for \(file) but is in \(actual)"), path: indexPath)
                }
            }
            if tensors.count != shards.weightMap.count {
                let listed = Set(shards.weightMap.map(\.0))
                let extra = tensors.first { !listed.contains($0.name) }!
                throw LocatedError(SafetensorsError.invalidIndex("tensor '\(extra.name)' in \(paths[extra.fileIndex]) is missing from weight_map"), path: indexPath)
            }
        }

        if path != "-", isDirectory(path) {
            var dir = path.hasSuffix("/") && path.count > 1 ? String(path.dropLast()) : path
            var names = listDirectory(dir)
            // A diffusers pipeline root (model_index.json) leads to its transformer/ (diffusers' own names).
            if names.contains("model_index.json"), !names.contains("config.json"), isDirectory(dir + "/transformer") {
                dir += "/transformer"
                names = listDirectory(dir)
            }
            directory = dir
            if names.contains("model.safetensors.index.json") {
                try openIndex(dir + "/model.safetensors.index.json", dir: dir)
            } else if names.contains("model.safetensors") {
                try addSafetensors(dir + "/model.safetensors")
            } else if names.contains(Checkpoint.diffusersIndexName) {
                try openIndex(dir + "/" + Checkpoint.diffusersIndexName, dir: dir)
            } else if names.contains(Checkpoint.diffusersWeightsName) {
                try addSafetensors(dir + "/" + Checkpoint.diffusersWeightsName)
            } else if case let st = names.filter({ $0.hasSuffix(".safetensors") }), !st.isEmpty {
                for n in st { try addSafetensors(dir + "/" + n) }
                if st.count > 1 { kind = .shardedSafetensors }
            } else if case let gg = names.filter({ $0.hasSuffix(".gguf") }), gg.count == 1 {
                ggufPath = dir + "/" + gg[0]
            } else if names.contains(TensorCache.jsonName) || names.contains(TensorCache.legacyJSONName) {
                cache = try TensorCacheFile(directory: dir)
            } else {
                throw LocatedError(CheckpointError.noCheckpoint, path: path)
            }
        } else if path.hasSuffix(".index.json") {
            let dir = Checkpoint.parentDirectory(path)
            directory = dir
            try openIndex(path, dir: dir)
        } else if path.hasSuffix("/" + TensorCache.jsonName) || path.hasSuffix("/" + TensorCache.legacyJSONName) {
            directory = Checkpoint.parentDirectory(path)
            cache = try TensorCacheFile(json: path)
        } else if path != "-", Checkpoint.looksLikeGGUF(path) {
            ggufPath = path
            directory = Checkpoint.parentDirectory(path)
        } else {
            if path != "-" {
                guard fileExists(path) else { throw IOError.cannotOpen(path: path, errno: ENOENT) }
                directory = Checkpoint.parentDirectory(path)
            }
            try addSafetensors(path)
        }

        if let ggufPath {
            kind = .gguf
            let g = try GGUFFile(path: ggufPath)
            gguf = g
            files.append(g.file)
            paths.append(g.path)
            metadata.append(nil)
            for t in g.tensors {
                tensors.append(CheckpointTensor(name: t.name, shape: t.shape, encoding: .ggml(t.type),
                                                fileIndex: 0, fileRange: g.fileRange(t)))
            }
        }

        if let cache {
            kind = .tensorCache
            for (i, f) in cache.shards.enumerated() {
                files.append(f)
                paths.append(cache.shardPaths[i])
                metadata.append(nil)
            }
            for e in cache.entries {
                tensors.append(CheckpointTensor(name: e.name, shape: e.shape, encoding: .dtype(e.dtype), fileIndex: e.shard, fileRange: e.range))
            }
        }
        self.tensorCache = cache

        // Names must be unique across shards; sorted, duplicates are neighbours.
        tensors.sort { naturalLess($0.name, $1.name) }
        for (x, y) in zip(tensors, tensors.dropFirst()) where x.name == y.name {
            throw LocatedError(SafetensorsError.duplicateTensor(x.name), path: path)
        }
        self.files = files
        self.filePaths = paths
        self.tensors = tensors
        self.safetensorsMetadata = metadata
        self.gguf = gguf
        self.kind = kind
        self.directory = directory
        var byName: [String: Int] = [:]
        for (i, t) in tensors.enumerated() { byName[t.name] = i }
        self.byName = byName
        if let directory, fileExists(directory + "/config.json"),
            let bytes = try? readSmallFile(directory + "/config.json", limit: 64 << 20)
        {
            config = try? JSONParser.parse(bytes, rejectDuplicateKeys: false)
        } else {
            config = nil
        }
    }

    /// The weights file of a diffusers model directory (`transformer/`), and its sharded index.
    public static let diffusersWeightsName = "diffusion_pytorch_model.safetensors"
    public static let diffusersIndexName = "diffusion_pytorch_model.safetensors.index.json"

    /// The tensor named `name`.
    public subscript(name: String) -> CheckpointTensor? { byName[name].map { tensors[$0] } }

    /// The raw bytes of a tensor.
    public func data(_ t: CheckpointTensor) -> UnsafeRawBufferPointer {
        UnsafeRawBufferPointer(rebasing: files[t.fileIndex].bytes[t.fileRange])
    }

    /// Total bytes of tensor data.
    public var dataBytes: Int { tensors.reduce(0) { $0 + $1.byteCount } }

    /// Total bytes of the files.
    public var fileBytes: Int { files.reduce(0) { $0 + $1.count } }

    static func parentDirectory(_ path: String) -> String {
        guard let slash = path.lastIndex(of: "/") else { return "." }
        let d = String(path[..<slash])
        return d.isEmpty ? "/" : d
    }

    /// Whether `path` ends in `.gguf` or starts with the GGUF magic (4 bytes read, nothing mapped).
    static func looksLikeGGUF(_ path: String) -> Bool {
        if path.hasSuffix(".gguf") { return true }
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { return false }
        defer { close(fd) }
        var magic: UInt32 = 0
        return pread(fd, &magic, 4, 0) == 4 && UInt32(littleEndian: magic) == GGUFFile.magic
    }

    /// The shard files of an index in first-appearance order, and its weight map.
    static func readIndex(_ path: String) throws -> (files: [String], weightMap: [(String, String)]) {
        let bytes = try readSmallFile(path, limit: 256 << 20)
        let json: JSONValue
        do { json = try JSONParser.parse(bytes) } catch {
            throw LocatedError(SafetensorsError.invalidIndex("not valid JSON: \(error)"), path: path)
        }
        guard case .object(let map)? = json["weight_map"] else {
            throw LocatedError(SafetensorsError.invalidIndex("no weight_map object"), path: path)
        }
        var files: [String] = []
        var seen = Set<String>()
        var pairs: [(String, String)] = []
        for (name, v) in map.members {
            guard case .string(let file) = v else {
                throw LocatedError(SafetensorsError.invalidIndex("weight_map value of '\(name)' is not a string"), path: path)
            }
            guard !file.contains("/"), !file.isEmpty, file != ".", file != ".." else {
                throw LocatedError(SafetensorsError.invalidIndex("shard name '\(file)' is not a plain file name"), path: path)
            }
            if seen.insert(file).inserted { files.append(file) }
            pairs.append((name, file))
        }
        return (files, pairs)
    }
}

/// Errors of locating a checkpoint.
public enum CheckpointError: QKitError, Equatable {
    case noCheckpoint
    case unknownTensor(String)

    public var exitStatus: ExitStatus {
        switch self {
        case .noCheckpoint: .noInput
        case .unknownTensor: .dataError
        }
    }

    public var description: String {
        switch self {
        case .noCheckpoint: "no checkpoint here (no model.safetensors[.index.json], diffusion_pytorch_model.safetensors[.index.json], *.safetensors, *.gguf or tensor-cache.json)"
        case .unknownTensor(let n): "no tensor named '\(n)'"
        }
    }
}

/// Orders strings with embedded decimal numbers compared by value ("layers.2" < "layers.10").
public func naturalLess(_ a: String, _ b: String) -> Bool {
    var i = a.utf8.makeIterator()
    var j = b.utf8.makeIterator()
    var ca = i.next()
    var cb = j.next()
    while let x = ca, let y = cb {
        if isDigitByte(x), isDigitByte(y) {
            var na: UInt64 = 0
            var nb: UInt64 = 0
            var la = 0
            var lb = 0
            var c: UInt8? = x
            while let d = c, isDigitByte(d) { na = na &* 10 &+ UInt64(d - 48); la += 1; c = i.next() }
            ca = c
            c = y
            while let d = c, isDigitByte(d) { nb = nb &* 10 &+ UInt64(d - 48); lb += 1; c = j.next() }
            cb = c
            if na != nb { return na < nb }
            if la != lb { return la < lb }
            continue
        }
        if x != y { return x < y }
        ca = i.next()
        cb = j.next()
    }
    return ca == nil && cb != nil
}

@inline(__always) private func isDigitByte(_ c: UInt8) -> Bool { c >= 48 && c <= 57 }

extension GGMLType {
    /// Whether the type stores plain integers (I8…I64).
    public var isIntegerType: Bool { [.i8, .i16, .i32, .i64].contains(self) }
}
