// `sculpt export --format onnx` (onnx_export.h): the model walked block by block into ONNX nodes.
// Protobuf is only touched by onnx_writer.cpp (its own library); this file builds a plain graph.
#include "compression/exports/onnx_export.h"

#include <ATen/ATen.h>
#include <torch/nn/modules/activation.h>
#include <torch/nn/modules/batchnorm.h>
#include <torch/nn/modules/dropout.h>
#include <torch/nn/modules/linear.h>
#include <torch/nn/modules/normalization.h>
#include <torch/nn/modules/pooling.h>

#include <dlfcn.h>

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <limits>
#include <map>
#include <optional>
#include <set>
#include <sstream>
#include <sys/wait.h>

#include "compression/export_dir.h"
#include "compression/exports/onnx_writer.h"
#include "compression/passes/quantize/qparams.h"
#include "core/error.h"
#include "core/io/atomic_file.h"
#include "core/models/hf/hf_model.h"
#include "core/models/layers_transformer.h"
#include "core/nn/layers.h"

namespace sculpt::compression {

namespace fs = std::filesystem;
using onnxw::Attr;
using Strs = std::vector<std::string>;

namespace {

Attr ai(const char* n, int64_t v) {
  Attr a;
  a.kind = Attr::kInt, a.name = n, a.i = v;
  return a;
}
Attr af(const char* n, float v) {
  Attr a;
  a.kind = Attr::kFloatAttr, a.name = n, a.f = v;
  return a;
}
Attr ais(const char* n, std::vector<int64_t> v) {
  Attr a;
  a.kind = Attr::kInts, a.name = n, a.ints = std::move(v);
  return a;
}

int onnx_dtype(at::ScalarType t, const std::string& what) {
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

// One layer of the run's integer model (<run>/quantized).
struct QLayer {
  quant::QSpec w;
  at::Tensor w_scale, w_zp;  // float, qparam_shape
  std::optional<QAct> act;
  at::Tensor bias;  // bias_q (a folded BatchNorm in it), undefined if none
  std::string folded_norm;
};

std::map<std::string, QLayer> read_quantized(const std::string& dir) {
  std::map<std::string, QLayer> out;
  if (dir.empty()) return out;
  ExportReader r(dir, "sculpt-quantized", "a quantize pass writes <run>/quantized when training ends");
  auto spec = [](const nlohmann::json& j) {
    quant::QSpec s;
    s.bits = j.at("bits").get<int>();
    s.symmetric = j.at("symmetric").get<bool>();
    s.is_signed = j.at("signed").get<bool>();
    config::parse_spelling(quant::kGranularities, j.at("granularity").get<std::string>(), s.granularity);
    s.axis = j.at("axis").get<int64_t>();
    s.group_size = j.at("group_size").get<int64_t>();
    return s;
  };
  for (const auto& [name, j] : r.manifest().at("layers").items()) {
    QLayer q;
    q.w = spec(j.at("weight"));
    q.w_scale = r.take(name + ".w_scale").to(at::kFloat);
    q.w_zp = q.w.symmetric ? at::zeros_like(q.w_scale) : r.take(name + ".w_zero_point").to(at::kFloat);
    if (r.has(name + ".bias_q")) q.bias = r.take(name + ".bias_q").to(at::kFloat);
    if (!j.at("act").is_null()) {
      const quant::QSpec a = spec(j.at("act"));
      QAct qa;
      qa.scale = r.take(name + ".a_scale").to(at::kFloat).flatten()[0].item<float>();
      qa.zp = r.take(name + ".a_zero_point").to(at::kLong).flatten()[0].item<int64_t>();
      qa.qmin = a.qmin(), qa.qmax = a.qmax(), qa.bits = a.bits;
      q.act = qa;
    }
    q.folded_norm = j.value("folded_norm", "");
    out[name] = q;
  }
  return out;
}

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

Kind kind_of(const config::Config& cfg, const data::DataSpec& spec, models::hf::Arch* arch) {
  if (cfg.model.name == "hf") {
    const auto& o = dynamic_cast<const models::hf::HfOptions&>(*cfg.model.options);
    const auto a = models::hf::read_arch(o.path);
    if (arch) *arch = a;
    if (a.family == "vit") return Kind::hf_vit;
    if (a.family == "t5") return Kind::hf_t5;
    return Kind::hf_text;
  }
  if (cfg.model.name == "transformer_seq2seq") return Kind::seq2seq;
  if (spec.vocab_size > 0) return Kind::tokens;
  return Kind::dense;
}

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
  std::vector<std::string> quantized, float_layers;
  double last_step = 0;  // quant_step of the last quantized layer emitted

  bool has(const std::string& n) const { return tensors_.count(n) > 0; }
  at::Tensor T(const std::string& n) const {
    auto it = tensors_.find(n);
    SCULPT_CHECK(it != tensors_.end(), "export onnx: the model has no tensor ", n);
    return it->second.detach();
  }
  std::shared_ptr<torch::nn::Module> M(const std::string& n) const {
    auto it = mods_.find(n);
    SCULPT_CHECK(it != mods_.end(), "export onnx: the model has no module ", n);
    return it->second;
  }
  bool has_module(const std::string& n) const { return mods_.count(n) > 0; }
  template <class L>
  std::shared_ptr<L> layer(const std::string& n) const {
    auto l = std::dynamic_pointer_cast<L>(M(n));
    SCULPT_CHECK(l, "export onnx: ", n, " is not the layer the model's family has there");
    if (auto c = std::dynamic_pointer_cast<nn::Compressible>(l)) {
      SCULPT_CHECK(!c->has_transforms(), "export onnx: ", n,
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

  std::string qdq(const std::string& x, const QAct& a, const std::string& hint) {
    const bool u = a.qmin >= 0;
    const int64_t smin = u ? 0 : -128, smax = u ? 255 : 127;
    std::string in = x;
    if (a.bits < 8 && (a.qmin > smin || a.qmax < smax))  // the grid inside the 8-bit storage
      in = gb.op("Clip", {x, gb.f32((a.qmin - a.zp) * a.scale), gb.f32((a.qmax - a.zp) * a.scale)});
    const std::string s = gb.f32(a.scale);
    const std::string z = gb.init(hint + ".zero_point",
                                  u ? at::scalar_tensor(a.zp, at::kByte) : at::scalar_tensor(a.zp, at::kChar),
                                  false);
    const std::string q = gb.op("QuantizeLinear", {in, s, z}, {}, hint);
    return gb.op("DequantizeLinear", {q, s, z}, {}, hint);
  }

  std::string activation(const std::string& x, models::Activation a) {
    using models::Activation;
    switch (a) {
      case Activation::relu: return gb.op("Relu", {x});
      case Activation::silu: return gb.op("Mul", {x, gb.op("Sigmoid", {x})});
      case Activation::gelu: {  // x * 0.5 * (1 + erf(x / sqrt(2))), as ATen's gelu
        const std::string e = gb.op("Erf", {gb.op("Mul", {x, gb.f32(static_cast<float>(M_SQRT1_2))})});
        return gb.op("Mul", {gb.op("Mul", {x, gb.f32(0.5f)}), gb.op("Add", {e, gb.f32(1.0f)})});
      }
      case Activation::gelu_tanh: {  // 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))
        const std::string x3 = gb.op("Mul", {gb.op("Mul", {x, x}), x});
        const std::string inner = gb.op(
            "Mul", {gb.op("Add", {x, gb.op("Mul", {x3, gb.f32(0.044715f)})}),
                    gb.f32(static_cast<float>(M_2_SQRTPI * M_SQRT1_2))});
        return gb.op("Mul", {gb.op("Mul", {x, gb.f32(0.5f)}),
                             gb.op("Add", {gb.op("Tanh", {inner}), gb.f32(1.0f)})});
      }
    }
    return x;
  }

  std::string norm(const std::string& x, const std::string& prefix, models::NormKind kind, double eps) {
    const std::string w = gb.init(prefix + ".weight", T(prefix + ".weight"));
    if (kind == models::NormKind::layer) {
      Strs in = {x, w};
      if (has(prefix + ".bias")) in.push_back(gb.init(prefix + ".bias", T(prefix + ".bias")));
      return gb.op("LayerNormalization", in, {ai("axis", -1), af("epsilon", static_cast<float>(eps))},
                   prefix);
    }
    // RMSNorm (opset 17 has none): x / sqrt(mean(x^2) + eps) * w
    const std::string ms = gb.op("ReduceMean", {gb.op("Mul", {x, x})}, {ais("axes", {-1}), ai("keepdims", 1)});
    const std::string r = gb.op("Reciprocal", {gb.op("Sqrt", {gb.op("Add", {ms, gb.f32(static_cast<float>(eps))})})});
    return gb.op("Mul", {gb.op("Mul", {x, r}), w}, {}, prefix);
  }

  // ---- compressible layers ----
  const QLayer* quant_of(const std::string& name) {
    auto it = q_.find(name);
    return it == q_.end() ? nullptr : &it->second;
  }

  // The integer weight: grid values (exact: the model's weight holds their dequantized values),
  // DequantizeLinear with its scales along `axis` (of the stored layout). Per-group grids: "".
  std::string dq_weight(const std::string& name, const at::Tensor& w, const QLayer& q, bool transpose,
                        int64_t* axis_out) {
    if (q.w.granularity == quant::Granularity::per_group) {
      float_layers.push_back(name + ": per-group weights (opset 17's DequantizeLinear has no "
                             "blocks): its dequantized values in float");
      return "";
    }
    at::Tensor qv = at::clamp(at::round(w / q.w_scale) + q.w_zp, q.w.qmin(), q.w.qmax());
    const bool u = q.w.qmin() >= 0;
    at::Tensor stored = qv.to(u ? at::kByte : at::kChar);
    at::Tensor scale = q.w_scale.flatten(), zp = q.w_zp.flatten();
    int64_t axis = q.w.axis;
    if (transpose) {
      stored = stored.t();
      axis = 1 - axis;
    }
    const bool per_tensor = q.w.granularity == quant::Granularity::per_tensor;
    std::vector<Attr> attrs;
    if (!per_tensor) attrs.push_back(ai("axis", axis));
    const std::string s = per_tensor ? gb.init(name + ".weight_scale", scale.reshape({}), false)
                                     : gb.init(name + ".weight_scale", scale, false);
    at::Tensor z = (per_tensor ? zp.reshape({}) : zp).to(u ? at::kByte : at::kChar);
    const std::string zs = gb.init(name + ".weight_zero_point", z, false);
    const std::string wq = gb.init(name + ".weight_quantized", stored);
    if (axis_out) *axis_out = per_tensor ? -1 : axis;
    quantized.push_back(name);
    return gb.op("DequantizeLinear", {wq, s, zs}, std::move(attrs), name + ".weight");
  }

  // Bias at scale input_scale x weight_scale (int32), as QDQ runtimes expect; else float.
  std::string bias_of(const std::string& name, const at::Tensor& b, const QLayer* q, int64_t w_axis,
                      bool int_weight) {
    if (!b.defined()) return "";
    if (!q || !q->act || !int_weight || (w_axis != -1 && q->w.axis != 0))
      return gb.init(name + ".bias", b);
    at::Tensor s = (q->w_scale.flatten() * q->act->scale).to(at::kFloat);
    at::Tensor bq = at::round(b / s).clamp(-2147483647.0, 2147483647.0).to(at::kInt);
    const bool per_tensor = s.numel() == 1;
    const std::string sn = gb.init(name + ".bias_scale", per_tensor ? s.reshape({}) : s, false);
    const std::string zn = gb.init(name + ".bias_zero_point",
                                   at::zeros(per_tensor ? std::vector<int64_t>{} : std::vector<int64_t>{s.numel()}, at::kInt),
                                   false);
    std::vector<Attr> attrs;
    if (!per_tensor) attrs.push_back(ai("axis", 0));
    return gb.op("DequantizeLinear", {gb.init(name + ".bias_quantized", bq), sn, zn}, std::move(attrs),
                 name + ".bias");
  }

  void note_step(const QLayer* q, const at::Tensor& w) {
    if (q && q->act) last_step = q->act->scale * w.abs().reshape({w.size(0), -1}).sum(1).max().item<double>();
  }

  // y = x W^T + b; rank 2 inputs as Gemm (transB), others as MatMul + Add.
  std::string linear(std::string x, const std::string& name, int rank) {
    auto l = layer<nn::Linear>(name);
    const QLayer* q = quant_of(name);
    at::Tensor w = l->raw_weight().detach();
    at::Tensor b = q && q->bias.defined() ? q->bias : (l->bias().defined() ? l->bias().detach() : at::Tensor());
    if (q && q->act && !skip_input_qdq) x = qdq(x, *q->act, name + ".input");
    skip_input_qdq = false;
    int64_t axis = -1;
    std::string wn = q ? dq_weight(name, w, *q, rank != 2, &axis) : "";
    const bool int_weight = !wn.empty();
    note_step(q, w);
    if (rank == 2) {
      if (wn.empty()) wn = gb.init(name + ".weight", w);
      Strs in = {x, wn};
      const std::string bn = bias_of(name, b, q, axis, int_weight);
      if (!bn.empty()) in.push_back(bn);
      return gb.op("Gemm", in, {ai("transB", 1)}, name);
    }
    if (wn.empty()) wn = gb.init(name + ".weight_t", w.t());
    std::string y = gb.op("MatMul", {x, wn}, {}, name);
    if (b.defined()) y = gb.op("Add", {y, gb.init(name + ".bias", b)}, {}, name);
    return y;
  }

  std::string conv(std::string x, const std::string& name) {
    auto c = layer<nn::Conv2d>(name);
    const QLayer* q = quant_of(name);
    at::Tensor w = c->raw_weight().detach();
    at::Tensor b = q && q->bias.defined() ? q->bias : (c->bias().defined() ? c->bias().detach() : at::Tensor());
    if (q && q->act && !skip_input_qdq) x = qdq(x, *q->act, name + ".input");
    skip_input_qdq = false;
    int64_t axis = -1;
    std::string wn = q ? dq_weight(name, w, *q, false, &axis) : "";
    const bool int_weight = !wn.empty();
    note_step(q, w);
    if (wn.empty()) wn = gb.init(name + ".weight", w);
    Strs in = {x, wn};
    const std::string bn = bias_of(name, b, q, axis, int_weight);
    if (!bn.empty()) in.push_back(bn);
    const int64_t k = c->kernel_size, s = c->stride, p = c->padding;
    return gb.op("Conv", in,
                 {ais("kernel_shape", {k, k}), ais("strides", {s, s}), ais("pads", {p, p, p, p}),
                  ai("group", c->groups), ais("dilations", {1, 1})},
                 name);
  }

  // The embedding table as Gather's data: float, or DequantizeLinear of its int8 rows.
  std::string embedding_table(const std::string& name) {
    auto e = layer<nn::Embedding>(name);
    const QLayer* q = quant_of(name);
    if (q) {
      int64_t axis = -1;
      const std::string t = dq_weight(name, e->raw_weight().detach(), *q, false, &axis);
      if (!t.empty()) return t;
    }
    return gb.shared(name + ".weight", e->raw_weight().detach());
  }
  std::string embedding(const std::string& ids, const std::string& name) {
    return gb.op("Gather", {embedding_table(name), ids}, {}, name);
  }

  std::string batchnorm(const std::string& x, const std::string& name) {
    if (folded_.count(name)) return x;  // folded into the conv before it (the integer model)
    auto bn = layer<torch::nn::BatchNorm2dImpl>(name);
    return gb.op("BatchNormalization",
                 {x, gb.init(name + ".weight", bn->weight), gb.init(name + ".bias", bn->bias),
                  gb.init(name + ".running_mean", bn->running_mean, false),
                  gb.init(name + ".running_var", bn->running_var, false)},
                 {af("epsilon", static_cast<float>(bn->options.eps()))}, name);
  }

  // ---- transformers ----
  // Masks are bool tensors broadcastable to [B, heads, Lq, Lk] ("" for none).
  std::string key_mask(const std::string& valid) { return valid.empty() ? "" : unsqueeze(valid, {1, 2}); }
  std::string causal_mask(const std::string& len, int64_t window) {  // len: [] int64
    const std::string r = range(len);
    const std::string row = unsqueeze(r, {1}), col = unsqueeze(r, {0});
    std::string tri = gb.op("LessOrEqual", {col, row});
    if (window > 0)
      tri = gb.op("And", {tri, gb.op("Greater", {col, gb.op("Sub", {row, gb.i64(window)})})});
    return unsqueeze(tri, {0, 1});
  }
  std::string both(const std::string& a, const std::string& b) {
    if (a.empty()) return b;
    if (b.empty()) return a;
    return gb.op("And", {a, b});
  }

  // T5's relative-position bias [1, H, Lq, Lk] for queries/keys 0..L-1: the table's values for
  // distances -D..D (Sculpt's own bucketing), gathered by the clamped distance.
  std::string relative_bias(const std::string& rel_module, int64_t max_distance, const std::string& lq,
                            const std::string& lk) {
    auto rel = layer<models::RelativeBias>(rel_module);
    const int64_t d = max_distance;
    at::Tensor values;
    {
      torch::NoGradGuard no_grad;
      values = rel->bias(d, 1, 2 * d + 1, at::TensorOptions().dtype(at::kFloat)).squeeze(2).squeeze(0);
    }
    const std::string table = gb.init(rel_module + ".values", values);  // [H, 2D + 1]
    const std::string dist = gb.op("Sub", {unsqueeze(range(lk), {0}), unsqueeze(range(lq), {1})});
    const std::string idx =
        gb.op("Add", {gb.op("Min", {gb.op("Max", {dist, gb.i64(-d)}), gb.i64(d)}), gb.i64(d)});
    const std::string out = unsqueeze(gb.op("Gather", {table, idx}, {ai("axis", 1)}, rel_module), {0});
    bias_heads_[out] = values.size(0);
    return out;
  }

  struct Rope {
    std::string cos, sin;
  };
  Rope rope(const std::string& len, const TSpec& s) {
    auto key = len;
    auto it = rope_.find(key);
    if (it != rope_.end()) return it->second;
    const auto& r = s.rotary;
    const int64_t dim = r.dim > 0 ? r.dim : s.head_dim;
    at::Tensor inv = 1.0 / at::pow(r.theta, at::arange(0, dim, 2, at::kLong).to(at::kFloat) /
                                                static_cast<double>(dim));
    if (r.scaling == "linear") {
      inv = inv / r.factor;
    } else if (r.scaling == "llama3") {
      const double old = static_cast<double>(r.original_max_positions);
      const double low_wavelen = old / r.low_freq_factor;
      const double high_wavelen = old / r.high_freq_factor;
      at::Tensor wavelen = 2 * M_PI / inv;
      at::Tensor scaled = at::where(wavelen > low_wavelen, inv / r.factor, inv);
      at::Tensor smooth =
          (old / wavelen - r.low_freq_factor) / (r.high_freq_factor - r.low_freq_factor);
      at::Tensor smoothed = (1 - smooth) * scaled / r.factor + smooth * scaled;
      at::Tensor medium = (wavelen >= high_wavelen).logical_and(wavelen <= low_wavelen);
      inv = at::where(medium, smoothed, scaled);
    }
    const std::string pos = gb.op("Cast", {range(len)}, {ai("to", onnxw::kFloat)});
    const std::string freqs =
        gb.op("Mul", {unsqueeze(pos, {1}), unsqueeze(gb.init("rotary.inv_freq", inv, false), {0})});
    const std::string emb = gb.op("Concat", {freqs, freqs}, {ai("axis", -1)});
    Rope out{gb.op("Cos", {emb}, {}, "rotary.cos"), gb.op("Sin", {emb}, {}, "rotary.sin")};
    rope_[key] = out;
    return out;
  }
  std::string rotate(const std::string& t, const Rope& rp, const TSpec& s) {
    const int64_t hd = s.head_dim, dim = s.rotary.dim > 0 ? s.rotary.dim : hd, half = dim / 2;
    const std::string r = dim == hd ? t : slice_c(t, 0, dim, 3);
    const std::string rot = gb.op(
        "Concat", {gb.op("Neg", {slice_c(r, half, dim, 3)}), slice_c(r, 0, half, 3)}, {ai("axis", -1)});
    const std::string out = gb.op("Add", {gb.op("Mul", {r, rp.cos}), gb.op("Mul", {rot, rp.sin})});
    return dim == hd ? out : gb.op("Concat", {out, slice_c(t, dim, hd, 3)}, {ai("axis", -1)});
  }

  std::string attention(const std::string& p, const std::string& x, const std::string& mem,
                        const std::string& mask, std::string bias, const TSpec& s, bool self,
                        const std::string& len) {
    const int64_t hd = s.head_dim;
    const int64_t heads = layer<nn::Linear>(p + ".q")->raw_weight().size(0) / hd;
    const int64_t kv = layer<nn::Linear>(p + ".k")->raw_weight().size(0) / hd;
    auto split = [&](const std::string& t, int64_t h) {
      return gb.op("Transpose", {gb.op("Reshape", {t, gb.i64s({0, 0, h, hd})})}, {ais("perm", {0, 2, 1, 3})});
    };
    std::string q = split(linear(x, p + ".q", 3), heads);
    std::string k = split(linear(mem, p + ".k", 3), kv);
    std::string v = split(linear(mem, p + ".v", 3), kv);
    if (s.rotary.on && self) {
      const Rope rp = rope(len, s);
      q = rotate(q, rp, s);
      k = rotate(k, rp, s);
    }
    if (kv != heads) {  // grouped-query attention: each key/value head serves heads / kv queries
      auto expand = [&](const std::string& t) {
        return gb.op("Reshape", {gb.op("Expand", {unsqueeze(t, {2}), gb.i64s({1, 1, heads / kv, 1, 1})}),
                                 gb.i64s({0, heads, -1, hd})});
      };
      k = expand(k);
      v = expand(v);
    }
    std::string scores = gb.op("MatMul", {q, gb.op("Transpose", {k}, {ais("perm", {0, 1, 3, 2})})}, {}, p);
    if (s.scaled) scores = gb.op("Div", {scores, gb.f32(static_cast<float>(std::sqrt(static_cast<double>(hd))))});
    if (!bias.empty()) {
      if (has(p + ".head_index")) {
        const at::Tensor idx = T(p + ".head_index");
        auto it = bias_heads_.find(bias);
        if (it == bias_heads_.end() || idx.numel() != it->second)  // as Attention::forward
          bias = gb.op("Gather", {bias, gb.init(p + ".head_index", idx, false)}, {ai("axis", 1)});
      }
      scores = gb.op("Add", {scores, bias});
    }
    if (!mask.empty())
      scores = gb.op("Where", {mask, scores, gb.f32(std::numeric_limits<float>::lowest())});
    const std::string probs = gb.op("Softmax", {scores}, {ai("axis", -1)}, p);
    const std::string y = gb.op("MatMul", {probs, v});
    const std::string merged = gb.op("Reshape", {gb.op("Transpose", {y}, {ais("perm", {0, 2, 1, 3})}),
                                                 gb.i64s({0, 0, heads * hd})});
    return linear(merged, p + ".o", 3);
  }

  std::string feed_forward(const std::string& p, const std::string& x, const TSpec& s) {
    if (s.gated)
      return linear(gb.op("Mul", {activation(linear(x, p + ".gate", 3), s.act), linear(x, p + ".fc1", 3)}),
                    p + ".fc2", 3);
    return linear(activation(linear(x, p + ".fc1", 3), s.act), p + ".fc2", 3);
  }

  // One models::Layer at `p` (mirrors Layer::forward). `len`: the sequence length [] (rotary).
  std::string tlayer(const std::string& p, std::string h, const TSpec& s, const std::string& self_mask,
                     const std::string& self_bias, const std::string& len, const std::string& mem = "",
                     const std::string& mem_mask = "") {
    const bool cross = has_module(p + ".cross_attn");
    if (!s.pre_norm) {
      h = norm(gb.op("Add", {h, attention(p + ".self_attn", h, h, self_mask, self_bias, s, true, len)}),
               p + ".ln1", s.norm, s.eps);
      if (cross)
        h = norm(gb.op("Add", {h, attention(p + ".cross_attn", h, mem, mem_mask, "", s, false, len)}),
                 p + ".ln_cross", s.norm, s.eps);
      return norm(gb.op("Add", {h, feed_forward(p, h, s)}), p + ".ln2", s.norm, s.eps);
    }
    const std::string a = norm(h, p + ".ln1", s.norm, s.eps);
    h = gb.op("Add", {h, attention(p + ".self_attn", a, a, self_mask, self_bias, s, true, len)});
    if (cross)
      h = gb.op("Add", {h, attention(p + ".cross_attn", norm(h, p + ".ln_cross", s.norm, s.eps), mem,
                                     mem_mask, "", s, false, len)});
    return gb.op("Add", {h, feed_forward(p, norm(h, p + ".ln2", s.norm, s.eps), s)}, {}, p);
  }

  std::string torch_layer_norm(const std::string& x, const std::string& name) {
    auto ln = layer<torch::nn::LayerNormImpl>(name);
    return norm(x, name, models::NormKind::layer, ln->options.eps());
  }

  models::Model& model_;

 private:
  std::map<std::string, QLayer> q_;
  std::map<std::string, std::shared_ptr<torch::nn::Module>> mods_;
  std::map<std::string, at::Tensor> tensors_;
  std::set<std::string> folded_;
  std::map<std::string, Rope> rope_;
  std::map<std::string, int64_t> bias_heads_;  // relative_bias outputs: their head count
};

std::string dim(int64_t v) { return std::to_string(v); }

int64_t count_blocks(const std::vector<std::string>& names, const std::string& prefix) {
  int64_t n = 0;
  for (const auto& b : names)
    if (b.rfind(prefix, 0) == 0 && b.size() > prefix.size() &&
        std::isdigit(static_cast<unsigned char>(b[prefix.size()])))
      ++n;
  return n;
}

// ---- families ----

// mlp, lenet5: blocks of torch::nn::Sequential. A quantized layer's output is quantized with the
// next quantized layer's input grid when only ReLU / max-pooling / flatten / dropout come between.
std::string emit_sequential(Emitter& e, std::string x, int* rank) {
  std::vector<std::pair<std::string, std::shared_ptr<torch::nn::Module>>> flat;
  for (const auto& b : e.model_.block_names()) {
    SCULPT_CHECK(e.has_module(b + ".seq"), "export onnx: block ", b, " of ", e.model_.name(),
                 " is not a sequence of layers; the ONNX writer knows no such block");
    for (const auto& item : e.M(b + ".seq")->named_children())
      flat.emplace_back(b + ".seq." + item.key(), item.value());
  }
  auto passes_grid = [](const torch::nn::Module& m) {
    return dynamic_cast<const torch::nn::ReLUImpl*>(&m) || dynamic_cast<const torch::nn::MaxPool2dImpl*>(&m) ||
           dynamic_cast<const torch::nn::FlattenImpl*>(&m) || dynamic_cast<const torch::nn::DropoutImpl*>(&m);
  };
  std::optional<QAct> carry;
  for (size_t i = 0; i < flat.size(); ++i) {
    const auto& [name, m] = flat[i];
    const bool compressible = std::dynamic_pointer_cast<nn::Compressible>(m) != nullptr;
    if (compressible) {
      const QLayer* q = e.quant_of(name);
      // the input already on this layer's grid (the previous layer's output Q/DQ): not twice
      e.skip_input_qdq = carry && q && q->act && *carry == *q->act;
      if (std::dynamic_pointer_cast<nn::Conv2d>(m)) {
        x = e.conv(x, name);
      } else if (std::dynamic_pointer_cast<nn::Linear>(m)) {
        x = e.linear(x, name, *rank);
      } else {
        throw UserError("export onnx: " + name + " (" + m->name() + ") has no ONNX translation here");
      }
      carry.reset();
      for (size_t j = i + 1; j < flat.size(); ++j) {
        if (std::dynamic_pointer_cast<nn::Compressible>(flat[j].second)) {
          const QLayer* nq = e.quant_of(flat[j].first);
          if (q && nq && nq->act) carry = *nq->act;
          break;
        }
        if (!passes_grid(*flat[j].second)) break;
      }
    } else if (dynamic_cast<torch::nn::ReLUImpl*>(m.get())) {
      x = e.gb.op("Relu", {x}, {}, name);
    } else if (auto g = dynamic_cast<torch::nn::GELUImpl*>(m.get())) {
      x = e.activation(x, g->options.approximate() == "tanh" ? models::Activation::gelu_tanh
                                                             : models::Activation::gelu);
    } else if (dynamic_cast<torch::nn::TanhImpl*>(m.get())) {
      x = e.gb.op("Tanh", {x}, {}, name);
    } else if (auto p = dynamic_cast<torch::nn::MaxPool2dImpl*>(m.get())) {
      const auto& o = p->options;
      const auto k = o.kernel_size(), s = o.stride(), pad = o.padding(), d = o.dilation();
      x = e.gb.op("MaxPool", {x},
                  {ais("kernel_shape", {k->at(0), k->at(1)}), ais("strides", {s->at(0), s->at(1)}),
                   ais("pads", {pad->at(0), pad->at(1), pad->at(0), pad->at(1)}),
                   ais("dilations", {d->at(0), d->at(1)}), ai("ceil_mode", o.ceil_mode() ? 1 : 0)},
                  name);
    } else if (auto f = dynamic_cast<torch::nn::FlattenImpl*>(m.get())) {
      SCULPT_CHECK(f->options.start_dim() == 1 && f->options.end_dim() == -1, "export onnx: ", name,
                   ": only Flatten(1, -1) has an ONNX translation here");
      x = e.gb.op("Flatten", {x}, {ai("axis", 1)}, name);
      *rank = 2;
    } else if (dynamic_cast<torch::nn::DropoutImpl*>(m.get())) {
      continue;  // identity in inference
    } else {
      throw UserError("export onnx: " + name + " (" + m->name() +
                      ") has no ONNX translation: the writer knows Linear, Conv2d, ReLU, GELU, Tanh, "
                      "MaxPool2d, Flatten and Dropout in sequential blocks");
    }
    if (carry) x = e.qdq(x, *carry, name + ".output");
  }
  return x;
}

std::string emit_resnet(Emitter& e, std::string x) {
  auto relu = [&](const std::string& t) { return e.gb.op("Relu", {t}); };
  for (const auto& b : e.model_.block_names()) {
    if (b == "stem") {
      x = relu(e.batchnorm(e.conv(x, "stem.conv"), "stem.bn"));
    } else if (b == "head") {
      x = e.linear(e.gb.op("ReduceMean", {x}, {ais("axes", {2, 3}), ai("keepdims", 0)}), "head.fc", 2);
    } else {
      SCULPT_CHECK(e.has_module(b + ".conv1") && e.has_module(b + ".conv2"), "export onnx: block ", b,
                   " of ", e.model_.name(), " is not a basic block the ONNX writer knows");
      std::string y = relu(e.batchnorm(e.conv(x, b + ".conv1"), b + ".bn1"));
      y = e.batchnorm(e.conv(y, b + ".conv2"), b + ".bn2");
      const std::string sc = e.has_module(b + ".down") ? e.batchnorm(e.conv(x, b + ".down"), b + ".down_bn") : x;
      x = relu(e.gb.op("Add", {y, sc}, {}, b));
    }
  }
  return x;
}

TSpec builtin_spec(const config::Config& cfg) {
  static const models::TransformerOptions defaults;
  const auto& o = cfg.model.options ? dynamic_cast<const models::TransformerOptions&>(*cfg.model.options)
                                    : defaults;
  TSpec s;
  s.head_dim = o.d_model / o.heads;
  return s;
}

TSpec hf_spec(const models::hf::Arch& a) {
  TSpec s;
  s.norm = a.norm;
  s.eps = a.eps;
  s.pre_norm = a.family != "bert";
  s.gated = a.gated;
  s.act = a.act;
  s.scaled = a.family != "t5";
  s.window = a.window;
  s.head_dim = a.head_dim > 0 ? a.head_dim : a.hidden / a.heads;
  s.rotary = a.rotary;
  if (s.rotary.on && s.rotary.dim <= 0) s.rotary.dim = s.head_dim;
  return s;
}

// libsculpt_onnx_writer.so (onnx_writer.h), beside this library, loaded on first use with its
// own protobuf bound to itself first (RTLD_DEEPBIND).
using WriteFn = int64_t (*)(void*, const char*, char*, size_t);
WriteFn onnx_writer() {
  static WriteFn fn = nullptr;
  if (fn) return fn;
  std::vector<std::string> paths;
  Dl_info self{};
  if (dladdr(reinterpret_cast<void*>(&onnx_writer), &self) && self.dli_fname)
    paths.push_back((fs::path(self.dli_fname).parent_path() / "libsculpt_onnx_writer.so").string());
  paths.push_back("libsculpt_onnx_writer.so");
  std::string errors;
  for (const auto& p : paths) {
    if (p.find('/') != std::string::npos && !fs::exists(p)) continue;
    void* h = dlopen(p.c_str(), RTLD_NOW | RTLD_LOCAL | RTLD_DEEPBIND);
    if (!h) {
      errors += std::string(dlerror()) + "; ";
      continue;
    }
    fn = reinterpret_cast<WriteFn>(dlsym(h, "sculpt_onnx_write"));
    if (fn) return fn;
    errors += p + ": no sculpt_onnx_write; ";
  }
  throw UserError("export onnx: cannot load the ONNX writer libsculpt_onnx_writer.so (it needs "
                  "Debian's libonnx1 and libprotobuf32): " + errors);
}

}  // namespace

io::NamedTensors onnx_feeds(const config::Config& cfg, const data::DataSpec& spec, const at::Tensor& input) {
  const Kind k = kind_of(cfg, spec, nullptr);
  auto ids = [](const at::Tensor& t) { return t.clamp_min(0).to(at::kLong).contiguous(); };
  auto mask = [](const at::Tensor& t) { return (t >= 0).to(at::kLong).contiguous(); };
  switch (k) {
    case Kind::dense: return {{"input", input.to(at::kFloat).contiguous()}};
    case Kind::hf_vit: return {{"pixel_values", input.to(at::kFloat).contiguous()}};
    case Kind::tokens: return {{"input_ids", input.to(at::kLong).contiguous()}};
    case Kind::hf_text: return {{"input_ids", ids(input)}, {"attention_mask", mask(input)}};
    case Kind::seq2seq: {
      const int64_t s = spec.source_len;
      return {{"input_ids", input.narrow(1, 0, s).to(at::kLong).contiguous()},
              {"decoder_input_ids", input.narrow(1, s, input.size(1) - s).to(at::kLong).contiguous()}};
    }
    case Kind::hf_t5: {
      const int64_t s = spec.source_len;
      const at::Tensor src = input.narrow(1, 0, s), dec = input.narrow(1, s, input.size(1) - s);
      return {{"input_ids", ids(src)}, {"attention_mask", mask(src)}, {"decoder_input_ids", ids(dec)}};
    }
  }
  return {};
}

OnnxExport write_onnx_export(models::Model& model, const config::Config& cfg, const data::DataSpec& spec,
                             const std::string& quantized_dir, const fs::path& file) {
  torch::NoGradGuard no_grad;
  models::hf::Arch arch;
  const Kind kind = kind_of(cfg, spec, &arch);
  Emitter e(model, read_quantized(quantized_dir));
  auto& gb = e.gb;
  const auto blocks = model.block_names();
  using V = onnxw::Value;
  auto text_in = [&](const char* name, const char* seq) {
    gb.g.inputs.push_back(V{name, onnxw::kInt64, {"batch", seq}});
    return std::string(name);
  };
  std::string out;
  OnnxExport r;
  const std::string mname = model.name();
  std::vector<std::string> out_dims;
  if (kind == Kind::dense) {
    V in{"input", onnxw::kFloat, {"batch"}};
    for (auto d : spec.input_shape) in.dims.push_back(dim(d));
    gb.g.inputs.push_back(in);
    int rank = static_cast<int>(in.dims.size());
    if (mname.rfind("resnet", 0) == 0) {
      out = emit_resnet(e, "input");
    } else if (mname == "lenet5" || mname == "mlp") {
      out = emit_sequential(e, "input", &rank);
    } else if (mname == "transformer_encoder") {
      // image patches
      const std::string p = e.conv("input", "embed.proj");
      std::string h = gb.op("Transpose", {gb.op("Reshape", {p, gb.i64s({0, 0, -1})})}, {ais("perm", {0, 2, 1})});
      h = gb.op("Add", {h, gb.init("embed.positions", e.T("embed.positions"))}, {}, "embed");
      const TSpec s = builtin_spec(cfg);
      for (int64_t i = 0; i < count_blocks(blocks, "layer"); ++i)
        h = e.tlayer("layer" + std::to_string(i) + ".layer", h, s, "", "", "");
      out = e.linear(gb.op("ReduceMean", {e.torch_layer_norm(h, "head.ln")}, {ais("axes", {1}), ai("keepdims", 0)}),
                     "head.fc", 2);
    } else {
      throw UserError("export onnx: the model " + mname + " has no ONNX writer (families: mlp, lenet5, "
                      "resnet, transformer_encoder, transformer_lm, transformer_seq2seq, hf)");
    }
    out_dims = {"batch", dim(spec.num_classes > 0 ? spec.num_classes : 1)};
  } else if (kind == Kind::tokens) {
    const std::string ids = text_in("input_ids", "sequence");
    const bool lm = mname == "transformer_lm";
    SCULPT_CHECK(lm || mname == "transformer_encoder", "export onnx: the model ", mname,
                 " has no ONNX writer for token data");
    const TSpec s = builtin_spec(cfg);
    const std::string len1 = e.shape_dim(ids, 1), len = e.scalar(len1);
    std::string h = gb.op("Add", {e.embedding(ids, "embed.tokens"),
                                  e.slice(gb.init("embed.positions", e.T("embed.positions")), gb.i64s({0}), len1, 0)},
                          {}, "embed");
    std::string valid;
    if (!lm) {  // padding (id 0) is not attended to; the first position always is
      valid = gb.op("Or", {gb.op("Not", {gb.op("Equal", {ids, gb.i64(data::token::pad)})}),
                           gb.op("Equal", {e.range(len), gb.i64(0)})});
    }
    const std::string mask = lm ? e.causal_mask(len, 0) : e.key_mask(valid);
    for (int64_t i = 0; i < count_blocks(blocks, "layer"); ++i)
      h = e.tlayer("layer" + std::to_string(i) + ".layer", h, s, mask, "", len);
    if (lm) {
      out = e.linear(e.torch_layer_norm(h, "head.ln"), "head.fc", 3);
      out_dims = {"batch", "sequence", dim(spec.vocab_size)};
    } else {
      const std::string w = e.unsqueeze(gb.op("Cast", {valid}, {ai("to", onnxw::kFloat)}), {-1});
      const std::string sum = gb.op("ReduceSum", {gb.op("Mul", {e.torch_layer_norm(h, "head.ln"), w}), gb.i64s({1})},
                                    {ai("keepdims", 0)});
      const std::string pooled = gb.op("Div", {sum, gb.op("ReduceSum", {w, gb.i64s({1})}, {ai("keepdims", 0)})});
      out = e.linear(pooled, "head.fc", 2);
      out_dims = {"batch", dim(spec.num_classes)};
    }
  } else if (kind == Kind::seq2seq) {
    const std::string src = gb.g.inputs.emplace_back(V{"input_ids", onnxw::kInt64, {"batch", dim(spec.source_len)}}).name;
    const std::string dec = text_in("decoder_input_ids", "decoder_sequence");
    const TSpec s = builtin_spec(cfg);
    const std::string table = e.embedding_table("embed.tokens");
    std::string hs = gb.op("Add", {gb.op("Gather", {table, src}), gb.init("embed.source_positions", e.T("embed.source_positions"))});
    const std::string dlen1 = e.shape_dim(dec, 1), dlen = e.scalar(dlen1);
    std::string ht = gb.op("Add", {gb.op("Gather", {table, dec}),
                                   e.slice(gb.init("embed.target_positions", e.T("embed.target_positions")), gb.i64s({0}), dlen1, 0)});
    const std::string slen = e.scalar(e.shape_dim(src, 1));
    const std::string valid = gb.op("Or", {gb.op("Not", {gb.op("Equal", {src, gb.i64(data::token::pad)})}),
                                           gb.op("Equal", {e.range(slen), gb.i64(0)})});
    const std::string smask = e.key_mask(valid);
    for (int64_t i = 0; i < count_blocks(blocks, "enc"); ++i)
      hs = e.tlayer("enc" + std::to_string(i) + ".layer", hs, s, smask, "", slen);
    hs = e.torch_layer_norm(hs, "enc_norm.ln");
    const std::string cmask = e.causal_mask(dlen, 0);
    for (int64_t i = 0; i < count_blocks(blocks, "dec"); ++i)
      ht = e.tlayer("dec" + std::to_string(i) + ".layer", ht, s, cmask, "", dlen, hs, smask);
    out = e.linear(e.torch_layer_norm(ht, "head.ln"), "head.fc", 3);
    out_dims = {"batch", "decoder_sequence", dim(spec.vocab_size)};
  } else if (kind == Kind::hf_vit) {
    const std::string px = gb.g.inputs.emplace_back(V{"pixel_values", onnxw::kFloat, {"batch", dim(arch.channels), dim(arch.image_size), dim(arch.image_size)}}).name;
    const TSpec s = hf_spec(arch);
    const std::string p = e.conv(px, "embed.proj");
    std::string h = gb.op("Transpose", {gb.op("Reshape", {p, gb.i64s({0, 0, -1})})}, {ais("perm", {0, 2, 1})});
    const std::string shape = gb.op("Concat", {e.shape_dim(px, 0), gb.i64s({1, arch.hidden})}, {ai("axis", 0)});
    const std::string cls = gb.op("Expand", {gb.init("embed.cls", e.T("embed.cls")), shape});
    h = gb.op("Add", {gb.op("Concat", {cls, h}, {ai("axis", 1)}), gb.init("embed.positions", e.T("embed.positions"))},
              {}, "embed");
    for (int64_t i = 0; i < count_blocks(blocks, "layer"); ++i)
      h = e.tlayer("layer" + std::to_string(i) + ".layer", h, s, "", "", "");
    h = e.norm(h, "head.norm", models::NormKind::layer, arch.eps);
    out = e.linear(gb.op("Gather", {h, gb.i64(0)}, {ai("axis", 1)}), "head.fc", 2);
    out_dims = {"batch", dim(spec.num_classes > 0 ? spec.num_classes : arch.num_labels)};
  } else {  // Hugging Face text: gpt2, llama, bert, t5
    const TSpec s = hf_spec(arch);
    const bool t5 = kind == Kind::hf_t5, bert = arch.family == "bert";
    const std::string ids = text_in("input_ids", "sequence");
    const std::string am = text_in("attention_mask", "sequence");
    std::string valid = gb.op("Cast", {am}, {ai("to", onnxw::kBool)});
    if ((bert || t5) && arch.pad_id >= 0)
      valid = gb.op("And", {valid, gb.op("Not", {gb.op("Equal", {ids, gb.i64(arch.pad_id)})})});
    const std::string len1 = e.shape_dim(ids, 1), len = e.scalar(len1);
    const std::string table = e.embedding_table("embed.tokens");
    std::string h = gb.op("Gather", {table, ids}, {}, "embed.tokens");
    if (e.has("embed.positions")) {
      const std::string pos_table = gb.init("embed.positions", e.T("embed.positions"));
      if (arch.roberta_positions) {
        const std::string v = gb.op("Cast", {valid}, {ai("to", onnxw::kInt64)});
        const std::string pos = gb.op("Add", {gb.op("Mul", {gb.op("CumSum", {v, gb.i64(1)}), v}), gb.i64(arch.pad_id)});
        h = gb.op("Add", {h, gb.op("Gather", {pos_table, pos})});
      } else {
        h = gb.op("Add", {h, e.slice(pos_table, gb.i64s({0}), len1, 0)});
      }
    }
    if (e.has("embed.token_types"))
      h = gb.op("Add", {h, gb.op("Gather", {gb.init("embed.token_types", e.T("embed.token_types")), gb.i64(0)})});
    if (e.has_module("embed.norm")) h = e.norm(h, "embed.norm", models::NormKind::layer, arch.eps);
    const std::string kmask = e.key_mask(valid);
    if (!t5) {
      const std::string mask = bert ? kmask : e.both(kmask, e.causal_mask(len, s.window));
      for (int64_t i = 0; i < count_blocks(blocks, "layer"); ++i)
        h = e.tlayer("layer" + std::to_string(i) + ".layer", h, s, mask, "", len);
    } else {
      const std::string enc_bias = e.relative_bias("enc0.rel", arch.rel_max_distance, len, len);
      for (int64_t i = 0; i < count_blocks(blocks, "enc"); ++i)
        h = e.tlayer("enc" + std::to_string(i) + ".layer", h, s, kmask, enc_bias, len);
      h = e.norm(h, "enc_norm.norm", arch.norm, arch.eps);
      const std::string dec = text_in("decoder_input_ids", "decoder_sequence");
      const std::string dlen = e.scalar(e.shape_dim(dec, 1));
      std::string d = gb.op("Gather", {table, dec}, {}, "decoder.tokens");
      const std::string dec_bias = e.relative_bias("dec0.rel", arch.rel_max_distance, dlen, dlen);
      const std::string cmask = e.causal_mask(dlen, 0);
      for (int64_t i = 0; i < count_blocks(blocks, "dec"); ++i)
        d = e.tlayer("dec" + std::to_string(i) + ".layer", d, s, cmask, dec_bias, dlen, h, kmask);
      h = d;
    }
    // heads
    if (e.has_module("head.fc")) {  // classify (BERT pooler / RoBERTa dense + tanh)
      std::string first = gb.op("Gather", {h, gb.i64(0)}, {ai("axis", 1)});
      if (e.has_module("head.pool")) first = gb.op("Tanh", {e.linear(first, "head.pool", 2)});
      out = e.linear(first, "head.fc", 2);
      out_dims = {"batch", dim(spec.num_classes > 0 ? spec.num_classes : arch.num_labels)};
    } else {
      if (e.has_module("head.transform")) h = e.activation(e.linear(h, "head.transform", 3), arch.act);
      h = e.norm(h, "head.norm", bert ? models::NormKind::layer : arch.norm, arch.eps);
      if (arch.scale_lm_input) h = gb.op("Mul", {h, gb.f32(static_cast<float>(1.0 / std::sqrt(static_cast<double>(arch.hidden))))});
      if (e.has_module("head.lm")) {
        out = e.linear(h, "head.lm", 3);
      } else {  // tied: the token table's (effective) weight
        auto tokens = e.layer<nn::Embedding>("embed.tokens");
        const std::string w = gb.shared("embed.tokens.weight", tokens->raw_weight().detach());
        out = gb.op("MatMul", {h, gb.op("Transpose", {w}, {ais("perm", {1, 0})})}, {}, "head");
      }
      if (e.has("head.bias")) out = gb.op("Add", {out, gb.init("head.bias", e.T("head.bias"))});
      out_dims = {"batch", t5 ? "decoder_sequence" : "sequence", dim(arch.vocab)};
    }
  }
  // The graph output is named `logits`.
  gb.g.nodes.push_back(onnxw::Node{"Identity", "logits/Identity", "", {out}, {"logits"}, {}});
  gb.g.outputs.push_back(V{"logits", onnxw::kFloat, out_dims});
  gb.g.name = mname;
  gb.g.doc = "Sculpt export of " + mname;
  gb.g.metadata["sculpt.model"] = mname;
  gb.g.metadata["sculpt.quantized"] = quantized_dir.empty() ? "false" : "true";

  r.nodes = static_cast<int64_t>(gb.g.nodes.size());
  r.initializers = static_cast<int64_t>(gb.g.initializers.size());
  r.parameters = gb.parameters;
  for (const auto& v : gb.g.inputs) {
    nlohmann::json j = {{"name", v.name},
                        {"dtype", v.dtype == onnxw::kFloat ? "float32" : "int64"},
                        {"shape", nlohmann::json::array()}};
    for (const auto& d : v.dims) {
      if (d.find_first_not_of("0123456789") == std::string::npos) j["shape"].push_back(std::stoll(d));
      else j["shape"].push_back(d);
    }
    r.inputs.push_back(j);
  }
  {
    nlohmann::json j = {{"name", "logits"}, {"dtype", "float32"}, {"shape", nlohmann::json::array()}};
    for (const auto& d : out_dims) {
      if (d.find_first_not_of("0123456789") == std::string::npos) j["shape"].push_back(std::stoll(d));
      else j["shape"].push_back(d);
    }
    r.outputs.push_back(j);
  }
  r.quantized = e.quantized;
  r.float_layers = e.float_layers;
  r.quant_step = quantized_dir.empty() ? 0.0 : e.last_step;
  char error[1024] = {0};
  r.bytes = onnx_writer()(&gb.g, file.string().c_str(), error, sizeof error);
  SCULPT_CHECK(r.bytes >= 0, "export onnx: ", error);
  return r;
}

// ---- verification ----

std::string verify_python() {
  std::vector<std::string> candidates;
  if (const char* p = std::getenv("SCULPT_PYTHON"); p && *p) candidates.push_back(p);
  if (const char* d = std::getenv("SCULPT_DEPS_DIR"); d && *d) candidates.push_back(std::string(d) + "/venv/bin/python");
  if (const char* x = std::getenv("XDG_CACHE_HOME"); x && *x) candidates.push_back(std::string(x) + "/sculpt/venv/bin/python");
  if (const char* h = std::getenv("HOME"); h && *h) candidates.push_back(std::string(h) + "/.cache/sculpt/venv/bin/python");
  for (const auto& c : candidates)
    if (fs::exists(c)) return c;
  return "";
}

namespace {

const char* kCheckScript = R"PY(
import json, sys
try:
    import numpy as np
    import onnx
    import onnxruntime as ort
    from safetensors.numpy import load_file
except ImportError as e:
    print(json.dumps({"missing": str(e)}))
    sys.exit(3)
model, data, names = sys.argv[1], sys.argv[2], sys.argv[3].split(",")
onnx.checker.check_model(model, full_check=True)
d = load_file(data)
so = ort.SessionOptions()
so.intra_op_num_threads = 2
sess = ort.InferenceSession(model, so, providers=["CPUExecutionProvider"])
out = sess.run(["logits"], {n: d["in." + n] for n in names})[0]
ref = d["expected"]
if out.shape != ref.shape:
    print(json.dumps({"error": "shape %s, Sculpt's %s" % (list(out.shape), list(ref.shape))}))
    sys.exit(4)
agree = float((out.argmax(-1) == ref.argmax(-1)).mean())
print(json.dumps({"checker": "ok", "onnxruntime": ort.__version__, "onnx": onnx.__version__,
                  "max_abs_diff": float(np.abs(out - ref).max()), "argmax_agreement": agree,
                  "rows": int(out.shape[0])}))
)PY";

std::string quote(const std::string& s) {
  std::string q = "'";
  for (char c : s) q += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return q + "'";
}

}  // namespace

nlohmann::json run_onnx_check(const fs::path& model, const io::NamedTensors& feeds, const at::Tensor& expected,
                              const fs::path& scratch) {
  const std::string py = verify_python();
  SCULPT_CHECK(!py.empty(), "export onnx: the verification needs Python with onnx and onnxruntime and "
               "none was found (set SCULPT_PYTHON, or run scripts/setup.sh for the venv); --no-verify "
               "skips the check");
  fs::create_directories(scratch);
  const fs::path script = scratch / "check_onnx.py", data = scratch / "check.safetensors";
  io::write_file_atomic(script.string(), kCheckScript);
  io::NamedTensors d;
  std::string names;
  for (const auto& [n, t] : feeds) {
    d.emplace_back("in." + n, t.contiguous());
    names += (names.empty() ? "" : ",") + n;
  }
  d.emplace_back("expected", expected.to(at::kFloat).contiguous());
  io::save_safetensors(data.string(), d);
  const std::string cmd = quote(py) + " " + quote(script.string()) + " " + quote(model.string()) + " " +
                          quote(data.string()) + " " + quote(names) + " 2>&1";
  std::string output;
  int status = -1;
  if (FILE* p = popen(cmd.c_str(), "r")) {
    char buf[4096];
    size_t n;
    while ((n = fread(buf, 1, sizeof buf, p)) > 0) output.append(buf, n);
    status = pclose(p);
  }
  const int code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  nlohmann::json result;
  const auto last = output.find_last_of('{');
  if (last != std::string::npos) result = nlohmann::json::parse(output.substr(last), nullptr, false);
  if (code == 3)
    throw UserError("export onnx: the verification needs onnx and onnxruntime in " + py + " (" +
                    (result.is_object() ? result.value("missing", std::string()) : output) +
                    "); pip install onnx onnxruntime, or --no-verify skips the check");
  if (code != 0 || !result.is_object() || !result.contains("max_abs_diff"))
    throw std::runtime_error("export onnx: verification failed: onnx.checker or ONNX Runtime (" + py +
                             ") rejected the model:\n" + output);
  result["python"] = py;
  return result;
}

}  // namespace sculpt::compression
