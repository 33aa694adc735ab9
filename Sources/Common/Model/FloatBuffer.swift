/// An owned, 64-byte-aligned array of f32 for activations and dequantized weights: no copy-on-write, no
/// zero-filling beyond what is asked, safe to hand to BLAS and to several threads (each touching its part).
public final class FloatBuffer: @unchecked Sendable {
    public let count: Int
    public let pointer: UnsafeMutablePointer<Float>

    /// Bytes actually allocated (a recycled block may be a little larger than asked).
    private let capacity: Int

    /// `count` values, zeroed when `zeroed`.
    public init(count: Int, zeroed: Bool = false) {
        self.count = count
        let bytes = Swift.max(1, count) * 4
        let (raw, capacity) = LargeBlockPool.shared.take(bytes) ?? (UnsafeMutableRawPointer.allocate(byteCount: bytes, alignment: 64), bytes)
        self.capacity = capacity
        pointer = raw.bindMemory(to: Float.self, capacity: Swift.max(1, count))
        if zeroed { pointer.initialize(repeating: 0, count: count) }
    }

    public convenience init(_ values: [Float]) {
        self.init(count: values.count)
        values.withUnsafeBufferPointer { pointer.update(from: $0.baseAddress!, count: values.count) }
    }

    deinit {
        if !LargeBlockPool.shared.give(UnsafeMutableRawPointer(pointer), bytes: capacity) { UnsafeMutableRawPointer(pointer).deallocate() }
    }

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

/// Keeps a few large freed blocks (≥ 4 MB, at most 256 MB in all) for the next allocation of about the same
/// size. A block's activations (tokens × hidden, tens of MB) are allocated and freed for every block of the
/// model; glibc serves such sizes with fresh `mmap`s, and the kernel then zeroes every page on first touch
/// (about 5% of a calibration run's time). Recycling them skips that; the contents are garbage, as with
/// `malloc`. Off unless a long block-by-block job turns it on (the calibration engine): the streaming
/// quantizers keep their small peak RSS.
final class LargeBlockPool: @unchecked Sendable {
    static let shared = LargeBlockPool()
    static let minimumBytes = 4 << 20
    static let limitBytes = 256 << 20
    /// Whether freed large blocks are kept (set once, before the work starts).
    nonisolated(unsafe) static var enabled = false
    private let lock = Lock()
    private var blocks: [(pointer: UnsafeMutableRawPointer, bytes: Int)] = []
    private var held = 0

    /// A cached block of at least `bytes` and at most 1/8 more, with its size.
    func take(_ bytes: Int) -> (UnsafeMutableRawPointer, Int)? {
        guard Self.enabled, bytes >= Self.minimumBytes else { return nil }
        return lock.withLock {
            var best: Int?
            for (i, b) in blocks.enumerated() where b.bytes >= bytes && b.bytes <= bytes + bytes / 8 {
                if best.map({ b.bytes < blocks[$0].bytes }) ?? true { best = i }
            }
            guard let i = best else { return nil }
            let b = blocks.remove(at: i)
            held -= b.bytes
            return (b.pointer, b.bytes)
        }
    }

    /// Keeps a freed block when it is large and fits under the limit (evicting the oldest); false when the
    /// caller must free it.
    func give(_ pointer: UnsafeMutableRawPointer, bytes: Int) -> Bool {
        guard Self.enabled, bytes >= Self.minimumBytes, bytes <= Self.limitBytes else { return false }
        var evicted: [UnsafeMutableRawPointer] = []
        lock.withLock {
            while held + bytes > Self.limitBytes, !blocks.isEmpty {
                let b = blocks.removeFirst()
                held -= b.bytes
                evicted.append(b.pointer)
            }
            blocks.append((pointer, bytes))
            held += bytes
        }
        for p in evicted { p.deallocate() }
        return true
    }
}
