/// GGUF (ggml-org/ggml `docs/gguf.md`, reader rules of `src/gguf.cpp`): a header, typed key/value metadata,
/// tensor infos, then an aligned data section. Versions 2 and 3 are read (little-endian); version 1 is refused.

/// The value types of GGUF metadata, with their on-disk ids.
public enum GGUFValueType: UInt32, Sendable, CaseIterable {
    case uint8 = 0, int8 = 1, uint16 = 2, int16 = 3, uint32 = 4, int32 = 5, float32 = 6, bool = 7, string = 8,
        array = 9, uint64 = 10, int64 = 11, float64 = 12

    /// Bytes of one fixed-size value (`nil` for string and array).
    public var fixedSize: Int? {
        switch self {
        case .uint8, .int8, .bool: 1
        case .uint16, .int16: 2
        case .uint32, .int32, .float32: 4
        case .uint64, .int64, .float64: 8
        case .string, .array: nil
        }
    }

    /// The fewest bytes one value of this type takes in a file.
    var minimumSize: Int { fixedSize ?? (self == .string ? 8 : 12) }

    /// The name gguf-py and llama.cpp print (`u32`, `str`, `arr`).
    public var name: String {
        switch self {
        case .uint8: "u8"
        case .int8: "i8"
        case .uint16: "u16"
        case .int16: "i16"
        case .uint32: "u32"
        case .int32: "i32"
        case .float32: "f32"
        case .bool: "bool"
        case .string: "str"
        case .array: "arr"
        case .uint64: "u64"
        case .int64: "i64"
        case .float64: "f64"
        }
    }
}

/// One metadata value.
public indirect enum GGUFValue: Sendable, Equatable {
    case uint8(UInt8)
    case int8(Int8)
    case uint16(UInt16)
    case int16(Int16)
    case uint32(UInt32)
    case int32(Int32)
    case float32(Float)
    case bool(Bool)
    case string(String)
    /// An array: its element type and elements (all of that type).
    case array(GGUFValueType, [GGUFValue])
    case uint64(UInt64)
    case int64(Int64)
    case float64(Double)

    public var type: GGUFValueType {
        switch self {
        case .uint8: .uint8
        case .int8: .int8
        case .uint16: .uint16
        case .int16: .int16
        case .uint32: .uint32
        case .int32: .int32
        case .float32: .float32
        case .bool: .bool
        case .string: .string
        case .array: .array
        case .uint64: .uint64
        case .int64: .int64
        case .float64: .float64
        }
    }

    /// Any integer value that fits in `Int`.
    public var intValue: Int? {
        switch self {
        case .uint8(let v): Int(v)
        case .int8(let v): Int(v)
        case .uint16(let v): Int(v)
        case .int16(let v): Int(v)
        case .uint32(let v): Int(v)
        case .int32(let v): Int(v)
        case .uint64(let v): Int(exactly: v)
        case .int64(let v): Int(v)
        default: nil
        }
    }

    /// Any numeric value as a `Double` (integers included).
    public var doubleValue: Double? {
        switch self {
        case .float32(let v): Double(v)
        case .float64(let v): v
        default: intValue.map(Double.init)
        }
    }

    public var stringValue: String? { if case .string(let s) = self { s } else { nil } }
    public var boolValue: Bool? { if case .bool(let b) = self { b } else { nil } }
    public var arrayValue: [GGUFValue]? { if case .array(_, let a) = self { a } else { nil } }
}

/// One tensor of a GGUF file.
public struct GGUFTensorInfo: Sendable, Equatable {
    public let name: String
    /// Dimensions in ggml order: `ne[0]` (the contiguous row length) first.
    public let dimensions: [Int]
    public let type: GGMLType
    /// Offset of the data relative to the start of the data section.
    public let offset: Int
    public let byteCount: Int

    public init(name: String, dimensions: [Int], type: GGMLType, offset: Int, byteCount: Int) {
        self.name = name
        self.dimensions = dimensions
        self.type = type
        self.offset = offset
        self.byteCount = byteCount
    }

