// The blocks of the Hugging Face families and how a model is assembled from them:
//   gpt2, llama:  embed, layer0..N-1, head (final norm + LM head, tied or not)
//   bert:         embed (tokens, positions, type 0, LayerNorm), layer0..N-1 (post-norm), head
//   t5:           embed, enc0..N-1, enc_norm, dec0..M-1, head (final norm + LM head)
//   vit:          embed (patches, class token, positions), layer0..N-1, head
// Between blocks the stream is [B, L, D + 1] (layers_transformer.h). Token ids < 0 are padding
// (Hugging Face's attention_mask 0); encoders also treat the checkpoint's pad_token_id so.
#include <ATen/ATen.h>
#include <torch/nn/init.h>

#include <cmath>

#include "core/error.h"
#include "core/models/decode_cache.h"
#include "core/models/hf/hf_model.h"
#include "core/nn/init_scope.h"

namespace sculpt::models::hf {

namespace {

at::Tensor new_param(torch::nn::Module& m, const char* name, at::IntArrayRef shape) {
  auto p = m.register_parameter(name, at::empty(shape));
  if (nn::SkipRandomInit::active()) return p;
  torch::NoGradGuard no_grad;
  torch::nn::init::normal_(p, 0.0, 0.02);
  return p;
}

LayerSpec layer_spec(const Arch& a, bool cross) {
  LayerSpec s;
  s.attn.d_model = a.hidden;
  s.attn.heads = a.heads;
  s.attn.kv_heads = a.kv_heads;
  s.attn.head_dim = a.head_dim;
  s.attn.qkv_bias = a.qkv_bias;
  s.attn.out_bias = a.out_bias;
  s.attn.scaled = a.family != "t5";
  s.attn.window = a.window;
  s.attn.rotary = a.rotary;
  s.attn.head_bias = a.family == "t5";
  s.norm = a.norm;
  s.eps = a.eps;
  s.pre_norm = a.family != "bert";
  s.ff = a.ff;
  s.gated = a.gated;
  s.act = a.act;
  s.mlp_bias = a.mlp_bias;
  s.cross = cross;
  s.dropout = a.dropout;
  return s;
}

// Token ids -> stream. Learned positions (gpt2, bert), RoBERTa's positions after pad_token_id,
// token types and a LayerNorm (bert): type 0, or per token from [B, 2, L] inputs (ids, then
// token type ids: text pairs, DataSpec::token_type_ids). Under a KvScope positions continue
// from kv_offset().
class TokenEmbed final : public Block {
 public:
  TokenEmbed(const Arch& a, int64_t source_len)
      : family_(a.family), pad_(a.pad_id), roberta_(a.roberta_positions), source_len_(source_len),
        dropout_(a.dropout) {
    tokens_ = register_module("tokens", std::make_shared<nn::Embedding>(a.vocab, a.hidden));
    if (a.family == "gpt2" || a.family == "bert")
      positions_ = new_param(*this, "positions", {a.max_positions, a.hidden});
    if (a.family == "bert") {
      types_ = new_param(*this, "token_types", {std::max<int64_t>(a.type_vocab, 1), a.hidden});
      norm_ = register_module("norm", std::make_shared<Norm>(NormKind::layer, a.hidden, a.eps));
    }
  }
  at::Tensor forward(const at::Tensor& input) override {
    at::Tensor ids = input, types;
    if (input.dim() == 3) {
      SCULPT_CHECK(types_.defined() && input.size(1) == 2,
                   "model hf: inputs [B, 2, L] (ids and token type ids) need a bert-family "
                   "checkpoint; got ",
                   input.sizes());
      ids = input.select(1, 0);
      types = input.select(1, 1).clamp_min(0);
    }
    const int64_t len = ids.size(1), first = kv_offset();
    at::Tensor valid = ids >= 0;
    const bool encoder = family_ == "bert" || family_ == "t5";
    if (encoder && pad_ >= 0) {
      at::Tensor not_pad = ids != pad_;
      if (source_len_ > 0)  // t5: the decoder starts with pad_token_id; only the source is masked
        not_pad.narrow(1, source_len_, len - source_len_).fill_(true);
      valid = valid.logical_and(not_pad);
    }
    at::Tensor h = tokens_->forward(ids.clamp_min(0));
    if (positions_.defined()) {
      at::Tensor pos;
      if (roberta_) {
        pos = valid.to(at::kLong).cumsum(1) * valid.to(at::kLong) + pad_;
      } else {
        SCULPT_CHECK(first + len <= positions_.size(0), "sequence of ", first + len,
                     " tokens; the checkpoint has ", positions_.size(0), " positions");
        pos = at::arange(first, first + len, ids.options());
      }
      h = h + at::embedding(positions_, pos);
    }
    if (types.defined())
      h = h + at::embedding(types_, types);
    else if (types_.defined())
      h = h + types_[0];
    if (norm_) h = norm_->forward(h);
    return stream_join(at::dropout(h, dropout_, is_training()), valid);
  }
  std::shared_ptr<nn::Embedding> table() const { return tokens_; }

