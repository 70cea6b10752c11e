import Dispatch
import FPNCore
import Foundation
import Tensor

/// RoIAlign and torchvision's `MultiScaleRoIAlign` (`ops/poolers.py`, CPU kernel `csrc/ops/cpu/roi_align_kernel.cpp`).
public enum RoIAlign {
    /// Pools one box from a single-image feature map in the channels-last layout `[height, width, channels]`
    /// (see `channelsLast`) into `output[channels * pooledHeight * pooledWidth]` (channels-first, as torchvision's
    /// `[C, ph, pw]`), with `aligned = false` semantics as torchvision's CPU kernel:
    ///
    /// - start/end = box coordinate × `spatialScale` (no half-pixel shift), RoI size = max(end - start, 1);
    /// - bin = size / pooled; `samplingRatio` × `samplingRatio` samples per bin at
    ///   `start + p * bin + (i + 0.5) * bin / samplingRatio`;
    /// - a sample with y < -1 or y > height (same for x) contributes 0; negative coordinates clamp to 0; at or past
    ///   the last row/column the last row/column is used alone; bilinear weights `(1-ly)(1-lx)`, ...;
    /// - the bin value is the sum of its samples / (samplingRatio²), accumulated in the kernel's order.
    ///
    /// Channels-last because every sample reads the same four pixels in all channels: with the channels contiguous
    /// that is four vector loads per sample instead of four scattered gathers per channel (same arithmetic per
    /// channel, in the same order, so the result is the same as pooling the channels-first map).
    public static func pool(channelsLast feature: UnsafeBufferPointer<Float>, channels: Int, height: Int, width: Int,
                            box: Box, spatialScale: Float, pooledHeight: Int, pooledWidth: Int,
                            samplingRatio: Int, output: UnsafeMutableBufferPointer<Float>) {
        precondition(samplingRatio > 0, "RoIAlign: adaptive sampling (ratio <= 0) is not supported")
        precondition(feature.count >= channels * height * width)
        precondition(output.count >= channels * pooledHeight * pooledWidth)
        let bins = pooledHeight * pooledWidth
        let perBin = samplingRatio * samplingRatio
        withUnsafeTemporaryAllocation(of: Int.self, capacity: bins * perBin * 4) { pos in
            withUnsafeTemporaryAllocation(of: Float.self, capacity: bins * perBin * 4 + bins * channels) { scratch in
                let wts = UnsafeMutableBufferPointer(rebasing: scratch[0..<(bins * perBin * 4)])
                samples(box: box, spatialScale: spatialScale, height: height, width: width, pooledHeight: pooledHeight,
                        pooledWidth: pooledWidth, samplingRatio: samplingRatio, positions: pos, weights: wts)
                // The per-channel sums run in CKernels (vectorised for the CPU, same arithmetic as the scalar loop).
                Ops.roiAlignPool(feature: feature.baseAddress!, channels: channels, positions: pos.baseAddress!,
                                 weights: wts.baseAddress!, bins: bins, perBin: perBin,
                                 scratch: scratch.baseAddress! + bins * perBin * 4, output: output.baseAddress!)
            }
        }
    }

