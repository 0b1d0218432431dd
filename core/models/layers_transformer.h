// The one transformer layer implementation, shared by the built-in transformer_* models and the
// Hugging Face families (core/models/hf/): attention with grouped-query heads, rotary or
// relative-position biases and a KV cache for decoding; pre- or post-norm layers with LayerNorm or
// RMSNorm; plain or gated feed-forward. Every projection is a compressible nn::Linear with the
// names the passes look for: <attn>.q/.k/.v/.o (head removal), <layer>.fc1 -> .fc2 (feed-forward
// neuron removal; a gated feed-forward's `gate` is cut with fc1).
#pragma once

#include <torch/nn/module.h>

#include <memory>
#include <string>

#include "core/models/model.h"
#include "core/nn/layers.h"

namespace sculpt::models {

enum class NormKind { layer, rms };
enum class Activation { gelu, gelu_tanh, relu, silu };

at::Tensor activate(Activation a, const at::Tensor& x);

// LayerNorm (weight and bias, or weight only) or RMSNorm (weight: x / rms(x) * w, computed in
// float32 as Llama and T5 do). Parameters: `weight`, `bias`.
class Norm final : public torch::nn::Module {
 public:
  Norm(NormKind kind, int64_t d, double eps, bool bias = true);
  at::Tensor forward(const at::Tensor& x);

 private:
  NormKind kind_;
  double eps_;
  at::Tensor weight_, bias_;
};

// Rotary position embeddings (rotate-half layout), with the scalings Hugging Face configs name.
struct RotarySpec {
  bool on = false;
  double theta = 10000.0;
  int64_t dim = 0;  // rotated dimensions of each head (0: the whole head)
  std::string scaling = "default";  // default | linear | llama3
  double factor = 1.0, low_freq_factor = 1.0, high_freq_factor = 4.0;
  int64_t original_max_positions = 8192;
};

// The rotary inverse frequencies [dim / 2] of `r` for `dim` rotated dimensions, its scaling
// applied (what Attention rotates with; the ONNX exporter writes the same table).
at::Tensor rotary_inv_freq(const RotarySpec& r, int64_t dim);

// T5's relative position buckets: a learned [buckets, heads] table, shared by every layer of a
// stack (the first layer owns it). bias(q_first, lq, lk) -> [1, heads, lq, lk].
class RelativeBias final : public torch::nn::Module {
 public:
  RelativeBias(int64_t buckets, int64_t max_distance, int64_t heads, bool bidirectional);
  at::Tensor bias(int64_t q_first, int64_t lq, int64_t lk, const at::TensorOptions& o);

 private:
  int64_t buckets_, max_distance_;
  bool bidirectional_;
  std::shared_ptr<nn::Embedding> table_;
};

struct AttentionSpec {
  int64_t d_model = 0, heads = 1;
  int64_t kv_heads = 0;   // 0: as many as heads (grouped-query attention when fewer)
  int64_t head_dim = 0;   // 0: d_model / heads
  bool qkv_bias = true, out_bias = true;
  bool scaled = true;     // scores / sqrt(head_dim) (T5: not scaled)
  double dropout = 0.0;
  int64_t window = 0;     // causal: query i sees only keys i - window < j <= i (0: all)
  // Scores get a per-head bias (T5's relative positions): the buffer `head_index` records which
  // of the bias's heads this attention still has after head removal (keep_heads).
  bool head_bias = false;
  RotarySpec rotary;
};

class Attention final : public torch::nn::Module, public AttentionRecorder {
 public:
  static constexpr int64_t kShortKeys = 64;
  explicit Attention(const AttentionSpec& s);
  // Queries from x [B, Lq, D], keys and values from mem [B, Lk, D]; key_ok [B, Lk] bool
  // (undefined: all keys); causal: query i sees keys <= i; bias: added to the scores
  // [1 or B, heads, Lq, Lk] (relative positions). `cross`: mem is the same at every decoding
  // step, so under a KvScope its keys and values are computed once.
  at::Tensor forward(const at::Tensor& x, const at::Tensor& mem, const at::Tensor& key_ok,
                     bool causal, const at::Tensor& bias = {}, bool cross = false);
  void record_attention(bool on) override;
  const at::Tensor& attention() const override { return probs_; }
  // After head removal: the original indices of the query heads that stay (head_bias only).
  void keep_heads(const at::Tensor& kept);
  int64_t head_dim() const { return head_dim_; }

