#include "compression/passes/quantize/int8_model.h"

#include <torch/nn/modules/batchnorm.h>
#include <torch/torch.h>

#include <filesystem>
#include <map>
#include <set>

#include "compression/export_dir.h"
#include "compression/passes/prune/prune_core.h"
#include "core/error.h"
#include "core/io/atomic_file.h"
#include "core/io/safetensors.h"
#include "core/logging/logging.h"

namespace sculpt::quant {

namespace fs = std::filesystem;

namespace {

constexpr const char* kFormat = "sculpt-quantized";

Granularity granularity_of(const std::string& g) {
  Granularity out{};
  if (!config::parse_spelling(kGranularities, g, out))
    throw UserError("quantized manifest: unknown granularity '" + g + "'");
  return out;
}

const char* granularity_name(Granularity g) { return config::spelling(kGranularities, g); }

nlohmann::json spec_json(const QSpec& s) {
  return {{"bits", s.bits},           {"symmetric", s.symmetric},
          {"signed", s.is_signed},    {"granularity", granularity_name(s.granularity)},
          {"axis", s.axis},           {"group_size", s.group_size}};
}

QSpec spec_from(const nlohmann::json& j) {
  QSpec s;
  s.bits = j.at("bits").get<int>();
  s.symmetric = j.at("symmetric").get<bool>();
  s.is_signed = j.at("signed").get<bool>();
  s.granularity = granularity_of(j.at("granularity").get<std::string>());
  s.axis = j.at("axis").get<int64_t>();
  s.group_size = j.at("group_size").get<int64_t>();
  return s;
}

// Grid values as stored: int8 (unsigned grids shifted by -128 so they fit), or for bits <= 4
// two values per byte (low nibble first) after the same shift to 0..15.
int64_t storage_offset(const QSpec& s) { return s.qmin() < 0 ? 0 : (s.bits == 8 ? 128 : 0); }

at::Tensor pack_int4(const at::Tensor& q, const QSpec& s) {
  // q in [qmin, qmax] with qmax - qmin <= 15: store q - qmin.
  at::Tensor u = (q.flatten() - s.qmin()).to(at::kByte);
  if (u.numel() % 2) u = at::cat({u, at::zeros({1}, u.options())});
  u = u.reshape({-1, 2});
  return u.select(1, 0).bitwise_or(u.select(1, 1).bitwise_left_shift(4));
}

at::Tensor unpack_int4(const at::Tensor& packed, const QSpec& s, at::IntArrayRef shape) {
  int64_t n = 1;
  for (auto d : shape) n *= d;
  const at::Tensor lo = packed.bitwise_and(15), hi = packed.bitwise_right_shift(4);
  return at::stack({lo, hi}, 1).flatten().slice(0, 0, n).to(at::kInt).add(s.qmin()).reshape(shape);
}

// int8 GEMM of quantized rows x [M, K] (float) against a stored weight, with zero points.
class Int8Gemm {
 public:
  Int8Gemm(const at::Tensor& q_weight /*[N, K] int32 grid*/, const QParams& w, const QParams& a) {
    SCULPT_CHECK(q_weight.dim() == 2, "Int8Gemm: weight must be [N, K]");
    w_off_ = storage_offset(w.spec);
    a_off_ = storage_offset(a.spec);
    a_qmin_ = a.spec.qmin();
    a_qmax_ = a.spec.qmax();
    wt_ = (q_weight - w_off_).to(at::kChar).t().contiguous();  // [K, N]
    w_zp_ = (w.zero_point.flatten() - static_cast<double>(w_off_)).to(at::kInt);  // [N] or [1]
    colsum_ = wt_.to(at::kInt).sum(0);                                          // [N]
    a_scale_ = a.scale.flatten().to(at::kFloat);
    a_inv_ = at::reciprocal(a_scale_);
    a_zp_ = a.zero_point.flatten().to(at::kFloat);
    out_scale_ = (a_scale_ * w.scale.flatten().to(at::kFloat));  // [N] or [1]
    k_ = wt_.size(0);
    w_asym_ = w_zp_.ne(0).any().item<bool>();
  }
  // x: [M, K] float -> [M, N] float (before bias).
  at::Tensor run(const at::Tensor& x) const {
    // The grid value exactly as fake_quantize computes it, then the storage shift.
    at::Tensor q = at::round(x * a_inv_).add_(a_zp_).clamp_(a_qmin_, a_qmax_);
    const at::Tensor xq = q.sub_(static_cast<double>(a_off_)).to(at::kChar);
    at::Tensor acc = at::_int_mm(xq, wt_);  // [M, N] int32
    // sum_k (x - zx)(w - zw) = acc - zx * colsum(w) - zw * rowsum(x) + K zx zw
    const at::Tensor zx = (a_zp_ - static_cast<double>(a_off_)).to(at::kInt);
    acc = acc - zx * colsum_;
    if (w_asym_) {
      const at::Tensor rowsum = xq.to(at::kInt).sum(1, true);
      acc = acc - rowsum * w_zp_ + zx * w_zp_ * k_;
    }
    return acc.to(at::kFloat) * out_scale_;
  }

