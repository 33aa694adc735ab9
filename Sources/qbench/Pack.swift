import Common
import Foundation

/// `qbench pack QKIT_MODEL`: qpack's per-linear work (read the qkit tensors of a linear, repack them into the
/// layout) on the linears of one warm shard, output bytes handed to a null sink, for every `PackLayout` that
/// takes the checkpoint's scheme; GB/s of qkit input read, as a fraction of a same-run `memcpy` of 1 GiB (the
/// bests), and the median of each run's fraction of a two-thread `memcpy` taken just before it.
/// Writing the files is left out: on this VM, filling new page-cache pages costs more than all of the packing
/// (`qpack` spends most of its time in the kernel's copy into the page cache).
func runPack(_ args: [String]) throws {
    guard let model = args.first, !model.hasPrefix("--") else {
        throw UsageError(description: "usage: qbench pack QKIT_MODEL [--shard 0] [--reps 2] [--layouts vllm-awq,vllm-gptq,...]")
    }
    let o = try Options(Array(args.dropFirst()))
    let reps = try o.int("reps", 2)
    let shard = try o.int("shard", 0)
    let names = (o.values["layouts"] ?? "vllm-awq,vllm-gptq,compressed-tensors,tinychat,lightllm").split(separator: ",").map(String.init)

    let probe = CopyProbe()
    let (copyRate, copyRate2) = (probe.best(threads: 1, reps: reps + 1), probe.best(threads: 2, reps: reps + 1))
    AllocatorTuning.keepFreedBlocks()  // as qpack does
    let ck = try Checkpoint(path: model)
    let source = try PackSource(ck)
    let file = min(shard, ck.files.count - 1)
    let plans = source.linears.filter { ck[$0.prefix + ".weight_q"]!.fileIndex == file }
    guard !plans.isEmpty else { throw UsageError(description: "\(model): no quantized linear in shard \(file)") }
    let parts = plans.flatMap { p in PackSource.parts.compactMap { ck[p.prefix + "." + $0] } }
    let bytes = parts.reduce(0) { $0 + $1.byteCount }

    var rows = [["layout", "GB/s", "of memcpy, 1 / 2 threads", "of adjacent 2-thread memcpy", "out GB"],
                ["memcpy 1 GiB, 1 thread / 2 threads", fmt(copyRate) + " / " + fmt(copyRate2), "", "", ""]]
    for name in names {
        let asymmetric = plans.contains { !$0.scheme.symmetric }
        guard let base = Packer.layout(named: name, gptqV2: name == "vllm-gptq" && asymmetric) else {
            throw UsageError(description: "unknown layout \(name)")
        }
        let layout = base.adapted(to: ck.config)
        do { try layout.check(plans, source: model) } catch {
            rows.append([name, "refused: \(error)", "", "", ""])
            continue
        }
        var written = 0
        var seconds = Double.infinity
        var adjacent: [Double] = []
        // One pass untimed first: on this VM the first touches of memory new to the guest (the output buffers)
        // cost up to 5× a pass, and a layout run first would carry them.
        touchPages(ck, parts)
        for p in plans { try layout.pack(try source.linear(p)) { _ in } }
        for _ in 0...reps {
            touchPages(ck, parts)  // each time: the source lets the pages go as it reads; best of the packing times
            let copy2 = probe.rate(threads: 2)
            written = 0
            let t0 = now()
            for p in plans { try layout.pack(try source.linear(p)) { written &+= $0.count } }
            let t = now() - t0
            seconds = min(seconds, t)
            adjacent.append(Double(bytes) / t / 1e9 / copy2)
        }
        let rate = Double(bytes) / seconds / 1e9
        rows.append([name + (name == "vllm-gptq" && asymmetric ? " --gptq-v2" : ""), fmt(rate), fractions(rate, copyRate, copyRate2),
                     medianFraction(adjacent), fmt(Double(written) / 1e9)])
    }
    print("\(plans.count) linears of shard \(file), \(fmt(Double(bytes) / 1e9)) GB of qkit tensors (\(plans[0].scheme))")
    printTable(rows)
}

/// Two 1 GiB buffers faulted in once, so that the copy ceiling can be measured right before each run of a
/// benchmark: on this VM both move together by up to 2× within a minute, and a fraction taken from adjacent
/// measurements is steadier than one of two bests taken far apart.
final class CopyProbe {
    private let size = 1 << 30
    private let a: UnsafeMutableRawPointer, b: UnsafeMutableRawPointer

    init() {
        a = UnsafeMutableRawPointer.allocate(byteCount: size, alignment: 64)
        b = UnsafeMutableRawPointer.allocate(byteCount: size, alignment: 64)
        memset(a, 1, size)
        memset(b, 2, size)
    }

    deinit { a.deallocate(); b.deallocate() }

    /// GB/s of one `memcpy` of 1 GiB, split between `threads` threads.
    func rate(threads: Int) -> Double {
        nonisolated(unsafe) let (src, dst) = (a, b)
        let per = size / threads
        let t0 = now()
        parallelFor(threads) { memcpy(dst + $0 * per, src + $0 * per, per) }
        let t = now() - t0
        blackHole(dst)
        return Double(per * threads) / t / 1e9
    }

    /// The best `rate(threads:)` of `reps`.
    func best(threads: Int, reps: Int) -> Double {
        (0..<max(1, reps)).map { _ in rate(threads: threads) }.max()!
    }
}

/// The median of `fractions` with their range, as "m% (lo–hi%)".
func medianFraction(_ fractions: [Double]) -> String {
    let f = fractions.sorted()
    let m = f.count % 2 == 1 ? f[f.count / 2] : (f[f.count / 2 - 1] + f[f.count / 2]) / 2
    return fmt(100 * m, 0) + "% (" + fmt(100 * f.first!, 0) + "–" + fmt(100 * f.last!, 0) + "%)"
}
