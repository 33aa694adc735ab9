import Common
import Foundation

/// `qbench convert`: GB/s of input for the hot dtype conversions in `Conversion`, one thread, best of N,
/// on a 1 GiB source (by default), and the same conversions in numpy (and torch, when importable) run by
/// the peer Python given with `--peer`, in the same invocation. Ratios are ours / peer.
func runConvert(_ args: [String]) throws {
    let o = try Options(args)
    let mib = try o.int("size-mib", 1024)
    let reps = try o.int("reps", 3)
    let bytes16 = mib << 20                 // the 16-bit side is `mib` MiB
    let n = bytes16 / 2
    print("convert: \(n) elements (\(mib) MiB of 16-bit, \(2 * mib) MiB of f32), best of \(reps), 1 thread")

    let f32 = UnsafeMutableBufferPointer<Float>.allocate(capacity: n)
    let h16 = UnsafeMutableRawBufferPointer.allocate(byteCount: bytes16, alignment: 64)
    defer { f32.deallocate(); h16.deallocate() }
    // Fill with values of a weight-like range (and touch every page before timing).
    var state: UInt64 = 0x9E37_79B9_7F4A_7C15
    for i in 0..<n {
        state = state &* 6364136223846793005 &+ 1442695040888963407
        f32[i] = Float(Int32(truncatingIfNeeded: state >> 32)) * 0x1p-36
    }
    Conversion.encode(UnsafeBufferPointer(f32), as: .bf16, into: h16)

    var rows: [[String]] = [["conversion", "qkit GB/s", "ms"]]
    var ours: [String: Double] = [:]
    var inputOf: [String: Int] = [:]
    func measure(_ label: String, inputBytes: Int, _ body: () -> Void) {
        inputOf[label] = inputBytes
        body()   // warm-up: page faults, lazy tables
        let t = bestOf(reps, body)
        let gbs = Double(inputBytes) / t / 1e9
        ours[label] = gbs
        rows.append([label, fmt(gbs), fmt(t * 1000, 1)])
    }
    let src = UnsafeRawBufferPointer(h16)
    measure("bf16->f32", inputBytes: bytes16) { Conversion.decode(.bf16, src, into: f32); blackHole(f32[n / 3]) }
    // The same split over both cores (what a streaming reader would do with two workers).
    measure("bf16->f32 2thr", inputBytes: bytes16) {
        parallelFor(2) { h in
            let lo = h * n / 2, hi = (h + 1) * n / 2
            Conversion.decode(.bf16, UnsafeRawBufferPointer(rebasing: src[2 * lo..<2 * hi]), into: UnsafeMutableBufferPointer(rebasing: f32[lo..<hi]))
        }
        blackHole(f32[n / 3])
    }
    Conversion.encode(UnsafeBufferPointer(f32), as: .f16, into: h16)
    measure("f16->f32", inputBytes: bytes16) { Conversion.decode(.f16, src, into: f32); blackHole(f32[n / 3]) }
    measure("f32->bf16", inputBytes: 2 * bytes16) { Conversion.encode(UnsafeBufferPointer(f32), as: .bf16, into: h16); blackHole(h16[7]) }
    measure("f32->f16", inputBytes: 2 * bytes16) { Conversion.encode(UnsafeBufferPointer(f32), as: .f16, into: h16); blackHole(h16[7]) }
    // The narrow formats, on a 1/8 slice (they are not memory-bound).
    let m = n / 8
    let slice = UnsafeBufferPointer(rebasing: f32[0..<m])
    let f8 = UnsafeMutableRawBufferPointer(rebasing: h16[0..<m])
    measure("f32->f8_e4m3", inputBytes: 4 * m) { Conversion.encode(slice, as: .f8E4M3, into: f8); blackHole(f8[7]) }
    measure("f8_e4m3->f32", inputBytes: m) {
        Conversion.decode(.f8E4M3, UnsafeRawBufferPointer(f8), into: UnsafeMutableBufferPointer(rebasing: f32[0..<m])); blackHole(f32[5])
    }
    measure("f32->f4", inputBytes: 4 * m) { Conversion.encode(slice, as: .f4, into: f8); blackHole(f8[7]) }
    measure("f4->f32", inputBytes: m / 2) {
        Conversion.decode(.f4, UnsafeRawBufferPointer(rebasing: f8[0..<m / 2]), into: UnsafeMutableBufferPointer(rebasing: f32[0..<m])); blackHole(f32[5])
    }

    guard let python = o.values["peer"] else {
        printTable(rows)
        return
    }
    let peer = try runPeerConvert(python: python, mib: mib, reps: reps)
    var names = Array(Set(peer.keys.map { $0.split(separator: " ")[0] }))
    names.sort()
    var header = ["conversion", "qkit GB/s"]
    for lib in names { header += ["\(lib) GB/s", "qkit/\(lib)"] }
    var table: [[String]] = [header]
    for r in rows.dropFirst() {
        var line = [r[0], r[1]]
        for lib in names {
            if let t = peer["\(lib) \(r[0])"] {
                let g = Double(inputOf[r[0]]!) / t / 1e9
                line += [fmt(g), fmt(ours[r[0]]! / g) + "x"]
            } else {
                line += ["-", "-"]
            }
        }
        table.append(line)
    }
    printTable(table)
}

