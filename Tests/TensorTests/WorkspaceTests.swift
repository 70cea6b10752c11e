import Foundation
import TestSupport
import XCTest
@testable import Tensor

final class WorkspaceTests: XCTestCase {
    /// A small backbone-like forward pass using every workspace-backed op kind.
    private func forward(_ x: Tensor, _ convs: [Conv2d], _ ws: Workspace) -> Tensor {
        let a = convs[0](x, in: ws)
        let p = a.maxPool2d(kernel: 3, stride: 2, padding: 1, in: ws)
        let b = convs[1](p, in: ws)
        ws.release(a)
        let c = convs[2](b, in: ws)
        let s = c.add(p, activation: .relu, in: ws)
        let u = s.upsampleNearest(height: a.h, width: a.w, in: ws)
        return u.resizeBilinear(height: 9, width: 11, in: ws)
    }

    func testFramesAfterTheFirstAllocateNothing() {
        var rng = TestRandom(seed: 201)
        let convs = [Conv2d(weight: rng.tensor([8, 3, 7, 7]), bias: rng.floats(8), stride: 2, padding: 3, activation: .relu),
                     Conv2d(weight: rng.tensor([4, 8, 1, 1]), activation: .relu),
                     Conv2d(weight: rng.tensor([8, 4, 3, 3]), bias: rng.floats(8), padding: 1)]
        let ws = Workspace()
        var counts: [Int] = []
        var first: [Float] = []
        for frame in 0..<5 {
            ws.beginFrame()
            let x = rng.tensor([1, 3, 41, 37])
            let y = forward(x, convs, ws)
            if frame == 0 { first = y.array }
            counts.append(ws.allocationCount)
            if frame == 1 {
                // Same buffers, different input: the values change (no stale results are returned).
                XCTAssertNotEqual(y.array, first)
            }
        }
        XCTAssertGreaterThan(counts[0], 0)
        XCTAssertEqual(Set(counts).count, 1, "allocations per frame after the first: \(counts)")
        // A larger input grows the arena once, then is flat again.
        ws.beginFrame(); _ = forward(rng.tensor([1, 3, 64, 60]), convs, ws)
        let grown = ws.allocationCount
        XCTAssertGreaterThan(grown, counts[0])
        for _ in 0..<3 { ws.beginFrame(); _ = forward(rng.tensor([1, 3, 64, 60]), convs, ws) }
        XCTAssertEqual(ws.allocationCount, grown)
    }

    func testReleaseLetsALaterTensorReuseTheBuffer() {
        let ws = Workspace()
        let a = ws.tensor([100])
        ws.release(a)
        let b = ws.tensor([80])
        XCTAssertTrue(a.storage === b.storage)
        XCTAssertEqual(ws.bufferCount, 1)
        let c = ws.tensor([80])
        XCTAssertFalse(c.storage === b.storage)
        XCTAssertEqual(ws.bufferCount, 2)
        XCTAssertEqual(ws.allocatedBytes, 180 * 4)
    }

    /// `holds`: a tensor lent this frame, not one released, from another workspace or owned by itself.
    func testHoldsOnlyTheTensorsItLendsThisFrame() {
        let ws = Workspace(), other = Workspace()
        let a = ws.tensor([8]), b = ws.tensor([8])
        XCTAssertTrue(ws.holds(a))
        ws.release(b)
        XCTAssertFalse(ws.holds(b), "released")
        XCTAssertFalse(ws.holds(Tensor(shape: [8])), "own storage")
        XCTAssertFalse(ws.holds(other.tensor([8])), "another workspace's")
        ws.beginFrame()
        XCTAssertFalse(ws.holds(a), "the frame ended")
    }

    func testTensorFromAnEndedFrameIsDetected() {
        let ws = Workspace()
        let a = ws.tensor([4])
        ws.beginFrame()
        let b = ws.tensor([4])     // reuses a's storage
        XCTAssertTrue(a.storage === b.storage)
        XCTAssertNotEqual(a.generation, a.storage.generation)   // checkValid() on `a` would trap
        XCTAssertEqual(b.generation, b.storage.generation)
    }

    /// `FPNSTREAM_HUGEPAGES`: on marks large buffers for transparent huge pages, unset or off does not, any other
    /// value warns and stays off.
    func testHugePagesDecision() {
        XCTAssertEqual(TensorStorage.hugePagesDecision(environment: [:]).enabled, false)
        XCTAssertNil(TensorStorage.hugePagesDecision(environment: [:]).warning)
        XCTAssertEqual(TensorStorage.hugePagesDecision(environment: ["FPNSTREAM_HUGEPAGES": "ON"]).enabled, true)
        XCTAssertEqual(TensorStorage.hugePagesDecision(environment: ["FPNSTREAM_HUGEPAGES": "off"]).enabled, false)
        let typo = TensorStorage.hugePagesDecision(environment: ["FPNSTREAM_HUGEPAGES": "yes"])
        XCTAssertFalse(typo.enabled)
        XCTAssertEqual(typo.warning, "FPNSTREAM_HUGEPAGES=yes is not a setting (on, off); huge pages stay off")
    }

    /// A large buffer's mapping carries the kernel's huge-page advice (`hg` in /proc/self/smaps) exactly when this
    /// process marks huge pages.
    func testLargeBuffersAreMarkedForHugePagesOnlyWhenOn() throws {
        #if os(Linux)
        let storage = TensorStorage(capacity: 3 << 20)   // 12 MB
        let address = UInt(bitPattern: storage.base)
        // procfs files report size 0: read to the end instead of by size.
        let file = try XCTUnwrap(FileHandle(forReadingAtPath: "/proc/self/smaps"))
        let smaps = String(decoding: file.readDataToEndOfFile(), as: UTF8.self)
        var inMapping = false, flags: String?
        for line in smaps.split(separator: "\n") {
            let fields = line.split(separator: " ")
            if let range = fields.first, range.contains("-"), fields.count >= 5 {
                let ends = range.split(separator: "-").compactMap { UInt($0, radix: 16) }
                inMapping = ends.count == 2 && ends[0] <= address && address < ends[1]
            } else if inMapping, line.hasPrefix("VmFlags:") {
                flags = String(line)
                break
            }
        }
        let vmFlags = try XCTUnwrap(flags, "no mapping holds the buffer")
        XCTAssertEqual(vmFlags.split(separator: " ").contains("hg"), TensorStorage.marksHugePages, vmFlags)
        #else
        throw XCTSkip("Linux only")
        #endif
    }
}
