#include "core/nn/layers.h"

#include <torch/nn/functional/conv.h>
#include <torch/nn/functional/embedding.h>
#include <torch/nn/functional/linear.h>
#include <torch/nn/init.h>

#include <cmath>

#include "core/error.h"
#include "core/nn/init_scope.h"

namespace sculpt::nn {

namespace {
thread_local bool skip_random_init = false;
}  // namespace

SkipRandomInit::SkipRandomInit() : previous_(skip_random_init) { skip_random_init = true; }
SkipRandomInit::~SkipRandomInit() { skip_random_init = previous_; }
bool SkipRandomInit::active() { return skip_random_init; }

namespace {
// PyTorch's default init for Linear/Conv: kaiming_uniform(a=sqrt(5)) weights, bias
// uniform(+-1/sqrt(fan_in)).
void default_init(at::Tensor& w, at::Tensor& b, int64_t fan_in) {
  if (skip_random_init) return;
  torch::NoGradGuard no_grad;
  torch::nn::init::kaiming_uniform_(w, std::sqrt(5.0));
  if (b.defined()) {
    double bound = fan_in > 0 ? 1.0 / std::sqrt(static_cast<double>(fan_in)) : 0.0;
    torch::nn::init::uniform_(b, -bound, bound);
  }
}
}  // namespace

void Compressible::add_weight_transform(const std::string& name,
                                        std::shared_ptr<WeightTransform> t) {
  SCULPT_CHECK(!weight_transform(name), "layer ", this->name(), " already has a weight transform '",
               name, "'");
  register_module("wt_" + name, t);
  weight_chain_.emplace_back(name, std::move(t));
}

void Compressible::add_input_transform(const std::string& name,
                                       std::shared_ptr<ActivationTransform> t) {
  for (const auto& [n, _] : input_chain_)
    SCULPT_CHECK(n != name, "layer ", this->name(), " already has an input transform '", name, "'");
  register_module("at_" + name, t);
  input_chain_.emplace_back(name, std::move(t));
}

void Compressible::remove_weight_transform(const std::string& name) {
  for (auto it = weight_chain_.begin(); it != weight_chain_.end(); ++it) {
    if (it->first == name) {
      unregister_module("wt_" + name);
      weight_chain_.erase(it);
      return;
    }
  }
  SCULPT_CHECK(false, "layer ", this->name(), " has no weight transform '", name, "'");
}

void Compressible::clear_transforms() {
  for (const auto& [n, _] : weight_chain_) unregister_module("wt_" + n);
  for (const auto& [n, _] : input_chain_) unregister_module("at_" + n);
  weight_chain_.clear();
  input_chain_.clear();
}

std::vector<std::string> Compressible::weight_transform_names() const {
  std::vector<std::string> out;
  for (const auto& [n, _] : weight_chain_) out.push_back(n);
  return out;
}

std::shared_ptr<WeightTransform> Compressible::weight_transform(const std::string& name) const {
  for (const auto& [n, t] : weight_chain_)
    if (n == name) return t;
  return nullptr;
}

void Compressible::set_runtime(std::shared_ptr<LayerRuntime> rt) {
  if (runtime_) unregister_module("runtime");
  runtime_ = std::move(rt);
  if (runtime_) register_module("runtime", runtime_);
}

at::Tensor Compressible::effective_weight() const {
  if (weight_chain_.empty()) return weight_;
  at::Tensor w = weight_;
  for (const auto& [_, t] : weight_chain_) w = t->forward(w);
  return w;
}

at::Tensor Compressible::transform_input(const at::Tensor& x) const {
  if (input_chain_.empty()) return x;
  at::Tensor y = x;
  for (const auto& [_, t] : input_chain_) y = t->forward(y);
  return y;
}

void Compressible::materialize() {
  torch::NoGradGuard no_grad;
  at::Tensor baked = effective_weight().detach().clone();
  weight_.copy_(baked);
  clear_transforms();
}

Linear::Linear(int64_t in, int64_t out, bool bias)
    : Compressible("Linear"), in_features(in), out_features(out) {
  weight_ = register_parameter("weight", torch::empty({out, in}));
  if (bias) bias_ = register_parameter("bias", torch::empty({out}));
  default_init(weight_, bias_, in);
}

at::Tensor Linear::forward(const at::Tensor& x) {
  if (runtime_) return runtime_->forward(x);
  if (!observe) return torch::nn::functional::linear(transform_input(x), effective_weight(), bias_);
  auto in = transform_input(x);
  auto out = torch::nn::functional::linear(in, effective_weight(), bias_);
  observe(in, out);
  return out;
}

Conv2d::Conv2d(int64_t in, int64_t out, int64_t k, int64_t s, int64_t p, bool bias, int64_t g)
    : Compressible("Conv2d"),
      in_channels(in),
      out_channels(out),
      kernel_size(k),
      stride(s),
      padding(p),
      groups(g) {
  SCULPT_CHECK(in % g == 0 && out % g == 0, "Conv2d: channels ", in, "->", out,
               " are not divisible by groups ", g);
  weight_ = register_parameter("weight", torch::empty({out, in / g, k, k}));
  if (bias) bias_ = register_parameter("bias", torch::empty({out}));
  default_init(weight_, bias_, in / g * k * k);
}

at::Tensor Conv2d::forward(const at::Tensor& x) {
  if (runtime_) return runtime_->forward(x);
  return at::conv2d(transform_input(x), effective_weight(), bias_, {stride, stride},
                    {padding, padding}, {1, 1}, groups);
}

Embedding::Embedding(int64_t n, int64_t d) : Compressible("Embedding"), num_embeddings(n), dim(d) {
  weight_ = register_parameter("weight", torch::empty({n, d}));
  if (skip_random_init) return;
  torch::NoGradGuard no_grad;
  torch::nn::init::normal_(weight_);
}

at::Tensor Embedding::forward(const at::Tensor& indices) {
  if (runtime_) return runtime_->forward(indices);
  return at::embedding(effective_weight(), indices);  // indices are not activations: no input chain
}

std::vector<std::pair<std::string, std::shared_ptr<Compressible>>> compressible_layers(
    torch::nn::Module& root) {
  std::vector<std::pair<std::string, std::shared_ptr<Compressible>>> out;
  for (const auto& item : root.named_modules("", /*include_self=*/false))
    if (auto c = std::dynamic_pointer_cast<Compressible>(item.value()))
      out.emplace_back(item.key(), c);
  return out;
}

}  // namespace sculpt::nn
