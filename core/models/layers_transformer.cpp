#include "core/models/layers_transformer.h"

#include <ATen/ATen.h>
#include <ATen/core/grad_mode.h>

#include <cmath>
#include <limits>
#include <unordered_map>

#include "core/error.h"

namespace sculpt::models {

at::Tensor activate(Activation a, const at::Tensor& x) {
  switch (a) {
    case Activation::gelu: return at::gelu(x);
    case Activation::gelu_tanh: return at::gelu(x, "tanh");
    case Activation::relu: return at::relu(x);
    case Activation::silu: return at::silu(x);
  }
  return x;
}

Norm::Norm(NormKind kind, int64_t d, double eps, bool bias) : kind_(kind), eps_(eps) {
  weight_ = register_parameter("weight", at::ones({d}));
  if (kind == NormKind::layer && bias) bias_ = register_parameter("bias", at::zeros({d}));
}

at::Tensor Norm::forward(const at::Tensor& x) {
  if (kind_ == NormKind::layer)
    return at::layer_norm(x, {weight_.size(0)}, weight_, bias_, eps_);
  at::Tensor f = x.to(at::kFloat);
  f = f * at::rsqrt(f.pow(2).mean(-1, true) + eps_);
  return weight_ * f.to(x.scalar_type());
}

// ---- the stream ----

at::Tensor stream_features(const at::Tensor& x) { return x.narrow(-1, 0, x.size(-1) - 1); }
at::Tensor stream_attendable(const at::Tensor& x) { return x.select(-1, x.size(-1) - 1) > 0.5; }
at::Tensor stream_join(const at::Tensor& h, const at::Tensor& valid) {
  return at::cat({h, valid.unsqueeze(-1).to(h.scalar_type())}, -1);
}

// ---- KV cache ----

struct KvScope::Store {
  struct Entry {
    at::Tensor k, v, ok;
  };
  std::unordered_map<const void*, Entry> entries;
};

namespace {
thread_local KvScope* kv_active = nullptr;
}

KvScope::KvScope() : store_(std::make_unique<Store>()), outer_(kv_active) { kv_active = this; }
KvScope::~KvScope() { kv_active = outer_; }
KvScope* active_kv_scope() { return kv_active; }
int64_t kv_offset() { return kv_active ? kv_active->offset() : 0; }

// ---- relative position buckets (T5) ----

RelativeBias::RelativeBias(int64_t buckets, int64_t max_distance, int64_t heads, bool bidirectional)
    : buckets_(buckets), max_distance_(max_distance), bidirectional_(bidirectional) {
  table_ = register_module("table", std::make_shared<nn::Embedding>(buckets, heads));
}

at::Tensor RelativeBias::bias(int64_t q_first, int64_t lq, int64_t lk, const at::TensorOptions& o) {
  auto idx = at::TensorOptions().dtype(at::kLong).device(o.device());
  at::Tensor rel = at::arange(lk, idx).unsqueeze(0) - at::arange(q_first, q_first + lq, idx).unsqueeze(1);
  int64_t n = buckets_;
  at::Tensor bucket = at::zeros_like(rel);
  if (bidirectional_) {
    n /= 2;
    bucket = bucket + (rel > 0).to(at::kLong) * n;
    rel = rel.abs();
  } else {
    rel = -at::clamp_max(rel, 0);
  }
  const int64_t exact = n / 2;
  at::Tensor large =
      exact + (at::log(rel.to(at::kFloat) / exact) / std::log(static_cast<double>(max_distance_) / exact) *
               (n - exact))
                  .to(at::kLong);
  large = at::clamp_max(large, n - 1);
  bucket = bucket + at::where(rel < exact, rel, large);
  return table_->forward(bucket).permute({2, 0, 1}).unsqueeze(0).to(o.dtype());  // [1, H, lq, lk]
}

// ---- attention ----

Attention::Attention(const AttentionSpec& s)
    : head_dim_(s.head_dim > 0 ? s.head_dim : s.d_model / s.heads),
      scaled_(s.scaled),
      dropout_(s.dropout),
      window_(s.window),
      rotary_(s.rotary) {
  const int64_t d = s.d_model, inner = s.heads * head_dim_;
  const int64_t kv = (s.kv_heads > 0 ? s.kv_heads : s.heads) * head_dim_;
  q_ = register_module("q", std::make_shared<nn::Linear>(d, inner, s.qkv_bias));
  k_ = register_module("k", std::make_shared<nn::Linear>(d, kv, s.qkv_bias));
  v_ = register_module("v", std::make_shared<nn::Linear>(d, kv, s.qkv_bias));
  o_ = register_module("o", std::make_shared<nn::Linear>(inner, d, s.out_bias));
  if (s.head_bias) head_index_ = register_buffer("head_index", at::arange(s.heads, at::kLong));
  if (rotary_.on) {
    const int64_t dim = rotary_.dim > 0 ? rotary_.dim : head_dim_;
    rotary_.dim = dim;
    inv_freq_ = rotary_inv_freq(rotary_, dim);
  }
}

at::Tensor rotary_inv_freq(const RotarySpec& r, int64_t dim) {
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
  return inv;
}

at::Tensor Attention::rotate(const at::Tensor& t, int64_t first) const {
  const int64_t len = t.size(2), dim = rotary_.dim, half = dim / 2;
  if (cos_first_ != first || !cos_.defined() || cos_.size(0) != len ||
      cos_.scalar_type() != t.scalar_type() || cos_.device() != t.device()) {
    auto fo = at::TensorOptions().dtype(at::kFloat).device(t.device());
    at::Tensor pos = at::arange(first, first + len, fo);
    at::Tensor freqs = at::outer(pos, inv_freq_.to(t.device()));
    at::Tensor emb = at::cat({freqs, freqs}, -1);
    cos_ = emb.cos().to(t.scalar_type());
    sin_ = emb.sin().to(t.scalar_type());
    cos_first_ = first;
  }
  const at::Tensor& cos = cos_;
  const at::Tensor& sin = sin_;
  at::Tensor r = dim == t.size(-1) ? t : t.narrow(-1, 0, dim);
  at::Tensor rot = at::cat({-r.narrow(-1, half, half), r.narrow(-1, 0, half)}, -1);
  at::Tensor out = r * cos + rot * sin;
  return dim == t.size(-1) ? out : at::cat({out, t.narrow(-1, dim, t.size(-1) - dim)}, -1);
}

at::Tensor Attention::forward(const at::Tensor& x, const at::Tensor& mem, const at::Tensor& key_ok,
                              bool causal, const at::Tensor& head_bias, bool cross) {
  auto heads = [&](const at::Tensor& t) {
    return t.view({t.size(0), t.size(1), -1, head_dim_}).transpose(1, 2);
  };
  KvScope* scope = is_training() || at::GradMode::is_enabled() ? nullptr : active_kv_scope();
  const int64_t first = scope && !cross ? scope->offset() : 0;
  at::Tensor q = heads(q_->forward(x)), k, v, ok = key_ok;
  KvScope::Store::Entry* cached = scope ? &scope->store_->entries[this] : nullptr;
  if (cross && cached && cached->k.defined()) {
    k = cached->k, v = cached->v, ok = cached->ok;
  } else {
    k = heads(k_->forward(mem)), v = heads(v_->forward(mem));
    if (rotary_.on) k = rotate(k, first);
    if (cached) {
      if (!cross && cached->k.defined()) {
        k = at::cat({cached->k, k}, 2), v = at::cat({cached->v, v}, 2);
        if (cached->ok.defined() || ok.defined()) {
          auto all = [](const at::Tensor& m, const at::Tensor& like, int64_t n) {
            return m.defined() ? m : at::ones({like.size(0), n}, like.options().dtype(at::kBool));
          };
          ok = at::cat({all(cached->ok, k, k.size(2) - x.size(1)), all(ok, k, x.size(1))}, 1);
        }
      }
      cached->k = k, cached->v = v, cached->ok = ok;
    }
  }
  if (rotary_.on) q = rotate(q, first);
  // Grouped-query attention: query head h reads key/value head h / group. Neither path copies
  // the key/value heads: the explicit product packs each group's query heads into one matrix,
  // the fused kernel is told (enable_gqa).
  const int64_t heads_q = q.size(1), heads_kv = k.size(1), group = heads_q / heads_kv;
  const int64_t lq = q.size(2), lk = k.size(2);
  at::Tensor bias = head_bias;
  if (bias.defined() && head_index_.defined() && head_index_.numel() != bias.size(1))
    bias = bias.index_select(1, head_index_);
  const double p = is_training() ? dropout_ : 0.0;
  // Which (query, key) pairs may attend: [B or 1, 1, Lq or 1, Lk] bool, undefined for all.
  at::Tensor allowed;
  if (ok.defined()) allowed = ok.view({ok.size(0), 1, 1, lk});
  const bool plain_causal = causal && lq == lk && !bias.defined() && (window_ <= 0 || window_ >= lk);
  if (causal && (!plain_causal || allowed.defined())) {
    at::Tensor tri = at::ones({lq, lk}, x.options().dtype(at::kBool)).tril(lk - lq);
    if (window_ > 0) tri = tri.triu(lk - lq - window_ + 1);
    allowed = allowed.defined() ? allowed.logical_and(tri) : tri.view({1, 1, lq, lk});
  }
  const bool causal_flag = plain_causal && !allowed.defined();
  at::Tensor y;
  // The explicit softmax(q k^T / sqrt(d)) v: when the weights are wanted, and in inference on
  // the CPU over short sequences (decoding), where ATen's flash kernel costs more than the
  // product itself (its per-call work buffers are sized for 512-key blocks: 15% of a
  // generative-retrieval beam search). Training keeps the fused kernel. Masked scores get the
  // lowest float, not -inf, so a row with every key masked is uniform instead of NaN.
  if (record_ || (x.is_cpu() && !at::GradMode::is_enabled() && lk <= kShortKeys)) {
    // Scores as [B, kv heads, group, Lq, Lk]; masks [.., Lq, Lk] broadcast over the group.
    const int64_t b = q.size(0), d = q.size(3);
    auto scores = at::matmul(q.reshape({b, heads_kv, group * lq, d}), k.transpose(-1, -2))
                      .view({b, heads_kv, group, lq, lk});
    if (scaled_) scores = scores / std::sqrt(static_cast<double>(d));
    if (bias.defined())
      scores = scores + (bias.size(1) == heads_q
                             ? bias.view({bias.size(0), heads_kv, group, bias.size(2), bias.size(3)})
                             : bias.unsqueeze(2));
    const double lowest = std::numeric_limits<float>::lowest();
    if (allowed.defined()) scores = scores.masked_fill(allowed.unsqueeze(2).logical_not(), lowest);
    if (causal_flag)
      scores = scores.masked_fill(at::ones({lq, lk}, x.options().dtype(at::kBool)).triu(1), lowest);
    at::Tensor probs;
    if (!scores.is_cpu() || lk >= 16 || at::GradMode::is_enabled()) {
      probs = scores.softmax(-1);
    } else {  // ATen's CPU softmax is slow on rows of fewer than 16 values (its vector tail)
      at::Tensor e = (scores - scores.amax(-1, true)).exp_();
      probs = e.div_(e.sum(-1, true));
    }
    y = at::matmul(at::dropout(probs, p, is_training()).view({b, heads_kv, group * lq, lk}), v)
            .view({b, heads_q, lq, d});
    if (record_) probs_ = probs.view({b, heads_q, lq, lk});
  } else {
    std::optional<at::Tensor> mask;
    if (bias.defined()) {
      at::Tensor m = bias.to(q.scalar_type());
      if (allowed.defined())
        m = m.masked_fill(allowed.logical_not(), std::numeric_limits<float>::lowest());
      mask = m.expand({q.size(0), heads_q, lq, lk});
    } else if (allowed.defined()) {
      mask = allowed;
    }
    std::optional<double> scale;
    if (!scaled_) scale = 1.0;
    y = at::scaled_dot_product_attention(q, k, v, mask, p, causal_flag, scale, group > 1);
  }
  return o_->forward(y.transpose(1, 2).reshape({x.size(0), x.size(1), -1}));
}

void Attention::keep_heads(const at::Tensor& kept) {
  if (!head_index_.defined()) return;
  at::Tensor now = head_index_.index_select(0, kept.to(head_index_.device()));
  head_index_.set_(now);
}

void Attention::record_attention(bool on) {
  record_ = on;
  if (!on) probs_ = at::Tensor();
}

// ---- layer ----

Layer::Layer(const LayerSpec& s)
    : dropout_(s.dropout), pre_norm_(s.pre_norm), gated_(s.gated), act_(s.act) {
  const int64_t d = s.attn.d_model, ff = s.ff > 0 ? s.ff : 4 * d;
  AttentionSpec a = s.attn;
  a.dropout = s.dropout;
  ln1_ = register_module("ln1", std::make_shared<Norm>(s.norm, d, s.eps, s.norm_bias));
  self_ = register_module("self_attn", std::make_shared<Attention>(a));
  if (s.cross) {
    AttentionSpec c = a;
    c.rotary.on = false;
    ln_cross_ = register_module("ln_cross", std::make_shared<Norm>(s.norm, d, s.eps, s.norm_bias));
    cross_ = register_module("cross_attn", std::make_shared<Attention>(c));
  }
  ln2_ = register_module("ln2", std::make_shared<Norm>(s.norm, d, s.eps, s.norm_bias));
  fc1_ = register_module("fc1", std::make_shared<nn::Linear>(d, ff, s.mlp_bias));
  if (s.gated) gate_ = register_module("gate", std::make_shared<nn::Linear>(d, ff, s.mlp_bias));
  fc2_ = register_module("fc2", std::make_shared<nn::Linear>(ff, d, s.mlp_bias));
}

at::Tensor Layer::feed_forward(const at::Tensor& x) {
  if (gated_) return fc2_->forward(activate(act_, gate_->forward(x)) * fc1_->forward(x));
  return fc2_->forward(activate(act_, fc1_->forward(x)));
}

at::Tensor Layer::forward(at::Tensor h, const at::Tensor& key_ok, bool causal, const at::Tensor& mem,
                          const at::Tensor& mem_ok, const at::Tensor& self_bias,
                          const at::Tensor& cross_bias) {
  if (!pre_norm_) {
    h = ln1_->forward(h + drop(self_->forward(h, h, key_ok, causal, self_bias)));
    if (cross_)
      h = ln_cross_->forward(h + drop(cross_->forward(h, mem, mem_ok, false, cross_bias, true)));
    return ln2_->forward(h + drop(feed_forward(h)));
  }
  auto a = ln1_->forward(h);
  h = h + drop(self_->forward(a, a, key_ok, causal, self_bias));
  if (cross_)
    h = h + drop(cross_->forward(ln_cross_->forward(h), mem, mem_ok, false, cross_bias, true));
  return h + drop(feed_forward(ln2_->forward(h)));
}

}  // namespace sculpt::models
