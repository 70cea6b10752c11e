import Foundation
import TestSupport
import XCTest
@testable import Tensor

/// Naive references: direct loops, Double accumulation, written from the torch definitions.
enum Ref {
    static func conv2d(_ x: Tensor, _ w: Tensor, bias: [Float]?, stride: Size2, padding: Size2, dilation: Size2,
                       groups: Int, relu: Bool) -> (shape: [Int], data: [Double]) {
        let (n, c, h, wi) = (x.shape[0], x.shape[1], x.shape[2], x.shape[3])
        let (oc, cg, kh, kw) = (w.shape[0], w.shape[1], w.shape[2], w.shape[3])
        precondition(cg * groups == c)
        let ho = (h + 2 * padding.h - dilation.h * (kh - 1) - 1) / stride.h + 1
        let wo = (wi + 2 * padding.w - dilation.w * (kw - 1) - 1) / stride.w + 1
        let xv = x.array, wv = w.array
        var out = [Double](repeating: 0, count: n * oc * ho * wo)
        let mg = oc / groups
        for b in 0..<n { for o in 0..<oc { let g = o / mg
            for oy in 0..<ho { for ox in 0..<wo {
                var acc = Double(bias?[o] ?? 0)
                for ci in 0..<cg { for ky in 0..<kh { for kx in 0..<kw {
                    let iy = oy * stride.h - padding.h + ky * dilation.h, ix = ox * stride.w - padding.w + kx * dilation.w
                    guard iy >= 0, iy < h, ix >= 0, ix < wi else { continue }
                    acc += Double(xv[((b * c + g * cg + ci) * h + iy) * wi + ix]) * Double(wv[((o * cg + ci) * kh + ky) * kw + kx])
                } } }
                out[((b * oc + o) * ho + oy) * wo + ox] = relu ? max(acc, 0) : acc
            } }
        } }
        return ([n, oc, ho, wo], out)
    }

    static func convTranspose2d(_ x: Tensor, _ w: Tensor, bias: [Float]?, stride: Size2, padding: Size2,
                                outputPadding: Size2, dilation: Size2, groups: Int) -> (shape: [Int], data: [Double]) {
        let (n, c, h, wi) = (x.shape[0], x.shape[1], x.shape[2], x.shape[3])
        let (mg, kh, kw) = (w.shape[1], w.shape[2], w.shape[3])
        let oc = mg * groups, cg = c / groups
        let ho = (h - 1) * stride.h - 2 * padding.h + dilation.h * (kh - 1) + outputPadding.h + 1
        let wo = (wi - 1) * stride.w - 2 * padding.w + dilation.w * (kw - 1) + outputPadding.w + 1
        let xv = x.array, wv = w.array
        var out = [Double](repeating: 0, count: n * oc * ho * wo)
        for b in 0..<n { for o in 0..<oc { for i in 0..<(ho * wo) { out[(b * oc + o) * ho * wo + i] = Double(bias?[o] ?? 0) } } }
        for b in 0..<n { for ci in 0..<c { let g = ci / cg
            for iy in 0..<h { for ix in 0..<wi { for m in 0..<mg { for ky in 0..<kh { for kx in 0..<kw {
                let oy = iy * stride.h - padding.h + ky * dilation.h, ox = ix * stride.w - padding.w + kx * dilation.w
                guard oy >= 0, oy < ho, ox >= 0, ox < wo else { continue }
                let o = g * mg + m
                out[((b * oc + o) * ho + oy) * wo + ox] += Double(xv[((b * c + ci) * h + iy) * wi + ix]) * Double(wv[((ci * mg + m) * kh + ky) * kw + kx])
            } } } } }
        } }
        return ([n, oc, ho, wo], out)
    }

    static func maxPool(_ x: Tensor, kernel: Size2, stride: Size2, padding: Size2) -> (shape: [Int], data: [Double]) {
        let (n, c, h, w) = (x.shape[0], x.shape[1], x.shape[2], x.shape[3])
        let ho = (h + 2 * padding.h - kernel.h) / stride.h + 1, wo = (w + 2 * padding.w - kernel.w) / stride.w + 1
        let xv = x.array
        var out = [Double]()
        for p in 0..<(n * c) { for oy in 0..<ho { for ox in 0..<wo {
            var m = -Double.infinity
            for ky in 0..<kernel.h { for kx in 0..<kernel.w {
                let iy = oy * stride.h - padding.h + ky, ix = ox * stride.w - padding.w + kx
                if iy >= 0 && iy < h && ix >= 0 && ix < w { m = max(m, Double(xv[(p * h + iy) * w + ix])) }
            } }
            out.append(m)
        } } }
        return ([n, c, ho, wo], out)
    }

    /// torch nearest: src = min(floor(dst * (in/out)), in - 1) with a float scale.
    static func nearest(_ x: Tensor, _ ho: Int, _ wo: Int) -> [Double] {
        let (n, c, h, w) = (x.shape[0], x.shape[1], x.shape[2], x.shape[3])
        let xv = x.array
        var out = [Double]()
        for p in 0..<(n * c) { for oy in 0..<ho { for ox in 0..<wo {
            let iy = min(Int((Float(oy) * (Float(h) / Float(ho))).rounded(.down)), h - 1)
            let ix = min(Int((Float(ox) * (Float(w) / Float(wo))).rounded(.down)), w - 1)
            out.append(Double(xv[(p * h + iy) * w + ix]))
        } } }
        return out
    }

    /// align_corners=False bilinear from its definition; the source coordinate in Float as torch computes it
    /// (scale = Float(in) / Float(out)), the interpolation in Double.
    static func bilinear(_ x: Tensor, _ ho: Int, _ wo: Int) -> [Double] {
        let (n, c, h, w) = (x.shape[0], x.shape[1], x.shape[2], x.shape[3])
        let xv = x.array
        func tap(_ o: Int, _ i: Int, _ out: Int) -> (Int, Int, Double) {
            let s = max((Float(o) + 0.5) * (Float(i) / Float(out)) - 0.5, 0)
            let i0 = min(Int(s.rounded(.down)), i - 1)
            return (i0, min(i0 + 1, i - 1), Double(s - Float(i0)))
        }
        var out = [Double]()
        for p in 0..<(n * c) { for oy in 0..<ho { for ox in 0..<wo {
            let (y0, y1, ly) = tap(oy, h, ho), (x0, x1, lx) = tap(ox, w, wo)
            func v(_ y: Int, _ xx: Int) -> Double { Double(xv[(p * h + y) * w + xx]) }
            out.append((1 - ly) * ((1 - lx) * v(y0, x0) + lx * v(y0, x1)) + ly * ((1 - lx) * v(y1, x0) + lx * v(y1, x1)))
        } } }
        return out
    }
}
