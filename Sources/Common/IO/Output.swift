#if canImport(Glibc)
import Glibc
#endif

/// A file being written: under a temporary name beside the target until `commit()` renames it into
/// place, so a failure or a kill never leaves a partial file under the target's name. `-` writes to
/// standard output (no rename).
///
/// Writes are buffered and reach the file in pieces that end on 2 MiB file offsets, 2 MiB or more at a time.
/// The page cache then holds the file in 2 MiB folios, which the next tool of a pipeline maps with one page
/// fault per 2 MiB. Measured on this project's machine (ext4, Linux 6.18): mapping a warm 2 GB file whole
/// (`MADV_POPULATE_READ`) took 1–2 ms when it had been written in 2 MiB or 8 MiB pieces, about 190 ms in
/// 1 MiB pieces and 146 ms in 4 KiB ones; the 4.9 GB shard qsynth writes maps in 4 ms.
public final class AtomicFile {
    public let path: String
    private let temporaryPath: String?
    private var fd: Int32
    private var buffer: UnsafeMutableRawPointer
    private var buffered = 0
    /// Bytes handed to write(2) so far (the buffer's file offset).
    private var flushedBytes = 0
    private static let bufferSize = 4 << 20
    /// The file offsets at which buffered writes end (a huge page).
    private static let writeAlignment = 2 << 20
    private var committed = false
    /// Whether `commit()` flushes the file to the disk (fsync) before renaming it.
    private let durable: Bool
    /// Bytes written so far.
    public private(set) var bytesWritten = 0

    /// Creates the temporary file for `path` (or takes standard output for `-`). `durable: false` skips the
    /// fsync of `commit()`: the rename is still atomic for other processes and survives the writer being
    /// killed, not a power loss (for scratch state whose readers verify it, like a calibration's progress).
    public init(path: String, durable: Bool = true) throws(IOError) {
        self.path = path
        self.durable = durable
        buffer = .allocate(byteCount: Self.bufferSize, alignment: 64)
        if path == "-" {
            fd = 1
            temporaryPath = nil
            return
        }
        let slash = path.lastIndex(of: "/")
        let dir = slash.map { String(path[..<$0]) } ?? "."
        let base = slash.map { String(path[path.index(after: $0)...]) } ?? path
        var template = Array("\(dir.isEmpty ? "/" : dir)/.\(base).qkit-XXXXXX".utf8CString)
        let fd = template.withUnsafeMutableBufferPointer { mkstemp($0.baseAddress!) }
        guard fd >= 0 else {
            buffer.deallocate()
            throw IOError.cannotCreate(path: path, errno: errno)
        }
        fchmod(fd, 0o644)
        self.fd = fd
        temporaryPath = template.withUnsafeBufferPointer { String(cString: $0.baseAddress!) }
    }

    deinit {
        if !committed, let temporaryPath {
            close(fd)
            unlink(temporaryPath)
        }
        buffer.deallocate()
    }

    /// Appends bytes.
    public func write(_ bytes: UnsafeRawBufferPointer) throws(IOError) {
        guard var next = bytes.baseAddress, bytes.count > 0 else { return }
        bytesWritten += bytes.count
        var left = bytes.count
        while left > 0 {
            if buffered == 0, left >= Self.writeAlignment {
                let direct = left / Self.writeAlignment * Self.writeAlignment
                try writeAll(UnsafeRawBufferPointer(start: next, count: direct))
                flushedBytes += direct
                next += direct
                left -= direct
                continue
            }
            // Every piece but the last (from commit) is a multiple of the alignment, so the buffer starts on
            // an aligned file offset and a full one ends on one.
            let n = min(Self.bufferSize - buffered, left)
            (buffer + buffered).copyMemory(from: next, byteCount: n)
            buffered += n
            next += n
            left -= n
            if buffered == Self.bufferSize { try flush() }
        }
    }

    /// Appends bytes.
    public func write(_ bytes: [UInt8]) throws(IOError) {
        var failure: IOError?
        bytes.withUnsafeBytes { raw in
            do throws(IOError) { try write(raw) } catch { failure = error }
        }
        if let failure { throw failure }
    }

    /// Appends the UTF-8 of a string.
    public func write(_ text: String) throws(IOError) {
        var t = text
        var failure: IOError?
        t.withUTF8 { raw in
            do throws(IOError) { try write(UnsafeRawBufferPointer(raw)) } catch { failure = error }
        }
        if let failure { throw failure }
    }

    private func flush() throws(IOError) {
        guard buffered > 0 else { return }
        try writeAll(UnsafeRawBufferPointer(start: buffer, count: buffered))
        flushedBytes += buffered
        buffered = 0
    }

    /// Sees each piece handed to write(2) as (file offset, byte count); for tests.
    var writeObserver: ((Int, Int) -> Void)?

    private func writeAll(_ bytes: UnsafeRawBufferPointer) throws(IOError) {
        writeObserver?(flushedBytes, bytes.count)
        var done = 0
        while done < bytes.count {
            let n = Glibc.write(fd, bytes.baseAddress! + done, bytes.count - done)
            if n < 0 {
                if errno == EINTR { continue }
                throw IOError.writeFailed(path: path, errno: errno)
            }
            done += n
        }
    }

    /// Flushes and renames the file into place (for `-`, only flushes).
    public func commit() throws(IOError) {
        try flush()
        committed = true
        guard let temporaryPath else { return }
        if durable, fsync(fd) != 0, errno != EINVAL {
            let e = errno
            close(fd)
            unlink(temporaryPath)
            throw IOError.writeFailed(path: path, errno: e)
        }
        close(fd)
        guard rename(temporaryPath, path) == 0 else {
            let e = errno
            unlink(temporaryPath)
            throw IOError.cannotCreate(path: path, errno: e)
        }
    }
}

