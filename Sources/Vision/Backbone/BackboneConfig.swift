import Foundation

/// ResNet depth: block type and blocks per stage (torchvision `resnet18`...`resnet152`; `resnet10` is
/// `ResNet(BasicBlock, [1, 1, 1, 1])`, the demo model's body: resnet18's key layout with one block per stage).
public enum ResNetDepth: Int, Sendable, CaseIterable {
    case resnet10 = 10, resnet18 = 18, resnet34 = 34, resnet50 = 50, resnet101 = 101, resnet152 = 152

    /// Blocks in layer1...layer4.
    public var blocks: [Int] {
        switch self {
        case .resnet10: return [1, 1, 1, 1]
        case .resnet18: return [2, 2, 2, 2]
        case .resnet34, .resnet50: return [3, 4, 6, 3]
        case .resnet101: return [3, 4, 23, 3]
        case .resnet152: return [3, 8, 36, 3]
        }
    }

    /// Bottleneck (1x1, 3x3, 1x1, expansion 4) for 50/101/152; BasicBlock (3x3, 3x3) for 10/18/34.
    public var usesBottleneck: Bool { rawValue >= 50 }

    /// Output channels of layer `k` (1...4): 64·2^(k-1), times 4 for bottleneck networks.
    public func channels(layer k: Int) -> Int { (64 << (k - 1)) * (usesBottleneck ? 4 : 1) }
}

/// Where `LastLevelP6P7` takes P6's input from.
public enum P6Source: String, Sendable {
    /// P5, the FPN output (RetinaNet v1, FCOS: in_channels == out_channels).
    case p5
    /// C5, the last ResNet stage (RetinaNet v2).
    case c5
}

/// The FPN's extra levels above the last returned stage (torchvision `ops/feature_pyramid_network.py`).
public enum FPNExtraBlock: Equatable, Sendable {
    /// No extra level.
    case none
    /// `LastLevelMaxPool`: one more level = max_pool2d(top, kernel 1, stride 2) (torchvision names it "pool").
    case maxPool
    /// `LastLevelP6P7`: P6 = conv3x3/2(source), P7 = conv3x3/2(relu(P6)), keys `fpn.extra_blocks.p6/p7`.
    case p6p7(from: P6Source)
}

/// Normalisation inside the FPN convs.
public enum FPNNorm: String, Sendable {
    /// v1: convs with bias, keys `inner_blocks.i.0.{weight,bias}`.
    case none
    /// v2 (Mask R-CNN v2): conv without bias + BatchNorm at index `.1` (eps 1e-5).
    case batchNorm
}

/// The network under the FPN.
public enum BackboneBody: String, Sendable {
    /// torchvision's ResNet (`depth`), stages `layer1`...`layer4`.
    case resnet
    /// torchvision's `mobilenet_v3_large().features` (`MobileNetV3Body`), stages 0...5 = features 0, 2, 4, 7, 13, 16.
    case mobileNetV3Large = "mobilenet_v3_large"
}

/// Everything that determines an FPN backbone's structure and its numerics at load.
/// Built by name (`BackboneConfig(architecture:)`) or field by field; no global registry.
public struct BackboneConfig: Equatable, Sendable {
    /// The body kind.
    public var body: BackboneBody = .resnet
    /// ResNet body (ignored for MobileNetV3).
    public var depth: ResNetDepth
    /// Body stages fed to the FPN, ascending: ResNet a subset of 1...4 (Mask R-CNN: 1,2,3,4 → P2...P5; RetinaNet/FCOS:
    /// 2,3,4); MobileNetV3 a subset of 0...5 (torchvision's detectors: 4, 5, both at stride 32).
    public var returnedLayers: [Int]
    /// FPN conv normalisation.
    public var fpnNorm: FPNNorm
    /// Levels above the last returned stage.
    public var extraBlock: FPNExtraBlock
    /// FPN output channels (256 in every torchvision detector).
    public var fpnChannels: Int
    /// Epsilon of the body's (Frozen)BatchNorm: 0.0 for torchvision's v1 COCO detection checkpoints (FrozenBN after
    /// `overwrite_eps`), 1e-5 for v2 models and FCOS.
    public var bnEps: Double
    /// Epsilon of the FPN's BatchNorm (v2): nn.BatchNorm2d's default.
    public var fpnNormEps: Double = 1e-5

