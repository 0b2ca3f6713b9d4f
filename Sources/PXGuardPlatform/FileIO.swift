public import CLinux
#if canImport(Glibc)
import Glibc
#endif

/// A file larger than the caller allows (not a system call failure).
struct FileTooLargeError: Error, CustomStringConvertible, Sendable {
    let path: String
    let limit: Int
    var description: String { "\(path) is larger than \(limit) bytes" }
}

/// Whole-file reads and atomic writes over `Syscall`, for configuration,
/// certificates, tokens and cgroup files (no Foundation).
public enum FileIO {
    public static func exists(_ path: String) -> Bool { access(path, F_OK) == 0 }

    /// `mkdir -p`.
    public static func makeDirectory(_ path: String) throws {
        var soFar = path.hasPrefix("/") ? "" : "."
        for part in path.split(separator: "/") {
            soFar += "/" + part
            if isDirectory(soFar) { continue }
            do {
                try Syscall.check("mkdir \(soFar)") { mkdir(soFar, 0o755) }
            } catch let error as IOError where error.errnoCode == EEXIST && isDirectory(soFar) {
                // Made by someone else in the meantime: what we wanted.
            }
        }
    }

    static func isDirectory(_ path: String) -> Bool {
        var st = stat()
        return stat(path, &st) == 0 && (st.st_mode & S_IFMT) == S_IFDIR
    }

    /// Writes to a temporary file and renames it over `path`, so readers never see
    /// a half-written file.
    public static func writeAtomically(_ path: String, _ bytes: [UInt8], mode: mode_t) throws {
        let temporary = path + ".tmp-\(getpid())"
        let fd = try Syscall.open(temporary, O_WRONLY | O_CREAT | O_TRUNC, mode: mode)
        do {
            try Syscall.check("fchmod \(temporary)") { fchmod(fd, mode) }
            try bytes.withUnsafeBytes { try Syscall.writeAll(fd, $0) }
            try Syscall.check("fsync \(temporary)") { fsync(fd) }
        } catch {
            Syscall.close(fd)
            unlink(temporary)
            throw error
        }
        Syscall.close(fd)
        try Syscall.check("rename \(path)") { rename(temporary, path) }
    }

    /// Reads a whole file, refusing anything larger than `limit` bytes.
    public static func read(_ path: String, limit: Int = 64 << 20) throws -> [UInt8] {
        let fd = try Syscall.open(path, O_RDONLY)
        defer { Syscall.close(fd) }
        var out: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 65536)
        while true {
            let result = try chunk.withUnsafeMutableBytes { try Syscall.read(fd, $0.baseAddress!, $0.count) }
            guard case .processed(let n) = result else {
                // stdin can be a non-blocking pipe: wait for data instead of spinning.
                var p = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
                try Syscall.check("poll") { poll(&p, 1, -1) }
                continue
            }
            if n == 0 { return out }
            out.append(contentsOf: chunk[0..<n])
            if out.count > limit { throw FileTooLargeError(path: path, limit: limit) }
        }
    }

    /// A fingerprint of a file's identity and contents age (device, inode, size,
    /// mtime), following symlinks: changes when a secret volume swaps its link.
    public static func fingerprint(_ path: String) -> String? {
        var st = stat()
        guard stat(path, &st) == 0 else { return nil }
        return "\(st.st_dev):\(st.st_ino):\(st.st_size):\(st.st_mtim.tv_sec).\(st.st_mtim.tv_nsec)"
    }
}
