/// A hash table from byte strings to `Int32` values, with its keys in one arena: no allocation per lookup,
/// which is what the vocabulary and the word cache need on the encoding hot path.
struct ByteStringTable {
    private var arena: [UInt8] = []
    /// Per slot: key start in the arena (-1 = empty), key length, value.
    private var keyStart: [Int32]
    private var keyLength: [Int32]
    private var values: [Int32]
    private var hashes: [UInt32]
    private(set) var count = 0
    private var mask: Int

    init(capacity: Int = 16) {
        var n = 16
        while n < capacity * 2 { n <<= 1 }
        keyStart = [Int32](repeating: -1, count: n)
        keyLength = [Int32](repeating: 0, count: n)
        values = [Int32](repeating: 0, count: n)
        hashes = [UInt32](repeating: 0, count: n)
        mask = n - 1
    }

    @inline(__always) static func hash(_ k: UnsafeBufferPointer<UInt8>) -> UInt32 {
        var h: UInt32 = 2_166_136_261
        for c in k { h = (h ^ UInt32(c)) &* 16_777_619 }
        return h
    }

    /// The value stored for `key`, or `nil`.
    @inline(__always) func get(_ key: UnsafeBufferPointer<UInt8>) -> Int32? {
        let h = Self.hash(key)
        var slot = Int(h) & mask
        return arena.withUnsafeBufferPointer { a in
            while true {
                let s = keyStart[slot]
                if s < 0 { return nil }
                if hashes[slot] == h, Int(keyLength[slot]) == key.count {
                    var equal = true
                    let base = Int(s)
                    for k in 0..<key.count where a[base + k] != key[k] { equal = false; break }
                    if equal { return values[slot] }
                }
                slot = (slot + 1) & mask
            }
        }
    }

    func get(_ key: [UInt8]) -> Int32? { key.withUnsafeBufferPointer { get($0) } }

    /// Stores `value` for `key`, replacing an earlier value.
    mutating func set(_ key: UnsafeBufferPointer<UInt8>, _ value: Int32) {
        if (count + 1) * 2 > keyStart.count { grow() }
        let h = Self.hash(key)
        var slot = Int(h) & mask
        while keyStart[slot] >= 0 {
            if hashes[slot] == h, Int(keyLength[slot]) == key.count {
                let base = Int(keyStart[slot])
                if arena[base..<base + key.count].elementsEqual(key) { values[slot] = value; return }
            }
            slot = (slot + 1) & mask
        }
        keyStart[slot] = Int32(arena.count)
        keyLength[slot] = Int32(key.count)
        values[slot] = value
        hashes[slot] = h
        arena.append(contentsOf: key)
        count += 1
    }

    mutating func set(_ key: [UInt8], _ value: Int32) { key.withUnsafeBufferPointer { set($0, value) } }

    private mutating func grow() {
        let oldStart = keyStart, oldLength = keyLength, oldValues = values, oldHashes = hashes
        let n = keyStart.count * 2
        keyStart = [Int32](repeating: -1, count: n)
        keyLength = [Int32](repeating: 0, count: n)
        values = [Int32](repeating: 0, count: n)
        hashes = [UInt32](repeating: 0, count: n)
        mask = n - 1
        for i in 0..<oldStart.count where oldStart[i] >= 0 {
            var slot = Int(oldHashes[i]) & mask
            while keyStart[slot] >= 0 { slot = (slot + 1) & mask }
            keyStart[slot] = oldStart[i]
            keyLength[slot] = oldLength[i]
            values[slot] = oldValues[i]
            hashes[slot] = oldHashes[i]
        }
    }
}

/// A hash table from merge pairs (left id << 32 | right id) to (rank << 32 | merged id): open addressing with a
/// multiplicative hash, several times faster than `Dictionary` with the standard library's seeded hasher.
struct PairTable: Sendable {
    private var keys: [UInt64]
    private var values: [UInt64]
    private let shift: UInt64
    private static let empty = UInt64.max

    init(_ entries: [UInt64: UInt64]) {
        var bits: UInt64 = 4
        while (1 << bits) < entries.count * 2 { bits += 1 }
        let n = 1 << Int(bits)
        keys = [UInt64](repeating: Self.empty, count: n)
        values = [UInt64](repeating: 0, count: n)
        shift = 64 - bits
        for (k, v) in entries {
            var slot = Int((k &* 0x9E37_79B9_7F4A_7C15) >> shift)
            while keys[slot] != Self.empty { slot = (slot + 1) & (n - 1) }
            keys[slot] = k
            values[slot] = v
        }
    }

    /// The value of `key`, or `nil`.
    @inline(__always) subscript(key: UInt64) -> UInt64? {
        keys.withUnsafeBufferPointer { k in
            let mask = k.count - 1
            var slot = Int((key &* 0x9E37_79B9_7F4A_7C15) >> shift)
            while true {
                let x = k[slot]
                if x == key { return values[slot] }
                if x == Self.empty { return nil }
                slot = (slot + 1) & mask
            }
        }
    }
}