    /// The shape in Hugging Face / row-major order (the dimensions reversed).
    public var shape: [Int] { dimensions.reversed() }
    /// Number of elements.
    public var elementCount: Int { dimensions.reduce(1, *) }
    /// Elements per row (`ne[0]`).
    public var rowLength: Int { dimensions.first ?? 1 }
    /// Number of rows (elements / row length).
    public var rowCount: Int { elementCount / max(1, rowLength) }
    /// Bytes of one row.
    public var rowByteCount: Int { rowLength / type.blockSize * type.typeSize }
}

/// What is wrong with a GGUF file: one case per rule (exit status 65).
public enum GGUFError: QKitError, Equatable {
    case truncated(String)
    case badMagic
    case unsupportedVersion(UInt32)
    case tooManyTensors(UInt64)
    case tooManyKeys(UInt64)
    case stringTooLong(length: UInt64, remaining: Int)
    case invalidUTF8(String)
    case emptyKey(index: Int)
    case duplicateKey(String)
    case badValueType(key: String, type: UInt32)
    case arrayTooLong(key: String, count: UInt64)
    case arrayTooDeep(key: String)
    case badAlignmentType(GGUFValueType)
    case badAlignment(UInt32)
    case nameTooLong(String)
    case duplicateTensor(String)
    case tooManyDimensions(tensor: String, count: UInt32)
    case badDimension(tensor: String, index: Int, value: UInt64)
    case tooManyElements(tensor: String)
    case unknownType(tensor: String, type: UInt32)
    case notWholeBlocks(tensor: String, type: GGMLType, rowLength: Int)
    case misalignedOffset(tensor: String, offset: UInt64, alignment: Int)
    case dataOutOfRange(tensor: String)
    case overlappingTensors(String, String)

    public var exitStatus: ExitStatus { .dataError }

    public var description: String {
        switch self {
        case .truncated(let what): "truncated GGUF: the file ends inside \(what)"
        case .badMagic: "not a GGUF file (bad magic)"
        case .unsupportedVersion(let v):
            if v == 1 { "GGUF version 1 is not supported (only versions 2 and 3)" }
            else if v & 0xFFFF == 0 { "GGUF version \(v) is not supported (a big-endian file?)" }
            else { "GGUF version \(v) is not supported (only versions 2 and 3)" }
        case .tooManyTensors(let n): "GGUF tensor count \(n) does not fit in the file (truncated or corrupt)"
        case .tooManyKeys(let n): "GGUF metadata count \(n) does not fit in the file (truncated or corrupt)"
        case .stringTooLong(let n, let r): "GGUF string of \(n) bytes runs past the end of the file (\(r) bytes left)"
        case .invalidUTF8(let what): "\(what) is not valid UTF-8"
        case .emptyKey(let i): "GGUF metadata key \(i) is empty"
        case .duplicateKey(let k): "GGUF metadata key '\(k)' appears twice"
        case .badValueType(let k, let t): "GGUF metadata key '\(k)' has invalid value type \(t)"
        case .arrayTooLong(let k, let n): "GGUF metadata array '\(k)' of \(n) elements cannot fit in the file"
        case .arrayTooDeep(let k): "GGUF metadata array '\(k)' is nested more than \(GGUFFile.maxArrayDepth) deep"
        case .badAlignmentType(let t): "general.alignment must be of type u32, not \(t.name)"
        case .badAlignment(let a): "general.alignment \(a) is not a power of two"
        case .nameTooLong(let n): "tensor name '\(n.prefix(80))' is longer than \(GGUFFile.maxNameLength - 1) bytes"
        case .duplicateTensor(let n): "tensor '\(n)' appears twice"
        case .tooManyDimensions(let n, let c): "tensor '\(n)' has \(c) dimensions (at most \(GGUFFile.maxDimensions))"
        case .badDimension(let n, let i, let v): "tensor '\(n)' dimension \(i) is \(v) (must be 1 to 2^63-1)"
        case .tooManyElements(let n): "tensor '\(n)' has too many elements (size overflows)"
        case .unknownType(let n, let t): "tensor '\(n)' has unknown ggml type \(t)"
        case .notWholeBlocks(let n, let t, let r): "tensor '\(n)' row of \(r) elements is not a multiple of the \(t.name) block size \(t.blockSize)"
        case .misalignedOffset(let n, let o, let a): "tensor '\(n)' offset \(o) is not a multiple of the alignment \(a)"
        case .dataOutOfRange(let n): "tensor '\(n)' data runs past the end of the file"
        case .overlappingTensors(let a, let b): "tensors '\(a)' and '\(b)' overlap"
        }
    }
}

