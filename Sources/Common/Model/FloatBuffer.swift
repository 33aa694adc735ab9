/// An owned, 64-byte-aligned array of f32 for activations and dequantized weights: no copy-on-write, no
/// zero-filling beyond what is asked, safe to hand to BLAS and to several threads (each touching its part).
public final class FloatBuffer: @unchecked Sendable {
    public let count: Int
    public let pointer: UnsafeMutablePointer<Float>

    /// `count` values, zeroed when `zeroed`.
    public init(count: Int, zeroed: Bool = false) {
        self.count = count
        let raw = UnsafeMutableRawPointer.allocate(byteCount: Swift.max(1, count) * 4, alignment: 64)
        pointer = raw.bindMemory(to: Float.self, capacity: Swift.max(1, count))
        if zeroed { pointer.initialize(repeating: 0, count: count) }
    }

    public convenience init(_ values: [Float]) {
        self.init(count: values.count)
        values.withUnsafeBufferPointer { pointer.update(from: $0.baseAddress!, count: values.count) }
    }

    deinit { UnsafeMutableRawPointer(pointer).deallocate() }

    public var buffer: UnsafeMutableBufferPointer<Float> { UnsafeMutableBufferPointer(start: pointer, count: count) }
    public var array: [Float] { Array(buffer) }

    public subscript(i: Int) -> Float {
        get { pointer[i] }
        set { pointer[i] = newValue }
    }
}

/// A row-major `rows × columns` matrix: a view into a `FloatBuffer` (which it keeps alive), possibly a part
/// of a larger one (the q, k and v projections live in one fused buffer).
public struct Matrix: @unchecked Sendable {
    public let rows: Int
    public let columns: Int
    public let storage: FloatBuffer
    /// The first value.
    public let pointer: UnsafeMutablePointer<Float>

    public init(rows: Int, columns: Int, zeroed: Bool = false) {
        self.rows = rows
        self.columns = columns
        storage = FloatBuffer(count: rows * columns, zeroed: zeroed)
        pointer = storage.pointer
    }

    /// The view of `rows × columns` values of `storage` from `offset` on.
    public init(rows: Int, columns: Int, storage: FloatBuffer, offset: Int = 0) {
        precondition(offset >= 0 && storage.count >= offset + rows * columns)
        self.rows = rows
        self.columns = columns
        self.storage = storage
        pointer = storage.pointer + offset
    }

    /// Row `r`.
    public func row(_ r: Int) -> UnsafeMutablePointer<Float> { pointer + r * columns }
    public var values: UnsafeMutableBufferPointer<Float> { UnsafeMutableBufferPointer(start: pointer, count: rows * columns) }
    public var array: [Float] { Array(values) }
}
