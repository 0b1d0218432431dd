// The space-to-depth form of small quantized convs (onnx_s2d.cpp), for emit_sequential.
#pragma once

#include <torch/nn/module.h>

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "compression/exports/onnx_emitter.h"

namespace sculpt::compression::onnx_graph {

// A sequential model's layers in order, each with its qualified name.
using Flat = std::vector<std::pair<std::string, std::shared_ptr<torch::nn::Module>>>;

// How plan_s2d writes the conv at one index of a Flat.
struct S2dStep {
  int64_t block = 0;      // b for the conv at this index (0: written plainly)
  int64_t pad_h = 0, pad_w = 0;  // first of a run: the float input padded (bottom/right extra)
  int64_t blocks_pad = 0;        // later in a run: the conv's padding in blocks
  int64_t pooled_h = 0, pooled_w = 0;  // the pooled output's size (plain layout)
};


// For each index of `flat`, the s2d form of the conv there (block 0 where there is none).
std::vector<S2dStep> plan_s2d(Emitter& e, const Flat& flat, std::vector<int64_t> shape);

// Conv `name` + ReLU + 2x2 max-pool in space-to-depth form; returns the pooled value.
std::string emit_s2d_triple(Emitter& e, std::string x, const std::string& name, const S2dStep& step,
                            bool first, const std::optional<QAct>& carry, const std::string& relu_name,
                            const std::string& pool_name);

}  // namespace sculpt::compression::onnx_graph
