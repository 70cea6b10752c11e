/// Upper bounds on the sizes an ONNX file declares. Each is checked before anything is allocated from the
/// declared size, and exceeding one is an `ONNXError` of kind `.tooLarge` naming the file, the field and the
/// limit. The bounds are far above any vision model (ResNet-152 has ~500 nodes and no tensor over 2.4M elements).
///
/// Protobuf nesting needs no bound: the reader descends a fixed path (model → graph → node → attribute →
/// tensor) and skips sub-graphs (`If`/`Loop` bodies) without parsing them, so no input makes it recurse.
public enum ONNXLimits {
    /// Largest model file read: protobuf's own 2 GiB limit on one message.
    public static let maxFileBytes = 2 << 30
    /// Elements of one tensor (product of its dims): 2^29, i.e. 2 GiB of float32, the most a 2 GiB file can hold.
    public static let maxTensorElements = 1 << 29
    /// Dimensions of one tensor or declared value.
    public static let maxRank = 32
    /// Nodes of the graph.
    public static let maxNodes = 250_000
    /// Kernel sizes, strides, dilations, pads, groups and resize sizes.
    public static let maxGeometry = 65_536
    /// Resize scale factors.
    public static let maxResizeScale: Float = 1024
    /// Elements of a constant made by folding (broadcasting two constants can multiply their sizes).
    public static let maxFoldedElements = 1 << 24
    /// Bytes of one string field (node, tensor and value names, op types, string attributes).
    public static let maxStringBytes = 65_536

    /// The element count of `dims`, or a `.tooLarge` error naming `what` when it exceeds `maxTensorElements`
    /// (checked without overflow for any dims, however large).
    static func elementCount(_ dims: [Int64], of what: String) throws -> Int {
        guard dims.count <= maxRank else {
            throw ONNXError(.tooLarge("\(what) has \(dims.count) dims (limit \(maxRank))"))
        }
        guard let bad = dims.first(where: { $0 < 0 }) else {
            var count = 1
            for d in dims {
                let (p, overflow) = count.multipliedReportingOverflow(by: Int(d))
                guard !overflow, p <= maxTensorElements else {
                    throw ONNXError(.tooLarge("\(what) has dims \(dims), more than \(maxTensorElements) elements"))
                }
                count = p
            }
            return count
        }
        throw ONNXError(.notONNX("\(what) has a negative dim \(bad) in \(dims)"))
    }
}
