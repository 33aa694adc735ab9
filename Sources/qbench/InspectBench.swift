import Common
import Foundation

/// Wall time of one run of a command (stdout and stderr to /dev/null), in seconds. Spawned with posix_spawn:
/// Foundation's Process adds tens of milliseconds per launch, more than a header-only listing takes.
private func timeCommand(_ executable: String, _ arguments: [String], environment: [String: String]? = nil) throws -> Double {
    var actions = posix_spawn_file_actions_t()
    posix_spawn_file_actions_init(&actions)
    defer { posix_spawn_file_actions_destroy(&actions) }
    posix_spawn_file_actions_addopen(&actions, 1, "/dev/null", O_WRONLY, 0)
    posix_spawn_file_actions_addopen(&actions, 2, "/dev/null", O_WRONLY, 0)
    let argv = ([executable] + arguments).map { strdup($0) } + [nil]
    defer { for p in argv { free(p) } }
    let env = (environment ?? ProcessInfo.processInfo.environment).map { strdup("\($0.key)=\($0.value)") } + [nil]
    defer { for p in env { free(p) } }
    var pid: pid_t = 0
    let t0 = now()
    let rc = posix_spawn(&pid, executable, &actions, nil, argv, env)
    guard rc == 0 else { throw UsageError(description: "cannot run \(executable): errno \(rc)") }
    var status: Int32 = 0
    while waitpid(pid, &status, 0) < 0 && errno == EINTR {}
    let t = now() - t0
    guard status == 0 else {
        throw UsageError(description: "\(executable) \(arguments.joined(separator: " ")) exited with status \(status >> 8)")
    }
    return t
}

/// Median of `reps` timings after one warm-up run.
private func median(_ reps: Int, _ body: () throws -> Double) rethrows -> Double {
    _ = try body()
    var ts: [Double] = []
    for _ in 0..<max(1, reps) { ts.append(try body()) }
    ts.sort()
    return ts[ts.count / 2]
}

/// The qinspect binary beside this one.
private func qinspectPath() -> String {
    URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent().appendingPathComponent("qinspect").path
}

/// Python that sets `files` to the safetensors files of the checkpoint named by argv[1] (file, directory, index).
private let shardFilesPrelude = """
import json, os, sys
p = sys.argv[1]
files = [p]
if os.path.isdir(p):
    idx = os.path.join(p, 'model.safetensors.index.json')
    files = [os.path.join(p, f) for f in sorted(set(json.load(open(idx))['weight_map'].values()))] if os.path.exists(idx) \\
        else [os.path.join(p, 'model.safetensors')]

"""

private let listScript = shardFilesPrelude + """
from safetensors import safe_open
rows = []
for f in files:
    with safe_open(f, 'np') as s:
        for k in s.keys():
            sl = s.get_slice(k)
            rows.append((k, sl.get_dtype(), sl.get_shape()))
for r in rows: print(*r)
"""

/// `qbench list PATH --peer PYTHON`: listing a checkpoint (header only) with `qinspect PATH` against listing it with
/// the python safetensors package (`safe_open` + `get_slice` for dtype and shape), whole processes, median of N.
func runList(_ args: [String]) throws {
    guard let path = args.first, !path.hasPrefix("--") else { throw UsageError(description: "usage: qbench list PATH [--peer PYTHON] [--reps 20]") }
    let o = try Options(Array(args.dropFirst()))
    let reps = try o.int("reps", 20)
    let ours = try median(reps) { try timeCommand(qinspectPath(), [path]) }
    var rows = [["lister", "median ms"], ["qinspect", fmt(ours * 1000, 1)]]
    if let python = o.values["peer"] {
        let script = NSTemporaryDirectory() + "qbench-list.py"
        try listScript.write(toFile: script, atomically: true, encoding: .utf8)
        let peer = try median(reps) { try timeCommand(python, [script, path]) }
        rows.append(["python safetensors", fmt(peer * 1000, 1)])
        printTable(rows)
        print("qinspect is \(fmt(peer / ours, 1))× faster (same run, \(reps) runs each, median)")
    } else {
        printTable(rows)
    }
}

