import FPNCore
import Foundation

/// `${NAME}` and `${file:PATH}` references in a URL or option value, replaced at run time so passwords stay out of
/// config files, the command line and `ps`: `rtsp://admin:${CAM1_PASSWORD}@10.0.0.5/stream` or
/// `rtsp://admin:${file:/run/secrets/cam1}@10.0.0.5/stream` (a file's trailing newline is dropped). `$$` is a
/// literal `$`. Used by `tail` URLs and every `serve` camera URL and credential.
public enum SecretExpansion {
    /// A reference that cannot be resolved; the message names the variable or file, never a value.
    public struct Failure: Error, CustomStringConvertible, Equatable {
        public var description: String
    }

    /// `text` with every reference replaced. `environment` defaults to the process's; `readFile` to the file system.
    public static func expand(_ text: String, environment: [String: String] = ProcessInfo.processInfo.environment,
                              readFile: (String) throws -> String = { try String(contentsOfFile: $0, encoding: .utf8) })
        throws -> String {
        guard text.contains("$") else { return text }
        var out = ""
        var rest = Substring(text)
        while let dollar = rest.firstIndex(of: "$") {
            out += rest[..<dollar]
            let after = rest.index(after: dollar)
            if after < rest.endIndex, rest[after] == "$" {
                out += "$"
                rest = rest[rest.index(after: after)...]
                continue
            }
            guard after < rest.endIndex, rest[after] == "{" else {
                out += "$"
                rest = rest[after...]
                continue
            }
            guard let close = rest[after...].firstIndex(of: "}") else {
                throw Failure(description: "unterminated ${ in \(redactCredentials(text))")
            }
            let name = String(rest[rest.index(after: after)..<close])
            out += try resolve(name, environment: environment, readFile: readFile)
            rest = rest[rest.index(after: close)...]
        }
        return out + rest
    }

    private static func resolve(_ name: String, environment: [String: String],
                                readFile: (String) throws -> String) throws -> String {
        if name.hasPrefix("file:") {
            let path = String(name.dropFirst(5))
            guard !path.isEmpty else { throw Failure(description: "${file:} needs a path") }
            do {
                var s = try readFile(path)
                while s.hasSuffix("\n") || s.hasSuffix("\r") { s.removeLast() }
                return s
            } catch {
                throw Failure(description: "${file:\(path)}: cannot read the file")
            }
        }
        guard !name.isEmpty, name.allSatisfy({ $0.isLetter || $0.isNumber || $0 == "_" }) else {
            throw Failure(description: "${\(name)}: not a variable name (letters, digits, _) or file:PATH")
        }
        guard let value = environment[name] else {
            throw Failure(description: "${\(name)}: environment variable not set")
        }
        return value
    }
}