/// A GGUF file mapped read-only, fully validated on open.
public final class GGUFFile: @unchecked Sendable {
    public static let magic: UInt32 = 0x4655_4747  // "GGUF" little-endian
    public static let defaultAlignment = 32
    /// ggml's GGML_MAX_DIMS.
    public static let maxDimensions = 4
    /// ggml's GGML_MAX_NAME: names must be shorter than this (in bytes).
    public static let maxNameLength = 64
    /// Nesting limit for arrays of arrays (ggml itself allows none).
    public static let maxArrayDepth = 8
    /// ggml's GGUF_MAX_STRING_LENGTH and GGUF_MAX_ARRAY_ELEMENTS.
    static let maxStringLength: UInt64 = 1 << 30
    static let maxArrayElements: UInt64 = 1 << 30

    public let path: String
    public let file: MappedFile
    public let version: UInt32
    public let alignment: Int
    public let metadata: [(key: String, value: GGUFValue)]
    public let tensors: [GGUFTensorInfo]
    /// Absolute file offset of the data section.
    public let dataStart: Int
    private let keyIndex: [String: Int]

    /// Maps and validates `path` (`-` = standard input). Errors carry the path.
    public init(path: String) throws(LocatedError) {
        file = try MappedFile.located(path)
        self.path = path
        do {
            let p = try GGUFFile.parse(file.bytes)
            version = p.version
            alignment = p.alignment
            metadata = p.metadata
            tensors = p.tensors
            dataStart = p.dataStart
        } catch {
            throw LocatedError(error, path: path)
        }
        var index: [String: Int] = [:]
        for (i, kv) in metadata.enumerated() { index[kv.key] = i }
        keyIndex = index
    }

    /// The value of metadata `key`.
    public subscript(key: String) -> GGUFValue? {
        keyIndex[key].map { metadata[$0].value }
    }

    /// The tensor named `name`.
    public func tensor(named name: String) -> GGUFTensorInfo? { tensors.first { $0.name == name } }

    /// The raw bytes of `tensor`.
    public func data(_ tensor: GGUFTensorInfo) -> UnsafeRawBufferPointer {
        UnsafeRawBufferPointer(rebasing: file.bytes[fileRange(tensor)])
    }

    /// Absolute byte range of `tensor` in the file.
    public func fileRange(_ tensor: GGUFTensorInfo) -> Range<Int> {
        let start = dataStart + tensor.offset
        return start..<start + tensor.byteCount
    }

    // MARK: - Parsing

    struct Parsed {
        var version: UInt32
        var alignment: Int
        var metadata: [(key: String, value: GGUFValue)]
        var tensors: [GGUFTensorInfo]
        var dataStart: Int
    }

    /// A bounds-checked little-endian cursor.
    struct Cursor {
        let bytes: UnsafeRawBufferPointer
        var position = 0
        var remaining: Int { bytes.count - position }

        mutating func read<T: FixedWidthInteger>(_: T.Type, _ what: @autoclosure () -> String) throws(GGUFError) -> T {
            let n = MemoryLayout<T>.size
            guard remaining >= n else { throw .truncated(what()) }
            let v = bytes.loadUnaligned(fromByteOffset: position, as: T.self)
            position += n
            return T(littleEndian: v)
        }

        mutating func readBytes(_ count: UInt64, _ what: @autoclosure () -> String) throws(GGUFError) -> UnsafeRawBufferPointer {
            guard count <= GGUFFile.maxStringLength, count <= UInt64(remaining) else {
                throw .stringTooLong(length: count, remaining: remaining)
            }
            let n = Int(count)
            let r = UnsafeRawBufferPointer(rebasing: bytes[position..<position + n])
            position += n
            return r
        }