/// A directory of output files made atomically: files are written into a hidden staging directory
/// beside the target and moved into place by `commit()`. Until then the target is untouched; if the
/// process dies, only the hidden staging directory (`.NAME.qkit-PID`) remains.
public final class OutputDirectory {
    public let path: String
    /// Where files are staged until `commit()`.
    public let stagingPath: String
    private var committed = false

    /// Prepares the staging directory for `path`.
    public init(path: String) throws(IOError) {
        var p = path
        while p.count > 1, p.hasSuffix("/") { p.removeLast() }
        self.path = p
        stagingPath = hiddenSibling(of: p, suffix: "qkit-\(getpid())")
        try makeDirectories(parentDirectory(of: p))
        removeTree(stagingPath)
        guard mkdir(stagingPath, 0o755) == 0 else { throw IOError.cannotCreate(path: path, errno: errno) }
    }

    deinit {
        if !committed { removeTree(stagingPath) }
    }

    /// The staging path of a file `name` inside the directory.
    public func stagedPath(_ name: String) -> String { stagingPath + "/" + name }

    /// Moves every staged file into the target directory (created if missing; existing files of the
    /// same names are replaced, others kept).
    public func commit() throws(IOError) {
        var st = stat()
        if stat(path, &st) != 0 {
            if rename(stagingPath, path) == 0 { committed = true; return }
            guard mkdir(path, 0o755) == 0 || errno == EEXIST else { throw IOError.cannotCreate(path: path, errno: errno) }
        } else if (st.st_mode & S_IFMT) != S_IFDIR {
            throw IOError.cannotCreate(path: path, errno: ENOTDIR)
        }
        for name in listDirectory(stagingPath) {
            guard rename(stagingPath + "/" + name, path + "/" + name) == 0 else {
                throw IOError.cannotCreate(path: path + "/" + name, errno: errno)
            }
        }
        rmdir(stagingPath)
        committed = true
    }
}

/// Creates a directory and its missing parents (like `mkdir -p`).
/// The directory holding `path` (`.` for a bare name, `/` at the root), trailing slashes ignored.
public func parentDirectory(of path: String) -> String {
    var p = path
    while p.count > 1, p.hasSuffix("/") { p.removeLast() }
    guard let slash = p.lastIndex(of: "/") else { return "." }
    let dir = String(p[..<slash])
    return dir.isEmpty ? "/" : dir
}

/// `DIR/.NAME.SUFFIX` for `path` = `DIR/NAME`: the hidden sibling where a tool stages or keeps work for an output
/// (`.NAME.qkit-PID` staging, `.NAME.qkit-progress`, `.NAME.qkit-rotated`).
public func hiddenSibling(of path: String, suffix: String) -> String {
    var p = path
    while p.count > 1, p.hasSuffix("/") { p.removeLast() }
    let base = p.lastIndex(of: "/").map { String(p[p.index(after: $0)...]) } ?? p
    let dir = parentDirectory(of: p)
    return (dir == "/" ? "" : dir) + "/." + base + "." + suffix
}

public func makeDirectories(_ path: String) throws(IOError) {
    if isDirectory(path) { return }
    var prefix = path.hasPrefix("/") ? "/" : ""
    for part in path.split(separator: "/") {
        prefix += (prefix.isEmpty || prefix.hasSuffix("/") ? "" : "/") + part
        if isDirectory(prefix) { continue }
        guard mkdir(prefix, 0o755) == 0 || errno == EEXIST else { throw IOError.cannotCreate(path: prefix, errno: errno) }
    }
}

/// Names in a directory (without `.` and `..`), sorted; empty when it cannot be read.
public func listDirectory(_ path: String) -> [String] {
    guard let d = opendir(path) else { return [] }
    defer { closedir(d) }
    var names: [String] = []
    while let e = readdir(d) {
        let name = withUnsafePointer(to: e.pointee.d_name) {
            $0.withMemoryRebound(to: CChar.self, capacity: 256) { String(cString: $0) }
        }
        if name != "." && name != ".." { names.append(name) }
    }
    return names.sorted()
}

/// Removes a file or a directory tree (best effort).
public func removeTree(_ path: String) {
    var st = stat()
    guard lstat(path, &st) == 0 else { return }
    if (st.st_mode & S_IFMT) == S_IFDIR {
        for name in listDirectory(path) { removeTree(path + "/" + name) }
        rmdir(path)
    } else {
        unlink(path)
    }
}

/// Whether `path` names a directory.
public func isDirectory(_ path: String) -> Bool {
    var st = stat()
    return stat(path, &st) == 0 && (st.st_mode & S_IFMT) == S_IFDIR
}

/// Whether `path` exists.
public func fileExists(_ path: String) -> Bool {
    var st = stat()
    return stat(path, &st) == 0
}

/// Reads a small whole file (config.json and the like) into memory.
public func readSmallFile(_ path: String, limit: Int = 1 << 30) throws(IOError) -> [UInt8] {
    let f = try MappedFile(path: path)
    guard f.count <= limit else { throw IOError.readFailed(path: path, errno: EFBIG) }
    return Array(f.bytes)
}

/// Writes a small whole file atomically.
public func writeSmallFile(_ path: String, _ text: String) throws(IOError) {
    let f = try AtomicFile(path: path)
    try f.write(text)
    try f.commit()
}
