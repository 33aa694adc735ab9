#if canImport(Glibc)
import Glibc
#endif

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

/// MD5 (RFC 1321), streaming: what TVM's tensor cache records as each shard's `md5sum` (hex). Not used
/// for integrity of qkit's own files, only to write the field the way `tvm.contrib.tvmjs` does.
public struct MD5 {
    private var state: (UInt32, UInt32, UInt32, UInt32) = (0x6745_2301, 0xEFCD_AB89, 0x98BA_DCFE, 0x1032_5476)
    private var pending: [UInt8] = []
    private var length: UInt64 = 0

    private static let shifts: [UInt32] = [7, 12, 17, 22, 7, 12, 17, 22, 7, 12, 17, 22, 7, 12, 17, 22,
                                           5, 9, 14, 20, 5, 9, 14, 20, 5, 9, 14, 20, 5, 9, 14, 20,
                                           4, 11, 16, 23, 4, 11, 16, 23, 4, 11, 16, 23, 4, 11, 16, 23,
                                           6, 10, 15, 21, 6, 10, 15, 21, 6, 10, 15, 21, 6, 10, 15, 21]
    /// floor(|sin(i + 1)| · 2³²).
    private static let constants: [UInt32] = (0..<64).map { UInt32(truncatingIfNeeded: Int64((abs(sin(Double($0 + 1))) * 4_294_967_296).rounded(.down))) }

    public init() { pending.reserveCapacity(64) }

    /// Adds bytes.
    public mutating func update(_ bytes: UnsafeRawBufferPointer) {
        length &+= UInt64(bytes.count)
        var i = 0
        if !pending.isEmpty {
            while i < bytes.count, pending.count < 64 { pending.append(bytes[i]); i += 1 }
            guard pending.count == 64 else { return }
            pending.withUnsafeBytes { block($0.baseAddress!) }
            pending.removeAll(keepingCapacity: true)
        }
        while i + 64 <= bytes.count {
            block(bytes.baseAddress! + i)
            i += 64
        }
        while i < bytes.count { pending.append(bytes[i]); i += 1 }
    }

    /// The digest as 32 lowercase hex digits.
    public mutating func finalizeHex() -> String {
        let bits = length &* 8
        var tail: [UInt8] = [0x80]
        while (pending.count + tail.count) % 64 != 56 { tail.append(0) }
        for i in 0..<8 { tail.append(UInt8(truncatingIfNeeded: bits >> (8 * UInt64(i)))) }
        let saved = length
        tail.withUnsafeBytes { update($0) }
        length = saved
        var out = ""
        for word in [state.0, state.1, state.2, state.3] {
            for i in 0..<4 {
                let b = UInt8(truncatingIfNeeded: word >> (8 * UInt32(i)))
                out += (b < 16 ? "0" : "") + String(b, radix: 16)
            }
        }
        return out
    }

    /// The MD5 hex digest of `bytes`.
    public static func hex(_ bytes: UnsafeRawBufferPointer) -> String {
        var m = MD5()
        m.update(bytes)
        return m.finalizeHex()
    }

    private mutating func block(_ p: UnsafeRawPointer) {
        var (a, b, c, d) = state
        for i in 0..<64 {
            var f: UInt32
            let g: Int
            switch i {
            case 0..<16: f = (b & c) | (~b & d); g = i
            case 16..<32: f = (d & b) | (~d & c); g = (5 * i + 1) % 16
            case 32..<48: f = b ^ c ^ d; g = (3 * i + 5) % 16
            default: f = c ^ (b | ~d); g = (7 * i) % 16
            }
            f = f &+ a &+ MD5.constants[i] &+ UInt32(littleEndian: p.loadUnaligned(fromByteOffset: 4 * g, as: UInt32.self))
            a = d; d = c; c = b
            let s = MD5.shifts[i]
            b = b &+ ((f << s) | (f >> (32 - s)))
        }
        state = (state.0 &+ a, state.1 &+ b, state.2 &+ c, state.3 &+ d)
    }
}
