/// Unicode character classes the tokenizer's pre-tokenizers test, one byte of flags per code point.
///
/// The classes follow the regex engines Hugging Face `tokenizers` uses: `\p{L}` (general categories Lu Ll Lt
/// Lm Lo), `\p{N}` (Nd Nl No, which is also Rust's `char::is_numeric` for the `Digits` pre-tokenizer), `\s`
/// (the Unicode White_Space property) and `\w` (Alphabetic, marks, Nd, Pc, Join_Control: Rust regex's word
/// class, which added tokens' `single_word` uses). The Basic Multilingual Plane is looked up in a table built
/// once; other planes are classified on the fly.
enum CharacterClass {
    static let letter: UInt8 = 1
    static let number: UInt8 = 2
    static let space: UInt8 = 4
    static let word: UInt8 = 8

    /// Flags of every BMP code point.
    static let bmp: [UInt8] = {
        var t = [UInt8](repeating: 0, count: 0x10000)
        for c in 0..<0x10000 {
            if let s = Unicode.Scalar(UInt32(c)) { t[c] = compute(s) }
        }
        return t
    }()

    static func compute(_ s: Unicode.Scalar) -> UInt8 {
        let p = s.properties
        var f: UInt8 = 0
        switch p.generalCategory {
        case .uppercaseLetter, .lowercaseLetter, .titlecaseLetter, .modifierLetter, .otherLetter: f |= letter
        case .decimalNumber, .letterNumber, .otherNumber: f |= number
        default: break
        }
        if p.isWhitespace { f |= space }
        switch p.generalCategory {
        case .nonspacingMark, .spacingMark, .enclosingMark, .decimalNumber, .connectorPunctuation: f |= word
        default: if p.isAlphabetic || p.isJoinControl { f |= word }
        }
        return f
    }

    /// The flags of code point `c`.
    @inline(__always) static func of(_ c: UInt32) -> UInt8 {
        if c < 0x10000 { return bmp[Int(c)] }
        guard let s = Unicode.Scalar(c) else { return 0 }
        return compute(s)
    }
}

/// Decodes the UTF-8 scalar at `i` of valid UTF-8 `b`: its code point and byte length.
@inline(__always) func decodeScalar(_ b: UnsafeBufferPointer<UInt8>, _ i: Int) -> (UInt32, Int) {
    let c0 = UInt32(b[i])
    if c0 < 0x80 { return (c0, 1) }
    if c0 < 0xE0 { return ((c0 & 0x1F) << 6 | UInt32(b[i + 1] & 0x3F), 2) }
    if c0 < 0xF0 { return ((c0 & 0x0F) << 12 | UInt32(b[i + 1] & 0x3F) << 6 | UInt32(b[i + 2] & 0x3F), 3) }
    return ((c0 & 0x07) << 18 | UInt32(b[i + 1] & 0x3F) << 12 | UInt32(b[i + 2] & 0x3F) << 6 | UInt32(b[i + 3] & 0x3F), 4)
}

/// The byte length of the UTF-8 scalar whose first byte is `c`.
@inline(__always) func scalarLength(_ c: UInt8) -> Int {
    c < 0x80 ? 1 : c < 0xE0 ? 2 : c < 0xF0 ? 3 : 4
}

/// The GPT-2 byte table: every byte maps to one printable code point (printable Latin-1 bytes to themselves,
/// the others to U+0100 upwards, in byte order).
enum ByteTable {
    static let charOfByte: [UInt32] = {
        var printable = [Bool](repeating: false, count: 256)
        for b in 0x21...0x7E { printable[b] = true }
        for b in 0xA1...0xAC { printable[b] = true }
        for b in 0xAE...0xFF { printable[b] = true }
        var out = [UInt32](repeating: 0, count: 256)
        var next: UInt32 = 256
        for b in 0..<256 {
            if printable[b] { out[b] = UInt32(b) } else { out[b] = next; next += 1 }
        }
        return out
    }()

    /// The UTF-8 bytes of each byte's code point.
    static let utf8OfByte: [[UInt8]] = charOfByte.map { Array(String(Character(Unicode.Scalar($0)!)).utf8) }

    /// Code point → byte, the inverse of `charOfByte`.
    static let byteOfChar: [UInt32: UInt8] = {
        var d: [UInt32: UInt8] = [:]
        for (b, c) in charOfByte.enumerated() { d[c] = UInt8(b) }
        return d
    }()
}