 private:
  int64_t w_off_ = 0, a_off_ = 0, a_qmin_ = 0, a_qmax_ = 0, k_ = 0;
  bool w_asym_ = false;
  at::Tensor wt_, w_zp_, colsum_, a_scale_, a_inv_, a_zp_, out_scale_;
};

class Int8LinearRuntime final : public nn::LayerRuntime {
 public:
  Int8LinearRuntime(const at::Tensor& q, const QParams& w, const QParams& a, at::Tensor bias)
      : gemm_(q, w, a), bias_(std::move(bias)), out_(q.size(0)) {}
  at::Tensor forward(const at::Tensor& x) override {
    auto shape = x.sizes().vec();
    at::Tensor y = gemm_.run(x.reshape({-1, x.size(-1)}).to(at::kFloat));
    if (bias_.defined()) y += bias_;
    shape.back() = out_;
    return y.reshape(shape);
  }
  std::string describe() const override { return "int8 GEMM (at::_int_mm)"; }

 private:
  Int8Gemm gemm_;
  at::Tensor bias_;
  int64_t out_;
};

class Int8ConvRuntime final : public nn::LayerRuntime {
 public:
  Int8ConvRuntime(const nn::Conv2d& conv, const at::Tensor& q, const QParams& w, const QParams& a,
                  at::Tensor bias)
      : gemm_(q.reshape({q.size(0), -1}), w, a),
        bias_(std::move(bias)),
        out_(q.size(0)),
        k_(conv.kernel_size),
        s_(conv.stride),
        p_(conv.padding) {}
  at::Tensor forward(const at::Tensor& x) override {
    const int64_t b = x.size(0), h = x.size(2), w = x.size(3);
    const int64_t ho = (h + 2 * p_ - k_) / s_ + 1, wo = (w + 2 * p_ - k_) / s_ + 1;
    const at::Tensor cols = at::im2col(x.to(at::kFloat), {k_, k_}, {1, 1}, {p_, p_}, {s_, s_});
    at::Tensor y = gemm_.run(cols.transpose(1, 2).reshape({b * ho * wo, cols.size(1)}));
    if (bias_.defined()) y += bias_;
    return y.reshape({b, ho, wo, out_}).permute({0, 3, 1, 2}).contiguous();
  }
  std::string describe() const override { return "int8 conv (im2col + at::_int_mm)"; }

