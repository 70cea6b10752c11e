import Foundation

/// When to try again after a live input failed: exponential backoff with jitter, capped, forever or N attempts.
///
/// The delay before attempt `n` (1-based) is `min(maxDelay, initialDelay * multiplier^(n-1))`, then scaled by a
/// random factor in `[1 - jitter, 1 + jitter]` (and capped again) so many cameras behind one failed switch do not
/// reconnect in lockstep.
public struct ReconnectPolicy: Sendable, Equatable {
    /// Delay before the first reconnect attempt, seconds.
    public var initialDelay: Double
    /// Upper bound of any delay, seconds.
    public var maxDelay: Double
    /// Growth factor per failed attempt (≥ 1).
    public var multiplier: Double
    /// Relative jitter in `[0, 1]`: 0.2 means ±20 %.
    public var jitter: Double
    /// Give up after this many consecutive failed attempts; nil = never give up.
    public var maxAttempts: Int?

    /// The default cap of a delay, seconds: a source that comes back is reconnected within this (plus jitter and
    /// the connect itself) however long it was gone; retrying a dead camera every 2 s costs next to nothing.
    public static let defaultMaxDelay = 2.0

    /// Defaults: 0.5 s, doubling, capped at `defaultMaxDelay` (2 s), ±20 % jitter, forever.
    public init(initialDelay: Double = 0.5, maxDelay: Double = ReconnectPolicy.defaultMaxDelay, multiplier: Double = 2, jitter: Double = 0.2,
                maxAttempts: Int? = nil) {
        self.initialDelay = initialDelay
        self.maxDelay = maxDelay
        self.multiplier = multiplier
        self.jitter = jitter
        self.maxAttempts = maxAttempts
    }

    /// Errors a user can act on (the flag/YAML key is named by the caller).
    public func validate() throws {
        guard initialDelay >= 0, initialDelay.isFinite else { throw LiveSourceError.badOption("reconnect initial delay must be ≥ 0") }
        guard maxDelay >= initialDelay, maxDelay.isFinite else { throw LiveSourceError.badOption("reconnect max delay must be ≥ the initial delay") }
        guard multiplier >= 1, multiplier.isFinite else { throw LiveSourceError.badOption("reconnect multiplier must be ≥ 1") }
        guard (0...1).contains(jitter) else { throw LiveSourceError.badOption("reconnect jitter must be within 0...1") }
        if let n = maxAttempts, n < 0 { throw LiveSourceError.badOption("reconnect attempts must be ≥ 0") }
    }

    /// The delay before attempt `attempt` (1-based), with `unit` a uniform random number in `[0, 1)`.
    public func delay(attempt: Int, unit: Double) -> Double {
        let n = max(1, attempt)
        // Exponent capped so huge attempt counts never overflow to inf/nan.
        let base = min(maxDelay, initialDelay * Foundation.pow(multiplier, Double(min(n - 1, 64))))
        let factor = 1 + jitter * (2 * unit - 1)
        return max(0, min(maxDelay, base * factor))
    }

    /// The delay before attempt `attempt` with system randomness.
    public func delay(attempt: Int) -> Double {
        delay(attempt: attempt, unit: Double.random(in: 0..<1))
    }

    /// True when `attempt` (1-based) may still be tried.
    public func allows(attempt: Int) -> Bool {
        guard let n = maxAttempts else { return true }
        return attempt <= n
    }
}
