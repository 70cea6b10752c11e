import Foundation
import FPNCore
import Tensor

/// torchvision's `paste_masks_in_image` (`models/detection/roi_heads.py`) for one mask.
///
/// The `M x M` mask (probabilities) is zero-padded by `padding` on every side; the box is expanded about its centre
/// by `(M + 2 padding) / M` (Float32) and truncated to integers `(bx0, by0, bx1, by1)`; the padded mask is resized
/// bilinearly (align_corners = false, no antialias) to `h = max(by1 - by0 + 1, 1)` rows and
/// `w = max(bx1 - bx0 + 1, 1)` columns; rows `max(by0, 0) ..< min(by1 + 1, H)` and the matching columns are pasted.
public struct PastedMask: Sendable, Equatable {
    /// Pasted region in image pixels: columns `x0..<x1`, rows `y0..<y1` (empty when `x1 <= x0` or `y1 <= y0`).
    public var x0: Int, y0: Int, x1: Int, y1: Int
    /// Region values (probabilities), row-major, `(y1 - y0) * (x1 - x0)`.
    public var values: [Float]
    /// Image size the region lives in.
    public var imageHeight: Int, imageWidth: Int

    /// The full `imageHeight x imageWidth` probability image (zeros outside the region), row-major.
    public func fullImage() -> [Float] {
        var out = [Float](repeating: 0, count: imageHeight * imageWidth)
        let rw = x1 - x0
        guard rw > 0, y1 > y0 else { return out }
        for y in y0..<y1 {
            for x in x0..<x1 { out[y * imageWidth + x] = values[(y - y0) * rw + x - x0] }
        }
        return out
    }

    /// The binary mask `value > threshold` (torchvision/COCO convention: strictly greater than 0.5) as COCO RLE over
    /// the whole image, built column by column without materialising the full image.
    public func rle(threshold: Float) -> MaskRLE {
        var counts: [UInt32] = []
        var current = false
        var run: UInt32 = 0
        @inline(__always) func push(_ v: Bool, _ n: Int) {
            guard n > 0 else { return }
            if v != current { counts.append(run); run = 0; current = v }
            run += UInt32(n)
        }
        let rw = x1 - x0, rh = y1 - y0
        let hasRegion = rw > 0 && rh > 0
        // The region thresholded column-major (one pass over the row-major values), so each column's runs are
        // found by scanning contiguous bytes for the next change (memchr) instead of a branch per pixel.
        var columns = [UInt8](repeating: 0, count: hasRegion ? rw * rh : 0)
        if hasRegion {
            values.withUnsafeBufferPointer { v in
                columns.withUnsafeMutableBufferPointer { c in
                    for y in 0..<rh {
                        for x in 0..<rw { c[x * rh + y] = v[y * rw + x] > threshold ? 1 : 0 }
                    }
                }
            }
        }
        columns.withUnsafeBufferPointer { c in
            for x in 0..<imageWidth {
                if !hasRegion || x < x0 || x >= x1 { push(false, imageHeight); continue }
                push(false, y0)
                let col = c.baseAddress! + (x - x0) * rh
                var y = 0
                while y < rh {
                    let on = col[y] != 0
                    // The next byte that differs from this run's value (0 or 1), or the column's end.
                    let other: Int32 = on ? 0 : 1
                    let found = memchr(col + y, other, rh - y)
                    let next = found.map { UnsafePointer($0.assumingMemoryBound(to: UInt8.self)) - col } ?? rh
                    push(on, next - y)
                    y = next
                }
                push(false, imageHeight - y1)
            }
        }
        counts.append(run)
        return MaskRLE(height: imageHeight, width: imageWidth, counts: counts)
    }
}

