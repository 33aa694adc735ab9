#if canImport(Glibc)
import Glibc
#endif

/// Truncated singular value decompositions in f64 (SVDQuant's low-rank branch, ../shared/specs/algorithms.md §4.9),
/// on LAPACK's `dgesdd` and BLAS's `dgemm` from the loaded OpenBLAS.
///
/// `A ≈ up · down` with `up = U_r·diag(σ_r)` `[m, r]` and `down = V_rᵀ` `[r, n]`: the best rank-r approximation.
/// Matrices wider than `exactLimit` in their smaller dimension use the randomized range finder (Halko, Martinsson,
/// Tropp 2011, §4.4): a Gaussian sketch of `r + oversampling` columns from a fixed seed, `powerIterations` subspace
/// iterations re-orthonormalized through a thin SVD, then the exact SVD of the small projected matrix. It is
/// deterministic (the sketch is seeded, every product is one BLAS call on the calling thread).
public enum LowRank {
    /// A rank-r factorization `up·down` of an `[m, n]` matrix.
    public struct Factors: Sendable {
        public var rank: Int
        /// `[m, rank]` row-major, singular values folded in.
        public var up: [Double]
        /// `[rank, n]` row-major, orthonormal rows.
        public var down: [Double]
        /// The leading singular values.
        public var singularValues: [Double]
    }

    /// Smaller dimensions up to this use the exact SVD.
    public static let exactLimit = 256
    /// Extra sketch columns of the randomized SVD.
    public static let oversampling = 16
    /// Subspace iterations of the randomized SVD.
    public static let powerIterations = 2

    /// The best rank-`rank` approximation of the row-major `[m, n]` matrix `a` (exact or randomized, by size).
    public static func truncated(_ a: [Double], rows m: Int, columns n: Int, rank: Int, randomized: Bool? = nil) throws(BLASError) -> Factors {
        let r = min(rank, m, n)
        let useRandom = randomized ?? (min(m, n) > exactLimit && r + oversampling < min(m, n))
        return useRandom ? try randomizedSVD(a, rows: m, columns: n, rank: r) : try exact(a, rows: m, columns: n, rank: r)
    }

    /// Thin SVD of a row-major `[m, n]` matrix: `U` `[m, p]`, σ `[p]`, `Vᵀ` `[p, n]`, p = min(m, n).
    public static func thinSVD(_ a: [Double], rows m: Int, columns n: Int) throws(BLASError) -> (u: [Double], s: [Double], vt: [Double]) {
        let lapack = try Functions.load()
        let p = min(m, n)
        // Row-major A [m, n] is column-major Aᵀ [n, m]. dgesdd(Aᵀ) = U'·S·V'ᵀ gives A = V'·S·U'ᵀ: the column-major
        // V'ᵀ [p, m] is row-major U_A [m, p], the column-major U' [n, p] is row-major Vᵀ_A [p, n].
        var work = a
        var s = [Double](repeating: 0, count: p)
        var uPrime = [Double](repeating: 0, count: n * p)
        var vtPrime = [Double](repeating: 0, count: p * m)
        var rowsA = Int32(n), colsA = Int32(m), lda = Int32(n), ldu = Int32(n), ldvt = Int32(p)
        var info: Int32 = 0
        var iwork = [Int32](repeating: 0, count: 8 * p)
        var query = 0.0
        var lwork: Int32 = -1
        "S".withCString { job in
            lapack.gesdd(job, &rowsA, &colsA, &work, &lda, &s, &uPrime, &ldu, &vtPrime, &ldvt, &query, &lwork, &iwork, &info, 1)
        }
        lwork = Int32(query) + 1
        var buffer = [Double](repeating: 0, count: Int(lwork))
        "S".withCString { job in
            lapack.gesdd(job, &rowsA, &colsA, &work, &lda, &s, &uPrime, &ldu, &vtPrime, &ldvt, &buffer, &lwork, &iwork, &info, 1)
        }
        guard info == 0 else { throw .unavailable("dgesdd failed (info \(info)) on a [\(m), \(n)] matrix") }
        return (vtPrime, s, uPrime)
    }

    /// The exact truncated SVD.
    static func exact(_ a: [Double], rows m: Int, columns n: Int, rank r: Int) throws(BLASError) -> Factors {
        let (u, s, vt) = try thinSVD(a, rows: m, columns: n)
        let p = min(m, n)
        var up = [Double](repeating: 0, count: m * r)
        for i in 0..<m { for j in 0..<r { up[i * r + j] = u[i * p + j] * s[j] } }
        return Factors(rank: r, up: up, down: Array(vt[0..<(r * n)]), singularValues: Array(s[0..<r]))
    }

