// Transformers made of Sculpt's compressible layers, each a sequence of named blocks
// (pre-norm layers: x + attn(LN(x)), x + FFN(LN(x)); learned positions; GELU feed-forward):
// - transformer_encoder: a classifier over token ids [B, L] or image patches (ViT-style);
// - transformer_lm: decoder-only, causal, next-token logits [B, T, V];
// - transformer_seq2seq: encoder-decoder over inputs [B, S + T] = source then decoder input
//   (DataSpec), logits for the T decoder positions [B, T, V].
// Between blocks the stream is one tensor [B, L, D + 1]: D features and, in the last channel,
// 1 where a position may be attended to (0 for source padding). Carrying the mask inside the
// stream keeps every block tensor -> tensor, so pipeline stages can cut anywhere and taps
// see a complete state.
#include <ATen/ATen.h>
#include <torch/nn/init.h>
#include <torch/nn/modules/normalization.h>

#include <cmath>

#include "core/error.h"
#include "core/models/builtin_models.h"
#include "core/models/decode_cache.h"
#include "core/models/layers_transformer.h"
#include "core/nn/layers.h"

namespace sculpt::models {

void TransformerOptions::visit(config::Visitor& v) {
  v.field("d_model", d_model, "transformer_*: width of the residual stream",
          config::Range::at_least(1));
  v.field("heads", heads, "transformer_*: attention heads (d_model divisible by heads)",
          config::Range::at_least(1));
  v.field("layers", layers, "transformer_*: encoder layers (decoder layers for transformer_lm)",
          config::Range::at_least(1));
  v.field("decoder_layers", decoder_layers,
          "transformer_seq2seq: decoder layers; 0: as many as `layers`", config::Range::at_least(0));
  v.field("ff", ff, "transformer_*: hidden width of the feed-forward blocks; 0: 4 * d_model",
          config::Range::at_least(0));
  v.field("dropout", dropout, "transformer_*: dropout on attention and residual branches",
          config::Range::half_open(0, 1));
  v.field("patch_size", patch_size,
          "transformer_encoder on images: side of the square patches (divides the image size)",
          config::Range::at_least(1));
}

void TransformerOptions::check(config::Checker& c) const {
  if (heads > 0 && d_model % heads != 0)
    c.error("d_model", "d_model " + std::to_string(d_model) + " is not divisible by heads " +
                           std::to_string(heads));
}

namespace {

at::Tensor features(const at::Tensor& x) { return stream_features(x); }
at::Tensor attendable(const at::Tensor& x) { return stream_attendable(x); }
at::Tensor join(const at::Tensor& h, const at::Tensor& valid) { return stream_join(h, valid); }

// The built-in layer: pre-norm, LayerNorm, biases everywhere, GELU feed-forward.
LayerSpec builtin_layer(const TransformerOptions& o, bool cross) {
  LayerSpec s;
  s.attn.d_model = o.d_model;
  s.attn.heads = o.heads;
  s.ff = o.ff;
  s.cross = cross;
  s.dropout = o.dropout;
  return s;
}

at::Tensor learned_positions(torch::nn::Module& m, int64_t n, int64_t d, const char* name) {
  auto p = m.register_parameter(name, torch::empty({n, d}));
  torch::NoGradGuard no_grad;
  torch::nn::init::normal_(p, 0.0, 0.02);
  return p;
}

// Token ids [B, L] -> stream [B, L, D + 1]; padding is not attendable when `mask_padding`.
class TokenEmbed final : public Block {
 public:
  TokenEmbed(int64_t vocab, int64_t len, int64_t d, bool mask_padding) : mask_(mask_padding) {
    emb_ = register_module("tokens", std::make_shared<nn::Embedding>(vocab, d));
    pos_ = learned_positions(*this, len, d, "positions");
  }
  at::Tensor forward(const at::Tensor& ids) override {
    const int64_t len = ids.size(1), first = kv_offset();
    SCULPT_CHECK(first + len <= pos_.size(0), "sequence of ", first + len, " tokens; the model has ",
                 pos_.size(0), " positions");
    // Negative ids are padding too (text datasets pad with data.pad_id, -1 by default).
    auto h = emb_->forward(ids.clamp_min(0)) + pos_.narrow(0, first, len);
    auto ok = mask_ ? ids.ne(data::token::pad).logical_and_(ids.ge(0))
                    : at::ones_like(ids, at::kBool);
    if (mask_) ok.select(1, 0).fill_(true);  // an all-padding row still attends somewhere
    return join(h, ok);
  }

