// swift-tools-version: 6.1
// fpnstream: a native Swift video-analytics engine (FFmpeg decode → FPN detector → tracker → JSONL/video).
// Target layout and data flow: docs/design/architecture.md.
import PackageDescription

/// Hot numeric loops (im2col, resize, NMS, pixel blending) are unusable in -Onone, so the numeric
/// targets are always optimized, even in debug builds (tests still get assertions from -O).
let optimized: [SwiftSetting] = [.unsafeFlags(["-O"])]

let package = Package(
    name: "fpnstream",
    platforms: [.macOS(.v13)],
    products: [
        .executable(name: "fpnstream", targets: ["fpnstream"]),
        .library(name: "FPNStream", targets: ["FPNStream"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.5.0"),
        .package(url: "https://github.com/jpsim/Yams", from: "5.0.0"),
        .package(url: "https://github.com/apple/swift-log", from: "1.5.0"),
    ],
    targets: [
        // C libraries from Debian -dev packages (scripts/setup installs them).
        .systemLibrary(name: "CFFmpeg", pkgConfig: "libavformat",
                       providers: [.apt(["libavformat-dev", "libavcodec-dev", "libswscale-dev", "libavutil-dev"])]),
        .systemLibrary(name: "CBLAS", pkgConfig: "openblas", providers: [.apt(["libopenblas-dev"])]),
        // CPU feature detection and runtime-dispatched packed SGEMM micro-kernels (AVX-512, AVX2, portable C).
        .target(name: "CKernels", cSettings: [.unsafeFlags(["-O3"])]),

        // Platform-free structures shared by every stage: frames, boxes, detections, masks.
        .target(name: "FPNCore", swiftSettings: optimized),
        // FFmpeg demux/decode/encode. The only target that touches FFmpeg pointers.
        .target(name: "MediaIO", dependencies: ["CFFmpeg", "FPNCore"], swiftSettings: optimized),
        // Typed stages, bounded queues, ordering, drop policies, metrics. No FFmpeg, no ML.
        .target(name: "StagePipeline"),
        // Float32 NCHW tensors and the closed op set; the runner seam (ConvolutionRunner); safetensors reader.
        .target(name: "Tensor", dependencies: ["CBLAS", "CKernels"], swiftSettings: optimized),
        // Temporal reuse (delta mode): the per-stream cache, tile ops, gated convolution.
        .target(name: "TemporalReuse", dependencies: ["Tensor"], swiftSettings: optimized),
        // Models: backbones, FPN, heads, postprocess.
        .target(name: "Vision", dependencies: ["Tensor", "FPNCore"], swiftSettings: optimized),
        // ONNX import: protobuf decoding, graph lowering onto Tensor ops, per-stream sessions; CenterFace decoding.
        .target(name: "ONNX", dependencies: ["Tensor", "FPNCore"], swiftSettings: optimized),
        // ByteTrack on detections only.
        .target(name: "Tracking", dependencies: ["FPNCore"], swiftSettings: optimized),
        // JSONL records, MOT/COCO exporters, annotation renderer.
        .target(name: "Outputs", dependencies: ["FPNCore", "StagePipeline"], swiftSettings: optimized),
        // Library facade: pipeline spec (YAML) → running pipeline.
        .target(name: "FPNStream", dependencies: [
            "FPNCore", "MediaIO", "StagePipeline", "Tensor", "TemporalReuse", "Vision", "Tracking", "Outputs", "ONNX",
            .product(name: "Yams", package: "Yams"),
            .product(name: "Logging", package: "swift-log"),
        ]),
        .executableTarget(name: "fpnstream", dependencies: [
            "FPNStream", "MediaIO", "Tracking", "Outputs", "Tensor", "TemporalReuse", "FPNCore", "StagePipeline", "ONNX",
            "Vision",
            .product(name: "ArgumentParser", package: "swift-argument-parser"),
        ]),
        // Fuzz driver: scripts/fuzz builds it with libFuzzer; an ordinary build replays inputs (docs/hostile-testing.md).
        .executableTarget(name: "fpnstream-fuzz", dependencies: [
            "FPNStream", "MediaIO", "ONNX", "Outputs", "Tensor", "Vision",
        ], path: "Fuzz/Driver"),
        // Fixtures, sample paths, random tensors and a synchronous pipeline harness for tests.
        .target(name: "TestSupport", dependencies: ["FPNCore", "StagePipeline", "Tensor"], path: "Sources/TestSupport"),

        .testTarget(name: "FPNCoreTests", dependencies: ["FPNCore", "TestSupport"]),
        .testTarget(name: "MediaIOTests", dependencies: ["MediaIO", "TestSupport"]),
        .testTarget(name: "StagePipelineTests", dependencies: ["StagePipeline", "TestSupport"]),
        .testTarget(name: "TensorTests", dependencies: ["Tensor", "TestSupport"]),
        .testTarget(name: "TemporalReuseTests", dependencies: ["TemporalReuse", "Vision", "Tensor", "TestSupport"]),
        .testTarget(name: "VisionTests", dependencies: ["Vision", "Tensor", "TemporalReuse", "TestSupport"]),
        .testTarget(name: "ONNXTests", dependencies: ["ONNX", "Tensor", "TemporalReuse", "FPNCore", "TestSupport", "Vision"]),
        .testTarget(name: "TrackingTests", dependencies: ["Tracking", "TestSupport"]),
        .testTarget(name: "OutputsTests", dependencies: ["Outputs", "StagePipeline", "TestSupport"]),
        .testTarget(name: "FPNStreamTests", dependencies: ["FPNStream", "TestSupport"]),
    ],
    swiftLanguageModes: [.v5]
)
