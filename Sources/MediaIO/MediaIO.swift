import CFFmpeg

/// Versions of the FFmpeg libraries linked at run time, e.g. `"libavformat 59.27.100"`.
public enum FFmpegVersions {
    public static var summary: String {
        func v(_ x: UInt32) -> String { "\(x >> 16).\((x >> 8) & 0xff).\(x & 0xff)" }
        return "libavformat \(v(avformat_version())), libavcodec \(v(avcodec_version())), libswscale \(v(swscale_version()))"
    }
}