 private:
  bool mask_;
  std::shared_ptr<nn::Embedding> emb_;
  at::Tensor pos_;
};

// Images [B, C, H, W] -> non-overlapping p x p patches, linearly embedded: [B, N, D + 1].
class PatchEmbed final : public Block {
 public:
  PatchEmbed(int64_t channels, int64_t patches, int64_t p, int64_t d) {
    proj_ = register_module("proj", std::make_shared<nn::Conv2d>(channels, d, p, p));
    pos_ = learned_positions(*this, patches, d, "positions");
  }
  at::Tensor forward(const at::Tensor& x) override {
    auto h = proj_->forward(x).flatten(2).transpose(1, 2) + pos_;
    return join(h, at::ones({h.size(0), h.size(1)}, x.options().dtype(at::kBool)));
  }

 private:
  std::shared_ptr<nn::Conv2d> proj_;
  at::Tensor pos_;
};

// A layer over the whole stream (encoder: key padding mask; decoder-only: causal).
class StreamLayer final : public Block {
 public:
  StreamLayer(const TransformerOptions& o, bool causal) : causal_(causal) {
    layer_ = register_module("layer", std::make_shared<Layer>(builtin_layer(o, false)));
  }
  at::Tensor forward(const at::Tensor& x) override {
    auto ok = attendable(x);
    return join(layer_->forward(features(x), causal_ ? at::Tensor() : ok, causal_), ok);
  }

 private:
  bool causal_;
  std::shared_ptr<Layer> layer_;
};

// Classifier head: LayerNorm, mean over attendable positions, Linear -> [B, classes].
class PoolHead final : public Block {
 public:
  PoolHead(int64_t d, int64_t classes) {
    ln_ = register_module("ln", torch::nn::LayerNorm(torch::nn::LayerNormOptions({d})));
    fc_ = register_module("fc", std::make_shared<nn::Linear>(d, classes));
  }
  at::Tensor forward(const at::Tensor& x) override {
    auto w = attendable(x).unsqueeze(-1).to(x.scalar_type());
    auto pooled = (ln_->forward(features(x)) * w).sum(1) / w.sum(1);
    return fc_->forward(pooled);
  }

 private:
  torch::nn::LayerNorm ln_{nullptr};
  std::shared_ptr<nn::Linear> fc_;
};

// Token head: LayerNorm, Linear -> [B, L', V] over positions [from, end); within a decode that
// reads the next token only (decode_last_only()), over the last position: [B, 1, V].
class TokenHead final : public Block {
 public:
  TokenHead(int64_t d, int64_t vocab, int64_t from) : from_(from) {
    ln_ = register_module("ln", torch::nn::LayerNorm(torch::nn::LayerNormOptions({d})));
    fc_ = register_module("fc", std::make_shared<nn::Linear>(d, vocab));
  }
  at::Tensor forward(const at::Tensor& x) override {
    auto h = features(x);
    const int64_t first = decode_last_only() && !is_training() ? h.size(1) - 1 : from_;
    return fc_->forward(ln_->forward(h.narrow(1, first, h.size(1) - first)));
  }

 private:
  int64_t from_;
  torch::nn::LayerNorm ln_{nullptr};
  std::shared_ptr<nn::Linear> fc_;
};

// Seq2seq embedding: source positions [0, S) and decoder positions [S, S + T) share the token
// table and have their own learned positions. Source padding is not attendable.
class Seq2SeqEmbed final : public Block {
 public:
  Seq2SeqEmbed(int64_t vocab, int64_t source_len, int64_t target_len, int64_t d)
      : source_len_(source_len) {
    emb_ = register_module("tokens", std::make_shared<nn::Embedding>(vocab, d));
    src_pos_ = learned_positions(*this, source_len, d, "source_positions");
    tgt_pos_ = learned_positions(*this, target_len, d, "target_positions");
  }
  at::Tensor forward(const at::Tensor& ids) override {
    const int64_t t = ids.size(1) - source_len_;
    SCULPT_CHECK(t >= 1 && t <= tgt_pos_.size(0), "seq2seq input of ", ids.size(1),
                 " tokens: expected ", source_len_, " source tokens and 1 to ", tgt_pos_.size(0),
                 " decoder tokens");
    if (decoding() && !is_training()) {
      // Within a decode the source half is the same at every step: embedded once, and only
      // the decoder tokens each step (all attendable: the decoder masks them causally). With
      // the int8 table's gather this block went from 9% to 5% of the man-page GR student's
      // batch-1 beam search (beam 10: 160 source rows a step, now 10 decoder rows).
      auto src = memoize_source(this, false, ids.narrow(1, 0, source_len_),
                                [&](const at::Tensor& rows) {
                                  auto h = emb_->forward(rows.clamp_min(0)) + src_pos_;
                                  return join(h, attendable_source(rows));
                                });
      auto h = emb_->forward(ids.narrow(1, source_len_, t).clamp_min(0)) +
               tgt_pos_.narrow(0, 0, t);
      return at::cat({src, at::constant_pad_nd(h, {0, 1}, 1.0)}, 1);
    }
    auto h = emb_->forward(ids.clamp_min(0)) + at::cat({src_pos_, tgt_pos_.narrow(0, 0, t)}, 0);
    auto ok = ids.ne(data::token::pad).logical_and_(ids.ge(0));  // negative ids: padding
    ok.narrow(1, source_len_, t).fill_(true);  // decoder positions are masked causally instead
    ok.select(1, 0).fill_(true);
    return join(h, ok);
  }