private let statsScript = shardFilesPrelude + """
import struct, time
import numpy as np
total = 0
t0 = time.perf_counter()
for f in files:
    with open(f, 'rb') as fh:
        n = struct.unpack('<Q', fh.read(8))[0]
        header = json.loads(fh.read(n))
    mm = np.memmap(f, dtype=np.uint8, mode='r')
    for name, t in header.items():
        if name == '__metadata__': continue
        b, e = t['data_offsets']
        raw = mm[8 + n + b: 8 + n + e]
        total += e - b
        if t['dtype'] == 'BF16':
            x = (raw.view(np.uint16).astype(np.uint32) << 16).view(np.float32)
        elif t['dtype'] == 'F16':
            x = raw.view(np.float16).astype(np.float32)
        elif t['dtype'] == 'F32':
            x = raw.view(np.float32)
        else:
            continue
        x = x.reshape(t['shape']) if t['shape'] else x.reshape(1)
        fin = np.isfinite(x)
        nan = int(np.isnan(x).sum()); inf = int(x.size - fin.sum() - nan)
        v = x[fin] if nan + inf else x
        mean = float(v.mean(dtype=np.float64)); d = v.astype(np.float64) - mean
        m2 = float((d * d).mean()); m4 = float((d ** 4).mean())
        out = (float(v.min()), float(v.max()), mean, m2 ** 0.5, float(np.abs(v).max()), int((v == 0).sum()), nan, inf,
               m4 / (m2 * m2) - 3 if m2 > 0 else 0.0)
        if x.ndim >= 2:
            cols = np.abs(x.reshape(-1, x.shape[-1])).max(axis=0)
            out += tuple(np.argsort(-cols, kind='stable')[:3])
        print(name, *out)
print('seconds', time.perf_counter() - t0, 'bytes', total, file=sys.stderr)
"""

/// `qbench stats PATH --peer PYTHON`: `qinspect --stats PATH` against the same statistics (min, max, mean, std,
/// absmax, zeros, NaN, Inf, kurtosis, top-3 outlier channels) computed with numpy over np.memmap of the same file,
/// whole processes, in the same run; GB/s of tensor data, and the fraction of this machine's read bandwidth
/// (measured here with a SIMD read-sum over 1 GiB in memory).
func runStats(_ args: [String]) throws {
    guard let path = args.first, !path.hasPrefix("--") else { throw UsageError(description: "usage: qbench stats PATH [--peer PYTHON] [--reps 3]") }
    let o = try Options(Array(args.dropFirst()))
    let reps = try o.int("reps", 3)
    let bytes = try Checkpoint(path: path).dataBytes
    let (one, two) = (readBandwidth(), readBandwidth(threads: 2))
    let ours = try median(reps) { try timeCommand(qinspectPath(), ["--stats", path]) }
    var rows = [["tool", "median s", "GB/s", "of read bandwidth, 1 / 2 threads"]]
    rows.append(["qinspect --stats", fmt(ours, 3), fmt(Double(bytes) / ours / 1e9), fractions(Double(bytes) / ours, one, two)])
    if let python = o.values["peer"] {
        let script = NSTemporaryDirectory() + "qbench-stats.py"
        try statsScript.write(toFile: script, atomically: true, encoding: .utf8)
        var env = ProcessInfo.processInfo.environment
        env["OPENBLAS_CORETYPE"] = nil
        env["OPENBLAS_L2_SIZE"] = nil
        let peer = try median(reps) { try timeCommand(python, [script, path], environment: env) }
        rows.append(["numpy (memmap)", fmt(peer, 3), fmt(Double(bytes) / peer / 1e9), fractions(Double(bytes) / peer, one, two)])
        printTable(rows)
        print("qinspect --stats is \(fmt(peer / ours, 1))× faster than numpy on \(humanBytes(bytes)) (same run, median of \(reps))")
    } else {
        printTable(rows)
    }
    print("read bandwidth (SIMD read-sum, 1 GiB): \(fmt(one / 1e9)) GB/s one thread, \(fmt(two / 1e9)) GB/s two")
    if let huge = hugeMappedFraction(path) {
        print("page cache: \(fmt(100 * huge, 0))% of the file maps in 2 MiB folios (how fast a warm file maps depends on it)")
    }
}