 private:
  at::Tensor rotate(const at::Tensor& t, int64_t first) const;
  int64_t head_dim_;
  bool scaled_;
  double dropout_;
  int64_t window_;
  RotarySpec rotary_;
  at::Tensor inv_freq_, head_index_;
  // cos and sin of the last positions rotated (q and k of one forward share them)
  mutable at::Tensor cos_, sin_;
  mutable int64_t cos_first_ = -1;
  bool record_ = false;
  at::Tensor probs_;
  std::shared_ptr<nn::Linear> q_, k_, v_, o_;
};

struct LayerSpec {
  AttentionSpec attn;
  NormKind norm = NormKind::layer;
  double eps = 1e-5;
  bool norm_bias = true;
  bool pre_norm = true;  // x + f(norm(x)); false: norm(x + f(x)) (BERT)
  int64_t ff = 0;        // 0: 4 * d_model
  bool gated = false;    // fc2(act(gate(x)) * fc1(x)) (SwiGLU, gated GELU)
  Activation act = Activation::gelu;
  bool mlp_bias = true;
  bool cross = false;    // decoder layer with cross-attention
  double dropout = 0.0;
};

// One layer: self-attention, optional cross-attention, feed-forward. Submodules: ln1,
// self_attn, [ln_cross, cross_attn], ln2, fc1, [gate], fc2.
class Layer final : public torch::nn::Module {
 public:
  explicit Layer(const LayerSpec& s);
  at::Tensor forward(at::Tensor h, const at::Tensor& key_ok, bool causal,
                     const at::Tensor& mem = {}, const at::Tensor& mem_ok = {},
                     const at::Tensor& self_bias = {}, const at::Tensor& cross_bias = {});

 private:
  at::Tensor drop(const at::Tensor& x) { return at::dropout(x, dropout_, is_training()); }
  at::Tensor feed_forward(const at::Tensor& x);
  double dropout_;
  bool pre_norm_, gated_;
  Activation act_;
  std::shared_ptr<Norm> ln1_, ln_cross_, ln2_;
  std::shared_ptr<Attention> self_, cross_;
  std::shared_ptr<nn::Linear> fc1_, gate_, fc2_;
};

// The stream between blocks, [B, L, D + 1]: D features and, in the last channel, 1 where a
// position may be attended to.
at::Tensor stream_features(const at::Tensor& x);
at::Tensor stream_attendable(const at::Tensor& x);  // [B, L] bool
at::Tensor stream_join(const at::Tensor& h, const at::Tensor& valid);

// Incremental decoding. While a KvScope is alive on this thread (and autograd is off), every
// Attention keeps the keys and values it computed and the next forward gives only the new
// positions: the caller runs the model on the new tokens and then calls advance(n). Blocks that
// need absolute positions (embeddings, rotary, relative biases) read kv_offset().
class KvScope {
 public:
  KvScope();
  ~KvScope();
  KvScope(const KvScope&) = delete;
  KvScope& operator=(const KvScope&) = delete;
  void advance(int64_t n) { offset_ += n; }
  int64_t offset() const { return offset_; }
  struct Store;

 private:
  std::unique_ptr<Store> store_;
  KvScope* outer_;
  int64_t offset_ = 0;
  friend class Attention;
  friend KvScope* active_kv_scope();
};
KvScope* active_kv_scope();
// Positions already decoded under the active KvScope (0 outside one).
int64_t kv_offset();

}  // namespace sculpt::models
