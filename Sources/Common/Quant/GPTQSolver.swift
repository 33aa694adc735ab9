/// GPTQ (arXiv 2210.17323, the Cholesky reformulation of Optimal Brain Quantization): quantizes one linear's
/// weight column by column, each column's rounding error spread over the columns not yet quantized through
/// the upper Cholesky factor U of H⁻¹, so that the layer output error ‖(W − Q)X‖ is small on the calibration
/// inputs whose Hessian is H = 2/n Σ xᵀx.
///
/// Semantics are those of llm-compressor 0.14 (`llmcompressor/modifiers/gptq/gptq_quantize.py`,
/// `quantize_weight`), the peer the issue measures against:
/// - dead inputs (H_ii = 0): H_ii = 1 and W[:, i] = 0;
/// - `actOrder`: columns are processed in order of descending diag(H) (taken before the dead-input fix, a stable
///   sort), each keeping the parameters of its own group: llm-compressor's `actorder: static` ("weight");
/// - damping H_ii += dampening · mean(diag H) (after the dead-input fix);
/// - group parameters are static: computed from the original W before the loop (RTN range per group, the MSE
///   clip search for `.mse`, HQQ's solver for `.hqq`), so groups stay contiguous in the original column
///   order and no g_idx is needed;
/// - blocks of `blockSize` columns; within a block each column is quantized and its scaled error
///   err = (w − q)/U_ii subtracted from the block's later columns (err · U[i, i+1..<end]); after the block one
///   sgemm applies the lazy batch update W[:, end:] −= Err · U[block, end:];
/// - the loss is Σ err²/2 over all elements (llm-compressor's `losses`).
///
/// Where it differs: when the Cholesky factorization fails, llm-compressor falls back to RTN; here the damping
/// is doubled (at least 0.01) and the factorization retried, up to `Settings.maxRetries` times (10 by default:
/// 0.01 → 10.24 · mean(diag)), and `GPTQError.notPositiveDefinite` is thrown after that.
///
/// U is computed as J·L⁻¹·J with J the reversal and L the lower Cholesky factor of J·H·J (LAPACK `spotrf`, then
/// `strtri`): the unique upper triangular U with positive diagonal and UᵀU = H⁻¹, the same factor as
/// `chol(chol_inverse(chol(H)))ᵀ` at half the cost (2k³/3 flops instead of 4k³/3), without forming H⁻¹.
///
/// Parallel work is split by shape only: rows of W are independent given U, so blocks of `rowBlock` rows run
/// as separate tasks, each on a transposed copy (column i of the block contiguous, the per-column loop
/// vectorized over rows). Results are the same bytes whatever the number of threads. LAPACK runs
/// single-threaded (as all BLAS calls in qkit).
public enum GPTQSolver {
    /// Settings of the solver.
    public struct Settings: Sendable {
        /// Damping added to the Hessian's diagonal, as a fraction of its mean (llm-compressor `dampening_frac`).
        public var dampening: Float = 0.01
        /// Columns per lazy-batch block.
        public var blockSize = 128
        /// Process columns in order of descending diag(H), with static groups.
        public var actOrder = false
        /// How many times the damping is doubled (at least to 0.01) and the factorization retried when H is
        /// not numerically positive definite.
        public var maxRetries = 10
        /// Settings of the HQQ solver that chooses the static parameters when `scheme.algorithm == .hqq`.
        public var hqq = HQQ.Settings()

        public init(dampening: Float = 0.01, blockSize: Int = 128, actOrder: Bool = false, maxRetries: Int = 10) {
            self.dampening = dampening
            self.blockSize = blockSize
            self.actOrder = actOrder
            self.maxRetries = maxRetries
        }
    }

    /// What one quantization did.
    public struct Result: Sendable {
        /// NVFP4's tensor-wide global scale (a divisor; `P.weight_global_scale`), 1 for the other formats.
        public var globalScale: Float
        /// The damping fraction finally used (`Settings.dampening`, or larger after retries).
        public var dampening: Float
        /// How many times the factorization was retried with a larger damping.
        public var retries: Int
        /// The dead input columns (H_ii = 0), in increasing order: their weights were set to 0.
        public var deadColumns: [Int]
        /// GPTQ's loss, Σ ((w − q)/U_ii)² / 2 over all elements (llm-compressor's per-module loss).
        public var loss: Double
        /// Wall time of the Hessian's preparation and factorization (single-threaded LAPACK), in seconds (that of
        /// the shared factorization when one was passed).
        public var factorizationSeconds: Double
        /// Wall time of the static parameters and the column loop (parallel over row blocks), in seconds.
        public var solveSeconds: Double
    }

