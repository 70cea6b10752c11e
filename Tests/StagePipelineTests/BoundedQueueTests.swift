import Dispatch
import StagePipeline
import XCTest

final class BoundedQueueTests: XCTestCase {
    func testCloseDrainsThenEnds() {
        let q = BoundedQueue<Int>(capacity: 3)
        XCTAssertEqual(q.push(1), .enqueued)
        XCTAssertEqual(q.push(2), .enqueued)
        q.close()
        XCTAssertEqual(q.push(3), .rejected)
        XCTAssertEqual(q.pop(), 1)
        XCTAssertEqual(q.pop(), 2)
        XCTAssertNil(q.pop())
        XCTAssertEqual(q.maxDepth, 2)
    }

    func testCancelDiscardsAndReleasesABlockedProducer() {
        let q = BoundedQueue<Int>(capacity: 1)
        XCTAssertEqual(q.push(1), .enqueued)
        let done = DispatchSemaphore(value: 0)
        let result = Shared<BoundedQueue<Int>.PushResult?>(nil)
        DispatchQueue.global().async {
            result.with { $0 = q.push(2) }  // blocks: the queue is full
            done.signal()
        }
        q.cancel()
        done.wait()
        XCTAssertEqual(result.get, .rejected)
        XCTAssertNil(q.pop())
        XCTAssertEqual(q.depth, 0)
    }

    func testDropPoliciesKeepTheRightItems() {
        let oldest = BoundedQueue<Int>(capacity: 2, policy: .dropOldest)
        let newest = BoundedQueue<Int>(capacity: 2, policy: .dropNewest)
        for i in 0..<5 { oldest.push(i); newest.push(i) }
        XCTAssertEqual(oldest.drops, 3)
        XCTAssertEqual(newest.drops, 3)
        oldest.close(); newest.close()
        XCTAssertEqual([oldest.pop(), oldest.pop(), oldest.pop()], [3, 4, nil])
        XCTAssertEqual([newest.pop(), newest.pop(), newest.pop()], [0, 1, nil])
    }

    func testRingWrapsAroundInOrder() {
        let q = BoundedQueue<Int>(capacity: 3)
        var out: [Int] = []
        for i in 0..<10 {
            q.push(i)
            if q.depth == 3 { out.append(q.pop()!) }  // keeps the ring full, so head and tail wrap
        }
        q.close()
        while let x = q.pop() { out.append(x) }
        XCTAssertEqual(out, Array(0..<10))
        XCTAssertLessThanOrEqual(q.maxDepth, 3)
    }
}

final class LatencyHistogramTests: XCTestCase {
    func testPercentilesWithinBucketWidth() {
        var h = LatencyHistogram()
        for v in (1...1000).reversed() { h.record(ms: Double(v)) }
        XCTAssertEqual(h.count, 1000)
        XCTAssertEqual(h.meanMs, 500.5, accuracy: 1e-9)
        XCTAssertEqual(h.minMs, 1)
        XCTAssertEqual(h.maxMs, 1000)
        XCTAssertEqual(h.percentile(0.5), 500, accuracy: 500 * 0.02)
        XCTAssertEqual(h.percentile(0.95), 950, accuracy: 950 * 0.02)
        XCTAssertEqual(h.percentile(1.0), 1000, accuracy: 1000 * 0.02)
        XCTAssertEqual(h.percentile(0.0), 1, accuracy: 0.02)
    }

    func testSmallAndOddValues() {
        var h = LatencyHistogram()
        XCTAssertEqual(h.percentile(0.5), 0)
        h.record(ms: 0.0001)
        h.record(ms: .nan)
        h.record(ms: -3)
        h.record(ms: 7_200_000)  // two hours, beyond the last bucket
        XCTAssertEqual(h.count, 4)
        XCTAssertEqual(h.percentile(0.5), 0, accuracy: 0.001)
        XCTAssertEqual(h.percentile(1.0), 7_200_000, "clamped to the observed max")
    }
}
