// The distillation pass's options and registration (compression/passes/distill/distill.cpp).
#pragma once

#include <string>
#include <vector>

#include "compression/pass.h"

namespace sculpt::compression {

// Whether per-token KD skips the positions whose target is padding.
enum class MaskPadding { automatic, on, off };  // automatic: when the task is seq2seq
inline const config::Spellings<MaskPadding> kMaskPadding = {
    {MaskPadding::automatic, "auto"}, {MaskPadding::on, "on"}, {MaskPadding::off, "off"}};

struct DistillOptions : config::WholeModelOptions {
  std::vector<std::string> teachers;  // run dirs, checkpoint folders or TorchScript files
  bool teacher_bf16 = false;          // teachers run in bf16
  double alpha = 0.5;                 // a*task + (1-a)*tau^2*KL; 1: no logit KD
  double alpha_end = -1;              // alpha at the last step (linear); -1: constant
  double temperature = 4.0;           // tau
  double temperature_end = 0;         // tau at the last step (linear); 0: constant
  std::vector<std::string> features;  // "student_block:teacher_block" pairs (MSE)
  double feature_weight = 1.0;
  double feature_weight_end = -1;
  std::vector<std::string> attention;  // "student_module:teacher_module" attention-map pairs
  double attention_weight = 1.0;
  double relational_weight = 0;  // RKD distances + angles; 0: off
  std::string relational_tap;    // "student_block:teacher_block"; empty: the outputs
  double ranking_weight = 0;     // pairwise ranking distillation; 0: off
  int64_t ranking_top = 10;
  double ranking_margin = 0;
  MaskPadding mask_padding = MaskPadding::automatic;  // auto (seq2seq) | on | off
  bool offline = false;               // precompute teacher outputs once into the run dir
  int64_t offline_top_k = 0;          // offline: keep only the k largest logits per row; 0: all
  void visit(config::Visitor& v) override;
  void check(config::Checker& c) const override;
};

std::unique_ptr<CompressionPass> make_distill_pass(const config::PassConfig& cfg);

}  // namespace sculpt::compression
