import CBLAS
import CKernels
import Foundation

/// The CPU as fpnstream sees it: cpuid features that the OS also enabled (a flag is true only when it is safe to
/// execute), read once per process.
public struct CPUFeatures: Sendable, Equatable {
    public var vendor = "", brand = ""
    public var family = 0, model = 0
    public var avx2 = false, fma = false
    public var avx512f = false, avx512bw = false, avx512vl = false, avx512dq = false
    public var avx512bf16 = false, avx512vnni = false, avxVNNI = false
    /// The CPU has AMX tiles and the kernel enabled their state (a process must still request permission).
    public var amx = false
    /// Per-core L2 size in KiB (0 when cpuid does not say).
    public var l2Kilobytes = 0

    public init() {}

    /// AVX-512 F/BW/VL/DQ, the set the AVX-512 kernels use.
    public var hasAVX512: Bool { avx512f && avx512bw && avx512vl && avx512dq && fma }
    /// AVX2 with FMA, the set the AVX2 kernels use.
    public var hasAVX2: Bool { avx2 && fma }

    /// This machine's features.
    public static let host: CPUFeatures = {
        var info = fpn_cpu_info()
        fpn_cpu_detect(&info)
        var f = CPUFeatures()
        f.vendor = withUnsafeBytes(of: info.vendor) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
        f.brand = withUnsafeBytes(of: info.brand) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
        f.family = Int(info.family); f.model = Int(info.model)
        f.avx2 = info.avx2 != 0; f.fma = info.fma != 0
        f.avx512f = info.avx512f != 0; f.avx512bw = info.avx512bw != 0
        f.avx512vl = info.avx512vl != 0; f.avx512dq = info.avx512dq != 0
        f.avx512bf16 = info.avx512_bf16 != 0; f.avx512vnni = info.avx512_vnni != 0; f.avxVNNI = info.avx_vnni != 0
        f.amx = info.amx_tile != 0
        f.l2Kilobytes = Int(info.l2_kb)
        return f
    }()

    /// `avx2 fma avx512f avx512bw avx512vl avx512dq avx512_bf16 avx512_vnni`: the flags that are set.
    public var flags: String {
        [("avx2", avx2), ("fma", fma), ("avx512f", avx512f), ("avx512bw", avx512bw), ("avx512vl", avx512vl),
         ("avx512dq", avx512dq), ("avx512_bf16", avx512bf16), ("avx512_vnni", avx512vnni), ("avx_vnni", avxVNNI),
         ("amx", amx)].filter(\.1).map(\.0).joined(separator: " ")
    }

    /// `AMD EPYC (family 25 model 17)`.
    public var name: String { "\(brand.isEmpty ? vendor : brand) (family \(family) model \(model))" }
}

/// Where the GEMMs of convolutions and FC layers run.
public enum ComputePath: String, CaseIterable, Sendable {
    /// fpnstream's packed AVX-512 kernels.
    case avx512
    /// fpnstream's packed AVX2+FMA kernels.
    case avx2
    /// fpnstream's portable C kernels (any CPU; slow, for checks).
    case generic
    /// OpenBLAS's `cblas_sgemm`, with whatever kernel OpenBLAS picked (the portable fallback).
    case openblas

    /// The `CKernels` ISA of an own-kernel path; nil for OpenBLAS.
    var isa: Int32? {
        switch self {
        case .avx512: return Int32(FPN_ISA_AVX512.rawValue)
        case .avx2: return Int32(FPN_ISA_AVX2.rawValue)
        case .generic: return Int32(FPN_ISA_GENERIC.rawValue)
        case .openblas: return nil
        }
    }

    /// Whether `features` can run this path.
    public func runs(on features: CPUFeatures) -> Bool {
        switch self {
        case .avx512: return features.hasAVX512
        case .avx2: return features.hasAVX2
        case .generic, .openblas: return true
        }
    }
}

/// The arithmetic precision of the GEMMs.
public enum Precision: String, CaseIterable, Sendable {
    /// Float32 inputs and accumulation: torchvision-exact up to summation order (the default).
    case f32
    /// Inputs rounded to bfloat16 (8-bit mantissa), products accumulated in float32: twice the multiply-adds per
    /// instruction on CPUs with AVX512_BF16; opt-in, with an accuracy cost (docs/tensor.md).
    case bf16

