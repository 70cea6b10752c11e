import Tensor
import XCTest

/// Random Float tensors from the shared deterministic generator.
extension TestRandom {
    /// Uniform in [lo, hi).
    public mutating func float(_ lo: Float = -1, _ hi: Float = 1) -> Float { Float(uniform(Double(lo), Double(hi))) }
    public mutating func tensor(_ shape: [Int], _ lo: Float = -1, _ hi: Float = 1) -> Tensor {
        Tensor(shape: shape, data: floats(shape.reduce(1, *), lo, hi))
    }
    public mutating func floats(_ n: Int, _ lo: Float = -1, _ hi: Float = 1) -> [Float] { (0..<n).map { _ in float(lo, hi) } }
}

/// Asserts max |a - r| ≤ tol · max(1, max |r|) and that shapes agree.
public func assertClose(_ a: Tensor, _ r: [Double], shape: [Int], tol: Double = 1e-5, _ what: String,
                 file: StaticString = #filePath, line: UInt = #line) {
    XCTAssertEqual(a.shape, shape, "\(what): shape", file: file, line: line)
    let av = a.array
    guard av.count == r.count else { return XCTFail("\(what): \(av.count) vs \(r.count) elements", file: file, line: line) }
    let scale = max(1, r.map(abs).max() ?? 0)
    var worst = 0.0, at = 0
    for i in r.indices { let d = abs(Double(av[i]) - r[i]); if d > worst || d.isNaN { worst = d; at = i } }
    XCTAssert(worst <= tol * scale, "\(what): max abs diff \(worst) at \(at) (got \(av[at]), want \(r[at])), scale \(scale)",
              file: file, line: line)
}
