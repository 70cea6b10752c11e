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
        // `serve`: HTTP API and Prometheus metrics (traits off: no swift-configuration, no full Foundation needed).
        .package(url: "https://github.com/hummingbird-project/hummingbird", from: "2.28.1", traits: []),
        .package(url: "https://github.com/swift-server/swift-prometheus", from: "2.4.1"),
        .package(url: "https://github.com/swift-server/swift-service-lifecycle", from: "2.0.0"),
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
        // ONNX import: protobuf decoding, graph lowering onto Tensor ops, per-stream sessions; CenterFace and YOLO decoding.
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
        // MQTT 3.1.1 client (QoS 0/1, last will, bounded outage buffer) over POSIX sockets. No FFmpeg, no ML.
        .target(name: "MQTT"),
        // `serve`: many cameras on shared models, fair inference scheduling, sharding, HTTP API, metrics, MQTT events.
        .target(name: "Serve", dependencies: [
            "FPNStream", "FPNCore", "MediaIO", "Outputs", "StagePipeline", "MQTT", "ONNX", "Tensor",
            .product(name: "Yams", package: "Yams"),
            .product(name: "Hummingbird", package: "hummingbird"),
            .product(name: "Logging", package: "swift-log"),
            .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            .product(name: "Prometheus", package: "swift-prometheus"),
        ]),
        .executableTarget(name: "fpnstream", dependencies: [
            "FPNStream", "Serve", "MediaIO", "Tracking", "Outputs", "Tensor", "TemporalReuse", "FPNCore", "StagePipeline", "ONNX",
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
        .testTarget(name: "VisionTests", dependencies: ["Vision", "Tensor", "TemporalReuse", "TestSupport", "CKernels"]),
        .testTarget(name: "ONNXTests", dependencies: ["ONNX", "Tensor", "TemporalReuse", "FPNCore", "TestSupport", "Vision"]),
        .testTarget(name: "TrackingTests", dependencies: ["Tracking", "TestSupport"]),
        .testTarget(name: "OutputsTests", dependencies: ["Outputs", "StagePipeline", "TestSupport"]),
        .testTarget(name: "FPNStreamTests", dependencies: ["FPNStream", "TestSupport"]),
        .testTarget(name: "MQTTTests", dependencies: ["MQTT", "TestSupport"]),
        .testTarget(name: "ServeTests", dependencies: ["Serve", "FPNStream", "MQTT", "MediaIO", "TestSupport",
                                                    .product(name: "Yams", package: "Yams")]),
    ],
    swiftLanguageModes: [.v5]
)
