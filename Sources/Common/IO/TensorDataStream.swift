/// The data section of a tensor file being streamed: tensors of sizes known up front, written in order,
/// each followed by zero padding up to `alignment` (1 for safetensors, `general.alignment` for GGUF).
/// Shared by `SafetensorsWriter` and `GGUFWriter`; the file appears under its name only in `finish()`.
final class TensorDataStream {
    let names: [String]
    let sizes: [Int]
    let alignment: Int
    private let out: AtomicFile
    private var current = 0
    private var writtenInCurrent = 0
    private var writtenTotal = 0
    private let totalBytes: Int

    init(out: AtomicFile, names: [String], sizes: [Int], alignment: Int = 1) {
        self.out = out
        self.names = names
        self.sizes = sizes
        self.alignment = alignment
        totalBytes = sizes.reduce(0, +)
        skipEmpty()
    }

    private func skipEmpty() {
        while current < sizes.count, sizes[current] == 0 { current += 1 }
    }

    /// The tensor the next bytes belong to, or `nil` when all are written.
    var pendingTensor: String? { current < names.count ? names[current] : nil }

    /// Tensor bytes still expected before the file is complete (padding not counted).
    var remainingBytes: Int { totalBytes - writtenTotal }

    /// Appends bytes; a call may cover part of a tensor or span several.
    func write(_ bytes: UnsafeRawBufferPointer) throws {
        var rest = bytes
        while rest.count > 0 {
            guard current < sizes.count else {
                throw WriterError.wrongByteCount(tensor: names.last ?? "", expected: 0, actual: rest.count)
            }
            let take = min(rest.count, sizes[current] - writtenInCurrent)
            try out.write(UnsafeRawBufferPointer(rebasing: rest[..<take]))
            writtenInCurrent += take
            writtenTotal += take
            rest = UnsafeRawBufferPointer(rebasing: rest[take...])
            if writtenInCurrent == sizes[current] {
                let pad = (alignment - sizes[current] % alignment) % alignment
                if pad > 0 { try out.write([UInt8](repeating: 0, count: pad)) }
                current += 1
                writtenInCurrent = 0
                skipEmpty()
            }
        }
    }

    /// Checks that every tensor was written in full and moves the file into place.
    func finish() throws {
        if let t = pendingTensor { throw WriterError.notFinished(tensor: t) }
        try out.commit()
    }
}