 private:
  // The source positions that may be attended to: not padding, and the first always.
  static at::Tensor attendable_source(const at::Tensor& ids) {
    auto ok = ids.ne(data::token::pad).logical_and_(ids.ge(0));  // negative ids: padding
    ok.select(1, 0).fill_(true);
    return ok;
  }
  int64_t source_len_;
  std::shared_ptr<nn::Embedding> emb_;
  at::Tensor src_pos_, tgt_pos_;
};

// The stream with its source positions [0, s) replaced by f(those positions).
template <class F>
at::Tensor on_source(const at::Tensor& x, int64_t s, F&& f) {
  return at::cat({f(x.narrow(1, 0, s)), x.narrow(1, s, x.size(1) - s)}, 1);
}

// Encoder layer of a seq2seq model: acts on the source positions, passes the rest through.
// Within a decode (DecodeScope) the same source gives the same output, computed once.
class SourceLayer final : public Block {
 public:
  SourceLayer(const TransformerOptions& o, int64_t source_len) : source_len_(source_len) {
    layer_ = register_module("layer", std::make_shared<Layer>(builtin_layer(o, false)));
  }
  at::Tensor forward(const at::Tensor& x) override {
    return on_source(x, source_len_, [&](const at::Tensor& src) {
      return memoize_source(this, is_training(), src, [&](const at::Tensor& rows) {
        auto ok = attendable(rows);
        return join(layer_->forward(features(rows), ok, false), ok);
      });
    });
  }

 private:
  int64_t source_len_;
  std::shared_ptr<Layer> layer_;
};

// The encoder's final LayerNorm (on the source positions): what the decoder attends to.
class SourceNorm final : public Block {
 public:
  SourceNorm(int64_t d, int64_t source_len) : source_len_(source_len) {
    ln_ = register_module("ln", torch::nn::LayerNorm(torch::nn::LayerNormOptions({d})));
  }
  at::Tensor forward(const at::Tensor& x) override {
    return on_source(x, source_len_, [&](const at::Tensor& src) {
      return memoize_source(this, is_training(), src, [&](const at::Tensor& rows) {
        return join(ln_->forward(features(rows)), attendable(rows));
      });
    });
  }

 private:
  int64_t source_len_;
  torch::nn::LayerNorm ln_{nullptr};
};

// Decoder layer: causal self-attention over the decoder positions, cross-attention to the
// (normalized) source positions.
class TargetLayer final : public Block {
 public:
  TargetLayer(const TransformerOptions& o, int64_t source_len) : source_len_(source_len) {
    layer_ = register_module("layer", std::make_shared<Layer>(builtin_layer(o, true)));
  }
  at::Tensor forward(const at::Tensor& x) override {
    auto src = x.narrow(1, 0, source_len_);
    auto tgt = x.narrow(1, source_len_, x.size(1) - source_len_);
    auto h = layer_->forward(features(tgt), {}, true, features(src), attendable(src));
    return at::cat({src, join(h, attendable(tgt))}, 1);
  }

