import Common
import Foundation

/// `qbench pack QKIT_MODEL`: qpack's per-linear work (read the qkit tensors of a linear, repack them into the
/// layout) on the linears of one warm shard, output bytes handed to a null sink, for every `PackLayout` that
/// takes the checkpoint's scheme; GB/s of qkit input read, as a fraction of a same-run `memcpy` of 1 GiB.
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

    let (copyRate, copyRate2) = (copyBandwidth(reps: reps + 1), copyBandwidth(reps: reps + 1, threads: 2))
    AllocatorTuning.keepFreedBlocks()  // as qpack does
    let ck = try Checkpoint(path: model)
    let source = try PackSource(ck)
    let file = min(shard, ck.files.count - 1)
    let plans = source.linears.filter { ck[$0.prefix + ".weight_q"]!.fileIndex == file }
    guard !plans.isEmpty else { throw UsageError(description: "\(model): no quantized linear in shard \(file)") }
    let parts = plans.flatMap { p in PackSource.parts.compactMap { ck[p.prefix + "." + $0] } }
    let bytes = parts.reduce(0) { $0 + $1.byteCount }

    var rows = [["layout", "GB/s", "of memcpy, 1 / 2 threads", "out GB"],
                ["memcpy 1 GiB, 1 thread / 2 threads", fmt(copyRate) + " / " + fmt(copyRate2), "", ""]]
    for name in names {
        let asymmetric = plans.contains { !$0.scheme.symmetric }
        guard let base = Packer.layout(named: name, gptqV2: name == "vllm-gptq" && asymmetric) else {
            throw UsageError(description: "unknown layout \(name)")
        }
        let layout = base.adapted(to: ck.config)
        do { try layout.check(plans, source: model) } catch {
            rows.append([name, "refused: \(error)", "", ""])
            continue
        }
        var written = 0
        var seconds = Double.infinity
        for _ in 0...reps {
            touchPages(ck, parts)  // each time: the source lets the pages go as it reads; best of the packing times
            written = 0
            let t0 = now()
            for p in plans { try layout.pack(try source.linear(p)) { written &+= $0.count } }
            seconds = min(seconds, now() - t0)
        }
        let rate = Double(bytes) / seconds / 1e9
        rows.append([name + (name == "vllm-gptq" && asymmetric ? " --gptq-v2" : ""), fmt(rate), fractions(rate, copyRate, copyRate2),
                     fmt(Double(written) / 1e9)])
    }
    print("\(plans.count) linears of shard \(file), \(fmt(Double(bytes) / 1e9)) GB of qkit tensors (\(plans[0].scheme))")
    printTable(rows)
}

/// Bytes per second of `memcpy` of 1 GiB between two buffers already faulted in (best of `reps`), the copy split
/// between `threads` threads.
func copyBandwidth(reps: Int, threads: Int = 1) -> Double {
    let size = 1 << 30
    let a = UnsafeMutableRawPointer.allocate(byteCount: size, alignment: 64)
    let b = UnsafeMutableRawPointer.allocate(byteCount: size, alignment: 64)
    defer { a.deallocate(); b.deallocate() }
    memset(a, 1, size)
    memset(b, 2, size)
    nonisolated(unsafe) let (src, dst) = (a, b)
    let per = size / threads
    let copy = bestOf(reps) { parallelFor(threads) { memcpy(dst + $0 * per, src + $0 * per, per) }; blackHole(dst) }
    return Double(per * threads) / copy / 1e9
}
