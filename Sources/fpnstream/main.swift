import ArgumentParser
import FPNStream

/// `fpnstream`: the command-line entry point. Subcommands live in their own files.
struct FPNStreamCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "fpnstream",
        abstract: "Native video analytics: FFmpeg decode → FPN detector → tracker → JSONL + annotated video.",
        discussion: ExitStatus.helpText,
        subcommands: [ProcessCommand.self, TailCommand.self, BenchCommand.self, TrackDets.self, ONNXRunCommand.self,
                      Features.self, DetectFrames.self, Calibrate.self]
    )
}

FPNStreamCommand.mainWithExitStatus()
