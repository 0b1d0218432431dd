// Model: a torch::nn::Module that is a sequence of named blocks (DESIGN.md §4), so pipeline
// stages can cut between blocks and distillation can tap a block's output by name. Registered
// by name in the "models" family; sized by its options and by the data it trains on.
#pragma once

#include <torch/nn/module.h>
#include <torch/nn/modules/container/sequential.h>

#include <map>
#include <string>
#include <vector>

#include "core/config/config.h"
#include "core/data/dataset.h"
#include "core/io/safetensors.h"
#include "core/registry/registry.h"

namespace sculpt::models {

// One named stage of a model: tensor in, tensor out.
class Block : public torch::nn::Module {
 public:
  virtual at::Tensor forward(const at::Tensor& x) = 0;
};

// A block made of torch modules applied in order.
class SequentialBlock final : public Block {
 public:
  explicit SequentialBlock(torch::nn::Sequential seq);
  at::Tensor forward(const at::Tensor& x) override;

 private:
  torch::nn::Sequential seq_;
};

// A module that can keep the attention probabilities of its last forward, [B, heads, Lq, Lk]
// (attention-map distillation). While recording it computes attention explicitly instead of
// with the fused kernel, so leave it off otherwise.
class AttentionRecorder {
 public:
  virtual ~AttentionRecorder() = default;
  virtual void record_attention(bool on) = 0;
  virtual const at::Tensor& attention() const = 0;
};

class Model : public torch::nn::Module {
 public:
  explicit Model(std::string name) : torch::nn::Module(std::move(name)) {}
  // Appends a block; its parameters are registered under `name`.
  void add_block(const std::string& name, std::shared_ptr<Block> block);
  at::Tensor forward(at::Tensor x);
  // The blocks [first, last) only (a pipeline stage); taps are not recorded.
  at::Tensor forward_blocks(at::Tensor x, int64_t first, int64_t last);
  size_t block_count() const { return blocks_.size(); }
  Block& block(size_t i) { return *blocks_.at(i).second; }
  std::shared_ptr<Block> block_ptr(size_t i) const { return blocks_.at(i).second; }
  std::vector<std::string> block_names() const;
  // Named feature taps: forward() records the output of each listed block (distillation).
  // Unknown block names are a UserError that lists the blocks.
  void set_taps(const std::vector<std::string>& block_names);
  const std::map<std::string, at::Tensor>& tapped() const { return tapped_; }
  // Parameters and buffers by their dotted names (what weights files and checkpoints hold).
  io::NamedTensors state_tensors();
  // Copies `state` into the model. UserError naming `source` and the tensor on a missing,
  // extra or mis-shaped tensor (weights of another model).
  void load_state_tensors(const io::NamedTensors& state, const std::string& source);
  // `state` with block from[i]'s tensors renamed to this model's block i, the blocks it does
  // not name left out: loading a shallower model from a deeper one's weights. UserError naming
  // `source` when the count differs from block_count() or a named block has no tensors there.
  io::NamedTensors pick_blocks(const io::NamedTensors& state, const std::vector<std::string>& from,
                               const std::string& source) const;
  // A normalization layer that directly follows a compressible layer on every path (conv1 ->
  // bn1), by dotted module names from the model root: BN folding (quantization) and channel
  // removal (pruning) treat the two together. Built-in models declare theirs.
  void add_norm_pair(const std::string& layer, const std::string& norm);
  const std::vector<std::pair<std::string, std::string>>& norm_pairs() const { return norm_pairs_; }
  // Layers whose output channels are added together (a residual stream), by dotted names: channel
  // pruning keeps the same channels in every producer, and removing them shrinks the inputs of
  // every consumer. Built-in models with residual adds declare theirs.
  // Parameters one block owns and another block also uses (a tied LM head reads the token
  // table; T5's layers read their stack's relative-position table): a pipeline cut may not
  // separate them.
  struct SharedWeights {
    std::string owner, user, what;
  };
  void add_shared_weights(SharedWeights s) { shared_.push_back(std::move(s)); }
  const std::vector<SharedWeights>& shared_weights() const { return shared_; }
  struct ChannelGroup {
    std::string name;
    std::vector<std::string> producers, consumers;
  };
  void add_channel_group(ChannelGroup group) { channel_groups_.push_back(std::move(group)); }
  const std::vector<ChannelGroup>& channel_groups() const { return channel_groups_; }
  // Which output channels pruning's finalize may remove physically: chain (every layer feeds
  // the next alone: mlp, lenet5), basic_blocks (a residual block's conv1 -> conv2, and whole
  // residual streams), feed_forward (a transformer's fc1 -> fc2 neurons, and attention heads),
  // none (pruned channels stay as zeros). Built-in models declare theirs.
  enum class ChannelRemoval { none, chain, basic_blocks, feed_forward };
  void set_channel_removal(ChannelRemoval r) { channel_removal_ = r; }
  ChannelRemoval channel_removal() const { return channel_removal_; }
  // A physically pruned model (channel removal in pruning's finalize) is smaller than the one its
  // config builds. mark_resized() adds a marker tensor (kResizedKey) to state_tensors(), so its
  // weights file says so; load_state_tensors() of such a file then takes each tensor's shape
  // from the file where it is smaller in some dimensions (same rank, never larger), resizing
  // the model's parameter in place. Without the marker a mis-shaped tensor stays an error.
  void mark_resized() { resized_ = true; }
  bool resized() const { return resized_; }
  static constexpr const char* kResizedKey = "sculpt_resized";
  int64_t parameter_count() const;
  int64_t parameter_bytes() const;

