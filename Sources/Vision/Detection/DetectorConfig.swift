import FPNCore
import Foundation
import Tensor

/// The detector families fpnstream runs (torchvision's FPN detectors).
public enum DetectorFamily: String, Sendable, CaseIterable {
    /// Mask R-CNN: RPN + box head + mask head (`maskrcnn_resnet50_fpn(_v2)`).
    case maskRCNN = "maskrcnn"
    /// Faster R-CNN: RPN + box head (`fasterrcnn_resnet50_fpn(_v2)`).
    case fasterRCNN = "fasterrcnn"
    /// RetinaNet (`retinanet_resnet50_fpn(_v2)`).
    case retinaNet = "retinanet"
    /// FCOS (`fcos_resnet50_fpn`).
    case fcos
    /// Keypoint R-CNN: RPN + box head + keypoint head (`keypointrcnn_resnet50_fpn`).
    case keypointRCNN = "keypointrcnn"
}

/// Test-time thresholds of a detector; defaults come from the weights' metadata (torchvision's defaults), every
/// field can be overridden per run.
public struct DetectionThresholds: Sendable, Equatable {
    /// Minimum score: R-CNN/RetinaNet keep `score > t` (0.05), FCOS keeps `sqrt(cls · ctr) > t` (0.2).
    public var score: Float
    /// IoU above which a lower-scored box of the same class is suppressed (0.5; FCOS 0.6).
    public var nms: Float
    /// Detections kept per frame after NMS (100; RetinaNet 300).
    public var maxDetections: Int
    /// Mask pixels with probability `> mask` are foreground (0.5, as COCO evaluation).
    public var mask: Float
    /// RetinaNet/FCOS candidates per level before NMS (1000).
    public var topKCandidates: Int

    public init(score: Float, nms: Float, maxDetections: Int, mask: Float = 0.5, topKCandidates: Int = 1000) {
        self.score = score; self.nms = nms; self.maxDetections = maxDetections; self.mask = mask
        self.topKCandidates = topKCandidates
    }

    /// torchvision's defaults for `family`.
    public static func defaults(for family: DetectorFamily) -> DetectionThresholds {
        switch family {
        case .maskRCNN, .fasterRCNN, .keypointRCNN: return DetectionThresholds(score: 0.05, nms: 0.5, maxDetections: 100)
        case .retinaNet: return DetectionThresholds(score: 0.05, nms: 0.5, maxDetections: 300)
        case .fcos: return DetectionThresholds(score: 0.2, nms: 0.6, maxDetections: 100)
        }
    }
}

/// RPN settings (test time) of the R-CNN families.
public struct RPNSettings: Sendable, Equatable {
    /// Proposals kept per level before NMS, by raw objectness (1000).
    public var preNMSTopN = 1000
    /// Proposals kept after NMS over all levels (1000).
    public var postNMSTopN = 1000
    /// IoU of the per-level NMS (0.7).
    public var nmsThreshold: Float = 0.7
    /// Proposals with a side below this (input pixels) are dropped (1e-3).
    public var minSize: Float = 1e-3
    /// Proposals whose objectness (after the sigmoid) is below this are dropped before NMS (torchvision's
    /// `rpn_score_thresh`: 0, the MobileNetV3 builders 0.05).
    public var scoreThreshold: Float = 0
    public init() {}
}

/// Everything needed to build a detector, read from a weights file's `__metadata__` (written by
/// `scripts/convert-torchvision`).
///
/// `architecture` is torchvision's builder name generalised to other ResNet depths:
/// `{maskrcnn,fasterrcnn,retinanet,fcos}_resnet{18,34,50,101}_fpn[_v2]` (FCOS has no v2).
public struct DetectorConfig: Sendable, Equatable {
    /// The metadata `architecture` string.
    public var architecture: String
    /// Detector family.
    public var family: DetectorFamily
    /// 1 or 2 (torchvision's `_v2` builders: BN in FPN/heads, two RPN convs, conv box head; GroupNorm in RetinaNet).
    public var variant: Int
    /// Backbone structure and BatchNorm eps.
    public var backbone: BackboneConfig
    /// Classes predicted including background (index 0) for R-CNN; RetinaNet/FCOS predict `numClasses` logits.
    public var numClasses: Int
    /// Name of each class index (`__background__`, `person`, ..., `N/A` for unused COCO ids).
    public var classNames: [String]
    /// Default thresholds.
    public var thresholds: DetectionThresholds
    /// RPN settings (R-CNN families).
    public var rpn: RPNSettings
    /// Input transform.
    public var transform: TransformConfig
    /// The panoptic half (detectron2 Panoptic FPN: a semantic FPN head on P2-P5 and the panoptic merge), when the
    /// weights have metadata `panoptic: semantic_fpn`; nil for plain detectors.
    public var panoptic: PanopticConfig?
    /// Keypoint R-CNN: the name of each keypoint (metadata `keypoint_names`, required for that family).
    public var keypointNames: [String] = []
    /// Keypoint R-CNN: pairs of keypoint indices (0-based) drawn as the skeleton (metadata `keypoint_skeleton`;
    /// default COCO's person skeleton when the names are COCO's 17).
    public var skeleton: [[Int]] = []

