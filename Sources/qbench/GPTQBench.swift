import Common
#if canImport(Glibc)
import Glibc
#endif

/// `qbench gptq`: GPTQSolver on the linear shapes of SmolLM2-135M and of an 8B model (W4 g64 symmetric, the scheme,
/// act-order, block 128), seconds split into the factorization (single-threaded LAPACK) and the column loop (all
/// cores, rows split by shape). The Hessian is 2/T·XᵀX of T random tokens (ssyrk, upper triangle only, as the
/// calibration engine passes it). With `--peer PYTHON`: llm-compressor's `quantize_weight` on the same shapes
/// and the same kind of data, torch on all cores, for the ratio.
func runGPTQ(_ args: [String]) throws {
    let o = try Options(args)
    let reps = try o.int("reps", 1)
    let tokens = try o.int("tokens", 512)
    let which = o.values["shapes"] ?? "smol"
    var shapes: [(String, Int, Int)] = []
    if which == "smol" || which == "all" {
        shapes += [("smol q/o", 576, 576), ("smol k/v", 192, 576), ("smol gate/up", 1536, 576), ("smol down", 576, 1536)]
    }
    if which == "8b" || which == "all" {
        shapes += [("8b q/o", 4096, 4096), ("8b gate/up", 14336, 4096), ("8b down", 4096, 14336)]
    }
    guard !shapes.isEmpty else { throw UsageError(description: "--shapes smol|8b|all") }
    try BLAS.load()
    let scheme = QuantScheme(format: .int(bits: 4), granularity: .group(64), symmetric: true)
    let settings = GPTQSolver.Settings(actOrder: true)
    var rows = [["shape [N, K]", "factorize s", "columns s", "total s", "peer s", "ratio"]]
    for (label, n, k) in shapes {
        var seed: UInt64 = 0x9E37_79B9 &+ UInt64(n * 31 + k)
        func uniform() -> Float {
            seed = seed &* 6_364_136_223_846_793_005 &+ 1_442_695_040_888_963_407
            return Float(Double(seed >> 40) / Double(1 << 24)) - 0.5
        }
        let w0 = (0..<(n * k)).map { _ in uniform() * 0.1 }
        let x = (0..<(tokens * k)).map { _ in uniform() }
        var h0 = [Float](repeating: 0, count: k * k)
        BLAS.ssyrkTransposed(n: k, k: tokens, alpha: 2 / Float(tokens), a: x, lda: k, beta: 0, c: &h0, ldc: k)
        var best = (factorize: Double.infinity, columns: Double.infinity, total: Double.infinity)
        var codes = [UInt8](repeating: 0, count: n * k)
        // Parameters has no public initializer: the solver fills uninitialized (trivial) memory.
        let parameters = UnsafeMutablePointer<GroupCodec.Parameters>.allocate(capacity: n * k / 64)
        defer { parameters.deallocate() }
        for _ in 0..<max(1, reps) {
            var w = w0, h = h0
            let t0 = now()
            let r = try w.withUnsafeMutableBufferPointer { wb in
                try h.withUnsafeMutableBufferPointer { hb in
                    try codes.withUnsafeMutableBufferPointer { cb in
                        try GPTQSolver.quantize(weight: wb.baseAddress!, n: n, k: k, hessian: hb.baseAddress!, scheme: scheme,
                                                settings: settings, codes: cb.baseAddress!, parameters: parameters)
                    }
                }
            }
            let total = now() - t0
            blackHole(w[n * k / 2])
            best = (min(best.factorize, r.factorizationSeconds), min(best.columns, r.solveSeconds), min(best.total, total))
        }
        var peer = Double.nan
        if let python = o.values["peer"], k <= (try o.int("peer-max-k", 4096)) {
            let out = try capture(python, ["-c", gptqPeerScript, "\(n)", "\(k)", "\(tokens)", "\(max(1, reps))"])
            guard let line = out.split(separator: "\n").last(where: { $0.hasPrefix("seconds ") }), let t = Double(line.dropFirst(8)) else {
                throw UsageError(description: "peer printed no timing:\n\(out)")
            }
            peer = t
        }
        rows.append(["\(label) [\(n), \(k)]", fmt(best.factorize, 3), fmt(best.columns, 3), fmt(best.total, 3),
                     fmt(peer, 3), peer.isNaN ? "-" : fmt(peer / best.total, 1) + "×"])
    }
    printTable(rows)
}

/// llm-compressor 0.14's GPTQ on one shape: the same scheme (int4 g64 symmetric, static act-order, damping 0.01,
/// block 128), min-max observer scales, best of N wall times of `quantize_weight`.
private let gptqPeerScript = """
import sys, time, torch
from compressed_tensors.quantization import QuantizationArgs
from compressed_tensors.quantization.utils.helpers import calculate_qparams
from llmcompressor.modifiers.gptq.gptq_quantize import quantize_weight
n, k, T, reps = map(int, sys.argv[1:5])
torch.set_grad_enabled(False)
g = torch.Generator().manual_seed(0)
w = (torch.rand(n, k, generator=g) - 0.5) * 0.1
x = torch.rand(T, k, generator=g) - 0.5
h = (2.0 / T) * (x.T @ x)
args = QuantizationArgs(num_bits=4, symmetric=True, strategy="group", group_size=64, actorder="static")
wg = w.view(n, k // 64, 64)
s, z = calculate_qparams(wg.amin(-1), wg.amax(-1), args)
best = float("inf")
for _ in range(reps):
    t0 = time.perf_counter()
    quantize_weight(w.clone()[None], h.clone()[None], s[None], z[None], None, args, blocksize=128, percdamp=0.01)
    best = min(best, time.perf_counter() - t0)
print(f"seconds {best}")
"""
