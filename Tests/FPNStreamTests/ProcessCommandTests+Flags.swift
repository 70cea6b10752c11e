import Foundation
import TestSupport
import XCTest

/// Frame selection flags, usage messages and the no-output warning of `process`.
extension ProcessCommandTests {
    func testStrideAndMaxFPSSelectFrames() throws {
        let input = try makeClip()  // 40 frames at 10 fps
        let strided = path("stride.jsonl"), limited = path("maxfps.jsonl")
        let r1 = try fpnstream(["process", input, "--jsonl", strided, "--stride", "4", "--quiet"])
        XCTAssertEqual(r1.status, 0, r1.stderr)
        XCTAssertEqual(frameLines(try jsonlObjects(strided)).map { $0["frame"] as? Int }, [0, 4, 8, 12, 16, 20, 24, 28, 32, 36])
        let r2 = try fpnstream(["process", input, "--jsonl", limited, "--max-fps", "2", "--quiet"])
        XCTAssertEqual(r2.status, 0, r2.stderr)
        XCTAssertEqual(frameLines(try jsonlObjects(limited)).map { $0["frame"] as? Int }, [0, 5, 10, 15, 20, 25, 30, 35])
    }

    /// Negative numbers get a message naming the flag (not ArgumentParser's "Missing value"), in both spellings.
    func testNegativeFrameCountsNameTheFlag() throws {
        for args in [["--max-frames", "-1"], ["--max-frames=-1"], ["--stride", "-2"], ["--max-fps", "-5"]] {
            let r = try fpnstream(["process", "x.mp4"] + args)
            XCTAssertEqual(r.status, 2, r.stderr)
            XCTAssertFalse(r.stderr.contains("Missing value"), r.stderr)
            let flag = String(args[0].split(separator: "=")[0])
            XCTAssertTrue(r.stderr.contains("\(flag) must be "), r.stderr)
        }
        let tail = try fpnstream(["tail", "udp://127.0.0.1:9", "--max-frames", "-1"])
        XCTAssertEqual(tail.status, 2, tail.stderr)
        XCTAssertTrue(tail.stderr.contains("--max-frames must be at least 1 (got -1)"), tail.stderr)
    }

    /// `--precision`: an unknown value is a usage error naming the flag; bf16 runs where the CPU has AVX512_BF16
    /// (the summary line says so) and is a usage error naming the CPU's features elsewhere.
    func testPrecisionFlag() throws {
        let bad = try fpnstream(["process", "x.mp4", "--precision", "fp16"])
        XCTAssertEqual(bad.status, 2, bad.stderr)
        XCTAssertTrue(bad.stderr.contains("--precision must be one of f32, bf16 (got 'fp16')"), bad.stderr)
        let input = try makeClip()
        let out = path("bf16.jsonl")
        let r = try fpnstream(["process", input, "--jsonl", out, "--precision", "bf16", "--quiet"])
        let version = String(decoding: try fpnstream(["--version"]).stdout, as: UTF8.self)
        if version.contains("avx512_bf16") && !version.contains("compute: openblas") {
            XCTAssertEqual(r.status, 0, r.stderr)
            let summary = try jsonlObjects(out).last
            XCTAssertEqual(summary?["type"] as? String, "summary")
            XCTAssertNotNil(summary?["compute"] as? String)
            XCTAssertEqual(summary?["precision"] as? String, "bf16")
            // Where the CPU's bf16 dot products are slower than its f32 FMAs, the user who asked for bf16 is told.
            let slower = version.contains("--precision bf16 is slower than f32 on this CPU")
            XCTAssertEqual(r.stderr.contains("warning: bf16 dot products run at"), slower, r.stderr)
        } else {
            XCTAssertEqual(r.status, 2, r.stderr)
            XCTAssertTrue(r.stderr.contains("precision bf16 needs AVX512_BF16"), r.stderr)
        }
    }

    func testMistypedSubcommandSuggestsTheNearest() throws {
        let r = try fpnstream(["proces", "x.mp4"])
        XCTAssertEqual(r.status, 2, r.stderr)
        XCTAssertEqual(errorLines(r), ["fpnstream: unknown command 'proces' (did you mean 'process'?)"])
        let nested = try fpnstream(["bench", "backbon"])
        XCTAssertEqual(nested.status, 2, nested.stderr)
        XCTAssertEqual(errorLines(nested), ["fpnstream: unknown command 'backbon' (did you mean 'backbone'?)"])
        let far = try fpnstream(["zzzzzz"])
        XCTAssertEqual(far.status, 2, far.stderr)
        XCTAssertTrue(far.stderr.hasPrefix("fpnstream: unknown command 'zzzzzz'; commands: process, tail"), far.stderr)
    }

    /// No output at all: one warning line, and the run still goes through (a decode or speed check).
    func testNoOutputWarnsOnce() throws {
        let input = try makeClip(seconds: 1)
        let r = try fpnstream(["process", input, "--quiet"])
        XCTAssertEqual(r.status, 0, r.stderr)
        XCTAssertEqual(errorLines(r), ["warning: no output requested (-o, --jsonl, --mot, --coco, --panoptic or the "
                                       + "pipeline's outputs): nothing will be written"])
        let withOutput = try fpnstream(["process", input, "--jsonl", path("x.jsonl"), "--quiet"])
        XCTAssertEqual(withOutput.stderr, "")
    }
}