        /// A length-prefixed string; `strict` refuses invalid UTF-8, otherwise it is repaired.
        mutating func readString(_ what: @autoclosure () -> String, strict: Bool) throws(GGUFError) -> String {
            let n = try read(UInt64.self, "the length of \(what())")
            let raw = try readBytes(n, what())
            if strict {
                guard let s = String(validating: raw, as: UTF8.self) else { throw .invalidUTF8(what()) }
                return s
            }
            return String(decoding: raw, as: UTF8.self)
        }
    }

    static func parse(_ bytes: UnsafeRawBufferPointer) throws(GGUFError) -> Parsed {
        var c = Cursor(bytes: bytes)
        guard bytes.count >= 4 else { throw bytes.count == 0 ? .badMagic : .truncated("the magic") }
        guard try c.read(UInt32.self, "the magic") == magic else { throw .badMagic }
        let version = try c.read(UInt32.self, "the version")
        guard version == 2 || version == 3 else { throw .unsupportedVersion(version) }
        let tensorCount = try c.read(UInt64.self, "the tensor count")
        let kvCount = try c.read(UInt64.self, "the metadata count")
        // Each tensor info takes at least 24 bytes, each key/value pair at least 13: counts that cannot fit
        // are refused before anything is allocated.
        guard tensorCount <= UInt64(c.remaining / 24) else { throw .tooManyTensors(tensorCount) }
        guard kvCount <= UInt64(c.remaining / 13) else { throw .tooManyKeys(kvCount) }

        var metadata: [(key: String, value: GGUFValue)] = []
        metadata.reserveCapacity(Int(kvCount))
        var keys = Set<String>()
        for i in 0..<Int(kvCount) {
            let key = try c.readString("metadata key \(i)", strict: true)
            guard !key.isEmpty else { throw .emptyKey(index: i) }
            guard keys.insert(key).inserted else { throw .duplicateKey(key) }
            let rawType = try c.read(UInt32.self, "the type of '\(key)'")
            guard let type = GGUFValueType(rawValue: rawType) else { throw .badValueType(key: key, type: rawType) }
            metadata.append((key, try readValue(&c, type, key: key, depth: 0)))
        }

        var alignment = defaultAlignment
        if let kv = metadata.first(where: { $0.key == "general.alignment" }) {
            guard case .uint32(let a) = kv.value else { throw .badAlignmentType(kv.value.type) }
            guard a != 0, a & (a - 1) == 0 else { throw .badAlignment(a) }
            alignment = Int(a)
        }

        var tensors: [GGUFTensorInfo] = []
        tensors.reserveCapacity(Int(tensorCount))
        var names = Set<String>()
        var rawOffsets: [UInt64] = []
        rawOffsets.reserveCapacity(Int(tensorCount))
        for i in 0..<Int(tensorCount) {
            let name = try c.readString("the name of tensor \(i)", strict: true)
            guard name.utf8.count < maxNameLength else { throw .nameTooLong(name) }
            guard names.insert(name).inserted else { throw .duplicateTensor(name) }
            let nDims = try c.read(UInt32.self, "the dimension count of '\(name)'")
            guard nDims <= UInt32(maxDimensions) else { throw .tooManyDimensions(tensor: name, count: nDims) }
            var dims: [Int] = []
            var elements = 1
            for j in 0..<Int(nDims) {
                let d = try c.read(UInt64.self, "the dimensions of '\(name)'")
                guard d >= 1, d <= UInt64(Int64.max) else { throw .badDimension(tensor: name, index: j, value: d) }
                let (p, o) = elements.multipliedReportingOverflow(by: Int(d))
                guard !o else { throw .tooManyElements(tensor: name) }
                elements = p
                dims.append(Int(d))
            }
            let rawType = try c.read(UInt32.self, "the type of '\(name)'")
            guard let type = GGMLType(rawValue: rawType) else { throw .unknownType(tensor: name, type: rawType) }
            let rowLength = dims.first ?? 1
            guard rowLength % type.blockSize == 0 else { throw .notWholeBlocks(tensor: name, type: type, rowLength: rowLength) }
            guard let size = type.byteCount(elements: elements) else { throw .tooManyElements(tensor: name) }
            let offset = try c.read(UInt64.self, "the offset of '\(name)'")
            guard offset % UInt64(alignment) == 0 else { throw .misalignedOffset(tensor: name, offset: offset, alignment: alignment) }
            rawOffsets.append(offset)
            tensors.append(GGUFTensorInfo(name: name, dimensions: dims, type: type, offset: 0, byteCount: size))
        }

        // The data section starts at the next multiple of the alignment (ggml requires it inside the file).
        let (padded, o1) = c.position.addingReportingOverflow(alignment - 1)
        guard !o1 else { throw .truncated("the padding before the data section") }
        let dataStart = padded / alignment * alignment
        if tensorCount > 0, dataStart > bytes.count { throw .truncated("the padding before the data section") }
        let available = max(0, bytes.count - dataStart)

        for i in tensors.indices {
            let t = tensors[i]
            let off = rawOffsets[i]
            guard off <= UInt64(available), UInt64(t.byteCount) <= UInt64(available) - off else {
                throw .dataOutOfRange(tensor: t.name)
            }
            tensors[i] = GGUFTensorInfo(name: t.name, dimensions: t.dimensions, type: t.type, offset: Int(off), byteCount: t.byteCount)
        }
        let order = tensors.indices.sorted { (tensors[$0].offset, $0) < (tensors[$1].offset, $1) }
        for k in order.indices.dropFirst() {
            let prev = tensors[order[k - 1]], cur = tensors[order[k]]
            if cur.offset < prev.offset + prev.byteCount { throw .overlappingTensors(prev.name, cur.name) }
        }
        return Parsed(version: version, alignment: alignment, metadata: metadata, tensors: tensors, dataStart: dataStart)
    }

