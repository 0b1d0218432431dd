#include "core/config/config.h"
#include "core/config/trainer_traits.h"

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <regex>

#include "core/config/visitors.h"
#include "core/registry/registry.h"

namespace sculpt::config {

void RunConfig::visit(Visitor& v) {
  v.field("name", name, "run name; the run directory defaults to runs/<name>");
  v.field("output_dir", output_dir, "run directory; empty means runs/<run.name>");
  v.field("seed", seed,
          "seed of torch and std RNGs (the same on every rank of a data-parallel run)",
          Range::at_least(0));
  v.field("device", device, "auto, cpu, cuda or cuda:N (auto: cuda when available)");
  v.field("resume", resume,
          "empty: a fresh run; auto: continue from this run's latest checkpoint if any; or a "
          "checkpoint folder / run directory to continue from");
}

void RunConfig::check(Checker& c) const {
  static const std::regex kDevice("auto|cpu|cuda(:[0-9]+)?");
  if (!std::regex_match(device, kDevice))
    c.error("device", "expected auto, cpu, cuda or cuda:N; got '" + device + "'");
  if (name.empty() || name.find('/') != std::string::npos)
    c.error("name", "must be a non-empty name without '/'; got '" + name + "'");
}

void LoggingConfig::visit(Visitor& v) {
  v.choice("level", level, {"trace", "debug", "info", "warn", "error", "off"},
           "log level (the --log-level flag wins over it)");
}

void DataConfig::visit(Visitor& v) {
  v.named("name", name, options, "datasets", "dataset to train on", Need::required);
  v.field("batch_size", batch_size, "samples per step (per rank)", Range::at_least(1));
  v.field("val_fraction", val_fraction, "share of the data held out for validation",
          Range::half_open(0, 1));
  v.field("split_seed", split_seed, "seed of the train/validation split", Range::at_least(0));
  v.field("shuffle", shuffle, "reshuffle the training set every epoch");
  v.field("drop_last", drop_last, "drop the last incomplete batch of every epoch");
  v.field("normalize_mean", normalize_mean,
          "per-channel mean subtracted from float inputs of every split; empty: no normalization");
  v.field("normalize_std", normalize_std,
          "per-channel standard deviation that inputs are divided by; as long as normalize_mean",
          Range::above(0));
  v.field("random_crop_padding", random_crop_padding,
          "training images: zero-pad by this many pixels per side, crop back at a random offset; "
          "0: off",
          Range::at_least(0));
  v.field("hflip", hflip, "training images: flip horizontally with probability 0.5");
  v.field("prefetch", prefetch,
          "batches prepared ahead on a background thread; 0: on the training thread",
          Range::at_least(0));
}

void DataConfig::check(Checker& c) const {
  if (normalize_mean.size() != normalize_std.size())
    c.error(normalize_mean.empty() ? "normalize_mean" : "normalize_std",
            "normalize_mean and normalize_std need the same number of channels; got " +
                std::to_string(normalize_mean.size()) + " means and " +
                std::to_string(normalize_std.size()) + " standard deviations");
}

void TokenizerConfig::visit(Visitor& v) {
  v.field("path", path,
          "the tokenizer of text datasets (data.name: text): a Hugging Face folder (tokenizer.json, "
          "or a SentencePiece tokenizer.model / spiece.model), a tokenizer.json or a .model file; "
          "empty: model.path when model.name is hf (data.tokenizer wins over both)");
}

void TokenizerConfig::check(Checker& c) const {
  std::error_code ec;
  if (!path.empty() && !std::filesystem::exists(path, ec))
    c.error("path", "tokenizer not found: " + path);
}

void ModelConfig::visit(Visitor& v) {
  v.named("name", name, options, "models", "model architecture", Need::required);
  v.field("init", init,
          "initial weights (fine-tuning, compressing a trained model): a .safetensors file, or "
          "a run or checkpoint folder holding model.safetensors; empty: random init");
  v.field("init_blocks", init_blocks,
          "with init: the blocks of the init weights to load, one per block of this model in "
          "its order (a shallower student from a deeper teacher: [embed, enc0, enc3, enc_norm, "
          "dec0, dec3, head]); the init's other blocks are not used; empty: the same names");
}

void ModelConfig::check(Checker& c) const {
  if (!init_blocks.empty() && init.empty())
    c.error("init_blocks", "init_blocks names blocks of the init weights, but model.init is empty");
}

void TaskConfig::visit(Visitor& v) {
  v.named("name", name, options, "tasks", "task: the loss and the metrics");
}

void OptimizerConfig::visit(Visitor& v) {
  v.named("name", name, options, "optimizers", "optimizer");
  v.field("lr", lr, "base learning rate", Range::above(0));
  v.field("weight_decay", weight_decay, "weight decay (decoupled for adamw)", Range::at_least(0));
  v.field("no_decay_bias_norm", no_decay_bias_norm,
          "exempt biases and normalization parameters (tensors of dim <= 1) from weight decay");
  v.field("sam_rho", sam_rho,
          "sharpness-aware minimization (Foret et al. 2021): the neighbourhood radius rho; each "
          "step's gradient is taken again at w + rho g/||g|| on the same batches (twice the "
          "forwards and backwards); 0: off",
          Range::at_least(0));
  v.field("sam_adaptive", sam_adaptive,
          "with sam_rho: adaptive SAM (ASAM, Kwon et al. 2021), the perturbation scaled "
          "elementwise by |w| (rho w^2 g/||w g||)");
}

void SchedulerConfig::visit(Visitor& v) {
  v.named("name", name, options, "schedulers", "learning-rate schedule over steps");
  v.field("warmup_steps", warmup_steps, "linear warm-up steps from 0 to optimizer.lr",
          Range::at_least(0));
}

const Spellings<BestMode> kBestModes = {{BestMode::max, "max"}, {BestMode::min, "min"}};
const Spellings<NonfiniteAction> kNonfiniteActions = {{NonfiniteAction::abort, "abort"},
                                                      {NonfiniteAction::skip, "skip"}};
const Spellings<Precision> kPrecisions = {
    {Precision::automatic, "auto"}, {Precision::fp32, "fp32"}, {Precision::bf16, "bf16"}};
const Spellings<UnevenData> kUnevenData = {{UnevenData::pad, "pad"}, {UnevenData::drop, "drop"}};
const Spellings<PipelineSchedule> kPipelineSchedules = {{PipelineSchedule::gpipe, "gpipe"},
                                                        {PipelineSchedule::one_f_one_b, "1f1b"}};
const Spellings<PipelineBalance> kPipelineBalances = {{PipelineBalance::params, "params"},
                                                      {PipelineBalance::time, "time"}};
const Spellings<EvalOn> kEvalOn = {
    {EvalOn::automatic, "auto"}, {EvalOn::test, "test"}, {EvalOn::val, "val"}};

const Spellings<Scenario> kScenarios = {{Scenario::task_incremental, "task_incremental"},
                                        {Scenario::domain_incremental, "domain_incremental"},
                                        {Scenario::class_incremental, "class_incremental"}};

void TrainerConfig::visit(Visitor& v) {
  v.named("name", name, options, "trainers", "training loop");
  v.field("epochs", epochs, "passes over the training set", Range::at_least(0));
  v.field("max_steps", max_steps, "stop after this many optimizer steps; 0: epochs decide",
          Range::at_least(0));
  v.field("log_every", log_every, "steps between log lines and metrics records",
          Range::at_least(1));
  v.field("eval_every", eval_every, "steps between evaluations; 0: at the end of every epoch",
          Range::at_least(0));
  v.field("grad_clip_norm", grad_clip_norm, "clip the global gradient norm to this; 0: off",
          Range::at_least(0));
  v.field("checkpoint_every", checkpoint_every,
          "steps between checkpoints; 0: at the end of every epoch", Range::at_least(0));
  v.field("keep_checkpoints", keep_checkpoints, "newest checkpoints kept (the best is kept too)",
          Range::at_least(1));
  v.field("best_metric", best_metric, "validation metric that picks the best checkpoint");
  v.choice("best_mode", best_mode, kBestModes,
           "whether a higher or lower best_metric is better");
  v.field("grad_accumulation", grad_accumulation,
          "micro-batches whose gradients are summed (mean) into one optimizer step",
          Range::at_least(1));
  v.choice("nonfinite", nonfinite, kNonfiniteActions,
           "on a NaN/Inf loss: abort with the step and values, or skip the step and count it");
  v.choice("precision", precision, kPrecisions,
           "forward passes under bf16 autocast: auto (on CUDA only) | fp32 | bf16 (also on CPU)");
  v.field("final_train_eval", final_train_eval,
          "standard trainer: also evaluate the training set at the end (summary.json final.train); "
          "off where evaluation decodes (beam search) and the training set is large");
  v.field("tensorboard", tensorboard,
          "also write every metric as a TensorBoard scalar <split>/<metric> in <run>/tensorboard");
  v.field("early_stopping", early_stopping,
          "stop after this many evaluations without a new best trainer.best_metric; 0: off",
          Range::at_least(0));
}


void LayerOverride::visit(Visitor& v) {
  v.field("layers", layers, "regex over layer names this override applies to", Need::required);
  if (options) options->visit(v);
}

namespace {
// The overrides list of one pass: every new item starts as a copy of the pass's options, so an
// item only restates the keys it changes.
class OverrideList final : public SectionList {
 public:
  OverrideList(std::vector<LayerOverride>& items, const std::string& pass,
               const std::shared_ptr<Section>& base)
      : items_(items), pass_(pass), base_(base) {}
  size_t size() const override { return items_.size(); }
  void resize(size_t n) override {
    const size_t old = items_.size();
    items_.resize(n);
    for (size_t i = old; i < n; ++i) items_[i].options = copy_of_base();
  }
  Section& at(size_t i) override { return items_[i]; }

