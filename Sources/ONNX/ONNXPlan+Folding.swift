/// Constant folding of elementwise binaries with numpy broadcasting, done once at load (never per frame).
extension ONNXPlan {
    /// Folds `a op b` for two constants (numpy broadcasting).
    static func foldBinary(_ kind: Binary, _ a: ONNXTensor, _ b: ONNXTensor, name: String, label: String) throws -> ONNXTensor {
        guard let shape = broadcastShape(a.dims, b.dims) else {
            throw ONNXError(.shape("\(label): cannot broadcast \(a.dims) with \(b.dims)"))
        }
        let av = a.floats, bv = b.floats
        guard av.count == a.count, bv.count == b.count else {
            throw ONNXError(.unsupportedModel("\(label): constant operands must be numbers"))
        }
        let n = try ONNXLimits.elementCount(shape.map(Int64.init), of: "\(label): folded constant")
        guard n <= ONNXLimits.maxFoldedElements else {
            throw ONNXError(.tooLarge("\(label): folded constant \(shape) has more than \(ONNXLimits.maxFoldedElements) elements"))
        }
        var out = [Float](repeating: 0, count: n)
        for i in 0..<n {
            out[i] = kind.apply(av[broadcastIndex(i, shape, a.dims)], bv[broadcastIndex(i, shape, b.dims)])
        }
        if case .int = a.values, case .int = b.values {
            guard let ints = ONNXTensor(dims: shape, floats: out).ints else {
                throw ONNXError(.unsupportedModel("\(label): integer result is NaN, infinite or beyond 64 bits"))
            }
            return ONNXTensor(name: name, dims: shape, ints: ints)
        }
        return ONNXTensor(name: name, dims: shape, floats: out)
    }

    /// Numpy broadcast of two shapes, or nil.
    static func broadcastShape(_ a: [Int], _ b: [Int]) -> [Int]? {
        let r = max(a.count, b.count)
        var out = [Int](repeating: 1, count: r)
        for i in 0..<r {
            let da = i < r - a.count ? 1 : a[i - (r - a.count)]
            let db = i < r - b.count ? 1 : b[i - (r - b.count)]
            guard da == db || da == 1 || db == 1 else { return nil }
            out[i] = da == 1 ? db : da
        }
        return out
    }

    /// Flat index into a (right-aligned, broadcast) operand of shape `dims` for flat output index `i` of `shape`.
    static func broadcastIndex(_ i: Int, _ shape: [Int], _ dims: [Int]) -> Int {
        var rem = i, idx = 0, step = 1
        for k in (0..<shape.count).reversed() {
            let coord = rem % shape[k]; rem /= shape[k]
            let dk = k - (shape.count - dims.count)
            if dk >= 0 {
                if dims[dk] != 1 { idx += coord * step }
                step *= dims[dk]
            }
        }
        return idx
    }
}