 private:
  std::string family_;
  int64_t pad_;
  bool roberta_;
  int64_t source_len_;
  double dropout_;
  std::shared_ptr<nn::Embedding> tokens_;
  at::Tensor positions_, types_;
  std::shared_ptr<Norm> norm_;
};

// Images [B, C, H, W] -> class token + patches, with learned positions.
class PatchEmbed final : public Block {
 public:
  explicit PatchEmbed(const Arch& a) {
    const int64_t n = (a.image_size / a.patch_size) * (a.image_size / a.patch_size);
    proj_ = register_module("proj", std::make_shared<nn::Conv2d>(a.channels, a.hidden, a.patch_size,
                                                                 a.patch_size));
    cls_ = new_param(*this, "cls", {1, 1, a.hidden});
    positions_ = new_param(*this, "positions", {1, n + 1, a.hidden});
  }
  at::Tensor forward(const at::Tensor& x) override {
    at::Tensor h = proj_->forward(x).flatten(2).transpose(1, 2);
    SCULPT_CHECK(h.size(1) + 1 == positions_.size(1), "images of ", x.size(2), "x", x.size(3),
                 " give ", h.size(1), " patches; the checkpoint has positions for ",
                 positions_.size(1) - 1);
    h = at::cat({cls_.expand({h.size(0), 1, h.size(2)}), h}, 1) + positions_;
    return stream_join(h, at::ones({h.size(0), h.size(1)}, x.options().dtype(at::kBool)));
  }

 private:
  std::shared_ptr<nn::Conv2d> proj_;
  at::Tensor cls_, positions_;
};

// The key mask, or undefined when every key may be attended to (the fused kernels' fast path).
at::Tensor keys_or_all(const at::Tensor& ok) {
  return ok.all().item<bool>() ? at::Tensor() : ok;
}

// A layer over the whole stream: encoder (padding mask) or decoder (causal); T5's relative
// position bias when `rel` is set (owned by the stack's first layer, shared by the rest).
class StreamLayer final : public Block {
 public:
  StreamLayer(const Arch& a, bool causal, std::shared_ptr<RelativeBias> rel, bool owns_rel)
      : causal_(causal), rel_(std::move(rel)) {
    layer_ = register_module("layer", std::make_shared<Layer>(layer_spec(a, false)));
    if (owns_rel) register_module("rel", rel_);
  }
  at::Tensor forward(const at::Tensor& x) override {
    at::Tensor ok = stream_attendable(x), h = stream_features(x);
    at::Tensor bias;
    if (rel_) bias = rel_->bias(kv_offset(), h.size(1), kv_offset() + h.size(1), h.options());
    return stream_join(layer_->forward(h, keys_or_all(ok), causal_, {}, {}, bias), ok);
  }

 private:
  bool causal_;
  std::shared_ptr<RelativeBias> rel_;
  std::shared_ptr<Layer> layer_;
};

// T5 encoder layer / final norm: act on the source positions [0, S) of [source | decoder];
// within a decode the same source is computed once (memoize_source).
class SourceBlock final : public Block {
 public:
  SourceBlock(const Arch& a, int64_t source_len, std::shared_ptr<RelativeBias> rel, bool owns_rel,
              bool norm_only)
      : source_len_(source_len), rel_(std::move(rel)) {
    if (norm_only) norm_ = register_module("norm", std::make_shared<Norm>(a.norm, a.hidden, a.eps));
    else layer_ = register_module("layer", std::make_shared<Layer>(layer_spec(a, false)));
    if (owns_rel) register_module("rel", rel_);
    dropout_ = norm_only ? a.dropout : 0.0;
  }
  at::Tensor forward(const at::Tensor& x) override {
    auto src = x.narrow(1, 0, source_len_);
    auto out = memoize_source(this, is_training(), src, [&](const at::Tensor& rows) {
      at::Tensor ok = stream_attendable(rows), h = stream_features(rows);
      if (norm_) return stream_join(at::dropout(norm_->forward(h), dropout_, is_training()), ok);
      at::Tensor bias = rel_ ? rel_->bias(0, h.size(1), h.size(1), h.options()) : at::Tensor();
      return stream_join(layer_->forward(h, keys_or_all(ok), false, {}, {}, bias), ok);
    });
    return at::cat({out, x.narrow(1, source_len_, x.size(1) - source_len_)}, 1);
  }

