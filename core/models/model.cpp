#include "core/models/model.h"

#include "core/models/hf/hf_model.h"

#include "core/models/builtin_models.h"

#include <torch/nn/modules/activation.h>
#include <torch/nn/modules/container/sequential.h>
#include <torch/nn/modules/dropout.h>
#include <torch/nn/modules/linear.h>
#include <torch/utils.h>

#include "core/error.h"
#include "core/nn/layers.h"

namespace sculpt::models {

SequentialBlock::SequentialBlock(torch::nn::Sequential seq)
    : seq_(register_module("seq", std::move(seq))) {}

at::Tensor SequentialBlock::forward(const at::Tensor& x) {
  return seq_->forward(x);
}

void Model::add_block(const std::string& name, std::shared_ptr<Block> block) {
  register_module(name, block);
  blocks_.emplace_back(name, std::move(block));
  tap_.push_back(false);
}

at::Tensor Model::forward(at::Tensor x) {
  if (!tapped_.empty()) tapped_.clear();
  for (size_t i = 0; i < blocks_.size(); ++i) {
    x = blocks_[i].second->forward(x);
    if (tap_[i]) tapped_[blocks_[i].first] = x;
  }
  return x;
}

at::Tensor Model::forward_blocks(at::Tensor x, int64_t first, int64_t last) {
  SCULPT_CHECK(first >= 0 && first <= last && last <= static_cast<int64_t>(blocks_.size()),
               "model ", name(), ": block range [", first, ", ", last, ") of ", blocks_.size());
  for (int64_t i = first; i < last; ++i) x = blocks_[static_cast<size_t>(i)].second->forward(x);
  return x;
}

namespace {
std::string join_names(const std::vector<std::string>& names) {
  std::string out;
  for (const auto& n : names) out += (out.empty() ? "" : ", ") + n;
  return out;
}
}  // namespace

void Model::set_taps(const std::vector<std::string>& names) {
  std::fill(tap_.begin(), tap_.end(), false);
  for (const auto& n : names) {
    bool found = false;
    for (size_t i = 0; i < blocks_.size(); ++i) {
      if (blocks_[i].first == n) tap_[i] = found = true;
    }
    SCULPT_CHECK(found, "model ", name(), " has no block '", n, "'; its blocks: ",
                 join_names(block_names()));
  }
}

std::vector<std::string> Model::block_names() const {
  std::vector<std::string> out;
  for (const auto& b : blocks_) out.push_back(b.first);
  return out;
}

io::NamedTensors Model::state_tensors() {
  io::NamedTensors out;
  for (const auto& p : named_parameters()) out.emplace_back(p.key(), p.value());
  for (const auto& b : named_buffers()) out.emplace_back(b.key(), b.value());
  if (resized_) out.emplace_back(kResizedKey, at::ones({1}));
  return out;
}

void Model::load_state_tensors(const io::NamedTensors& state, const std::string& source) {
  std::map<std::string, at::Tensor> given(state.begin(), state.end());
  torch::NoGradGuard no_grad;
  if (given.erase(kResizedKey)) resized_ = true;
  auto mine = state_tensors();
  for (auto& [n, target] : mine) {
    if (n == kResizedKey) continue;
    auto it = given.find(n);
    SCULPT_CHECK(it != given.end(), source, ": tensor '", n,
                 "' of the model is missing (weights of another model?)");
    bool smaller = resized_ && it->second.dim() == target.dim();
    for (int64_t d = 0; smaller && d < target.dim(); ++d)
      smaller = it->second.size(d) <= target.size(d);
    if (smaller && it->second.sizes() != target.sizes()) {
      target.set_data(it->second.to(target.device(), target.scalar_type()).contiguous());
      given.erase(it);
      continue;
    }
    SCULPT_CHECK(it->second.sizes() == target.sizes(), source, ": tensor '", n, "' has shape ",
                 it->second.sizes(), " but the model expects ", target.sizes());
    target.copy_(it->second);
    given.erase(it);
  }
  SCULPT_CHECK(given.empty(), source, ": tensor '", given.empty() ? "" : given.begin()->first,
               "' does not belong to this model");
}

io::NamedTensors Model::pick_blocks(const io::NamedTensors& state,
                                    const std::vector<std::string>& from,
                                    const std::string& source) const {
  SCULPT_CHECK(from.size() == blocks_.size(), source, ": init_blocks names ", from.size(),
               " blocks but the model has ", blocks_.size(), " (", join_names(block_names()),
               "): give one block of the init weights per block of the model, in order");
  io::NamedTensors out;
  for (size_t i = 0; i < from.size(); ++i) {
    const std::string prefix = from[i] + ".";
    size_t found = 0;
    for (const auto& [name, t] : state)
      if (name.rfind(prefix, 0) == 0) {
        out.emplace_back(blocks_[i].first + "." + name.substr(prefix.size()), t);
        ++found;
      }
    SCULPT_CHECK(found > 0, source, ": init_blocks: block '", from[i], "' (for the model's block '",
                 blocks_[i].first, "') has no tensors in the init weights");
  }
  return out;
}

void Model::add_norm_pair(const std::string& layer, const std::string& norm) {
  norm_pairs_.emplace_back(layer, norm);
}

int64_t Model::parameter_count() const {
  int64_t n = 0;
  for (const auto& p : parameters()) n += p.numel();
  return n;
}

int64_t Model::parameter_bytes() const {
  int64_t n = 0;
  for (const auto& p : parameters()) n += p.numel() * static_cast<int64_t>(p.element_size());
  return n;
}

void MlpOptions::visit(config::Visitor& v) {
  v.field("hidden", hidden, "mlp: hidden layer widths", config::Range::at_least(1));
  v.choice("activation", activation, {"relu", "gelu", "tanh"},
           "mlp: activation after each hidden layer");
  v.field("dropout", dropout, "mlp: dropout after each hidden layer",
          config::Range::half_open(0, 1));
}

ModelRegistry& model_registry() {
  static ModelRegistry registry("models");
  return registry;
}

namespace {
std::unique_ptr<Model> make_mlp(const MlpOptions& o, const data::DataSpec& spec) {
  auto model = std::make_unique<Model>("mlp");
  model->set_channel_removal(Model::ChannelRemoval::chain);
  int64_t in = 1;
  for (auto d : spec.input_shape) in *= d;
  auto seq = [](std::initializer_list<torch::nn::AnyModule> mods) {
    torch::nn::Sequential s;
    for (const auto& m : mods) s->push_back(m);
    return std::make_shared<SequentialBlock>(s);
  };
  model->add_block("flatten", seq({torch::nn::AnyModule(torch::nn::Flatten())}));
  for (size_t i = 0; i < o.hidden.size(); ++i) {
    torch::nn::Sequential block;
    block->push_back(std::make_shared<nn::Linear>(in, o.hidden[i]));
    if (o.activation == "relu")
      block->push_back(torch::nn::ReLU());
    else if (o.activation == "gelu")
      block->push_back(torch::nn::GELU());
    else
      block->push_back(torch::nn::Tanh());
    if (o.dropout > 0) block->push_back(torch::nn::Dropout(o.dropout));
    model->add_block("hidden" + std::to_string(i), std::make_shared<SequentialBlock>(block));
    in = o.hidden[i];
  }
  SCULPT_CHECK(spec.vocab_size == 0, "model mlp: token data needs a transformer model");
  // Regression data (no classes): one output per row.
  const int64_t out = spec.num_classes > 0 ? spec.num_classes : 1;
  model->add_block("head", seq({torch::nn::AnyModule(std::make_shared<nn::Linear>(in, out))}));
  return model;
}
}  // namespace

void register_builtin_models(ModelRegistry& r) {
  add_lenet5(r);
  add_resnet(r);
  add_transformers(r);
  hf::add_hf_models(r);
  r.add(
      "mlp", "multi-layer perceptron: flatten, hidden Linear+activation blocks, linear head",
      [](const config::ModelConfig& c, const data::DataSpec& spec) {
        return make_mlp(c.options ? dynamic_cast<const MlpOptions&>(*c.options) : MlpOptions{},
                        spec);
      },
      [] { return std::make_shared<MlpOptions>(); });
}

}  // namespace sculpt::models
