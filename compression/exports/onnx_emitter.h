// The graph builder of `sculpt export --format onnx` (onnx_export.h): a plain graph (onnxw::Graph,
// no protobuf) built node by node from the run's model. GraphBuilder names values and holds the
// initializers; Emitter writes the model's layers (onnx_emitter.cpp); the families' writers walk
// the model's blocks with it (onnx_families.cpp; small quantized convs: onnx_s2d.cpp).
#pragma once

#include <ATen/ATen.h>
#include <torch/nn/module.h>

#include <map>
#include <optional>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "compression/exports/onnx_writer.h"
#include "compression/passes/quantize/qparams.h"
#include "core/config/config.h"
#include "core/error.h"
#include "core/models/hf/hf_model.h"
#include "core/models/layers_transformer.h"
#include "core/models/model.h"
#include "core/nn/layers.h"

namespace sculpt::compression::onnx_graph {

using onnxw::Attr;
using Strs = std::vector<std::string>;

inline Attr ai(const char* n, int64_t v) {
  Attr a;
  a.kind = Attr::kInt, a.name = n, a.i = v;
  return a;
}
inline Attr af(const char* n, float v) {
  Attr a;
  a.kind = Attr::kFloatAttr, a.name = n, a.f = v;
  return a;
}
inline Attr ais(const char* n, std::vector<int64_t> v) {
  Attr a;
  a.kind = Attr::kInts, a.name = n, a.ints = std::move(v);
  return a;
}

inline int onnx_dtype(at::ScalarType t, const std::string& what) {
  switch (t) {
    case at::kFloat: return onnxw::kFloat;
    case at::kByte: return onnxw::kUint8;
    case at::kChar: return onnxw::kInt8;
    case at::kInt: return onnxw::kInt32;
    case at::kLong: return onnxw::kInt64;
    case at::kBool: return onnxw::kBool;
    default: throw UserError("export onnx: " + what + " has dtype " + std::string(c10::toString(t)));
  }
}

// The graph under construction.
class GraphBuilder {
 public:
  onnxw::Graph g;
  int64_t parameters = 0;

  std::string unique(const std::string& hint) {
    auto& n = used_[hint];
    return n++ == 0 ? hint : hint + "_" + std::to_string(n - 1);
  }
  std::string init(const std::string& hint, at::Tensor t, bool count = true) {
    t = t.detach().to(at::kCPU);
    if (at::isFloatingType(t.scalar_type())) t = t.to(at::kFloat);
    t = t.contiguous();
    onnxw::Initializer in;
    in.name = unique(hint);
    in.dtype = onnx_dtype(t.scalar_type(), hint);
    in.dims = t.sizes().vec();
    in.raw.assign(static_cast<const char*>(t.data_ptr()), t.nbytes());
    if (count) parameters += t.numel();
    g.initializers.push_back(std::move(in));
    return g.initializers.back().name;
  }
  // One initializer per tensor even when several layers read it (a tied LM head).
  std::string shared(const std::string& hint, const at::Tensor& t) {
    auto key = std::make_pair(t.data_ptr(), t.sizes().vec());
    auto it = shared_.find(key);
    if (it != shared_.end()) return it->second;
    return shared_[key] = init(hint, t);
  }
  std::string i64s(const std::vector<int64_t>& v) {
    std::string key = "i";
    for (auto x : v) key += "_" + std::to_string(x);
    auto it = consts_.find(key);
    if (it != consts_.end()) return it->second;
    return consts_[key] = init("const", at::tensor(v, at::kLong), false);
  }
  std::string i64(int64_t v) {
    const std::string key = "s" + std::to_string(v);
    auto it = consts_.find(key);
    if (it != consts_.end()) return it->second;
    return consts_[key] = init("const", at::scalar_tensor(v, at::kLong), false);
  }
  std::string f32(float v) {
    std::ostringstream k;
    k.precision(9);
    k << "f" << v;
    auto it = consts_.find(k.str());
    if (it != consts_.end()) return it->second;
    return consts_[k.str()] = init("const", at::scalar_tensor(v, at::kFloat), false);
  }
  Strs opn(const std::string& type, const Strs& in, std::vector<Attr> attrs, int outputs,
           const std::string& hint = "") {
    onnxw::Node n;
    n.op = type;
    n.name = unique((hint.empty() ? type : hint) + "/" + type);
    n.inputs = in;
    n.attrs = std::move(attrs);
    for (int i = 0; i < outputs; ++i) n.outputs.push_back(unique(hint.empty() ? "t" : hint));
    g.nodes.push_back(n);
    return n.outputs;
  }
  std::string op(const std::string& type, const Strs& in, std::vector<Attr> attrs = {},
                 const std::string& hint = "") {
    return opn(type, in, std::move(attrs), 1, hint)[0];
  }