    /// Whether this CPU runs it.
    public var isSupported: Bool { self == .f32 || fpn_bf16_supported() != 0 }

    /// Whether a CPU (`bf16Supported`: it has AVX512_BF16) on compute path `path` can run this precision: bf16
    /// needs the own kernels.
    public func runs(bf16Supported: Bool, path: ComputePath) -> Bool {
        self == .f32 || (bf16Supported && path.isa != nil)
    }

    /// The variable that selects the precision (`f32`, `bf16`).
    public static let variable = "FPNSTREAM_PRECISION"

    /// The precision `environment` asks for on a CPU that has AVX512_BF16 or not, on `path`: f32 when unset, with
    /// a warning when the value is not a precision or cannot run here.
    public static func resolve(environment: [String: String], bf16Supported: Bool,
                               path: ComputePath) -> (precision: Precision, warning: String?) {
        guard let value = environment[variable], !value.isEmpty else { return (.f32, nil) }
        guard let p = Precision(rawValue: value.lowercased()) else {
            return (.f32, "\(variable)=\(value) is not a precision (f32, bf16); using f32")
        }
        guard p.runs(bf16Supported: bf16Supported, path: path) else {
            return (.f32, "\(variable)=\(value): needs AVX512_BF16 and the own kernels (compute: \(path.rawValue)); using f32")
        }
        return (p, nil)
    }

    /// What bf16 buys on a CPU whose bf16 dot products run at `rateRatio` times its f32 multiply-add rate
    /// (`Compute.bf16RateRatio`): `slower` when below 1 (Intel cores without AMX issue `vdpbf16ps` at half the
    /// FMA rate, so bf16 GEMMs lose to f32 there), and one line for `--version` and the warning.
    public static func bf16Advice(rateRatio: Double) -> (slower: Bool, line: String) {
        let rate = "bf16 dot products run at \(String(format: "%.2f", rateRatio))x the f32 multiply-add rate (measured)"
        return rateRatio < 1
            ? (true, "\(rate): --precision bf16 is slower than f32 on this CPU")
            : (false, "\(rate): --precision bf16 speeds up the GEMMs on this CPU")
    }
}

/// The compute path of this process and why it was chosen.
public struct ComputeChoice: Sendable, Equatable {
    public var path: ComputePath
    /// One line: what decided (the CPU's features, a forcing variable, a failed self-check).
    public var reason: String
    /// A warning to print once (a forced path the CPU cannot run, a failed self-check), or nil.
    public var warning: String?

    /// The variable that forces a path (`avx512`, `avx2`, `generic`, `openblas`).
    public static let forceVariable = "FPNSTREAM_COMPUTE"

    /// The path for `features` under `environment`: `FPNSTREAM_COMPUTE` wins when the CPU can run it; then a
    /// user's explicit `OPENBLAS_CORETYPE` (OpenBLAS with that kernel); else the widest own kernels the CPU has,
    /// and OpenBLAS where it has neither AVX2 nor AVX-512.
    public static func select(features: CPUFeatures, environment: [String: String]) -> ComputeChoice {
        var warning: String?
        if let forced = environment[forceVariable], !forced.isEmpty {
            if let p = ComputePath(rawValue: forced.lowercased()), p.runs(on: features) {
                return ComputeChoice(path: p, reason: "\(forceVariable)=\(forced)")
            }
            warning = ComputePath(rawValue: forced.lowercased()) == nil
                ? "\(forceVariable)=\(forced) is not a compute path (\(ComputePath.allCases.map(\.rawValue).joined(separator: ", "))); choosing by CPU features"
                : "\(forceVariable)=\(forced): this CPU lacks the instructions; choosing by CPU features"
        }
        if let core = environment["OPENBLAS_CORETYPE"], !core.isEmpty {
            return ComputeChoice(path: .openblas, reason: "OPENBLAS_CORETYPE=\(core) is set", warning: warning)
        }
        if features.hasAVX512 {
            return ComputeChoice(path: .avx512, reason: "CPU has AVX-512 F/BW/VL/DQ", warning: warning)
        }
        if features.hasAVX2 {
            return ComputeChoice(path: .avx2, reason: "CPU has AVX2+FMA, no AVX-512", warning: warning)
        }
        return ComputeChoice(path: .openblas, reason: "CPU has neither AVX2 nor AVX-512", warning: warning)
    }