    /// The kernel's bilinear taps of one box in its (ph, pw, iy, ix) order: per sample 4 pixel indices
    /// (`y * width + x`: low-low, low-high, high-low, high-high) and weights; out-of-range samples get weight 0.
    static func samples(box: Box, spatialScale: Float, height: Int, width: Int, pooledHeight: Int, pooledWidth: Int,
                        samplingRatio: Int, positions pos: UnsafeMutableBufferPointer<Int>,
                        weights wts: UnsafeMutableBufferPointer<Float>) {
        let startW = box.x1 * spatialScale
        let startH = box.y1 * spatialScale
        let endW = box.x2 * spatialScale
        let endH = box.y2 * spatialScale
        let roiW = max(endW - startW, 1)
        let roiH = max(endH - startH, 1)
        let binH = roiH / Float(pooledHeight)
        let binW = roiW / Float(pooledWidth)
        let gridH = samplingRatio, gridW = samplingRatio
        let fh = Float(height), fw = Float(width)
        var s = 0
        for ph in 0..<pooledHeight {
            for pw in 0..<pooledWidth {
                for iy in 0..<gridH {
                    let yy = startH + Float(ph) * binH + (Float(iy) + 0.5) * binH / Float(gridH)
                    for ix in 0..<gridW {
                        let xx = startW + Float(pw) * binW + (Float(ix) + 0.5) * binW / Float(gridW)
                        let o = s * 4
                        s += 1
                        var y = yy, x = xx
                        if y < -1.0 || y > fh || x < -1.0 || x > fw {
                            for j in 0..<4 { pos[o + j] = 0; wts[o + j] = 0 }
                            continue
                        }
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
                        pos[o] = yLow * width + xLow
                        pos[o + 1] = yLow * width + xHigh
                        pos[o + 2] = yHigh * width + xLow
                        pos[o + 3] = yHigh * width + xHigh
                        wts[o] = hy * hx
                        wts[o + 1] = hy * lx
                        wts[o + 2] = ly * hx
                        wts[o + 3] = ly * lx
                    }
                }
            }
        }
    }

