/// The BPE model of `tokenizer.json`: vocabulary, ranked merges, unknown-token and byte-fallback rules.
struct BPEModel: @unchecked Sendable {
    /// Token text (UTF-8) → id.
    let vocab: ByteStringTable
    /// (left id << 32 | right id) → (rank << 32 | merged id).
    let merges: PairTable
    let unknownID: Int32?
    let fuseUnknown: Bool
    let byteFallback: Bool
    let ignoreMerges: Bool
    /// Whether words are byte-level text (the ByteLevel pre-tokenizer): each byte is one symbol, spelled
    /// with the GPT-2 byte table.
    let byteLevel: Bool
    /// `<0xNN>` token of each byte, or -1.
    let fallbackIDs: [Int32]
    /// Byte-level mode: the id of each byte's table character, or -1.
    let byteIDs: [Int32]
    /// The `▁` bytes when words may be cut before a `▁` that follows another character without changing the
    /// result (no vocabulary token has `▁` after another character, so no merge can cross such a cut).
    let metaspaceCut: [UInt8]?

    init(vocab: ByteStringTable, tokens: [String?], merges: [UInt64: UInt64], unknownID: Int32?, fuseUnknown: Bool,
         byteFallback: Bool, ignoreMerges: Bool, byteLevel: Bool) {
        self.vocab = vocab
        self.merges = PairTable(merges)
        self.unknownID = unknownID
        self.fuseUnknown = fuseUnknown
        self.byteFallback = byteFallback
        self.ignoreMerges = ignoreMerges
        self.byteLevel = byteLevel
        fallbackIDs = (0..<256).map { b in
            let hex = Array("0123456789ABCDEF".utf8)
            return vocab.get(Array("<0x".utf8) + [hex[b >> 4], hex[b & 15], UInt8(ascii: ">")]) ?? -1
        }
        byteIDs = (0..<256).map { vocab.get(ByteTable.utf8OfByte[$0]) ?? -1 }
        let bar: [UInt8] = [0xE2, 0x96, 0x81]
        var safe = !byteLevel && vocab.get(bar) != nil
        if safe {
            outer: for case let t? in tokens {
                var previousIsBar = true
                for s in t.unicodeScalars {
                    let isBar = s == "\u{2581}"
                    if isBar && !previousIsBar { safe = false; break outer }
                    previousIsBar = isBar
                }
            }
        }
        metaspaceCut = safe ? bar : nil
    }

    /// `p` with every piece cut before each `▁` that follows another character, when `metaspaceCut` says the
    /// ids do not change by it (SentencePiece-style files without a pre-tokenizer make the whole text one word).
    func cutAtMetaspace(_ p: Pieces) -> Pieces {
        guard let cut = metaspaceCut else { return p }
        var ranges = [Range<Int>]()
        ranges.reserveCapacity(p.ranges.count + p.bytes.count / 4)
        p.bytes.withUnsafeBufferPointer { w in
            for r in p.ranges {
                var start = r.lowerBound, i = r.lowerBound + 1
                while i + 3 <= r.upperBound {
                    let isBar = w[i] == cut[0] && w[i + 1] == cut[1] && w[i + 2] == cut[2]
                    let afterBar = i - 3 >= r.lowerBound && w[i - 3] == cut[0] && w[i - 2] == cut[1] && w[i - 1] == cut[2]
                    if isBar && !afterBar {
                        ranges.append(start..<i)
                        start = i
                        i += 3
                    } else {
                        i += 1
                    }
                }
                ranges.append(start..<r.upperBound)
            }
        }
        return Pieces(bytes: p.bytes, ranges: ranges, firstAtOrigin: p.firstAtOrigin)
    }

    /// Appends the ids of one pre-tokenized word.
    func encode(_ w: UnsafeBufferPointer<UInt8>, into out: inout [Int32], scratch: inout BPEScratch) {
        encodeWhole(w, into: &out, scratch: &scratch)
    }

    /// Appends the ids of `w` without cutting it.
    func encodeWhole(_ w: UnsafeBufferPointer<UInt8>, into out: inout [Int32], scratch: inout BPEScratch) {
        guard !w.isEmpty else { return }
        if let hit = scratch.cache.get(w) {
            let (s, n) = (Int(hit >> 8), Int(hit & 0xFF))
            if n == 0xFF {
                out.append(contentsOf: scratch.long[s])
            } else {
                out.append(contentsOf: scratch.cached[s..<s + n])
            }
            return
        }
        let start = out.count
        encodeUncached(w, into: &out, scratch: &scratch)
        let n = out.count - start
        if w.count < 256 {
            if n < 0xFF, scratch.cached.count < 1 << 23 {
                scratch.cache.set(w, Int32(scratch.cached.count << 8 | n))
                scratch.cached.append(contentsOf: out[start...])
            } else if n >= 0xFF, scratch.long.count < 1 << 23 {
                scratch.cache.set(w, Int32(scratch.long.count << 8 | 0xFF))
                scratch.long.append(Array(out[start...]))
            }
        }
    }