 private:
  int64_t source_len_;
  double dropout_ = 0.0;
  std::shared_ptr<RelativeBias> rel_;
  std::shared_ptr<Layer> layer_;
  std::shared_ptr<Norm> norm_;
};

// T5 decoder layer: causal self-attention with relative positions over the decoder positions,
// cross-attention to the encoded source.
class TargetBlock final : public Block {
 public:
  TargetBlock(const Arch& a, int64_t source_len, std::shared_ptr<RelativeBias> rel, bool owns_rel)
      : source_len_(source_len), rel_(std::move(rel)) {
    layer_ = register_module("layer", std::make_shared<Layer>(layer_spec(a, true)));
    if (owns_rel) register_module("rel", rel_);
  }
  at::Tensor forward(const at::Tensor& x) override {
    auto src = x.narrow(1, 0, source_len_);
    auto tgt = x.narrow(1, source_len_, x.size(1) - source_len_);
    at::Tensor h = stream_features(tgt);
    const int64_t first = kv_offset();
    at::Tensor bias = rel_->bias(first, h.size(1), first + h.size(1), h.options());
    h = layer_->forward(h, {}, true, stream_features(src), keys_or_all(stream_attendable(src)), bias);
    return at::cat({src, stream_join(h, stream_attendable(tgt))}, 1);
  }

 private:
  int64_t source_len_;
  std::shared_ptr<RelativeBias> rel_;
  std::shared_ptr<Layer> layer_;
};

// Final norm and LM head over positions [from, end): its own weight, or the token table's
// (tied), T5's tied head scaled by d_model^-1/2; BERT's transform (dense, activation,
// LayerNorm) and output bias.
class LmHead final : public Block {
 public:
  LmHead(const Arch& a, std::shared_ptr<nn::Embedding> table, int64_t from)
      : act_(a.act), from_(from) {
    if (a.family == "bert") {
      transform_ = register_module("transform", std::make_shared<nn::Linear>(a.hidden, a.hidden));
      norm_ = register_module("norm", std::make_shared<Norm>(NormKind::layer, a.hidden, a.eps));
      bias_ = register_parameter("bias", at::zeros({a.vocab}));
    } else {
      norm_ = register_module("norm", std::make_shared<Norm>(a.norm, a.hidden, a.eps));
    }
    if (a.scale_lm_input) scale_ = 1.0 / std::sqrt(static_cast<double>(a.hidden));
    if (a.tied) {
      tied_ = std::move(table);
    } else {
      lm_ = register_module("lm", std::make_shared<nn::Linear>(a.hidden, a.vocab, false));
    }
    dropout_ = a.family == "t5" ? a.dropout : 0.0;
  }
  at::Tensor forward(const at::Tensor& x) override {
    at::Tensor h = stream_features(x);
    if (from_ > 0) h = h.narrow(1, from_, h.size(1) - from_);
    if (transform_) h = activate(act_, transform_->forward(h));
    h = at::dropout(norm_->forward(h), dropout_, is_training());
    if (scale_ != 1.0) h = h * scale_;
    at::Tensor logits = tied_ ? at::linear(h, tied_->effective_weight()) : lm_->forward(h);
    return bias_.defined() ? logits + bias_ : logits;
  }

 private:
  Activation act_;
  int64_t from_;
  double scale_ = 1.0, dropout_ = 0.0;
  std::shared_ptr<nn::Embedding> tied_;
  std::shared_ptr<nn::Linear> transform_, lm_;
  std::shared_ptr<Norm> norm_;
  at::Tensor bias_;
};

// Classifier on the first position: BERT's pooler (dense, tanh) then classifier; RoBERTa's
// dense, tanh, out_proj; ViT's final LayerNorm then classifier.
class ClassifyHead final : public Block {
 public:
  ClassifyHead(const Arch& a, int64_t classes) : dropout_(a.dropout) {
    if (a.family == "vit")
      norm_ = register_module("norm", std::make_shared<Norm>(NormKind::layer, a.hidden, a.eps));
    else
      pool_ = register_module("pool", std::make_shared<nn::Linear>(a.hidden, a.hidden));
    fc_ = register_module("fc", std::make_shared<nn::Linear>(a.hidden, classes));
  }
  at::Tensor forward(const at::Tensor& x) override {
    at::Tensor h = stream_features(x);
    if (norm_) h = norm_->forward(h);
    h = h.select(1, 0);
    if (pool_) h = at::tanh(pool_->forward(at::dropout(h, dropout_, is_training())));
    return fc_->forward(at::dropout(h, dropout_, is_training()));
  }