    /// Transposes one image's `[channels, height, width]` map into `[height, width, channels]` (RoIAlign's layout).
    public static func channelsLast(_ src: UnsafeBufferPointer<Float>, channels: Int, height: Int, width: Int,
                                    into dst: UnsafeMutableBufferPointer<Float>) {
        let plane = height * width
        precondition(src.count >= channels * plane && dst.count >= channels * plane)
        Ops.transpose(rows: channels, columns: plane, src.baseAddress!, lds: plane, into: dst.baseAddress!, ldd: channels)
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

    public init(outputSize: Int, samplingRatio: Int = 2) {
        self.outputSize = outputSize
        self.samplingRatio = samplingRatio
    }

    /// torchvision `_infer_scale`: `2^round(log2(featureHeight / imageHeight))` (half-to-even on the rounded log).
    public static func scale(featureHeight: Int, imageHeight: Int) -> Float {
        let approx = Float(Double(featureHeight) / Double(imageHeight))
        return Float(pow(2.0, Double(log2f(approx).rounded(.toNearestOrEven))))
    }

    /// Each level's scale (`scale`) and the FPN levels of the first and last (finest first, 2 and 5 for P2-P5).
    static func mapping(heights: [Int], imageHeight: Int) -> (scales: [Float], minLevel: Int, maxLevel: Int) {
        let scales = heights.map { scale(featureHeight: $0, imageHeight: imageHeight) }
        return (scales, Int((-log2f(scales[0])).rounded()), Int((-log2f(scales[scales.count - 1])).rounded()))
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

    /// The level (index into `levels`, sized `[height, width]` finest first, as `pool` takes them) that `box` is
    /// pooled from, and a rectangle of that level's pixels holding every pixel its bilinear taps read: the samples
    /// of a side lie inside [start, start + max(end − start, 1)] (in level pixels), each reads its floor and the
    /// next pixel, clamped to the level. Regions whose rectangle did not change pool to the same values.
    public func footprint(of box: Box, levels: [(height: Int, width: Int)],
                          imageHeight: Int) -> (level: Int, rows: Range<Int>, cols: Range<Int>) {
        let (scales, minLevel, maxLevel) = Self.mapping(heights: levels.map(\.height), imageHeight: imageHeight)
        let l = levels.count == 1 ? 0 : levelIndex(of: box, minLevel: minLevel, maxLevel: maxLevel)
        func span(_ a: Float, _ b: Float, size: Int) -> Range<Int> {
            let start = a * scales[l], extent = max(b * scales[l] - start, 1)
            guard start.isFinite, extent.isFinite else { return 0..<size }
            // One pixel of margin each side beyond the taps: float rounding of the sample positions never matters.
            let lo = start <= 1 ? 0 : min(size - 1, Int(start) - 1)
            let top = start + extent
            let hi = top <= 0 ? min(size - 1, 1) : min(size - 1, Int(min(top, Float(size))) + 2)
            return lo..<(max(lo, hi) + 1)
        }
        return (l, span(box.y1, box.y2, size: levels[l].height), span(box.x1, box.x2, size: levels[l].width))
    }

    /// Pools `boxes` (input-image pixels of the resized, unpadded image `imageHeight x imageWidth`) from the levels
    /// `features` (each channels-first `[channels, h, w]`, finest first, consecutive powers of two), returning
    /// `[boxes.count, channels, outputSize, outputSize]`. Transposes the levels first (a convenience; the detector
    /// transposes its pyramid once per frame and calls `pool(channelsLast:...)` for both heads).
    public func callAsFunction(features: [(data: UnsafeBufferPointer<Float>, height: Int, width: Int)],
                               channels: Int, boxes: [Box], imageHeight: Int, imageWidth: Int) -> [Float] {
        let last = features.map { f in
            [Float](unsafeUninitializedCapacity: channels * f.height * f.width) { buf, n in
                RoIAlign.channelsLast(f.data, channels: channels, height: f.height, width: f.width, into: buf)
                n = channels * f.height * f.width
            }
        }
        var out = [Float](repeating: 0, count: boxes.count * channels * outputSize * outputSize)
        func go(_ i: Int, _ acc: [(data: UnsafeBufferPointer<Float>, height: Int, width: Int)]) {
            if i == last.count {
                out.withUnsafeMutableBufferPointer { o in
                    pool(channelsLast: acc, channels: channels, boxes: boxes, imageHeight: imageHeight, into: o)
                }
                return
            }
            last[i].withUnsafeBufferPointer { go(i + 1, acc + [($0, features[i].height, features[i].width)]) }
        }
        go(0, [])
        return out
    }

    /// As `callAsFunction`, from channels-last levels (each `[h, w, channels]`, `RoIAlign.channelsLast`), writing
    /// into `out` (`boxes.count * channels * outputSize²` floats, channels-first per box).
    /// torchvision infers each level's scale from its height and the image height (`_infer_scale`).
    public func pool(channelsLast features: [(data: UnsafeBufferPointer<Float>, height: Int, width: Int)],
                     channels: Int, boxes: [Box], imageHeight: Int, into out: UnsafeMutableBufferPointer<Float>) {
        let per = channels * outputSize * outputSize
        precondition(out.count >= boxes.count * per)
        guard !boxes.isEmpty else { return }
        let (scales, minLevel, maxLevel) = Self.mapping(heights: features.map(\.height), imageHeight: imageHeight)
        let work = { (i: Int) in
            let box = boxes[i]
            let l = features.count == 1 ? 0 : self.levelIndex(of: box, minLevel: minLevel, maxLevel: maxLevel)
            let f = features[l]
            RoIAlign.pool(channelsLast: f.data, channels: channels, height: f.height, width: f.width, box: box,
                          spatialScale: scales[l], pooledHeight: self.outputSize, pooledWidth: self.outputSize,
                          samplingRatio: self.samplingRatio,
                          output: UnsafeMutableBufferPointer(rebasing: out[(i * per)..<((i + 1) * per)]))
        }
        // Boxes are independent: split them over the cores (torch's kernel parallelises over RoIs too).
        let width = Parallel.width
        let chunks = width > 1 && boxes.count * per >= 1 << 16 ? min(boxes.count, width * 4) : 1
        if chunks <= 1 {
            for i in boxes.indices { work(i) }
        } else {
            DispatchQueue.concurrentPerform(iterations: chunks) { c in
                for i in (boxes.count * c / chunks)..<(boxes.count * (c + 1) / chunks) { work(i) }
            }
        }
    }
}
