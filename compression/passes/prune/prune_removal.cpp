#include "compression/passes/prune/prune_removal.h"

#include <torch/torch.h>

#include <map>
#include <set>

#include "core/error.h"
#include "core/logging/logging.h"
#include "core/models/model.h"
#include "core/models/layers_transformer.h"
#include "core/nn/layers.h"

namespace sculpt::compression::prune {

namespace {
void resize(const at::Tensor& param, const at::Tensor& value) {
  const_cast<at::Tensor&>(param).set_data(value.contiguous());
}

using Layers = std::vector<std::pair<std::string, std::shared_ptr<nn::Compressible>>>;
using Modules = torch::OrderedDict<std::string, std::shared_ptr<torch::nn::Module>>;

// A layer's output channels `keep` (rows, bias, the norm after it, the layer's size).
void keep_outputs(nn::Compressible& layer, torch::nn::Module* norm, const at::Tensor& keep) {
  const int64_t before = layer.raw_weight().size(0);
  resize(layer.raw_weight(), layer.raw_weight().index_select(0, keep));
  if (layer.bias().defined()) resize(layer.bias(), layer.bias().index_select(0, keep));
  if (norm) {  // the norm's per-channel parameters and running statistics
    for (auto& p : norm->named_parameters(false)) resize(p.value(), p.value().index_select(0, keep));
    for (auto& b : norm->named_buffers(false))
      if (b.value().dim() == 1 && b.value().size(0) == before)
        resize(b.value(), b.value().index_select(0, keep));
  }
  if (auto* lin = dynamic_cast<nn::Linear*>(&layer)) lin->out_features = keep.numel();
  if (auto* conv = dynamic_cast<nn::Conv2d*>(&layer)) conv->out_channels = keep.numel();
}

// A layer's input channels `keep` (a conv's, or a Linear's features one per channel).
void keep_inputs(nn::Compressible& layer, const at::Tensor& keep) {
  resize(layer.raw_weight(), layer.raw_weight().index_select(1, keep));
  if (auto* lin = dynamic_cast<nn::Linear*>(&layer)) lin->in_features = keep.numel();
  if (auto* conv = dynamic_cast<nn::Conv2d*>(&layer)) conv->in_channels = keep.numel();
}

nlohmann::json remove_stream(models::Model& model, const Layers& layers, Modules& modules,
                             const models::Model::ChannelGroup& g, const ChannelCut& cut,
                             std::map<std::string, const ChannelCut*>& by_layer) {
  auto find = [&](const std::string& name) -> nn::Compressible& {
    for (const auto& [n, l] : layers)
      if (n == name) return *l;
    throw InternalError("model " + model.name() + " declares channel group layer " + name +
                        ", which it does not have");
  };
  const auto keep = cut.keep.to(at::kCPU).nonzero().reshape(-1);
  const int64_t before = cut.keep.numel();
  for (const auto& p : g.producers) {
    auto& layer = find(p);
    const auto& norm = by_layer[p]->norm;
    keep_outputs(layer, norm.empty() ? nullptr : modules[norm].get(),
                 keep.to(layer.raw_weight().device()));
  }
  for (const auto& c : g.consumers) {
    auto& layer = find(c);
    keep_inputs(layer, keep.to(layer.raw_weight().device()));
  }
  log::info("prune: the residual stream after ", g.name, " keeps ", keep.numel(), " of ", before,
            " channels (removed from ", g.producers.size(), " producers and ",
            g.consumers.size(), " consumers)");
  return {{"name", g.name}, {"channels_before", before}, {"channels", keep.numel()},
          {"producers", g.producers}, {"consumers", g.consumers}};
}
}  // namespace

nlohmann::json remove_channels(models::Model& model, const std::vector<ChannelCut>& cuts,
                               const std::string& pass) {
  using Removal = models::Model::ChannelRemoval;
  const Removal removal = model.channel_removal();
  const bool resnet = removal == Removal::basic_blocks,
             transformer = removal == Removal::feed_forward;
  if (removal == Removal::none) {
    log::warn("compression pass ", pass, ": physical channel removal is implemented for mlp, "
              "lenet5, resnet and transformers; model ", model.name(), " keeps its pruned "
              "channels as zeros");
    return {{"physical", false}};
  }
  torch::NoGradGuard no_grad;
  const auto layers = nn::compressible_layers(model);
  auto modules = model.named_modules("", /*include_self=*/false);
  nlohmann::json out = {{"physical", true}, {"layers", nlohmann::json::array()}};
  auto ends_with = [](const std::string& s, const std::string& tail) {
    return s.size() >= tail.size() && s.compare(s.size() - tail.size(), tail.size(), tail) == 0;
  };
  // Residual streams (Model::channel_groups): removed as a whole when every producer was cut
  // alike; their consumers lose the matching input channels.
  std::map<std::string, const ChannelCut*> by_layer;
  for (const auto& cut : cuts) by_layer[cut.layer] = &cut;
  std::set<std::string> grouped;
  for (const auto& g : model.channel_groups()) {
    bool any = false, all = true;
    const ChannelCut* first = nullptr;
    for (const auto& p : g.producers) {
      auto it = by_layer.find(p);
      if (it == by_layer.end()) {
        all = false;
        continue;
      }
      any = true;
      if (!first) first = it->second;
      all = all && at::equal(it->second->keep.to(at::kCPU).to(at::kBool),
                             first->keep.to(at::kCPU).to(at::kBool));
    }
    if (!any) continue;
    for (const auto& p : g.producers) grouped.insert(p);
    if (!all) {
      log::warn("compression pass ", pass, ": the residual stream after ", g.name,
                " is not pruned alike in all its producers (", g.producers.size(),
                " layers); its channels stay as zeros");
      for (const auto& p : g.producers)
        if (by_layer.count(p)) out["kept_as_zeros"].push_back(p);
      continue;
    }
    out["layers"].push_back(remove_stream(model, layers, modules, g, *first, by_layer));
  }
  for (const auto& cut : cuts) {
    if (grouped.count(cut.layer)) continue;
    size_t i = 0;
    while (i < layers.size() && layers[i].first != cut.layer) ++i;
    SCULPT_CHECK(i + 1 < layers.size(), "compression pass ", pass, ": cannot remove channels of ",
                 cut.layer, ": no layer consumes them");
    if (resnet && !(ends_with(cut.layer, ".conv1") && ends_with(layers[i + 1].first, ".conv2"))) {
      log::warn("compression pass ", pass, ": ", cut.layer, "'s channels meet a residual add; "
                "they stay as zeros (only a basic block's conv1 channels are removed)");
      out["kept_as_zeros"].push_back(cut.layer);
      continue;
    }
    // A transformer's feed-forward neurons: fc1's outputs (and a gated feed-forward's gate,
    // multiplied with them) feed fc2 only; other outputs join the residual stream.
    size_t consumer = i + 1;
    nn::Compressible* gate = nullptr;
    if (transformer && ends_with(cut.layer, ".fc1")) {
      const std::string parent = cut.layer.substr(0, cut.layer.size() - 4);
      for (size_t j = 0; j < layers.size(); ++j) {
        if (layers[j].first == parent + ".fc2") consumer = j;
        if (layers[j].first == parent + ".gate") gate = layers[j].second.get();
      }
    }
    if (transformer && !(ends_with(cut.layer, ".fc1") && ends_with(layers[consumer].first, ".fc2"))) {
      log::warn("compression pass ", pass, ": ", cut.layer, "'s outputs join the residual "
                "stream", ends_with(cut.layer, ".gate") ? " (a gate is cut with its fc1)" : "",
                "; they stay as zeros (only feed-forward fc1 neurons are removed)");
      out["kept_as_zeros"].push_back(cut.layer);
      continue;
    }
    auto& layer = *layers[i].second;
    auto& next = *layers[consumer].second;
    const int64_t before = layer.raw_weight().size(0);
    auto keep = cut.keep.to(at::kCPU).nonzero().reshape(-1);
    const int64_t kept = keep.numel();
    auto dev_keep = keep.to(layer.raw_weight().device());
    if (auto* conv = dynamic_cast<nn::Conv2d*>(&layer))
      SCULPT_CHECK(conv->groups == 1, "compression pass ", pass, ": ", cut.layer,
                   " is a grouped conv; channel removal needs groups = 1");
    keep_outputs(layer, cut.norm.empty() ? nullptr : modules[cut.norm].get(), dev_keep);
    if (gate) keep_outputs(*gate, nullptr, dev_keep);
    // The consumer's inputs: a conv's input channels, or a Linear's features (after a flatten
    // of [channels, h, w]: `per` consecutive features per channel).
    const auto& w = next.raw_weight();
    const int64_t per = w.size(1) / before;
    SCULPT_CHECK(per * before == w.size(1) || dynamic_cast<nn::Conv2d*>(&next), "compression pass ",
                 pass, ": ", layers[consumer].first, " takes ", w.size(1), " inputs, not a multiple of ",
                 cut.layer, "'s ", before, " channels");
    if (dynamic_cast<nn::Conv2d*>(&next)) {
      keep_inputs(next, dev_keep);
    } else {
      auto cols = (dev_keep.unsqueeze(1) * per + at::arange(per, dev_keep.options())).reshape(-1);
      resize(w, w.index_select(1, cols));
      if (auto* lin = dynamic_cast<nn::Linear*>(&next)) lin->in_features = kept * per;
    }
    out["layers"].push_back({{"name", cut.layer}, {"channels_before", before}, {"channels", kept}});
    log::info("prune: ", cut.layer, " keeps ", kept, " of ", before, " channels (removed)");
  }
  model.mark_resized();
  return out;
}

nlohmann::json remove_heads(models::Model& model, const std::vector<HeadCut>& cuts,
                            const std::string& pass) {
  torch::NoGradGuard no_grad;
  std::map<std::string, std::shared_ptr<nn::Compressible>> layers;
  for (const auto& [name, layer] : nn::compressible_layers(model)) layers[name] = layer;
  auto modules = model.named_modules("", /*include_self=*/false);
  nlohmann::json out = {{"physical", true}, {"layers", nlohmann::json::array()}};
  bool resized = false;
  for (const auto& cut : cuts) {
    const auto dot = cut.layer.rfind('.');
    const std::string attention = dot == std::string::npos ? "" : cut.layer.substr(0, dot);
    std::vector<nn::Linear*> qkv;
    for (const char* p : {".q", ".k", ".v"}) {
      auto it = layers.find(attention + p);
      if (it != layers.end())
        if (auto* lin = dynamic_cast<nn::Linear*>(it->second.get())) qkv.push_back(lin);
    }
    auto* o = dynamic_cast<nn::Linear*>(layers.count(cut.layer) ? layers[cut.layer].get() : nullptr);
    if (cut.layer.substr(dot + 1) != "o" || qkv.size() != 3 || !o) {
      log::warn("compression pass ", pass, ": ", cut.layer, " is not an attention's output "
                "projection (<attention>.o beside .q, .k, .v): its pruned heads stay as zeros");
      out["kept_as_zeros"].push_back(cut.layer);
      continue;
    }
    auto keep = cut.keep.to(at::kCPU).nonzero().reshape(-1);
    const int64_t heads = cut.keep.numel(), width = o->raw_weight().size(1);
    SCULPT_CHECK(width % heads == 0, "compression pass ", pass, ": ", cut.layer, " has ", width,
                 " inputs, not ", heads, " heads' worth");
    if (keep.numel() == 0) {  // an attention without heads: keep the best-ranked one (the first)
      log::warn("compression pass ", pass, ": every head of ", attention,
                " is pruned; its first head stays (zero) so the layer keeps its shape");
      keep = at::zeros({1}, at::kLong);
    }
    const int64_t per = width / heads;
    const auto device = o->raw_weight().device();
    auto rows_of = [&](const at::Tensor& units, int64_t n) {
      return (units.unsqueeze(1) * n + at::arange(n, units.options())).reshape(-1).to(device);
    };
    // Key/value rows: the same units when they divide the key/value heads (attention, or
    // grouped-query attention pruned by groups: heads = num_key_value_heads); under grouped-query
    // attention pruned by query heads, a key/value head stays while any query head of its group
    // stays, and its whole group with it (heads pruned within a kept group stay, with their
    // zero output columns).
    auto att = std::dynamic_pointer_cast<models::Attention>(modules[attention]);
    const int64_t head_dim = att ? att->head_dim() : per;
    const int64_t kv_heads = qkv[1]->raw_weight().size(0) / head_dim;
    at::Tensor kv_keep = keep;
    int64_t kv_per = kv_heads % heads == 0 ? kv_heads / heads * head_dim : 0;
    if (kv_per == 0) {
      SCULPT_CHECK(kv_heads > 0 && heads % kv_heads == 0, "compression pass ", pass, ": ", attention,
                   " has ", kv_heads, " key/value heads for ", heads, " pruned units");
      const int64_t group = heads / kv_heads;
      at::Tensor mask = at::zeros({heads}, at::kBool).index_fill_(0, keep, true);
      at::Tensor groups = mask.view({kv_heads, group}).any(1);
      kv_keep = groups.nonzero().reshape(-1);
      keep = groups.repeat_interleave(group).nonzero().reshape(-1);
      kv_per = head_dim;
    }
    const int64_t kept = keep.numel();
    auto rows = rows_of(keep, per), kv_rows = rows_of(kv_keep, kv_per);
    for (auto* lin : qkv) {
      const auto& r = lin == qkv[0] ? rows : kv_rows;
      resize(lin->raw_weight(), lin->raw_weight().index_select(0, r));
      if (lin->bias().defined()) resize(lin->bias(), lin->bias().index_select(0, r));
      lin->out_features = r.numel();
    }
    resize(o->raw_weight(), o->raw_weight().index_select(1, rows));
    o->in_features = kept * per;
    if (att) {  // the original query heads that stay: each unit covers per / head_dim of them
      const int64_t n = per / head_dim;
      att->keep_heads((keep.unsqueeze(1) * n + at::arange(n, keep.options())).reshape(-1));
    }
    resized = true;
    out["layers"].push_back({{"name", attention}, {"heads_before", heads}, {"heads", kept}});
    log::info("prune: ", attention, " keeps ", kept, " of ", heads, " heads (removed)");
  }
  if (resized) model.mark_resized();
  return out;
}

}  // namespace sculpt::compression::prune