    /// Rows per task: the unit of parallel work (a fixed shape, so results do not depend on the core count).
    public static let rowBlock = 128

    /// U, the upper Cholesky factor of the damped H⁻¹ (with act-order, of the permuted H), and what GPTQ needs
    /// besides: the column order and the dead inputs. It depends on the Hessian and the settings only, so the
    /// linears that share an input (q/k/v; gate/up) can share one: `factorize` once, then `quantize` each weight.
    public struct Factorization: @unchecked Sendable {
        /// Input columns.
        public let k: Int
        /// U, in the upper triangle of the caller's Hessian buffer (row-major [k, k], in processing order): valid
        /// while that buffer lives and is not modified.
        public let u: UnsafePointer<Float>
        /// Processing order: `permutation[i]` is the original column processed i-th (the identity without act-order).
        public let permutation: [Int]
        /// The dead input columns (H_ii = 0), in increasing order.
        public let deadColumns: [Int]
        /// The damping fraction used (`Settings.dampening`, or larger after retries).
        public let dampening: Float
        /// How many times the factorization was retried with a larger damping.
        public let retries: Int
        /// Wall time of the factorization, in seconds.
        public let seconds: Double
    }

    /// Prepares the Hessian `hessian` ([k, k] f32, symmetric; only its upper triangle i ≤ j is read, so
    /// `BLAS.ssyrkTransposed`'s output can be passed as it is) for `quantize(weight:n:k:factorization:…)`:
    /// act-order permutation (`settings.actOrder`), dead inputs, damping with retries, U. The buffer is
    /// overwritten and holds U in its upper triangle afterwards.
    /// - Throws: `GPTQError` for a bad setting, a NaN or infinity in the upper triangle, a negative diagonal
    ///   entry, a Hessian that stays indefinite after every retry, or a missing OpenBLAS/LAPACK.
    public static func factorize(hessian: UnsafeMutablePointer<Float>, k: Int, settings: Settings) throws(GPTQError) -> Factorization {
        guard k > 0 else { throw .invalidShape("the Hessian is [\(k), \(k)]: K must be positive") }
        guard settings.dampening.isFinite, settings.dampening >= 0 else {
            throw .invalidSettings("dampening \(settings.dampening) must be a finite non-negative number")
        }
        guard settings.maxRetries >= 0 else { throw .invalidSettings("retries \(settings.maxRetries) must not be negative") }
        for i in 0..<k {
            if let j = firstNonFinite(hessian + i * k + i, count: k - i) { throw .nonFinite(matrix: "Hessian", row: i, column: i + j) }
            if hessian[i * k + i] < 0 { throw .negativeDiagonal(column: i, value: hessian[i * k + i]) }
        }
        let lapack: LAPACK
        do { lapack = try LAPACK.load() } catch { throw .unavailable(error.description) }

        let start = monotonicSeconds()
        mirrorUpper(hessian, k: k)
        var diagonal = (0..<k).map { hessian[$0 * k + $0] }
        let dead = (0..<k).filter { diagonal[$0] == 0 }
        var permutation = Array(0..<k)
        if settings.actOrder {
            permutation.sort { diagonal[$0] != diagonal[$1] ? diagonal[$0] > diagonal[$1] : $0 < $1 }
            permute(hessian, k: k, by: permutation)
            diagonal = permutation.map { diagonal[$0] }
        }
        for i in 0..<k where diagonal[i] == 0 { diagonal[i] = 1 }
        var meanDiagonal = 0.0
        for d in diagonal { meanDiagonal += Double(d) }
        meanDiagonal /= Double(k)
        let (dampening, retries) = try factorize(hessian, k: k, diagonal: diagonal, mean: meanDiagonal,
                                                 settings: settings, lapack: lapack)
        return Factorization(k: k, u: UnsafePointer(hessian), permutation: permutation, deadColumns: dead,
                             dampening: dampening, retries: retries, seconds: monotonicSeconds() - start)
    }

