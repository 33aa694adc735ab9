/// Pieces of text being pre-tokenized: byte ranges of one working buffer (valid UTF-8), in order, none empty.
struct Pieces {
    var bytes: [UInt8]
    var ranges: [Range<Int>]
    /// Whether `ranges[0]` starts at the beginning of the original input (Metaspace's `first` scheme).
    var firstAtOrigin: Bool

    init(bytes: [UInt8], atOrigin: Bool) {
        self.bytes = bytes
        ranges = bytes.isEmpty ? [] : [0..<bytes.count]
        firstAtOrigin = atOrigin && !bytes.isEmpty
    }

    init(bytes: [UInt8], ranges: [Range<Int>], firstAtOrigin: Bool) {
        self.bytes = bytes
        self.ranges = ranges
        self.firstAtOrigin = firstAtOrigin
    }
}

/// How `Split` keeps the delimiters it finds (Hugging Face's `SplitDelimiterBehavior`).
enum SplitBehavior: String {
    case removed = "Removed", isolated = "Isolated", mergedWithPrevious = "MergedWithPrevious"
    case mergedWithNext = "MergedWithNext", contiguous = "Contiguous"
}

/// The expressions `Split` supports. Regexes are recognised by their text and run by exact hand-written
/// scanners that reproduce the backtracking semantics of the Oniguruma engine Hugging Face uses.
enum SplitPattern: Equatable {
    /// A literal string.
    case literal([UInt8])
    /// GPT-2's `'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+`.
    case gpt2
    /// Llama-3's expression (`maxDigits` 3, `\p{N}{1,3}`) or Qwen2's (`maxDigits` 1, `\p{N}`):
    /// `(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+`.
    case llama3(maxDigits: Int)
    /// `\p{N}+`.
    case numberRuns

    static let gpt2Text = #"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"#
    static let llama3Text = #"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"#
    static let qwen2Text = #"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"#

    /// The scanner for a regex's text, or `nil` when the expression is not one of the known ones.
    init?(regex: String) {
        switch regex {
        case Self.gpt2Text: self = .gpt2
        case Self.llama3Text: self = .llama3(maxDigits: 3)
        case Self.qwen2Text: self = .llama3(maxDigits: 1)
        case #"\p{N}+"#: self = .numberRuns
        default: return nil
        }
    }

    /// The matches in `b[s..<e]`, in order, not overlapping, none empty.
    func matches(_ b: UnsafeBufferPointer<UInt8>, _ s: Int, _ e: Int, into out: inout [Range<Int>]) {
        switch self {
        case .gpt2:
            var i = s
            while i < e { let j = Scanner.gpt2(b, i, e); out.append(i..<j); i = j }
        case .llama3(let maxDigits):
            var i = s
            while i < e { let j = Scanner.llama3(b, i, e, maxDigits: maxDigits); out.append(i..<j); i = j }
        case .numberRuns:
            var i = s
            while i < e {
                let (c, n) = decodeScalar(b, i)
                if CharacterClass.of(c) & CharacterClass.number != 0 {
                    var j = i + n
                    while j < e {
                        let (c2, n2) = decodeScalar(b, j)
                        guard CharacterClass.of(c2) & CharacterClass.number != 0 else { break }
                        j += n2
                    }
                    out.append(i..<j)
                    i = j
                } else {
                    i += n
                }
            }
        case .literal(let lit):
            guard !lit.isEmpty else { return }
            var i = s
            while i + lit.count <= e {
                var k = 0
                while k < lit.count, b[i + k] == lit[k] { k += 1 }
                if k == lit.count { out.append(i..<i + lit.count); i += lit.count } else { i += 1 }
            }
        }
    }
}

/// Exact scanners for the pre-tokenizer regexes: each returns the end of the match that starts at `i`
/// (these expressions match at every position, so the text is covered by consecutive matches).
enum Scanner {
    @inline(__always) static func flags(_ b: UnsafeBufferPointer<UInt8>, _ i: Int) -> (UInt8, Int) {
        let c = b[i]
        if c < 0x80 { return (ascii[Int(c)], 1) }
        let (u, n) = decodeScalar(b, i)
        return (CharacterClass.of(u), n)
    }

