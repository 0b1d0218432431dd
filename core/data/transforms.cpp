#include "core/data/transforms.h"

#include <ATen/ATen.h>

#include "core/error.h"

namespace sculpt::data {

at::Tensor normalize(const at::Tensor& x, const std::vector<double>& mean,
                     const std::vector<double>& std) {
  SCULPT_ASSERT(
      x.dim() >= 2 && x.size(1) == static_cast<int64_t>(mean.size()) && mean.size() == std.size(),
      "normalize: ", mean.size(), " channels for a batch of shape ", x.sizes());
  std::vector<int64_t> shape(static_cast<size_t>(x.dim()) - 1, 1);  // [C, 1, ...]
  shape[0] = x.size(1);
  auto as_tensor = [&](const std::vector<double>& v) {
    return at::tensor(v, at::kDouble).to(x.scalar_type()).view(shape);
  };
  return (x - as_tensor(mean)) / as_tensor(std);
}

Augmentation draw_augmentation(int64_t batch, int64_t padding, bool hflip, at::Generator& gen) {
  Augmentation a;
  a.top = at::randint(0, 2 * padding + 1, {batch}, gen, at::kLong);
  a.left = at::randint(0, 2 * padding + 1, {batch}, gen, at::kLong);
  a.flip = hflip ? at::randint(0, 2, {batch}, gen, at::kLong).to(at::kBool)
                 : at::zeros({batch}, at::kBool);
  return a;
}

at::Tensor crop_and_flip(const at::Tensor& x, int64_t padding, const Augmentation& a) {
  SCULPT_ASSERT(x.dim() == 4, "crop_and_flip needs [B, C, H, W], got ", x.sizes());
  const int64_t B = x.size(0), C = x.size(1), H = x.size(2), W = x.size(3);
  const auto padded =
      padding > 0 ? at::constant_pad_nd(x, {padding, padding, padding, padding}) : x;
  const auto i64 = at::TensorOptions().dtype(at::kLong);
  auto cols = at::arange(W, i64).expand({B, W});  // [B, W]
  cols = at::where(a.flip.view({B, 1}), (W - 1) - cols, cols) + a.left.view({B, 1});
  const auto rows = at::arange(H, i64).view({1, H}) + a.top.view({B, 1});  // [B, H]
  // Broadcast to [B, C, H, W]: image, channel, padded row, padded column.
  return padded.index({at::arange(B, i64).view({B, 1, 1, 1}), at::arange(C, i64).view({1, C, 1, 1}),
                       rows.view({B, 1, H, 1}), cols.view({B, 1, 1, W})});
}

}  // namespace sculpt::data