 private:
  std::vector<std::pair<std::string, std::shared_ptr<Block>>> blocks_;
  std::vector<bool> tap_;  // per block
  std::map<std::string, at::Tensor> tapped_;
  std::vector<std::pair<std::string, std::string>> norm_pairs_;
  std::vector<ChannelGroup> channel_groups_;
  std::vector<SharedWeights> shared_;
  ChannelRemoval channel_removal_ = ChannelRemoval::none;
  bool resized_ = false;
};

using ModelRegistry = Registry<Model, const config::ModelConfig&, const data::DataSpec&>;
ModelRegistry& model_registry();
void register_builtin_models(ModelRegistry& r);

struct MlpOptions : config::Section {
  std::vector<int64_t> hidden = {256, 256};  // hidden layer widths, each >= 1
  std::string activation = "relu";           // relu | gelu | tanh
  double dropout = 0.0;                      // dropout after each hidden layer, in [0, 1)
  void visit(config::Visitor& v) override;
};

struct LeNet5Options : config::Section {
  std::string variant = "lecun";  // lecun: 6/16 filters, 120-84; caffe: 20/50 filters, 500
  void visit(config::Visitor& v) override;
};

struct ResNetOptions : config::Section {
  int64_t depth = 20;  // 6n + 2: 20, 32, 56, 110
  double width = 1.0;  // channel multiplier of the 16/32/64 stages, > 0
  void visit(config::Visitor& v) override;
  void check(config::Checker& c) const override;
};

// transformer_encoder / transformer_lm / transformer_seq2seq (sequence lengths, vocabulary and
// classes come from the data).
struct TransformerOptions : config::Section {
  int64_t d_model = 128;       // residual stream width, divisible by heads
  int64_t heads = 4;           // attention heads
  int64_t layers = 2;          // encoder layers (all layers of transformer_lm)
  int64_t decoder_layers = 0;  // seq2seq decoder layers; 0: as many as `layers`
  int64_t ff = 0;              // feed-forward hidden width; 0: 4 * d_model
  double dropout = 0.0;        // on attention weights and residual branches
  int64_t patch_size = 4;      // images: square patch side
  void visit(config::Visitor& v) override;
  void check(config::Checker& c) const override;
};

}  // namespace sculpt::models