    func encodeUncached(_ w: UnsafeBufferPointer<UInt8>, into out: inout [Int32], scratch: inout BPEScratch) {
        if ignoreMerges {
            let id: Int32?
            if byteLevel {
                scratch.text.removeAll(keepingCapacity: true)
                for b in w { scratch.text.append(contentsOf: ByteTable.utf8OfByte[Int(b)]) }
                id = scratch.text.withUnsafeBufferPointer { vocab.get($0) }
            } else {
                id = vocab.get(w)
            }
            if let id { out.append(id); return }
        }
        // Initial symbols: one per character (per byte in byte-level mode), HF's unknown/fallback rules.
        var symbols = scratch.symbols
        scratch.symbols = []  // keeps `symbols` uniquely referenced: no copy on write
        symbols.removeAll(keepingCapacity: true)
        var pendingUnknown = false
        func flushUnknown() {
            if pendingUnknown, let u = unknownID { symbols.append(u) }
            pendingUnknown = false
        }
        func unknown() {
            guard unknownID != nil else { return }
            if pendingUnknown && !fuseUnknown { flushUnknown() }
            pendingUnknown = true
        }
        func fallback(_ bytes: some Sequence<UInt8>) -> Bool {
            guard byteFallback, bytes.allSatisfy({ fallbackIDs[Int($0)] >= 0 }) else { return false }
            for b in bytes { symbols.append(fallbackIDs[Int(b)]) }
            return true
        }
        var i = 0
        while i < w.count {
            if byteLevel {
                let id = byteIDs[Int(w[i])]
                if id >= 0 {
                    flushUnknown(); symbols.append(id)
                } else if !fallback(ByteTable.utf8OfByte[Int(w[i])]) {
                    unknown()
                }
                i += 1
            } else {
                let n = min(scalarLength(w[i]), w.count - i)
                let ch = UnsafeBufferPointer(rebasing: w[i..<i + n])
                if let id = vocab.get(ch) {
                    flushUnknown(); symbols.append(id)
                } else if !fallback(ch) {
                    unknown()
                }
                i += n
            }
        }
        flushUnknown()
        merge(&symbols, scratch: &scratch)
        out.append(contentsOf: symbols)
        scratch.symbols = symbols
    }

    /// Words up to this many symbols are merged by scanning, longer ones with a priority queue.
    static let scanLimit = 64

    /// Applies the merges to `symbols`: repeatedly the pair of lowest rank, leftmost among equals, as Hugging
    /// Face's priority queue does (its stale entries can never be taken: a pair that changed cannot produce the
    /// same token, since tokens are distinct strings).
    func merge(_ symbols: inout [Int32], scratch: inout BPEScratch) {
        if symbols.count <= Self.scanLimit { mergeByScanning(&symbols) } else { mergeWithQueue(&symbols, scratch: &scratch) }
    }

    @inline(__always) func pairMerge(_ a: Int32, _ b: Int32) -> UInt64 {
        merges[UInt64(UInt32(bitPattern: a)) << 32 | UInt64(UInt32(bitPattern: b))] ?? UInt64.max
    }

    /// The merge loop for short words: the (rank << 32 | merged id) of each adjacent pair kept in a small array,
    /// the minimum found by a scan, the merged pair removed by shifting.
    func mergeByScanning(_ symbols: inout [Int32]) {
        var m = symbols.count
        guard m > 1 else { return }
        withUnsafeTemporaryAllocation(of: UInt64.self, capacity: m) { pairs in
            symbols.withUnsafeMutableBufferPointer { s in
                for k in 0..<m - 1 { pairs[k] = pairMerge(s[k], s[k + 1]) }
                while m > 1 {
                    var best = UInt64.max, at = -1
                    for k in 0..<m - 1 where pairs[k] < best { best = pairs[k]; at = k }
                    guard at >= 0 else { break }
                    s[at] = Int32(truncatingIfNeeded: best)
                    var k = at + 1
                    while k < m - 1 { s[k] = s[k + 1]; k += 1 }
                    k = at + 1
                    while k < m - 2 { pairs[k] = pairs[k + 1]; k += 1 }
                    m -= 1
                    if at + 1 < m { pairs[at] = pairMerge(s[at], s[at + 1]) }
                    if at > 0 { pairs[at - 1] = pairMerge(s[at - 1], s[at]) }
                }
            }
        }
        symbols.removeLast(symbols.count - m)
    }

