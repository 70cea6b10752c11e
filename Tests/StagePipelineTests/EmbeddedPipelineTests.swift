import StagePipeline
import TestSupport
import XCTest

final class EmbeddedPipelineTests: XCTestCase {
    /// A stateful stage: numbers each item and drops every third.
    struct Numbering: Stage {
        var seen = 0
        var closedWith: CloseReason?
        var name: String { "numbering" }
        mutating func process(_ input: Item) throws -> String? {
            seen += 1
            if input.frame == 13 { throw Boom(what: "unlucky") }
            return seen % 3 == 0 ? nil : "\(seen):\(input.frame)"
        }
        mutating func close(_ reason: CloseReason) throws -> [String] {
            closedWith = reason
            return reason == .endOfStream ? ["end after \(seen)"] : []
        }
    }

    func testFeedAndFinishSynchronously() throws {
        var h = EmbeddedPipeline(Numbering())
        XCTAssertEqual(try h.feed(Item(frame: 5)), "1:5")
        XCTAssertEqual(try h.feed([Item(frame: 6), Item(frame: 7), Item(frame: 8)]), ["2:6", "4:8"])
        XCTAssertEqual(h.stage.seen, 4)
        XCTAssertEqual(try h.finish(), ["end after 4"])
        XCTAssertEqual(h.closeReason, .endOfStream)
        XCTAssertEqual(h.stage.closedWith, .endOfStream)
    }

    func testErrorsAreWrappedLikeThePipeline() throws {
        var h = EmbeddedPipeline(Numbering())
        _ = try h.feed(Item(frame: 12))
        XCTAssertThrowsError(try h.feed(Item(frame: 13))) { error in
            XCTAssertEqual("\(error)", "stage 'numbering' failed on frame 13: boom: unlucky")
            XCTAssertEqual((error as? PipelineError)?.sequence, 1)
        }
        try h.abort()
        XCTAssertEqual(h.stage.closedWith, .aborted)
    }

    func testRunDrainsASourceThroughAFusedChain() throws {
        let chain = MapStage<Int, Int>("double") { $0 * 2 }.then(MapStage<Int, String>("format") { "#\($0)" })
        XCTAssertEqual(try EmbeddedPipeline.run(ArraySource([1, 2, 3]), through: chain), ["#2", "#4", "#6"])
    }

    func testSinkStageAndTapStage() throws {
        var got: [Int] = []
        var tap = EmbeddedPipeline(TapStage(ClosureSink<Int>("tap") { got.append($0) }))
        XCTAssertEqual(try tap.feed(4), 4)
        var sink = EmbeddedPipeline(SinkStage(ClosureSink<Int>("sink") { got.append($0 * 10) }))
        XCTAssertNil(try sink.feed(5))
        XCTAssertEqual(got, [4, 50])
    }
}
