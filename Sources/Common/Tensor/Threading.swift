import CKernels
#if canImport(Glibc)
import Glibc
#endif

/// A mutual-exclusion lock (pthread mutex) for short critical sections.
public final class Lock: @unchecked Sendable {
    private let mutex: UnsafeMutablePointer<pthread_mutex_t>

    public init() {
        mutex = .allocate(capacity: 1)
        pthread_mutex_init(mutex, nil)
    }

    deinit {
        pthread_mutex_destroy(mutex)
        mutex.deallocate()
    }

    /// Runs `body` while holding the lock.
    public func withLock<T>(_ body: () throws -> T) rethrows -> T {
        pthread_mutex_lock(mutex)
        defer { pthread_mutex_unlock(mutex) }
        return try body()
    }
}

import Dispatch

/// How many threads the parallel loops use.
public enum Threads {
    /// The online cores, or the positive integer in the environment variable `QKIT_THREADS` (1 runs every
    /// parallel loop inline: the tests prove results do not depend on it).
    public static let count: Int = {
        if let v = getenv("QKIT_THREADS"), let n = Int(String(cString: v)), n > 0 { return n }
        return max(1, Int(sysconf(Int32(_SC_NPROCESSORS_ONLN))))
    }()
}

/// Runs `body(i)` for i in 0..<n on all cores and waits. `body` may capture mutable state; it must
/// touch only what index i owns (or guard shared state with a `Lock`).
public func parallelFor(_ n: Int, _ body: (Int) -> Void) {
    guard n > 0 else { return }
    if n == 1 || Threads.count == 1 {
        for i in 0..<n { body(i) }
        return
    }
    withoutActuallyEscaping(body) { b in
        nonisolated(unsafe) let b = b
        DispatchQueue.concurrentPerform(iterations: n) { b($0) }
    }
}

/// Like `parallelFor`, but `body` may throw: the error of the lowest index is rethrown after all finish.
public func parallelFor(_ n: Int, throwing body: (Int) throws -> Void) throws {
    let lock = Lock()
    var failure: (index: Int, error: any Error)?
    parallelFor(n) { i in
        do { try body(i) } catch {
            lock.withLock { if failure == nil || failure!.index > i { failure = (i, error) } }
        }
    }
    if let failure { throw failure.error }
}

/// Reusable scratch buffers of one size, shared by the workers of a parallel loop: each is touched once
/// and then recycled, so a streaming pass allocates (and faults in) only a few of them.
public final class ScratchPool: @unchecked Sendable {
    public let byteCount: Int
    private var free: [UnsafeMutableRawPointer] = []
    private var all: [UnsafeMutableRawPointer] = []
    private let lock = Lock()

    public init(byteCount: Int) { self.byteCount = byteCount }

    deinit { for p in all { p.deallocate() } }

    /// Runs `body` with a buffer of `byteCount` bytes, returned to the pool afterwards.
    public func withBuffer<T>(_ body: (UnsafeMutableRawPointer) throws -> T) rethrows -> T {
        let p = lock.withLock { () -> UnsafeMutableRawPointer in
            if let p = free.popLast() { return p }
            let p = UnsafeMutableRawPointer.allocate(byteCount: byteCount, alignment: 64)
            all.append(p)
            return p
        }
        defer { lock.withLock { free.append(p) } }
        return try body(p)
    }
}

/// Process-wide allocator settings for tools that allocate and free the same large buffers over and over.
public enum AllocatorTuning {
    /// Keeps freed large blocks in the heap instead of returning them to the kernel: glibc otherwise maps every
    /// block above 32 MB fresh and unmaps it on free, so each one is faulted in and zeroed page by page again
    /// (on this project's VM, first touches cost more than all of qpack's repacking). The peak resident size
    /// is unchanged; it is simply not given back between linears.
    public static func keepFreedBlocks() {
        qkit_keep_freed_blocks()
    }
}
