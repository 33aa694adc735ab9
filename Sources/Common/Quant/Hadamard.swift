/// A Hadamard order this qkit cannot construct.
public struct HadamardError: QKitError, Equatable {
    /// The order asked for.
    public var order: Int
    /// Its prime factorization, e.g. `2^2 · 3 · 13`.
    public var factorization: String
    /// What needed it (e.g. `hidden_size`), for the message.
    public var role: String?

    public init(order: Int, role: String? = nil) {
        self.order = order
        self.factorization = Hadamard.factorization(order)
        self.role = role
    }

    public var exitStatus: ExitStatus { .unavailable }

    public var description: String {
        "no Hadamard matrix of order \(order) = \(factorization)\(role.map { " (\($0))" } ?? "") can be built here: "
            + "qkit builds orders 2^k·m with m = 1, q + 1 (q ≡ 3 mod 4 a prime power, Paley I), 2(q + 1) (q ≡ 1 mod 4, "
            + "Paley II) or a product of two such m (e.g. 12, 20, 28, 36, 40, 52, 60, 108, 140; not 156 or 172)"
    }
}

/// A normalized Hadamard matrix `H/√n` of order `n = 2^k·m` (`H·Hᵀ = n·I`), computed, not tabulated:
/// `H = S(2^k) ⊗ B(m)`, with `S` Sylvester's matrix (`S[i][j] = (−1)^popcount(i & j)`, symmetric) and `B` a
/// Paley matrix (or the Kronecker product of two) of the smallest order `m` that makes `n` constructible:
///
/// - Paley I, `m = q + 1`, `q ≡ 3 (mod 4)` a prime power: `B = I + [[0, 1ᵀ], [−1, J]]`;
/// - Paley II, `m = 2(q + 1)`, `q ≡ 1 (mod 4)`: `C = [[0, 1ᵀ], [1, J]]`, `B = C ⊗ [[1, 1], [1, −1]] + I ⊗ [[1, −1], [−1, −1]]`;
///
/// where `J[a][b] = χ(a − b)` is the Jacobsthal matrix of GF(q) (χ the quadratic character), the field's
/// elements numbered by their base-p digits (polynomial coefficients over GF(p), the modulus being the first
/// monic polynomial, in that numbering, whose root generates the multiplicative group).
///
/// The transform of a row `x` (length n, index `i·m + j`) is `x·H/√n`: a dense product with `B` on each of
/// the 2^k slices of m values (BLAS), then a fast Walsh–Hadamard transform across the slices (SIMD butterflies
/// on slices of m values), then the `1/√n` scale. Results do not depend on the thread count.
public struct Hadamard: Sendable {
    /// The order n.
    public let order: Int
    /// The Sylvester factor 2^k.
    public let power: Int
    /// The dense factor m (1 when n is a power of two).
    public let factor: Int
    /// How the dense factor was built, e.g. `paley2(17)` or `paley1(11)`, `1` for none.
    public let construction: String
    /// `B`, `m × m` entries ±1, row-major.
    let base: [Float]

    /// The Hadamard matrix of order `order`, or `HadamardError` when this qkit cannot build one.
    public init(order n: Int, role: String? = nil) throws(HadamardError) {
        guard n >= 1, let (m, name, b) = Self.dense(order: n) else { throw HadamardError(order: n, role: role) }
        order = n
        factor = m
        power = n / m
        construction = name
        base = b
    }

    /// `2^k · name`, what the recipe records.
    public var description: String { factor == 1 ? "sylvester(\(power))" : "sylvester(\(power)) x \(construction)" }

    /// The dense, normalized matrix (`n × n`, row-major), for tests and small orders.
    public func matrix() -> [Float] {
        var h = [Float](repeating: 0, count: order * order)
        for i in 0..<order { h[i * order + i] = 1 }
        h.withUnsafeMutableBufferPointer { transformRows($0.baseAddress!, rows: order) }
        return h
    }

    /// `x ← (x ∘ s)·H/√n` for each of `rows` rows of length n (`s` the optional ±1 signs, one per column).
    public func transformRows(_ x: UnsafeMutablePointer<Float>, rows: Int, signs: [Float]? = nil) {
        let n = order, m = factor
        precondition(signs == nil || signs!.count == n)
        // Work is cut by shape only (chunks of rows), so every row sees the same calls whatever the core count.
        let chunk = max(1, min(rows, (1 << 16) / n))
        let chunks = (rows + chunk - 1) / chunk
        let scale = 1 / Float(n).squareRoot()
        nonisolated(unsafe) let x = x
        let pool = m > 1 ? ScratchPool(byteCount: 4 * chunk * n) : nil
        base.withUnsafeBufferPointer { bb in
            nonisolated(unsafe) let b = bb.baseAddress!
            parallelFor(chunks) { c in
                let r0 = c * chunk, count = min(chunk, rows - r0)
                let p = x + r0 * n
                if let signs {
                    for r in 0..<count { for i in 0..<n { p[r * n + i] *= signs[i] } }
                }
                if let pool {
                    pool.withBuffer { raw in
                        let t = raw.assumingMemoryBound(to: Float.self)
                        BLAS.sgemm(m: count * power, n: m, k: m, a: p, lda: m, b: b, ldb: m, c: t, ldc: m)
                        p.update(from: t, count: count * n)
                    }
                }
                for r in 0..<count { Self.walshHadamard(p + r * n, slices: power, width: m, scale: scale) }
            }
        }
    }