    static let ascii: [UInt8] = (0..<128).map { CharacterClass.of(UInt32($0)) }

    /// The end of a run of characters whose flags satisfy `test`, from `i`.
    @inline(__always) static func run(_ b: UnsafeBufferPointer<UInt8>, _ i: Int, _ e: Int, _ test: (UInt8) -> Bool) -> Int {
        var j = i
        while j < e {
            let (f, n) = flags(b, j)
            guard test(f) else { break }
            j += n
        }
        return j
    }

    static let letter = CharacterClass.letter, number = CharacterClass.number, space = CharacterClass.space
    @inline(__always) static func isOther(_ f: UInt8) -> Bool { f & (letter | number | space) == 0 }

    /// The contraction alternatives at an apostrophe: the end, or `nil`. `caseless` matches `(?i:…)`,
    /// where U+017F (long s) folds to `s`.
    @inline(__always) static func contraction(_ b: UnsafeBufferPointer<UInt8>, _ i: Int, _ e: Int, caseless: Bool) -> Int? {
        guard b[i] == UInt8(ascii: "'"), i + 1 < e else { return nil }
        func lower(_ j: Int) -> UInt8 {
            guard j < e else { return 0 }
            let c = b[j]
            return caseless && c >= 0x41 && c <= 0x5A ? c | 0x20 : c
        }
        switch lower(i + 1) {
        case UInt8(ascii: "s"), UInt8(ascii: "t"), UInt8(ascii: "m"), UInt8(ascii: "d"): return i + 2
        case UInt8(ascii: "r"), UInt8(ascii: "v"): return lower(i + 2) == UInt8(ascii: "e") ? i + 3 : nil
        case UInt8(ascii: "l"): return lower(i + 2) == UInt8(ascii: "l") ? i + 3 : nil
        case 0xC5 where caseless && i + 2 < e && b[i + 2] == 0xBF: return i + 3  // ſ
        default: return nil
        }
    }

    /// The whitespace alternatives `\s+(?!\S)|\s+` from a whitespace character at `i`: a run that reaches the
    /// end of the piece is taken whole; otherwise its last character is left for the next match (when the
    /// run has more than one).
    @inline(__always) static func whitespace(_ b: UnsafeBufferPointer<UInt8>, _ i: Int, _ e: Int) -> Int {
        var j = i, last = i
        while j < e {
            let (f, n) = flags(b, j)
            guard f & space != 0 else { break }
            last = j
            j += n
        }
        if j == e || last == i { return j }
        return last
    }

    static func gpt2(_ b: UnsafeBufferPointer<UInt8>, _ i: Int, _ e: Int) -> Int {
        if let j = contraction(b, i, e, caseless: false) { return j }
        let j = b[i] == 0x20 && i + 1 < e ? i + 1 : i
        let (f, n) = flags(b, j)
        if f & letter != 0 { return run(b, j + n, e) { $0 & letter != 0 } }
        if f & number != 0 { return run(b, j + n, e) { $0 & number != 0 } }
        if isOther(f) { return run(b, j + n, e, isOther) }
        return whitespace(b, i, e)
    }

