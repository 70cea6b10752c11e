import Tensor

/// MatMul (numpy semantics for rank >= 2: batch dimensions broadcast, the last two multiply), as attention blocks
/// (YOLO11's C2PSA) use it between two runtime tensors; a constant second operand is allowed too.
extension ONNXPlan {
    static func lowerMatMul(_ b: inout Builder, _ n: LoweringNode) -> Op? {
        guard n.node.inputs.count == 2 else { b.fail("expects 2 inputs"); return nil }
        switch (b.constant(n, 0), b.constant(n, 1)) {
        case (nil, nil): return .matMul(nil)
        case (nil, let c?):
            guard c.dims.count >= 2, c.floats.count == c.count else {
                b.fail("constant second operand must be a float tensor of rank >= 2"); return nil
            }
            return .matMul(c)
        case (_?, nil): b.fail("a constant first operand is not supported"); return nil
        case (_?, _?): b.fail("MatMul of two constants is not supported"); return nil
        }
    }

    /// Output shape of `a · b` for ranks >= 2, or a message.
    static func matMulShape(_ a: [Int], _ b: [Int]) -> Result<[Int], AnyRankOp.Failure> {
        guard a.count >= 2, b.count >= 2 else { return .failure(.init(message: "operands of rank < 2 are not supported")) }
        let (m, k) = (a[a.count - 2], a[a.count - 1]), (k2, n) = (b[b.count - 2], b[b.count - 1])
        guard k == k2 else { return .failure(.init(message: "inner dimensions differ: \(a) · \(b)")) }
        guard let batch = broadcastShape(Array(a.dropLast(2)), Array(b.dropLast(2))) else {
            return .failure(.init(message: "batch dimensions of \(a) and \(b) do not broadcast"))
        }
        return .success(batch + [m, n])
    }

    /// out = a · b per (broadcast) batch item, one GEMM each.
    static func runMatMul(_ a: Tensor, _ b: Tensor, into out: Tensor) {
        let (m, k, n) = (a.shape[a.rank - 2], a.shape[a.rank - 1], b.shape[b.rank - 1])
        let batch = Array(out.shape.dropLast(2)), aBatch = Array(a.shape.dropLast(2)), bBatch = Array(b.shape.dropLast(2))
        let count = batch.reduce(1, *)
        a.withUnsafeBufferPointer { pa in
            b.withUnsafeBufferPointer { pb in
                out.withUnsafeMutableBufferPointer { pc in
                    for i in 0..<count {
                        let ia = broadcastIndex(i, batch, aBatch), ib = broadcastIndex(i, batch, bBatch)
                        Gemm.multiply(m: m, n: n, k: k, a: pa.baseAddress! + ia * m * k, lda: k,
                                      b: pb.baseAddress! + ib * k * n, ldb: n, beta: 0,
                                      c: pc.baseAddress! + i * m * n, ldc: n)
                    }
                }
            }
        }
    }
}
