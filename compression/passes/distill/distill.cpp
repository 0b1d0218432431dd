// distill: knowledge distillation from one or more frozen teachers, in the same run as the
// rest of the recipe. Teachers are Sculpt runs (config.yaml + model.safetensors, or one of
// their checkpoint folders) or TorchScript files exported from PyTorch; several are averaged.
// Terms, each weight optionally moving linearly over the run (`*_end`):
//   logit KD   α·task + (1−α)·τ²·KL(p_t^τ ‖ p_s^τ), per token for sequence outputs (padding
//              masked), τ constant or scheduled;
//   features   MSE between student and teacher block outputs (taps), through a learned linear
//              projection when the widths differ;
//   relational distances and angles within the batch (RKD);
//   ranking    pairwise margin loss keeping the teacher's order of its top candidates.
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <torch/torch.h>
#include <unistd.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>

#include "compression/passes/distill/distill.h"
#include "compression/passes/distill/distill_cache.h"
#include "compression/passes/distill/distill_losses.h"
#include "compression/passes/distill/distill_teachers.h"
#include "core/run/collectives.h"
#include "core/config/config.h"
#include "core/data/dataset.h"
#include "core/data/loader.h"
#include "core/error.h"
#include "core/io/safetensors.h"
#include "core/logging/logging.h"
#include "core/models/model.h"
#include "core/tasks/task.h"
#include "core/run/run_context.h"

namespace fs = std::filesystem;

