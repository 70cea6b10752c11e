import Serve
import XCTest

final class ShardTests: XCTestCase {
    let ids = (0..<1000).map { "cam-\($0)" }

    func testEveryCameraOnExactlyOneShard() {
        for n in 1...7 {
            let shards = (0..<n).map { Shard(index: $0, count: n) }
            for id in ids {
                XCTAssertEqual(shards.filter { $0.owns(id) }.count, 1, "\(id) with \(n) shards")
            }
        }
    }

    func testSplitIsRoughlyEven() {
        let n = 4
        let counts = (0..<n).map { s in ids.filter { Shard.owner(of: $0, count: n) == s }.count }
        // 1000 ids into 4: each gets 250 ± a few standard deviations (√(1000·¼·¾) ≈ 14).
        for c in counts { XCTAssertTrue((180...320).contains(c), "\(counts)") }
    }

    func testGrowingMovesOnlyToTheNewShard() {
        for n in 1...6 {
            var moved = 0
            for id in ids {
                let before = Shard.owner(of: id, count: n), after = Shard.owner(of: id, count: n + 1)
                if before != after {
                    moved += 1
                    XCTAssertEqual(after, n, "\(id) moved between old shards \(before) → \(after)")
                }
            }
            // About 1/(n+1) of them move (binomial; generous bounds).
            let expected = Double(ids.count) / Double(n + 1)
            XCTAssertTrue(Double(moved) > expected * 0.7 && Double(moved) < expected * 1.3, "n=\(n): \(moved) moved")
        }
    }

    func testOwnerIsAFixedFunctionOfTheId() {
        // The same ids land on the same shards on every machine and release. Expected values from an independent
        // Python implementation of the documented hash (FNV-1a, shard index mixed in, splitmix64 finalizer).
        XCTAssertEqual((0..<9).map { Shard.owner(of: "cam\($0)", count: 3) }, [1, 2, 0, 0, 0, 2, 1, 0, 1])
        XCTAssertEqual((0..<9).map { Shard.owner(of: "cam-\($0)", count: 3) }, [1, 2, 1, 1, 2, 0, 1, 1, 0])
        XCTAssertEqual(Shard.owner(of: "front-door", count: 1), 0)
    }

    func testParsing() {
        XCTAssertEqual(Shard(parsing: "1/3"), Shard(index: 1, count: 3))
        XCTAssertEqual(Shard(parsing: "0/1"), .all)
        for bad in ["3/3", "-1/2", "1", "a/b", "1/0", "1/2/3", ""] { XCTAssertNil(Shard(parsing: bad), bad) }
    }
}