 private:
  std::map<std::string, int> used_;
  std::map<std::pair<void*, std::vector<int64_t>>, std::string> shared_;
  std::map<std::string, std::string> consts_;
};

// A per-tensor activation grid, as QuantizeLinear/DequantizeLinear take it.
struct QAct {
  float scale = 1;
  int64_t zp = 0, qmin = 0, qmax = 255;
  int bits = 8;
  bool operator==(const QAct& o) const {
    return scale == o.scale && zp == o.zp && qmin == o.qmin && qmax == o.qmax;
  }
};

// One layer of the run's integer model (<run>/quantized), read from its files: the writer needs
// no integer model built (quant::load_quantized), only the float model for the other layers.
struct QLayer {
  quant::QSpec w;
  at::Tensor w_scale, w_zp;  // float, qparam_shape
  at::Tensor grid;           // int32 weight grid values, the weight's shape
  std::optional<QAct> act;
  at::Tensor bias;  // bias_q (a folded BatchNorm in it), undefined if none
  std::string folded_norm;
  // The dequantized weight (the integer model's raw weight), computed once.
  const at::Tensor& weight() const;

 private:
  mutable at::Tensor weight_;
};

// The layers of <run>/quantized (`dir`; none for "").
std::map<std::string, QLayer> read_quantized(const std::string& dir);

// Hyper-parameters of one transformer layer (what layers_transformer.h keeps private), from the
// config the model was built from.
struct TSpec {
  models::NormKind norm = models::NormKind::layer;
  double eps = 1e-5;
  bool pre_norm = true, gated = false, scaled = true;
  models::Activation act = models::Activation::gelu;
  int64_t window = 0, head_dim = 0;
  models::RotarySpec rotary;
};

// Where the model's inputs come from and what kind of model it is.
enum class Kind { dense, tokens, seq2seq, hf_text, hf_t5, hf_vit };

// What kind of model `cfg` builds; `arch` (if given) gets a Hugging Face model's architecture.
Kind kind_of(const config::Config& cfg, const data::DataSpec& spec, models::hf::Arch* arch);

class Emitter {
 public:
  Emitter(models::Model& m, std::map<std::string, QLayer> q) : model_(m), q_(std::move(q)) {
    for (const auto& item : m.named_modules("", false)) mods_[item.key()] = item.value();
    for (const auto& item : m.named_parameters(true)) tensors_[item.key()] = item.value();
    for (const auto& item : m.named_buffers(true)) tensors_[item.key()] = item.value();
    for (const auto& [name, q] : q_)
      if (!q.folded_norm.empty()) folded_.insert(q.folded_norm);
  }
  GraphBuilder gb;
  bool skip_input_qdq = false;  // the next quantized layer's input is on its grid already
  // The next linear()'s input features in another order: its weight's columns taken in this
  // order (int64 indices; undefined: as they are). Used once.
  at::Tensor linear_input_order;
  std::vector<std::string> quantized, float_layers;
  std::vector<std::string> space_to_depth;  // convolutions written in space-to-depth form

  bool has(const std::string& n) const { return tensors_.count(n) > 0; }
  at::Tensor T(const std::string& n) const;
  std::shared_ptr<torch::nn::Module> M(const std::string& n) const;
  bool has_module(const std::string& n) const { return mods_.count(n) > 0; }
  // The module at `n` as the layer type the family has there; a float layer must have been
  // materialized (its transforms baked in), a quantized one is read from <run>/quantized.
  template <class L>
  std::shared_ptr<L> layer(const std::string& n) const {
    auto l = std::dynamic_pointer_cast<L>(M(n));
    SCULPT_CHECK(l, "export onnx: ", n, " is not the layer the model's family has there");
    if (auto c = std::dynamic_pointer_cast<nn::Compressible>(l)) {
      SCULPT_CHECK(q_.count(n) || !c->has_transforms(), "export onnx: ", n,
                   " still has weight or input transforms (materialize the model first)");
    }
    return l;
  }

  // ---- small compositions ----
  std::string shape_dim(const std::string& x, int64_t d) {  // [1] int64
    return gb.op("Shape", {x}, {ai("start", d), ai("end", d + 1)});
  }
  std::string scalar(const std::string& one) {  // [1] -> []
    return gb.op("Squeeze", {one, gb.i64s({0})});
  }
  std::string unsqueeze(const std::string& x, std::vector<int64_t> axes) {
    return gb.op("Unsqueeze", {x, gb.i64s(axes)});
  }
  std::string range(const std::string& n_scalar) {
    return gb.op("Range", {gb.i64(0), n_scalar, gb.i64(1)});
  }
  std::string slice(const std::string& x, const std::string& start, const std::string& end, int64_t axis) {
    return gb.op("Slice", {x, start, end, gb.i64s({axis})});
  }
  std::string slice_c(const std::string& x, int64_t start, int64_t end, int64_t axis) {
    return slice(x, gb.i64s({start}), gb.i64s({end}), axis);
  }

