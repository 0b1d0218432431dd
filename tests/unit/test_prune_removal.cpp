// Physical removal in the prune pass's finalize: channels and neurons of chain models, attention
// heads and feed-forward neurons of transformers, and residual streams of ResNets (dependency
// groups): the smaller model computes what the masked one did and reloads from its weights.
#include <torch/torch.h>
#include <catch2/catch.hpp>

#include <map>

#include "core/nn/layers.h"
#include "tests/unit/prune_test_support.h"

using sculpt::config::Config;
using namespace sculpt::test;

TEST_CASE("channel pruning removes neurons and filters: same outputs, smaller model, reloadable",
          "[prune]") {
  sculpt::cli::register_builtins();
  struct Case {
    std::string model, include;
    sculpt::data::DataSpec spec;
  };
  const auto image = spec_of({1, 28, 28}, 10);
  for (const auto& c : {Case{"{name: mlp, hidden: [16, 12]}", "'hidden.*'", blobs_spec()},
                        Case{"{name: lenet5}", "'conv.*', 'fc1.*'", image}}) {
    INFO("model " << c.model);
    torch::manual_seed(4);
    const auto cfg = Config::parse("model: " + c.model +
                                   "\ndata: {name: synthetic_blobs}\n"
                                   "compression: [{name: prune, pattern: channel, schedule: "
                                   "one_shot, sparsity: 0.5, include: [" +
                                   c.include + "]}]\n");
    auto model = model_for(cfg, c.spec);
    model->eval();
    const int64_t before = model->parameter_count();
    auto pass = the_pass(cfg);
    sculpt::trainers::StepContext ctx;
    ctx.total_steps = 10;
    pass->attach(*model, ctx);  // start 0: pruned at attach
    std::vector<int64_t> shape = {5};
    for (auto d : c.spec.input_shape) shape.push_back(d);
    const auto x = torch::randn(shape);
    const auto masked = model->forward(x).detach();
    pass->finalize(*model, ctx);
    for (const auto& [n, l] : sculpt::nn::compressible_layers(*model))
      CHECK_FALSE(l->has_transforms());
    const auto removed = model->forward(x).detach();
    CHECK(torch::allclose(removed, masked, 1e-5, 1e-5));
    CHECK(model->parameter_count() < before * 0.7);
    CHECK(pass->summary()["removed"]["physical"] == true);
    // A fresh model built from the config loads the smaller weights file.
    auto fresh = model_for(cfg, c.spec);
    fresh->eval();
    fresh->load_state_tensors(model->state_tensors(), "pruned");
    CHECK(torch::allclose(fresh->forward(x), masked, 1e-5, 1e-5));
    CHECK(fresh->parameter_count() == model->parameter_count());
    // Without the marker a smaller tensor is still an error.
    auto plain = model_for(cfg, c.spec);
    auto state = model->state_tensors();
    state.pop_back();
    CHECK_THROWS_WITH(plain->load_state_tensors(state, "pruned"),
                      Catch::Contains("but the model expects"));
  }
}

TEST_CASE("transformer heads and feed-forward neurons are removed: same outputs, reloadable",
          "[prune]") {
  sculpt::cli::register_builtins();
  torch::manual_seed(6);
  const auto cfg = Config::parse(
      "model: {name: transformer_encoder, d_model: 16, heads: 4, layers: 2, patch_size: 4}\n"
      "data: {name: synthetic_blobs}\n"
      "compression: [{name: prune, pattern: head, heads: 4, schedule: one_shot, sparsity: 0.5, "
      "include: ['.*self_attn.o']}]\n");
  const auto spec = spec_of({1, 8, 8}, 10);
  auto model = model_for(cfg, spec);
  model->eval();
  auto pass = the_pass(cfg);
  sculpt::trainers::StepContext ctx;
  ctx.total_steps = 10;
  pass->attach(*model, ctx);  // start 0: pruned at attach
  const auto x = torch::randn({3, 1, 8, 8});
  const auto masked = model->forward(x).detach();
  pass->finalize(*model, ctx);
  const auto removed = model->forward(x).detach();
  CHECK(torch::allclose(removed, masked, 1e-5, 1e-5));
  const auto summary = pass->summary()["removed"];
  REQUIRE(summary["layers"].size() == 2);
  for (const auto& l : summary["layers"]) {
    CHECK(l["heads_before"] == 4);
    CHECK(l["heads"] == 2);
  }
  for (const auto& [n, l] : sculpt::nn::compressible_layers(*model)) {
    INFO(n);
    if (n.find("self_attn.q") != std::string::npos) CHECK(l->raw_weight().size(0) == 8);
    if (n.find("self_attn.o") != std::string::npos) CHECK(l->raw_weight().size(1) == 8);
  }
  // A fresh model built from the config loads the smaller weights and runs 2 heads.
  auto fresh = model_for(cfg, spec);
  fresh->eval();
  fresh->load_state_tensors(model->state_tensors(), "pruned");
  CHECK(torch::allclose(fresh->forward(x), masked, 1e-5, 1e-5));

  // Feed-forward neurons (fc1 outputs, fc2 inputs) go too; other transformer outputs stay zeros.
  const auto ffn = Config::parse(
      "model: {name: transformer_encoder, d_model: 16, heads: 4, layers: 2, patch_size: 4}\n"
      "data: {name: synthetic_blobs}\n"
      "compression: [{name: prune, pattern: channel, schedule: one_shot, sparsity: 0.5, "
      "include: ['.*fc1', '.*self_attn.v']}]\n");
  auto m2 = model_for(ffn, spec);
  m2->eval();
  auto p2 = the_pass(ffn);
  p2->attach(*m2, ctx);
  const auto masked2 = m2->forward(x).detach();
  p2->finalize(*m2, ctx);
  CHECK(torch::allclose(m2->forward(x).detach(), masked2, 1e-5, 1e-5));
  for (const auto& [n, l] : sculpt::nn::compressible_layers(*m2)) {
    INFO(n);
    if (n.find(".fc1") != std::string::npos) CHECK(l->raw_weight().size(0) == 32);  // of 64
    if (n.find(".fc2") != std::string::npos) CHECK(l->raw_weight().size(1) == 32);
    if (n.find("self_attn.v") != std::string::npos) CHECK(l->raw_weight().size(0) == 16);
  }
  CHECK(p2->summary()["removed"]["kept_as_zeros"].size() == 2);  // the two v projections
}