 private:
  int64_t source_len_;
  std::shared_ptr<Layer> layer_;
};

const TransformerOptions& options_of(const config::ModelConfig& c) {
  static const TransformerOptions defaults;
  return c.options ? dynamic_cast<const TransformerOptions&>(*c.options) : defaults;
}

std::unique_ptr<Model> make_encoder(const TransformerOptions& o, const data::DataSpec& spec) {
  SCULPT_CHECK(spec.num_classes > 0, "model transformer_encoder: the dataset has no classes");
  auto m = std::make_unique<Model>("transformer_encoder");
  m->set_channel_removal(Model::ChannelRemoval::feed_forward);
  if (spec.vocab_size > 0) {
    SCULPT_CHECK(spec.input_shape.size() == 1 && spec.source_len == 0,
                 "model transformer_encoder: needs token rows [L] or images [C, H, W]");
    m->add_block("embed", std::make_shared<TokenEmbed>(spec.vocab_size, spec.input_shape[0],
                                                       o.d_model, /*mask_padding=*/true));
  } else {
    SCULPT_CHECK(spec.input_shape.size() == 3,
                 "model transformer_encoder: needs token rows [L] or images [C, H, W]");
    const int64_t h = spec.input_shape[1], w = spec.input_shape[2], p = o.patch_size;
    SCULPT_CHECK(h % p == 0 && w % p == 0, "model transformer_encoder: patch_size ", p,
                 " does not divide the ", h, "x", w, " images");
    m->add_block("embed", std::make_shared<PatchEmbed>(spec.input_shape[0], (h / p) * (w / p),
                                                       p, o.d_model));
  }
  for (int64_t i = 0; i < o.layers; ++i)
    m->add_block("layer" + std::to_string(i), std::make_shared<StreamLayer>(o, false));
  m->add_block("head", std::make_shared<PoolHead>(o.d_model, spec.num_classes));
  return m;
}

std::unique_ptr<Model> make_lm(const TransformerOptions& o, const data::DataSpec& spec) {
  SCULPT_CHECK(spec.vocab_size > 0 && spec.input_shape.size() == 1 && spec.source_len == 0,
               "model transformer_lm: needs a token dataset (e.g. tokens)");
  auto m = std::make_unique<Model>("transformer_lm");
  m->set_channel_removal(Model::ChannelRemoval::feed_forward);
  m->add_block("embed", std::make_shared<TokenEmbed>(spec.vocab_size, spec.input_shape[0],
                                                     o.d_model, /*mask_padding=*/false));
  for (int64_t i = 0; i < o.layers; ++i)
    m->add_block("layer" + std::to_string(i), std::make_shared<StreamLayer>(o, true));
  m->add_block("head", std::make_shared<TokenHead>(o.d_model, spec.vocab_size, 0));
  return m;
}

std::unique_ptr<Model> make_seq2seq(const TransformerOptions& o, const data::DataSpec& spec) {
  SCULPT_CHECK(spec.vocab_size > 0 && spec.source_len > 0 && spec.input_shape.size() == 1 &&
                   spec.input_shape[0] > spec.source_len,
               "model transformer_seq2seq: needs a seq2seq dataset (jsonl query/target)");
  const int64_t s = spec.source_len, t = spec.input_shape[0] - s;
  auto m = std::make_unique<Model>("transformer_seq2seq");
  m->set_channel_removal(Model::ChannelRemoval::feed_forward);
  m->add_block("embed", std::make_shared<Seq2SeqEmbed>(spec.vocab_size, s, t, o.d_model));
  for (int64_t i = 0; i < o.layers; ++i)
    m->add_block("enc" + std::to_string(i), std::make_shared<SourceLayer>(o, s));
  m->add_block("enc_norm", std::make_shared<SourceNorm>(o.d_model, s));
  const int64_t dec = o.decoder_layers > 0 ? o.decoder_layers : o.layers;
  for (int64_t i = 0; i < dec; ++i)
    m->add_block("dec" + std::to_string(i), std::make_shared<TargetLayer>(o, s));
  m->add_block("head", std::make_shared<TokenHead>(o.d_model, spec.vocab_size, s));
  return m;
}

}  // namespace

void add_transformers(ModelRegistry& r) {
  auto options = [] { return std::make_shared<TransformerOptions>(); };
  r.add(
      "transformer_encoder",
      "transformer classifier over token rows or image patches (ViT-style), mean-pooled",
      [](const config::ModelConfig& c, const data::DataSpec& spec) {
        return make_encoder(options_of(c), spec);
      },
      options);
  r.add(
      "transformer_lm", "decoder-only causal transformer: next-token logits [B, T, vocab]",
      [](const config::ModelConfig& c, const data::DataSpec& spec) {
        return make_lm(options_of(c), spec);
      },
      options);
  r.add(
      "transformer_seq2seq",
      "encoder-decoder transformer: source + decoder input -> logits [B, T, vocab]",
      [](const config::ModelConfig& c, const data::DataSpec& spec) {
        return make_seq2seq(options_of(c), spec);
      },
      options);
}

}  // namespace sculpt::models
