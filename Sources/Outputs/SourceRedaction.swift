/// Removes credentials from a source URL before it is printed or written to outputs.
///
/// `rtsp://admin:secret@cam.local/stream` → `rtsp://admin:***@cam.local/stream`;
/// `https://TOKEN@host/x` → `https://***@host/x`; query values of keys that look like secrets
/// (`password`, `pass`, `pwd`, `token`, `secret`, `key`, `auth`, `sig`, `signature`, `credential`) → `***`.
/// Plain file paths are returned unchanged. Idempotent.
public enum SourceRedaction {
    static let secretKeys = ["pass", "pwd", "token", "secret", "key", "auth", "sig", "credential"]

    public static func redact(_ source: String) -> String {
        guard let schemeEnd = source.range(of: "://") else { return source }
        let scheme = source[..<schemeEnd.lowerBound]
        guard !scheme.isEmpty, scheme.allSatisfy({ $0.isLetter || $0.isNumber || "+-.".contains($0) }) else {
            return source
        }
        let rest = source[schemeEnd.upperBound...]
        let authorityEnd = rest.firstIndex(where: { "/?#".contains($0) }) ?? rest.endIndex
        var authority = String(rest[..<authorityEnd])
        var tail = String(rest[authorityEnd...])

        if let at = authority.lastIndex(of: "@") {
            let userinfo = authority[..<at]
            let host = authority[authority.index(after: at)...]
            if let colon = userinfo.firstIndex(of: ":") {
                let user = userinfo[..<colon]
                authority = "\(user):***@\(host)"
            } else if userinfo == "***" || userinfo.isEmpty {
                authority = "\(userinfo)@\(host)"
            } else {
                // A lone userinfo is often a token (https://TOKEN@host); treat it as secret.
                authority = "***@\(host)"
            }
        }

        if let q = tail.firstIndex(of: "?") {
            let fragmentStart = tail[q...].firstIndex(of: "#") ?? tail.endIndex
            let query = tail[tail.index(after: q)..<fragmentStart]
            let redacted = query.split(separator: "&", omittingEmptySubsequences: false).map { pair -> String in
                guard let eq = pair.firstIndex(of: "=") else { return String(pair) }
                let key = pair[..<eq].lowercased()
                return secretKeys.contains(where: { key.contains($0) }) ? "\(pair[..<eq])=***" : String(pair)
            }.joined(separator: "&")
            tail = String(tail[..<q]) + "?" + redacted + String(tail[fragmentStart...])
        }
        return "\(scheme)://\(authority)\(tail)"
    }
}