    /// COCO's 17 person keypoints (torchvision's `_COCO_PERSON_KEYPOINT_NAMES`).
    public static let cocoKeypointNames = [
        "nose", "left_eye", "right_eye", "left_ear", "right_ear", "left_shoulder", "right_shoulder", "left_elbow",
        "right_elbow", "left_wrist", "right_wrist", "left_hip", "right_hip", "left_knee", "right_knee", "left_ankle",
        "right_ankle",
    ]

    /// Accepted architecture names, for error messages.
    public static let knownArchitectures: [String] = DetectorFamily.allCases.flatMap { f in
        ResNetDepth.allCases.flatMap { d -> [String] in
            let base = "\(f.rawValue)_resnet\(d.rawValue)_fpn"
            return f == .fcos || f == .keypointRCNN ? [base] : [base, base + "_v2"]
        }
    } + mobileNetArchitectures

    /// torchvision's Faster R-CNN builders on MobileNetV3-Large-FPN.
    public static let mobileNetArchitectures = ["fasterrcnn_mobilenet_v3_large_fpn", "fasterrcnn_mobilenet_v3_large_320_fpn"]

    /// Parses `family`, depth and variant from an architecture name; nil if it is not a detector name.
    public static func parse(architecture name: String) -> (DetectorFamily, ResNetDepth, Int)? {
        if mobileNetArchitectures.contains(name) { return (.fasterRCNN, .resnet50, 1) }  // depth unused
        var rest = Substring(name)
        var variant = 1
        if rest.hasSuffix("_v2") { variant = 2; rest = rest.dropLast(3) }
        guard rest.hasSuffix("_fpn") else { return nil }
        rest = rest.dropLast(4)
        let parts = rest.split(separator: "_")
        guard parts.count == 2, let family = DetectorFamily(rawValue: String(parts[0])),
              parts[1].hasPrefix("resnet"), let n = Int(parts[1].dropFirst(6)), let depth = ResNetDepth(rawValue: n),
              !((family == .fcos || family == .keypointRCNN) && variant == 2) else { return nil }
        return (family, depth, variant)
    }

    /// A config for `architecture` with torchvision's defaults (COCO's 91 classes named `class0`...).
    public init?(architecture: String, numClasses: Int = 91) {
        guard let (family, _, variant) = Self.parse(architecture: architecture),
              let backbone = BackboneConfig(architecture: architecture) else { return nil }
        self.architecture = architecture
        self.family = family
        self.variant = variant
        self.backbone = backbone
        self.numClasses = numClasses
        self.classNames = (0..<numClasses).map { "class\($0)" }
        self.thresholds = .defaults(for: family)
        self.rpn = RPNSettings()
        self.transform = TransformConfig()
        self.panoptic = nil
        if Self.mobileNetArchitectures.contains(architecture) {
            // torchvision's fasterrcnn_mobilenet_v3_large[_320]_fpn defaults.
            rpn.scoreThreshold = 0.05
            if architecture.contains("_320_") {
                transform = TransformConfig(resize: .shorterSide(min: 320, max: 640))
                rpn.preNMSTopN = 150
                rpn.postNMSTopN = 150
            }
        }
    }

    /// The RPN's anchors: one size per level (32...512 on P2...P6), or all five sizes on each of the MobileNetV3
    /// backbone's three levels (15 anchors per location).
    public var anchorGenerator: AnchorGenerator {
        backbone.body == .mobileNetV3Large
            ? AnchorGenerator(sizes: Array(repeating: [32, 64, 128, 256, 512], count: 3),
                              aspectRatios: Array(repeating: [0.5, 1, 2], count: 3))
            : .rcnn
    }

