#include "compression/passes/quantize/quant_layer.h"

#include "core/data/loader.h"

namespace sculpt::compression::quantize_detail {

quant::ObserverOptions observer_options(const QuantizeOptions& o, quant::ObserverKind kind) {
  quant::ObserverOptions obs;
  obs.kind = kind;
  obs.momentum = o.observer_momentum;
  obs.percentile = o.percentile;
  return obs;
}

int64_t fused_rows(const at::Tensor& x, const QSpec& spec) {
  if (!x.is_cpu() || x.scalar_type() != at::kFloat || x.numel() == 0) return 0;
  switch (spec.granularity) {
    case Granularity::per_tensor: return 1;
    case Granularity::per_channel: return spec.axis == 0 && x.dim() > 0 ? x.size(0) : 0;
    case Granularity::per_group: return x.numel() / spec.group_size;
  }
  return 0;
}

bool fused_qparams(const QParams& qp, int64_t rows) {
  for (const at::Tensor* t : {&qp.scale, &qp.zero_point})
    if (!t->defined() || !t->is_cpu() || t->scalar_type() != at::kFloat || !t->is_contiguous() ||
        t->numel() != rows)
      return false;
  return true;
}

at::Tensor QuantWeight::fused_refresh(const at::Tensor& wf, int64_t rows) {
  const auto shape = quant::qparam_shape(wf.sizes(), spec_);
  at::Tensor scale = at::empty(shape, at::kFloat), zp = at::empty(shape, at::kFloat);
  const QSpec& spec = spec_;
  const kernels::RowQParams derive = [&spec](int64_t, float lo, float hi, float& s, float& z) {
    quant::qparams_of_range(lo, hi, spec, s, z);
  };
  at::Tensor y = kernels::fake_quant_rows(wf, rows, scale, zp, spec_.qmin(), spec_.qmax(), &derive, &out_);
  qp_ = QParams{spec_, scale, zp};
  dirty_ = false;
  return y;
}

at::Tensor QuantInput::fused_observe(const at::Tensor& x) {
  at::Tensor scale = at::empty({}, at::kFloat), zp = at::empty({}, at::kFloat);
  const kernels::RowQParams derive = [this](int64_t, float lo, float hi, float& s, float& z) {
    observer_.observe_range(lo, hi);
    observer_.host_qparams(s, z);
  };
  at::Tensor y = kernels::fake_quant_rows(x, 1, scale, zp, spec_.qmin(), spec_.qmax(), &derive, &out_);
  qp_ = QParams{spec_, scale, zp};
  dirty_ = false;
  return y;
}

Layer attach_layer(const std::string& name, const std::shared_ptr<nn::Compressible>& layer,
                   const QuantizeOptions& o, const Phase* phase, c10::Device device) {
  Layer l;
  l.name = name;
  l.layer = layer;
  const QSpec ws = o.weight_spec();
  ws.check(layer->raw_weight().sizes(),
           "compression quantize, layer " + name + ", weight_bits/weight_axis/group_size");
  l.weight = std::make_shared<QuantWeight>(ws, observer_options(o, o.weight_observer), o.lsq, phase);
  // Learned tensors live on the run's device before the optimizer takes them.
  l.weight->scale_ = at::zeros(quant::qparam_shape(layer->raw_weight().sizes(), ws),
                               at::TensorOptions(at::kFloat).device(device))
                         .set_requires_grad(true);
  layer->add_weight_transform("quant", l.weight);
  const bool is_embedding = dynamic_cast<nn::Embedding*>(layer.get()) != nullptr;
  if (o.act_bits > 0 && !is_embedding) {
    l.input = std::make_shared<QuantInput>(o.act_spec(), observer_options(o, o.act_observer), o.lsq,
                                           o.pact, o.pact_init, phase);
    l.input->uses_hist_ = quant::uses_histogram(o.act_observer);
    l.input->scale_ =
        at::zeros({}, at::TensorOptions(at::kFloat).device(device)).set_requires_grad(true);
    l.input->alpha_ = l.input->alpha_.detach().to(device).set_requires_grad(true);
    layer->add_input_transform("quant", l.input);
  }
  return l;
}

int64_t calibrate_layers(models::Model& model, std::vector<Layer>& layers, Phase& phase,
                         const data::Dataset& ds, int64_t batch_size,
                         const data::LoaderOptions& loading, int64_t batches, c10::Device device) {
  data::Loader loader(ds, batch_size, loading);
  at::NoGradGuard no_grad;
  model.eval();
  phase = {true, true, true};
  data::Batch b;
  int64_t n = 0;
  while (n < batches && loader.next(b)) {
    model.forward(b.inputs.to(device));
    for (auto& l : layers) l.weight->mark_dirty();
    ++n;
  }
  for (auto& l : layers)
    if (l.input) l.input->refresh();
  phase = {true, false, false};
  return n;
}

}  // namespace sculpt::compression::quantize_detail