 private:
  Int8Gemm gemm_;
  at::Tensor bias_;
  int64_t out_, k_, s_, p_;
};

// Rows of an int8 table, dequantized as they are gathered: out[i] = (q[idx[i]] - z) * s with the
// row's (per-channel) or the table's scale and zero point, in one pass over the output. The same
// float operations as dequantize() in the same order, so the rows equal the exported table's
// bit for bit. One loop instead of index_select, a conversion and six scale/zero-point ops,
// whose dispatch was the cost at batch 1: 10 rows of 64 (a beam-10 decode step) in 1.6 us
// instead of 10 us, 160 rows in 9 us instead of 15 us (one core).
class Int8EmbeddingRuntime final : public nn::LayerRuntime {
 public:
  Int8EmbeddingRuntime(const at::Tensor& q, const QParams& w)
      : off_(storage_offset(w.spec)),
        q_((q - off_).to(at::kChar).contiguous()),
        scale_(w.scale.flatten().to(at::kFloat).contiguous()),
        zp_((w.zero_point.flatten().to(at::kFloat) - static_cast<double>(off_)).contiguous()) {
    SCULPT_ASSERT(scale_.numel() == 1 || scale_.numel() == q_.size(0),
                  "int8 embedding: one scale or one per row");
  }
  at::Tensor forward(const at::Tensor& idx) override {
    const at::Tensor flat = idx.flatten().to(at::kLong).contiguous();
    const int64_t n = flat.numel(), rows = q_.size(0), d = q_.size(1);
    at::Tensor out = at::empty({n, d}, q_.options().dtype(at::kFloat));
    const int64_t* ix = flat.const_data_ptr<int64_t>();
    const int8_t* q = q_.const_data_ptr<int8_t>();
    const float* scale = scale_.const_data_ptr<float>();
    const float* zp = zp_.const_data_ptr<float>();
    const bool per_row = scale_.numel() > 1;
    float* o = out.data_ptr<float>();
    for (int64_t i = 0; i < n; ++i) {
      const int64_t r = ix[i];
      SCULPT_CHECK(r >= 0 && r < rows, "embedding: index ", r, " is out of range for ", rows,
                   " rows");
      const float s = scale[per_row ? r : 0], z = zp[per_row ? r : 0];
      const int8_t* src = q + r * d;
      float* dst = o + i * d;
      for (int64_t j = 0; j < d; ++j) dst[j] = (static_cast<float>(src[j]) - z) * s;
    }
    auto shape = idx.sizes().vec();
    shape.push_back(d);
    return out.view(shape);
  }
  std::string describe() const override { return "int8 embedding rows"; }

 private:
  // Grid values as stored: an unsigned 8-bit grid (0..255) shifted by -128, its zero point too.
  int64_t off_;
  at::Tensor q_, scale_, zp_;
};

// Dequantized once at load: the float path with the exported weight.
class DequantRuntime final : public nn::LayerRuntime {
 public:
  DequantRuntime(std::function<at::Tensor(const at::Tensor&, const at::Tensor&)> f, at::Tensor w,
                 std::string why)
      : f_(std::move(f)), w_(std::move(w)), why_(std::move(why)) {}
  at::Tensor forward(const at::Tensor& x) override { return f_(x, w_); }
  std::string describe() const override { return "float after dequantize-on-load (" + why_ + ")"; }