  std::string qdq(const std::string& x, const QAct& a, const std::string& hint);

  std::string activation(const std::string& x, models::Activation a);

  std::string norm(const std::string& x, const std::string& prefix, models::NormKind kind, double eps);

  // ---- compressible layers ----
  const QLayer* quant_of(const std::string& name);
  // The weight the model computes with: the integer model's (dequantized grid) for a quantized
  // layer, else the layer's raw weight.
  at::Tensor weight_of(const std::string& name);

  // The integer weight: the grid values of <run>/quantized, DequantizeLinear with its scales along
  // `axis` (of the stored layout); `columns`: its input columns in that order. Per-group grids: "".
  std::string dq_weight(const std::string& name, const QLayer& q, bool transpose, int64_t* axis_out,
                        const at::Tensor& columns = at::Tensor());

  // Bias at scale input_scale x weight_scale (int32), as QDQ runtimes expect; else float.
  std::string bias_of(const std::string& name, const at::Tensor& b, const QLayer* q, int64_t w_axis,
                      bool int_weight);

  // Notes a quantized layer written with its input quantized: the last one sets quant_step().
  void note_step(const QLayer* q) {
    if (q && q->act) last_quantized_ = q;
  }
  // The output's change when the last quantized layer's input moves by one quantization step:
  // its input scale x the largest row sum of |weight| (0 for none).
  double quant_step() const {
    if (!last_quantized_) return 0;
    const at::Tensor& w = last_quantized_->weight();
    return last_quantized_->act->scale * w.abs().reshape({w.size(0), -1}).sum(1).max().item<double>();
  }

  // y = x W^T + b; rank 2 inputs as Gemm (transB), others as MatMul + Add.
  std::string linear(std::string x, const std::string& name, int rank);

  std::string conv(std::string x, const std::string& name);

  // The embedding table as Gather's data: float, or DequantizeLinear of its int8 rows.
  std::string embedding_table(const std::string& name);
  // A tied LM head's weight: the token table's values (the integer model's when quantized), one
  // float initializer.
  std::string tied_table(const std::string& name) { return gb.shared(name + ".weight", weight_of(name)); }
  std::string embedding(const std::string& ids, const std::string& name) {
    return gb.op("Gather", {embedding_table(name), ids}, {}, name);
  }

  std::string batchnorm(const std::string& x, const std::string& name);

  // ---- transformers ----
  // Masks are bool tensors broadcastable to [B, heads, Lq, Lk] ("" for none).
  std::string key_mask(const std::string& valid) { return valid.empty() ? "" : unsqueeze(valid, {1, 2}); }
  std::string causal_mask(const std::string& len, int64_t window);
  std::string both(const std::string& a, const std::string& b);

  // T5's relative-position bias [1, H, Lq, Lk] for queries/keys 0..L-1: the table's values for
  // distances -D..D (Sculpt's own bucketing), gathered by the clamped distance.
  std::string relative_bias(const std::string& rel_module, int64_t max_distance, const std::string& lq,
                            const std::string& lk);

  struct Rope {
    std::string cos, sin;
  };
  Rope rope(const std::string& len, const TSpec& s);
  std::string rotate(const std::string& t, const Rope& rp, const TSpec& s);

  std::string attention(const std::string& p, const std::string& x, const std::string& mem,
                        const std::string& mask, std::string bias, const TSpec& s, bool self,
                        const std::string& len);

  std::string feed_forward(const std::string& p, const std::string& x, const TSpec& s);

  // One models::Layer at `p` (mirrors Layer::forward). `len`: the sequence length [] (rotary).
  std::string tlayer(const std::string& p, std::string h, const TSpec& s, const std::string& self_mask,
                     const std::string& self_bias, const std::string& len, const std::string& mem = "",
                     const std::string& mem_mask = "");

  std::string torch_layer_norm(const std::string& x, const std::string& name);

  models::Model& model_;

 private:
  const QLayer* last_quantized_ = nullptr;
  std::map<std::string, QLayer> q_;
  std::map<std::string, std::shared_ptr<torch::nn::Module>> mods_;
  std::map<std::string, at::Tensor> tensors_;
  std::set<std::string> folded_;
  std::map<std::string, Rope> rope_;
  std::map<std::string, int64_t> bias_heads_;  // relative_bias outputs: their head count
};

std::string dim(int64_t v);
int64_t count_blocks(const std::vector<std::string>& names, const std::string& prefix);
TSpec builtin_spec(const config::Config& cfg);
TSpec hf_spec(const models::hf::Arch& a);

// The whole model into e.gb (its inputs, nodes and the output `logits`, whose dims go to
// `out_dims`): the family's writer (onnx_families.cpp).
void emit_model(Emitter& e, const config::Config& cfg, const data::DataSpec& spec,
                std::vector<std::string>* out_dims);

}  // namespace sculpt::compression::onnx_graph
