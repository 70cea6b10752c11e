import CKernels
import Foundation

/// Splits loops over the machine's cores with `DispatchQueue.concurrentPerform`; small loops run inline.
///
/// How many cores one call may use is `width`: all of them by default, fewer on a thread inside `withWidth`. A
/// runner that processes several frames at once (one per core) runs each frame with width 1, so no op of that
/// frame waits on another core.
package enum Parallel {
    package static let cores = max(ProcessInfo.processInfo.activeProcessorCount, 1)

    /// Cores the calling thread may split one op over (1...`cores`).
    @inline(__always)
    package static var width: Int {
        let w = Int(fpn_thread_width())
        return w > 0 ? min(w, cores) : cores
    }

    /// Calls `body` with ops on this thread limited to `width` cores (at least 1); restores the previous limit.
    public static func withWidth<T>(_ width: Int, _ body: () throws -> T) rethrows -> T {
        let saved = fpn_thread_width()
        fpn_set_thread_width(Int32(max(width, 1)))
        defer { fpn_set_thread_width(saved) }
        return try body()
    }

    /// Calls `body` on disjoint chunks covering `0..<count`. `cost` is the approximate work (in element
    /// operations) of the whole loop; below ~32K the loop runs on the calling thread (dispatch overhead wins).
    @inline(__always)
    package static func forEach(_ count: Int, cost: Int, _ body: (Range<Int>) -> Void) {
        let width = width
        if count <= 1 || width == 1 || cost < 32_768 {
            if count > 0 { body(0..<count) }
            return
        }
        // A few chunks per core balance load when the other core is busy (shared machine).
        let chunks = min(count, width * 4)
        withoutActuallyEscaping(body) { body in
            DispatchQueue.concurrentPerform(iterations: chunks) { i in
                let lo = count * i / chunks, hi = count * (i + 1) / chunks
                if lo < hi { body(lo..<hi) }
            }
        }
    }
}
