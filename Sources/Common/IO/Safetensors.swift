/// Why a safetensors file was refused. One case per rule of the format; `tensor` names the entry
/// concerned where there is one. Every case is a data error (exit 65).
public enum SafetensorsError: QKitError, Equatable {
    /// The file is shorter than the 8-byte length prefix.
    case headerTooSmall(size: Int)
    /// The length prefix exceeds 100,000,000 bytes.
    case headerTooLarge(length: UInt64)
    /// 8 + header length is past the end of the file.
    case headerPastEnd(length: UInt64, fileSize: Int)
    /// The header is not valid JSON (UTF-8 errors and duplicate keys included).
    case invalidJSON(JSONError)
    /// The header is valid JSON but not the safetensors schema.
    case invalidHeader(String)
    /// A tensor entry is malformed.
    case invalidTensor(tensor: String, String)
    /// A dtype string that is not in the format (matched case-sensitively).
    case unknownDType(tensor: String, dtype: String)
    /// The element count or bit size overflows.
    case sizeOverflow(tensor: String)
    /// A sub-byte tensor that does not fill whole bytes.
    case misaligned(tensor: String)
    /// The byte range does not match dtype × shape.
    case sizeMismatch(tensor: String, expected: Int, actual: Int)
    /// The tensor does not start where the previous one ended (gap, overlap or bad first offset).
    case offsetMismatch(tensor: String, expected: Int, actual: Int)
    /// The data section is not exactly as long as the tensors need.
    case dataLengthMismatch(expected: Int, actual: Int)
    /// A sharded checkpoint's index is malformed or inconsistent with its shards.
    case invalidIndex(String)
    /// A tensor name is present in more than one shard.
    case duplicateTensor(String)

    public var exitStatus: ExitStatus { .dataError }

    public var description: String {
        switch self {
        case .headerTooSmall(let s): "file too small for a safetensors header (\(s) bytes, need at least 8)"
        case .headerTooLarge(let n): "header length \(n) exceeds the 100000000-byte limit"
        case .headerPastEnd(let n, let s): "header length \(n) runs past the end of the \(s)-byte file"
        case .invalidJSON(let e): "header is not valid JSON: \(e)"
        case .invalidHeader(let m): "invalid header: \(m)"
        case .invalidTensor(let t, let m): "tensor '\(t)': \(m)"
        case .unknownDType(let t, let d): "tensor '\(t)': unknown dtype \"\(d)\""
        case .sizeOverflow(let t): "tensor '\(t)': size overflows"
        case .misaligned(let t): "tensor '\(t)': sub-byte elements do not fill whole bytes"
        case .sizeMismatch(let t, let e, let a): "tensor '\(t)': byte range holds \(a) bytes, dtype × shape needs \(e)"
        case .offsetMismatch(let t, let e, let a):
            a < e ? "tensor '\(t)': data overlaps the previous tensor (starts at \(a), expected \(e))"
                : "tensor '\(t)': gap before the data (starts at \(a), expected \(e))"
        case .dataLengthMismatch(let e, let a):
            a > e ? "\(a - e) trailing bytes after the last tensor (data section \(a) bytes, tensors need \(e))"
                : "file truncated: data section is \(a) bytes, tensors need \(e)"
        case .invalidIndex(let m): "invalid index: \(m)"
        case .duplicateTensor(let n): "tensor '\(n)' appears in more than one shard"
        }
    }
}

/// One tensor of a safetensors header.
public struct TensorInfo: Sendable, Equatable {
    public var name: String
    public var dtype: DType
    public var shape: [Int]
    /// Byte range inside the data section (after the header).
    public var dataOffsets: Range<Int>

    public init(name: String, dtype: DType, shape: [Int], dataOffsets: Range<Int>) {
        self.name = name
        self.dtype = dtype
        self.shape = shape
        self.dataOffsets = dataOffsets
    }

    public var elementCount: Int { Common.elementCount(shape) ?? 0 }
    public var byteCount: Int { dataOffsets.count }
}

/// A parsed and validated safetensors header.
public struct SafetensorsHeader: Sendable {
    /// The reference implementation's limit on the header length.
    public static let maxHeaderLength: UInt64 = 100_000_000