    static func llama3(_ b: UnsafeBufferPointer<UInt8>, _ i: Int, _ e: Int, maxDigits: Int) -> Int {
        if let j = contraction(b, i, e, caseless: true) { return j }
        let c = b[i]
        let (f, n) = flags(b, i)
        // [^\r\n\p{L}\p{N}]?\p{L}+
        if f & letter != 0 { return run(b, i + n, e) { $0 & letter != 0 } }
        if f & number == 0, c != 0x0D, c != 0x0A, i + n < e {
            let (f2, n2) = flags(b, i + n)
            if f2 & letter != 0 { return run(b, i + n + n2, e) { $0 & letter != 0 } }
        }
        // \p{N}{1,maxDigits}
        if f & number != 0 {
            var j = i + n, k = 1
            while k < maxDigits, j < e {
                let (f2, n2) = flags(b, j)
                guard f2 & number != 0 else { break }
                j += n2; k += 1
            }
            return j
        }
        //  ?[^\s\p{L}\p{N}]+[\r\n]*
        let j = c == 0x20 && i + 1 < e ? i + 1 : i
        let (fj, nj) = j == i ? (f, n) : flags(b, j)
        if isOther(fj) {
            var k = run(b, j + nj, e, isOther)
            while k < e, b[k] == 0x0D || b[k] == 0x0A { k += 1 }
            return k
        }
        // \s*[\r\n]+ : up to the last CR or LF of the whitespace run
        var k = i, lastBreak = -1
        while k < e {
            let (f2, n2) = flags(b, k)
            guard f2 & space != 0 else { break }
            if b[k] == 0x0D || b[k] == 0x0A { lastBreak = k }
            k += n2
        }
        if lastBreak >= 0 { return lastBreak + 1 }
        return whitespace(b, i, e)
    }
}

