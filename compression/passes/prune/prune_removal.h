// Physical removal of pruned output channels (conv filters, Linear neurons) and attention heads:
// the layer loses the
// rows, the next layer the matching inputs (through a flatten: the matching feature columns),
// biases follow, so the model is a smaller dense model with the same outputs as the masked one.
// Implemented for chain models (mlp, lenet5), where each layer's outputs feed only the next
// compressible layer, and for the inner conv of ResNet basic blocks (<block>.conv1 -> bn1 ->
// <block>.conv2; the norm of Model::norm_pairs() shrinks too). Channels on a residual path
// (stem, conv2, down: added together) keep their zeros; TODO: dependency groups for them.
#pragma once

#include <ATen/core/Tensor.h>

#include <nlohmann/json.hpp>
#include <string>
#include <vector>

namespace sculpt::models {
class Model;
}

namespace sculpt::compression::prune {

struct ChannelCut {
  std::string layer;  // dotted layer name
  std::string norm;   // the norm layer after it (Model::norm_pairs), or empty
  at::Tensor keep;    // bool [out channels], true = kept
};

// Cuts the channels and marks the model resized (its weights file then carries the new shapes,
// which `sculpt eval` and model.init accept). Returns what was cut, per layer, for the summary.
nlohmann::json remove_channels(models::Model& model, const std::vector<ChannelCut>& cuts,
                               const std::string& pass);

struct HeadCut {
  std::string layer;  // an attention's output projection, "<attention>.o" (pattern head)
  at::Tensor keep;    // bool [heads], true = kept
};

// Removes pruned attention heads: the attention's q, k and v projections lose the heads' rows
// (and biases), its output projection the matching input columns, so the model holds fewer heads
// of the same width (the transformer's attention reads its head count from q's rows). At least
// one head stays. Marks the model resized; returns what was cut, for the summary.
nlohmann::json remove_heads(models::Model& model, const std::vector<HeadCut>& cuts,
                            const std::string& pass);

}  // namespace sculpt::compression::prune