/// The fraction of a regular file that maps in 2 MiB pages (`FilePmdMapped` of this process once every page of a
/// fresh map is touched), or `nil` for a directory or when the kernel does not say.
func hugeMappedFraction(_ path: String) -> Double? {
    let fd = open(path, O_RDONLY)
    guard fd >= 0 else { return nil }
    defer { close(fd) }
    var st = stat()
    guard fstat(fd, &st) == 0, (st.st_mode & S_IFMT) == S_IFREG, st.st_size > 0 else { return nil }
    let size = Int(st.st_size)
    guard let map = mmap(nil, size, PROT_READ, MAP_SHARED, fd, 0), map != MAP_FAILED else { return nil }
    defer { munmap(map, size) }
    var sum: UInt8 = 0
    for offset in stride(from: 0, to: size, by: 4096) { sum &+= map.load(fromByteOffset: offset, as: UInt8.self) }
    blackHole(sum)
    guard let rollup = try? String(contentsOfFile: "/proc/self/smaps_rollup", encoding: .utf8),
          let line = rollup.split(separator: "\n").first(where: { $0.hasPrefix("FilePmdMapped:") }),
          let kb = line.split(separator: " ").dropFirst().first.flatMap({ Double($0) }) else { return nil }
    return kb * 1024 / Double(size)
}

/// `qbench kernel`: the statistics kernel alone on 1 GiB of bf16 in memory (no file, no page cache).
func runKernel(_ args: [String]) throws {
    let o = try Options(args)
    let reps = try o.int("reps", 3)
    let n = 1 << 29
    var h = [UInt16](repeating: 0, count: n)
    var state: UInt64 = 1
    for i in 0..<n {
        state = state &* 6364136223846793005 &+ 1442695040888963407
        h[i] = UInt16(Float(Int32(truncatingIfNeeded: state >> 32)) * 0x1p-36 == 0 ? 0 : (Float(Int32(truncatingIfNeeded: state >> 32)) * 0x1p-36).bitPattern >> 16)
    }
    let t = try h.withUnsafeBytes { raw in
        try bestOf(reps) { blackHole(try StatisticsEngine.compute(data: raw, encoding: .dtype(.bf16), shape: [n / 4096, 4096])) }
    }
    print("stats kernel, bf16 [\(n / 4096), 4096] in memory: \(fmt(Double(2 * n) / t / 1e9)) GB/s (best of \(reps), all cores)")
    print("read bandwidth (SIMD read-sum, 1 GiB): \(fmt(readBandwidth() / 1e9)) GB/s one thread, \(fmt(readBandwidth(threads: 2) / 1e9)) GB/s two")
}

/// Bytes per second of a 4-accumulator SIMD read-sum over 1 GiB already in memory (best of 3), the buffer split
/// between `threads` threads.
func readBandwidth(threads: Int = 1) -> Double {
    let count = (1 << 30) / 4
    let buf = UnsafeMutableBufferPointer<Float>.allocate(capacity: count)
    defer { buf.deallocate() }
    buf.initialize(repeating: 1)
    nonisolated(unsafe) let raw = UnsafeRawPointer(buf.baseAddress!)
    let per = count / threads / 64 * 64
    let t = bestOf(3) {
        parallelFor(threads) { part in
            var a = SIMD16<Float>(), b = SIMD16<Float>(), c = SIMD16<Float>(), d = SIMD16<Float>()
            var i = part * per
            while i + 64 <= (part + 1) * per {
                a += raw.loadUnaligned(fromByteOffset: 4 * i, as: SIMD16<Float>.self)
                b += raw.loadUnaligned(fromByteOffset: 4 * i + 64, as: SIMD16<Float>.self)
                c += raw.loadUnaligned(fromByteOffset: 4 * i + 128, as: SIMD16<Float>.self)
                d += raw.loadUnaligned(fromByteOffset: 4 * i + 192, as: SIMD16<Float>.self)
                i += 64
            }
            blackHole((a + b + c + d).sum())
        }
    }
    return Double(per * threads * 4) / t
}
