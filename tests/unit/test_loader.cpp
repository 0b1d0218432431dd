// The loader: batches that depend only on (seed, epoch, batch index) whatever the prefetch depth
// or resume point, the transforms against references computed here with plain ATen, and the
// config and data errors that name their key.
#include <torch/torch.h>
#include <catch2/catch.hpp>

#include <set>

#include "cli/app.h"
#include "core/config/config.h"
#include "core/config/errors.h"
#include "core/data/loader.h"
#include "core/data/transforms.h"
#include "core/error.h"

using sculpt::data::Batch;
using sculpt::data::Dataset;
using sculpt::data::Loader;
using sculpt::data::LoaderOptions;

namespace {
// `n` random images [n, c, h, w] (no two alike, none symmetric) with targets 0..n-1, so a
// batch's targets say which images it holds.
Dataset images(int64_t n, int64_t c = 3, int64_t h = 8, int64_t w = 8) {
  auto gen = at::make_generator<at::CPUGeneratorImpl>(7);
  sculpt::data::DataSpec spec;
  spec.input_shape = {c, h, w};
  spec.num_classes = n;
  return Dataset(at::rand({n, c, h, w}, gen) + 0.5, at::arange(n, at::kLong), spec);
}

std::vector<Batch> read_epoch(Loader& loader, int64_t epoch) {
  loader.start_epoch(epoch);
  std::vector<Batch> out;
  Batch b;
  while (loader.next(b)) out.push_back(b);
  return out;
}

bool same(const Batch& a, const Batch& b) {
  return at::equal(a.inputs, b.inputs) && at::equal(a.targets, b.targets);
}

LoaderOptions augmenting(int64_t prefetch) {
  LoaderOptions o;
  o.shuffle = true;
  o.seed = 11;
  o.crop_padding = 2;
  o.hflip = true;
  o.normalize_mean = {0.5, 1.0, 1.5};
  o.normalize_std = {0.25, 0.5, 2.0};
  o.prefetch = prefetch;
  return o;
}

sculpt::config::Config parse(const std::string& data_yaml) {
  sculpt::cli::register_builtins();
  return sculpt::config::Config::parse("model: {name: mlp}\ndata: " + data_yaml + "\n");
}
}  // namespace

TEST_CASE("loader gives identical batches for prefetch 0, 2 and 5 across epochs", "[data]") {
  auto data = images(50);
  std::vector<std::vector<Batch>> runs;
  for (int64_t prefetch : {0, 2, 5}) {
    Loader loader(data, 8, augmenting(prefetch));
    REQUIRE(loader.batches_per_epoch() == 7);
    auto e0 = read_epoch(loader, 0);
    auto e1 = read_epoch(loader, 1);
    REQUIRE(e0.size() == 7);
    REQUIRE(e1.size() == 7);
    CHECK(e0.back().size() == 2);  // 50 = 6 * 8 + 2, nothing dropped
    e0.insert(e0.end(), e1.begin(), e1.end());
    runs.push_back(e0);
  }
  for (size_t r = 1; r < runs.size(); ++r)
    for (size_t i = 0; i < runs[0].size(); ++i) CHECK(same(runs[0][i], runs[r][i]));
  // Epochs differ in order and augmentation; a loader rebuilt with the seed repeats them.
  CHECK_FALSE(at::equal(runs[0][0].targets, runs[0][7].targets));
  Loader again(data, 8, augmenting(2));
  CHECK(same(read_epoch(again, 1)[3], runs[0][7 + 3]));
  LoaderOptions other = augmenting(2);
  other.seed = 12;
  Loader reseeded(data, 8, other);
  CHECK_FALSE(same(read_epoch(reseeded, 0)[0], runs[0][0]));
}

