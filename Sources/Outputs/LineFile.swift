#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Errors of the output writers; each names the file.
public enum OutputError: Error, Equatable, CustomStringConvertible {
    /// The output could not be created (missing directory, permissions, ...).
    case cannotOpen(path: String, reason: String)
    /// A write failed (disk full, closed pipe, ...).
    case writeFailed(path: String, reason: String)
    /// Finalizing the file failed.
    case cannotFinalize(path: String, reason: String)

    public var description: String {
        switch self {
        case .cannotOpen(let p, let r): return "cannot open output '\(p)': \(r)"
        case .writeFailed(let p, let r): return "cannot write output '\(p)': \(r)"
        case .cannotFinalize(let p, let r): return "cannot finalize output '\(p)': \(r)"
        }
    }
}

/// An unbuffered output file written with `write(2)`: each `write` call hands the whole chunk to the kernel at once,
/// so a line is either entirely in the file or not at all when the process is killed, and `tail -f` sees every line
/// as soon as it is written. `-` is standard output. Thread-safe (lines from several threads never interleave).
public final class LineFile: @unchecked Sendable {
    /// The path as given (`-` for stdout).
    public let path: String
    private var fd: Int32
    private let ownsDescriptor: Bool
    private var lock = pthread_mutex_t()

    /// Creates (truncates) `path`, or uses stdout for `-`.
    public init(path: String) throws {
        self.path = path
        if path == "-" {
            fd = 1
            ownsDescriptor = false
        } else {
            fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o644)
            guard fd >= 0 else { throw OutputError.cannotOpen(path: path, reason: String(cString: strerror(errno))) }
            ownsDescriptor = true
        }
        pthread_mutex_init(&lock, nil)
    }

    deinit {
        if ownsDescriptor && fd >= 0 { _ = Glibc.close(fd) }
        pthread_mutex_destroy(&lock)
    }

    /// Writes `bytes` with one `write(2)` (looping only if the kernel accepts part of it, e.g. a full pipe).
    public func write(_ bytes: [UInt8]) throws {
        pthread_mutex_lock(&lock)
        defer { pthread_mutex_unlock(&lock) }
        guard fd >= 0 else { throw OutputError.writeFailed(path: path, reason: "already closed") }
        try bytes.withUnsafeBytes { raw in
            var offset = 0
            while offset < raw.count {
                let n = Glibc.write(fd, raw.baseAddress! + offset, raw.count - offset)
                if n < 0 {
                    if errno == EINTR { continue }
                    throw OutputError.writeFailed(path: path, reason: String(cString: strerror(errno)))
                }
                offset += n
            }
        }
    }

    /// Closes the file (stdout is left open). Further writes fail.
    public func close() throws {
        pthread_mutex_lock(&lock)
        defer { pthread_mutex_unlock(&lock) }
        guard fd >= 0 else { return }
        let owned = ownsDescriptor
        let d = fd
        fd = -1
        if owned && Glibc.close(d) != 0 {
            throw OutputError.cannotFinalize(path: path, reason: String(cString: strerror(errno)))
        }
    }
}