    /// Quantizes `weight` ([n, k] f32 row-major; replaced by its dequantized values) with the Hessian `hessian`
    /// ([k, k] f32, symmetric; only its upper triangle i ≤ j is read, so `BLAS.ssyrkTransposed`'s output can be
    /// passed as it is; overwritten: its upper triangle holds U on return), writing one code byte per element
    /// into `codes` (n·k, in the original column order, the bytes `GroupCodec.encode` produces) and the group
    /// parameters into `parameters` (as RTN: for group and channel granularity `n · (k / groupLength)` of them
    /// row-major, for `.tensor` a single one). `factorize` then `quantize(weight:n:k:factorization:…)`.
    ///
    /// - Throws: `GPTQError` for a scheme or setting that cannot be used, a group that does not divide `k`, a NaN
    ///   or infinity in W or H, a negative diagonal entry of H, a Hessian that stays indefinite after every
    ///   retry, or a missing OpenBLAS/LAPACK.
    public static func quantize(weight: UnsafeMutablePointer<Float>, n: Int, k: Int, hessian: UnsafeMutablePointer<Float>,
                                scheme: QuantScheme, settings: Settings, codes: UnsafeMutablePointer<UInt8>,
                                parameters: UnsafeMutablePointer<GroupCodec.Parameters>) throws(GPTQError) -> Result {
        // Everything is checked before anything is touched.
        try check(weight: weight, n: n, k: k, scheme: scheme, settings: settings)
        let factorization = try factorize(hessian: hessian, k: k, settings: settings)
        return solve(weight: weight, n: n, k: k, factorization: factorization, scheme: scheme, settings: settings,
                     codes: codes, parameters: parameters)
    }

    /// Quantizes `weight` ([n, k] f32 row-major; replaced by its dequantized values) with a factorization of its
    /// input's Hessian (`factorize`; its act-order and damping apply, `settings.blockSize` and `settings.hqq`
    /// are read here). Outputs as `quantize(weight:n:k:hessian:…)`.
    /// - Throws: `GPTQError` for a scheme or setting that cannot be used, a group that does not divide `k`, a
    ///   factorization of another width, or a NaN or infinity in W.
    public static func quantize(weight: UnsafeMutablePointer<Float>, n: Int, k: Int, factorization: Factorization,
                                scheme: QuantScheme, settings: Settings, codes: UnsafeMutablePointer<UInt8>,
                                parameters: UnsafeMutablePointer<GroupCodec.Parameters>) throws(GPTQError) -> Result {
        guard factorization.k == k else { throw .invalidShape("the factorization is for K = \(factorization.k), the weight has K = \(k)") }
        try check(weight: weight, n: n, k: k, scheme: scheme, settings: settings)
        return solve(weight: weight, n: n, k: k, factorization: factorization, scheme: scheme, settings: settings,
                     codes: codes, parameters: parameters)
    }

    /// The checks of the weight side: shape, scheme, block size, finite weights.
    static func check(weight: UnsafePointer<Float>, n: Int, k: Int, scheme: QuantScheme, settings: Settings) throws(GPTQError) {
        guard n > 0, k > 0 else { throw .invalidShape("the weight is [\(n), \(k)]: both dimensions must be positive") }
        do { try scheme.validate() } catch { throw .invalidScheme(error.message) }
        if case .group(let g) = scheme.granularity, k % g != 0 {
            throw .invalidShape("group \(g) does not divide K = \(k)")
        }
        guard settings.blockSize > 0 else { throw .invalidSettings("block size \(settings.blockSize) must be positive") }
        if let i = firstNonFinite(weight, count: n * k) { throw .nonFinite(matrix: "weight", row: i / k, column: i % k) }
    }

