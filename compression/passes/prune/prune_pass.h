// The prune pass's class: its training and masks in prune.cpp, its reports in prune_report.cpp.
#pragma once

#include <ATen/core/Tensor.h>
#include <c10/core/Device.h>
#include <nlohmann/json.hpp>

#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "compression/fisher_board.h"
#include "compression/passes/prune/prune.h"
#include "compression/runtimes.h"

namespace sculpt::compression::prune {

class MaskTransform;  // prune_mask.h

class PrunePass final : public CompressionPass, public RuntimeProvider, public FisherBoardUser {
 public:
  using CompressionPass::CompressionPass;
  void set_fisher_board(std::shared_ptr<FisherBoard> board) override { board_ = std::move(board); }

  void attach(models::Model& model, const StepContext& ctx) override;
  void on_batch(data::Batch& batch, const StepContext& ctx) override;
  void after_backward(models::Model& model, const StepContext& ctx) override;
  void after_step(models::Model& model, const StepContext& ctx) override;
  void finalize(models::Model& model, const StepContext& ctx) override;
  void install_runtimes(models::Model& model) override;
  CallbackState state_dict() const override;
  void load_state_dict(const CallbackState& state) override;
  std::string pipeline_limitation() const override;
  nlohmann::json summary() const override;
  std::string describe(const Target& t) const override;

 private:
  struct Layer {
    std::string name;
    std::shared_ptr<nn::Compressible> layer;
    PruneOptions o;
    Schedule sched;
    Pattern pattern;
    int64_t rows = 0, cols = 0;
    std::vector<int64_t> layer_shape;
    at::Tensor sizes;  // unit sizes (CPU, long)
    std::shared_ptr<MaskTransform> mask;
    std::shared_ptr<prune::Scorer> scorer;  // chosen by the layer's `scorer:`
    at::Tensor acc;  // taylor/movement scores summed since the last update, [rows, cols]
    int64_t acc_steps = 0;
    int64_t positions = 1;  // output positions per sample (FLOPs)
    std::string norm;                    // channel: the norm layer that follows (norm_pairs)
    std::string coupled;                 // channel: the model's channel group it adds into
    std::vector<at::Tensor> norm_params;  // its weight and bias
  };

  static double final_target(const Layer& l) { return l.o.final_sparsity(); }

  Schedule resolve(const PruneOptions& o, int64_t total, int64_t per_epoch,
                   const std::string& layer) const;
  at::Tensor weight2d(const Layer& l) const {
    return l.layer->raw_weight().detach().reshape({l.rows, l.cols});
  }
  void measure_positions(models::Model& model, const StepContext& ctx);
  c10::Device device() const { return layers_.front().layer->raw_weight().device(); }
  double sparsity(const Layer& l) const;
  at::Tensor scores(const Layer& l) const;
  void set_mask(Layer& l, const at::Tensor& unit_in, const StepContext& ctx);
  static void enforce(Layer& l, torch::optim::Optimizer* optimizer);
  void update(int64_t t, const StepContext& ctx);
  void rigl_update(Layer& l, int64_t t, const StepContext& ctx);
  double sparse_bytes(const Layer& l) const;
  nlohmann::json charts() const;
  void record_curve(int64_t t);

  std::vector<Layer> layers_;
  std::shared_ptr<FisherBoard> board_;  // the recipe's: Fisher estimates other passes publish
  int64_t step_ = 0;
  nlohmann::json curve_ = nlohmann::json::array();
  nlohmann::json removed_;  // physical removal: what was cut
  nlohmann::json exported_;  // the sparse export written at finalize
  nlohmann::json runtimes_ = nlohmann::json::object();  // layer -> its BSR runtime
};

}  // namespace sculpt::compression::prune