    private static func readValue(_ c: inout Cursor, _ type: GGUFValueType, key: String, depth: Int) throws(GGUFError) -> GGUFValue {
        let what = "the value of '\(key)'"
        switch type {
        case .uint8: return .uint8(try c.read(UInt8.self, what))
        case .int8: return .int8(try c.read(Int8.self, what))
        case .uint16: return .uint16(try c.read(UInt16.self, what))
        case .int16: return .int16(try c.read(Int16.self, what))
        case .uint32: return .uint32(try c.read(UInt32.self, what))
        case .int32: return .int32(try c.read(Int32.self, what))
        case .float32: return .float32(Float(bitPattern: try c.read(UInt32.self, what)))
        case .bool: return .bool(try c.read(UInt8.self, what) != 0)
        case .string: return .string(try c.readString(what, strict: false))
        case .uint64: return .uint64(try c.read(UInt64.self, what))
        case .int64: return .int64(try c.read(Int64.self, what))
        case .float64: return .float64(Double(bitPattern: try c.read(UInt64.self, what)))
        case .array:
            guard depth < maxArrayDepth else { throw .arrayTooDeep(key: key) }
            let rawType = try c.read(UInt32.self, "the element type of '\(key)'")
            guard let elementType = GGUFValueType(rawValue: rawType) else { throw .badValueType(key: key, type: rawType) }
            let count = try c.read(UInt64.self, "the length of '\(key)'")
            guard count <= maxArrayElements, count <= UInt64(c.remaining / elementType.minimumSize) else {
                throw .arrayTooLong(key: key, count: count)
            }
            var items: [GGUFValue] = []
            items.reserveCapacity(Int(count))
            for _ in 0..<Int(count) { items.append(try readValue(&c, elementType, key: key, depth: depth + 1)) }
            return .array(elementType, items)
        }
    }
}

// MARK: - Writing

/// A tensor to be written into a GGUF file.
public struct GGUFTensorSpec: Sendable, Equatable {
    public var name: String
    /// ggml order (`ne[0]` first).
    public var dimensions: [Int]
    public var type: GGMLType

    public init(name: String, dimensions: [Int], type: GGMLType) {
        self.name = name
        self.dimensions = dimensions
        self.type = type
    }

    /// Bytes of the data, or `nil` if the shape is not whole blocks.
    public var byteCount: Int? {
        guard let n = elementCount(dimensions), dimensions.first.map({ $0 % type.blockSize == 0 }) ?? (type.blockSize == 1) else { return nil }
        return type.byteCount(elements: n)
    }
}

/// Streams a GGUF v3 file: header, metadata and tensor infos first, then each tensor's bytes in the order of
/// the specs (padding between them is added here). The file appears under its name only on `finish()`.
public final class GGUFWriter {
    public let specs: [GGUFTensorSpec]
    public let alignment: Int
    private let stream: TensorDataStream