    /// The column loop on checked inputs.
    static func solve(weight: UnsafeMutablePointer<Float>, n: Int, k: Int, factorization: Factorization, scheme: QuantScheme,
                      settings: Settings, codes: UnsafeMutablePointer<UInt8>,
                      parameters: UnsafeMutablePointer<GroupCodec.Parameters>) -> Result {
        // Static parameters from the original weight.
        let start = monotonicSeconds()
        let groupLength = scheme.granularity.groupLength(k: k)
        let groupsPerRow = k / groupLength
        let globalScale = staticParameters(weight, n: n, k: k, scheme: scheme, settings: settings, codes: codes, parameters: parameters)
        let codec = GroupCodec(scheme: scheme, globalScale: globalScale)
        let u = factorization.u, permutation = factorization.permutation, dead = factorization.deadColumns

        // Row blocks in parallel.
        let blocks = (n + rowBlock - 1) / rowBlock
        let bs = min(settings.blockSize, k)
        let isDead = [Bool](unsafeUninitializedCapacity: k) { b, c in
            b.initialize(repeating: false)
            for i in dead { b[i] = true }
            c = k
        }
        var losses = [Double](repeating: 0, count: blocks)
        let floatsPerTask = k * rowBlock + bs * rowBlock + 2 * groupsPerRow * rowBlock
        let pool = ScratchPool(byteCount: 4 * floatsPerTask + k * rowBlock)
        let tensorWide = scheme.granularity == .tensor
        let table = CodeTable.table(for: scheme.codeDType, hasZeroPoint: !scheme.symmetric)
        nonisolated(unsafe) let (w, c, p) = (weight, codes, UnsafePointer(parameters))
        losses.withUnsafeMutableBufferPointer { lossBuffer in
            nonisolated(unsafe) let lossOut = lossBuffer.baseAddress!
            table.withUnsafeBufferPointer { tableBuffer in
                nonisolated(unsafe) let t = tableBuffer.baseAddress!
                permutation.withUnsafeBufferPointer { permBuffer in
                    nonisolated(unsafe) let perm = permBuffer.baseAddress!
                    isDead.withUnsafeBufferPointer { deadBuffer in
                        nonisolated(unsafe) let deadFlags = deadBuffer.baseAddress!
                        parallelFor(blocks) { task in
                            let r0 = task * rowBlock, rb = min(n, r0 + rowBlock) - r0
                            pool.withBuffer { raw in
                                let f = raw.assumingMemoryBound(to: Float.self)
                                let wt = f, errT = f + k * rowBlock
                                let scaleT = errT + bs * rowBlock, zeroT = scaleT + groupsPerRow * rowBlock
                                let codesT = (raw + 4 * floatsPerTask).assumingMemoryBound(to: UInt8.self)
                                // Transposed, permuted copy of the rows; the group parameters, transposed.
                                for col in 0..<k {
                                    let src = perm[col], out = wt + col * rb
                                    if deadFlags[src] {
                                        out.initialize(repeating: 0, count: rb)
                                    } else {
                                        for r in 0..<rb { out[r] = w[(r0 + r) * k + src] }
                                    }
                                }
                                for g in 0..<groupsPerRow {
                                    for r in 0..<rb {
                                        let q = tensorWide ? p[0] : p[(r0 + r) * groupsPerRow + g]
                                        scaleT[g * rb + r] = q.scale
                                        zeroT[g * rb + r] = q.zero
                                    }
                                }
                                lossOut[task] = solveRows(wt, rows: rb, k: k, u: u, blockSize: bs, permutation: perm,
                                                          groupLength: groupLength, scales: scaleT, zeros: zeroT,
                                                          codec: codec, table: t, errors: errT, codes: codesT)
                                for col in 0..<k {
                                    let dst = perm[col]
                                    for r in 0..<rb {
                                        w[(r0 + r) * k + dst] = wt[col * rb + r]
                                        c[(r0 + r) * k + dst] = codesT[col * rb + r]
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
        return Result(globalScale: globalScale, dampening: factorization.dampening, retries: factorization.retries,
                      deadColumns: dead, loss: losses.reduce(0, +), factorizationSeconds: factorization.seconds,
                      solveSeconds: monotonicSeconds() - start)
    }

    // MARK: - Static parameters

    /// Computes the parameters of every group from the original weight (RTN, the MSE search or HQQ), and
    /// returns NVFP4's global scale (1 otherwise). `scratch` holds n·k bytes (HQQ writes its codes there).
    static func staticParameters(_ w: UnsafePointer<Float>, n: Int, k: Int, scheme: QuantScheme, settings: Settings,
                                 codes scratch: UnsafeMutablePointer<UInt8>,
                                 parameters: UnsafeMutablePointer<GroupCodec.Parameters>) -> Float {
        let groupLength = scheme.granularity.groupLength(k: k)
        let groupsPerRow = k / groupLength
        var globalScale: Float = 1
        if scheme.granularity == .tensor || scheme.format == .nvfp4 {
            let r = RTN.range(w, count: n * k)
            if scheme.format == .nvfp4 { globalScale = GroupCodec.nvfp4GlobalScale(absmax: r.absmax) }
            if scheme.granularity == .tensor {
                parameters[0] = GroupCodec(scheme: scheme).parameters(minimum: r.minimum, maximum: r.maximum, absmax: r.absmax)
                return globalScale
            }
        }
        if scheme.progressive {
            // QServe's two-level grid: parameters.scale = s1·s0 (the level-0 row scales are recomputed by the caller).
            _ = ProgressiveQuantization.parameters(w, n: n, k: k, groupLength: groupLength, bits: scheme.bits, into: parameters)
            return globalScale
        }
        if scheme.algorithm == .hqq {
            HQQ.quantize(w, n: n, k: k, groupLength: groupLength, bits: scheme.bits, settings: settings.hqq,
                         codes: scratch, parameters: parameters)
            return globalScale
        }
        let codec = GroupCodec(scheme: scheme, globalScale: globalScale)
        let mse = scheme.algorithm == .mse
        nonisolated(unsafe) let (w, p, s) = (w, parameters, scratch)
        let rowsPerTask = 64
        parallelFor((n + rowsPerTask - 1) / rowsPerTask) { task in
            for row in (task * rowsPerTask)..<min(n, (task + 1) * rowsPerTask) {
                for g in 0..<groupsPerRow {
                    let x = w + row * k + g * groupLength
                    if mse {
                        p[row * groupsPerRow + g] = MSEClip.searchParameters(x, count: groupLength, codec: codec,
                                                                             scratch: s + row * k + g * groupLength)
                    } else {
                        let r = RTN.range(x, count: groupLength)
                        p[row * groupsPerRow + g] = codec.parameters(minimum: r.minimum, maximum: r.maximum, absmax: r.absmax)
                    }
                }
            }
        }
        return globalScale
    }

    // MARK: - The column loop

    /// Runs GPTQ on `rows` rows held transposed in `wt` ([k, rows], column i contiguous, in processing order):
    /// `wt` ends holding the dequantized values, `codes` ([k, rows]) the codes. Returns Σ err²/2.
    /// - Parameters:
    ///   - scales, zeros: [groups, rows], the parameters of each original group.
    ///   - errors: scratch of `blockSize · rows` floats.
    static func solveRows(_ wt: UnsafeMutablePointer<Float>, rows rb: Int, k: Int, u: UnsafePointer<Float>, blockSize: Int,
                          permutation: UnsafePointer<Int>, groupLength: Int, scales: UnsafePointer<Float>,
                          zeros: UnsafePointer<Float>, codec: GroupCodec, table: UnsafePointer<Float>,
                          errors: UnsafeMutablePointer<Float>, codes: UnsafeMutablePointer<UInt8>) -> Double {
        var loss = 0.0
        var b0 = 0
        while b0 < k {
            let b1 = min(k, b0 + blockSize)
            for i in b0..<b1 {
                let g = permutation[i] / groupLength
                let column = wt + i * rb
                let err = errors + (i - b0) * rb
                let squared = quantizeColumn(column, count: rb, scales: scales + g * rb, zeros: zeros + g * rb,
                                             diagonal: u[i * k + i], codec: codec, table: table,
                                             codes: codes + i * rb, errors: err)
                loss += Double(squared) / 2
                // Spread the error over the block's later columns: W[:, j] −= err · U[i, j].
                var j = i + 1
                while j < b1 {
                    subtract(err, times: u[i * k + j], from: wt + j * rb, count: rb)
                    j += 1
                }
            }
            if b1 < k {
                // Lazy batch update of the columns after the block: Wt[b1:, :] −= U[b0:b1, b1:]ᵀ · Err.
                BLAS.sgemm(transA: true, m: k - b1, n: rb, k: b1 - b0, alpha: -1, a: u + b0 * k + b1, lda: k,
                           b: errors, ldb: rb, beta: 1, c: wt + b1 * rb, ldc: rb)
            }
            b0 = b1
        }
        return loss
    }

    /// `y −= a · x` over `count` floats.
    @inline(__always)
    static func subtract(_ x: UnsafePointer<Float>, times a: Float, from y: UnsafeMutablePointer<Float>, count: Int) {
        var r = 0
        let av = SIMD8<Float>(repeating: a)
        let xr = UnsafeRawPointer(x), yr = UnsafeMutableRawPointer(y)
        while r + 8 <= count {
            let xv = xr.loadUnaligned(fromByteOffset: 4 * r, as: SIMD8<Float>.self)
            let yv = yr.loadUnaligned(fromByteOffset: 4 * r, as: SIMD8<Float>.self)
            yr.storeBytes(of: yv - xv * av, toByteOffset: 4 * r, as: SIMD8<Float>.self)
            r += 8
        }
        while r < count {
            y[r] -= x[r] * a
            r += 1
        }
    }

    /// Quantizes one column of `count` rows, each row with its own scale and zero point: `column` is replaced
    /// by the dequantized values, `codes` gets the code bytes (those of `GroupCodec.encode`), `errors` the
    /// scaled errors (w − q)/`diagonal`. Returns Σ errors².
    @inline(__always)
    static func quantizeColumn(_ column: UnsafeMutablePointer<Float>, count: Int, scales: UnsafePointer<Float>,
                               zeros: UnsafePointer<Float>, diagonal: Float, codec: GroupCodec,
                               table: UnsafePointer<Float>, codes: UnsafeMutablePointer<UInt8>,
                               errors: UnsafeMutablePointer<Float>) -> Float {
        var sum: Float = 0
        if case .int = codec.scheme.format {
            // The arithmetic of `GroupCodec.encodeInteger`, with one scale and zero point per lane: adding
            // 1.5·2^23 rounds to an integer (ties to even) whose low byte is the code; subtracting it again gives
            // the code's value exactly (what `GroupCodec.decode` reads from its table).
            let magic = SIMD8<Float>(repeating: 12_582_912)
            let lo = SIMD8<Float>(repeating: codec.minCode), hi = SIMD8<Float>(repeating: codec.maxCode)
            let d = SIMD8<Float>(repeating: diagonal)
            var acc = SIMD8<Float>(repeating: 0)
            let wr = UnsafeMutableRawPointer(column), sr = UnsafeRawPointer(scales), zr = UnsafeRawPointer(zeros)
            let er = UnsafeMutableRawPointer(errors)
            var r = 0
            while r + 8 <= count {
                let v = wr.loadUnaligned(fromByteOffset: 4 * r, as: SIMD8<Float>.self)
                let s = sr.loadUnaligned(fromByteOffset: 4 * r, as: SIMD8<Float>.self)
                let z = zr.loadUnaligned(fromByteOffset: 4 * r, as: SIMD8<Float>.self)
                var q = v / s + z
                q = q.replacing(with: lo, where: q .< lo).replacing(with: hi, where: q .> hi)
                let shifted = q + magic
                let bits = unsafeBitCast(shifted, to: SIMD8<UInt32>.self)
                UnsafeMutableRawPointer(codes + r).storeBytes(of: SIMD8<UInt8>(truncatingIfNeeded: bits), as: SIMD8<UInt8>.self)
                let deq = ((shifted - magic) - z) * s
                let e = (v - deq) / d
                er.storeBytes(of: e, toByteOffset: 4 * r, as: SIMD8<Float>.self)
                wr.storeBytes(of: deq, toByteOffset: 4 * r, as: SIMD8<Float>.self)
                acc += e * e
                r += 8
            }
            sum = acc.sum()
            while r < count {
                let v = column[r], s = scales[r], z = zeros[r]
                var q = v / s + z
                q = q < codec.minCode ? codec.minCode : (q > codec.maxCode ? codec.maxCode : q)
                let shifted = q + 12_582_912
                codes[r] = UInt8(truncatingIfNeeded: shifted.bitPattern)
                let deq = ((shifted - 12_582_912) - z) * s
                let e = (v - deq) / diagonal
                errors[r] = e
                column[r] = deq
                sum += e * e
                r += 1
            }
            return sum
        }
        let f = codec.element!, m = codec.elementMax
        for r in 0..<count {
            let v = column[r], s = scales[r]
            let code = UInt8(truncatingIfNeeded: f.encode(min(max(v / s, -m), m)))
            codes[r] = code
            let deq = (table[Int(code)] - zeros[r]) * s
            let e = (v - deq) / diagonal
            errors[r] = e
            column[r] = deq
            sum += e * e
        }
        return sum
    }

    // MARK: - The Hessian

    /// Copies the upper triangle of the row-major [k, k] matrix onto its lower triangle, in tiles.
    static func mirrorUpper(_ h: UnsafeMutablePointer<Float>, k: Int) {
        let tile = 64
        for i0 in stride(from: 0, to: k, by: tile) {
            for j0 in stride(from: 0, through: i0, by: tile) {
                for i in i0..<min(k, i0 + tile) {
                    for j in j0..<min(i, j0 + tile) { h[i * k + j] = h[j * k + i] }
                }
            }
        }
    }

    /// Replaces the symmetric [k, k] matrix H by H[perm, perm] in place (one row of scratch).
    static func permute(_ h: UnsafeMutablePointer<Float>, k: Int, by perm: [Int]) {
        let row = UnsafeMutablePointer<Float>.allocate(capacity: k)
        defer { row.deallocate() }
        // Rows, cycle by cycle: new row a = old row perm[a].
        var done = [Bool](repeating: false, count: k)
        for start in 0..<k where !done[start] {
            row.update(from: h + start * k, count: k)
            var a = start
            while true {
                done[a] = true
                let src = perm[a]
                if src == start {
                    (h + a * k).update(from: row, count: k)
                    break
                }
                (h + a * k).update(from: h + src * k, count: k)
                a = src
            }
        }
        // Columns, row by row.
        for i in 0..<k {
            let r = h + i * k
            row.update(from: r, count: k)
            for b in 0..<k { r[b] = row[perm[b]] }
        }
    }

    /// Damps the symmetric [k, k] matrix and overwrites it with U, the upper Cholesky factor of its inverse
    /// (row-major upper triangle). Retries with a doubled damping when a factorization fails.
    /// - Returns: the damping fraction used and the number of retries.
    static func factorize(_ h: UnsafeMutablePointer<Float>, k: Int, diagonal: [Float], mean: Double, settings: Settings,
                          lapack: LAPACK) throws(GPTQError) -> (Float, Int) {
        // Work on J·H·J (the buffer reversed): its lower Cholesky factor L gives U = J·L⁻¹·J.
        reverse(h, count: k * k)
        var fraction = settings.dampening
        var retry = 0
        while true {
            if retry > 0 {
                // LAPACK wrote the row-major lower triangle only: restore it from the upper one.
                for i in 0..<k { for j in 0..<i { h[i * k + j] = h[j * k + i] } }
            }
            let damp = Float(Double(fraction) * mean)
            for i in 0..<k { h[i * k + i] = diagonal[k - 1 - i] + damp }
            // Column-major 'U' is row-major lower: potrf gives the row-major lower L with J·H·J = L·Lᵀ, trtri
            // inverts it in place.
            if lapack.choleskyLower(h, k: k), lapack.invertLower(h, k: k), lowerIsFinite(h, k: k) { break }
            guard retry < settings.maxRetries else { throw .notPositiveDefinite(retries: retry, dampening: fraction) }
            fraction = max(2 * fraction, 0.01)
            retry += 1
        }
        reverse(h, count: k * k)
        return (fraction, retry)
    }

    /// Whether the row-major lower triangle (with the diagonal) holds only finite numbers and a positive diagonal.
    static func lowerIsFinite(_ h: UnsafePointer<Float>, k: Int) -> Bool {
        for i in 0..<k {
            if firstNonFinite(h + i * k, count: i + 1) != nil || !(h[i * k + i] > 0) { return false }
        }
        return true
    }

    /// Reverses `count` floats in place.
    static func reverse(_ x: UnsafeMutablePointer<Float>, count: Int) {
        var buffer = UnsafeMutableBufferPointer(start: x, count: count)
        buffer.reverse()
    }

    /// The index of the first NaN or infinity among `count` floats, or `nil`.
    static func firstNonFinite(_ x: UnsafePointer<Float>, count: Int) -> Int? {
        var i = 0
        let raw = UnsafeRawPointer(x)
        let zero = SIMD8<Float>(repeating: 0)
        while i + 8 <= count {
            let v = raw.loadUnaligned(fromByteOffset: 4 * i, as: SIMD8<Float>.self)
            if any(v * zero .!= zero) { break }
            i += 8
        }
        while i < count {
            if !x[i].isFinite { return i }
            i += 1
        }
        return nil
    }
}

/// The LAPACK routines of the loaded OpenBLAS that GPTQ uses.
struct LAPACK: @unchecked Sendable {
    // Fortran interfaces: (uplo, n, a, lda, info) and (uplo, diag, n, a, lda, info), plus the hidden lengths
    // of the character arguments (ignored by OpenBLAS's own C implementations).
    typealias Potrf = @convention(c) (UnsafePointer<CChar>, UnsafePointer<Int32>, UnsafeMutablePointer<Float>,
                                      UnsafePointer<Int32>, UnsafeMutablePointer<Int32>, Int) -> Void
    typealias Trtri = @convention(c) (UnsafePointer<CChar>, UnsafePointer<CChar>, UnsafePointer<Int32>, UnsafeMutablePointer<Float>,
                                      UnsafePointer<Int32>, UnsafeMutablePointer<Int32>, Int, Int) -> Void
    let potrf: Potrf
    let trtri: Trtri

    static func load() throws(BLASError) -> LAPACK {
        try BLAS.load()
        guard let p = BLAS.symbol("spotrf_"), let t = BLAS.symbol("strtri_") else {
            throw .unavailable("the loaded OpenBLAS has no LAPACK (spotrf_, strtri_)")
        }
        return LAPACK(potrf: unsafeBitCast(p, to: Potrf.self), trtri: unsafeBitCast(t, to: Trtri.self))
    }

    /// Cholesky factorization of the row-major symmetric [k, k] matrix (lower triangle read): its row-major
    /// lower triangle becomes L with A = L·Lᵀ. `false` when A is not positive definite.
    func choleskyLower(_ a: UnsafeMutablePointer<Float>, k: Int) -> Bool {
        var n = Int32(k), info: Int32 = 0
        "U".withCString { uplo in potrf(uplo, &n, a, &n, &info, 1) }
        return info == 0
    }

    /// Inverts the row-major lower triangular [k, k] matrix in place. `false` when it is singular.
    func invertLower(_ a: UnsafeMutablePointer<Float>, k: Int) -> Bool {
        var n = Int32(k), info: Int32 = 0
        "U".withCString { uplo in "N".withCString { diag in trtri(uplo, diag, &n, a, &n, &info, 1, 1) } }
        return info == 0
    }
}

/// Why a weight cannot be quantized with GPTQ.
public enum GPTQError: QKitError, Equatable {
    /// The weight's shape cannot be used with the scheme.
    case invalidShape(String)
    /// The scheme is not a valid combination.
    case invalidScheme(String)
    /// A setting is out of range.
    case invalidSettings(String)
    /// A NaN or infinity in the weight or the Hessian (upper triangle).
    case nonFinite(matrix: String, row: Int, column: Int)
    /// A negative diagonal entry: not a Hessian of the form Σ xᵀx.
    case negativeDiagonal(column: Int, value: Float)
    /// The damped Hessian could not be factorized even with the largest damping of the schedule.
    case notPositiveDefinite(retries: Int, dampening: Float)
    /// OpenBLAS or its LAPACK routines are missing.
    case unavailable(String)

    public var exitStatus: ExitStatus {
        switch self {
        case .invalidShape, .invalidScheme, .invalidSettings: .usage
        case .nonFinite, .negativeDiagonal, .notPositiveDefinite: .dataError
        case .unavailable: .unavailable
        }
    }

    public var description: String {
        switch self {
        case .invalidShape(let m), .invalidScheme(let m), .invalidSettings(let m): "gptq: \(m)"
        case .nonFinite(let m, let r, let c): "gptq: the \(m) has a NaN or infinity at [\(r), \(c)]"
        case .negativeDiagonal(let c, let v): "gptq: the Hessian's diagonal is negative at \(c) (\(v)): not a Hessian of activations"
        case .notPositiveDefinite(let r, let d):
            "gptq: the Hessian is not positive definite even with damping \(d) × mean(diag) after \(r) retries (too few calibration tokens, or corrupt statistics)"
        case .unavailable(let m): m
        }
    }
}
