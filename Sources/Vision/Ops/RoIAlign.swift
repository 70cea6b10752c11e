import Dispatch
import FPNCore
import Foundation

/// RoIAlign and torchvision's `MultiScaleRoIAlign` (`ops/poolers.py`, CPU kernel `csrc/ops/cpu/roi_align_kernel.cpp`).
public enum RoIAlign {
    /// Pools one box from a single-image feature map `[channels, height, width]` (row-major planes) into
    /// `output[channels * pooledHeight * pooledWidth]`, with `aligned = false` semantics as torchvision's CPU kernel:
    ///
    /// - start/end = box coordinate × `spatialScale` (no half-pixel shift), RoI size = max(end - start, 1);
    /// - bin = size / pooled; `samplingRatio` × `samplingRatio` samples per bin at
    ///   `start + p * bin + (i + 0.5) * bin / samplingRatio`;
    /// - a sample with y < -1 or y > height (same for x) contributes 0; negative coordinates clamp to 0; at or past
    ///   the last row/column the last row/column is used alone; bilinear weights `(1-ly)(1-lx)`, ...;
    /// - the bin value is the sum of its samples / (samplingRatio²), accumulated in the kernel's order.
    public static func pool(feature: UnsafeBufferPointer<Float>, channels: Int, height: Int, width: Int,
                            box: Box, spatialScale: Float, pooledHeight: Int, pooledWidth: Int,
                            samplingRatio: Int, output: UnsafeMutableBufferPointer<Float>) {
        precondition(samplingRatio > 0, "RoIAlign: adaptive sampling (ratio <= 0) is not supported")
        precondition(feature.count >= channels * height * width)
        precondition(output.count >= channels * pooledHeight * pooledWidth)
        let startW = box.x1 * spatialScale
        let startH = box.y1 * spatialScale
        let endW = box.x2 * spatialScale
        let endH = box.y2 * spatialScale
        let roiW = max(endW - startW, 1)
        let roiH = max(endH - startH, 1)
        let binH = roiH / Float(pooledHeight)
        let binW = roiW / Float(pooledWidth)
        let gridH = samplingRatio, gridW = samplingRatio
        let count = Float(max(gridH * gridW, 1))

        // Pre-computed sample positions and weights, in the kernel's (ph, pw, iy, ix) order.
        let samples = pooledHeight * pooledWidth * gridH * gridW
        var pos = [Int32](repeating: 0, count: samples * 4)
        var wts = [Float](repeating: 0, count: samples * 4)
        var s = 0
        let fh = Float(height), fw = Float(width)
        for ph in 0..<pooledHeight {
            for pw in 0..<pooledWidth {
                for iy in 0..<gridH {
                    let yy = startH + Float(ph) * binH + (Float(iy) + 0.5) * binH / Float(gridH)
                    for ix in 0..<gridW {
                        let xx = startW + Float(pw) * binW + (Float(ix) + 0.5) * binW / Float(gridW)
                        defer { s += 1 }
                        var y = yy, x = xx
                        if y < -1.0 || y > fh || x < -1.0 || x > fw { continue }  // weights stay 0
                        if y <= 0 { y = 0 }
                        if x <= 0 { x = 0 }
                        var yLow = Int(y), xLow = Int(x)
                        let yHigh: Int, xHigh: Int
                        if yLow >= height - 1 {
                            yLow = height - 1; yHigh = yLow; y = Float(yLow)
                        } else {
                            yHigh = yLow + 1
                        }
                        if xLow >= width - 1 {
                            xLow = width - 1; xHigh = xLow; x = Float(xLow)
                        } else {
                            xHigh = xLow + 1
                        }
                        let ly = y - Float(yLow), lx = x - Float(xLow)
                        let hy = 1 - ly, hx = 1 - lx
                        let o = s * 4
                        pos[o] = Int32(yLow * width + xLow)
                        pos[o + 1] = Int32(yLow * width + xHigh)
                        pos[o + 2] = Int32(yHigh * width + xLow)
                        pos[o + 3] = Int32(yHigh * width + xHigh)
                        wts[o] = hy * hx
                        wts[o + 1] = hy * lx
                        wts[o + 2] = ly * hx
                        wts[o + 3] = ly * lx
                    }
                }
            }
        }
        let plane = height * width
        let perBin = gridH * gridW
        pos.withUnsafeBufferPointer { p in
            wts.withUnsafeBufferPointer { w in
                for c in 0..<channels {
                    let f = feature.baseAddress! + c * plane
                    let out = output.baseAddress! + c * pooledHeight * pooledWidth
                    var k = 0
                    for bin in 0..<(pooledHeight * pooledWidth) {
                        var acc: Float = 0
                        for _ in 0..<perBin {
                            let o = k * 4
                            acc += w[o] * f[Int(p[o])] + w[o + 1] * f[Int(p[o + 1])]
                                + w[o + 2] * f[Int(p[o + 2])] + w[o + 3] * f[Int(p[o + 3])]
                            k += 1
                        }
                        out[bin] = acc / count
                    }
                }
            }
        }
    }
}