 private:
  double dropout_;
  std::shared_ptr<Norm> norm_;
  std::shared_ptr<nn::Linear> pool_, fc_;
};

}  // namespace

std::unique_ptr<Model> build(const Arch& a, Head head, const data::DataSpec& spec) {
  auto m = std::make_unique<Model>("hf_" + a.model_type);
  m->set_channel_removal(Model::ChannelRemoval::feed_forward);
  const std::string where = "model hf (" + a.dir + ")";
  if (a.family == "vit") {
    SCULPT_CHECK(head == Head::classify, where, ": a vit checkpoint has only the classify head");
    SCULPT_CHECK(spec.input_shape.empty() || spec.input_shape.size() == 3, where,
                 ": needs images [C, H, W]");
    m->add_block("embed", std::make_shared<PatchEmbed>(a));
    for (int64_t i = 0; i < a.layers; ++i)
      m->add_block("layer" + std::to_string(i), std::make_shared<StreamLayer>(a, false, nullptr, false));
    m->add_block("head", std::make_shared<ClassifyHead>(a, spec.num_classes > 0 ? spec.num_classes
                                                                                 : a.num_labels));
    return m;
  }
  SCULPT_CHECK(spec.vocab_size <= a.vocab, where, ": the data has token ids up to ",
               spec.vocab_size - 1, " but the checkpoint's vocabulary has ", a.vocab, " (vocab_size in ",
               a.file, ")");
  if (a.family == "t5") {
    SCULPT_CHECK(head == Head::seq2seq_lm, where, ": a t5 checkpoint has only the seq2seq_lm head");
    SCULPT_CHECK(spec.source_len > 0, where, ": t5 needs a seq2seq dataset (source_len > 0)");
    const int64_t s = spec.source_len;
    auto embed = std::make_shared<TokenEmbed>(a, s);
    m->add_block("embed", embed);
    auto enc_rel = std::make_shared<RelativeBias>(a.rel_buckets, a.rel_max_distance, a.heads, true);
    for (int64_t i = 0; i < a.layers; ++i)
      m->add_block("enc" + std::to_string(i), std::make_shared<SourceBlock>(a, s, enc_rel, i == 0, false));
    m->add_block("enc_norm", std::make_shared<SourceBlock>(a, s, nullptr, false, true));
    auto dec_rel = std::make_shared<RelativeBias>(a.rel_buckets, a.rel_max_distance, a.heads, false);
    for (int64_t i = 0; i < a.decoder_layers; ++i)
      m->add_block("dec" + std::to_string(i), std::make_shared<TargetBlock>(a, s, dec_rel, i == 0));
    m->add_block("head", std::make_shared<LmHead>(a, embed->table(), s));
    for (int64_t i = 1; i < a.layers; ++i)
      m->add_shared_weights({"enc0", "enc" + std::to_string(i), "the encoder's relative-position table"});
    for (int64_t i = 1; i < a.decoder_layers; ++i)
      m->add_shared_weights({"dec0", "dec" + std::to_string(i), "the decoder's relative-position table"});
    if (a.tied) m->add_shared_weights({"embed", "head", "the token table (tie_word_embeddings)"});
    return m;
  }
  SCULPT_CHECK(spec.source_len == 0, where, ": a ", a.model_type,
               " checkpoint reads one token sequence, not a seq2seq dataset");
  SCULPT_CHECK(!spec.token_type_ids || (a.family == "bert" && a.type_vocab >= 2), where,
               ": the data gives token type ids (text pairs, data.token_type_ids) but a ",
               a.model_type, " checkpoint ",
               a.family == "bert" ? "has type_vocab_size < 2" : "takes none",
               "; set data.token_type_ids: false");
  const bool decoder = a.family != "bert";
  if (decoder)
    SCULPT_CHECK(head == Head::causal_lm, where, ": a ", a.model_type,
                 " checkpoint has only the causal_lm head");
  else
    SCULPT_CHECK(head == Head::masked_lm || head == Head::classify, where,
                 ": a bert/roberta checkpoint has the masked_lm or classify head");
  auto embed = std::make_shared<TokenEmbed>(a, 0);
  m->add_block("embed", embed);
  for (int64_t i = 0; i < a.layers; ++i)
    m->add_block("layer" + std::to_string(i), std::make_shared<StreamLayer>(a, decoder, nullptr, false));
  if (head == Head::classify)
    m->add_block("head", std::make_shared<ClassifyHead>(a, spec.num_classes > 0 ? spec.num_classes
                                                                                 : a.num_labels));
  else
    m->add_block("head", std::make_shared<LmHead>(a, embed->table(), 0));
  if (a.tied && head != Head::classify)
    m->add_shared_weights({"embed", "head", "the token table (tie_word_embeddings)"});
  return m;
}

}  // namespace sculpt::models::hf