    /// Tensors in the order of their data (ascending offsets).
    public var tensors: [TensorInfo]
    /// `__metadata__`, when present (its values are strings by the format).
    public var metadata: [(key: String, value: String)]?
    /// Bytes before the data section: 8 + the header length.
    public var dataStart: Int
    /// Bytes of the data section.
    public var dataLength: Int

    /// Parses and validates the header of a complete file, `file`, with every rule of the reference
    /// implementation plus duplicate-name rejection.
    public static func parse(file: UnsafeRawBufferPointer) throws(SafetensorsError) -> SafetensorsHeader {
        guard file.count >= 8 else { throw .headerTooSmall(size: file.count) }
        let n = file.loadUnaligned(as: UInt64.self).littleEndian
        guard n <= maxHeaderLength else { throw .headerTooLarge(length: n) }
        guard 8 + Int(n) <= file.count else { throw .headerPastEnd(length: n, fileSize: file.count) }
        var header = try parse(json: UnsafeRawBufferPointer(rebasing: file[8..<8 + Int(n)]))
        header.dataStart = 8 + Int(n)
        let total = header.tensors.last?.dataOffsets.upperBound ?? 0
        let actual = file.count - header.dataStart
        guard total == actual else { throw .dataLengthMismatch(expected: total, actual: actual) }
        header.dataLength = actual
        return header
    }

    /// Parses only the header's JSON (every rule except the file-length check).
    public static func parse(json: UnsafeRawBufferPointer) throws(SafetensorsError) -> SafetensorsHeader {
        let root: JSONValue
        do { root = try JSONParser.parse(json, rejectDuplicateKeys: true) } catch { throw .invalidJSON(error) }
        guard case .object(let obj) = root else { throw .invalidHeader("the top level is not an object") }
        var tensors: [TensorInfo] = []
        tensors.reserveCapacity(obj.members.count)
        var metadata: [(key: String, value: String)]?
        for (name, value) in obj.members {
            if name == "__metadata__" {
                switch value {
                case .null: metadata = nil
                case .object(let m):
                    var md: [(key: String, value: String)] = []
                    for (k, v) in m.members {
                        guard case .string(let s) = v else {
                            throw .invalidHeader("__metadata__ value of '\(k)' is not a string")
                        }
                        md.append((k, s))
                    }
                    metadata = md
                default: throw .invalidHeader("__metadata__ is not an object of strings")
                }
                continue
            }
            tensors.append(try tensorInfo(name: name, value))
        }
        tensors.sort { ($0.dataOffsets.lowerBound, $0.dataOffsets.upperBound) < ($1.dataOffsets.lowerBound, $1.dataOffsets.upperBound) }
        var expected = 0
        for t in tensors {
            guard t.dataOffsets.lowerBound == expected else {
                throw .offsetMismatch(tensor: t.name, expected: expected, actual: t.dataOffsets.lowerBound)
            }
            expected = t.dataOffsets.upperBound
        }
        return SafetensorsHeader(tensors: tensors, metadata: metadata, dataStart: 8 + json.count, dataLength: expected)
    }