TEST_CASE("loader skip(k) then next gives batch k of an uninterrupted epoch", "[data]") {
  auto data = images(45);
  for (int64_t prefetch : {0, 3}) {
    LoaderOptions o = augmenting(prefetch);
    o.drop_last = true;
    Loader loader(data, 6, o);
    auto full = read_epoch(loader, 2);
    REQUIRE(full.size() == 7);  // 45 / 6, the partial batch dropped
    for (int64_t k : {0, 1, 4, 6}) {
      loader.start_epoch(2);
      loader.skip(k);
      Batch b;
      REQUIRE(loader.next(b));
      CHECK(same(b, full[static_cast<size_t>(k)]));
      // Reading on after a skip continues the epoch in order.
      for (auto i = static_cast<size_t>(k) + 1; i < full.size(); ++i) {
        REQUIRE(loader.next(b));
        CHECK(same(b, full[i]));
      }
      CHECK_FALSE(loader.next(b));
    }
    loader.start_epoch(2);
    Batch b;
    REQUIRE(loader.next(b));  // a skip in the middle of reading drops what was prefetched
    loader.skip(2);
    REQUIRE(loader.next(b));
    CHECK(same(b, full[3]));
    loader.skip(100);  // past the end: the epoch is over
    CHECK_FALSE(loader.next(b));
  }
}

TEST_CASE("random crop takes a window of the zero-padded image", "[data]") {
  auto data = images(64, 2, 6, 5);
  const int64_t p = 2;
  LoaderOptions o;
  o.crop_padding = p;
  o.seed = 3;
  Loader loader(data, 16, o);
  auto batches = read_epoch(loader, 0);
  std::set<std::pair<int64_t, int64_t>> offsets;
  for (const auto& b : batches)
    for (int64_t i = 0; i < b.size(); ++i) {
      const int64_t id = b.targets[i].item<int64_t>();
      auto padded = at::constant_pad_nd(data.inputs()[id], {p, p, p, p});
      int found = 0;
      for (int64_t dy = 0; dy <= 2 * p; ++dy)
        for (int64_t dx = 0; dx <= 2 * p; ++dx)
          if (at::equal(b.inputs[i], padded.slice(1, dy, dy + 6).slice(2, dx, dx + 5))) {
            ++found;
            offsets.insert({dy, dx});
          }
      CHECK(found == 1);
    }
  CHECK(offsets.size() >= 15);  // 64 draws over 25 offsets

  // Given offsets: the same as padding and slicing by hand; padding 0 changes nothing.
  auto x = data.inputs().slice(0, 0, 3);
  sculpt::data::Augmentation a{at::tensor({0, 4, 1}, at::kLong), at::tensor({3, 0, 2}, at::kLong),
                               at::zeros({3}, at::kBool)};
  auto out = sculpt::data::crop_and_flip(x, p, a);
  auto padded = at::constant_pad_nd(x, {p, p, p, p});
  for (int64_t i = 0; i < 3; ++i) {
    const int64_t dy = a.top[i].item<int64_t>(), dx = a.left[i].item<int64_t>();
    CHECK(at::equal(out[i], padded[i].slice(1, dy, dy + 6).slice(2, dx, dx + 5)));
  }
  auto gen = at::make_generator<at::CPUGeneratorImpl>(1);
  CHECK(at::equal(sculpt::data::crop_and_flip(
                      x, 0, sculpt::data::draw_augmentation(3, 0, /*hflip=*/false, gen)),
                  x));
}

TEST_CASE("hflip mirrors about half the images and leaves the others alone", "[data]") {
  auto data = images(400, 1, 4, 6);
  LoaderOptions o;
  o.hflip = true;
  o.seed = 5;
  o.prefetch = 2;
  Loader loader(data, 32, o);
  int64_t flipped = 0, kept = 0;
  for (const auto& b : read_epoch(loader, 0))
    for (int64_t i = 0; i < b.size(); ++i) {
      auto x = data.inputs()[b.targets[i].item<int64_t>()];
      if (at::equal(b.inputs[i], at::flip(x, {2})))
        ++flipped;
      else if (at::equal(b.inputs[i], x))
        ++kept;
    }
  CHECK(flipped + kept == 400);
  CHECK(flipped > 150);  // Binomial(400, 0.5): mean 200, sd 10
  CHECK(flipped < 250);
  // The batch function itself: flip where asked, identity elsewhere.
  auto x = data.inputs().slice(0, 0, 4);
  sculpt::data::Augmentation a{at::zeros({4}, at::kLong), at::zeros({4}, at::kLong),
                               at::tensor({1, 0, 0, 1}, at::kLong).to(at::kBool)};
  auto out = sculpt::data::crop_and_flip(x, 0, a);
  CHECK(at::equal(out.index_select(0, at::tensor({0, 3})),
                  at::flip(x.index_select(0, at::tensor({0, 3})), {3})));
  CHECK(at::equal(out.slice(0, 1, 3), x.slice(0, 1, 3)));
}

