/// What a tensor to be written will look like; its data comes later.
public struct TensorSpec: Sendable, Equatable {
    public var name: String
    public var dtype: DType
    public var shape: [Int]

    public init(name: String, dtype: DType, shape: [Int]) {
        self.name = name
        self.dtype = dtype
        self.shape = shape
    }

    /// Bytes of the tensor's data, or `nil` if dtype × shape is impossible.
    public var byteCount: Int? { elementCount(shape).flatMap { dtype.byteCount(elements: $0) } }
}

/// Why a writer refused its input.
public enum WriterError: QKitError, Equatable {
    case invalidSpec(String)
    case duplicateName(String)
    case wrongByteCount(tensor: String, expected: Int, actual: Int)
    case notFinished(tensor: String)

    public var exitStatus: ExitStatus { .software }
    public var description: String {
        switch self {
        case .invalidSpec(let n): "tensor '\(n)': impossible dtype × shape"
        case .duplicateName(let n): "tensor '\(n)' given twice"
        case .wrongByteCount(let t, let e, let a): "tensor '\(t)': \(a) bytes written, \(e) expected"
        case .notFinished(let t): "output closed before tensor '\(t)' was written"
        }
    }
}

/// Streams one safetensors file: the header first (from the specs given up front), then each tensor's
/// bytes in order. Nothing is held in memory but a 1 MiB write buffer. The file appears under its name
/// only when `finish()` succeeds.
public final class SafetensorsWriter {
    public let specs: [TensorSpec]
    private let stream: TensorDataStream

    /// Plans the file and writes its header.
    /// - Parameters:
    ///   - path: target path, or `-` for standard output.
    ///   - tensors: the tensors in the order their data will be written.
    ///   - metadata: `__metadata__` string pairs (omitted when `nil`).
    ///   - durable: fsync before the rename (see `AtomicFile`).
    public convenience init(path: String, tensors: [TensorSpec], metadata: [(key: String, value: String)]? = nil,
                            durable: Bool = true) throws {
        try self.init(file: AtomicFile(path: path, durable: durable), tensors: tensors, metadata: metadata)
    }

    init(file: AtomicFile, tensors: [TensorSpec], metadata: [(key: String, value: String)]?) throws {
        var seen = Set<String>()
        var infos: [TensorInfo] = []
        var sizes: [Int] = []
        var offset = 0
        for t in tensors {
            guard seen.insert(t.name).inserted else { throw WriterError.duplicateName(t.name) }
            guard let n = t.byteCount else { throw WriterError.invalidSpec(t.name) }
            infos.append(TensorInfo(name: t.name, dtype: t.dtype, shape: t.shape, dataOffsets: offset..<offset + n))
            sizes.append(n)
            offset += n
        }
        specs = tensors
        let header = SafetensorsHeader.encode(tensors: infos, metadata: metadata)
        var prefix = UInt64(header.count).littleEndian
        try withUnsafeBytes(of: &prefix) { try file.write($0) }
        try file.write(header)
        stream = TensorDataStream(out: file, names: tensors.map(\.name), sizes: sizes)
    }

    /// The name of the tensor the next bytes belong to, or `nil` when all are written.
    public var pendingTensor: String? { stream.pendingTensor }

    /// Appends bytes of the current tensor; a call may cover part of a tensor or several whole ones.
    public func write(_ bytes: UnsafeRawBufferPointer) throws { try stream.write(bytes) }

    /// Appends the bytes of an array of trivial values (e.g. `[Float]`).
    public func write<T: BitwiseCopyable>(_ values: [T]) throws {
        try values.withUnsafeBytes { try write($0) }
    }

    /// Checks that every tensor was written in full and moves the file into place.
    public func finish() throws { try stream.finish() }
}

/// Streams a checkpoint split into shards of at most `maxShardSize` bytes of tensor data (a tensor
/// larger than that gets a shard of its own), with a `model.safetensors.index.json` as transformers
/// writes it. With one shard it writes a plain `model.safetensors` and no index.
public final class ShardedSafetensorsWriter {
    public let shardNames: [String]
    private let plan: [[TensorSpec]]
    private let directory: String
    private let metadata: [(key: String, value: String)]?
    private var shard = -1
    private var writer: SafetensorsWriter?
    private var finishedFiles: [String] = []
    private let indexText: String?
    private let prefix: String

    /// Plans the shards.
    /// - Parameters:
    ///   - directory: an existing directory (typically an `OutputDirectory`'s staging path).
    ///   - prefix: file stem, `model` by default.
    public init(directory: String, tensors: [TensorSpec], metadata: [(key: String, value: String)]? = nil,
                maxShardSize: Int, prefix: String = "model") throws {
        var shards: [[TensorSpec]] = [[]]
        var size = 0
        var total = 0
        for t in tensors {
            guard let n = t.byteCount else { throw WriterError.invalidSpec(t.name) }
            if size > 0, size + n > maxShardSize {
                shards.append([])
                size = 0
            }
            shards[shards.count - 1].append(t)
            size += n
            total += n
        }
        plan = shards
        self.directory = directory
        self.metadata = metadata
        if shards.count == 1 {
            shardNames = ["\(prefix).safetensors"]
            indexText = nil
        } else {
            let n = shards.count
            func pad(_ i: Int) -> String { let s = String(i); return String(repeating: "0", count: max(0, 5 - s.count)) + s }
            shardNames = (1...n).map { "\(prefix)-\(pad($0))-of-\(pad(n)).safetensors" }
            var map = JSONObject()
            for (i, s) in shards.enumerated() { for t in s { map.members.append((t.name, .string(shardNames[i]))) } }
            map.members.sort { $0.key < $1.key }
            let index: JSONValue = ["metadata": ["total_size": .int(total)], "weight_map": .object(map)]
            indexText = index.serialized(indent: 2) + "\n"
        }
        self.prefix = prefix
        try advance()
    }

    private func advance() throws {
        while true {
            if let w = writer {
                try w.finish()
                finishedFiles.append(shardNames[shard])
                writer = nil
            }
            shard += 1
            guard shard < plan.count else { return }
            writer = try SafetensorsWriter(path: directory + "/" + shardNames[shard], tensors: plan[shard], metadata: metadata)
            if writer?.pendingTensor != nil { return }
        }
    }

    /// Appends bytes; the same contract as `SafetensorsWriter.write`.
    public func write(_ bytes: UnsafeRawBufferPointer) throws {
        var rest = bytes
        while rest.count > 0 {
            guard let w = writer, w.pendingTensor != nil else {
                throw WriterError.wrongByteCount(tensor: "", expected: 0, actual: rest.count)
            }
            // Write up to the end of this shard: the single writer tells us how much it still needs.
            let need = w.remainingBytes
            let take = min(need, rest.count)
            try w.write(UnsafeRawBufferPointer(rebasing: rest[..<take]))
            rest = UnsafeRawBufferPointer(rebasing: rest[take...])
            if w.pendingTensor == nil { try advance() }
        }
    }

    /// Appends the bytes of an array of trivial values.
    public func write<T: BitwiseCopyable>(_ values: [T]) throws {
        try values.withUnsafeBytes { try write($0) }
    }

    /// Finishes the last shard and writes the index.
    public func finish() throws {
        if let w = writer, let t = w.pendingTensor { throw WriterError.notFinished(tensor: t) }
        try advance()
        if let indexText { try writeSmallFile(directory + "/\(prefix).safetensors.index.json", indexText) }
    }
}

extension SafetensorsWriter {
    /// Bytes still expected before the file is complete.
    var remainingBytes: Int { stream.remainingBytes }
}