public enum MaskPaste {
    /// Pastes the `size x size` row-major mask `mask` for `box` (image pixels) into an `imageHeight x imageWidth`
    /// image, exactly as torchvision (see `PastedMask`).
    public static func paste(mask: UnsafeBufferPointer<Float>, size m: Int, box: Box,
                             imageHeight: Int, imageWidth: Int, padding: Int = 1) -> PastedMask {
        precondition(mask.count >= m * m)
        let p = m + 2 * padding
        // Padded mask.
        var padded = [Float](repeating: 0, count: p * p)
        for y in 0..<m {
            for x in 0..<m { padded[(y + padding) * p + x + padding] = mask[y * m + x] }
        }
        // expand_boxes in Float32, then `.to(int64)` (truncation toward zero).
        let scale = Float(Double(p) / Double(m))
        let wHalf = (box.x2 - box.x1) * 0.5 * scale
        let hHalf = (box.y2 - box.y1) * 0.5 * scale
        let xc = (box.x2 + box.x1) * 0.5
        let yc = (box.y2 + box.y1) * 0.5
        let bx0 = Int(xc - wHalf), bx1 = Int(xc + wHalf)
        let by0 = Int(yc - hHalf), by1 = Int(yc + hHalf)
        let w = max(bx1 - bx0 + 1, 1)
        let h = max(by1 - by0 + 1, 1)
        let x0 = max(bx0, 0), x1 = min(bx1 + 1, imageWidth)
        let y0 = max(by0, 0), y1 = min(by1 + 1, imageHeight)
        guard x1 > x0, y1 > y0 else {
            return PastedMask(x0: x0, y0: y0, x1: x0, y1: y0, values: [], imageHeight: imageHeight,
                              imageWidth: imageWidth)
        }
        // Bilinear taps for the needed output columns/rows only (offsets into the resized w x h mask).
        let cx = Self.linearTaps(inputSize: p, outputSize: w, range: (x0 - bx0)..<(x1 - bx0))
        let cy = Self.linearTaps(inputSize: p, outputSize: h, range: (y0 - by0)..<(y1 - by0))
        let rw = x1 - x0
        var values = [Float](repeating: 0, count: (y1 - y0) * rw)
        func soa(_ taps: [Tap]) -> Ops.BilinearTaps {
            Ops.BilinearTaps(i0: taps.map { Int32($0.i0) }, i1: taps.map { Int32($0.i1) }, w0: taps.map(\.w0),
                             w1: taps.map(\.w1))
        }
        // ATen's `cpu_upsample_linear` for outputs with h + w <= 128, its generic N-d kernel above (both with the
        // FMA contractions of torch's build: within 1 ulp of it).
        padded.withUnsafeBufferPointer { src in
            values.withUnsafeMutableBufferPointer { out in
                Ops.pasteBilinear(src.baseAddress!, size: p, rows: soa(cy), columns: soa(cx), small: h + w <= 128,
                                  into: out.baseAddress!)
            }
        }
        return PastedMask(x0: x0, y0: y0, x1: x1, y1: y1, values: values, imageHeight: imageHeight,
                          imageWidth: imageWidth)
    }

    /// One output index's two source taps and weights for a bilinear resize `inputSize → outputSize`,
    /// align_corners = false, as ATen's `compute_source_index_and_lambda` (Float32 math).
    public struct Tap: Sendable, Equatable { public var i0: Int, i1: Int, w0: Float, w1: Float }

    public static func linearTaps(inputSize: Int, outputSize: Int, range: Range<Int>) -> [Tap] {
        if inputSize == outputSize { return range.map { Tap(i0: $0, i1: $0, w0: 1, w1: 0) } }
        let ratio = Float(inputSize) / Float(outputSize)
        return range.map { o in
            // fma(ratio, o + 0.5, -0.5): torch's build contracts `scale * (dst + 0.5) - 0.5` into an FMA.
            let real = max(Float(-0.5).addingProduct(ratio, Float(o) + 0.5), 0)
            let i0 = min(Int(real.rounded(.down)), inputSize - 1)
            let l1 = min(max(real - Float(i0), 0), 1)
            let i1 = i0 + (i0 < inputSize - 1 ? 1 : 0)
            return Tap(i0: i0, i1: i1, w0: 1 - l1, w1: l1)
        }
    }
}
