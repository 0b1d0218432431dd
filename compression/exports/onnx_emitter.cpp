// The Emitter of onnx_emitter.h: the model's layers as ONNX nodes, quantized layers as QDQ from
// <run>/quantized.
#include "compression/exports/onnx_emitter.h"

#include <cmath>
#include <limits>

#include "compression/export_dir.h"
#include "compression/exports/quantized_grid.h"

namespace sculpt::compression::onnx_graph {

const at::Tensor& QLayer::weight() const {
  if (!weight_.defined()) weight_ = quant::dequantize(grid, quant::QParams{w, w_scale, w_zp}, grid.sizes());
  return weight_;
}

std::map<std::string, QLayer> read_quantized(const std::string& dir) {
  std::map<std::string, QLayer> out;
  if (dir.empty()) return out;
  ExportReader r(dir, "sculpt-quantized", "a quantize pass writes <run>/quantized when training ends");
  for (const auto& [name, j] : r.manifest().at("layers").items()) {
    const std::string where = r.manifest_path() + ": layer " + name;
    QLayer q;
    q.w = quantized_spec(j.at("weight"), where);
    q.w_scale = r.take(name + ".w_scale").to(at::kFloat);
    q.w_zp = q.w.symmetric ? at::zeros_like(q.w_scale) : r.take(name + ".w_zero_point").to(at::kFloat);
    q.grid = read_grid(r, name, j, quant::QParams{q.w, q.w_scale, q.w_zp});
    if (r.has(name + ".bias_q")) q.bias = r.take(name + ".bias_q").to(at::kFloat);
    if (!j.at("act").is_null()) {
      const quant::QSpec a = quantized_spec(j.at("act"), where);
      QAct qa;
      qa.scale = r.take(name + ".a_scale").to(at::kFloat).flatten()[0].item<float>();
      qa.zp = r.take(name + ".a_zero_point").to(at::kLong).flatten()[0].item<int64_t>();
      qa.qmin = a.qmin(), qa.qmax = a.qmax(), qa.bits = a.bits;
      q.act = qa;
    }
    q.folded_norm = j.value("folded_norm", "");
    out[name] = std::move(q);
  }
  return out;
}

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

at::Tensor Emitter::T(const std::string& n) const {
  auto it = tensors_.find(n);
  SCULPT_CHECK(it != tensors_.end(), "export onnx: the model has no tensor ", n);
  return it->second.detach();
}

std::shared_ptr<torch::nn::Module> Emitter::M(const std::string& n) const {
  auto it = mods_.find(n);
  SCULPT_CHECK(it != mods_.end(), "export onnx: the model has no module ", n);
  return it->second;
}

std::string Emitter::qdq(const std::string& x, const QAct& a, const std::string& hint) {
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

std::string Emitter::activation(const std::string& x, models::Activation a) {
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

std::string Emitter::norm(const std::string& x, const std::string& prefix, models::NormKind kind, double eps) {
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

const QLayer* Emitter::quant_of(const std::string& name) {
  auto it = q_.find(name);
  return it == q_.end() ? nullptr : &it->second;
}

at::Tensor Emitter::weight_of(const std::string& name) {
  if (const QLayer* q = quant_of(name)) return q->weight();
  return layer<nn::Compressible>(name)->raw_weight().detach();
}

std::string Emitter::dq_weight(const std::string& name, const QLayer& q, bool transpose, int64_t* axis_out,
                               const at::Tensor& columns) {
  if (q.w.granularity == quant::Granularity::per_group) {
    float_layers.push_back(name + ": per-group weights (opset 17's DequantizeLinear has no "
                           "blocks): its dequantized values in float");
    return "";
  }
  const bool u = q.w.qmin() >= 0;
  at::Tensor stored = q.grid.to(u ? at::kByte : at::kChar);
  if (columns.defined()) stored = stored.index_select(1, columns);  // scales are per row
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

std::string Emitter::bias_of(const std::string& name, const at::Tensor& b, const QLayer* q, int64_t w_axis,
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

std::string Emitter::linear(std::string x, const std::string& name, int rank) {
  auto l = layer<nn::Linear>(name);
  const QLayer* q = quant_of(name);
  at::Tensor b = q && q->bias.defined() ? q->bias : (l->bias().defined() ? l->bias().detach() : at::Tensor());
  if (q && q->act && !skip_input_qdq) x = qdq(x, *q->act, name + ".input");
  skip_input_qdq = false;
  const at::Tensor columns = std::move(linear_input_order);  // its input's features reordered
  linear_input_order = at::Tensor();
  int64_t axis = -1;
  std::string wn = q ? dq_weight(name, *q, rank != 2, &axis, columns) : "";
  const bool int_weight = !wn.empty();
  note_step(q);
  at::Tensor w;  // the float weight, where it goes out float
  if (!int_weight) {
    w = q ? q->weight() : l->raw_weight().detach();
    if (columns.defined()) w = w.index_select(1, columns);
  }
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

std::string Emitter::conv(std::string x, const std::string& name) {
  auto c = layer<nn::Conv2d>(name);
  const QLayer* q = quant_of(name);
  at::Tensor b = q && q->bias.defined() ? q->bias : (c->bias().defined() ? c->bias().detach() : at::Tensor());
  if (q && q->act && !skip_input_qdq) x = qdq(x, *q->act, name + ".input");
  skip_input_qdq = false;
  int64_t axis = -1;
  std::string wn = q ? dq_weight(name, *q, false, &axis) : "";
  const bool int_weight = !wn.empty();
  note_step(q);
  if (wn.empty()) wn = gb.init(name + ".weight", q ? q->weight() : c->raw_weight().detach());
  Strs in = {x, wn};
  const std::string bn = bias_of(name, b, q, axis, int_weight);
  if (!bn.empty()) in.push_back(bn);
  const int64_t k = c->kernel_size, s = c->stride, p = c->padding;
  return gb.op("Conv", in,
               {ais("kernel_shape", {k, k}), ais("strides", {s, s}), ais("pads", {p, p, p, p}),
                ai("group", c->groups), ais("dilations", {1, 1})},
               name);
}

std::string Emitter::embedding_table(const std::string& name) {
  auto e = layer<nn::Embedding>(name);
  const QLayer* q = quant_of(name);
  if (q) {
    int64_t axis = -1;
    const std::string t = dq_weight(name, *q, false, &axis);
    if (!t.empty()) return t;
  }
  return gb.shared(name + ".weight", weight_of(name));
}

std::string Emitter::batchnorm(const std::string& x, const std::string& name) {
  if (folded_.count(name)) return x;  // folded into the conv before it (the integer model)
  auto bn = layer<torch::nn::BatchNorm2dImpl>(name);
  return gb.op("BatchNormalization",
               {x, gb.init(name + ".weight", bn->weight), gb.init(name + ".bias", bn->bias),
                gb.init(name + ".running_mean", bn->running_mean, false),
                gb.init(name + ".running_var", bn->running_var, false)},
               {af("epsilon", static_cast<float>(bn->options.eps()))}, name);
}

std::string Emitter::causal_mask(const std::string& len, int64_t window) {  // len: [] int64
  const std::string r = range(len);
  const std::string row = unsqueeze(r, {1}), col = unsqueeze(r, {0});
  std::string tri = gb.op("LessOrEqual", {col, row});
  if (window > 0)
    tri = gb.op("And", {tri, gb.op("Greater", {col, gb.op("Sub", {row, gb.i64(window)})})});
  return unsqueeze(tri, {0, 1});
}

std::string Emitter::both(const std::string& a, const std::string& b) {
  if (a.empty()) return b;
  if (b.empty()) return a;
  return gb.op("And", {a, b});
}

std::string Emitter::relative_bias(const std::string& rel_module, int64_t max_distance, const std::string& lq,
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

Emitter::Rope Emitter::rope(const std::string& len, const TSpec& s) {
  auto key = len;
  auto it = rope_.find(key);
  if (it != rope_.end()) return it->second;
  const auto& r = s.rotary;
  const int64_t dim = r.dim > 0 ? r.dim : s.head_dim;
  const at::Tensor inv = models::rotary_inv_freq(r, dim);
  const std::string pos = gb.op("Cast", {range(len)}, {ai("to", onnxw::kFloat)});
  const std::string freqs =
      gb.op("Mul", {unsqueeze(pos, {1}), unsqueeze(gb.init("rotary.inv_freq", inv, false), {0})});
  const std::string emb = gb.op("Concat", {freqs, freqs}, {ai("axis", -1)});
  Rope out{gb.op("Cos", {emb}, {}, "rotary.cos"), gb.op("Sin", {emb}, {}, "rotary.sin")};
  rope_[key] = out;
  return out;
}

std::string Emitter::rotate(const std::string& t, const Rope& rp, const TSpec& s) {
  const int64_t hd = s.head_dim, dim = s.rotary.dim > 0 ? s.rotary.dim : hd, half = dim / 2;
  const std::string r = dim == hd ? t : slice_c(t, 0, dim, 3);
  const std::string rot = gb.op(
      "Concat", {gb.op("Neg", {slice_c(r, half, dim, 3)}), slice_c(r, 0, half, 3)}, {ai("axis", -1)});
  const std::string out = gb.op("Add", {gb.op("Mul", {r, rp.cos}), gb.op("Mul", {rot, rp.sin})});
  return dim == hd ? out : gb.op("Concat", {out, slice_c(t, dim, hd, 3)}, {ai("axis", -1)});
}

std::string Emitter::attention(const std::string& p, const std::string& x, const std::string& mem,
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

std::string Emitter::feed_forward(const std::string& p, const std::string& x, const TSpec& s) {
  if (s.gated)
    return linear(gb.op("Mul", {activation(linear(x, p + ".gate", 3), s.act), linear(x, p + ".fc1", 3)}),
                  p + ".fc2", 3);
  return linear(activation(linear(x, p + ".fc1", 3), s.act), p + ".fc2", 3);
}

std::string Emitter::tlayer(const std::string& p, std::string h, const TSpec& s, const std::string& self_mask,
                   const std::string& self_bias, const std::string& len, const std::string& mem,
                   const std::string& mem_mask) {
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

std::string Emitter::torch_layer_norm(const std::string& x, const std::string& name) {
  auto ln = layer<torch::nn::LayerNormImpl>(name);
  return norm(x, name, models::NormKind::layer, ln->options.eps());
}

}  // namespace sculpt::compression::onnx_graph
