#include "tests/support/pass_conformance.h"

#include <torch/torch.h>
#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <map>
#include <nlohmann/json.hpp>
#include <sstream>

#include "cli/app.h"
#include "compression/pass.h"
#include "core/config/config.h"
#include "core/config/visitors.h"
#include "core/io/safetensors.h"
#include "core/logging/logging.h"
#include "core/run/run_context.h"
#include "tests/support/process.h"

namespace fs = std::filesystem;

namespace sculpt::test {

std::string tiny_run_yaml(const std::string& dir, const std::vector<std::string>& items,
                          const ConformanceOptions& o) {
  std::string yaml =
      "run: {name: conformance, device: cpu, seed: 3, resume: auto, output_dir: '" + dir +
      "'}\n"
      "model: " +
      o.model +
      "\n"
      "data: " + o.data + "\n"
      "optimizer: {name: sgd, lr: 0.05, momentum: 0.9, weight_decay: 0.001}\n"
      "trainer: {max_steps: " +
      std::to_string(o.steps) + ", log_every: 1, checkpoint_every: " + std::to_string(o.resume_at) +
      ", keep_checkpoints: 100, tensorboard: false}\n" + o.extra_yaml;
  if (!items.empty()) yaml += "compression:\n";
  for (const auto& item : items) yaml += "  - " + item + "\n";
  return yaml;
}

trainers::FitResult train_in_process(const config::Config& cfg,
                                     const trainers::Callbacks& callbacks) {
  cli::register_builtins();
  log::set_level(log::Level::warn);
  auto trainer = trainers::trainer_registry().create(cfg.trainer.name, cfg.trainer);
  auto ctx = RunContext::create(cfg);
  auto result = trainer->fit(ctx, callbacks);
  log::reset_files();
  return result;
}

namespace {

using trainers::CallbackState;
using trainers::StepContext;

// Forwards every hook to the pass and notes which hook ran at which step.
class HookRecorder final : public trainers::Callback {
 public:
  HookRecorder(std::shared_ptr<trainers::Callback> pass, std::vector<std::string>& calls)
      : pass_(std::move(pass)), calls_(calls) {}
  std::string name() const override { return pass_->name(); }
  void attach(models::Model& model, const StepContext& ctx) override {
    note("attach", ctx);
    pass_->attach(model, ctx);
  }
  void on_batch(data::Batch& batch, const StepContext& ctx) override {
    note("on_batch", ctx);
    pass_->on_batch(batch, ctx);
  }
  at::Tensor extra_loss(models::Model& model, const StepContext& ctx) override {
    note("extra_loss", ctx);
    auto extra = pass_->extra_loss(model, ctx);
    // A loss term is one finite number (or nothing).
    if (extra.defined() && (extra.dim() != 0 || !std::isfinite(extra.item<double>())))
      bad_extra_loss_ = true;
    return extra;
  }
  void after_backward(models::Model& model, const StepContext& ctx) override {
    note("after_backward", ctx);
    pass_->after_backward(model, ctx);
  }
  void after_step(models::Model& model, const StepContext& ctx) override {
    note("after_step", ctx);
    pass_->after_step(model, ctx);
  }
  void on_increment_end(models::Model& model, const data::Dataset& seen,
                        const StepContext& ctx) override {
    note("on_increment_end", ctx);
    pass_->on_increment_end(model, seen, ctx);
  }
  void finalize(models::Model& model, const StepContext& ctx) override {
    note("finalize", ctx);
    pass_->finalize(model, ctx);
  }
  CallbackState state_dict() const override {
    calls_.push_back("state_dict");
    return pass_->state_dict();
  }
  void load_state_dict(const CallbackState& state) override {
    calls_.push_back("load_state_dict");
    pass_->load_state_dict(state);
  }
  nlohmann::json summary() const override {
    calls_.push_back("summary");
    return pass_->summary();
  }
  bool bad_extra_loss() const { return bad_extra_loss_; }