    /// The randomized truncated SVD.
    static func randomizedSVD(_ a: [Double], rows m: Int, columns n: Int, rank r: Int) throws(BLASError) -> Factors {
        let f = try Functions.load()
        let l = min(r + oversampling, min(m, n))
        // Gaussian sketch Ω [n, l] from a fixed seed (Box–Muller on SplitMix64).
        var state: UInt64 = 0x5D_5155_4E54_3031
        func uniform() -> Double {
            state &+= 0x9E37_79B9_7F4A_7C15
            var z = state
            z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
            z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
            z ^= z >> 31
            return (Double(z >> 11) + 0.5) / Double(1 << 53)
        }
        var omega = [Double](repeating: 0, count: n * l)
        for i in stride(from: 0, to: omega.count, by: 2) {
            let (u1, u2) = (uniform(), uniform())
            let rad = (-2 * log(u1)).squareRoot()
            omega[i] = rad * cos(2 * Double.pi * u2)
            if i + 1 < omega.count { omega[i + 1] = rad * sin(2 * Double.pi * u2) }
        }
        var y = [Double](repeating: 0, count: m * l)
        f.gemm(false, false, m, l, n, a, n, omega, l, &y, l)            // Y = A·Ω
        var q = try orthonormal(y, rows: m, columns: l)
        var z = [Double](repeating: 0, count: n * l)
        for _ in 0..<powerIterations {
            f.gemm(true, false, n, l, m, a, n, q, l, &z, l)             // Z = Aᵀ·Q
            let qz = try orthonormal(z, rows: n, columns: l)
            f.gemm(false, false, m, l, n, a, n, qz, l, &y, l)           // Y = A·Qz
            q = try orthonormal(y, rows: m, columns: l)
        }
        var b = [Double](repeating: 0, count: l * n)
        f.gemm(true, false, l, n, m, q, l, a, n, &b, n)                 // B = Qᵀ·A [l, n]
        let (ub, s, vt) = try thinSVD(b, rows: l, columns: n)          // ub [l, l]
        let p = min(l, n)
        var ubr = [Double](repeating: 0, count: l * r)
        for i in 0..<l { for j in 0..<r { ubr[i * r + j] = ub[i * p + j] * s[j] } }
        var up = [Double](repeating: 0, count: m * r)
        f.gemm(false, false, m, r, l, q, l, ubr, r, &up, r)             // U = Q·U_B·Σ
        return Factors(rank: r, up: up, down: Array(vt[0..<(r * n)]), singularValues: Array(s[0..<r]))
    }

    /// An orthonormal basis of the columns of the row-major `[m, c]` matrix (its left singular vectors).
    static func orthonormal(_ y: [Double], rows m: Int, columns c: Int) throws(BLASError) -> [Double] {
        try thinSVD(y, rows: m, columns: c).u
    }

    /// `C = op(A)·op(B)` in f64, row-major.
    public static func multiply(transA: Bool, transB: Bool, m: Int, n: Int, k: Int, a: [Double], lda: Int, b: [Double], ldb: Int) throws(BLASError) -> [Double] {
        var c = [Double](repeating: 0, count: m * n)
        try Functions.load().gemm(transA, transB, m, n, k, a, lda, b, ldb, &c, n)
        return c
    }

    /// The OpenBLAS functions used here.
    struct Functions: @unchecked Sendable {
        typealias Gesdd = @convention(c) (UnsafePointer<CChar>, UnsafePointer<Int32>, UnsafePointer<Int32>, UnsafeMutablePointer<Double>,
                                          UnsafePointer<Int32>, UnsafeMutablePointer<Double>, UnsafeMutablePointer<Double>, UnsafePointer<Int32>,
                                          UnsafeMutablePointer<Double>, UnsafePointer<Int32>, UnsafeMutablePointer<Double>, UnsafePointer<Int32>,
                                          UnsafeMutablePointer<Int32>, UnsafeMutablePointer<Int32>, Int) -> Void
        typealias Dgemm = @convention(c) (Int32, Int32, Int32, Int32, Int32, Int32, Double, UnsafePointer<Double>?, Int32,
                                          UnsafePointer<Double>?, Int32, Double, UnsafeMutablePointer<Double>?, Int32) -> Void
        let gesdd: Gesdd
        let dgemm: Dgemm

        private static let loaded: Result<Functions, BLASError> = {
            do throws(BLASError) { try BLAS.load() } catch { return .failure(error) }
            guard let s = BLAS.symbol("dgesdd_"), let g = BLAS.symbol("cblas_dgemm") else {
                return .failure(.unavailable("the loaded OpenBLAS has no LAPACK dgesdd_ or cblas_dgemm"))
            }
            return .success(Functions(gesdd: unsafeBitCast(s, to: Gesdd.self), dgemm: unsafeBitCast(g, to: Dgemm.self)))
        }()

        static func load() throws(BLASError) -> Functions { try loaded.get() }

        /// Row-major `C[m×n] = op(A)·op(B)`.
        func gemm(_ ta: Bool, _ tb: Bool, _ m: Int, _ n: Int, _ k: Int, _ a: [Double], _ lda: Int, _ b: [Double], _ ldb: Int,
                  _ c: inout [Double], _ ldc: Int) {
            guard m > 0, n > 0 else { return }
            a.withUnsafeBufferPointer { pa in
                b.withUnsafeBufferPointer { pb in
                    c.withUnsafeMutableBufferPointer { pc in
                        dgemm(101, ta ? 112 : 111, tb ? 112 : 111, Int32(m), Int32(n), Int32(k), 1, pa.baseAddress, Int32(lda),
                              pb.baseAddress, Int32(ldb), 0, pc.baseAddress, Int32(ldc))
                    }
                }
            }
        }
    }
}
