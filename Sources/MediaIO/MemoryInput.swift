import CFFmpeg
import Foundation

/// Container bytes held in memory, read by libavformat through a custom `AVIOContext` (read and seek callbacks
/// over a private copy). Owned by the `VideoDecoder` using it; freed after its format context is closed.
final class MemoryInput {
    private let bytes: [UInt8]
    private var position = 0
    /// The I/O context to set as `AVFormatContext.pb` (with `AVFMT_FLAG_CUSTOM_IO`).
    private(set) var context: UnsafeMutablePointer<AVIOContext>?

    init?(data: Data) {
        bytes = [UInt8](data)
        let bufferSize: Int32 = 1 << 14
        guard let buffer = av_malloc(Int(bufferSize)) else { return nil }
        context = avio_alloc_context(
            buffer.assumingMemoryBound(to: UInt8.self), bufferSize, 0, nil,
            { opaque, buf, size in
                guard let opaque, let buf else { return fpn_averror(EINVAL) }
                return Unmanaged<MemoryInput>.fromOpaque(opaque).takeUnretainedValue().read(into: buf, size: Int(size))
            }, nil,
            { opaque, offset, whence in
                guard let opaque else { return Int64(fpn_averror(EINVAL)) }
                return Unmanaged<MemoryInput>.fromOpaque(opaque).takeUnretainedValue().seek(offset, whence: whence)
            })
        guard let context else {
            av_free(buffer)
            return nil
        }
        context.pointee.opaque = Unmanaged.passUnretained(self).toOpaque()
    }

    deinit {
        if context != nil {
            av_freep(&context!.pointee.buffer)
            avio_context_free(&context)
        }
    }

    private func read(into buffer: UnsafeMutablePointer<UInt8>, size: Int) -> Int32 {
        let n = min(size, bytes.count - position)
        guard n > 0 else { return fpn_averror_eof() }
        bytes.withUnsafeBufferPointer { buffer.update(from: $0.baseAddress! + position, count: n) }
        position += n
        return Int32(n)
    }

    private func seek(_ offset: Int64, whence: Int32) -> Int64 {
        if whence & AVSEEK_SIZE != 0 { return Int64(bytes.count) }
        let base: Int64
        switch whence & ~AVSEEK_FORCE {
        case SEEK_SET: base = 0
        case SEEK_CUR: base = Int64(position)
        case SEEK_END: base = Int64(bytes.count)
        default: return Int64(fpn_averror(EINVAL))
        }
        let (target, overflow) = base.addingReportingOverflow(offset)
        guard !overflow, target >= 0, target <= Int64(bytes.count) else { return Int64(fpn_averror(EINVAL)) }
        position = Int(target)
        return target
    }
}