namespace sculpt::compression {

void DistillOptions::visit(config::Visitor& v) {
  v.field("teachers", teachers,
          "distill: teacher run directories, checkpoint folders, Hugging Face checkpoint folders "
          "or TorchScript files (averaged)");
  v.field("teacher_bf16", teacher_bf16, "distill: run the teachers in bf16");
  v.field("alpha", alpha, "distill: task-loss weight a in a*task + (1-a)*tau^2*KL; 1: no logit KD",
          config::Range::closed(0, 1));
  v.field("alpha_end", alpha_end, "distill: alpha at the last step (linear); -1: constant",
          config::Range::at_least(-1));
  v.field("temperature", temperature, "distill: softmax temperature tau", config::Range::above(0));
  v.field("temperature_end", temperature_end,
          "distill: tau at the last step (linear); 0: constant", config::Range::at_least(0));
  v.field("features", features,
          "distill: 'student_block:teacher_block' pairs matched by MSE (projected when widths "
          "differ)");
  v.field("feature_weight", feature_weight, "distill: weight of the feature terms",
          config::Range::at_least(0));
  v.field("feature_weight_end", feature_weight_end,
          "distill: feature_weight at the last step (linear); -1: constant",
          config::Range::at_least(-1));
  v.field("attention", attention,
          "distill: 'student_module:teacher_module' attention pairs (e.g. "
          "layer0.layer.self_attn), matched by KL of the head-averaged attention maps");
  v.field("attention_weight", attention_weight, "distill: weight of the attention-map terms",
          config::Range::at_least(0));
  v.field("relational_weight", relational_weight,
          "distill: weight of relational KD (batch distances and angles); 0: off",
          config::Range::at_least(0));
  v.field("relational_tap", relational_tap,
          "distill: 'student_block:teacher_block' for relational KD; empty: the outputs");
  v.field("ranking_weight", ranking_weight,
          "distill: weight of ranking distillation over output scores; 0: off",
          config::Range::at_least(0));
  v.field("ranking_top", ranking_top, "distill: teacher's top candidates ranked per row",
          config::Range::at_least(2));
  v.field("ranking_margin", ranking_margin, "distill: margin of the pairwise ranking loss",
          config::Range::at_least(0));
  v.choice("mask_padding", mask_padding, kMaskPadding,
           "distill: per-token KD skips positions whose target is padding (auto: seq2seq)");
  v.field("offline", offline,
          "distill: compute the teachers' outputs once into <run>/distill_cache (memory-mapped, "
          "checksummed) instead of every step");
  v.field("offline_top_k", offline_top_k,
          "distill offline: keep the k largest teacher logits per row (the rest count as 0 "
          "probability); 0: all", config::Range::at_least(0));
}

void DistillOptions::check(config::Checker& c) const {
  if (teachers.empty()) c.error("teachers", "distill needs at least one teacher");
  auto pair_ok = [](const std::string& p) {
    auto colon = p.find(':');
    return colon != std::string::npos && colon > 0 && colon + 1 < p.size();
  };
  for (const auto& f : features)
    if (!pair_ok(f)) c.error("features", "'" + f + "' is not 'student_block:teacher_block'");
  for (const auto& a : attention)
    if (!pair_ok(a)) c.error("attention", "'" + a + "' is not 'student_module:teacher_module'");
  if (!relational_tap.empty() && !pair_ok(relational_tap))
    c.error("relational_tap", "'" + relational_tap + "' is not 'student_block:teacher_block'");
  if (offline && (!features.empty() || !relational_tap.empty() || !attention.empty()))
    c.error("offline", "an offline teacher keeps outputs only: features, attention and "
                       "relational_tap need the online teacher");
}

namespace {

using distill_detail::fnv1a;
using distill_detail::hash_file;
using distill_detail::OfflineCache;

std::pair<std::string, std::string> split_pair(const std::string& p) {
  auto colon = p.find(':');
  return {p.substr(0, colon), p.substr(colon + 1)};
}

// value at `from` moving linearly to `to` over the run; `to` < 0 (or == `off`) keeps it.
double scheduled(double from, double to, double off, const StepContext& ctx) {
  if (to < 0 || to == off) return from;
  const double p = ctx.total_steps > 0 ? static_cast<double>(ctx.step) /
                                             static_cast<double>(ctx.total_steps)
                                       : 0.0;
  return from + (to - from) * std::min(1.0, p);
}

// Projects student features onto the teacher's width: the last dimension, or the channels of
// 4-D feature maps.
at::Tensor project(torch::nn::Linear& proj, const at::Tensor& x) {
  if (x.dim() == 4) return proj->forward(x.permute({0, 2, 3, 1})).permute({0, 3, 1, 2});
  return proj->forward(x);
}

int64_t width_of(const at::Tensor& x) {
  return x.dim() == 4 ? x.size(1) : x.size(-1);
}

// The attention-recording module `name` of `model` (e.g. "layer0.layer.self_attn"); the
// error lists the ones there are.
models::AttentionRecorder* attention_module(torch::nn::Module& model, const std::string& name,
                                            const char* side) {
  std::string known;
  for (const auto& m : model.named_modules("", /*include_self=*/false)) {
    auto* rec = dynamic_cast<models::AttentionRecorder*>(m.value().get());
    if (!rec) continue;
    if (m.key() == name) return rec;
    known += (known.empty() ? "" : ", ") + m.key();
  }
  throw UserError(std::string("distill attention: the ") + side + " has no attention module '" +
                  name + "'; " + (known.empty() ? "it has none" : "its attention modules: " + known));
}

// KL(teacher ‖ student) between head-averaged attention maps [B, H, Lq, Lk], per query row.
at::Tensor attention_loss(const at::Tensor& student, const at::Tensor& teacher) {
  auto s = student.to(at::kFloat).mean(1), t = teacher.to(at::kFloat).mean(1);
  SCULPT_CHECK(s.sizes() == t.sizes(), "distill attention: student maps ", student.sizes(),
               " and teacher maps ", teacher.sizes(), " cover different positions");
  constexpr double kEps = 1e-8;
  return (t * ((t + kEps).log() - (s + kEps).log())).sum(-1).mean();
}

class Distill final : public CompressionPass {
 public:
  explicit Distill(const config::PassConfig& c)
      : CompressionPass(c), o_(dynamic_cast<const DistillOptions&>(*c.options)) {}

