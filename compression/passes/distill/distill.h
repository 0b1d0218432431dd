// The distillation pass's options and registration (compression/passes/distill/distill.cpp).
#pragma once

#include <string>
#include <vector>

#include "compression/pass.h"

namespace sculpt::compression {

struct DistillOptions : config::Section {
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
  std::string mask_padding = "auto";  // auto (seq2seq) | on | off
  bool offline = false;               // precompute teacher outputs once into the run dir
  int64_t offline_top_k = 0;          // offline: keep only the k largest logits per row; 0: all
  void visit(config::Visitor& v) override;
  void check(config::Checker& c) const override;
};

void add_distill(PassRegistry& r);

}  // namespace sculpt::compression
