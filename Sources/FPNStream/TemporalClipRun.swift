import FPNCore
import Foundation
import ONNX
import Tensor
import TemporalReuse
import Vision

/// What a temporal bench runs: a whole detector, or a backbone with its input transform.
public enum TemporalBenchSubject {
    case detector(any Detector, score: Float)
    case backbone(ResNetFPNBackbone, DetectionTransform)
    /// CenterFace (ONNX): a dense detector and one whose session runs through the clip's cache.
    case centerFace(off: CenterFaceDetector, delta: CenterFaceDetector, score: Float)
}

/// One clip of `bench temporal`: dense and delta state, per-frame figures, the printed report.
public final class TemporalClipRun {
    public let subject: TemporalBenchSubject
    let cache: TemporalCache
    let jsonl: FileHandle?
    let clip: String
    // detector mode
    private var offState: DetectorState?, deltaState: DetectorState?
    private let offCapture: PyramidCapture, deltaCapture: PyramidCapture
    // backbone mode
    private let inputWS = Workspace(), denseWS = Workspace(), deltaWS = Workspace()

    private(set) var offMs: [Double] = [], deltaMs: [Double] = []            // backbone + FPN
    private(set) var offTotalMs: [Double] = [], deltaTotalMs: [Double] = []  // whole detector
    private(set) var errors: [[Double]] = []
    private(set) var levelNames: [String] = []
    private(set) var fractions: [Double] = [], tileFractions: [Double] = [], kernelFractions: [Double] = []
    private(set) var agreements: [DetectionAgreement] = []
    /// `--noise-floor`: dense on the dithered frame vs dense, per frame.
    public var noiseFloor = false
    private(set) var floorAgreements: [DetectionAgreement] = []
    private var inputShape: [Int] = []
    // cache internals of the delta frames (not refreshes): GEMM vs own time, stem changed fraction, per-layer tiles
    private(set) var convMs: [Double] = [], overheadMs: [Double] = [], gateMs: [Double] = [], commitFractions: [Double] = [], inputFractions: [Double] = []
    private(set) var fallbacks = 0, layerFrames = 0
    private var layerTiles: [Int: Int] = [:], layerCommitted: [Int: Int] = [:], layerDense: [Int: Int] = [:]
    private var layerSeconds: [Int: Double] = [:], layerConvSeconds: [Int: Double] = [:]

    /// Throws `TemporalConfigError` when `settings.layerThresholds` names a layer the model does not have.
    public init(subject: TemporalBenchSubject, settings: TemporalSettings, jsonl: FileHandle?, clip: String) throws {
        self.subject = subject
        self.jsonl = jsonl
        self.clip = clip
        cache = TemporalCache(settings: settings)
        cache.profile = TemporalProfile()
        offCapture = PyramidCapture(inner: nil)
        deltaCapture = PyramidCapture(inner: cache)
        if case .detector(let d, _) = subject {
            if let bad = settings.layerThresholds.keys.first(where: { k in !d.backbone.convLayers.contains { $0.key == k } }) {
                throw TemporalConfigError(message: "layer_thresholds: '\(bad)' is not a conv layer of the model")
            }
            offState = DetectorState(runner: offCapture)
            deltaState = DetectorState(runner: deltaCapture)
        }
        if case .centerFace(_, let delta, _) = subject { delta.runner = cache }
    }

