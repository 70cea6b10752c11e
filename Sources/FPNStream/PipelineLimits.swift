/// Upper bounds on pipeline files and on the sizes they set, so a hostile or mistyped file is one clear
/// `PipelineSpecError` instead of a huge allocation or a stack overflow in the YAML composer (which recurses
/// once per nesting level).
public enum PipelineLimits {
    /// Largest pipeline file read.
    public static let maxFileBytes = 1 << 20
    /// Deepest nesting of YAML collections (the schema itself needs 4).
    public static let maxDepth = 64
    /// `input.live.queue_size` (frames held between decoder and detector).
    public static let maxQueueSize = 4096
    /// `model.max_detections`.
    public static let maxDetections = 100_000
    /// Pixel sizes: `model.min_size`, `model.max_size`, `temporal.tile`, `temporal.input_block`, `temporal.deep_tile`.
    public static let maxImageSide = 16384
    /// Frame counts of kept history: `tracker.track_buffer`, `tracker.removed_history`, `outputs.annotate.trails`.
    public static let maxHistoryFrames = 1_000_000
    /// `outputs.annotate.font_scale`.
    public static let maxFontScale = 64

    /// The 1-based line where the nesting of `yaml` first exceeds `maxDepth`, or nil. The bound errs on the high
    /// side: block nesting cannot exceed a line's indentation plus its leading `- `/`? ` markers, and flow nesting
    /// is the larger of two counts of `[`/`{`, one skipping quoted scalars and comments (which a misplaced quote
    /// could fool) and one counting every bracket (which a quoted `]` could fool).
    static func lineTooDeep(_ yaml: String) -> Int? {
        var aware = 0, blind = 0
        var line = 1
        var quote: UInt8?
        var inComment = false
        var prefix = 0, atLineStart = true
        var previous = UInt8(ascii: "\n")
        for c in yaml.utf8 {
            defer { previous = c }
            if c == UInt8(ascii: "\n") {
                line += 1
                inComment = false
                atLineStart = true
                prefix = 0
                continue
            }
            if atLineStart {
                if c == UInt8(ascii: " ") || c == UInt8(ascii: "\t") || c == UInt8(ascii: "-") || c == UInt8(ascii: "?") {
                    prefix += 1
                    if prefix > maxDepth { return line }
                    continue
                }
                atLineStart = false
            }
            let opens = c == UInt8(ascii: "[") || c == UInt8(ascii: "{")
            let closes = c == UInt8(ascii: "]") || c == UInt8(ascii: "}")
            if opens { blind += 1 } else if closes { blind = max(0, blind - 1) }
            if let q = quote {
                if c == q { quote = nil }
            } else if !inComment {
                let tokenStart = " \t\n[{,:".utf8.contains(previous)
                if (c == UInt8(ascii: "\"") || c == UInt8(ascii: "'")) && tokenStart { quote = c }
                else if c == UInt8(ascii: "#") && tokenStart { inComment = true }
                else if opens { aware += 1 } else if closes { aware = max(0, aware - 1) }
            }
            if max(aware, blind) + prefix > maxDepth { return line }
        }
        return nil
    }
}
