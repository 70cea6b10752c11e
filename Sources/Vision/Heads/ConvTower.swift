import Tensor

/// A conv tower shared by every pyramid level: conv3x3 (+ norm) + ReLU, repeated.
/// v1 RetinaNet: `conv.{i}.0` with bias; v2 RetinaNet: `conv.{i}.0` without bias + GroupNorm(32) `conv.{i}.1`;
/// FCOS: `conv.{3i}` with bias + GroupNorm(32) `conv.{3i+1}`.
struct ConvTower {
    enum Layout { case plain, groupNormV2, fcos }
    let convs: [ConvLayer]
    let norms: [GroupNorm]

    init(_ loader: ModuleLoader, prefix: String, channels c: Int, depth: Int = 4, layout: Layout) throws {
        var convs: [ConvLayer] = [], norms: [GroupNorm] = []
        for i in 0..<depth {
            switch layout {
            case .plain:
                convs.append(try loader.conv("\(prefix)conv.\(i).0", in: c, out: c, kernel: 3, padding: 1, bias: true,
                                             activation: .relu))
            case .groupNormV2, .fcos:
                let convKey = layout == .fcos ? "\(prefix)conv.\(3 * i)" : "\(prefix)conv.\(i).0"
                let normKey = layout == .fcos ? "\(prefix)conv.\(3 * i + 1)" : "\(prefix)conv.\(i).1"
                convs.append(try loader.conv(convKey, in: c, out: c, kernel: 3, padding: 1, bias: layout == .fcos))
                norms.append(GroupNorm(groups: 32, channels: c, eps: 1e-5,
                                       weight: try loader.floats(normKey + ".weight", count: c),
                                       bias: try loader.floats(normKey + ".bias", count: c), activation: .relu))
            }
        }
        self.convs = convs
        self.norms = norms
    }

    /// The tower on `x` (not modified) for pyramid level `level`; the convs go through `ctx`'s runner (a temporal
    /// cache keys them per level). Result from the workspace, or owned by the runner.
    func callAsFunction(_ x: Tensor, _ ctx: ForwardContext, level: Int) -> Tensor {
        var t = x
        for (i, conv) in convs.enumerated() {
            let y = conv(t, instance: level, ctx)
            if t.storage !== x.storage { ctx.release(t) }
            if norms.isEmpty {
                t = y
            } else if ctx.runner == nil || ctx.workspace.holds(y) {
                norms[i].forward(y, into: y)
                t = y
            } else {
                // The runner's kept state across frames: normalise into a new tensor, not in place.
                // (GroupNorm mixes the whole level, so after it a local change shows as a small global one.)
                let z = ctx.workspace.tensor(y.shape)
                norms[i].forward(y, into: z)
                ctx.release(y)
                t = z
            }
        }
        return t
    }
}