TEST_CASE("normalize subtracts the channel mean and divides by the channel std", "[data]") {
  auto data = images(10);
  LoaderOptions o;
  o.normalize_mean = {0.5, 1.0, 1.5};
  o.normalize_std = {0.25, 0.5, 2.0};
  Loader loader(data, 10, o);
  Batch b;
  REQUIRE(loader.next(b));
  for (int64_t c = 0; c < 3; ++c) {
    auto ref = (data.inputs().select(1, c) - o.normalize_mean[c]) / o.normalize_std[c];
    CHECK(at::allclose(b.inputs.select(1, c), ref, 1e-6, 1e-6));
  }
  CHECK(at::equal(b.targets, data.targets()));
}

TEST_CASE("evaluation normalizes like training and never augments", "[data]") {
  auto cfg = parse(
      "{name: synthetic_images, channels: 1, normalize_mean: [0.1], normalize_std: [2], "
      "random_crop_padding: 3, hflip: true, shuffle: true, prefetch: 4}");
  auto train = LoaderOptions::for_training(cfg.data, 9);
  CHECK(train.crop_padding == 3);
  CHECK(train.hflip);
  CHECK(train.shuffle);
  CHECK(train.seed == 9);
  CHECK(train.prefetch == 4);
  auto eval = LoaderOptions::for_evaluation(cfg.data);
  CHECK(eval.crop_padding == 0);
  CHECK_FALSE(eval.hflip);
  CHECK_FALSE(eval.shuffle);
  CHECK(eval.normalize_mean == std::vector<double>{0.1});
  CHECK(eval.normalize_std == std::vector<double>{2.0});
  CHECK(eval.prefetch == 4);
}

TEST_CASE("an error on the prefetch thread is rethrown by next", "[data]") {
  auto data = images(10);
  auto broken = data.subset(at::tensor({0, 1, 2, 99}, at::kLong));  // row 99 does not exist
  for (int64_t prefetch : {0, 2}) {
    LoaderOptions o;
    o.prefetch = prefetch;
    Loader loader(broken, 2, o);
    Batch b;
    REQUIRE(loader.next(b));  // rows 0, 1
    CHECK_THROWS(loader.next(b));
    loader.start_epoch(1);  // the pipeline restarts cleanly
    REQUIRE(loader.next(b));
    CHECK(at::equal(b.targets, at::tensor({0, 1}, at::kLong)));
  }
}

TEST_CASE("loader config errors name the data key", "[data][config]") {
  try {
    parse("{name: synthetic_images, normalize_mean: [0.5, 0.5], normalize_std: [0.2]}");
    FAIL("no error");
  } catch (const sculpt::config::ConfigError& e) {
    CHECK(e.diagnostics().at(0).path == "data.normalize_std");
    CHECK_THAT(e.what(), Catch::Contains("same number of channels; got 2 means and 1"));
  }
  try {
    parse("{name: synthetic_images, normalize_mean: [0.5], normalize_std: [0]}");
    FAIL("no error");
  } catch (const sculpt::config::ConfigError& e) {
    CHECK(e.diagnostics().at(0).path == "data.normalize_std[0]");
  }
  auto blobs_loader = [](const std::string& extra) {
    auto cfg = parse("{name: synthetic_blobs, samples: 64, " + extra + "}");
    auto ds = sculpt::data::dataset_registry().create(cfg.data.name, cfg.data,
                                                      sculpt::data::DataPart::train);
    Loader loader(*ds, 8, LoaderOptions::for_training(cfg.data, 0));
  };
  CHECK_THROWS_AS(blobs_loader("hflip: true"), sculpt::UserError);
  CHECK_THROWS_WITH(blobs_loader("hflip: true"),
                    "data.hflip: needs image inputs [N, C, H, W]; dataset synthetic_blobs has "
                    "inputs [N, 16]");
  CHECK_THROWS_WITH(blobs_loader("random_crop_padding: 4"),
                    Catch::StartsWith("data.random_crop_padding: needs image inputs"));
  CHECK_THROWS_WITH(blobs_loader("normalize_mean: [0, 1], normalize_std: [1, 1]"),
                    Catch::StartsWith("data.normalize_mean: 2 channel values"));
}
