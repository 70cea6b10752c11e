import Dispatch
import StagePipeline
import TestSupport
import XCTest

final class PipelineTests: XCTestCase {
    func testOrderPreservedThroughStagesOfVaryingCost() throws {
        let source = CountingSource(count: 300)
        let rec = Recorder<Item>()
        // Costs vary per item and per stage, so stages run at different speeds and queues fill and empty.
        let pipeline = Pipeline.from(source, options: PipelineOptions(queueCapacity: 2))
            .then(MapStage<Item, Item>("a") { x in _ = spin(x.frame % 7); return x })
            .then(MapStage<Item, Item>("b") { x in _ = spin((x.frame * 5) % 3); return x }, queue: QueueOptions(capacity: 1))
            .then(MapStage<Item, Item>("c") { x in _ = spin(x.frame % 2 == 0 ? 4 : 0); return x })
            .sink(rec.sink)
        let report = try pipeline.run()
        XCTAssertEqual(rec.items.get.map(\.frame), Array(100..<400))
        XCTAssertEqual(rec.closeReason.get, .endOfStream)
        guard case .finished = report.completion else { return XCTFail("\(report.completion)") }
        XCTAssertEqual(report.stages.map(\.name), ["src", "a", "b", "c", "recorder"])
        XCTAssertEqual(report.stages.map(\.count), [300, 300, 300, 300, 300])
        XCTAssertEqual(report.stages.map(\.drops), [0, 0, 0, 0, 0])
        for s in report.stages.dropFirst() { XCTAssertLessThanOrEqual(s.maxQueueDepth, s.queueCapacity, s.name) }
    }

    func testBackpressureBoundIsNeverExceeded() throws {
        let capacity = 3
        let source = CountingSource(count: 50)
        let consumed = Shared(0)
        let maxAhead = Shared(0)
        let gate = DispatchSemaphore(value: 0)
        source.beforeNext = { n in
            // Items produced but not yet consumed: at most 1 in the consumer + `capacity` queued + the one in hand.
            let ahead = n - consumed.get
            maxAhead.with { $0 = max($0, ahead) }
            // Item `capacity + 1` is being requested: items 1...capacity are queued, item 0 is held by the consumer.
            if n == capacity + 1 { gate.signal() }
        }
        let rec = Recorder<Item>()
        rec.onConsume = { item in
            if item.frame == 100 { gate.wait() }
            consumed.with { $0 += 1 }
        }
        let pipeline = Pipeline.from(source).sink(rec.sink, queue: QueueOptions(capacity: capacity))
        let report = try pipeline.run()
        XCTAssertEqual(rec.items.get.count, 50)
        let sinkMetrics = report.stages[1]
        XCTAssertEqual(sinkMetrics.maxQueueDepth, capacity, "the queue filled up to, and not beyond, its capacity")
        XCTAssertEqual(sinkMetrics.drops, 0, "files never drop")
        XCTAssertLessThanOrEqual(maxAhead.get, capacity + 1)
        XCTAssertGreaterThanOrEqual(maxAhead.get, capacity + 1, "the gate guaranteed the queue was full once")
    }

    func testErrorNamesStageAndFrameAndStopsEverything() throws {
        let source = CountingSource(count: 10_000)
        let rec = Recorder<Item>()
        let pipeline = Pipeline.from(source)
            .then(MapStage<Item, Item>("decode-ish") { $0 })
            .then(MapStage<Item, Item>("detect") { x in
                if x.frame == 105 { throw Boom(what: "bad tensor") }
                return x
            })
            .sink(rec.sink)
        XCTAssertThrowsError(try pipeline.run()) { error in
            guard let e = error as? PipelineError else { return XCTFail("\(error)") }
            XCTAssertEqual(e.stage, "detect")
            XCTAssertEqual(e.frameIndex, 105)
            XCTAssertEqual(e.sequence, 5)
            XCTAssertEqual(e.phase, .process)
            XCTAssertEqual(e.description, "stage 'detect' failed on frame 105: boom: bad tensor")
        }
        // Items that passed `detect` before the failure still reach the sink; the sink then sees end of stream.
        XCTAssertEqual(rec.items.get.map(\.frame), Array(100..<105))
        XCTAssertEqual(rec.closeReason.get, .endOfStream)
        XCTAssertLessThan(source.produced.get, 10_000, "the source was stopped")
    }

