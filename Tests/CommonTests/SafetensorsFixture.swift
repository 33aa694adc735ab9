#if canImport(Glibc)
import Glibc
#endif
@testable import Common

/// Builders of safetensors bytes and scratch files for the IO and qinspect tests.
enum SafetensorsFixture {
    /// A file from a header text and data bytes (no padding added).
    static func file(header: String, data: [UInt8] = []) -> [UInt8] {
        let h = Array(header.utf8)
        var out = withUnsafeBytes(of: UInt64(h.count).littleEndian) { Array($0) }
        out += h
        out += data
        return out
    }

    /// A well-formed file holding the given tensors (values as raw bytes).
    static func file(_ tensors: [(name: String, dtype: DType, shape: [Int], bytes: [UInt8])],
                     metadata: [(key: String, value: String)]? = nil) -> [UInt8] {
        var infos: [TensorInfo] = []
        var data: [UInt8] = []
        for t in tensors {
            infos.append(TensorInfo(name: t.name, dtype: t.dtype, shape: t.shape, dataOffsets: data.count..<data.count + t.bytes.count))
            data += t.bytes
        }
        let h = SafetensorsHeader.encode(tensors: infos, metadata: metadata)
        var out = withUnsafeBytes(of: UInt64(h.count).littleEndian) { Array($0) }
        out += h
        out += data
        return out
    }

    /// Bytes of an array of trivial values.
    static func bytes<T: BitwiseCopyable>(_ values: [T]) -> [UInt8] { values.withUnsafeBytes { Array($0) } }

    /// A fresh scratch directory.
    static func temporaryDirectory() -> String {
        var template = Array("/tmp/qkit-test-XXXXXX".utf8CString)
        let p = template.withUnsafeMutableBufferPointer { mkdtemp($0.baseAddress!) }
        return String(cString: p!)
    }

    /// Writes bytes to a path.
    static func write(_ bytes: [UInt8], to path: String) {
        let fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0o644)
        precondition(fd >= 0, "cannot create \(path)")
        bytes.withUnsafeBytes { b in
            var done = 0
            while done < b.count { done += Glibc.write(fd, b.baseAddress! + done, b.count - done) }
        }
        close(fd)
    }

    /// Parses bytes as a safetensors file, returning the error if any.
    static func parse(_ bytes: [UInt8]) -> Result<SafetensorsHeader, SafetensorsError> {
        bytes.withUnsafeBytes { raw in
            do throws(SafetensorsError) { return .success(try SafetensorsHeader.parse(file: raw)) } catch { return .failure(error) }
        }
    }
}