/// torchvision's `MultiScaleRoIAlign` with its `LevelMapper` (FPN paper eq. 1): each box is pooled from one level.
public struct MultiScaleRoIAlign: Sendable, Equatable {
    /// Output size (7 for the box head, 14 for the mask head).
    public var outputSize: Int
    /// Samples per bin side (2 in torchvision's detectors).
    public var samplingRatio: Int
    /// Canonical box side and level of the mapper (224, 4).
    public var canonicalScale: Float = 224
    public var canonicalLevel: Int = 4

    static let cores = max(ProcessInfo.processInfo.activeProcessorCount, 1)

    public init(outputSize: Int, samplingRatio: Int = 2) {
        self.outputSize = outputSize
        self.samplingRatio = samplingRatio
    }

    /// torchvision `_infer_scale`: `2^round(log2(featureHeight / imageHeight))` (half-to-even on the rounded log).
    public static func scale(featureHeight: Int, imageHeight: Int) -> Float {
        let approx = Float(Double(featureHeight) / Double(imageHeight))
        return Float(pow(2.0, Double(log2f(approx).rounded(.toNearestOrEven))))
    }

    /// FPN level of `box` among `minLevel...maxLevel` (e.g. 2...5), returned as an offset from `minLevel`:
    /// `floor(4 + log2(sqrt(area) / 224) + 1e-6)` clamped, all in Float32.
    public func levelIndex(of box: Box, minLevel: Int, maxLevel: Int) -> Int {
        let area = (box.x2 - box.x1) * (box.y2 - box.y1)
        let s = area.squareRoot()
        let eps: Float = 1e-6
        let t = (Float(canonicalLevel) + log2f(s / canonicalScale) + eps).rounded(.down)
        let c = min(max(t, Float(minLevel)), Float(maxLevel))
        return Int(c) - minLevel
    }

    /// Pools `boxes` (input-image pixels of the resized, unpadded image `imageHeight x imageWidth`) from the levels
    /// `features` (each `[channels, h, w]`, finest first, consecutive powers of two), returning
    /// `[boxes.count, channels, outputSize, outputSize]`.
    public func callAsFunction(features: [(data: UnsafeBufferPointer<Float>, height: Int, width: Int)],
                               channels: Int, boxes: [Box], imageHeight: Int, imageWidth: Int) -> [Float] {
        var out = [Float](repeating: 0, count: boxes.count * channels * outputSize * outputSize)
        out.withUnsafeMutableBufferPointer { o in
            pool(features: features, channels: channels, boxes: boxes, imageHeight: imageHeight, into: o)
        }
        return out
    }

    /// As `callAsFunction`, writing into `out` (`boxes.count * channels * outputSize²` floats).
    /// torchvision infers each level's scale from its height and the image height (`_infer_scale`).
    public func pool(features: [(data: UnsafeBufferPointer<Float>, height: Int, width: Int)], channels: Int,
                     boxes: [Box], imageHeight: Int, into out: UnsafeMutableBufferPointer<Float>) {
        let per = channels * outputSize * outputSize
        precondition(out.count >= boxes.count * per)
        guard !boxes.isEmpty else { return }
        let scales = features.map { Self.scale(featureHeight: $0.height, imageHeight: imageHeight) }
        let minLevel = Int((-log2f(scales[0])).rounded())
        let maxLevel = Int((-log2f(scales[scales.count - 1])).rounded())
        let work = { (i: Int) in
            let box = boxes[i]
            let l = features.count == 1 ? 0 : self.levelIndex(of: box, minLevel: minLevel, maxLevel: maxLevel)
            let f = features[l]
            RoIAlign.pool(feature: f.data, channels: channels, height: f.height, width: f.width, box: box,
                          spatialScale: scales[l], pooledHeight: self.outputSize, pooledWidth: self.outputSize,
                          samplingRatio: self.samplingRatio,
                          output: UnsafeMutableBufferPointer(rebasing: out[(i * per)..<((i + 1) * per)]))
        }
        // Boxes are independent: split them over the cores (torch's kernel parallelises over RoIs too).
        let chunks = boxes.count * per >= 1 << 16 ? min(boxes.count, Self.cores * 4) : 1
        if chunks <= 1 {
            for i in boxes.indices { work(i) }
        } else {
            DispatchQueue.concurrentPerform(iterations: chunks) { c in
                for i in (boxes.count * c / chunks)..<(boxes.count * (c + 1) / chunks) { work(i) }
            }
        }
    }
}