    /// How many pyramid levels RoIAlign pools from: the returned body stages (torchvision's featmap names "0"..."3"
    /// that exist; never the extra "pool" level).
    public var pooledLevelCount: Int { min(4, backbone.returnedLayers.count) }

    /// Reads the config from a weights file's metadata. `num_classes` and `class_names` are optional (the class
    /// count then comes from the weights, checked by the model builder).
    /// - Throws: `ModelLoadError` naming `file` (missing/unknown architecture, unparsable values) or
    ///   `DetectorLoadError` (class names not matching `num_classes`).
    public init(metadata m: [String: String], file: URL) throws {
        guard let arch = m["architecture"] else { throw ModelLoadError(file: file, reason: .missingMetadata("architecture")) }
        guard let c = DetectorConfig(architecture: arch) else {
            throw ModelLoadError(file: file, reason: .unknownArchitecture(arch, known: Self.knownArchitectures))
        }
        self = c
        // The backbone part (bn_eps, consistency of the descriptive fields) is the backbone's to read.
        backbone = try BackboneConfig(metadata: m, file: file)
        func value<T>(_ key: String, _ parse: (String) -> T?) throws -> T? {
            guard let s = m[key] else { return nil }
            guard let v = parse(s) else { throw ModelLoadError(file: file, reason: .badMetadata(key: key, value: s)) }
            return v
        }
        let positiveInt: (String) -> Int? = { Int($0).flatMap { $0 > 0 ? $0 : nil } }
        let unitFloat: (String) -> Float? = { Float($0).flatMap { $0 >= 0 && $0 <= 1 ? $0 : nil } }
        if let n = try value("num_classes", positiveInt) { numClasses = n }
        if let s = m["class_names"] {
            guard let data = s.data(using: .utf8), let names = try? JSONDecoder().decode([String].self, from: data) else {
                throw ModelLoadError(file: file, reason: .badMetadata(key: "class_names", value: String(s.prefix(80))))
            }
            if m["num_classes"] != nil, names.count != numClasses {
                throw DetectorLoadError(file: file, reason: .classCount(
                    what: "__metadata__ 'class_names' lists \(names.count) names but 'num_classes' is \(numClasses)"))
            }
            numClasses = names.count
            classNames = names
        } else {
            classNames = (0..<numClasses).map { "class\($0)" }
        }
        if let v = try value("score_thresh", unitFloat) { thresholds.score = v }
        if let v = try value("nms_thresh", unitFloat) { thresholds.nms = v }
        if let v = try value("detections_per_img", positiveInt) { thresholds.maxDetections = v }
        if let v = try value("mask_thresh", unitFloat) { thresholds.mask = v }
        if let v = try value("topk_candidates", positiveInt) { thresholds.topKCandidates = v }
        if let v = try value("rpn_pre_nms_top_n", positiveInt) { rpn.preNMSTopN = v }
        if let v = try value("rpn_post_nms_top_n", positiveInt) { rpn.postNMSTopN = v }
        if let v = try value("rpn_nms_thresh", unitFloat) { rpn.nmsThreshold = v }
        if let v = try value("rpn_score_thresh", unitFloat) { rpn.scoreThreshold = v }
        var (minSize, maxSize) = (800, 1333)
        if case .shorterSide(let lo, let hi) = transform.resize { (minSize, maxSize) = (lo, hi) }
        minSize = try value("min_size", positiveInt) ?? minSize
        maxSize = try value("max_size", positiveInt) ?? maxSize
        let triple: (String) -> [Float]? = { s in
            (try? JSONDecoder().decode([Float].self, from: Data(s.utf8))).flatMap { $0.count == 3 ? $0 : nil }
        }
        let mean = try value("image_mean", triple) ?? [0.485, 0.456, 0.406]
        let std = try value("image_std", triple) ?? [0.229, 0.224, 0.225]
        guard std.allSatisfy({ $0 > 0 }) else {
            throw ModelLoadError(file: file, reason: .badMetadata(key: "image_std", value: m["image_std"] ?? ""))
        }
        transform = TransformConfig(resize: .shorterSide(min: minSize, max: maxSize), mean: mean, std: std)
        if family == .keypointRCNN {
            guard let s = m["keypoint_names"] else {
                throw ModelLoadError(file: file, reason: .missingMetadata("keypoint_names"))
            }
            guard let names = try? JSONDecoder().decode([String].self, from: Data(s.utf8)), !names.isEmpty else {
                throw ModelLoadError(file: file, reason: .badMetadata(key: "keypoint_names", value: String(s.prefix(80))))
            }
            keypointNames = names
            if let e = m["keypoint_skeleton"] {
                guard let pairs = try? JSONDecoder().decode([[Int]].self, from: Data(e.utf8)),
                      pairs.allSatisfy({ $0.count == 2 && $0.allSatisfy { names.indices.contains($0) } }) else {
                    throw ModelLoadError(file: file, reason: .badMetadata(key: "keypoint_skeleton", value: String(e.prefix(80))))
                }
                skeleton = pairs
            } else if names == Self.cocoKeypointNames {
                skeleton = Keypoint.cocoSkeleton
            }
        }
        if let kind = m["panoptic"] {
            guard kind == "semantic_fpn" else {
                throw ModelLoadError(file: file, reason: .badMetadata(key: "panoptic", value: kind))
            }
            guard family == .maskRCNN else {
                throw ModelLoadError(file: file, reason: .badMetadata(key: "panoptic", value: kind + " (needs a maskrcnn architecture)"))
            }
            var p = PanopticConfig()
            if let s = m["stuff_classes"] {
                guard let names = try? JSONDecoder().decode([String].self, from: Data(s.utf8)), names.count >= 2 else {
                    throw ModelLoadError(file: file, reason: .badMetadata(key: "stuff_classes", value: String(s.prefix(80))))
                }
                p.stuffNames = names
            }
            if let v = try value("sem_seg_conv_dims", positiveInt) { p.convDims = v }
            if let v = try value("gn_groups", positiveInt) { p.groups = v }
            if let v = try value("gn_eps", { Float($0).flatMap { $0 >= 0 && $0.isFinite ? $0 : nil } }) { p.eps = v }
            // The head sums its levels at stride 4 (P2); other common strides are not implemented.
            if let v = m["sem_seg_common_stride"], v != "4" {
                throw ModelLoadError(file: file, reason: .badMetadata(key: "sem_seg_common_stride", value: v))
            }
            if let v = try value("panoptic_overlap_thresh", unitFloat) { p.merge.overlapThreshold = v }
            if let v = try value("panoptic_score_thresh", unitFloat) { p.merge.instanceScoreThreshold = v }
            if let v = try value("panoptic_stuff_area", { Int($0).flatMap { $0 >= 0 ? $0 : nil } }) {
                p.merge.stuffAreaLimit = v
            }
            panoptic = p
        }
    }
}

