import COpenBLAS

/// `qbench sgemm`: OpenBLAS cblas_sgemm GFLOP/s on the shapes the forward pass and calibration use
/// (row-major, C = A·B), best of N, all cores: the peak later throughput claims are measured against.
func runSgemm(_ args: [String]) throws {
    let o = try Options(args)
    let reps = try o.int("reps", 3)
    var rows = [["M×K×N", "ms", "GFLOP/s"]]
    for (m, k, n) in [(512, 576, 1536), (2048, 576, 49152), (512, 4096, 4096), (2048, 4096, 14336), (4096, 4096, 4096)] {
        let a = [Float](repeating: 0.5, count: m * k), b = [Float](repeating: 0.25, count: k * n)
        var c = [Float](repeating: 0, count: m * n)
        let t = bestOf(reps + 1) {
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, Int32(m), Int32(n), Int32(k), 1, a, Int32(k), b, Int32(n), 0, &c, Int32(n))
        }
        blackHole(c[m * n / 2])
        rows.append(["\(m)×\(k)×\(n)", fmt(t * 1000, 1), fmt(2 * Double(m) * Double(k) * Double(n) / t / 1e9, 1)])
    }
    printTable(rows)
}
