/// Typed access to a node's attributes, remembering which names the op consumed so the rest can be reported.
final class AttributeReader {
    let node: ONNXNode
    private var used: Set<String> = []

    init(node: ONNXNode) { self.node = node }

    private func get(_ name: String) -> ONNXAttribute? { used.insert(name); return node.attributes[name] }

    func allow(_ names: [String]) { used.formUnion(names) }

    func int(_ name: String) -> Int64? { if case .int(let v)? = get(name) { return v }; return nil }
    func float(_ name: String) -> Float? {
        switch get(name) {
        case .float(let v)?: return v
        case .int(let v)?: return Float(v)
        default: return nil
        }
    }
    func string(_ name: String) -> String? { if case .string(let v)? = get(name) { return v }; return nil }
    func ints(_ name: String) -> [Int64]? { if case .ints(let v)? = get(name) { return v }; return nil }
    func floats(_ name: String) -> [Float]? { if case .floats(let v)? = get(name) { return v }; return nil }
    func tensor(_ name: String) -> ONNXTensor? { if case .tensor(let v)? = get(name) { return v }; return nil }
    /// A 2-element ints attribute as (h, w).
    func pair(_ name: String) -> (Int, Int)? {
        guard let v = ints(name), v.count == 2 else { return nil }
        return (Int(v[0]), Int(v[1]))
    }
    /// Attributes the op did not look at: reported, since silently ignoring one could change results.
    func unknown() -> [String] {
        node.attributes.keys.filter { !used.contains($0) }.sorted().map { "attribute \($0) is not supported" }
    }
}