/// Runs the same conversions in numpy (and torch if present) in the peer Python; returns "lib case" → seconds.
func runPeerConvert(python: String, mib: Int, reps: Int) throws -> [String: Double] {
    let script = """
    import sys, time
    import numpy as np
    mib, reps = int(sys.argv[1]), int(sys.argv[2])
    n = (mib << 20) // 2
    rng = np.random.default_rng(0)
    f32 = (rng.standard_normal(n, dtype=np.float32) * 0.02).astype(np.float32)
    h16 = np.empty(n, dtype=np.uint16)
    def best(f):
        f()
        t = 1e9
        for _ in range(reps):
            t0 = time.perf_counter(); f(); t = min(t, time.perf_counter() - t0)
        return t
    out32 = np.empty(n, dtype=np.float32)
    out32u = out32.view(np.uint32)
    bf = (f32.view(np.uint32) >> 16).astype(np.uint16)
    print("numpy bf16->f32", best(lambda: np.left_shift(bf, 16, out=out32u, dtype=np.uint32)))
    f16 = f32.astype(np.float16)
    print("numpy f16->f32", best(lambda: np.copyto(out32, f16)))
    def np_to_bf16():
        u = f32.view(np.uint32)
        r = (u + np.uint32(0x7FFF) + ((u >> 16) & np.uint32(1))) >> 16
        np.copyto(h16, r, casting="unsafe")
    print("numpy f32->bf16", best(np_to_bf16))
    out16 = np.empty(n, dtype=np.float16)
    print("numpy f32->f16", best(lambda: np.copyto(out16, f32)))
    try:
        import torch
        torch.set_num_threads(1)
        t32 = torch.from_numpy(f32)
        o32 = torch.empty(n, dtype=torch.float32)
        tb = t32.to(torch.bfloat16); th = t32.to(torch.float16)
        ob = torch.empty(n, dtype=torch.bfloat16); oh = torch.empty(n, dtype=torch.float16)
        print("torch bf16->f32", best(lambda: o32.copy_(tb)))
        print("torch f16->f32", best(lambda: o32.copy_(th)))
        print("torch f32->bf16", best(lambda: ob.copy_(t32)))
        print("torch f32->f16", best(lambda: oh.copy_(t32)))
        m = n // 8
        s = t32[:m]; o8 = torch.empty(m, dtype=torch.float8_e4m3fn)
        print("torch f32->f8_e4m3", best(lambda: o8.copy_(s)))
        print("torch f8_e4m3->f32", best(lambda: o32[:m].copy_(o8)))
    except ImportError:
        pass
    """
    let out = try capture(python, ["-c", script, String(mib), String(reps)],
                          environment: ["OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"], showErrors: true)
    var result: [String: Double] = [:]
    for line in out.split(separator: "\n") {
        let parts = line.split(separator: " ")
        if parts.count == 3, let t = Double(parts[2]) {
            result["\(parts[0]) \(parts[1])"] = t   // the f8 cases run on the same 1/8 slice as ours
        }
    }
    return result
}
