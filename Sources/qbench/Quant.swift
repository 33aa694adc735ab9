import Common
import Foundation

/// The data-free RTN pass of qquant against this machine's copy bandwidth and against llm-compressor.
///
/// 1. `memcpy` of 1 GiB (best of N): the copy ceiling of a streaming tool, measured in the same run.
/// 2. qquant's RTN kernel (int4, group 128, symmetric) over every decoder linear of one shard of MODEL, its
///    pages warm, output bytes handed to a null sink: GB/s of input read, as a fraction of (1); and the median
///    of each run's fraction of a two-thread `memcpy` measured just before it (the VM's speed drifts).
/// 3. With `--smollm DIR --peer PYTHON`: W4 g64 symmetric RTN of SmolLM2 — qquant's kernel over the mapped
///    weights against llm-compressor's `oneshot` (QuantizationModifier, W4A16 g64, no calibration data) in
///    the same process state (model loaded), and whole processes: `qquant … -o DIR` against python loading,
///    quantizing and saving (`save_pretrained(save_compressed=True)`).
func runQuant(_ args: [String]) throws {
    var rest = args
    let model = rest.first.map { $0.hasPrefix("--") ? "/tmp/synth8b" : rest.removeFirst() } ?? "/tmp/synth8b"
    let o = try Options(rest)
    let reps = try o.int("reps", 2)
    let shard = try o.int("shard", 1)

    let probe = CopyProbe()
    let (copyRate, copyRate2) = (probe.best(threads: 1, reps: reps + 1), probe.best(threads: 2, reps: reps + 1))

    let ck = try Checkpoint(path: model)
    let recipe = try QuantRecipe(defaultScheme: QuantScheme(format: .int(bits: 4), granularity: .group(128), symmetric: true))
    let (rate, bytes, count, busy, adjacent) = try kernelRate(ck, recipe: recipe, file: min(shard, ck.files.count - 1), reps: reps, probe: probe)
    var rows = [["what", "GB/s", "of memcpy, 1 / 2 threads", "of adjacent 2-thread memcpy", "cores busy"],
                ["memcpy 1 GiB, 1 thread / 2 threads", fmt(copyRate) + " / " + fmt(copyRate2), "", "", ""],
                ["qquant RTN int4 g128 kernel, \(count) linears, \(fmt(Double(bytes) / 1e9)) GB warm", fmt(rate), fractions(rate, copyRate, copyRate2),
                 medianFraction(adjacent), fmt(busy) + " of \(Threads.count)"]]
    printTable(rows)

    guard let smol = o.values["smollm"], let python = o.values["peer"] else { return }
    let smolCk = try Checkpoint(path: smol)
    let g64 = try QuantRecipe(defaultScheme: QuantScheme(format: .int(bits: 4), granularity: .group(64), symmetric: true))
    let (smolRate, smolBytes, _, _, _) = try kernelRate(smolCk, recipe: g64, file: nil, reps: reps + 1)
    let ourKernel = Double(smolBytes) / 1e9 / smolRate

    let scratch = NSTemporaryDirectory() + "qbench-quant-\(getpid())"
    defer { try? FileManager.default.removeItem(atPath: scratch) }
    let qquant = URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent().appendingPathComponent("qquant").path
    var ourProcess = Double.infinity
    for _ in 0..<max(1, reps) {
        let t0 = now()
        try capture(qquant, [smol, "--group", "64", "-q", "-o", scratch + "/qkit"])
        ourProcess = min(ourProcess, now() - t0)
    }
    let script = scratch + "/llmc.py"
    try peerScript.write(toFile: script, atomically: true, encoding: .utf8)
    var peer = (oneshot: Double.infinity, total: Double.infinity)
    for _ in 0..<max(1, reps) {
        let t0 = now()
        let out = try capture(python, [script, smol, scratch + "/llmc"])
        let total = now() - t0
        guard let line = out.split(separator: "\n").last(where: { $0.hasPrefix("oneshot ") }), let t = Double(line.dropFirst(8)) else {
            throw UsageError(description: "peer printed no timing:\n\(out)")
        }
        peer = (min(peer.oneshot, t), min(peer.total, total))
    }
    rows = [["SmolLM2-135M W4 g64 sym RTN", "qquant s", "llm-compressor s", "ratio"],
            ["quantization only (weights in memory)", fmt(ourKernel, 3), fmt(peer.oneshot, 3), fmt(peer.oneshot / ourKernel, 1) + "×"],
            ["whole process (load, quantize, save)", fmt(ourProcess, 3), fmt(peer.total, 3), fmt(peer.total / ourProcess, 1) + "×"]]
    print("")
    printTable(rows)
}

/// Runs qquant's per-tensor pass over the quantizable tensors of one file of `ck` (or all) with a null sink,
/// after reading them once so that their pages are in memory; best of `reps`. `busy`: CPU seconds over wall
/// seconds of all the runs (how many cores the pass kept busy on average); `adjacent`, with a `probe`: each
/// run's rate as a fraction of a two-thread `memcpy` measured just before it.
private func kernelRate(_ ck: Checkpoint, recipe: QuantRecipe, file: Int?, reps: Int,
                        probe: CopyProbe? = nil) throws -> (rate: Double, bytes: Int, count: Int, busy: Double, adjacent: [Double]) {
    let tensors = ck.tensors.filter { (file == nil || $0.fileIndex == file) && recipe.scheme(for: $0.name, shape: $0.shape) != nil }
    guard !tensors.isEmpty else { throw UsageError(description: "\(ck.path): no decoder linear weights to quantize") }
    let bytes = tensors.reduce(0) { $0 + $1.byteCount }
    touchPages(ck, tensors)
    let options = QuantizeOptions(recipe: recipe)
    var written = 0
    var (best, wall, cpu) = (Double.infinity, 0.0, 0.0)
    var adjacent: [Double] = []
    for _ in 0..<max(1, reps) {
        let copy2 = probe?.rate(threads: 2)
        let (t0, c0) = (now(), cpuSeconds())
        for t in tensors {
            try QKitQuantizer.quantizeTensor(t, of: ck, scheme: recipe.scheme(for: t.name, shape: t.shape)!, options: options,
                                             sink: { written &+= $0.count })
        }
        let (t, c) = (now() - t0, cpuSeconds() - c0)
        (best, wall, cpu) = (min(best, t), wall + t, cpu + c)
        if let copy2 { adjacent.append(Double(bytes) / t / 1e9 / copy2) }
    }
    blackHole(written)
    return (Double(bytes) / best / 1e9, bytes, tensors.count, cpu / wall, adjacent)
}

/// llm-compressor's data-free W4A16 g64 RTN (the same scheme as `qquant --group 64`): load, oneshot (timed on
/// its own), save compressed.
private let peerScript = """
import sys, time, torch
from transformers import AutoModelForCausalLM
from llmcompressor import oneshot
from llmcompressor.modifiers.quantization import QuantizationModifier
from compressed_tensors.quantization import QuantizationArgs, QuantizationScheme
model = AutoModelForCausalLM.from_pretrained(sys.argv[1], dtype=torch.float32)
scheme = QuantizationScheme(targets=["Linear"], weights=QuantizationArgs(num_bits=4, type="int", symmetric=True, strategy="group", group_size=64))
t0 = time.perf_counter()
oneshot(model=model, recipe=QuantizationModifier(config_groups={"group_0": scheme}, ignore=["lm_head"]))
t = time.perf_counter() - t0
model.save_pretrained(sys.argv[2], save_compressed=True)
print(f"oneshot {t}")
"""
