// Compression passes without a training loop: weight transforms from two passes compose in the
// recipe's order and materialize() keeps the outputs; l2sp's penalty and gradient against a
// hand computation; incompatible passes and patterns that match no layer as errors.
#include <torch/torch.h>
#include <catch2/catch.hpp>

#include <functional>

#include "cli/app.h"
#include "compression/pass.h"
#include "core/config/config.h"
#include "core/error.h"
#include "core/models/model.h"
#include "core/nn/layers.h"
#include "tests/support/attached_pass.h"
#include "trainers/run_parts.h"

using sculpt::compression::CompressionPass;
using sculpt::config::Config;
using sculpt::config::PassConfig;

namespace {

const std::string kRun =
    "model: {name: mlp, hidden: [16, 12]}\n"
    "data: {name: synthetic_blobs, samples: 64, features: 8, classes: 3}\n";

struct Scale : sculpt::nn::WeightTransform {
  at::Tensor forward(const at::Tensor& w) override { return w * 2; }
};
struct Shift : sculpt::nn::WeightTransform {
  at::Tensor forward(const at::Tensor& w) override { return w + 1; }
};

// A test-only pass that adds a T transform to every chosen layer.
template <class T>
class TransformPass final : public CompressionPass {
 public:
  using CompressionPass::CompressionPass;
  void attach(sculpt::models::Model& model, const sculpt::trainers::StepContext&) override {
    for (const auto& t : select_layers(model))
      t.layer->add_weight_transform(name(), std::make_shared<T>());
  }
};

// A test-only pass that cannot share a recipe with freeze.
class ExclusivePass final : public CompressionPass {
 public:
  using CompressionPass::CompressionPass;
  std::vector<std::string> incompatible_with() const override { return {"freeze"}; }
};

void register_test_passes() {
  sculpt::cli::register_builtins();
  static const bool once = [] {
    auto& r = sculpt::compression::pass_registry();
    r.add("test_scale", "test: w * 2",
          [](const PassConfig& c) { return std::make_unique<TransformPass<Scale>>(c); });
    r.add("test_shift", "test: w + 1",
          [](const PassConfig& c) { return std::make_unique<TransformPass<Shift>>(c); });
    r.add("test_exclusive", "test: incompatible with freeze",
          [](const PassConfig& c) { return std::make_unique<ExclusivePass>(c); });
    return true;
  }();
  (void)once;
}

std::shared_ptr<sculpt::nn::Compressible> layer(sculpt::models::Model& model,
                                                const std::string& name) {
  for (const auto& [n, l] : sculpt::nn::compressible_layers(model))
    if (n == name) return l;
  FAIL("no layer " << name);
  return nullptr;
}

}  // namespace

TEST_CASE("weight transforms of two passes compose in recipe order; materialize keeps outputs",
          "[passes]") {
  register_test_passes();
  auto check = [](const std::string& recipe, const std::function<at::Tensor(at::Tensor)>& want) {
    INFO("compression: " << recipe);
    const auto cfg = Config::parse(kRun + "compression: " + recipe + "\n");
    auto parts = sculpt::trainers::build_run_parts(cfg, torch::kCPU);
    auto& model = *parts.model;
    model.eval();
    const auto layers = sculpt::nn::compressible_layers(model);
    REQUIRE(layers.size() == 3);
    std::vector<at::Tensor> raw;
    for (const auto& [n, l] : layers) raw.push_back(l->raw_weight().detach().clone());
    sculpt::trainers::StepContext ctx;
    for (const auto& pass : sculpt::compression::build_recipe(cfg)) pass->attach(model, ctx);
    for (size_t i = 0; i < layers.size(); ++i)
      CHECK(torch::equal(layers[i].second->effective_weight(), want(raw[i])));
    const auto x = torch::randn({5, 8});
    const auto transformed = model.forward(x).detach();
    for (const auto& [n, l] : layers) l->materialize();
    for (size_t i = 0; i < layers.size(); ++i) {
      CHECK_FALSE(layers[i].second->has_transforms());
      CHECK(torch::equal(layers[i].second->raw_weight(), want(raw[i])));
    }
    CHECK(torch::equal(model.forward(x), transformed));
  };
  check("[{name: test_scale}, {name: test_shift}]", [](const at::Tensor& w) { return w * 2 + 1; });
  check("[{name: test_shift}, {name: test_scale}]",
        [](const at::Tensor& w) { return (w + 1) * 2; });
}