    /// Runs frame `n` both ways (order alternating) and records the figures.
    public func step(_ image: RGBImage) {
        let n = offMs.count
        var offDets: [Detection] = [], deltaDets: [Detection] = []
        var offLevels: [(String, Tensor)] = [], deltaLevels: [(String, Tensor)] = []
        switch subject {
        case .detector(let d, let score):
            for mode in (n % 2 == 0 ? [0, 1] : [1, 0]) {
                let state = mode == 0 ? offState! : deltaState!
                let t0 = Benchmark.now()
                let dets = d.detectPanoptic(image, state: state).detections
                let total = (Benchmark.now() - t0) * 1e3
                let backbone = state.timingsMs["backbone"] ?? total
                if mode == 0 { offDets = dets; offMs.append(backbone); offTotalMs.append(total) }
                else { deltaDets = dets; deltaMs.append(backbone); deltaTotalMs.append(total) }
            }
            // Captured in forward order (the FPN runs top-down); listed by stride, as the pyramid is.
            let keys = offCapture.keys.sorted { offCapture.outputs[$0]!.h > offCapture.outputs[$1]!.h }
            offLevels = keys.map { (offCapture.levelName($0), offCapture.outputs[$0]!) }
            deltaLevels = keys.map { (offCapture.levelName($0), deltaCapture.outputs[$0]!) }
            agreements.append(DetectionAgreement(reference: offDets, candidate: deltaDets, minScore: score))
        case .centerFace(let offDetector, let deltaDetector, let score):
            for mode in (n % 2 == 0 ? [0, 1] : [1, 0]) {
                let d = mode == 0 ? offDetector : deltaDetector
                let t0 = Benchmark.now()
                let dets = (try? d.detect(image)) ?? []
                let total = (Benchmark.now() - t0) * 1e3
                if mode == 0 { offDets = dets; offMs.append(d.lastNetworkMs); offTotalMs.append(total) }
                else { deltaDets = dets; deltaMs.append(d.lastNetworkMs); deltaTotalMs.append(total) }
            }
            agreements.append(DetectionAgreement(reference: offDets, candidate: deltaDets, minScore: score))
        case .backbone(let backbone, let transform):
            inputWS.beginFrame()
            let x = transform(image, workspace: inputWS).input
            inputShape = x.shape
            var off: FeaturePyramid?, delta: FeaturePyramid?
            for mode in (n % 2 == 0 ? [0, 1] : [1, 0]) {
                let t0 = Benchmark.now()
                if mode == 0 {
                    denseWS.beginFrame()
                    off = backbone(x, workspace: denseWS)
                    offMs.append((Benchmark.now() - t0) * 1e3)
                } else {
                    deltaWS.beginFrame()
                    delta = backbone(x, workspace: deltaWS, runner: cache)
                    deltaMs.append((Benchmark.now() - t0) * 1e3)
                }
            }
            offLevels = off!.levels.map { ($0.name, $0.features) }
            deltaLevels = delta!.levels.map { ($0.name, $0.features) }
        }
        if levelNames.isEmpty { levelNames = offLevels.map(\.0) }
        let e = zip(offLevels, deltaLevels).map { PyramidCapture.relativeL2($1.1, $0.1) }
        errors.append(e)
        fractions.append(cache.lastStats.recomputedFraction)
        tileFractions.append(cache.lastStats.tileFraction)
        kernelFractions.append(cache.lastStats.kernelFraction)
        let st = cache.lastStats
        if st.frameFallback { fallbacks += 1 }
        if !st.refreshed {
            convMs.append(st.convSeconds * 1e3); overheadMs.append(st.overheadSeconds * 1e3); gateMs.append(st.gateSeconds * 1e3)
            if st.gatedTiles > 0 { commitFractions.append(Double(st.committedTiles) / Double(st.gatedTiles)) }
            inputFractions.append(st.inputChangedFraction)
        }
        if !st.refreshed && !st.frameFallback {
            for (i, t) in cache.profile!.lastLayerTiles { layerTiles[i, default: 0] += t }
            for (i, t) in cache.profile!.lastLayerCommitted { layerCommitted[i, default: 0] += t }
            for (i, t) in cache.profile!.lastLayerDense { layerDense[i, default: 0] += t }
            for (i, t) in cache.profile!.lastLayerSeconds { layerSeconds[i, default: 0] += t }
            for (i, t) in cache.profile!.lastLayerConvSeconds { layerConvSeconds[i, default: 0] += t }
            layerFrames += 1
        }
        if noiseFloor { floorAgreements.append(floor(image, n, reference: offDets)) }
        if let jsonl { jsonl.write(Data(line(n, e).utf8)) }
    }

    /// The dense detector on frame `n` moved by ±1 grey level per byte, against its dense result `reference`
    /// (after the frame's levels were read: the dense state is reused).
    private func floor(_ image: RGBImage, _ n: Int, reference: [Detection]) -> DetectionAgreement {
        let dithered = ditheredByOneLevel(image, seed: UInt64(n))
        switch subject {
        case .detector(let d, let score):
            return DetectionAgreement(reference: reference, candidate: d.detect(dithered, state: offState!), minScore: score)
        case .centerFace(let off, _, let score):
            return DetectionAgreement(reference: reference, candidate: (try? off.detect(dithered)) ?? [], minScore: score)
        case .backbone:
            return DetectionAgreement()
        }
    }

