import ArgumentParser
import FPNStream
import Foundation

/// The CLI's exit codes (also in README.md and `fpnstream --help`).
enum ExitStatus {
    /// Finished; outputs complete.
    static let ok: Int32 = 0
    /// Runtime error: input cannot be opened or decoded, output cannot be written, a stage failed.
    static let runtimeError: Int32 = 1
    /// Usage or configuration error: bad flags, bad pipeline YAML.
    static let usageError: Int32 = 2
    /// Stopped by SIGINT (Ctrl-C) after draining in-flight frames and finalizing the outputs (128 + 2).
    static let interrupted: Int32 = 130
    /// Stopped by SIGTERM, outputs finalized likewise (128 + 15).
    static let terminated: Int32 = 143

    static let helpText = """
        Exit status: 0 ok; 1 runtime error (input unreadable, output unwritable, stage failed); 2 usage or \
        configuration error (bad option, bad pipeline YAML); 130 / 143 stopped by SIGINT / SIGTERM after \
        finalizing the outputs (a second signal exits at once).
        """
}

/// A user-facing failure: one line for stderr and an exit status.
struct CLIFailure: Error {
    var message: String
    var status: Int32
}

extension ParsableCommand {
    /// "unknown command 'proces' (did you mean 'process'?)" for the first word of `arguments` that should name a
    /// subcommand and names none; nil when the command path is fine (options are left to ArgumentParser).
    static func unknownSubcommand(_ arguments: [String]) -> String? {
        var command: ParsableCommand.Type = self
        for word in arguments {
            let subcommands = command.configuration.subcommands
            guard !word.hasPrefix("-"), !subcommands.isEmpty, word != "help" else { return nil }
            let names = subcommands.map { $0._commandName }
            guard let next = subcommands.first(where: { $0._commandName == word || ($0.configuration.aliases.contains(word)) }) else {
                let path = "unknown command '\(word)'"
                if let near = suggestedWord(for: word, among: names) { return path + " (did you mean '\(near)'?)" }
                return path + "; commands: " + names.joined(separator: ", ")
            }
            command = next
        }
        return nil
    }

    /// Like `main()`, but with fpnstream's exit codes: usage errors exit 2 (ArgumentParser's default is 64), runtime
    /// errors print one line `fpnstream: …` and exit 1.
    static func mainWithExitStatus() -> Never {
        if let unknown = unknownSubcommand(Array(CommandLine.arguments.dropFirst())) {
            FileHandle.standardError.write(Data("fpnstream: \(unknown)\n".utf8))
            Foundation.exit(ExitStatus.usageError)
        }
        do {
            var command = try parseAsRoot()
            try command.run()
            Foundation.exit(ExitStatus.ok)
        } catch let failure as CLIFailure {
            FileHandle.standardError.write(Data("fpnstream: \(failure.message)\n".utf8))
            Foundation.exit(failure.status)
        } catch let code as ExitCode {
            Foundation.exit(code.rawValue)
        } catch {
            let status = exitCode(for: error)
            let message = fullMessage(for: error)
            if status == .success {
                print(message)
                Foundation.exit(ExitStatus.ok)
            }
            if status == .validationFailure {
                FileHandle.standardError.write(Data((message + "\n").utf8))
                Foundation.exit(ExitStatus.usageError)
            }
            FileHandle.standardError.write(Data("fpnstream: \(message)\n".utf8))
            Foundation.exit(ExitStatus.runtimeError)
        }
    }
}
