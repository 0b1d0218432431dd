// Generated datasets, deterministic by seed, no files: the quickstart and fast tests use them.
//  synthetic_blobs:  one Gaussian cluster per class in feature space.
//  synthetic_images: one smooth random prototype per class (a low-resolution random field
//                    upsampled bilinearly), randomly translated, scaled in contrast and noised.
#include <ATen/ATen.h>

#include "core/data/dataset.h"

namespace sculpt::data {

void SyntheticBlobsOptions::visit(config::Visitor& v) {
  v.field("samples", samples, "synthetic_blobs: rows generated", config::Range::at_least(2));
  v.field("features", features, "synthetic_blobs: input width", config::Range::at_least(1));
  v.field("classes", classes, "synthetic_blobs: number of Gaussian clusters (one per class)",
          config::Range::at_least(2));
  v.field("spread", spread, "synthetic_blobs: standard deviation of each cluster",
          config::Range::above(0));
  v.field("seed", seed, "synthetic_blobs: generator seed", config::Range::at_least(0));
}

void SyntheticImagesOptions::visit(config::Visitor& v) {
  v.field("samples", samples, "synthetic_images: images generated", config::Range::at_least(2));
  v.field("size", size, "synthetic_images: height and width in pixels", config::Range::at_least(8));
  v.field("channels", channels, "synthetic_images: channels per image", config::Range::at_least(1));
  v.field("classes", classes, "synthetic_images: classes (one prototype each)",
          config::Range::at_least(2));
  v.field("noise", noise,
          "synthetic_images: per-pixel Gaussian noise (prototypes have unit contrast)",
          config::Range::at_least(0));
  v.field("max_shift", max_shift, "synthetic_images: random translation in pixels",
          config::Range::at_least(0));
  v.field("seed", seed, "synthetic_images: generator seed", config::Range::at_least(0));
}

namespace {

at::Generator generator(int64_t seed) {
  return at::make_generator<at::CPUGeneratorImpl>(static_cast<uint64_t>(seed));
}

// The test part shares the class structure (drawn first from `seed`) and draws its samples
// from a second stream, so it is a fresh sample of the same distribution.
at::Generator sample_generator(at::Generator& structure, int64_t seed, DataPart part) {
  return part == DataPart::train ? structure : generator(seed * 7919 + 104729);
}

Dataset make_blobs(const SyntheticBlobsOptions& o, DataPart part) {
  auto structure = generator(o.seed);
  auto centers = at::randn({o.classes, o.features}, structure) * 3.0;
  auto gen = sample_generator(structure, o.seed, part);
  auto labels = at::randint(o.classes, {o.samples}, gen, at::kLong);
  auto x = centers.index_select(0, labels) + at::randn({o.samples, o.features}, gen) * o.spread;
  return Dataset(x, labels, DataSpec{{o.features}, o.classes});
}

Dataset make_images(const SyntheticImagesOptions& o, DataPart part) {
  auto structure = generator(o.seed);
  const int64_t low = std::max<int64_t>(2, o.size / 4);
  auto field = at::randn({o.classes, o.channels, low, low}, structure);
  auto gen = sample_generator(structure, o.seed, part);
  auto protos = at::upsample_bilinear2d(field, {o.size, o.size}, /*align_corners=*/false);
  protos = (protos - protos.mean({1, 2, 3}, true)) /
           protos.std({1, 2, 3}, /*unbiased=*/true, /*keepdim=*/true);
  auto labels = at::randint(o.classes, {o.samples}, gen, at::kLong);
  auto images = protos.index_select(0, labels).contiguous();
  if (o.max_shift > 0) {
    auto shifts = at::randint(-o.max_shift, o.max_shift + 1, {o.samples, 2}, gen, at::kLong);
    auto acc = shifts.accessor<int64_t, 2>();
    for (int64_t i = 0; i < o.samples; ++i)
      images[i] = at::roll(images[i], {acc[i][0], acc[i][1]}, {1, 2});
  }
  auto contrast = at::rand({o.samples, 1, 1, 1}, gen) * 0.4 + 0.8;
  images = images * contrast + at::randn(images.sizes(), gen) * o.noise;
  return Dataset(images, labels, DataSpec{{o.channels, o.size, o.size}, o.classes});
}

template <class T>
T options_of(const config::DataConfig& c) {
  return c.options ? dynamic_cast<const T&>(*c.options) : T{};
}

}  // namespace

void add_synthetic_datasets(DatasetRegistry& r) {
  r.add(
      "synthetic_blobs", "Gaussian clusters in feature space, one per class; generated, no files",
      [](const config::DataConfig& c, DataPart part) {
        return std::make_unique<Dataset>(make_blobs(options_of<SyntheticBlobsOptions>(c), part));
      },
      [] { return std::make_shared<SyntheticBlobsOptions>(); });
  r.add(
      "synthetic_images", "class prototypes (smooth random fields), shifted and noised; no files",
      [](const config::DataConfig& c, DataPart part) {
        return std::make_unique<Dataset>(make_images(options_of<SyntheticImagesOptions>(c), part));
      },
      [] { return std::make_shared<SyntheticImagesOptions>(); });
}

}  // namespace sculpt::data