    /// A config from its fields; `returnedLayers` must be an ascending subset of 1...4.
    public init(depth: ResNetDepth, returnedLayers: [Int] = [1, 2, 3, 4], fpnNorm: FPNNorm = .none,
                extraBlock: FPNExtraBlock = .maxPool, fpnChannels: Int = 256, bnEps: Double = 0) {
        precondition(!returnedLayers.isEmpty && returnedLayers == returnedLayers.sorted()
                     && Set(returnedLayers).count == returnedLayers.count && returnedLayers.allSatisfy { (1...4).contains($0) },
                     "returnedLayers must be an ascending subset of 1...4, got \(returnedLayers)")
        self.depth = depth; self.returnedLayers = returnedLayers; self.fpnNorm = fpnNorm
        self.extraBlock = extraBlock; self.fpnChannels = fpnChannels; self.bnEps = bnEps
    }

    /// torchvision's `_mobilenet_extractor` with FPN over MobileNetV3-Large: `returnedLayers` an ascending subset of
    /// stages 0...5 (default `[num_stages - 2, num_stages - 1]` = 4, 5), `LastLevelMaxPool`, BN eps 1e-5 (the
    /// detection builders pass FrozenBatchNorm2d or BatchNorm2d with their default eps).
    public static func mobileNetV3Large(returnedLayers: [Int] = [4, 5], fpnChannels: Int = 256,
                                       bnEps: Double = 1e-5) -> BackboneConfig {
        precondition(!returnedLayers.isEmpty && returnedLayers == returnedLayers.sorted()
                     && Set(returnedLayers).count == returnedLayers.count && returnedLayers.allSatisfy { (0...5).contains($0) },
                     "returnedLayers must be an ascending subset of 0...5, got \(returnedLayers)")
        var c = BackboneConfig(depth: .resnet50, fpnChannels: fpnChannels, bnEps: bnEps)
        c.body = .mobileNetV3Large
        c.returnedLayers = returnedLayers
        return c
    }

    /// Input channels of each returned stage.
    public var returnedChannels: [Int] {
        switch body {
        case .resnet: return returnedLayers.map { depth.channels(layer: $0) }
        case .mobileNetV3Large: return returnedLayers.map { MobileNetV3Body.stageChannels[$0] }
        }
    }

    /// Backbone-only architecture names: `resnet{10,18,34,50,101,152}-` + `fpn` (Mask R-CNN v1 layout, FrozenBN eps 0),
    /// `fpn-v2` (BN in the FPN, eps 1e-5), `p6p7` (C3-C5 + P6/P7 from P5, RetinaNet v1, eps 0),
    /// `p6p7-c5` (P6 from C5, RetinaNet v2, eps 1e-5).
    public static let backboneArchitectures: [String] = ResNetDepth.allCases.flatMap { d in
        ["fpn", "fpn-v2", "p6p7", "p6p7-c5"].map { "resnet\(d.rawValue)-\($0)" }
    } + ["mobilenet-v3-large-fpn"]

    /// torchvision detector builder names (generalised to every depth, as scripts/convert-torchvision writes them):
    /// `{maskrcnn,fasterrcnn,retinanet}_resnetN_fpn[_v2]`, `keypointrcnn_resnetN_fpn`, `fcos_resnetN_fpn`.
    /// (Listed for ResNet-50; every other depth is accepted the same way.)
    public static let detectorArchitectures: [String] = [
        "maskrcnn_resnet50_fpn", "maskrcnn_resnet50_fpn_v2", "fasterrcnn_resnet50_fpn", "fasterrcnn_resnet50_fpn_v2",
        "keypointrcnn_resnet50_fpn", "retinanet_resnet50_fpn", "retinanet_resnet50_fpn_v2", "fcos_resnet50_fpn",
        "fasterrcnn_mobilenet_v3_large_fpn", "fasterrcnn_mobilenet_v3_large_320_fpn",
    ]