    /// `choice` after the numeric self-check of its kernels (`check` returns the largest relative error against
    /// a float64 reference): a path whose error exceeds `tolerance` falls back to OpenBLAS with a warning.
    public static func verified(_ choice: ComputeChoice, tolerance: Double = 1e-4,
                                check: (ComputePath) -> Double) -> ComputeChoice {
        guard choice.path != .openblas else { return choice }
        let error = check(choice.path)
        guard error.isFinite && error <= tolerance else {
            return ComputeChoice(path: .openblas,
                                 reason: "\(choice.path.rawValue) kernels failed the self-check",
                                 warning: "compute: the \(choice.path.rawValue) kernels computed wrong results "
                                     + "(relative error \(error)); using OpenBLAS")
        }
        return choice
    }
}

/// A precision this CPU or compute path cannot run; the message says why.
public struct PrecisionError: Error, CustomStringConvertible {
    public let message: String
    public var description: String { message }
}

/// The process-wide compute path, chosen on first use from the CPU's features and the environment, then
/// self-checked; every GEMM of the Tensor ops goes through it.
public enum Compute {
    /// The choice in force (decided once; a warning, if any, went to stderr once).
    public static let choice: ComputeChoice = {
        let c = ComputeChoice.verified(
            ComputeChoice.select(features: .host, environment: ProcessInfo.processInfo.environment),
            check: { selfCheckError($0) })
        if let w = c.warning { FileHandle.standardError.write(Data(("fpnstream: " + w + "\n").utf8)) }
        return c
    }()

    /// The path in force.
    public static var path: ComputePath { choice.path }

    /// The precision of the GEMMs: `FPNSTREAM_PRECISION` (or `use(_:)`), else f32. Models pack their weights for
    /// it when they load, so choose it before loading one.
    public static var precision: Precision {
        lock.lock(); defer { lock.unlock() }
        if let p = chosenPrecision { return p }
        let r = Precision.resolve(environment: ProcessInfo.processInfo.environment,
                                  bf16Supported: Precision.bf16.isSupported, path: path)
        if let w = r.warning { FileHandle.standardError.write(Data(("fpnstream: " + w + "\n").utf8)) }
        chosenPrecision = r.precision
        if r.precision == .bf16 { warnIfBF16IsSlower() }
        return r.precision
    }

    /// Selects `precision` for models loaded from now on. Throws `PrecisionError` when this CPU or compute path
    /// cannot run it.
    public static func use(_ precision: Precision) throws {
        guard precision.runs(bf16Supported: Precision.bf16.isSupported, path: path) else {
            throw PrecisionError(message: "precision \(precision.rawValue) needs AVX512_BF16 and the own kernels "
                                 + "(this CPU: \(CPUFeatures.host.flags); compute: \(path.rawValue))")
        }
        lock.lock(); defer { lock.unlock() }
        chosenPrecision = precision
        if precision == .bf16 { warnIfBF16IsSlower() }
    }

    /// AVX512_BF16 dot products against AVX-512 f32 FMAs on this CPU, in multiply-adds per second (register-only
    /// loops timed once per process, a few milliseconds), or nil when this CPU or path does not run bf16.
    public static let bf16RateRatio: Double? = {
        guard Precision.bf16.runs(bf16Supported: Precision.bf16.isSupported, path: path) else { return nil }
        let r = fpn_bf16_rate_ratio()
        return r > 0 ? r : nil
    }()

    /// The user chose bf16 for speed; say once when this CPU makes it slower (it still runs, as asked).
    private static func warnIfBF16IsSlower() {
        guard !warnedBF16, let r = bf16RateRatio else { return }
        warnedBF16 = true
        let advice = Precision.bf16Advice(rateRatio: r)
        if advice.slower { FileHandle.standardError.write(Data(("fpnstream: warning: " + advice.line + "\n").utf8)) }
    }
    nonisolated(unsafe) private static var warnedBF16 = false

    private static let lock = NSLock()
    nonisolated(unsafe) private static var chosenPrecision: Precision?