/// The panoptic part of a Panoptic FPN model (metadata `panoptic: semantic_fpn`): detectron2's `SemSegFPNHead`
/// (keys `sem_seg_head.*`) and the merge thresholds.
public struct PanopticConfig: Sendable, Equatable {
    /// Semantic classes: index 0 is "things" (never a segment), 1...N the stuff classes (metadata
    /// `stuff_classes`, a JSON list starting with the things entry). Empty = names `stuff1`... from the weights.
    public var stuffNames: [String] = []
    /// Width of the head's convs (`sem_seg_conv_dims`, detectron2: 128); nil = from the weight shapes.
    public var convDims: Int?
    /// GroupNorm groups (`gn_groups`, 32) and epsilon (`gn_eps`, 1e-5).
    public var groups = 32
    public var eps: Float = 1e-5
    /// Merge thresholds (`panoptic_overlap_thresh`, `panoptic_score_thresh`, `panoptic_stuff_area`).
    public var merge = PanopticMergeConfig()

    public init() {}
}

/// A weights file that parses but cannot serve as the detector its metadata names.
public struct DetectorLoadError: Error, CustomStringConvertible, Equatable {
    public enum Reason: Equatable, Sendable {
        /// Class names / class count in the metadata disagree with each other or with the weights.
        case classCount(what: String)
    }
    /// The weights file.
    public let file: URL
    /// What went wrong.
    public let reason: Reason

    public init(file: URL, reason: Reason) { self.file = file; self.reason = reason }

    public var description: String {
        switch reason {
        case .classCount(let what): return "weights file '\(file.path)': class count mismatch: \(what)"
        }
    }
}