  void attach(models::Model& model, const StepContext& ctx) override {
    SCULPT_CHECK(ctx.data && ctx.batch, "distill: attach needs the data spec and a sample batch");
    for (const auto& path : o_.teachers)
      teachers_.push_back(load_teacher(path, *ctx.data, ctx.device, o_.teacher_bf16));
    student_params_ = model.parameter_count();
    student_bytes_ = model.parameter_bytes();
    mask_padding_ = o_.mask_padding == MaskPadding::on ||
                    (o_.mask_padding == MaskPadding::automatic && ctx.task &&
                     ctx.task->is_seq2seq());
    // Taps on both sides; the first teacher must be a Sculpt model for them.
    std::vector<std::string> student_taps, teacher_taps;
    for (const auto& f : o_.features) {
      auto [s, t] = split_pair(f);
      student_taps.push_back(s);
      teacher_taps.push_back(t);
    }
    if (!o_.relational_tap.empty()) {
      auto [s, t] = split_pair(o_.relational_tap);
      student_taps.push_back(s);
      teacher_taps.push_back(t);
    }
    models::Model* tm = teachers_.front()->model();
    for (const auto& a : o_.attention) {
      SCULPT_CHECK(tm, "distill: attention pairs need a Sculpt teacher first in `teachers`");
      auto [s, t] = split_pair(a);
      auto* sr = attention_module(model, s, "student");
      auto* tr = attention_module(*tm, t, "teacher");
      sr->record_attention(true);
      tr->record_attention(true);
      attention_.emplace_back(sr, tr);
    }
    if (!student_taps.empty()) {
      SCULPT_CHECK(tm, "distill: features and relational_tap need a Sculpt teacher first in "
                       "`teachers` (", teachers_.front()->source, " is TorchScript)");
      wrap_tap_error("student", [&] { model.set_taps(student_taps); });
      wrap_tap_error("teacher", [&] { tm->set_taps(teacher_taps); });
    }
    // One forward of each on the sample batch: output sizes must agree, and feature widths
    // decide the projections.
    torch::NoGradGuard no_grad;
    const bool was_training = model.is_training();
    model.eval();
    auto student_out = model.forward(ctx.batch->inputs);
    model.train(was_training);
    for (auto& t : teachers_) {
      auto out = t->forward(ctx.batch->inputs);
      SCULPT_CHECK(out.sizes() == student_out.sizes(), "distill teacher ", t->source,
                   ": outputs ", out.sizes(), " but the student's are ", student_out.sizes(),
                   " (teacher and student must predict the same classes/tokens)");
    }
    for (const auto& f : o_.features) {
      auto [s, t] = split_pair(f);
      const auto& sf = model.tapped().at(s);
      const auto& tf = tm->tapped().at(t);
      torch::nn::Linear proj{nullptr};
      if (width_of(sf) != width_of(tf)) {
        proj = torch::nn::Linear(width_of(sf), width_of(tf));
        proj->to(ctx.device);
      }
      const auto projected = proj ? project(proj, sf) : sf;
      SCULPT_CHECK(projected.numel() == tf.numel(), "distill features '", f, "': student ",
                   sf.sizes(), " and teacher ", tf.sizes(), " differ beyond their width");
      projections_.push_back(proj);
    }
    if (o_.offline) build_cache(ctx, student_out);
  }

  // Evaluation and export need no attention maps: back to the fused kernel.
  void finalize(models::Model& /*model*/, const StepContext& /*ctx*/) override {
    for (auto& [s, t] : attention_) {
      s->record_attention(false);
      t->record_attention(false);
    }
  }

  std::vector<at::Tensor> parameters() const override {
    std::vector<at::Tensor> out;
    for (const auto& p : projections_)
      if (p)
        for (const auto& t : p->parameters()) out.push_back(t);
    return out;
  }