 private:
  // A new options section of the pass (from its registry entry) holding the base's values.
  std::shared_ptr<Section> copy_of_base() const {
    const RegistryBase* reg = find_registry("passes");
    const RegistryBase::Info* info = reg ? reg->find(pass_) : nullptr;
    if (!base_ || !info || !info->options) return nullptr;
    auto copy = info->options();
    std::vector<Diagnostic> errors;
    read_section(parse_yaml_text(dump_yaml(*base_), Source{"<pass options>", 0, 0, ""}), *copy,
                 Source{}, errors);
    return copy;
  }
  std::vector<LayerOverride>& items_;
  const std::string& pass_;
  const std::shared_ptr<Section>& base_;
};
}  // namespace

void PassConfig::visit(Visitor& v) {
  v.named("name", name, options, "passes", "compression pass (sculpt list passes)",
          Need::required);
  v.field("include", include, "layer-name regexes the pass acts on; empty: every layer");
  v.field("exclude", exclude, "layer-name regexes left out of `include`");
  v.field("strict", strict, "a pattern that matches no layer is an error, not a warning");
  OverrideList view(overrides, name, options);
  v.list("overrides", view, "per-layer values: [{layers: REGEX, <pass keys>...}]; first match wins");
}

void PassConfig::check(Checker& c) const {
  if (!dynamic_cast<const WholeModelOptions*>(options.get())) return;
  const std::string why = "compression pass " + name +
                          ": this pass acts on the whole model; it takes no layer keys "
                          "(include, exclude, overrides, strict)";
  if (!include.empty()) c.error("include", why);
  if (!exclude.empty()) c.error("exclude", why);
  if (!overrides.empty()) c.error("overrides", why);
  if (strict) c.error("strict", why);
}

void PermutePixels::visit(Visitor& v) {
  v.field("seed", seed,
          "permute the values of every sample with the permutation drawn from this seed "
          "(Permuted MNIST); -1: no permutation",
          Range::at_least(-1));
}

void IncrementData::visit(Visitor& v) {
  v.named("name", name, options, "datasets",
          "another dataset for this increment (its own keys beside name); empty: the run's data");
}

void IncrementConfig::visit(Visitor& v) {
  v.field("name", name, "label of the increment in reports; empty: increment <i>");
  v.section("data", data, "the increment's dataset (new documents); empty: the run's `data:`");
  v.field("classes", classes,
          "keep only the samples of these labels (Split MNIST); empty: every sample",
          Range::at_least(0));
  v.section("permute_pixels", permute_pixels, "a fixed permutation of every sample's values");
}

void IncrementalConfig::visit(Visitor& v) {
  v.choice("scenario", scenario, kScenarios,
           "task_incremental: the increment is known (logits outside its classes are masked in "
           "training and evaluation); domain_incremental / class_incremental: one head, no mask");
  v.choice("eval_on", eval_on, kEvalOn,
           "what the accuracy matrix is measured on: the increment's test part, its validation "
           "split, or auto (the test part when the dataset has one)");
  v.field("metric", metric, "the task metric of the accuracy matrix");
  v.field("resume_from", resume_from,
          "continue an earlier incremental run (its directory): model, pass state (Fisher, "
          "replay buffer), increments done and the accuracy matrix; `increments:` lists the "
          "whole sequence, the ones done there are evaluated, not trained");
  v.field("reset_optimizer", reset_optimizer,
          "a fresh optimizer state (momentum, Adam moments) at the start of every increment");
  v.field("versions", versions,
          "write a model version (a delta of the changed tensors, metrics, checksums) into the "
          "version store after every increment; `sculpt versions DIR` lists and rolls back "
          "(docs/versions.md)");
  v.field("versions_dir", versions_dir,
          "the version store of incremental.versions (several runs may share one); empty: "
          "<run dir>/versions");
}

void Config::check(Checker& c) const {
  // Exports refused before training rather than after it.
  for (const auto& f : exports.formats) {
    if ((f == "hf" || f == "compressed-tensors") && model.name != "hf")
      c.error("export.formats", "export format " + f + " needs a model from a Hugging Face "
              "checkpoint (model.name: hf), not model.name: " + model.name + "; onnx exports it");
    const bool quantized = std::any_of(compression.begin(), compression.end(),
                                       [](const PassConfig& p) { return p.name == "quantize"; });
    if (f == "compressed-tensors" && !quantized)
      c.error("export.formats", "export format compressed-tensors needs a quantize pass in "
              "compression: (its integer weights are what it writes)");
  }
  // No training steps is a run only for post-training passes (quantize mode: ptq), which
  // calibrate and export without an optimizer step.
  if (trainer.epochs == 0 && trainer.max_steps == 0 && compression.empty())
    c.error("trainer.max_steps",
            "training would do nothing: set trainer.epochs or trainer.max_steps (0 steps only "
            "with a post-training compression recipe, e.g. quantize mode: ptq)");
  const auto* traits = dynamic_cast<const TrainerTraits*>(trainer.options.get());
  const bool is_incremental = traits && traits->trains_on_increments();
  if (is_incremental && increments.empty())
    c.error("increments", "trainer.name: incremental needs a list of increments");
  if (!is_incremental && !increments.empty())
    c.error("increments", "increments need a trainer that trains on them, e.g. trainer.name: "
                          "incremental (it is '" + trainer.name + "')");
  if (distributed.pipeline.stages > 1) {
    if (is_incremental)
      c.error("distributed.pipeline.stages",
              "pipeline parallelism runs the standard trainer only (trainer.name: " +
                  trainer.name + " trains on increments)");
    if (trainer.grad_accumulation > 1)
      c.error("trainer.grad_accumulation",
              "under distributed.pipeline the micro-batches accumulate the gradient: set "
              "distributed.pipeline.microbatches instead of trainer.grad_accumulation");
    if (optimizer.sam_rho > 0)
      c.error("optimizer.sam_rho",
              "sharpness-aware minimization does not run under distributed.pipeline (the "
              "pipeline step cannot run a step's micro-batches again); set optimizer.sam_rho=0 "
              "or distributed.pipeline.stages=1");
  }
  for (size_t i = 0; i < increments.size(); ++i)
    if (is_incremental && incremental.scenario == Scenario::task_incremental &&
        increments[i].classes.empty())
      c.error("increments", "incremental.scenario: task_incremental masks the logits outside "
                            "the increment's classes: give `classes:` to increment " +
                                std::to_string(i));
}

void DistributedConfig::visit(Visitor& v) {
  v.choice("backend", backend, {"auto", "nccl", "gloo"},
           "process-group backend: auto (nccl when the run's device is CUDA, else gloo) | nccl | "
           "gloo");
  v.field("timeout_s", timeout_s,
          "seconds a collective or the rendezvous may wait for the other ranks before failing "
          "with an error naming the rank and the operation",
          Range::above(0));
  v.field("bucket_cap_mb", bucket_cap_mb,
          "DDP: MiB of gradients reduced together; buckets fill in reverse parameter order and "
          "are reduced while backward continues",
          Range::above(0));
  v.field("first_bucket_mb", first_bucket_mb,
          "DDP: MiB of the first bucket (the last layers' gradients, ready first)",
          Range::above(0));
  v.field("find_unused_parameters", find_unused_parameters,
          "DDP: allow parameters that get no gradient in a step (their gradients stay untouched)");
  v.choice("grad_compression", grad_compression, {"none", "bf16", "fp16"},
           "DDP: gradients travel as bf16 or fp16 and are reduced in it (half the bytes)");
  v.choice("uneven_data", uneven_data, kUnevenData,
           "when the training rows do not divide by the world size: pad (repeat the first rows) "
           "or drop the remainder, so every rank gets equally many");
  v.field("verify_state", verify_state,
          "after training, check that every rank holds rank 0's weights and pass state bit for "
          "bit, and fail naming what differs");
  v.section("pipeline", pipeline,
            "pipeline parallelism: the model's blocks cut into stages, one process each");
}

void PipelineConfig::visit(Visitor& v) {
  v.field("stages", stages,
          "processes one model replica is cut into along its blocks (the world size must be a "
          "multiple: stages x data-parallel replicas); 1: no pipeline",
          Range::at_least(1));
  v.field("cuts", cuts,
          "block names or indices where stages 2..n start (stages - 1 of them, in order); empty: "
          "split by `balance`");
  v.choice("balance", balance, kPipelineBalances,
           "when cuts is empty: stages with equal parameter counts, or equal measured "
           "forward+backward time per stage");
  v.field("microbatches", microbatches,
          "micro-batches each batch is cut into (a batch with fewer rows uses one per row)",
          Range::at_least(1));
  v.choice("schedule", schedule, kPipelineSchedules,
           "gpipe: all forwards, then all backwards (holds every micro-batch); 1f1b: one "
           "forward, one backward (holds at most `stages`)");
}

void PipelineConfig::check(Checker& c) const {
  if (!cuts.empty() && static_cast<int64_t>(cuts.size()) != stages - 1)
    c.error("cuts", "cuts start stages 2.." + std::to_string(stages) + ": give " +
                        std::to_string(stages - 1) + " of them (or none to balance); got " +
                        std::to_string(cuts.size()));
}

void ExportConfig::visit(Visitor& v) {
  v.field("formats", formats,
          "formats to export at the end of a finished run, each to <run>/export-<format> "
          "(hf, compressed-tensors, onnx; as `sculpt export RUN --format F`)");
  v.field("verify", verify, "check each export against the run's model (its parity check)");
}

void ExportConfig::check(Checker& c) const {
  // The list of compression/exports/export.cpp's export_formats() (a test keeps them equal).
  static const std::vector<std::string> known = {"hf", "compressed-tensors", "onnx"};
  for (const auto& f : formats)
    if (std::find(known.begin(), known.end(), f) == known.end())
      c.error("formats", "unknown export format '" + f + "'; formats: hf, compressed-tensors, onnx");
}

void Config::visit(Visitor& v) {
  v.section("run", run, "run identity, seed, device, output directory");
  v.section("logging", logging, "logging");
  v.section("data", data, "training data and loader");
  v.section("tokenizer", tokenizer, "the tokenizer of text datasets (docs/text.md)");
  v.section("model", model, "model architecture and size");
  v.section("task", task, "loss and metrics");
  v.section("optimizer", optimizer, "optimizer");
  v.section("scheduler", scheduler, "learning-rate schedule");
  v.section("trainer", trainer, "the training loop");
  v.section("distributed", distributed,
            "data-parallel training over several processes (torchrun, sculpt-run, SLURM)");
  v.list("compression", compression,
         "the recipe: compression passes in order, all acting in the same run");
  v.field("plugins", plugins,
          "shared libraries (.so) that register more passes, loaded before the rest is read; "
          "relative to the YAML file naming them (docs/writing-a-pass.md)");
  v.section("incremental", incremental, "continual learning (trainer.name: incremental)");
  v.list("increments", increments,
         "continual learning: the data increments in training order, each the run's data (or "
         "data: another dataset) with classes: and/or permute_pixels:");
  v.section("export", exports, "exports written at the end of training (README: Deploying a compressed model)");
}

namespace {
Config from_node(const Node& root, const std::string& file) {
  Config cfg;
  cfg.source_file = file;
  std::vector<Diagnostic> errors;
  read_section(root, cfg, Source{file, 1, 1, ""}, errors);
  if (!errors.empty()) throw ConfigError(errors);
  // What text datasets need beyond their own keys: the tokenizer by default, the run directory.
  if (cfg.model.name == "hf")
    if (const Node* m = root.find("model"))
      if (const Node* p = m->find("path"); p && p->kind == Node::Kind::Scalar)
        cfg.data.hf_model_path = p->scalar;
  cfg.data.default_tokenizer =
      !cfg.tokenizer.path.empty() ? cfg.tokenizer.path : cfg.data.hf_model_path;
  cfg.data.run_dir = !cfg.run.output_dir.empty() ? cfg.run.output_dir : "runs/" + cfg.run.name;
  return cfg;
}
}  // namespace

Config Config::load(const std::string& path, const std::vector<std::string>& overrides) {
  Node root = load_with_extends(path);
  apply_overrides(root, overrides);
  return from_node(root, path);
}

Config Config::parse(const std::string& yaml, const std::string& name) {
  Node root = parse_yaml_text(yaml, Source{name, 0, 0, ""});
  if (root.kind == Node::Kind::Null) root.kind = Node::Kind::Map;
  return from_node(root, name);
}

std::string Config::dump() const {
  return dump_yaml(const_cast<Config&>(*this));
}

std::string Config::hash() const {
  // Where to resume from and how far to prefetch do not change what is trained.
  Config what = *this;
  what.run.resume.clear();
  what.data.prefetch = 0;
  uint64_t h = 1469598103934665603ull;
  for (unsigned char ch : what.dump()) {
    h ^= ch;
    h *= 1099511628211ull;
  }
  char buf[17];
  std::snprintf(buf, sizeof buf, "%016llx", static_cast<unsigned long long>(h));
  return buf;
}

}  // namespace sculpt::config
