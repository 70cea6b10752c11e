/// Constant-velocity Kalman filter on a box's `(cx, cy, a, h)` — centre x, centre y, aspect ratio `w / h`, height, all
/// in source pixels except `a` — with velocities, exactly as ByteTrack's (and DeepSORT's) `KalmanFilter`:
/// transition `x' = x + v` per frame, observation of the four positions, and noise standard deviations proportional to
/// the box height (`1/20` of `h` for position, `1/160` for velocity; fixed `1e-2`/`1e-5` for the aspect ratio).
///
/// The 8×8 covariance of that model never couples different coordinates (the transition, the observation and every
/// noise matrix are block-diagonal per coordinate), so it is kept as four 2×2 `(position, velocity)` blocks. The
/// arithmetic is the full-matrix filter's, term for term, without the 8×8 products. Double precision, like numpy.
public struct KalmanBoxFilter: Sendable {
    /// Position noise weight: standard deviation = `stdWeightPosition * h`.
    public var stdWeightPosition: Double = 1.0 / 20
    /// Velocity noise weight: standard deviation = `stdWeightVelocity * h`.
    public var stdWeightVelocity: Double = 1.0 / 160

    public init() {}

    /// One filter state: mean and the per-coordinate covariance blocks.
    public struct State: Sendable, Equatable {
        /// `(cx, cy, a, h)`.
        public var position: SIMD4<Double>
        /// `(vcx, vcy, va, vh)` per frame.
        public var velocity: SIMD4<Double>
        /// Variances of the positions (diagonal of the top-left 4×4 block of the 8×8 covariance).
        public var varPosition: SIMD4<Double>
        /// Position/velocity covariances (`P[i][i + 4]`).
        public var covPositionVelocity: SIMD4<Double>
        /// Variances of the velocities (diagonal of the bottom-right 4×4 block).
        public var varVelocity: SIMD4<Double>

        /// The full 8×8 covariance, row-major, ordered `(cx, cy, a, h, vcx, vcy, va, vh)` (for tests and debugging).
        public var covarianceMatrix: [Double] {
            var p = [Double](repeating: 0, count: 64)
            for i in 0..<4 {
                p[i * 8 + i] = varPosition[i]
                p[i * 8 + i + 4] = covPositionVelocity[i]
                p[(i + 4) * 8 + i] = covPositionVelocity[i]
                p[(i + 4) * 8 + i + 4] = varVelocity[i]
            }
            return p
        }

        /// The 8-vector mean `(cx, cy, a, h, vcx, vcy, va, vh)`.
        public var mean: [Double] {
            [position[0], position[1], position[2], position[3], velocity[0], velocity[1], velocity[2], velocity[3]]
        }
    }

    /// `(cx, cy, a, h)` of a corner box. `a` is `w / h`; a zero-height box gives `a = 0` rather than infinity.
    @inlinable public static func measurement(x1: Float, y1: Float, x2: Float, y2: Float) -> SIMD4<Double> {
        let w = Double(x2) - Double(x1), h = Double(y2) - Double(y1)
        return SIMD4(Double(x1) + w / 2, Double(y1) + h / 2, h != 0 ? w / h : 0, h)
    }

    /// Corners `(x1, y1, x2, y2)` of a `(cx, cy, a, h)` position (ByteTrack's `tlwh`, then `tlbr`).
    @inlinable public static func corners(_ m: SIMD4<Double>) -> (x1: Double, y1: Double, x2: Double, y2: Double) {
        let w = m[2] * m[3], h = m[3]
        let x1 = m[0] - w / 2, y1 = m[1] - h / 2
        return (x1, y1, x1 + w, y1 + h)
    }

    /// A new track's state from its first measurement: zero velocity, standard deviation `2·σp·h` on positions and
    /// `10·σv·h` on velocities (`1e-2` / `1e-5` for the aspect ratio), as ByteTrack's `initiate`.
    public func initiate(_ z: SIMD4<Double>) -> State {
        let h = z[3]
        let sp = 2 * stdWeightPosition * h, sv = 10 * stdWeightVelocity * h
        let stdP = SIMD4(sp, sp, 1e-2, sp), stdV = SIMD4(sv, sv, 1e-5, sv)
        return State(position: z, velocity: .zero, varPosition: stdP * stdP, covPositionVelocity: .zero,
                     varVelocity: stdV * stdV)
    }

    /// One frame ahead: `x ← F x` (position += velocity), `P ← F P Fᵀ + Q` with `Q` from the height before the step.
    public func predict(_ s: inout State) {
        let h = s.position[3]
        let sp = stdWeightPosition * h, sv = stdWeightVelocity * h
        let stdP = SIMD4(sp, sp, 1e-2, sp), stdV = SIMD4(sv, sv, 1e-5, sv)
        s.position += s.velocity
        // F P Fᵀ for each block F = [[1, 1], [0, 1]]: (pp + 2pv + vv, pv + vv, vv).
        s.varPosition += 2 * s.covPositionVelocity + s.varVelocity + stdP * stdP
        s.covPositionVelocity += s.varVelocity
        s.varVelocity += stdV * stdV
    }

    /// Corrects with a measurement `(cx, cy, a, h)`. The innovation covariance `S = H P Hᵀ + R` (`R` from the
    /// current height, `1e-1` for the aspect ratio) is diagonal, so the gain is `P Hᵀ / S` per coordinate.
    public func update(_ s: inout State, measurement z: SIMD4<Double>) {
        let h = s.position[3]
        let sr = stdWeightPosition * h
        let stdR = SIMD4(sr, sr, 1e-1, sr)
        let sInv = 1 / (s.varPosition + stdR * stdR)
        let pp = s.varPosition, pv = s.covPositionVelocity
        let innovation = z - s.position
        s.position += pp * sInv * innovation
        s.velocity += pv * sInv * innovation
        // P - K S Kᵀ for each block, with K = (pp, pv) / S.
        s.varPosition = pp - pp * pp * sInv
        s.covPositionVelocity = pv - pp * pv * sInv
        s.varVelocity -= pv * pv * sInv
    }
}