  at::Tensor extra_loss(models::Model& model, const StepContext& ctx) override {
    const auto& student = *ctx.outputs;
    at::Tensor teacher = cache_ ? cache_->logits(ctx.batch->rows, ctx.device)
                                : teacher_outputs(ctx.batch->inputs);
    at::Tensor keep;
    if (mask_padding_ && student.dim() == 3 && ctx.batch->targets.sizes() ==
                                                   student.sizes().slice(0, 2))
      keep = ctx.batch->targets.ne(data::token::pad);
    at::Tensor extra = at::zeros({}, student.options());
    const double alpha = scheduled(o_.alpha, o_.alpha_end, -1, ctx);
    tau_ = scheduled(o_.temperature, o_.temperature_end, 0, ctx);
    if (alpha < 1) {
      auto kl = kd_kl_loss(student, teacher, tau_, keep);
      terms_["kd_kl"] = kl.item<double>();
      extra = extra + (alpha - 1.0) * *ctx.loss + (1.0 - alpha) * kl;
    }
    models::Model* tm = teachers_.front()->model();
    const double wf = scheduled(o_.feature_weight, o_.feature_weight_end, -1, ctx);
    for (size_t i = 0; i < o_.features.size(); ++i) {
      auto [s, t] = split_pair(o_.features[i]);
      const auto& sf = model.tapped().at(s);
      auto projected = projections_[i] ? project(projections_[i], sf) : sf;
      auto l = feature_loss(projected, tm->tapped().at(t));
      terms_["feature:" + o_.features[i]] = l.item<double>();
      extra = extra + wf * l;
    }
    for (size_t i = 0; i < attention_.size(); ++i) {
      auto l = attention_loss(attention_[i].first->attention(), attention_[i].second->attention());
      terms_["attention:" + o_.attention[i]] = l.item<double>();
      extra = extra + o_.attention_weight * l;
    }
    if (o_.relational_weight > 0) {
      at::Tensor s = student, t = teacher;
      if (!o_.relational_tap.empty()) {
        auto [sn, tn] = split_pair(o_.relational_tap);
        s = model.tapped().at(sn);
        t = tm->tapped().at(tn);
      }
      auto l = relational_loss(s, t);
      terms_["relational"] = l.item<double>();
      extra = extra + o_.relational_weight * l;
    }
    if (o_.ranking_weight > 0) {
      auto l = ranking_loss(student, teacher, o_.ranking_top, o_.ranking_margin);
      terms_["ranking"] = l.item<double>();
      extra = extra + o_.ranking_weight * l;
    }
    // Agreement (student argmax = teacher argmax over kept positions), decayed so that it
    // reflects about the last 50 batches.
    auto same = student.argmax(-1).eq(teacher.argmax(-1));
    constexpr double kDecay = 0.98;
    double agree = 0, seen = 0;
    if (keep.defined()) {
      agree = same.logical_and(keep).sum().item<double>();
      seen = keep.sum().item<double>();
    } else {
      agree = same.sum().item<double>();
      seen = static_cast<double>(same.numel());
    }
    if (ctx.collectives && ctx.collectives->distributed()) {
      // Data parallelism: the statistics of the global batch (term means, summed counts), so
      // every rank keeps the same state.
      std::vector<double> v{agree, seen};
      for (const auto& [k, t] : terms_) v.push_back(t / ctx.collectives->world_size());
      auto sums = at::tensor(v, at::kDouble);
      ctx.collectives->all_reduce(sums, ReduceOp::sum, "the distill statistics");
      agree = sums[0].item<double>();
      seen = sums[1].item<double>();
      int64_t i = 2;
      for (auto& [k, t] : terms_) t = sums[i++].item<double>();
    }
    agree_ = kDecay * agree_ + agree;
    seen_ = kDecay * seen_ + seen;
    return extra;
  }

  CallbackState state_dict() const override {
    CallbackState s;
    for (size_t i = 0; i < projections_.size(); ++i)
      if (projections_[i])
        for (const auto& p : projections_[i]->named_parameters())
          s.tensors.emplace_back("projection" + std::to_string(i) + "." + p.key(), p.value());
    s.meta = {{"agree", agree_}, {"seen", seen_}, {"terms", terms_}, {"tau", tau_}};
    return s;
  }

  void load_state_dict(const CallbackState& s) override {
    std::map<std::string, at::Tensor> by_name(s.tensors.begin(), s.tensors.end());
    torch::NoGradGuard no_grad;
    for (size_t i = 0; i < projections_.size(); ++i)
      if (projections_[i])
        for (auto& p : projections_[i]->named_parameters()) {
          auto it = by_name.find("projection" + std::to_string(i) + "." + p.key());
          SCULPT_CHECK(it != by_name.end(), "distill: checkpoint lacks projection ", i);
          p.value().copy_(it->second);
        }
    agree_ = s.meta.value("agree", 0.0);
    seen_ = s.meta.value("seen", 0.0);
    tau_ = s.meta.value("tau", o_.temperature);
    terms_ = s.meta.value("terms", std::map<std::string, double>{});
  }

