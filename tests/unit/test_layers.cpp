// Compressible layers against ATen: identical with no transforms, transform chains applied in
// order with gradients flowing through them, transform parameters trained and named, and
// materialize() baking the chain without changing the output.
#include <torch/torch.h>
#include <catch2/catch.hpp>

#include "cli/app.h"
#include "core/error.h"
#include "core/models/model.h"
#include "core/nn/layers.h"

namespace {
// w * mask (a fixed buffer).
struct MaskTransform : sculpt::nn::WeightTransform {
  explicit MaskTransform(at::Tensor m) { mask = register_buffer("mask", std::move(m)); }
  at::Tensor forward(const at::Tensor& w) override { return w * mask; }
  at::Tensor mask;
};
// w * s (a learned scalar).
struct ScaleTransform : sculpt::nn::WeightTransform {
  ScaleTransform() { s = register_parameter("s", torch::full({1}, 2.0)); }
  at::Tensor forward(const at::Tensor& w) override { return w * s; }
  at::Tensor s;
};
struct AddOne : sculpt::nn::ActivationTransform {
  at::Tensor forward(const at::Tensor& x) override { return x + 1; }
};
}  // namespace

TEST_CASE("layers without transforms are exactly the ATen ops on the raw weight", "[nn]") {
  torch::manual_seed(0);
  sculpt::nn::Linear lin(7, 5);
  auto x = torch::randn({3, 7});
  CHECK(torch::equal(lin.forward(x),
                     torch::linear(x, lin.raw_weight(), lin.named_parameters()["bias"])));
  CHECK(lin.effective_weight().data_ptr() == lin.raw_weight().data_ptr());  // no copy

  sculpt::nn::Conv2d conv(3, 4, 3, /*stride=*/2, /*padding=*/1);
  auto img = torch::randn({2, 3, 9, 9});
  auto want = torch::conv2d(img, conv.raw_weight(), conv.named_parameters()["bias"], 2, 1);
  CHECK(torch::equal(conv.forward(img), want));
  CHECK(conv.forward(img).sizes() == torch::IntArrayRef({2, 4, 5, 5}));

  sculpt::nn::Embedding emb(11, 4);
  auto idx = torch::tensor({1, 10, 3}, torch::kLong);
  CHECK(torch::equal(emb.forward(idx), emb.raw_weight().index_select(0, idx)));
}

TEST_CASE("weight transforms apply in order and gradients reach the raw weight", "[nn]") {
  torch::manual_seed(1);
  sculpt::nn::Linear lin(6, 4, /*bias=*/false);
  auto mask = (torch::rand({4, 6}) > 0.5).to(torch::kFloat);
  lin.add_weight_transform("mask", std::make_shared<MaskTransform>(mask));
  lin.add_weight_transform("scale", std::make_shared<ScaleTransform>());
  CHECK(lin.weight_transform_names() == std::vector<std::string>{"mask", "scale"});
  auto x = torch::randn({5, 6});
  auto y = lin.forward(x);
  CHECK(torch::allclose(y, torch::linear(x, lin.raw_weight() * mask * 2.0)));
  y.sum().backward();
  auto g = lin.raw_weight().grad();
  // d/dW sum(x W'^T) with W' = 2 * mask * W: zero where the mask is zero.
  CHECK(torch::allclose(g, 2.0 * mask * x.sum(0).unsqueeze(0).expand({4, 6})));
  // The transform's own parameter trains and is named under the layer.
  auto params = lin.named_parameters();
  REQUIRE(params.contains("wt_scale.s"));
  CHECK(params["wt_scale.s"].grad().defined());
  CHECK(lin.named_buffers().contains("wt_mask.mask"));
  CHECK_THROWS_AS(lin.add_weight_transform("mask", std::make_shared<MaskTransform>(mask)),
                  sculpt::UserError);
}

TEST_CASE("input transforms change what the layer sees", "[nn]") {
  sculpt::nn::Linear lin(3, 2);
  auto x = torch::randn({4, 3});
  lin.add_input_transform("plus1", std::make_shared<AddOne>());
  CHECK(torch::allclose(lin.forward(x),
                        torch::linear(x + 1, lin.raw_weight(), lin.named_parameters()["bias"])));
}

TEST_CASE("materialize bakes the chain into the weight and keeps the output", "[nn]") {
  torch::manual_seed(2);
  sculpt::nn::Conv2d conv(2, 3, 3);
  conv.add_weight_transform(
      "mask", std::make_shared<MaskTransform>((torch::rand({3, 2, 3, 3}) > 0.3).to(torch::kFloat)));
  conv.add_weight_transform("scale", std::make_shared<ScaleTransform>());
  auto x = torch::randn({1, 2, 6, 6});
  auto before = conv.forward(x).detach();
  conv.materialize();
  CHECK_FALSE(conv.has_transforms());
  CHECK(conv.named_parameters().size() == 2);  // weight, bias: the transform's parameter is gone
  CHECK(torch::allclose(conv.forward(x), before, 1e-6, 1e-6));
  CHECK_THROWS_WITH(conv.remove_weight_transform("mask"),
                    Catch::Contains("has no weight transform 'mask'"));
}

TEST_CASE("models are built from compressible layers and expose named taps", "[nn][models]") {
  sculpt::cli::register_builtins();
  sculpt::config::ModelConfig mc;
  mc.name = "mlp";
  auto model =
      sculpt::models::model_registry().create("mlp", mc, sculpt::data::DataSpec{{2, 4}, 3});
  auto layers = sculpt::nn::compressible_layers(*model);
  REQUIRE(layers.size() == 3);
  CHECK(layers[0].first == "hidden0.seq.0");
  CHECK(layers[2].first == "head.seq.0");
  model->set_taps({"hidden1"});
  auto out = model->forward(torch::randn({5, 2, 4}));
  CHECK(out.sizes() == torch::IntArrayRef({5, 3}));
  REQUIRE(model->tapped().count("hidden1") == 1);
  CHECK(model->tapped().at("hidden1").sizes() == torch::IntArrayRef({5, 256}));
  CHECK_THROWS_WITH(model->set_taps({"hiden1"}),
                    Catch::Contains("its blocks: flatten, hidden0, hidden1, head"));
}
