#if canImport(Glibc)
import Glibc
#endif

/// A read-only memory map of a whole file.
///
/// `-` names standard input: a redirected regular file is mapped directly; a pipe is first spooled to an
/// unlinked temporary file (so memory stays bounded whatever its size) and that file is mapped.
public final class MappedFile: @unchecked Sendable {
    /// The path as given (`-` for standard input).
    public let path: String
    /// The mapped bytes (empty for an empty file).
    public let bytes: UnsafeRawBufferPointer
    private let base: UnsafeMutableRawPointer?
    /// The open descriptor, closed with the map.
    private let descriptor: Int32

    public var count: Int { bytes.count }

    /// Maps `path` (or standard input for `-`).
    public init(path: String) throws(IOError) {
        self.path = path
        let fd: Int32
        if path == "-" {
            fd = try MappedFile.regularDescriptorForStandardInput()
        } else {
            fd = open(path, O_RDONLY | O_CLOEXEC)
            guard fd >= 0 else { throw IOError.cannotOpen(path: path, errno: errno) }
        }
        var st = stat()
        guard fstat(fd, &st) == 0 else { let e = errno; close(fd); throw IOError.readFailed(path: path, errno: e) }
        guard (st.st_mode & S_IFMT) == S_IFREG else { close(fd); throw IOError.notAFile(path: path) }
        descriptor = fd
        let size = Int(st.st_size)
        if size == 0 {
            base = nil
            bytes = UnsafeRawBufferPointer(start: nil, count: 0)
            return
        }
        guard let p = mmap(nil, size, PROT_READ, MAP_PRIVATE, fd, 0), p != MAP_FAILED else {
            let e = errno
            close(fd)
            throw IOError.mapFailed(path: path, errno: e)
        }
        base = p
        bytes = UnsafeRawBufferPointer(start: p, count: size)
    }

    /// Maps `path`, with the path attached to any error (for the format readers' initializers).
    public static func located(_ path: String) throws(LocatedError) -> MappedFile {
        do { return try MappedFile(path: path) } catch { throw LocatedError(error) }
    }

    deinit {
        if let base { munmap(base, bytes.count) }
        if descriptor != 0 { close(descriptor) }
    }

    /// Tells the kernel the range will be read sequentially soon (read-ahead).
    public func adviseSequential(_ range: Range<Int>? = nil) {
        guard let base else { return }
        let r = range ?? 0..<bytes.count
        let page = Int(sysconf(Int32(_SC_PAGESIZE)))
        let start = r.lowerBound / page * page
        madvise(base + start, r.upperBound - start, MADV_SEQUENTIAL)
        madvise(base + start, r.upperBound - start, MADV_WILLNEED)
    }

    /// Lets the kernel drop the pages of a range that has been consumed (keeps RSS bounded).
    public func release(_ range: Range<Int>) {
        guard let base, !range.isEmpty else { return }
        let page = Int(sysconf(Int32(_SC_PAGESIZE)))
        let start = (range.lowerBound + page - 1) / page * page
        let end = range.upperBound / page * page
        if end > start { madvise(base + start, end - start, MADV_DONTNEED) }
    }

    /// A descriptor of a regular file holding standard input: fd 0 itself when it is one, otherwise an
    /// unlinked temporary file that the pipe is copied into.
    private static func regularDescriptorForStandardInput() throws(IOError) -> Int32 {
        var st = stat()
        if fstat(0, &st) == 0, (st.st_mode & S_IFMT) == S_IFREG { return 0 }
        let dir = String(cString: getenv("TMPDIR") ?? strdup("/tmp"))
        var template = Array((dir + "/qkit-stdin-XXXXXX").utf8CString)
        let fd = template.withUnsafeMutableBufferPointer { mkstemp($0.baseAddress!) }
        guard fd >= 0 else { throw IOError.cannotCreate(path: dir, errno: errno) }
        template.withUnsafeBufferPointer { _ = unlink($0.baseAddress!) }
        let chunk = 1 << 20
        let buf = UnsafeMutableRawPointer.allocate(byteCount: chunk, alignment: 64)
        defer { buf.deallocate() }
        while true {
            let n = Glibc.read(0, buf, chunk)
            if n == 0 { break }
            if n < 0 {
                if errno == EINTR { continue }
                let e = errno
                close(fd)
                throw IOError.readFailed(path: "-", errno: e)
            }
            var done = 0
            while done < n {
                let w = write(fd, buf + done, n - done)
                if w < 0 {
                    if errno == EINTR { continue }
                    let e = errno
                    close(fd)
                    throw IOError.writeFailed(path: dir, errno: e)
                }
                done += w
            }
        }
        return fd
    }
}