/// A pre-tokenizer of `tokenizer.json`.
indirect enum PreTokenizer {
    case split(SplitPattern, SplitBehavior, invert: Bool)
    case byteLevel(addPrefixSpace: Bool, useRegex: Bool)
    case digits(individual: Bool)
    case metaspace(replacement: [UInt8], prepend: PrependScheme, split: Bool)
    case sequence([PreTokenizer])

    enum PrependScheme: String { case always, first, never }

    /// Whether the pre-tokenizer maps bytes to the GPT-2 byte table (the model then works on bytes).
    var isByteLevel: Bool {
        switch self {
        case .byteLevel: true
        case .sequence(let s): s.contains { $0.isByteLevel }
        default: false
        }
    }

    /// Applies the pre-tokenizer to every piece.
    func apply(_ p: Pieces) -> Pieces {
        switch self {
        case .sequence(let steps):
            var p = p
            for s in steps { p = s.apply(p) }
            return p
        case .split(let pattern, let behavior, let invert):
            return Self.split(p, behavior: behavior, invert: invert) { b, s, e, out in pattern.matches(b, s, e, into: &out) }
        case .digits(let individual):
            return Self.split(p, behavior: individual ? .isolated : .contiguous, invert: false) { b, s, e, out in
                var i = s
                while i < e {
                    let (c, n) = decodeScalar(b, i)
                    if CharacterClass.of(c) & CharacterClass.number != 0 { out.append(i..<i + n) }
                    i += n
                }
            }
        case .byteLevel(let addPrefixSpace, let useRegex):
            let q = addPrefixSpace ? Self.prefixing(p, [0x20], when: { b, r in b[r.lowerBound] != 0x20 }) : p
            guard useRegex else { return q }
            return Self.split(q, behavior: .isolated, invert: false) { b, s, e, out in SplitPattern.gpt2.matches(b, s, e, into: &out) }
        case .metaspace(let replacement, let prepend, let split):
            var q = Self.replacingSpaces(p, with: replacement)
            switch prepend {
            case .never: break
            case .always:
                q = Self.prefixing(q, replacement) { b, r in !Self.hasPrefix(b, r, replacement) }
            case .first:
                if q.firstAtOrigin {
                    q = Self.prefixing(q, replacement) { b, r in r.lowerBound == q.ranges[0].lowerBound && !Self.hasPrefix(b, r, replacement) }
                }
            }
            guard split else { return q }
            return Self.split(q, behavior: .mergedWithNext, invert: false) { b, s, e, out in
                SplitPattern.literal(replacement).matches(b, s, e, into: &out)
            }
        }
    }

    static func hasPrefix(_ b: [UInt8], _ r: Range<Int>, _ p: [UInt8]) -> Bool {
        r.count >= p.count && b[r.lowerBound..<r.lowerBound + p.count].elementsEqual(p)
    }

    /// Pieces with `prefix` put before every piece for which `when` holds.
    static func prefixing(_ p: Pieces, _ prefix: [UInt8], when: ([UInt8], Range<Int>) -> Bool) -> Pieces {
        var out = [UInt8]()
        out.reserveCapacity(p.bytes.count + p.ranges.count * prefix.count)
        var ranges = [Range<Int>]()
        ranges.reserveCapacity(p.ranges.count)
        for r in p.ranges {
            let s = out.count
            if when(p.bytes, r) { out.append(contentsOf: prefix) }
            out.append(contentsOf: p.bytes[r])
            ranges.append(s..<out.count)
        }
        return Pieces(bytes: out, ranges: ranges, firstAtOrigin: p.firstAtOrigin)
    }

    /// Pieces with every space replaced by `replacement`.
    static func replacingSpaces(_ p: Pieces, with replacement: [UInt8]) -> Pieces {
        guard p.bytes.contains(0x20) else { return p }
        var out = [UInt8]()
        out.reserveCapacity(p.bytes.count + 8)
        var ranges = [Range<Int>]()
        ranges.reserveCapacity(p.ranges.count)
        for r in p.ranges {
            let s = out.count
            for c in p.bytes[r] { if c == 0x20 { out.append(contentsOf: replacement) } else { out.append(c) } }
            ranges.append(s..<out.count)
        }
        return Pieces(bytes: out, ranges: ranges, firstAtOrigin: p.firstAtOrigin)
    }

    /// Splits every piece at the matches `find` reports, keeping delimiters as `behavior` says.
    static func split(_ p: Pieces, behavior: SplitBehavior, invert: Bool,
                      find: (UnsafeBufferPointer<UInt8>, Int, Int, inout [Range<Int>]) -> Void) -> Pieces {
        var ranges = [Range<Int>]()
        ranges.reserveCapacity(p.ranges.count * 2)
        var firstAtOrigin = false
        var found = [Range<Int>]()
        var parts = [(Range<Int>, Bool)]()
        p.bytes.withUnsafeBufferPointer { b in
            for (index, r) in p.ranges.enumerated() {
                found.removeAll(keepingCapacity: true)
                find(b, r.lowerBound, r.upperBound, &found)
                parts.removeAll(keepingCapacity: true)
                var at = r.lowerBound
                for m in found {
                    if at < m.lowerBound { parts.append((at..<m.lowerBound, invert)) }
                    parts.append((m, !invert))
                    at = m.upperBound
                }
                if at < r.upperBound { parts.append((at..<r.upperBound, invert)) }
                let before = ranges.count
                switch behavior {
                case .isolated:
                    for (x, _) in parts { ranges.append(x) }
                case .removed:
                    for (x, isMatch) in parts where !isMatch { ranges.append(x) }
                case .mergedWithPrevious:
                    var previousMatch = false
                    for (x, isMatch) in parts {
                        if isMatch && !previousMatch && ranges.count > before {
                            ranges[ranges.count - 1] = ranges[ranges.count - 1].lowerBound..<x.upperBound
                        } else {
                            ranges.append(x)
                        }
                        previousMatch = isMatch
                    }
                case .mergedWithNext:
                    var reversed = [Range<Int>]()
                    var previousMatch = false
                    for (x, isMatch) in parts.reversed() {
                        if isMatch && !previousMatch && !reversed.isEmpty {
                            reversed[reversed.count - 1] = x.lowerBound..<reversed[reversed.count - 1].upperBound
                        } else {
                            reversed.append(x)
                        }
                        previousMatch = isMatch
                    }
                    ranges.append(contentsOf: reversed.reversed())
                case .contiguous:
                    var previousMatch = false
                    for (x, isMatch) in parts {
                        if isMatch == previousMatch && ranges.count > before {
                            ranges[ranges.count - 1] = ranges[ranges.count - 1].lowerBound..<x.upperBound
                        } else {
                            ranges.append(x)
                        }
                        previousMatch = isMatch
                    }
                }
                if index == 0 && p.firstAtOrigin && ranges.count > before && ranges[before].lowerBound == r.lowerBound {
                    firstAtOrigin = true
                }
            }
        }
        return Pieces(bytes: p.bytes, ranges: ranges, firstAtOrigin: firstAtOrigin)
    }
}
