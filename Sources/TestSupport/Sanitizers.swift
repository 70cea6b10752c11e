import Foundation

/// The sanitizer this test process was built with, if any (`swift test --sanitize=thread|address`, as
/// `scripts/sanitize` runs it): read from the runtime's own entry point, so it holds however the tests were started.
/// The `fpnstream` children CLI tests start come from the same build and are slowed the same way.
public enum Sanitizer: Sendable {
    case thread, address

    public static let active: Sanitizer? = {
        if dlsym(nil, "__tsan_init") != nil { return .thread }
        if dlsym(nil, "__asan_init") != nil { return .address }
        return nil
    }()

    /// How many times longer work takes under this sanitizer, for bounds on waits: ThreadSanitizer's 5-15x and
    /// AddressSanitizer's 2-3x, with room for a loaded host.
    public var slowdown: Double {
        switch self {
        case .thread: return 10
        case .address: return 3
        }
    }

    /// `seconds`, multiplied by the active sanitizer's slowdown: a bound on a wait that must hold in a plain build
    /// and must not fail a slower instrumented build that does the same work.
    public static func scaled(_ seconds: Double) -> Double { seconds * (active?.slowdown ?? 1) }
}