    func testSourceErrorNamesTheSource() throws {
        let source = CountingSource(name: "decode", count: 100)
        source.beforeNext = { n in if n == 3 { throw Boom(what: "corrupt packet") } }
        let rec = Recorder<Item>()
        let pipeline = Pipeline.from(source).sink(rec.sink)
        pipeline.start()
        let report = pipeline.wait()
        XCTAssertEqual(report.completion.error?.description, "source 'decode' failed after frame 102: boom: corrupt packet")
        XCTAssertEqual(rec.items.get.map(\.frame), [100, 101, 102], "what was decoded before the error is kept")
        XCTAssertEqual(rec.closeReason.get, .endOfStream)
    }

    func testErrorInFusedStageNamesInnerStage() throws {
        let fused = MapStage<Item, Item>("resize") { $0 }
            .then(MapStage<Item, Int>("normalize") { x in
                if x.frame == 101 { throw Boom(what: "nan") }
                return x.frame
            })
        XCTAssertEqual(fused.name, "resize+normalize")
        let pipeline = Pipeline.from(CountingSource(count: 5)).then(fused).sink(ClosureSink<Int>("sink") { _ in })
        XCTAssertThrowsError(try pipeline.run()) { error in
            XCTAssertEqual("\(error)", "stage 'normalize' failed on frame 101: boom: nan")
        }
    }

    func testErrorWhileClosingIsReported() throws {
        struct FailingClose: Sink {
            var name: String { "encoder" }
            func consume(_ input: Item) throws {}
            func close(_ reason: CloseReason) throws { throw Boom(what: "trailer") }
        }
        let pipeline = Pipeline.from(CountingSource(count: 3)).sink(FailingClose())
        XCTAssertThrowsError(try pipeline.run()) { error in
            XCTAssertEqual("\(error)", "stage 'encoder' failed while closing: boom: trailer")
        }
    }

    func testCancelDrainLetsInFlightItemsThrough() throws {
        let source = CountingSource(count: Int.max)  // a live source that never ends by itself
        let rec = Recorder<Item>()
        let box = Shared<Pipeline?>(nil)
        rec.onConsume = { item in if item.frame == 110 { box.get?.cancel(.drain) } }
        let pipeline = Pipeline.from(source, options: PipelineOptions(queueCapacity: 4))
            .then(MapStage<Item, Item>("work") { x in _ = spin(1); return x })
            .sink(rec.sink)
        box.with { $0 = pipeline }
        let report = try pipeline.run()
        guard case .drained = report.completion else { return XCTFail("\(report.completion)") }
        XCTAssertEqual(rec.closeReason.get, .endOfStream)
        // Everything the source produced reached the sink, in order.
        XCTAssertEqual(rec.items.get.map(\.frame), Array(100..<(100 + source.produced.get)))
        XCTAssertGreaterThanOrEqual(rec.items.get.count, 11)
    }

    func testCancelAbortDiscardsInFlightItems() throws {
        let source = CountingSource(count: Int.max)
        let entered = DispatchSemaphore(value: 0)
        let gate = DispatchSemaphore(value: 0)
        let rec = Recorder<Item>()
        let pipeline = Pipeline.from(source, options: PipelineOptions(queueCapacity: 2))
            .then(MapStage<Item, Item>("slow") { x in
                if x.frame == 100 { entered.signal(); gate.wait() }
                return x
            })
            .sink(rec.sink)
        pipeline.start()
        entered.wait()
        pipeline.cancel(.abort)
        gate.signal()
        let report = pipeline.wait()
        guard case .aborted = report.completion else { return XCTFail("\(report.completion)") }
        XCTAssertEqual(rec.closeReason.get, .aborted)
        XCTAssertLessThanOrEqual(rec.items.get.count, 1, "only the item in hand may pass, queued ones are discarded")
        XCTAssertGreaterThan(source.produced.get, rec.items.get.count)
    }

    func testCancelInterruptsABlockedSourceWithoutReportingItsError() throws {
        let source = CountingSource(name: "rtsp", count: Int.max)
        let unblock = DispatchSemaphore(value: 0)
        let rec = Recorder<Item>()
        source.onInterrupt = { unblock.signal() }
        source.beforeNext = { n in
            if n == 3 {
                unblock.wait()  // a camera that stopped sending: only interrupt() releases it
                throw Boom(what: "interrupted")
            }
        }
        rec.onConsume = { _ in }
        let box = Shared<Pipeline?>(nil)
        rec.onConsume = { item in if item.frame == 102 { box.get?.cancel(.drain) } }
        let pipeline = Pipeline.from(source).sink(rec.sink)
        box.with { $0 = pipeline }
        let report = try pipeline.run()
        guard case .drained = report.completion else { return XCTFail("\(report.completion)") }
        XCTAssertEqual(rec.items.get.map(\.frame), [100, 101, 102])
        XCTAssertEqual(rec.closeReason.get, .endOfStream)
    }

