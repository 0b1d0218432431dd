// Batch transforms of the loader: per-channel normalization (every split) and the training
// augmentations of image batches [B, C, H, W]: random crop with zero padding and horizontal
// flip. Each works on a whole batch at once; the random choices are drawn separately
// (draw_augmentation) so that they depend only on the generator the caller seeds.
#pragma once

#include <ATen/core/Generator.h>
#include <ATen/core/Tensor.h>

#include <cstdint>
#include <vector>

namespace sculpt::data {

// (x - mean[c]) / std[c] over dim 1 of a float batch [B, C, ...].
at::Tensor normalize(const at::Tensor& x, const std::vector<double>& mean,
                     const std::vector<double>& std);

// Where each image of a batch is cropped and whether it is flipped.
struct Augmentation {
  at::Tensor top, left;  // int64 [B]: offsets in the padded image, in [0, 2 * padding]
  at::Tensor flip;       // bool [B]: flip horizontally (along W)
};

// Offsets uniform in [0, 2 * padding], flips with probability 0.5 (all false unless `hflip`).
Augmentation draw_augmentation(int64_t batch, int64_t padding, bool hflip, at::Generator& gen);

// Zero-pads images [B, C, H, W] by `padding` on every side, takes the H x W window at
// (a.top[b], a.left[b]) of image b and mirrors it along W where a.flip[b]: one gather.
at::Tensor crop_and_flip(const at::Tensor& x, int64_t padding, const Augmentation& a);

}  // namespace sculpt::data
