#if canImport(Glibc)
import Glibc
#endif

/// OpenBLAS, loaded on first use.
///
/// Common does not link OpenBLAS at build time: the library starts its thread pool when it is loaded
/// (~4 ms), which a header-only `qinspect` listing must not pay. The tools that multiply matrices load it
/// with `dlopen` the first time they call `sgemm`. OpenBLAS runs single-threaded; callers split work
/// across cores themselves (`Linear`-sized products by output columns), so results do not depend on how
/// OpenBLAS would have partitioned them.
public enum BLAS {
    private typealias SgemmFunction = @convention(c) (
        Int32, Int32, Int32, Int32, Int32, Int32, Float,
        UnsafePointer<Float>?, Int32, UnsafePointer<Float>?, Int32, Float, UnsafeMutablePointer<Float>?, Int32) -> Void
    private typealias SetThreadsFunction = @convention(c) (Int32) -> Void

    private struct Loaded: @unchecked Sendable {
        let sgemm: SgemmFunction
        let handle: UnsafeMutableRawPointer
    }

    /// The library names tried, in order (Debian's libopenblas0 provides the first).
    static let libraryNames = ["libopenblas.so.0", "libopenblas.so", "libopenblasp.so.0"]

    private static let loaded: Result<Loaded, BLASError> = {
        var lastError = "not found"
        for name in libraryNames {
            guard let handle = dlopen(name, RTLD_NOW | RTLD_LOCAL) else {
                if let e = dlerror() { lastError = String(cString: e) }
                continue
            }
            guard let sym = dlsym(handle, "cblas_sgemm") else { lastError = "\(name) has no cblas_sgemm"; continue }
            if let st = dlsym(handle, "openblas_set_num_threads") {
                unsafeBitCast(st, to: SetThreadsFunction.self)(1)
            }
            return .success(Loaded(sgemm: unsafeBitCast(sym, to: SgemmFunction.self), handle: handle))
        }
        return .failure(.unavailable(lastError))
    }()

    /// Loads OpenBLAS now, so a missing library is reported before any work starts.
    public static func load() throws(BLASError) {
        if case .failure(let e) = loaded { throw e }
    }

    /// The address of another function of the loaded OpenBLAS (its LAPACK routines, e.g. `spotrf_`), or
    /// `nil` when the library is not loaded or lacks it.
    public static func symbol(_ name: String) -> UnsafeMutableRawPointer? {
        guard case .success(let lib) = loaded else { return nil }
        return dlsym(lib.handle, name)
    }

    private typealias SsyrkFunction = @convention(c) (
        Int32, Int32, Int32, Int32, Int32, Float, UnsafePointer<Float>?, Int32, Float, UnsafeMutablePointer<Float>?, Int32) -> Void
    private static let ssyrkFunction: SsyrkFunction? = symbol("cblas_ssyrk").map { unsafeBitCast($0, to: SsyrkFunction.self) }

    /// Row-major `C[n×n] = alpha · Aᵀ·A + beta · C` with A stored `k×n` (`lda` ≥ n), on the calling thread.
    /// Only the upper triangle of C is written (`i ≤ j`).
    public static func ssyrkTransposed(n: Int, k: Int, alpha: Float = 1, a: UnsafePointer<Float>, lda: Int,
                                       beta: Float, c: UnsafeMutablePointer<Float>, ldc: Int) {
        guard n > 0 else { return }
        guard let f = ssyrkFunction else { preconditionFailure("BLAS.ssyrkTransposed called without BLAS.load()") }
        // CblasRowMajor = 101, CblasUpper = 121, CblasTrans = 112.
        f(101, 121, 112, Int32(n), Int32(k), alpha, a, Int32(lda), beta, c, Int32(ldc))
    }

