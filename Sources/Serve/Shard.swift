/// `--shard I/N`: which cameras this instance runs when N instances share one camera list.
///
/// Rendezvous (highest-random-weight) hashing: every camera id is scored against each shard index with a fixed
/// 64-bit hash, and the camera goes to the shard with the highest score. Each camera lands on exactly one shard,
/// the split is even in expectation, no coordination is needed, and going from N to N+1 shards moves only the
/// cameras whose new best is the added shard (about 1/(N+1) of them); the others stay where they were.
public struct Shard: Sendable, Equatable, CustomStringConvertible {
    /// 0-based index of this instance.
    public let index: Int
    /// Number of instances.
    public let count: Int

    /// All cameras (a single instance).
    public static let all = Shard(index: 0, count: 1)

    public init(index: Int, count: Int) {
        precondition(count >= 1 && (0..<count).contains(index), "shard out of range")
        self.index = index
        self.count = count
    }

    /// Parses `I/N` (0 ≤ I < N); nil when malformed.
    public init?(parsing text: String) {
        let parts = text.split(separator: "/", omittingEmptySubsequences: false)
        guard parts.count == 2, let i = Int(parts[0]), let n = Int(parts[1]), n >= 1, (0..<n).contains(i) else { return nil }
        self.init(index: i, count: n)
    }

    public var description: String { "\(index)/\(count)" }

    /// The shard index `id` belongs to among `count` shards.
    public static func owner(of id: String, count: Int) -> Int {
        var best = 0
        var bestScore: UInt64 = 0
        for s in 0..<count {
            let score = weight(id, s)
            if s == 0 || score > bestScore { best = s; bestScore = score }
        }
        return best
    }

    /// True when this shard runs `id`.
    public func owns(_ id: String) -> Bool { Shard.owner(of: id, count: count) == index }

    /// FNV-1a over the id's UTF-8 and the shard index, then a 64-bit finalizer (splitmix64) so that close ids and
    /// indices give unrelated scores. Fixed across runs and machines (unlike `Hasher`, which is seeded per process).
    static func weight(_ id: String, _ shard: Int) -> UInt64 {
        var h: UInt64 = 0xcbf2_9ce4_8422_2325
        for b in id.utf8 { h = (h ^ UInt64(b)) &* 0x100_0000_01b3 }
        h ^= UInt64(truncatingIfNeeded: shard) &* 0x9e37_79b9_7f4a_7c15
        h = (h ^ (h >> 30)) &* 0xbf58_476d_1ce4_e5b9
        h = (h ^ (h >> 27)) &* 0x94d0_49bb_1331_11eb
        return h ^ (h >> 31)
    }
}
