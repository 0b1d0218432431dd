// Layers that compression can reach (DESIGN.md §4). A layer's effective weight is its raw
// `weight` passed through an ordered chain of WeightTransforms (mask, fake-quant, LoRA delta,
// low-rank), and its input passes through a chain of ActivationTransforms (activation
// fake-quant) — PyTorch's parametrization idea in C++. Passes attach transforms; they never
// replace modules, because a compiled parent's forward() would not see the replacement.
// With empty chains forward() is exactly F::linear / F::conv2d / F::embedding on the raw
// weight: no copy, no extra kernel. materialize() bakes the chain into a plain weight.
#pragma once

#include <torch/nn/module.h>

#include <functional>
#include <memory>
#include <string>
#include <vector>

namespace sculpt::nn {

// w -> w' (differentiable). A Module, so a transform's own parameters (a LoRA pair, a learned
// step size) are trained, moved and checkpointed with the layer that holds it.
class WeightTransform : public torch::nn::Module {
 public:
  virtual at::Tensor forward(const at::Tensor& weight) = 0;
};

// x -> x' on the layer's input (differentiable).
class ActivationTransform : public torch::nn::Module {
 public:
  virtual at::Tensor forward(const at::Tensor& input) = 0;
};

// An exported runtime that computes a layer in place of its float path (int8 GEMM from the
// quantization export, block-sparse GEMM from the pruning export). It receives the layer's raw
// input (the input chain is not applied: what it simulated is now real) and returns the output,
// bias included. A Module, so its packed tensors move with the layer.
class LayerRuntime : public torch::nn::Module {
 public:
  virtual at::Tensor forward(const at::Tensor& input) = 0;
  virtual std::string describe() const = 0;  // one line for logs ("int8 per-channel, 4.1 KB")
};

// The transform chains shared by every compressible layer.
class Compressible : public torch::nn::Module {
 public:
  explicit Compressible(std::string name) : torch::nn::Module(std::move(name)) {}

  // Appends to the chain; `name` must be unique within the layer (it names the submodule,
  // e.g. "wt.mask", so its parameters appear in checkpoints as <layer>.wt.mask.<param>).
  void add_weight_transform(const std::string& name, std::shared_ptr<WeightTransform> t);
  void add_input_transform(const std::string& name, std::shared_ptr<ActivationTransform> t);
  void remove_weight_transform(const std::string& name);
  void clear_transforms();
  std::vector<std::string> weight_transform_names() const;
  std::shared_ptr<WeightTransform> weight_transform(const std::string& name) const;
  bool has_transforms() const { return !weight_chain_.empty() || !input_chain_.empty(); }

  // Runs `rt` instead of the float path from now on (null: back to the float path).
  void set_runtime(std::shared_ptr<LayerRuntime> rt);
  const std::shared_ptr<LayerRuntime>& runtime() const { return runtime_; }

  const at::Tensor& raw_weight() const { return weight_; }
  const at::Tensor& bias() const { return bias_; }
  // The raw weight through the chain (the raw tensor itself when the chain is empty).
  at::Tensor effective_weight() const;
  // weight <- effective_weight(), then drops both chains. Input transforms are dropped too:
  // what they simulate (e.g. activation quantization) belongs to an exported runtime.
  void materialize();

 protected:
  at::Tensor transform_input(const at::Tensor& x) const;
  at::Tensor weight_;
  at::Tensor bias_;  // undefined when the layer has no bias

 private:
  std::vector<std::pair<std::string, std::shared_ptr<WeightTransform>>> weight_chain_;
  std::vector<std::pair<std::string, std::shared_ptr<ActivationTransform>>> input_chain_;

 protected:
  std::shared_ptr<LayerRuntime> runtime_;
};

class Linear : public Compressible {
 public:
  Linear(int64_t in_features, int64_t out_features, bool bias = true);
  at::Tensor forward(const at::Tensor& x);
  int64_t in_features, out_features;
  // While set, the float path calls it with the input it multiplied (after the input chain)
  // and the output, on every forward: the EWC Fisher takes per-sample gradients from them.
  std::function<void(const at::Tensor& input, const at::Tensor& output)> observe;
};

class Conv2d : public Compressible {
 public:
  Conv2d(int64_t in_channels, int64_t out_channels, int64_t kernel_size, int64_t stride = 1,
         int64_t padding = 0, bool bias = true, int64_t groups = 1);
  at::Tensor forward(const at::Tensor& x);
  int64_t in_channels, out_channels, kernel_size, stride, padding, groups;
};

class Embedding : public Compressible {
 public:
  Embedding(int64_t num_embeddings, int64_t dim);
  at::Tensor forward(const at::Tensor& indices);
  int64_t num_embeddings, dim;
};

// Every compressible layer under `root`, with its dotted name ("blocks.hidden0.seq.0").
std::vector<std::pair<std::string, std::shared_ptr<Compressible>>> compressible_layers(
    torch::nn::Module& root);

}  // namespace sculpt::nn
