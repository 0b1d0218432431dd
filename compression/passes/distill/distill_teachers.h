// Distillation teachers: a frozen model on the student's device, in eval mode and without
// gradients (optionally bf16) — a Sculpt run or checkpoint folder (its config.yaml and
// model.safetensors), or a TorchScript file exported from PyTorch.
#pragma once

#include <ATen/core/Tensor.h>
#include <c10/core/Device.h>

#include <cstdint>
#include <memory>
#include <string>

#include "core/data/dataset.h"
#include "core/models/model.h"

namespace sculpt::compression {

// A frozen teacher on the student's device.
class Teacher {
 public:
  virtual ~Teacher() = default;
  virtual at::Tensor forward(const at::Tensor& x) = 0;  // outputs in fp32, no grad
  virtual models::Model* model() { return nullptr; }    // Sculpt teachers: taps
  int64_t params = 0, bytes = 0;
  std::string source;

 protected:
  bool bf16_ = false;
  at::Tensor cast_input(const at::Tensor& x) const {
    return bf16_ && x.is_floating_point() ? x.to(at::kBFloat16) : x;
  }
};

// A folder is a Sculpt teacher, a file a TorchScript one. UserError naming the path when it is
// neither, or when its outputs cannot serve this run's data.
std::unique_ptr<Teacher> load_teacher(const std::string& path, const data::DataSpec& spec,
                                      c10::Device device, bool bf16);

}  // namespace sculpt::compression
