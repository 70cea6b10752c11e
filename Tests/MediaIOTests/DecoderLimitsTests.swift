import FPNCore
import Foundation
@testable import MediaIO
import TestSupport
import XCTest

/// Pictures claiming absurd sizes are refused before their planes are allocated: each refusal names the input and
/// the picture size and raises the process's peak RSS by less than 4 MiB.
extension DecoderTests {
    /// A YUV4MPEG2 header declaring `width`x`height`, and one short (damaged) frame.
    private func y4m(_ width: Int, _ height: Int) throws -> String {
        let p = dir.appendingPathComponent("claim-\(width)x\(height).y4m").path
        try Data("YUV4MPEG2 W\(width) H\(height) F25:1 Ip A1:1 C420jpeg\nFRAME\nabcdefgh".utf8).write(to: URL(fileURLWithPath: p))
        return p
    }

    func testStreamDeclaringAPictureAboveTheLimitIsRefusedAtOpen() throws {
        let p = try y4m(16000, 16000)  // accepted by FFmpeg's own check (~268 M pixels), above ours
        assertSmallPeakMemoryGrowth("16000x16000") {
            expectOpenError(p) { $0 == .imageTooLarge(input: p, width: 16000, height: 16000) && "\($0)".contains("picture size 16000x16000") }
        }
        let side = try y4m(20000, 100)
        assertSmallPeakMemoryGrowth("20000x100") {
            expectOpenError(side) { $0 == .imageTooLarge(input: side, width: 20000, height: 100) && "\($0)".contains("picture size 20000x100") }
        }
        XCTAssertTrue(MediaIOError.imageTooLarge(input: p, width: 16000, height: 16000).description
            .hasSuffix("picture size 16000x16000 is larger than the limit (16384 pixels a side, 67108864 pixels)"))
    }

    func testHundredThousandSquareIsAnOpenErrorNotAnAllocation() throws {
        let p = try y4m(100_000, 100_000)  // FFmpeg's demuxer refuses it first
        assertSmallPeakMemoryGrowth("100000x100000") {
            expectOpenError(p) { if case .openFailed = $0 { return true }; return false }
        }
    }

    func testLimitItselfIsAllowed() {
        XCTAssertTrue(VideoDecoder.sizeAllowed(width: 7680, height: 4320))
        XCTAssertFalse(VideoDecoder.sizeAllowed(width: 16384, height: 16384))
        XCTAssertFalse(VideoDecoder.sizeAllowed(width: 16385, height: 1))
        XCTAssertFalse(VideoDecoder.sizeAllowed(width: -1, height: 1))
    }
}

/// Decoding container bytes from memory (the fuzz target's path) gives what decoding the file gives.
extension DecoderTests {
    func testMemoryInputDecodesLikeTheFile() throws {
        let path = try makeHalves(seconds: 1)
        let (_, fromFile) = try decodeAll(path)
        let memory = try VideoDecoder(data: try Data(contentsOf: URL(fileURLWithPath: path)), name: "halves (memory)")
        XCTAssertEqual(memory.metadata.source, "halves (memory)")
        XCTAssertEqual(memory.metadata.formatName, "matroska,webm")
        XCTAssertFalse(memory.metadata.isLive)
        var fromMemory: [Frame] = []
        while let f = memory.nextFrame() { fromMemory.append(f) }
        XCTAssertEqual(fromMemory.count, 10)
        XCTAssertEqual(fromMemory.map(\.info.pts), fromFile.map(\.info.pts))
        XCTAssertEqual(fromMemory.last?.image.pixels, fromFile.last?.image.pixels)
    }

    func testMemoryInputRefusesReferencesToOtherFiles() throws {
        // A concat list naming a real file: from memory, nothing else may be opened.
        let path = try makeHalves(seconds: 1)
        let list = Data("ffconcat version 1.0\nfile '\(path)'\n".utf8)
        XCTAssertThrowsError(try VideoDecoder(data: list, name: "list (memory)")) { e in
            XCTAssertTrue("\(e)".hasPrefix("list (memory): "), "\(e)")
        }
        XCTAssertThrowsError(try VideoDecoder(data: Data(), name: "nothing")) { XCTAssertEqual($0 as? MediaIOError, .inputEmpty("nothing")) }
    }
}