    /// `W ← (H/√n)ᵀ·diag(s)·W` for a `n × columns` matrix (the transform applied to its columns): the
    /// output side of a rotation (`Qᵀ·W` with `Q = diag(s)·H/√n`).
    public func transformColumns(_ w: UnsafeMutablePointer<Float>, columns: Int, signs: [Float]? = nil) {
        let n = order
        let t = UnsafeMutablePointer<Float>.allocate(capacity: n * columns)
        defer { t.deallocate() }
        Transpose.tiled(w, rows: n, columns: columns, into: t)
        transformRows(t, rows: columns, signs: signs)
        Transpose.tiled(UnsafePointer(t), rows: columns, columns: n, into: w)
    }

    /// In place: `x ← (S ⊗ I_width)·x · scale` for `slices` slices of `width` values (S Sylvester's matrix of
    /// order `slices`), butterflies on whole slices.
    static func walshHadamard(_ x: UnsafeMutablePointer<Float>, slices: Int, width: Int, scale: Float) {
        var h = 1
        while h < slices {
            let span = h * width
            var start = 0
            while start < slices * width {
                let u = x + start, v = x + start + span
                var i = 0
                let raw = (UnsafeMutableRawPointer(u), UnsafeMutableRawPointer(v))
                while i + 8 <= span {
                    let a = raw.0.loadUnaligned(fromByteOffset: 4 * i, as: SIMD8<Float>.self)
                    let b = raw.1.loadUnaligned(fromByteOffset: 4 * i, as: SIMD8<Float>.self)
                    raw.0.storeBytes(of: a + b, toByteOffset: 4 * i, as: SIMD8<Float>.self)
                    raw.1.storeBytes(of: a - b, toByteOffset: 4 * i, as: SIMD8<Float>.self)
                    i += 8
                }
                while i < span {
                    let a = u[i], b = v[i]
                    u[i] = a + b
                    v[i] = a - b
                    i += 1
                }
                start += 2 * span
            }
            h *= 2
        }
        var i = 0
        let n = slices * width
        let s8 = SIMD8<Float>(repeating: scale)
        let raw = UnsafeMutableRawPointer(x)
        while i + 8 <= n {
            raw.storeBytes(of: raw.loadUnaligned(fromByteOffset: 4 * i, as: SIMD8<Float>.self) * s8, toByteOffset: 4 * i, as: SIMD8<Float>.self)
            i += 8
        }
        while i < n { x[i] *= scale; i += 1 }
    }

    // MARK: Construction

    /// The smallest constructible dense factor m of `n` (`n = 2^k·m`), its name and its ±1 entries.
    static func dense(order n: Int) -> (Int, String, [Float])? {
        var odd = n
        while odd % 2 == 0 { odd /= 2 }
        var m = odd
        while m <= n && n % m == 0 {
            if m == 1 { return (1, "1", [1]) }
            if let (name, b) = paley(m) { return (m, name, b) }
            // Otherwise the Kronecker product of two Paley matrices.
            for m1 in stride(from: 4, through: Int(Double(m).squareRoot()), by: 4) where m % m1 == 0 {
                if let (n1, b1) = paley(m1), let (n2, b2) = paley(m / m1) {
                    return (m, "\(n1) x \(n2)", kronecker(b1, m1, b2, m / m1))
                }
            }
            m *= 2
        }
        return nil
    }

    /// A Paley matrix of order m (I or II), or nil.
    static func paley(_ m: Int) -> (String, [Float])? {
        guard m % 4 == 0, m <= 4096 else { return nil }
        if let (p, e) = primePower(m - 1), (m - 1) % 4 == 3 {
            let field = GaloisField(p: p, e: e)
            var b = [Float](repeating: 0, count: m * m)
            for j in 0..<m { b[j] = 1 }
            for i in 1..<m {
                b[i * m] = -1
                for j in 1..<m { b[i * m + j] = Float(field.character(field.subtract(i - 1, j - 1))) + (i == j ? 1 : 0) }
            }
            return ("paley1(\(m - 1))", b)
        }
        if let (p, e) = primePower(m / 2 - 1), (m / 2 - 1) % 4 == 1 {
            let field = GaloisField(p: p, e: e)
            let c = m / 2
            func conference(_ i: Int, _ j: Int) -> Int {
                if i == j { return 0 }
                if i == 0 || j == 0 { return 1 }
                return field.character(field.subtract(i - 1, j - 1))
            }
            var b = [Float](repeating: 0, count: m * m)
            for i in 0..<c {
                for j in 0..<c {
                    let v = conference(i, j)
                    let block: [Float] = v == 0 ? [1, -1, -1, -1] : [Float(v), Float(v), Float(v), Float(-v)]
                    for a in 0..<2 { for d in 0..<2 { b[(2 * i + a) * m + 2 * j + d] = block[2 * a + d] } }
                }
            }
            return ("paley2(\(m / 2 - 1))", b)
        }
        return nil
    }

