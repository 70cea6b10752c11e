import ArgumentParser
import FPNStream
import Foundation
import MediaIO

/// `fpnstream bench …`: throughput measurements (not tests; numbers depend on the machine and its load).
struct BenchCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "bench",
        abstract: "Measure throughput against reference tools in the same run.",
        subcommands: [BenchDecodeCommand.self, BenchTracker.self, BenchOps.self, BenchBackbone.self, BenchDetector.self, BenchTemporal.self]
    )
}