namespace {
// Channel pruning (one-shot 50%, `include` patterns) of a small ResNet with BN statistics and
// affine parameters that are not trivial, then finalize: the outputs equal the masked model's,
// and a fresh model from the config loads the smaller weights. Returns the pass's "removed"
// summary and the final weights; `shrink` gets parameters after / before.
nlohmann::json prune_resnet(uint64_t seed, const std::string& include,
                            std::map<std::string, at::Tensor>& weights, double& shrink) {
  const auto cfg = seeded(
      seed,
      "model: {name: resnet, depth: 8, width: 0.5}\ndata: {name: synthetic_blobs}\n"
      "compression: [{name: prune, pattern: channel, schedule: one_shot, sparsity: 0.5, "
      "include: [" + include + "]}]\n");
  const auto spec = spec_of({3, 16, 16}, 10);
  auto model = model_for(cfg, spec);
  {
    torch::NoGradGuard no_grad;
    for (auto& b : model->named_buffers())
      if (b.key().find("running") != std::string::npos) b.value().uniform_(0.5, 1.5);
    for (auto& p : model->named_parameters())
      if (p.key().find("bn") != std::string::npos) p.value().normal_();
  }
  model->eval();
  const int64_t before = model->parameter_count();
  auto pass = the_pass(cfg);
  sculpt::trainers::StepContext ctx;
  ctx.total_steps = 10;
  pass->attach(*model, ctx);
  const auto x = torch::randn({4, 3, 16, 16});
  const auto masked = model->forward(x).detach();
  pass->finalize(*model, ctx);
  CHECK(torch::allclose(model->forward(x), masked, 1e-5, 1e-5));
  shrink = static_cast<double>(model->parameter_count()) / static_cast<double>(before);
  for (const auto& [n, t] : model->state_tensors()) weights[n] = t;
  auto fresh = model_for(cfg, spec);
  fresh->eval();
  fresh->load_state_tensors(model->state_tensors(), "pruned");
  CHECK(torch::allclose(fresh->forward(x), masked, 1e-5, 1e-5));
  return pass->summary()["removed"];
}
}  // namespace

TEST_CASE("resnet: residual streams are pruned alike in every producer and removed",
          "[prune]") {
  // Every layer that adds into a residual stream (stem, conv2, 1x1 shortcuts): one mask per
  // stream (Model::channel_groups), and removal shrinks the readers (conv1, shortcuts, head).
  std::map<std::string, at::Tensor> w;
  double shrink = 1;
  const auto removed = prune_resnet(9, "'stem.conv', 'stage.*conv2', 'stage.*down'", w, shrink);
  CHECK(shrink < 0.6);
  CHECK_FALSE(removed.contains("kept_as_zeros"));
  REQUIRE(removed["layers"].size() == 3);  // the streams of widths 8, 16 and 32
  CHECK(removed["layers"][0]["name"] == "stem");
  CHECK(removed["layers"][0]["channels"] == 4);
  CHECK(removed["layers"][2]["consumers"] == nlohmann::json::array({"head.fc"}));
  CHECK(w["stem.conv.weight"].size(0) == 4);
  CHECK(w["stage1_0.conv2.weight"].size(0) == 4);
  CHECK(w["stage1_0.conv1.weight"].size(1) == 4);
  CHECK(w["stage2_0.down.weight"].size(1) == 4);
  CHECK(w["head.fc.weight"].size(1) == 16);
}

TEST_CASE("resnet: a basic block's inner channels are removed with their BN; residual ones stay",
          "[prune]") {
  // The stem alone of its stream's producers: that stream keeps its channels as zeros.
  std::map<std::string, at::Tensor> w;
  double shrink = 1;
  const auto removed = prune_resnet(8, "'stage.*conv1', 'stem.conv'", w, shrink);
  CHECK(shrink < 1);
  CHECK(removed["kept_as_zeros"] == nlohmann::json::array({"stem.conv"}));
  REQUIRE(removed["layers"].size() == 3);  // stage1_0, stage2_0, stage3_0
  CHECK(removed["layers"][0]["channels"] == 4);
}