    /// The merge loop of Hugging Face: a priority queue ordered by (rank, position), stale entries dropped when
    /// their pair no longer produces the same token.
    func mergeWithQueue(_ symbols: inout [Int32], scratch: inout BPEScratch) {
        let n = symbols.count
        guard n > 1 else { return }
        var next = scratch.next, prev = scratch.prev, alive = scratch.alive
        scratch.next = []; scratch.prev = []; scratch.alive = []
        next.removeAll(keepingCapacity: true); prev.removeAll(keepingCapacity: true); alive.removeAll(keepingCapacity: true)
        for k in 0..<n { next.append(Int32(k + 1 < n ? k + 1 : -1)); prev.append(Int32(k - 1)); alive.append(true) }
        var storage: [MergeHeap.Entry] = []
        swap(&storage, &scratch.heap)
        var heap = MergeHeap(storage: storage)
        @inline(__always) func lookup(_ a: Int32, _ b: Int32) -> UInt64? {
            merges[UInt64(UInt32(bitPattern: a)) << 32 | UInt64(UInt32(bitPattern: b))]
        }
        for k in 0..<n - 1 {
            if let m = lookup(symbols[k], symbols[k + 1]) { heap.push(rank: UInt32(m >> 32), pos: UInt32(k), id: Int32(truncatingIfNeeded: m)) }
        }
        while let top = heap.pop() {
            let pos = Int(top.pos)
            guard alive[pos], next[pos] >= 0 else { continue }
            let right = Int(next[pos])
            guard let m = lookup(symbols[pos], symbols[right]), Int32(truncatingIfNeeded: m) == top.id else { continue }
            symbols[pos] = top.id
            alive[right] = false
            next[pos] = next[right]
            if next[right] >= 0 { prev[Int(next[right])] = Int32(pos) }
            if prev[pos] >= 0 {
                let p = Int(prev[pos])
                if let m = lookup(symbols[p], symbols[pos]) { heap.push(rank: UInt32(m >> 32), pos: UInt32(p), id: Int32(truncatingIfNeeded: m)) }
            }
            if next[pos] >= 0 {
                if let m = lookup(symbols[pos], symbols[Int(next[pos])]) { heap.push(rank: UInt32(m >> 32), pos: UInt32(pos), id: Int32(truncatingIfNeeded: m)) }
            }
        }
        var w = 0
        var k = 0
        while k >= 0 && k < n {
            symbols[w] = symbols[k]; w += 1
            k = Int(next[k])
        }
        symbols.removeLast(n - w)
        scratch.next = next; scratch.prev = prev; scratch.alive = alive; scratch.heap = heap.storage
    }
}

/// Working memory of one encoding thread: the word cache and the buffers of the merge loop.
struct BPEScratch {
    /// Word bytes → (offset << 8 | count) into `cached`, or (index << 8 | 0xFF) into `long`.
    var cache = ByteStringTable(capacity: 4096)
    var cached: [Int32] = []
    var long: [[Int32]] = []
    var symbols: [Int32] = []
    var text: [UInt8] = []
    var next: [Int32] = [], prev: [Int32] = []
    var alive: [Bool] = []
    var heap: [MergeHeap.Entry] = []
}

/// A binary min-heap of candidate merges ordered by (rank, position).
struct MergeHeap {
    struct Entry { var rank: UInt32; var pos: UInt32; var id: Int32 }
    var storage: [Entry]

    init(storage: consuming [Entry]) {
        self.storage = storage
        self.storage.removeAll(keepingCapacity: true)
    }

    @inline(__always) static func less(_ a: Entry, _ b: Entry) -> Bool { a.rank != b.rank ? a.rank < b.rank : a.pos < b.pos }

    mutating func push(rank: UInt32, pos: UInt32, id: Int32) {
        storage.append(Entry(rank: rank, pos: pos, id: id))
        var i = storage.count - 1
        while i > 0 {
            let p = (i - 1) / 2
            guard Self.less(storage[i], storage[p]) else { break }
            storage.swapAt(i, p)
            i = p
        }
    }

    mutating func pop() -> Entry? {
        guard let top = storage.first else { return nil }
        let last = storage.removeLast()
        if !storage.isEmpty {
            storage[0] = last
            var i = 0
            while true {
                let l = 2 * i + 1, r = l + 1
                var m = i
                if l < storage.count && Self.less(storage[l], storage[m]) { m = l }
                if r < storage.count && Self.less(storage[r], storage[m]) { m = r }
                if m == i { break }
                storage.swapAt(i, m)
                i = m
            }
        }
        return top
    }
}
