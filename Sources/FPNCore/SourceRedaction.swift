/// Removes credentials from a source or output location before it is printed or written anywhere.
///
/// `rtsp://user:pass@host:554/path` → `rtsp://***@host:554/path`; a URL with only a user name is redacted the
/// same way (tokens are often passed as user names). Query parameters whose name suggests a secret
/// (`password`, `passwd`, `pwd`, `passphrase`, `token`, `key`, `secret`, `auth`, `signature`, `sig`) keep their name and lose their
/// value: `?token=abc` → `?token=***`. Plain file paths and `-` are returned unchanged.
///
/// Every user-visible string naming an input or output (errors, progress, JSONL `source`) goes through this.
public func redactCredentials(_ location: String) -> String {
    guard let colon = location.firstIndex(of: ":"), location[colon...].hasPrefix("://") else { return location }
    let scheme = location[..<colon]
    // A scheme is letters, digits, +, -, . and starts with a letter; anything else is a path that contains "://".
    guard let first = scheme.first, first.isLetter,
          scheme.allSatisfy({ $0.isLetter || $0.isNumber || "+-.".contains($0) }) else { return location }
    let rest = location[location.index(colon, offsetBy: 3)...]
    // The authority ends at the first '/', '?' or '#'; userinfo is everything before its last '@'.
    let authorityEnd = rest.firstIndex(where: { "/?#".contains($0) }) ?? rest.endIndex
    let authority = rest[..<authorityEnd]
    var result = String(scheme) + "://"
    if let at = authority.lastIndex(of: "@") {
        result += "***@" + authority[authority.index(after: at)...]
    } else {
        result += authority
    }
    var tail = String(rest[authorityEnd...])
    if let q = tail.firstIndex(of: "?") {
        let fragmentStart = tail[q...].firstIndex(of: "#") ?? tail.endIndex
        let query = tail[tail.index(after: q)..<fragmentStart]
        let secretNames: Set<String> = ["password", "passwd", "pwd", "pass", "passphrase", "token", "access_token", "key",
                                        "apikey", "api_key", "secret", "auth", "signature", "sig"]
        let redacted = query.split(separator: "&", omittingEmptySubsequences: false).map { pair -> String in
            guard let eq = pair.firstIndex(of: "=") else { return String(pair) }
            let name = pair[..<eq].lowercased()
            return secretNames.contains(name) ? pair[...eq] + "***" : String(pair)
        }.joined(separator: "&")
        tail = String(tail[...q]) + redacted + tail[fragmentStart...]
    }
    return result + tail
}