    private static func tensorInfo(name: String, _ value: JSONValue) throws(SafetensorsError) -> TensorInfo {
        guard case .object(let o) = value else { throw .invalidTensor(tensor: name, "entry is not an object") }
        var dtypeText: String?
        var shapeValue: [JSONValue]?
        var offsetsValue: [JSONValue]?
        for (k, v) in o.members {
            switch k {
            case "dtype":
                guard case .string(let s) = v else { throw .invalidTensor(tensor: name, "dtype is not a string") }
                dtypeText = s
            case "shape":
                guard case .array(let a) = v else { throw .invalidTensor(tensor: name, "shape is not an array") }
                shapeValue = a
            case "data_offsets":
                guard case .array(let a) = v else { throw .invalidTensor(tensor: name, "data_offsets is not an array") }
                offsetsValue = a
            default: continue  // the reference ignores unknown fields
            }
        }
        guard let dtypeText else { throw .invalidTensor(tensor: name, "missing dtype") }
        guard let shapeValue else { throw .invalidTensor(tensor: name, "missing shape") }
        guard let offsetsValue else { throw .invalidTensor(tensor: name, "missing data_offsets") }
        guard let dtype = DType(rawValue: dtypeText) else { throw .unknownDType(tensor: name, dtype: dtypeText) }
        var shape: [Int] = []
        shape.reserveCapacity(shapeValue.count)
        for d in shapeValue {
            guard case .int(let v) = d, v >= 0 else {
                throw .invalidTensor(tensor: name, "shape entries must be non-negative integers")
            }
            shape.append(v)
        }
        guard offsetsValue.count == 2 else { throw .invalidTensor(tensor: name, "data_offsets must be exactly two integers") }
        guard case .int(let begin) = offsetsValue[0], case .int(let end) = offsetsValue[1], begin >= 0, end >= 0 else {
            throw .invalidTensor(tensor: name, "data_offsets must be non-negative integers")
        }
        guard end >= begin else { throw .invalidTensor(tensor: name, "data_offsets end \(end) before begin \(begin)") }
        guard let count = elementCount(shape) else { throw .sizeOverflow(tensor: name) }
        let (bits, overflow) = count.multipliedReportingOverflow(by: dtype.bitSize)
        guard !overflow else { throw .sizeOverflow(tensor: name) }
        guard bits % 8 == 0 else { throw .misaligned(tensor: name) }
        guard end - begin == bits / 8 else { throw .sizeMismatch(tensor: name, expected: bits / 8, actual: end - begin) }
        return TensorInfo(name: name, dtype: dtype, shape: shape, dataOffsets: begin..<end)
    }

    /// The JSON text of a header for `tensors` (in the given order, offsets as given) and `metadata`,
    /// padded with spaces so that the data section starts at a multiple of 8.
    public static func encode(tensors: [TensorInfo], metadata: [(key: String, value: String)]?) -> [UInt8] {
        var s = "{"
        var first = true
        if let metadata {
            s += "\"__metadata__\":{"
            for (i, kv) in metadata.enumerated() {
                if i > 0 { s += "," }
                JSONValue.appendQuoted(kv.key, to: &s)
                s += ":"
                JSONValue.appendQuoted(kv.value, to: &s)
            }
            s += "}"
            first = false
        }
        for t in tensors {
            if !first { s += "," }
            first = false
            JSONValue.appendQuoted(t.name, to: &s)
            s += ":{\"dtype\":\"\(t.dtype.rawValue)\",\"shape\":["
            s += t.shape.map(String.init).joined(separator: ",")
            s += "],\"data_offsets\":[\(t.dataOffsets.lowerBound),\(t.dataOffsets.upperBound)]}"
        }
        s += "}"
        var bytes = Array(s.utf8)
        while (8 + bytes.count) % 8 != 0 { bytes.append(0x20) }
        return bytes
    }
}

/// A safetensors file opened through mmap and validated.
public final class SafetensorsFile: @unchecked Sendable {
    public let path: String
    public let header: SafetensorsHeader
    public let file: MappedFile

    /// Opens and validates `path` (`-` for standard input). Reads only the header's pages.
    public init(path: String) throws(LocatedError) {
        file = try MappedFile.located(path)
        self.path = path
        do {
            header = try SafetensorsHeader.parse(file: file.bytes)
        } catch {
            throw LocatedError(error, path: path)
        }
    }

    public var tensors: [TensorInfo] { header.tensors }

    /// The raw bytes of `tensor`.
    public func data(_ tensor: TensorInfo) -> UnsafeRawBufferPointer {
        let start = header.dataStart + tensor.dataOffsets.lowerBound
        return UnsafeRawBufferPointer(rebasing: file.bytes[start..<start + tensor.byteCount])
    }

    /// Absolute byte range of `tensor` in the file.
    public func fileRange(_ tensor: TensorInfo) -> Range<Int> {
        let start = header.dataStart + tensor.dataOffsets.lowerBound
        return start..<start + tensor.byteCount
    }
}

/// Wraps any qkit error with the path it concerns (errors of the format itself carry none).
public struct LocatedError: QKitError {
    public let underlying: any QKitError
    public let boxedPath: String?

    public init(_ error: any QKitError, path: String? = nil) {
        if let box = error as? LocatedError {
            underlying = box.underlying
            boxedPath = path ?? box.boxedPath
        } else {
            underlying = error
            boxedPath = path ?? error.path
        }
    }

    public var exitStatus: ExitStatus { underlying.exitStatus }
    public var path: String? { boxedPath }
    public var description: String { underlying.description }
}