    private func line(_ n: Int, _ e: [Double]) -> String {
        var s = String(format: "{\"clip\":\"%@\",\"frame\":%d,\"off_ms\":%.2f,\"delta_ms\":%.2f,", clip.replacingOccurrences(of: "\"", with: "\\\""),
                       n, offMs[n], deltaMs[n])
        if n < offTotalMs.count {
            s += String(format: "\"off_detector_ms\":%.2f,\"delta_detector_ms\":%.2f,", offTotalMs[n], deltaTotalMs[n])
        }
        s += String(format: "\"recomputed\":%.4f,\"kernel_fraction\":%.4f,\"recomputed_tiles\":%.4f,\"refreshed\":%@,\"input_changed\":%.4f,\"frame_fallback\":%@,",
                    fractions[n], kernelFractions[n], tileFractions[n], cache.lastStats.refreshed ? "true" : "false",
                    cache.lastStats.inputChangedFraction, cache.lastStats.frameFallback ? "true" : "false")
        if n < agreements.count {
            let a = agreements[n]
            s += String(format: "\"f1\":%.4f,\"off_detections\":%d,\"delta_detections\":%d,", a.f1, a.reference, a.candidate)
        }
        s += "\"rel_l2\":{" + zip(levelNames, e).map { String(format: "\"%@\":%.3e", $0.0, $0.1) }.joined(separator: ",") + "}}\n"
        return s
    }

    public func progress() {
        let n = offMs.count
        FileHandle.standardError.write(Data(String(format: "  frame %d: off %.0f ms, delta %.0f ms, recomputed %.3f\n",
                                                   n, offMs[n - 1], deltaMs[n - 1], fractions[n - 1]).utf8))
    }

    /// `--layers`: per conv layer through the cache (backbone and heads), over the delta frames: mean recomputed
    /// tile fraction, time (and its GEMM part), committed share of a gated conv, and how often it ran densely.
    public func layerReport() {
        guard layerFrames > 0 else { print("no delta frame ran by tiles"); return }
        let profile = cache.profile!
        print("recomputed tile fraction per conv layer, backbone and heads (mean of \(layerFrames) delta frames):")
        for index in profile.layerKeys.keys.sorted() {
            guard let key = profile.layerKeys[index], let total = profile.layerTileCounts[index], total > 0 else { continue }
            let committed = layerCommitted[index].map {
                String(format: ", committed %.2f of them", Double($0) / Double(max(layerTiles[index] ?? 0, 1)))
            } ?? ""
            let runs = layerFrames * (profile.layerInstances[index] ?? 1)
            let dense = layerDense[index].map { String(format: ", dense in %.0f%% of its runs", 100 * Double($0) / Double(runs)) } ?? ""
            print(String(format: "  %-42@ %.3f of %d tiles, %.2f ms (GEMM %.2f)%@%@", key,
                         Double(layerTiles[index] ?? 0) / Double(layerFrames * total), total,
                         (layerSeconds[index] ?? 0) * 1e3 / Double(layerFrames), (layerConvSeconds[index] ?? 0) * 1e3 / Double(layerFrames),
                         committed as NSString, dense as NSString))
        }
    }