    /// `compute: avx512 (own packed kernels; CPU has AVX-512 F/BW/VL/DQ)` or
    /// `compute: openblas (OpenBLAS 0.3.21 kernel Cooperlake; OPENBLAS_CORETYPE=... is set)`.
    public static var summary: String {
        let what = path == .openblas ? "OpenBLAS \(BLASInfo.version), kernel \(BLASInfo.coreName)" : "own packed kernels"
        let precision = Compute.precision == .f32 ? "" : ", precision \(Compute.precision.rawValue)"
        return "compute: \(path.rawValue)\(precision) (\(what); \(choice.reason))"
    }

    /// The CPU line and the compute line, as `--version` and every benchmark print them.
    public static var description: String {
        let f = CPUFeatures.host
        let m = WinogradWeights.tile(for: precision)
        let direct = path == .avx512 ? "stem (stride-2, <= 4 channels) and depthwise convs direct, " : ""
        let convs = path.isa == nil ? "im2col + GEMM (no Winograd on OpenBLAS)"
            : Conv2d.winogradByDefault ? "stride-1 3x3 by Winograd F(\(m)x\(m), 3x3), \(direct)others im2col + GEMM"
            : "\(direct)im2col + GEMM (Winograd off)"
        let bf16 = bf16RateRatio.map { "\nbf16: " + Precision.bf16Advice(rateRatio: $0).line } ?? ""
        return "CPU: \(f.name), \(Parallel.cores) cores; features: \(f.flags.isEmpty ? "none of note" : f.flags)\n\(summary)"
            + "\nconvolutions: \(convs)" + bf16
    }

    /// The fp32 limit of this machine in GFLOP/s: register-only FMA loops of the widest ISA the CPU has, on every
    /// core at once (about `seconds` long). GEMM efficiency is quoted against it.
    public static func fmaPeakGFLOPS(seconds: Double = 0.3) -> (gflops: Double, isa: String) {
        let isa = fpn_best_isa()
        var per = [Double](repeating: 0, count: Parallel.cores)
        per.withUnsafeMutableBufferPointer { p in
            DispatchQueue.concurrentPerform(iterations: p.count) { i in p[i] = fpn_fma_peak_gflops(isa, seconds) }
        }
        return (per.reduce(0, +), String(cString: fpn_isa_name(isa)))
    }

    /// Largest relative error of `path`'s GEMM against a float64 reference over a few ragged shapes (with beta,
    /// bias and ReLU), well under a millisecond.
    public static func selfCheckError(_ path: ComputePath) -> Double {
        var worst = 0.0
        var seed: UInt32 = 7
        func next() -> Float { seed = seed &* 1_664_525 &+ 1_013_904_223; return Float(seed >> 9) / Float(1 << 23) - 0.5 }
        for (m, n, k, beta, relu) in [(17, 33, 29, false, false), (30, 5, 64, true, true), (64, 100, 27, false, true),
                                      (7, 70, 300, true, false)] {
            let a = (0..<(m * k)).map { _ in next() }, b = (0..<(k * n)).map { _ in next() }
            let c0 = (0..<(m * n)).map { _ in next() }, bias = (0..<m).map { _ in next() }
            var c = c0
            a.withUnsafeBufferPointer { pa in
                let packed = PackedMatrix(pa.baseAddress!, rows: m, columns: k, path: path, precision: .f32)
                b.withUnsafeBufferPointer { pb in c.withUnsafeMutableBufferPointer { pc in
                    bias.withUnsafeBufferPointer { pbias in
                        Gemm.multiply(packed, b: pb.baseAddress!, ldb: n, columns: n, beta: beta ? 1 : 0,
                                      c: pc.baseAddress!, ldc: n, bias: pbias.baseAddress!, relu: relu)
                    }
                } }
            }
            for i in 0..<m {
                for j in 0..<n {
                    var s = 0.0, mag = 0.0
                    for l in 0..<k { s += Double(a[i * k + l]) * Double(b[l * n + j]); mag += abs(Double(a[i * k + l]) * Double(b[l * n + j])) }
                    s += (beta ? Double(c0[i * n + j]) : 0) + Double(bias[i])
                    if relu { s = max(s, 0) }
                    let e = abs(Double(c[i * n + j]) - s) / max(1, mag)
                    worst = e.isNaN ? .infinity : max(worst, e)
                }
            }
        }
        return worst
    }
}
