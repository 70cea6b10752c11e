// The Vision module: models on top of Tensor. See docs/design/architecture.md (Vision).
//
//  RGBImage ─ DetectionTransform ─▶ [1,3,H,W] ─ ResNetFPNBackbone (body + FPN + extra) ─▶ FeaturePyramid p2...p7
//
// Weights are torchvision state dicts in safetensors; modules read their keys through a `ModuleLoader`, which
// verifies the whole file strictly. Per-stream state (buffers, temporal cache) is passed to each call.