 private:
  std::function<at::Tensor(const at::Tensor&, const at::Tensor&)> f_;
  at::Tensor w_;
  std::string why_;
};

// A quantized layer's kind and its weights' packing, as the manifest spells them.
enum class LayerKind { linear, conv2d, embedding, unknown };
const config::Spellings<LayerKind> kLayerKinds = {{LayerKind::linear, "linear"},
                                                  {LayerKind::conv2d, "conv2d"},
                                                  {LayerKind::embedding, "embedding"},
                                                  {LayerKind::unknown, "unknown"}};
enum class Packing { int8, int4 };
const config::Spellings<Packing> kPackings = {{Packing::int8, "int8"}, {Packing::int4, "int4"}};

LayerKind kind_of(const nn::Compressible& l) {
  if (dynamic_cast<const nn::Linear*>(&l)) return LayerKind::linear;
  if (dynamic_cast<const nn::Conv2d*>(&l)) return LayerKind::conv2d;
  if (dynamic_cast<const nn::Embedding*>(&l)) return LayerKind::embedding;
  return LayerKind::unknown;
}

// The manifest's spelling of one of `table`'s values under `key` (`fallback` when absent).
template <class E>
E manifest_value(const nlohmann::json& j, const char* key, const config::Spellings<E>& table,
                 const char* fallback, const std::string& where) {
  const std::string text = j.value(key, std::string(fallback));
  E out{};
  SCULPT_CHECK(config::parse_spelling(table, text, out), where, ": unknown ", key, " '", text,
               "'");
  return out;
}

std::map<std::string, std::shared_ptr<torch::nn::Module>> modules_by_name(models::Model& model) {
  std::map<std::string, std::shared_ptr<torch::nn::Module>> out;
  for (const auto& item : model.named_modules("", false)) out[item.key()] = item.value();
  return out;
}

}  // namespace

std::pair<at::Tensor, at::Tensor> fold_batchnorm(const at::Tensor& w, const at::Tensor& b,
                                                 const torch::nn::BatchNorm2dImpl& bn) {
  at::NoGradGuard no_grad;
  const at::Tensor f = bn.weight / at::sqrt(bn.running_var + bn.options.eps());
  std::vector<int64_t> shape(w.dim(), 1);
  shape[0] = -1;
  const at::Tensor b0 = b.defined() ? b : at::zeros_like(bn.running_mean);
  return {w * f.reshape(shape), bn.bias + (b0 - bn.running_mean) * f};
}

int64_t fp32_bytes(models::Model& model) {
  int64_t bytes = 0;
  for (const auto& [name, t] : model.state_tensors())
    if (t.is_floating_point()) bytes += t.numel() * 4;
  return bytes;
}

nlohmann::json export_quantized(models::Model& model, const std::vector<ExportLayer>& layers,
                                const std::string& dir) {
  at::NoGradGuard no_grad;
  io::NamedTensors out;
  nlohmann::json manifest = {{"format", kFormat}, {"version", 1}};
  std::set<std::string> skip;  // model tensors the quantized layers replace
  for (const auto& l : layers) {
    skip.insert(l.name + ".weight");
    skip.insert(l.name + ".bias");
    if (!l.folded_norm.empty())
      for (const char* t : {"weight", "bias", "running_mean", "running_var", "num_batches_tracked"})
        skip.insert(l.folded_norm + "." + t);
    const at::Tensor q = quantize_to_int(l.folded_weight, l.weight).cpu();
    nlohmann::json j = {{"kind", config::spelling(kLayerKinds, kind_of(*l.layer))},
                        {"weight", spec_json(l.weight.spec)},
                        {"shape", l.folded_weight.sizes().vec()},
                        {"folded_norm", l.folded_norm},
                        {"act", l.act.defined() ? spec_json(l.act.spec) : nlohmann::json()}};
    // A pruned weight: a bitmask of the entries off the grid's zero and only those values, when
    // that is smaller than every value.
    const bool int4 = l.weight.spec.bits <= 4;
    const auto stored = [&](int64_t k) { return int4 ? (k + 1) / 2 : k; };
    const at::Tensor off_zero =
        q.ne(quantize_to_int(at::zeros_like(l.folded_weight), l.weight).cpu());
    const int64_t n = q.numel(), nnz = off_zero.sum().item<int64_t>();
    at::Tensor values = q;
    if ((n + 7) / 8 + stored(nnz) < stored(n)) {
      values = q.flatten().masked_select(off_zero.flatten());
      out.emplace_back(l.name + ".qweight_mask", compression::prune::pack_bits(off_zero));
      j["sparse"] = {{"format", "bitmask"}, {"nnz", nnz}};
    }
    if (int4) {
      out.emplace_back(l.name + ".qweight_packed", pack_int4(values, l.weight.spec));
      j["packed"] = config::spelling(kPackings, Packing::int4);
    } else {
      out.emplace_back(l.name + ".qweight", (values - storage_offset(l.weight.spec)).to(at::kChar));
      j["packed"] = config::spelling(kPackings, Packing::int8);
    }
    out.emplace_back(l.name + ".w_scale", l.weight.scale.to(at::kFloat).cpu().contiguous());
    // Symmetric grids have zero points 0 by definition: not stored.
    if (!l.weight.spec.symmetric)
      out.emplace_back(l.name + ".w_zero_point", l.weight.zero_point.to(at::kInt).cpu().contiguous());
    if (l.bias.defined()) out.emplace_back(l.name + ".bias_q", l.bias.to(at::kFloat).cpu().contiguous());
    if (l.act.defined()) {
      out.emplace_back(l.name + ".a_scale", l.act.scale.to(at::kFloat).cpu().reshape({1}));
      out.emplace_back(l.name + ".a_zero_point", l.act.zero_point.to(at::kInt).cpu().reshape({1}));
    }
    manifest["layers"][l.name] = j;
  }
  for (const auto& [name, t] : model.state_tensors()) {
    if (skip.count(name)) continue;
    out.emplace_back(name, t.detach().cpu().contiguous());
  }
  manifest["fp32_bytes"] = fp32_bytes(model);

  compression::write_export(dir, out, manifest, kFormat);
  return manifest;
}

nlohmann::json load_quantized(models::Model& model, const std::string& dir) {
  at::NoGradGuard no_grad;
  compression::ExportReader reader(dir, kFormat, "a quantize pass writes <run>/quantized when training ends");
  const nlohmann::json& manifest = reader.manifest();
  const std::string mpath = reader.manifest_path(), tpath = reader.tensors_path();
  auto& file = reader.rest();
  auto take = [&](const std::string& n) { return reader.take(n); };
  auto mods = modules_by_name(model);
  std::set<std::string> replaced;
  const auto device = model.parameters().empty() ? c10::Device(c10::kCPU)
                                                  : model.parameters().front().device();
  SCULPT_CHECK(device.is_cpu(), "quantized models run on the CPU (the int8 CUDA kernels come with "
                                "the kernels issue)");
  for (const auto& [name, j] : manifest.at("layers").items()) {
    auto it = mods.find(name);
    SCULPT_CHECK(it != mods.end(), mpath, ": layer '", name, "' is not in the model");
    auto layer = std::dynamic_pointer_cast<nn::Compressible>(it->second);
    SCULPT_CHECK(layer, mpath, ": '", name, "' is not a compressible layer");
    const auto shape = j.at("shape").get<std::vector<int64_t>>();
    SCULPT_CHECK(at::IntArrayRef(shape) == layer->raw_weight().sizes(), mpath, ": layer ",
                 name, " has shape ", at::IntArrayRef(shape), " but the model's is ",
                 layer->raw_weight().sizes());
    QParams w;
    w.spec = spec_from(j.at("weight"));
    w.scale = take(name + ".w_scale").to(at::kFloat);
    w.zero_point = w.spec.symmetric ? at::zeros_like(w.scale)
                                    : take(name + ".w_zero_point").to(at::kFloat);
    int64_t n = 1;
    for (auto d : shape) n *= d;
    const bool sparse = j.contains("sparse");
    const int64_t count = sparse ? j.at("sparse").at("nnz").get<int64_t>() : n;
    const std::string where = mpath + ": layer " + name;
    at::Tensor values = manifest_value(j, "packed", kPackings, "int8", where) == Packing::int4
                            ? unpack_int4(take(name + ".qweight_packed"), w.spec, {count})
                            : take(name + ".qweight").to(at::kInt) + storage_offset(w.spec);
    SCULPT_CHECK(values.numel() == count, tpath, ": layer ", name, " stores ",
                 values.numel(), " weight values, its manifest says ", count);
    at::Tensor q = sparse ? at::Tensor() : values.reshape(shape);
    if (sparse) {  // the grid's zero everywhere, then the stored values where the mask says
      const auto mask = compression::prune::unpack_bits(take(name + ".qweight_mask"), {n});
      SCULPT_CHECK(mask.sum().item<int64_t>() == count, tpath, ": layer ", name,
                   ": its bitmask marks ", mask.sum().item<int64_t>(), " weights, its manifest ",
                   count);
      q = quantize_to_int(at::zeros(shape, at::kFloat), w).to(at::kInt).flatten();
      q.masked_scatter_(mask, values.to(at::kInt));
      q = q.reshape(shape);
      log::info("quantized ", name, ": stored as a bitmask and ", count, " of ", n,
                " values; it runs dense");
    }
    {  // what reads the raw weight besides the layer (a tied LM head reads the token table's)
       // sees the exported values too
      torch::NoGradGuard no_grad;
      const at::Tensor& raw = layer->raw_weight();
      if (raw.defined() && raw.sizes() == at::IntArrayRef(shape))
        raw.copy_(dequantize(q, w, shape));
    }
    at::Tensor bias = file.count(name + ".bias_q") ? take(name + ".bias_q") : at::Tensor();
    QParams a;
    if (!j.at("act").is_null()) {
      a.spec = spec_from(j.at("act"));
      a.scale = take(name + ".a_scale").to(at::kFloat).reshape({});
      a.zero_point = take(name + ".a_zero_point").to(at::kFloat).reshape({});
    }
    const LayerKind kind = manifest_value(j, "kind", kLayerKinds, "unknown", where);
    const bool int_weight = w.spec.granularity == Granularity::per_tensor ||
                            (w.spec.granularity == Granularity::per_channel && w.spec.axis == 0);
    std::shared_ptr<nn::LayerRuntime> rt;
    std::string why;
    if (kind == LayerKind::embedding) {
      if (int_weight) rt = std::make_shared<Int8EmbeddingRuntime>(q, w);
      else why = "per-group embedding rows";
    } else if (!a.defined()) {
      why = "weight-only quantization: the input stays float";
    } else if (!int_weight) {
      why = "per-group weights";
    } else if (kind == LayerKind::linear) {
      rt = std::make_shared<Int8LinearRuntime>(q, w, a, bias);
    } else if (kind == LayerKind::conv2d) {
      auto conv = std::dynamic_pointer_cast<nn::Conv2d>(layer);
      if (conv->groups == 1) rt = std::make_shared<Int8ConvRuntime>(*conv, q, w, a, bias);
      else why = "grouped convolution";
    }
    if (!rt) {
      const at::Tensor wf = dequantize(q, w, shape);
      std::function<at::Tensor(const at::Tensor&, const at::Tensor&)> f;
      if (kind == LayerKind::linear) {
        f = [bias, a](const at::Tensor& x, const at::Tensor& wt) {
          return at::linear(a.defined() ? fake_quantize(x, a) : x, wt, bias);
        };
      } else if (kind == LayerKind::conv2d) {
        auto conv = std::dynamic_pointer_cast<nn::Conv2d>(layer);
        const int64_t s = conv->stride, p = conv->padding, g = conv->groups;
        f = [bias, a, s, p, g](const at::Tensor& x, const at::Tensor& wt) {
          return at::conv2d(a.defined() ? fake_quantize(x, a) : x, wt, bias, {s, s}, {p, p}, {1, 1},
                            g);
        };
      } else {
        f = [](const at::Tensor& x, const at::Tensor& wt) { return at::embedding(wt, x); };
      }
      rt = std::make_shared<DequantRuntime>(f, wf, why);
      log::warn("quantized ", name, ": ", rt->describe());
    }
    layer->clear_transforms();
    layer->set_runtime(rt);
    replaced.insert(name + ".weight");
    replaced.insert(name + ".bias");
    const std::string norm = j.value("folded_norm", "");
    if (!norm.empty()) {
      auto bn = std::dynamic_pointer_cast<torch::nn::BatchNorm2dImpl>(mods.at(norm));
      SCULPT_CHECK(bn, mpath, ": folded norm '", norm, "' is not a BatchNorm2d");
      // An exact identity: (x - 0) / sqrt(1 + 0) * 1 + 0.
      bn->running_mean.zero_();
      bn->running_var.fill_(1);
      bn->weight.fill_(1);
      bn->bias.zero_();
      bn->options.eps(0.0);
      for (const char* t : {"weight", "bias", "running_mean", "running_var", "num_batches_tracked"})
        replaced.insert(norm + "." + t);
    }
  }
  for (auto& [name, t] : model.state_tensors()) {
    if (replaced.count(name)) continue;
    at::Tensor v = take(name);
    SCULPT_CHECK(v.sizes() == t.sizes(), tpath, ": tensor '", name, "' has shape ",
                 v.sizes(), " but the model expects ", t.sizes());
    t.copy_(v);
  }
  SCULPT_CHECK(file.empty(), tpath, ": tensor '", file.begin()->first,
               "' belongs to no layer of this model (an export of another model?)");
  return manifest;
}

}  // namespace sculpt::quant