  std::string pipeline_limitation() const override {
    return "it compares the whole model's outputs (and features) with a teacher run on the raw "
           "inputs; missing piece: the pipeline step gives extra_loss neither the last stage's "
           "outputs nor, on that stage, the batch's raw inputs";
  }
  nlohmann::json summary() const override {
    nlohmann::json teachers = nlohmann::json::array();
    for (const auto& t : teachers_)
      teachers.push_back({{"source", t->source}, {"params", t->params}, {"bytes", t->bytes}});
    return {{"teachers", teachers},
            {"student", {{"params", student_params_}, {"bytes", student_bytes_}}},
            {"agreement", seen_ > 0 ? agree_ / seen_ : 0.0},  // about the last 50 batches
            {"temperature", tau_},
            {"final_terms", terms_}};
  }

 private:
  // The teachers' mean output for `inputs`.
  at::Tensor teacher_outputs(const at::Tensor& inputs) {
    at::Tensor sum;
    for (auto& t : teachers_) {
      auto out = t->forward(inputs);
      sum = sum.defined() ? sum + out : out;
    }
    return sum / static_cast<double>(teachers_.size());
  }

  void build_cache(const StepContext& ctx, const at::Tensor& sample_out) {
    SCULPT_CHECK(ctx.train && ctx.run, "distill offline: needs the training split");
    SCULPT_CHECK(!ctx.augmented, "distill offline: data.random_crop_padding / data.hflip change "
                                 "the inputs every epoch; an offline teacher needs fixed inputs");
    const int64_t classes = sample_out.size(-1);
    SCULPT_CHECK(o_.offline_top_k <= classes, "distill offline_top_k ", o_.offline_top_k,
                 " exceeds the ", classes, " outputs per position");
    // Key: training inputs, normalization, teachers' files, settings.
    auto inputs = ctx.train->inputs().contiguous();
    uint64_t key = fnv1a(inputs.data_ptr(), static_cast<size_t>(inputs.nbytes()));
    for (double m : ctx.eval_loading.normalize_mean) key = fnv1a(&m, sizeof m, key);
    for (double v : ctx.eval_loading.normalize_std) key = fnv1a(&v, sizeof v, key);
    for (const auto& path : o_.teachers)
      key = hash_file(fs::is_directory(path) ? fs::path(path) / "model.safetensors" : fs::path(path), key);
    const int64_t settings[2] = {o_.offline_top_k, o_.teacher_bf16 ? 1 : 0};
    key = fnv1a(settings, sizeof settings, key);
    data::Loader loader(*ctx.train, 256, ctx.eval_loading);
    std::vector<int64_t> row_shape(sample_out.sizes().begin() + 1, sample_out.sizes().end());
    cache_ = OfflineCache::open_or_build(
        ctx.run->dir() / "distill_cache", key, row_shape, o_.offline_top_k,
        [&](const at::Tensor& rows) {
          data::Batch b;
          // Rows come in order, one chunk per call: read the loader's next batch of them.
          SCULPT_CHECK(loader.next(b) && b.size() == rows.size(0), "distill offline: loader "
                                                                   "out of step");
          return teacher_outputs(b.inputs.to(ctx.device));
        },
        ctx.train->size());
  }

  template <class F>
  static void wrap_tap_error(const char* side, F&& f) {
    try {
      f();
    } catch (const UserError& e) {
      throw UserError(std::string("distill ") + side + " tap: " + e.what());
    }
  }

  DistillOptions o_;
  std::vector<std::unique_ptr<Teacher>> teachers_;
  std::vector<torch::nn::Linear> projections_;
  std::unique_ptr<OfflineCache> cache_;
  std::vector<std::pair<models::AttentionRecorder*, models::AttentionRecorder*>> attention_;
  bool mask_padding_ = false;
  int64_t student_params_ = 0, student_bytes_ = 0;
  double agree_ = 0, seen_ = 0, tau_ = 0;
  std::map<std::string, double> terms_;
};

}  // namespace

std::unique_ptr<CompressionPass> make_distill_pass(const config::PassConfig& cfg) {
  return std::make_unique<Distill>(cfg);
}

}  // namespace sculpt::compression
