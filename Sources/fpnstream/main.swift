import ArgumentParser
import FPNStream
import Tensor

/// `fpnstream`: the command-line entry point. Subcommands live in their own files.
struct FPNStreamCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "fpnstream",
        abstract: "Native video analytics: FFmpeg decode → FPN detector → tracker → JSONL + annotated video.",
        discussion: ExitStatus.helpText,
        version: "fpnstream \(fpnstreamVersion)\n\(Compute.description)",
        subcommands: [ProcessCommand.self, TailCommand.self, BenchCommand.self, TrackDets.self, ONNXRunCommand.self,
                      Features.self, DetectFrames.self, Calibrate.self, ServeCommand.self]
    )
}

/// The release this binary was built from.
let fpnstreamVersion = "0.9.0"

FPNStreamCommand.mainWithExitStatus()