    /// Plans the file and writes everything before the data section.
    public init(path: String, metadata: [(key: String, value: GGUFValue)], tensors: [GGUFTensorSpec]) throws {
        let header = try GGUFWriter.header(metadata: metadata, tensors: tensors)
        alignment = header.alignment
        specs = tensors
        let out = try AtomicFile(path: path)
        try out.write(header.bytes)
        stream = TensorDataStream(out: out, names: tensors.map(\.name), sizes: header.sizes, alignment: header.alignment)
    }

    /// The bytes before the data section (padding included), the alignment and the tensor byte counts.
    public static func header(metadata: [(key: String, value: GGUFValue)], tensors: [GGUFTensorSpec]) throws
        -> (bytes: [UInt8], alignment: Int, sizes: [Int])
    {
        var alignment = GGUFFile.defaultAlignment
        if let a = metadata.first(where: { $0.key == "general.alignment" })?.value {
            guard case .uint32(let v) = a, v != 0, v & (v - 1) == 0 else { throw WriterError.invalidSpec("general.alignment") }
            alignment = Int(v)
        }
        var b: [UInt8] = []
        appendInteger(&b, GGUFFile.magic)
        appendInteger(&b, UInt32(3))
        appendInteger(&b, UInt64(tensors.count))
        appendInteger(&b, UInt64(metadata.count))
        for (k, v) in metadata {
            appendString(&b, k)
            appendInteger(&b, v.type.rawValue)
            appendValue(&b, v)
        }
        var offset = 0
        var sizes: [Int] = []
        var seen = Set<String>()
        for t in tensors {
            guard seen.insert(t.name).inserted else { throw WriterError.duplicateName(t.name) }
            guard let n = t.byteCount, t.dimensions.count <= GGUFFile.maxDimensions else { throw WriterError.invalidSpec(t.name) }
            appendString(&b, t.name)
            appendInteger(&b, UInt32(t.dimensions.count))
            for d in t.dimensions { appendInteger(&b, UInt64(d)) }
            appendInteger(&b, t.type.rawValue)
            appendInteger(&b, UInt64(offset))
            sizes.append(n)
            offset += (n + alignment - 1) / alignment * alignment
        }
        while b.count % alignment != 0 { b.append(0) }
        return (b, alignment, sizes)
    }

    static func appendInteger<T: FixedWidthInteger>(_ b: inout [UInt8], _ v: T) {
        withUnsafeBytes(of: v.littleEndian) { b.append(contentsOf: $0) }
    }

    static func appendString(_ b: inout [UInt8], _ s: String) {
        appendInteger(&b, UInt64(s.utf8.count))
        b.append(contentsOf: s.utf8)
    }

    static func appendValue(_ b: inout [UInt8], _ v: GGUFValue) {
        switch v {
        case .uint8(let x): appendInteger(&b, x)
        case .int8(let x): appendInteger(&b, x)
        case .uint16(let x): appendInteger(&b, x)
        case .int16(let x): appendInteger(&b, x)
        case .uint32(let x): appendInteger(&b, x)
        case .int32(let x): appendInteger(&b, x)
        case .float32(let x): appendInteger(&b, x.bitPattern)
        case .bool(let x): b.append(x ? 1 : 0)
        case .string(let s): appendString(&b, s)
        case .uint64(let x): appendInteger(&b, x)
        case .int64(let x): appendInteger(&b, x)
        case .float64(let x): appendInteger(&b, x.bitPattern)
        case .array(let t, let items):
            appendInteger(&b, t.rawValue)
            appendInteger(&b, UInt64(items.count))
            for item in items { appendValue(&b, item) }
        }
    }

    /// The tensor the next bytes belong to, or `nil` when all are written.
    public var pendingTensor: String? { stream.pendingTensor }

    /// Appends bytes of the current tensor (a call may span several tensors).
    public func write(_ bytes: UnsafeRawBufferPointer) throws { try stream.write(bytes) }

    /// Checks that every tensor was written and moves the file into place.
    public func finish() throws { try stream.finish() }
}