    /// Row-major `C[m×n] = alpha · op(A)[m×k] · op(B)[k×n] + beta · C`, on the calling thread.
    /// `transA`/`transB` say whether A is stored k×m / B is stored n×k (row-major, leading dimensions as stored).
    public static func sgemm(transA: Bool = false, transB: Bool = false, m: Int, n: Int, k: Int,
                             alpha: Float = 1, a: UnsafePointer<Float>, lda: Int,
                             b: UnsafePointer<Float>, ldb: Int,
                             beta: Float = 0, c: UnsafeMutablePointer<Float>, ldc: Int) {
        guard m > 0, n > 0 else { return }
        guard case .success(let lib) = loaded else {
            preconditionFailure("BLAS.sgemm called without BLAS.load()")
        }
        if k == 0 {
            for i in 0..<m { for j in 0..<n { c[i * ldc + j] = beta == 0 ? 0 : beta * c[i * ldc + j] } }
            return
        }
        // CblasRowMajor = 101, CblasNoTrans = 111, CblasTrans = 112.
        lib.sgemm(101, transA ? 112 : 111, transB ? 112 : 111, Int32(m), Int32(n), Int32(k), alpha,
                  a, Int32(lda), b, Int32(ldb), beta, c, Int32(ldc))
    }

    /// `C[m×n] = A[m×k] · W[n×k]ᵀ (+ C if accumulate)`, the product of a linear layer, split over the cores
    /// by blocks of output columns. Each column block is an independent sgemm, so the values do not depend on
    /// the number of threads.
    public static func linear(_ a: UnsafePointer<Float>, m: Int, k: Int, weight w: UnsafePointer<Float>, n: Int,
                              into c: UnsafeMutablePointer<Float>, ldc: Int? = nil, accumulate: Bool = false) {
        let ldc = ldc ?? n
        // The work is cut by shape only (never by the core count), so every piece is the same sgemm call,
        // with the same values, however many threads run the pieces. Many tokens: blocks of rows (each packs
        // the weights once more, negligible against 2·rows flops per weight); few tokens: blocks of columns.
        let small = m * n * k < 1 << 20
        if !small && m >= 2 * rowBlock {
            let blocks = (m + rowBlock - 1) / rowBlock
            nonisolated(unsafe) let (a, w, c) = (a, w, c)
            parallelFor(blocks) { t in
                let m0 = t * rowBlock, m1 = min(m, m0 + rowBlock)
                sgemm(transB: true, m: m1 - m0, n: n, k: k, a: a + m0 * k, lda: k, b: w, ldb: k,
                      beta: accumulate ? 1 : 0, c: c + m0 * ldc, ldc: ldc)
            }
            return
        }
        let blocks = small ? 1 : min(8, max(1, n / 64))
        if blocks == 1 {
            sgemm(transB: true, m: m, n: n, k: k, a: a, lda: k, b: w, ldb: k, beta: accumulate ? 1 : 0, c: c, ldc: ldc)
            return
        }
        let width = (n / blocks + 15) / 16 * 16
        nonisolated(unsafe) let (a, w, c) = (a, w, c)
        parallelFor(blocks) { t in
            let n0 = t * width, n1 = t == blocks - 1 ? n : min(n, (t + 1) * width)
            guard n0 < n1 else { return }
            sgemm(transB: true, m: m, n: n1 - n0, k: k, a: a, lda: k, b: w + n0 * k, ldb: k,
                  beta: accumulate ? 1 : 0, c: c + n0, ldc: ldc)
        }
    }

    /// Rows of activations per sgemm call when a product is cut by rows.
    static let rowBlock = 256

    /// Cores this process uses: the online cores, or `QKIT_THREADS` when set (1 runs every parallel loop
    /// inline, on the calling thread; results are the same either way).
    public static let activeCores: Int = Threads.count
}

/// Errors of the BLAS loader.
public enum BLASError: QKitError, Equatable {
    case unavailable(String)

    public var exitStatus: ExitStatus { .unavailable }

    public var description: String {
        switch self {
        case .unavailable(let why): "cannot load OpenBLAS (\(why)); install libopenblas0 (apt install libopenblas-dev)"
        }
    }
}