    /// Keep-latest with a slow consumer: the consumer holds item 0 until the source is done; of items 1...9 only the
    /// newest `capacity` survive.
    func testKeepLatestDropsOldestAndCountsDrops() throws {
        let (received, metrics) = try runSlowConsumer(policy: .dropOldest)
        XCTAssertEqual(received, [100, 108, 109])
        XCTAssertEqual(metrics.drops, 7)
        XCTAssertEqual(metrics.count, 3)
        XCTAssertEqual(metrics.maxQueueDepth, 2)
    }

    func testDropNewestKeepsQueuedItems() throws {
        let (received, metrics) = try runSlowConsumer(policy: .dropNewest)
        XCTAssertEqual(received, [100, 101, 102])
        XCTAssertEqual(metrics.drops, 7)
    }

    private func runSlowConsumer(policy: DropPolicy) throws -> ([Int], StageMetrics) {
        let source = CountingSource(count: 10)
        let started = DispatchSemaphore(value: 0)
        let sourceDone = DispatchSemaphore(value: 0)
        source.beforeNext = { n in if n == 1 { started.wait() } }  // item 0 is in the consumer before item 1 exists
        source.onClose = { sourceDone.signal() }
        let rec = Recorder<Item>()
        rec.onConsume = { item in
            if item.frame == 100 { started.signal(); sourceDone.wait() }
        }
        let pipeline = Pipeline.from(source).sink(rec.sink, queue: QueueOptions(capacity: 2, policy: policy))
        let report = try pipeline.run()
        guard case .finished = report.completion else { XCTFail("\(report.completion)"); return ([], report.stages[1]) }
        return (rec.items.get.map(\.frame), report.stages[1])
    }

    func testFilteredItemsAndFlushedOutputs() throws {
        /// Emits sums of pairs; an odd last item is flushed at end of stream.
        struct PairSum: Stage {
            var pending: Int?
            var name: String { "pairs" }
            mutating func process(_ input: Int) throws -> Int? {
                if let p = pending { pending = nil; return p + input }
                pending = input
                return nil
            }
            mutating func close(_ reason: CloseReason) throws -> [Int] {
                defer { pending = nil }
                return pending.map { [$0 * 1000] } ?? []
            }
        }
        var out: [Int] = []
        let pipeline = Pipeline.from(ArraySource([1, 2, 3, 4, 5]))
            .then(PairSum())
            .build(onOutput: { out.append($0) })
        let report = try pipeline.run()
        XCTAssertEqual(out, [3, 7, 5000])
        XCTAssertEqual(report.stages[1].count, 5)
        XCTAssertEqual(report.stages[1].filtered, 3)
    }

    func testMetricsSnapshotWhileRunningAndSummary() throws {
        let gate = DispatchSemaphore(value: 0)
        let seen = DispatchSemaphore(value: 0)
        let pipeline = Pipeline.from(CountingSource(name: "decode", count: 20))
            .then(MapStage<Item, Item>("detect") { x in
                if x.frame == 110 { seen.signal(); gate.wait() }
                return x
            })
            .sink(ClosureSink<Item>("jsonl") { _ in })
        pipeline.start()
        seen.wait()
        let mid = pipeline.metrics()
        XCTAssertEqual(mid.map(\.name), ["decode", "detect", "jsonl"])
        XCTAssertEqual(mid[1].count, 10, "items 0...9 finished, item 10 is still in process()")
        gate.signal()
        let report = pipeline.wait()
        let text = report.formattedSummary()
        let lines = text.split(separator: "\n").map(String.init)
        XCTAssertEqual(lines.count, 5, text)
        XCTAssertTrue(lines[0].hasPrefix("stage "), text)
        for col in ["count", "drops", "mean ms", "p50 ms", "p95 ms", "max q"] { XCTAssertTrue(lines[0].contains(col), col) }
        XCTAssertTrue(lines[2].hasPrefix("detect "), text)
        XCTAssertTrue(lines[2].contains(" 20 "), text)
        XCTAssertTrue(lines[4].hasPrefix("total: 20 items in "), text)
    }
}