TEST_CASE("l2sp adds alpha/2 ||w - w0||^2 and its gradient is alpha (w - w0)", "[passes][l2sp]") {
  sculpt::cli::register_builtins();
  const double alpha = 0.5;
  const auto cfg = Config::parse(
      kRun +
      "compression: [{name: l2sp, alpha: 0.5, include_bias: true, include: ['hidden0.*']}]\n");
  auto attached = sculpt::test::attach_first_pass(cfg);
  auto& model = attached.model();
  auto& pass = attached.pass();
  auto& ctx = attached.ctx;
  auto lin = layer(model, "hidden0.seq.0");
  at::Tensor w = lin->raw_weight(), b = lin->named_parameters(false)["bias"];
  const auto w0 = w.detach().clone(), b0 = b.detach().clone();
  const auto at_start = pass.extra_loss(model, ctx);
  REQUIRE(at_start.defined());
  CHECK(at_start.item<double>() == 0.0);

  torch::manual_seed(7);
  {
    torch::NoGradGuard no_grad;
    w.add_(torch::randn_like(w) * 0.1);
    b.add_(torch::randn_like(b) * 0.1);
  }
  // By hand, in double: alpha/2 * sum of squared differences.
  double hand = 0;
  for (const auto& [now, start] : {std::pair{w, w0}, std::pair{b, b0}}) {
    auto d = (now.detach() - start).to(torch::kDouble).contiguous();
    const double* p = d.data_ptr<double>();
    for (int64_t i = 0; i < d.numel(); ++i) hand += p[i] * p[i];
  }
  hand *= alpha / 2;
  auto loss = pass.extra_loss(model, ctx);
  CHECK(loss.item<double>() == Approx(hand).epsilon(1e-6));
  model.zero_grad();
  loss.backward();
  CHECK(torch::allclose(w.grad(), alpha * (w.detach() - w0), 1e-5, 1e-7));
  CHECK(torch::allclose(b.grad(), alpha * (b.detach() - b0), 1e-5, 1e-7));
  CHECK_FALSE(layer(model, "hidden1.seq.0")->raw_weight().grad().defined());
  CHECK_FALSE(layer(model, "head.seq.0")->raw_weight().grad().defined());

  // The state holds w0; a pass without it in the checkpoint says which tensor is missing.
  const auto state = pass.state_dict();
  REQUIRE(state.tensors.size() == 2);
  CHECK(state.tensors[0].first == "hidden0.seq.0.weight");
  CHECK(torch::equal(state.tensors[0].second, w0));
  CHECK(state.tensors[1].first == "hidden0.seq.0.bias");
  CHECK(torch::equal(state.tensors[1].second, b0));
  auto fresh = sculpt::compression::build_recipe(cfg);
  fresh[0]->attach(model, ctx);
  CHECK_THROWS_WITH(fresh[0]->load_state_dict({}),
                    Catch::Contains("no initial weights for hidden0.seq.0.weight"));
}

TEST_CASE("two passes that cannot be combined are an error naming both", "[passes]") {
  register_test_passes();
  const auto cfg = Config::parse(kRun + "compression: [{name: freeze}, {name: test_exclusive}]\n",
                                 "recipe.yaml");
  CHECK_THROWS_AS(sculpt::compression::build_recipe(cfg), sculpt::UserError);
  CHECK_THROWS_WITH(sculpt::compression::build_recipe(cfg),
                    Catch::Contains("compression[1] test_exclusive cannot be combined with "
                                    "compression[0] freeze"));
}

TEST_CASE("a layer pattern matching no layer is a warning, or an error naming it with strict",
          "[passes]") {
  sculpt::cli::register_builtins();
  auto parts = sculpt::trainers::build_run_parts(Config::parse(kRun), torch::kCPU);
  auto selected = [&](const std::string& item) {
    const auto cfg = Config::parse(kRun + "compression: [" + item + "]\n");
    auto recipe = sculpt::compression::build_recipe(cfg);
    return dynamic_cast<CompressionPass&>(*recipe[0]).select_layers(*parts.model).size();
  };
  CHECK(selected("{name: freeze}") == 3);
  CHECK(selected("{name: freeze, include: ['hidden.*'], exclude: ['hidden1.*']}") == 1);
  CHECK(selected("{name: freeze, include: ['nothing.*', 'head.*']}") == 1);
  CHECK_THROWS_WITH(selected("{name: freeze, strict: true, include: ['nothing.*', 'head.*']}"),
                    Catch::Contains("include pattern 'nothing.*' matches no layer; the layers are: "
                                    "hidden0.seq.0, hidden1.seq.0, head.seq.0"));
}
