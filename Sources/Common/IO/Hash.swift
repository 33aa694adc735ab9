/// XXH64 (Yann Collet's xxHash, 64-bit variant, seed 0): a fast non-cryptographic hash, used to record which
/// model and which data a result was computed on. Values equal `xxhsum -H1` (Debian package xxhash).
public enum XXH64 {
    static let p1: UInt64 = 0x9E3779B185EBCA87
    static let p2: UInt64 = 0xC2B2AE3D27D4EB4F
    static let p3: UInt64 = 0x165667B19E3779F9
    static let p4: UInt64 = 0x85EBCA77C2B2AE63
    static let p5: UInt64 = 0x27D4EB2F165667C5

    @inline(__always) static func rotl(_ x: UInt64, _ r: UInt64) -> UInt64 { (x << r) | (x >> (64 - r)) }
    @inline(__always) static func round(_ acc: UInt64, _ v: UInt64) -> UInt64 { rotl(acc &+ v &* p2, 31) &* p1 }
    @inline(__always) static func merge(_ acc: UInt64, _ v: UInt64) -> UInt64 { (acc ^ round(0, v)) &* p1 &+ p4 }

    /// The hash of `bytes`.
    public static func hash(_ bytes: UnsafeRawBufferPointer, seed: UInt64 = 0) -> UInt64 {
        var lanes = Lanes(seed: seed)
        let whole = bytes.count / 32 * 32
        lanes.consume(UnsafeRawBufferPointer(rebasing: bytes[0..<whole]))
        return lanes.finish(tail: UnsafeRawBufferPointer(rebasing: bytes[whole...]), length: bytes.count, seed: seed)
    }

    /// The hash of a mapped file, read a chunk at a time, each chunk's pages released once hashed: resident
    /// memory stays at one chunk however large the file.
    public static func hash(_ file: MappedFile, seed: UInt64 = 0) -> UInt64 {
        var lanes = Lanes(seed: seed)
        let chunk = 64 << 20
        let whole = file.count / 32 * 32
        var at = 0
        while at < whole {
            let end = min(whole, at + chunk)
            lanes.consume(UnsafeRawBufferPointer(rebasing: file.bytes[at..<end]))
            file.release(at..<end)
            at = end
        }
        return lanes.finish(tail: UnsafeRawBufferPointer(rebasing: file.bytes[whole...]), length: file.count, seed: seed)
    }

    /// The four accumulators of the 32-byte stripes.
    struct Lanes {
        var v1, v2, v3, v4: UInt64
        var stripes = 0

        init(seed: UInt64) { v1 = seed &+ p1 &+ p2; v2 = seed &+ p2; v3 = seed; v4 = seed &- p1 }

        /// Consumes whole stripes (`bytes.count` a multiple of 32).
        mutating func consume(_ bytes: UnsafeRawBufferPointer) {
            var i = 0
            func u64(_ at: Int) -> UInt64 { UInt64(littleEndian: bytes.loadUnaligned(fromByteOffset: at, as: UInt64.self)) }
            while i + 32 <= bytes.count {
                v1 = round(v1, u64(i)); v2 = round(v2, u64(i + 8)); v3 = round(v3, u64(i + 16)); v4 = round(v4, u64(i + 24))
                i += 32
            }
            stripes += bytes.count / 32
        }

        /// The final avalanche over the last `tail` (< 32) bytes of a `length`-byte input.
        func finish(tail: UnsafeRawBufferPointer, length: Int, seed: UInt64) -> UInt64 {
            var h: UInt64
            if stripes > 0 {
                h = rotl(v1, 1) &+ rotl(v2, 7) &+ rotl(v3, 12) &+ rotl(v4, 18)
                h = merge(h, v1); h = merge(h, v2); h = merge(h, v3); h = merge(h, v4)
            } else {
                h = seed &+ p5
            }
            h &+= UInt64(length)
            var i = 0
            let n = tail.count
            func u64(_ at: Int) -> UInt64 { UInt64(littleEndian: tail.loadUnaligned(fromByteOffset: at, as: UInt64.self)) }
            func u32(_ at: Int) -> UInt64 { UInt64(UInt32(littleEndian: tail.loadUnaligned(fromByteOffset: at, as: UInt32.self))) }
            while i + 8 <= n { h = rotl(h ^ round(0, u64(i)), 27) &* p1 &+ p4; i += 8 }
            if i + 4 <= n { h = rotl(h ^ (u32(i) &* p1), 23) &* p2 &+ p3; i += 4 }
            while i < n { h = rotl(h ^ (UInt64(tail[i]) &* p5), 11) &* p1; i += 1 }
            h ^= h >> 33; h &*= p2; h ^= h >> 29; h &*= p3; h ^= h >> 32
            return h
        }
    }

    /// The hash as 16 lowercase hex digits.
    public static func hex(_ h: UInt64) -> String {
        let s = String(h, radix: 16)
        return String(repeating: "0", count: 16 - s.count) + s
    }

    /// The hash of a model: of its `config.json` and of each weight file, in order, combined by hashing the
    /// concatenated 8-byte little-endian hashes. One file alone hashes to the file's own XXH64 combined so.
    public static func model(_ checkpoint: Checkpoint) -> UInt64 {
        var parts: [UInt64] = checkpoint.files.map { hash($0) }
        if let dir = checkpoint.directory, let config = try? readSmallFile(dir + "/config.json") {
            parts.insert(config.withUnsafeBytes { hash($0) }, at: 0)
        }
        return parts.map(\.littleEndian).withUnsafeBytes { hash($0) }
    }
}
