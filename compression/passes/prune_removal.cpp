#include "compression/passes/prune_removal.h"

#include <torch/torch.h>

#include <map>

#include "core/error.h"
#include "core/logging/logging.h"
#include "core/models/model.h"
#include "core/nn/layers.h"

namespace sculpt::compression::prune {

namespace {
void resize(const at::Tensor& param, const at::Tensor& value) {
  const_cast<at::Tensor&>(param).set_data(value.contiguous());
}
}  // namespace

nlohmann::json remove_channels(models::Model& model, const std::vector<ChannelCut>& cuts,
                               const std::string& pass) {
  const std::string kind = model.name();
  const bool chain = kind == "mlp" || kind == "lenet5", resnet = kind.rfind("resnet", 0) == 0,
             transformer = kind.rfind("transformer", 0) == 0;
  if (!chain && !resnet && !transformer) {
    log::warn("compression pass ", pass, ": physical channel removal is implemented for mlp, "
              "lenet5, resnet and transformers; model ", kind, " keeps its pruned channels as "
              "zeros");
    return {{"physical", false}};
  }
  torch::NoGradGuard no_grad;
  const auto layers = nn::compressible_layers(model);
  auto modules = model.named_modules("", /*include_self=*/false);
  nlohmann::json out = {{"physical", true}, {"layers", nlohmann::json::array()}};
  auto ends_with = [](const std::string& s, const std::string& tail) {
    return s.size() >= tail.size() && s.compare(s.size() - tail.size(), tail.size(), tail) == 0;
  };
  for (const auto& cut : cuts) {
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
    // A transformer's feed-forward neurons: fc1's outputs feed fc2 only; other outputs join
    // the residual stream.
    if (transformer && !(ends_with(cut.layer, ".fc1") && ends_with(layers[i + 1].first, ".fc2"))) {
      log::warn("compression pass ", pass, ": ", cut.layer, "'s outputs join the residual "
                "stream; they stay as zeros (only feed-forward fc1 neurons are removed)");
      out["kept_as_zeros"].push_back(cut.layer);
      continue;
    }
    auto& layer = *layers[i].second;
    auto& next = *layers[i + 1].second;
    const int64_t before = layer.raw_weight().size(0);
    auto keep = cut.keep.to(at::kCPU).nonzero().reshape(-1);
    const int64_t kept = keep.numel();
    auto dev_keep = keep.to(layer.raw_weight().device());
    resize(layer.raw_weight(), layer.raw_weight().index_select(0, dev_keep));
    if (layer.bias().defined()) resize(layer.bias(), layer.bias().index_select(0, dev_keep));
    if (!cut.norm.empty()) {  // the norm's per-channel parameters and running statistics
      auto& norm = *modules[cut.norm];
      for (auto& p : norm.named_parameters(false)) resize(p.value(), p.value().index_select(0, dev_keep));
      for (auto& b : norm.named_buffers(false))
        if (b.value().dim() == 1 && b.value().size(0) == before)
          resize(b.value(), b.value().index_select(0, dev_keep));
    }
    if (auto* lin = dynamic_cast<nn::Linear*>(&layer)) lin->out_features = kept;
    if (auto* conv = dynamic_cast<nn::Conv2d*>(&layer)) {
      SCULPT_CHECK(conv->groups == 1, "compression pass ", pass, ": ", cut.layer,
                   " is a grouped conv; channel removal needs groups = 1");
      conv->out_channels = kept;
    }
    // The consumer's inputs: a conv's input channels, or a Linear's features (after a flatten
    // of [channels, h, w]: `per` consecutive features per channel).
    const auto& w = next.raw_weight();
    const int64_t per = w.size(1) / before;
    SCULPT_CHECK(per * before == w.size(1) || dynamic_cast<nn::Conv2d*>(&next), "compression pass ",
                 pass, ": ", layers[i + 1].first, " takes ", w.size(1), " inputs, not a multiple of ",
                 cut.layer, "'s ", before, " channels");
    if (auto* conv = dynamic_cast<nn::Conv2d*>(&next)) {
      resize(w, w.index_select(1, dev_keep));
      conv->in_channels = kept;
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
    const int64_t per = width / heads, kept = keep.numel();
    const auto device = o->raw_weight().device();
    auto rows = (keep.unsqueeze(1) * per + at::arange(per, keep.options())).reshape(-1).to(device);
    for (auto* lin : qkv) {
      resize(lin->raw_weight(), lin->raw_weight().index_select(0, rows));
      if (lin->bias().defined()) resize(lin->bias(), lin->bias().index_select(0, rows));
      lin->out_features = kept * per;
    }
    resize(o->raw_weight(), o->raw_weight().index_select(1, rows));
    o->in_features = kept * per;
    resized = true;
    out["layers"].push_back({{"name", attention}, {"heads_before", heads}, {"heads", kept}});
    log::info("prune: ", attention, " keeps ", kept, " of ", heads, " heads (removed)");
  }
  if (resized) model.mark_resized();
  return out;
}

}  // namespace sculpt::compression::prune