 private:
  void note(const char* hook, const StepContext& ctx) {
    calls_.push_back(std::string(hook) + "@" + std::to_string(ctx.step));
  }
  std::shared_ptr<trainers::Callback> pass_;
  std::vector<std::string>& calls_;
  bool bad_extra_loss_ = false;
};

// The hooks a run from step `from` to `to` (standard trainer, no accumulation) makes, in order,
// leaving out state_dict and summary, which checkpoints and the summary call when they need.
std::vector<std::string> expected_hooks(int64_t from, int64_t to) {
  auto at = [](const char* hook, int64_t step) {
    return std::string(hook) + "@" + std::to_string(step);
  };
  std::vector<std::string> out = {at("attach", 0)};
  if (from > 0) out.push_back("load_state_dict");
  for (int64_t s = from; s < to; ++s)
    for (auto h :
         {at("on_batch", s), at("extra_loss", s), at("after_backward", s), at("after_step", s + 1)})
      out.push_back(h);
  out.push_back(at("finalize", to));
  return out;
}

std::vector<std::string> without(const std::vector<std::string>& calls,
                                 std::initializer_list<const char*> left_out) {
  std::vector<std::string> out;
  for (const auto& c : calls)
    if (std::none_of(left_out.begin(), left_out.end(), [&](const char* l) { return c == l; }))
      out.push_back(c);
  return out;
}

nlohmann::json read_json(const fs::path& path) {
  return nlohmann::json::parse(read_text(path.string()));
}

bool same_tensors(const io::NamedTensors& a, const io::NamedTensors& b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i) {
    if (a[i].first != b[i].first) return false;
    if (!a[i].second.defined() || !b[i].second.defined()) return false;
    if (!torch::equal(a[i].second.cpu(), b[i].second.cpu())) return false;
  }
  return true;
}

// Leaves only checkpoints/step_<step> in `run`, as if the run had stopped right after it.
void cut_back_to(const fs::path& run, int64_t step) {
  const std::string keep = "step_" + std::to_string(step);
  for (const auto& e : fs::directory_iterator(run))
    if (e.path().filename() != "checkpoints") fs::remove_all(e.path());
  for (const auto& e : fs::directory_iterator(run / "checkpoints"))
    if (e.path().filename() != keep) fs::remove_all(e.path());
  write_text((run / "checkpoints" / "latest").string(), keep + "\n");
}

}  // namespace

