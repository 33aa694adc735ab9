/// Matrix transposition in tiles, for the layouts that store a weight's parameters K-major (scales, zeros).
enum Transpose {
    /// `b[c·rows + r] = a[r·sourceStride + c]` (`sourceStride` defaults to `columns`: `a` is a whole `[rows, columns]`
    /// matrix; a larger one reads a band of columns of a wider matrix), in 64 × 64 tiles on every thread.
    static func tiled<T: BitwiseCopyable>(_ a: UnsafePointer<T>, rows: Int, columns: Int, sourceStride: Int? = nil,
                                          into b: UnsafeMutablePointer<T>) {
        let tile = 64, stride = sourceStride ?? columns
        nonisolated(unsafe) let (a, b) = (a, b)
        parallelFor((rows + tile - 1) / tile) { bi in
            let r0 = bi * tile, r1 = min(rows, r0 + tile)
            var c0 = 0
            while c0 < columns {
                let c1 = min(columns, c0 + tile)
                // Stores run along b's rows: a's tile (≤ 64 rows × 256 B) stays in L1, while stores down b's
                // columns would hit one L1 set when `rows` is a multiple of 1024 elements.
                for c in c0..<c1 { for r in r0..<r1 { b[c * rows + r] = a[r * stride + c] } }
                c0 = c1
            }
        }
    }

    /// `a` (`[rows, columns]`) transposed to `[columns, rows]`.
    static func tiled<T: BitwiseCopyable>(_ a: [T], rows: Int, columns: Int) -> [T] {
        precondition(a.count == rows * columns)
        return [T](unsafeUninitializedCapacity: a.count) { b, initialized in
            a.withUnsafeBufferPointer { tiled($0.baseAddress!, rows: rows, columns: columns, into: b.baseAddress!) }
            initialized = a.count
        }
    }
}