    /// The per-clip report (stdout).
    public func report(_ input: String) {
        let count = offMs.count
        func mean(_ a: [Double]) -> Double { a.reduce(0, +) / Double(max(a.count, 1)) }
        print("clip: \(input): \(count) frames\(inputShape.isEmpty ? "" : ", network input \(inputShape)"), levels \(levelNames.joined(separator: ","))")
        let (offT, deltaT) = (offMs.reduce(0, +), deltaMs.reduce(0, +))
        print(String(format: "backbone+FPN off:   mean %.1f ms/frame (median %.1f)", mean(offMs), Benchmark.median(offMs)))
        print(String(format: "backbone+FPN delta: mean %.1f ms/frame (median %.1f)", mean(deltaMs), Benchmark.median(deltaMs)))
        print(String(format: "backbone+FPN speedup (total off / total delta): %.2fx; of medians: %.2fx", offT / deltaT,
                     Benchmark.median(offMs) / Benchmark.median(deltaMs)))
        if !offTotalMs.isEmpty {
            print(String(format: "detector off %.1f ms/frame, delta %.1f ms/frame (medians %.1f / %.1f): speedup %.2fx",
                         mean(offTotalMs), mean(deltaTotalMs), Benchmark.median(offTotalMs), Benchmark.median(deltaTotalMs),
                         offTotalMs.reduce(0, +) / deltaTotalMs.reduce(0, +)))
        }
        print(String(format: "recomputed: mean %.3f of dense conv FLOPs, %.3f of output tiles (all conv layers); the "
                     + "kernels ran %.3f of the dense FLOPs (whole Winograd blocks)",
                     mean(fractions), mean(tileFractions), mean(kernelFractions)))
        if !convMs.isEmpty {
            print(String(format: "delta frames (no refresh): median %.1f ms in conv GEMMs, %.1f ms cache overhead (compare, "
                         + "copy; output gating %.1f, committing %.2f of its tiles); stem input tiles changed: median %.3f; "
                         + "frame-level fall-back on %d of %d frames",
                         Benchmark.median(convMs), Benchmark.median(overheadMs), Benchmark.median(gateMs),
                         commitFractions.isEmpty ? 0 : Benchmark.median(commitFractions),
                         Benchmark.median(inputFractions),
                         fallbacks, count))
        }
        let state = cache.stateBytes, mb = { (b: Int) -> Double in Double(b) / 1_048_576 }
        print(String(format: "temporal state: %.0f MB (kept inputs %.0f, outputs %.0f, residuals %.0f); first frame: off "
                     + "%.0f ms, delta %.0f ms (dense pass + allocating the state)",
                     mb(state.inputs + state.outputs + state.residuals), mb(state.inputs), mb(state.outputs),
                     mb(state.residuals), offMs.first ?? 0, deltaMs.first ?? 0))
        let marks = [100, 400, count].filter { $0 <= count }.reduce(into: [Int]()) { if !$0.contains($1) { $0.append($1) } }
        print("relative L2 error of delta vs off per level: mean, max, at frame " + marks.map(String.init).joined(separator: "/"))
        for (l, name) in levelNames.enumerated() {
            let col = errors.map { $0[l] }
            let at = marks.map { String(format: "%.2e", col[$0 - 1]) }.joined(separator: " / ")
            print(String(format: "  %@: mean %.2e  max %.2e  at %@", name, mean(col), col.max()!, at))
        }
        var agreementScore: Float?
        switch subject {
        case .detector(_, let score), .centerFace(_, _, let score): agreementScore = score
        case .backbone: break
        }
        if let score = agreementScore {
            let all = agreements.reduce(DetectionAgreement(), +)
            print(String(format: "agreement (score >= %.2f, same class, IoU >= 0.9): F1 %.4f (%d matched of %d off / %d delta)",
                         score, all.f1, all.matched, all.reference, all.candidate)
                  + (all.meanMaskIoU.map { String(format: ", mask IoU of matched pairs %.4f (%d pairs)", $0, all.maskPairs) } ?? ""))
            print("unmatched: \(all.unmatched), of which \(all.scoreFlips) crossed the score threshold with the box in place "
                  + String(format: "(same class, IoU >= 0.9, other side below %.2f)", score))
            let at = marks.map { m -> String in
                let w = agreements[max(0, m - 10)..<m].reduce(DetectionAgreement(), +)
                return String(format: "%.4f", w.f1)
            }
            print("agreement F1 over the 10 frames ending at frame " + marks.map(String.init).joined(separator: "/") + ": "
                  + at.joined(separator: " / "))
            if !floorAgreements.isEmpty {
                let f = floorAgreements.reduce(DetectionAgreement(), +)
                print(String(format: "noise floor (dense on the frame +-1 grey level per byte vs dense): F1 %.4f (%d matched of %d / %d)",
                             f.f1, f.matched, f.reference, f.candidate)
                      + (f.meanMaskIoU.map { String(format: ", mask IoU %.4f", $0) } ?? "")
                      + "; \(f.scoreFlips) of its \(f.unmatched) unmatched crossed the score threshold")
            }
        }
    }
}