    /// The backbone of a named architecture (see `backboneArchitectures`, `detectorArchitectures`);
    /// nil for an unknown name.
    public init?(architecture name: String) {
        if ["mobilenet-v3-large-fpn", "fasterrcnn_mobilenet_v3_large_fpn", "fasterrcnn_mobilenet_v3_large_320_fpn"]
            .contains(name) {
            self = .mobileNetV3Large()
            return
        }
        if name.contains("_") {
            // Detector names: DET_resnetN_fpn[_v2].
            var parts = name.split(separator: "_", omittingEmptySubsequences: false).map(String.init)
            let v2 = parts.last == "v2"
            if v2 { parts.removeLast() }
            guard parts.count == 3, parts[2] == "fpn", parts[1].hasPrefix("resnet"),
                  let n = Int(parts[1].dropFirst(6)), let depth = ResNetDepth(rawValue: n) else { return nil }
            switch (parts[0], v2) {
            case ("maskrcnn", false), ("fasterrcnn", false), ("keypointrcnn", false): self.init(depth: depth)
            case ("maskrcnn", true), ("fasterrcnn", true): self.init(depth: depth, fpnNorm: .batchNorm, bnEps: 1e-5)
            case ("retinanet", false): self.init(depth: depth, returnedLayers: [2, 3, 4], extraBlock: .p6p7(from: .p5))
            case ("retinanet", true):
                self.init(depth: depth, returnedLayers: [2, 3, 4], extraBlock: .p6p7(from: .c5), bnEps: 1e-5)
            case ("fcos", false):  // FCOS keeps FrozenBN's default eps
                self.init(depth: depth, returnedLayers: [2, 3, 4], extraBlock: .p6p7(from: .p5), bnEps: 1e-5)
            default: return nil
            }
            return
        }
        guard name.hasPrefix("resnet"), let dash = name.firstIndex(of: "-"),
              let n = Int(name[name.index(name.startIndex, offsetBy: 6)..<dash]),
              let depth = ResNetDepth(rawValue: n) else { return nil }
        switch name[name.index(after: dash)...] {
        case "fpn": self.init(depth: depth)
        case "fpn-v2": self.init(depth: depth, fpnNorm: .batchNorm, bnEps: 1e-5)
        case "p6p7": self.init(depth: depth, returnedLayers: [2, 3, 4], extraBlock: .p6p7(from: .p5))
        case "p6p7-c5": self.init(depth: depth, returnedLayers: [2, 3, 4], extraBlock: .p6p7(from: .c5), bnEps: 1e-5)
        default: return nil
        }
    }

    /// The descriptive metadata fields scripts/parity and scripts/convert-torchvision write for this structure.
    public var describingMetadata: [String: String] {
        let extra: String
        switch extraBlock {
        case .none: extra = "none"
        case .maxPool: extra = "pool"
        case .p6p7(let s): extra = "p6p7_from_\(s.rawValue)"
        }
        return ["backbone": body == .resnet ? "resnet\(depth.rawValue)" : body.rawValue, "returned_layers": returnedLayers.map(String.init).joined(separator: ","),
                "fpn_norm": fpnNorm == .batchNorm ? "batchnorm" : "none", "extra_blocks": extra,
                "fpn_channels": String(fpnChannels)]
    }

    /// The backbone described by a weights file's `__metadata__`: `architecture` (required, see
    /// `init(architecture:)`), `bn_eps` (optional, overrides the architecture's default BN epsilon) and
    /// `fpn_channels` (optional, default 256). The descriptive fields `backbone`, `returned_layers` (`1,2,3,4`),
    /// `fpn_norm`, `extra_blocks` (`pool`, `none`, `p6p7_from_p5`, `p6p7_from_c5`), when present, must agree with
    /// the architecture.
    /// - Throws: `ModelLoadError` naming `file` for a missing/unknown architecture, an unparsable `bn_eps` or a
    ///   descriptive field that contradicts the architecture.
    public init(metadata: [String: String], file: URL) throws {
        guard let arch = metadata["architecture"] else {
            throw ModelLoadError(file: file, reason: .missingMetadata("architecture"))
        }
        guard let config = BackboneConfig(architecture: arch) else {
            throw ModelLoadError(file: file, reason: .unknownArchitecture(
                arch, known: Self.backboneArchitectures + Self.detectorArchitectures))
        }
        self = config
        if let channels = metadata["fpn_channels"] {
            // torchvision fixes 256; smaller models (the demo's 128) say so here and the shapes are checked.
            guard let v = Int(channels), v > 0 else {
                throw ModelLoadError(file: file, reason: .badMetadata(key: "fpn_channels", value: channels))
            }
            fpnChannels = v
        }
        if let eps = metadata["bn_eps"] {
            guard let v = Double(eps), v >= 0, v.isFinite else {
                throw ModelLoadError(file: file, reason: .badMetadata(key: "bn_eps", value: eps))
            }
            bnEps = v
        }
        for (key, value) in describingMetadata where metadata[key] != nil && metadata[key] != value {
            throw ModelLoadError(file: file, reason: .badMetadata(key: key, value: metadata[key]!))
        }
    }