    /// `A ⊗ B`.
    static func kronecker(_ a: [Float], _ na: Int, _ b: [Float], _ nb: Int) -> [Float] {
        let n = na * nb
        var out = [Float](repeating: 0, count: n * n)
        for i in 0..<na { for j in 0..<na { for k in 0..<nb { for l in 0..<nb {
            out[(i * nb + k) * n + j * nb + l] = a[i * na + j] * b[k * nb + l]
        } } } }
        return out
    }

    /// `(p, e)` with `q = p^e`, p prime, or nil.
    static func primePower(_ q: Int) -> (Int, Int)? {
        guard q >= 2 else { return nil }
        var p = 2
        while p * p <= q && q % p != 0 { p += 1 }
        if q % p != 0 { p = q }
        var r = q, e = 0
        while r % p == 0 { r /= p; e += 1 }
        return r == 1 ? (p, e) : nil
    }

    /// `2^6 · 3^2`-style prime factorization.
    public static func factorization(_ n: Int) -> String {
        guard n > 1 else { return String(n) }
        var parts: [String] = []
        var r = n, p = 2
        while r > 1 {
            if p * p > r { parts.append(String(r)); break }
            var e = 0
            while r % p == 0 { r /= p; e += 1 }
            if e > 0 { parts.append(e == 1 ? String(p) : "\(p)^\(e)") }
            p += 1
        }
        return parts.joined(separator: " · ")
    }
}

/// GF(p^e): elements numbered by their base-p digits (coefficients of a polynomial of degree < e), the
/// modulus the first monic polynomial (in that numbering) whose root `x` generates the multiplicative group;
/// the quadratic character read from the discrete logarithm base x.
struct GaloisField {
    let p: Int, e: Int, q: Int
    /// χ(a): 0 for 0, +1 for a nonzero square, −1 otherwise.
    private var characters: [Int8]

    init(p: Int, e: Int) {
        self.p = p
        self.e = e
        var q = 1
        for _ in 0..<e { q *= p }
        self.q = q
        characters = []
        // Try every monic modulus x^e + c_{e-1}x^{e-1} + … + c_0 (c numbered like the elements).
        for c in 0..<q {
            let coefficients = Self.digits(c, p: p, e: e)
            var log = [Int](repeating: -1, count: q)
            var y = [Int](repeating: 0, count: e)
            y[0] = 1   // x^0
            var ok = true
            for i in 0..<(q - 1) {
                let v = Self.number(y, p: p)
                if v == 0 || log[v] >= 0 { ok = false; break }
                log[v] = i
                // y ← y·x mod the modulus: shift up, and x^e = −(c_{e-1}x^{e-1} + … + c_0).
                let top = y[e - 1]
                for k in stride(from: e - 1, to: 0, by: -1) { y[k] = y[k - 1] }
                y[0] = 0
                for k in 0..<e { y[k] = ((y[k] - top * coefficients[k]) % p + p) % p }
            }
            guard ok, Self.number(y, p: p) == 1 else { continue }
            characters = (0..<q).map { $0 == 0 ? 0 : (log[$0] % 2 == 0 ? 1 : -1) }
            break
        }
        precondition(characters.count == q, "no primitive modulus for GF(\(p)^\(e))")
    }

    static func digits(_ v: Int, p: Int, e: Int) -> [Int] {
        var d = [Int](repeating: 0, count: e), r = v
        for k in 0..<e { d[k] = r % p; r /= p }
        return d
    }

    static func number(_ d: [Int], p: Int) -> Int {
        var v = 0
        for k in stride(from: d.count - 1, through: 0, by: -1) { v = v * p + d[k] }
        return v
    }

    /// `a − b`, digit by digit mod p.
    func subtract(_ a: Int, _ b: Int) -> Int {
        var ra = a, rb = b, v = 0, place = 1
        for _ in 0..<e {
            v += ((ra % p - rb % p + p) % p) * place
            ra /= p
            rb /= p
            place *= p
        }
        return v
    }

    func character(_ a: Int) -> Int { Int(characters[a]) }
}