void run_pass_conformance(const std::string& pass_item, const ConformanceOptions& o) {
  REQUIRE(o.steps >= 2);
  REQUIRE(o.resume_at >= 1);
  REQUIRE(o.resume_at < o.steps);
  cli::register_builtins();
  const fs::path run = fs::path(temp_dir("conformance")) / "run";
  const std::string yaml = tiny_run_yaml(run.string(), {pass_item}, o);
  INFO("pass: " << pass_item);
  const auto cfg = config::Config::parse(yaml, "conformance.yaml");
  REQUIRE(cfg.compression.size() == 1);
  const std::string name = cfg.compression[0].name;

  SECTION("config round trip: dump -> parse gives the same config and pass options") {
    const auto again = config::Config::parse(cfg.dump(), "conformance-dump.yaml");
    CHECK(again.hash() == cfg.hash());
    CHECK(again.dump() == cfg.dump());
    REQUIRE(again.compression.size() == 1);
    const auto& a = cfg.compression[0];
    const auto& b = again.compression[0];
    CHECK(b.name == a.name);
    CHECK(b.include == a.include);
    CHECK(b.exclude == a.exclude);
    CHECK(b.strict == a.strict);
    CHECK(b.overrides.size() == a.overrides.size());
    REQUIRE((a.options == nullptr) == (b.options == nullptr));
    if (a.options) CHECK(config::dump_yaml(*b.options) == config::dump_yaml(*a.options));
  }

  SECTION("a real fit calls every hook in order; a resume mid-schedule continues exactly") {
    // The whole run, with checkpoints every resume_at steps.
    std::vector<std::string> calls;
    auto recipe = compression::build_recipe(cfg);
    REQUIRE(recipe.size() == 1);
    auto pass = recipe[0];
    CHECK(pass->name() == name);
    auto recorder = std::make_shared<HookRecorder>(pass, calls);
    trainers::FitResult full;
    REQUIRE_NOTHROW(full = train_in_process(cfg, {recorder}));
    CHECK(full.steps == o.steps);
    CHECK_FALSE(recorder->bad_extra_loss());
    CHECK(without(calls, {"state_dict", "summary"}) == expected_hooks(0, o.steps));
    CHECK(std::count(calls.begin(), calls.end(), "state_dict") >= 1);  // checkpoints

    // summary(): a JSON object that survives text, and what summary.json holds for the pass.
    const auto summary = pass->summary();
    CHECK(summary.is_object());
    CHECK(nlohmann::json::parse(summary.dump()) == summary);  // no NaN or Inf
    const auto summary_json = read_json(run / "summary.json");
    REQUIRE(summary_json.contains("compression"));
    CHECK(summary_json["compression"] ==
          nlohmann::json::array({{{"pass", name}, {"summary", summary}}}));

    const auto losses = train_losses(run);
    const auto weights = io::load_safetensors((run / "model.safetensors").string());
    const auto state = pass->state_dict();
    CHECK(losses.size() == static_cast<size_t>(o.steps));

    // The same run stopped after the checkpoint at resume_at, then resumed (run.resume: auto).
    REQUIRE(fs::exists(run / "checkpoints" / ("step_" + std::to_string(o.resume_at))));
    cut_back_to(run, o.resume_at);
    std::vector<std::string> resumed_calls;
    auto resumed_recipe = compression::build_recipe(cfg);
    auto resumed_pass = resumed_recipe[0];
    trainers::FitResult resumed;
    REQUIRE_NOTHROW(resumed = train_in_process(
                        cfg, {std::make_shared<HookRecorder>(resumed_pass, resumed_calls)}));
    CHECK(resumed.steps == o.steps);
    CHECK(without(resumed_calls, {"state_dict", "summary"}) ==
          expected_hooks(o.resume_at, o.steps));
    const auto resumed_losses = train_losses(run);
    REQUIRE(resumed_losses.size() == static_cast<size_t>(o.steps - o.resume_at));
    for (const auto& [step, loss] : resumed_losses) {
      INFO("step " << step);
      CHECK(loss == losses.at(step));  // bit for bit
    }
    CHECK(same_tensors(io::load_safetensors((run / "model.safetensors").string()), weights));
    CHECK(resumed_pass->summary() == summary);
    const auto resumed_state = resumed_pass->state_dict();
    CHECK(resumed_state.meta == state.meta);
    CHECK(same_tensors(resumed_state.tensors, state.tensors));
    CHECK(read_json(run / "summary.json")["final"] == summary_json["final"]);
  }

  SECTION("data-parallel ranks hold identical pass state") {
    // The same run on 2 real processes (Gloo); distributed.verify_state (on by default) compares
    // every rank's weights and pass state with rank 0's, bit for bit, after training.
    const fs::path dir = temp_dir("conformance-ddp");
    const std::string file = (dir / "run.yaml").string();
    write_text(file, tiny_run_yaml((dir / "run").string(), {pass_item}, o));
    if (run_process(std::string(SCULPT_BIN) + " validate " + file).exit_code != 0) {
      WARN("pass " << name << " is registered in this test process only; the sculpt binary "
                      "cannot run it on 2 ranks, so its rank agreement is not checked");
      return;
    }
    const auto ranks = run_ranks(std::string(SCULPT_BIN) + " train " + file);
    for (size_t r = 0; r < ranks.size(); ++r) {
      INFO("rank " << r << ": " << ranks[r].err);
      CHECK(ranks[r].exit_code == 0);
    }
    INFO(ranks[0].err);
    CHECK(ranks[0].err.find("ranks agree on") != std::string::npos);
  }
}

}  // namespace sculpt::test