    /// Pyramid levels produced, lowest stride first, each with its channels and nominal stride
    /// (P2 = stride 4 ... P7 = stride 128), so heads can size themselves.
    /// Levels of equal stride (MobileNetV3's two stride-32 stages) are told apart by a letter: `p5a`, `p5b`.
    public var outputShapes: [(name: String, shape: ShapeSpec)] {
        if body == .mobileNetV3Large {
            var strides = returnedLayers.map { MobileNetV3Body.stageStrides[$0] }
            if extraBlock == .maxPool { strides.append(2 * strides.last!) }
            return strides.enumerated().map { i, s in
                let k = Int(log2(Double(s)).rounded())
                let before = strides[..<i].filter { $0 == s }.count
                let letter = strides.filter { $0 == s }.count > 1 ? String(Character(UnicodeScalar(UInt8(97 + before)))) : ""
                return ("p\(k)" + letter, ShapeSpec(channels: fpnChannels, stride: s))
            }
        }
        var out = returnedLayers.map { k in ("p\(k + 1)", ShapeSpec(channels: fpnChannels, stride: 2 << k)) }
        let top = returnedLayers.last! + 1
        switch extraBlock {
        case .none: break
        case .maxPool: out.append(("p\(top + 1)", ShapeSpec(channels: fpnChannels, stride: 2 << top)))
        case .p6p7:
            out.append(("p\(top + 1)", ShapeSpec(channels: fpnChannels, stride: 2 << top)))
            out.append(("p\(top + 2)", ShapeSpec(channels: fpnChannels, stride: 4 << top)))
        }
        return out
    }
}

/// What a module produces: channels and stride relative to the network input (detectron2's ShapeSpec).
public struct ShapeSpec: Equatable, Sendable {
    /// Feature channels.
    public var channels: Int
    /// Input pixels per feature cell along each axis (nominal; torchvision's anchors use padded_size / grid_size).
    public var stride: Int

    public init(channels: Int, stride: Int) { self.channels = channels; self.stride = stride }
}

/// A model could not be built from a weights file. The description names the file.
public struct ModelLoadError: Error, CustomStringConvertible, Equatable {
    /// What went wrong.
    public enum Reason: Equatable, Sendable {
        /// `__metadata__` lacks a required key.
        case missingMetadata(String)
        /// `architecture` names no known model; `known` lists the accepted names.
        case unknownArchitecture(String, known: [String])
        /// A metadata value does not parse.
        case badMetadata(key: String, value: String)
    }

    /// The weights file.
    public let file: URL
    /// What went wrong.
    public let reason: Reason

    public init(file: URL, reason: Reason) { self.file = file; self.reason = reason }

    public var description: String {
        let f = "weights file '\(file.path)'"
        switch reason {
        case .missingMetadata(let k):
            let why = k == "keypoint_names"
                ? " (a keypoint model must name its keypoints, a JSON list; scripts/convert-torchvision writes COCO's 17)"
                : ""
            return "\(f): __metadata__ has no '\(k)'" + why
        case .unknownArchitecture(let a, let known):
            return "\(f): unknown architecture '\(a)' (known: \(known.joined(separator: ", ")); "
                + "detector names also with resnet10/18/34/101/152)"
        case .badMetadata(let k, let v): return "\(f): __metadata__ '\(k)' has an invalid value '\(v)'"
        }
    }
}

extension BackboneConfig: CustomStringConvertible {
    /// `resnet50 C2-C5 fpn(none) +maxPool eps=0.0`.
    public var description: String {
        let extra: String
        switch extraBlock {
        case .none: extra = ""
        case .maxPool: extra = " +maxpool"
        case .p6p7(let s): extra = " +p6p7(from \(s.rawValue))"
        }
        let body = self.body == .resnet
            ? "resnet\(depth.rawValue) C\(returnedLayers.first! + 1)-C\(returnedLayers.last! + 1) "
            : "\(self.body.rawValue) stages \(returnedLayers.map(String.init).joined(separator: ",")) "
        return body + "fpn\(fpnChannels)(norm \(fpnNorm.rawValue))\(extra) bn_eps=\(bnEps)"
    }
}
