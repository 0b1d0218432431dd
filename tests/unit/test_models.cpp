// Built-in models: sizes against the same architectures built in PyTorch (golden numbers from
// torch.nn in the venv: LeNet-5 61,706 parameters; CIFAR ResNet-20 272,474 and ResNet-56
// 855,770 with 1x1-conv shortcuts), shapes, and their config errors.
#include <torch/torch.h>
#include <catch2/catch.hpp>

#include "cli/app.h"
#include "core/config/config.h"
#include "core/config/errors.h"
#include "core/data/dataset.h"
#include "core/models/model.h"
#include "core/nn/layers.h"

namespace {
std::unique_ptr<sculpt::models::Model> build(const std::string& yaml,
                                             const sculpt::data::DataSpec& spec) {
  sculpt::cli::register_builtins();
  auto cfg = sculpt::config::Config::parse(yaml + "\ndata: {name: synthetic_blobs}\n");
  return sculpt::models::model_registry().create(cfg.model.name, cfg.model, spec);
}
}  // namespace

TEST_CASE("lenet5 has LeNet-5's 61,706 parameters on 28x28 digits", "[models]") {
  auto m = build("model: {name: lenet5}", {{1, 28, 28}, 10});
  CHECK(m->parameter_count() == 61706);
  CHECK(m->parameter_bytes() == 61706 * 4);
  CHECK(m->forward(torch::randn({3, 1, 28, 28})).sizes() == torch::IntArrayRef({3, 10}));
  CHECK(m->block_names() == std::vector<std::string>{"conv1", "conv2", "fc1", "fc2", "head"});
  CHECK(sculpt::nn::compressible_layers(*m).size() == 5);
  // 3x32x32 (CIFAR) works too: 16*6*6 features after the second pool.
  auto c = build("model: {name: lenet5}", {{3, 32, 32}, 10});
  CHECK(c->forward(torch::randn({1, 3, 32, 32})).sizes() == torch::IntArrayRef({1, 10}));
  CHECK_THROWS_WITH(build("model: {name: lenet5}", {{1, 8, 8}, 10}), Catch::Contains("too small"));
}

TEST_CASE("resnet matches the CIFAR ResNet sizes of PyTorch", "[models]") {
  auto r20 = build("model: {name: resnet, depth: 20}", {{3, 32, 32}, 10});
  CHECK(r20->parameter_count() == 272474);
  CHECK(r20->forward(torch::randn({2, 3, 32, 32})).sizes() == torch::IntArrayRef({2, 10}));
  CHECK(sculpt::nn::compressible_layers(*r20).size() == 19 + 2 + 1);  // convs, 2 shortcuts, fc
  auto r56 = build("model: {name: resnet, depth: 56}", {{3, 32, 32}, 10});
  CHECK(r56->parameter_count() == 855770);
  auto wide = build("model: {name: resnet, depth: 20, width: 2}", {{3, 32, 32}, 10});
  CHECK(wide->parameter_count() > 3 * 272474);
  try {
    build("model: {name: resnet, depth: 21}", {{3, 32, 32}, 10});
    FAIL("no error");
  } catch (const sculpt::config::ConfigError& e) {
    CHECK(e.diagnostics().at(0).path == "model.depth");
    CHECK_THAT(e.what(), Catch::Contains("6n+2"));
  }
}

TEST_CASE("synthetic_images is deterministic by seed and shaped by its options", "[data]") {
  sculpt::cli::register_builtins();
  auto make = [](const std::string& extra) {
    auto cfg = sculpt::config::Config::parse(
        "model: {name: mlp}\ndata: {name: synthetic_images, samples: 64, size: 12, channels: 3, "
        "classes: 4" +
        extra + "}\n");
    return sculpt::data::dataset_registry().create("synthetic_images", cfg.data,
                                                   sculpt::data::DataPart::train);
  };
  auto a = make(""), b = make(""), c = make(", seed: 1");
  CHECK(a->inputs().sizes() == torch::IntArrayRef({64, 3, 12, 12}));
  CHECK(a->spec().input_shape == std::vector<int64_t>{3, 12, 12});
  CHECK(a->spec().num_classes == 4);
  CHECK(torch::equal(a->inputs(), b->inputs()));
  CHECK(torch::equal(a->targets(), b->targets()));
  CHECK_FALSE(torch::equal(a->inputs(), c->inputs()));
  CHECK(a->targets().max().item<int64_t>() < 4);
  // The split holds out val_fraction of the rows.
  auto split = sculpt::data::split_dataset(*a, 0.25, 3);
  CHECK(split.val.size() == 16);
  CHECK(split.train.size() == 48);
}
