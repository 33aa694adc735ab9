/// The added tokens of `tokenizer.json`, matched on the text before the model sees it.
///
/// As in Hugging Face `tokenizers`: tokens with `normalized: false` are found in the raw text, the others in
/// each normalized stretch between those; matching is leftmost-longest without overlaps; a `single_word`
/// match touching a word character is dropped; `lstrip`/`rstrip` take the whitespace beside the match.
struct AddedTokens: Sendable {
    struct Token: Sendable {
        var content: [UInt8]
        var id: Int32
        var special: Bool
        var singleWord: Bool
        var lstrip: Bool
        var rstrip: Bool
        var normalized: Bool
    }

    /// Candidates by first byte, longest first; one table for raw matching, one for normalized.
    private var raw: [[Token]] = Array(repeating: [], count: 256)
    private var normalized: [[Token]] = Array(repeating: [], count: 256)
    private(set) var hasRaw = false, hasNormalized = false
    /// Whether some token starts with each byte.
    private var rawFirst = [Bool](repeating: false, count: 256), normalizedFirst = [Bool](repeating: false, count: 256)
    private(set) var idOfContent: [String: Int32] = [:]
    private(set) var specialContents: Set<String> = []

    init() {}

    /// Adds `t`; `normalize` gives the form a `normalized` token is matched in.
    mutating func add(_ t: Token, normalize: ([UInt8]) -> [UInt8]) {
        guard !t.content.isEmpty else { return }
        // A token added again replaces the one of its id (HF keeps one token per id).
        for k in 0..<256 {
            raw[k].removeAll { $0.id == t.id }
            normalized[k].removeAll { $0.id == t.id }
        }
        hasRaw = raw.contains { !$0.isEmpty }
        hasNormalized = normalized.contains { !$0.isEmpty }
        defer {
            rawFirst = raw.map { !$0.isEmpty }
            normalizedFirst = normalized.map { !$0.isEmpty }
        }
        let text = String(decoding: t.content, as: UTF8.self)
        idOfContent[text] = t.id
        if t.special { specialContents.insert(text) }
        var m = t
        if t.normalized {
            m.content = normalize(t.content)
            guard !m.content.isEmpty else { return }
            normalized[Int(m.content[0])].append(m)
            normalized[Int(m.content[0])].sort { $0.content.count > $1.content.count }
            hasNormalized = true
        } else {
            raw[Int(m.content[0])].append(m)
            raw[Int(m.content[0])].sort { $0.content.count > $1.content.count }
            hasRaw = true
        }
    }

    /// `text` cut into stretches: each either an added token (with its id) or text between (id `nil`), in order,
    /// none empty.
    func split(_ text: [UInt8], normalized useNormalized: Bool) -> [(Range<Int>, Int32?)] {
        guard !text.isEmpty else { return [] }
        guard useNormalized ? hasNormalized : hasRaw else { return [(0..<text.count, nil)] }
        let table = useNormalized ? normalized : raw
        var out = [(Range<Int>, Int32?)]()
        var done = 0
        var i = 0
        let first = useNormalized ? normalizedFirst : rawFirst
        text.withUnsafeBufferPointer { b in
            while i < b.count {
                guard first[Int(b[i])] else { i += 1; continue }
                var found: Token?
                for t in table[Int(b[i])] where i + t.content.count <= b.count {
                    var k = 1
                    while k < t.content.count, b[i + k] == t.content[k] { k += 1 }
                    if k == t.content.count { found = t; break }
                }
                guard let t = found else { i += 1; continue }
                var start = i, stop = i + t.content.count
                i = stop
                if t.singleWord {
                    let before = start > 0 && Self.isWordCharacter(endingAt: start, b)
                    let after = stop < b.count && Self.isWordCharacter(startingAt: stop, b)
                    if before || after { continue }
                }
                if t.lstrip {
                    var s = start
                    while s > 0 {
                        var p = s - 1
                        while p > 0 && b[p] & 0xC0 == 0x80 { p -= 1 }
                        let (c, _) = decodeScalar(b, p)
                        guard CharacterClass.of(c) & CharacterClass.space != 0 else { break }
                        s = p
                    }
                    start = max(s, done)
                }
                if t.rstrip {
                    while stop < b.count {
                        let (c, n) = decodeScalar(b, stop)
                        guard CharacterClass.of(c) & CharacterClass.space != 0 else { break }
                        stop += n
                    }
                    i = stop
                }
                if done < start { out.append((done..<start, nil)) }
                out.append((max(start, done)..<stop, t.id))
                done = stop
            }
        }
        if done < text.count { out.append((done..<text.count, nil)) }
        return out
    }

    static func isWordCharacter(endingAt i: Int, _ b: UnsafeBufferPointer<UInt8>) -> Bool {
        var p = i - 1
        while p > 0 && b[p] & 0xC0 == 0x80 { p -= 1 }
        return CharacterClass.of(decodeScalar(b, p).0) & CharacterClass.word != 0
    }

    static func isWordCharacter(startingAt i: Int, _ b: UnsafeBufferPointer<UInt8>) -> Bool {
        CharacterClass.of(decodeScalar(b, i).0) & CharacterClass.word != 0
    }
}
