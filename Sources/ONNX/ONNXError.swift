import Foundation

/// Why an ONNX model could not be loaded, planned or run. `description` is one message naming the file and,
/// for unsupported content, every offending node at once (so a user sees the whole gap in one run).
public struct ONNXError: Error, Equatable, CustomStringConvertible, LocalizedError {
    /// One node the loader cannot run, with the reason.
    public struct Unsupported: Sendable, Equatable, CustomStringConvertible {
        /// Node label (`name`, or `OpType(output)` when unnamed).
        public var node: String
        public var opType: String
        public var reason: String
        public var description: String { "\(node) [\(opType)]: \(reason)" }
    }

    public enum Kind: Sendable, Equatable {
        /// The file could not be read at all.
        case unreadable(String)
        /// Not a protobuf ModelProto (truncated, wrong format, empty).
        case notONNX(String)
        /// A model-level feature not supported (external data, sparse initializers, opset domain).
        case unsupportedModel(String)
        /// Nodes with ops or attributes outside the supported set.
        case unsupportedNodes([Unsupported])
        /// Shapes do not work out (bad input size, inconsistent graph).
        case shape(String)
        /// Wrong use of the API (bad input tensor, unknown output name).
        case usage(String)
        /// A declared size beyond one of `ONNXLimits` (the message names the field and the limit).
        case tooLarge(String)
    }

    /// The model file, when known.
    public var file: String?
    public var kind: Kind

    public init(file: String? = nil, _ kind: Kind) {
        self.file = file
        self.kind = kind
    }

    public var description: String {
        let prefix = file.map { "ONNX model \($0): " } ?? "ONNX model: "
        switch kind {
        case .unreadable(let m): return prefix + "cannot read the file: \(m)"
        case .notONNX(let m): return prefix + "not a valid ONNX file (\(m))"
        case .unsupportedModel(let m): return prefix + m
        case .unsupportedNodes(let list):
            let ops = Set(list.map(\.opType)).sorted().joined(separator: ", ")
            return prefix + "\(list.count) unsupported node(s) (ops: \(ops)); supported ops: "
                + ONNXPlan.supportedOps.sorted().joined(separator: ", ") + "\n  "
                + list.map(\.description).joined(separator: "\n  ")
        case .shape(let m): return prefix + "shape error: \(m)"
        case .usage(let m): return prefix + m
        case .tooLarge(let m): return prefix + "too large: \(m)"
        }
    }

    public var errorDescription: String? { description }
}
