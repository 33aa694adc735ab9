/// A normalizer of `tokenizer.json`, applied to each stretch of text between added tokens.
indirect enum Normalizer {
    case nfc
    case prepend([UInt8])
    case replace(pattern: [UInt8], content: [UInt8])
    case lowercase
    case sequence([Normalizer])

    /// The normalized bytes of valid UTF-8 `b`.
    func apply(_ b: [UInt8]) -> [UInt8] {
        switch self {
        case .sequence(let steps):
            var b = b
            for s in steps { b = s.apply(b) }
            return b
        case .prepend(let p):
            return b.isEmpty ? b : p + b
        case .replace(let pattern, let content):
            return Self.replacing(b, pattern, content)
        case .lowercase:
            return Array(String(decoding: b, as: UTF8.self).lowercased().utf8)
        case .nfc:
            return Self.nfc(b)
        }
    }

    /// NFC of `b`, normalizing only the stretches that can change: a run of non-ASCII characters with the ASCII
    /// character before it (which may be the base of a following combining mark). ASCII characters are never the
    /// second of a canonical composition, so text splits there; a run whose scalars are all below U+0300 (lead
    /// bytes below 0xCC) is already NFC.
    static func nfc(_ b: [UInt8]) -> [UInt8] {
        guard b.contains(where: { $0 >= 0xCC }) else { return b }
        var out = [UInt8]()
        out.reserveCapacity(b.count)
        var i = 0
        while i < b.count {
            guard b[i] >= 0x80 else { out.append(b[i]); i += 1; continue }
            var start = i
            if start > 0 && b[start - 1] < 0x80 { start -= 1; out.removeLast() }
            var j = i, needs = false
            while j < b.count && b[j] >= 0x80 { needs = needs || b[j] >= 0xCC; j += 1 }
            if needs {
                out.append(contentsOf: String(decoding: b[start..<j], as: UTF8.self)._nfcCodeUnits)
            } else {
                out.append(contentsOf: b[start..<j])
            }
            i = j
        }
        return out
    }

    /// `b` with every non-overlapping occurrence of `pattern` (left to right) replaced by `content`.
    static func replacing(_ b: [UInt8], _ pattern: [UInt8], _ content: [UInt8]) -> [UInt8] {
        guard !pattern.isEmpty, b.count >= pattern.count else { return b }
        var out = [UInt8]()
        out.reserveCapacity(b.count + b.count / 4)
        var i = 0
        let first = pattern[0]
        while i < b.count {
            if b[i] == first, i + pattern.count <= b.count, b[i..<i + pattern.count].elementsEqual(pattern) {
                out.append(contentsOf: content)
                i += pattern.count
            } else {
                out.append(b[i])
                i += 1
            }
        }
        return out
    }
}

/// A decoder of `tokenizer.json`: turns the tokens of the ids back into text, as a chain over token strings.
indirect enum Decoder {
    case byteLevel
    case replace(pattern: String, content: String)
    case byteFallback
    case fuse
    case strip(content: Unicode.Scalar, start: Int, stop: Int)
    case metaspace(replacement: Unicode.Scalar, prependScheme: PreTokenizer.PrependScheme)
    case sequence([Decoder])

    /// One link of the chain.
    func chain(_ tokens: [String]) -> [String] {
        switch self {
        case .sequence(let steps):
            var t = tokens
            for s in steps { t = s.chain(t) }
            return t
        case .byteLevel:
            var bytes = [UInt8]()
            for t in tokens {
                let start = bytes.count
                var ok = true
                for s in t.unicodeScalars {
                    guard let b = ByteTable.byteOfChar[s.value] else { ok = false; break }
                    bytes.append(b)
                }
                if !ok {
                    bytes.removeLast(bytes.count - start)
                    bytes.append(contentsOf: t.utf8)
                }
            }
            return [String(decoding: bytes, as: UTF8.self)]
        case .replace(let pattern, let content):
            return tokens.map { String(decoding: Normalizer.replacing(Array($0.utf8), Array(pattern.utf8), Array(content.utf8)), as: UTF8.self) }
        case .byteFallback:
            var out = [String]()
            var pending = [UInt8]()
            func flush() {
                guard !pending.isEmpty else { return }
                if let s = String(validating: pending, as: UTF8.self) {
                    out.append(s)
                } else {
                    out.append(contentsOf: repeatElement("\u{FFFD}", count: pending.count))
                }
                pending.removeAll()
            }
            for t in tokens {
                let u = Array(t.utf8)
                if u.count == 6, u[0] == UInt8(ascii: "<"), u[1] == UInt8(ascii: "0"), u[2] == UInt8(ascii: "x"), u[5] == UInt8(ascii: ">"),
                   let v = UInt8(String(decoding: u[3..<5], as: UTF8.self), radix: 16) {
                    pending.append(v)
                } else {
                    flush()
                    out.append(t)
                }
            }
            flush()
            return out
        case .fuse:
            return [tokens.joined()]
        case .strip(let content, let start, let stop):
            return tokens.map { t in
                let chars = Array(t.unicodeScalars)
                var lo = 0
                for (i, c) in chars.enumerated().prefix(start) {
                    guard c == content else { break }
                    lo = i + 1
                }
                var hi = chars.count
                for i in 0..<min(stop, chars.count) {
                    let k = chars.count - i - 1
                    guard chars[k] == content else { break }
                    hi = k
                }
                var r = ""
                if hi > lo { r.unicodeScalars.append(contentsOf: chars[lo..<hi]) }
                return r
            }
        case .metaspace(let replacement, let scheme):
            return tokens.enumerated().map { i, t in
                var s = ""
                for c in t.unicodeScalars {
                    if c == replacement {
                        if !(i == 0 && scheme != .never) { s.unicodeScalars.append(" ") }
                    } else {
                        s.unicodeScalars.append(c)
                    }
                }
                return s
            }
        }
    }
}
