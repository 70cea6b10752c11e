/*
 * RoIAlign accumulation (torchvision's CPU kernel, aligned = false) for one box
 * from a channels-last feature map, with run-time ISA dispatch.
 */
#ifndef FPN_ROIALIGN_H
#define FPN_ROIALIGN_H

#ifdef __cplusplus
extern "C" {
#endif

/*
 * feature:   [height * width][channels] floats (channels-last).
 * positions: per sample 4 pixel indices (y * width + x: low-low, low-high, high-low, high-high), samples in the
 *            kernel's (bin, iy, ix) order, bins * per_bin * 4 of them.
 * weights:   the 4 bilinear weights of each sample, same layout (a skipped sample has weight 0 at index 0).
 * scratch:   bins * channels floats of workspace.
 * out:       [channels][bins]: per channel and bin, the sum over the bin's samples (in order) of
 *            ((w0 f0 + w1 f1) + w2 f2) + w3 f3, divided by per_bin. Plain multiplies and adds, no FMA: every ISA
 *            gives the bits of the scalar loop (and of torchvision's kernel).
 * isa:       an fpn_isa value; one the CPU lacks is lowered to fpn_best_isa().
 */
void fpn_roi_align_pool(int isa, const float *feature, int channels, const long *positions, const float *weights,
                        int bins, int per_bin, float *scratch, float *out);

#ifdef __cplusplus
}
#endif

#endif
