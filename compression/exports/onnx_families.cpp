// The families' writers of onnx_emitter.h: each model family's blocks walked into ONNX nodes.
#include <torch/nn/modules/activation.h>
#include <torch/nn/modules/batchnorm.h>
#include <torch/nn/modules/dropout.h>
#include <torch/nn/modules/linear.h>
#include <torch/nn/modules/normalization.h>
#include <torch/nn/modules/pooling.h>

#include <cmath>

#include "compression/exports/onnx_emitter.h"
#include "compression/exports/onnx_s2d.h"
#include "core/data/dataset.h"

namespace sculpt::compression::onnx_graph {

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

namespace {

// mlp, lenet5: blocks of torch::nn::Sequential. A quantized layer's output is quantized with the
// next quantized layer's input grid when only ReLU / max-pooling / flatten / dropout come between.
// `shape`: the input's [C, H, W] (images), for the space-to-depth form of small quantized convs.
std::string emit_sequential(Emitter& e, std::string x, int* rank, const std::vector<int64_t>& shape) {
  Flat flat;
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
  const std::vector<S2dStep> s2d = plan_s2d(e, flat, shape);
  std::optional<QAct> carry;
  bool in_run = false;  // the value is in a space-to-depth layout
  // After a run, a Flatten + Linear flattens channels last (x transposed to NHWC, the Linear's
  // columns reordered to match): ONNX Runtime then keeps the int8 convolutions' NHWC output as
  // it is instead of transposing it back.
  std::vector<int64_t> nhwc;  // the pooled output's [C, H, W] when the next Flatten does that
  for (size_t i = 0; i < flat.size(); ++i) {
    const auto& [name, m] = flat[i];
    const bool compressible = std::dynamic_pointer_cast<nn::Compressible>(m) != nullptr;
    if (compressible) {
      const QLayer* q = e.quant_of(name);
      // the input already on this layer's grid (the previous layer's output Q/DQ): not twice
      e.skip_input_qdq = carry && q && q->act && *carry == *q->act;
      carry.reset();
      for (size_t j = i + 1 + (s2d[i].block ? 2 : 0); j < flat.size(); ++j) {
        if (std::dynamic_pointer_cast<nn::Compressible>(flat[j].second)) {
          const QLayer* nq = e.quant_of(flat[j].first);
          if (q && nq && nq->act) carry = *nq->act;
          break;
        }
        if (!passes_grid(*flat[j].second)) break;
      }
      if (s2d[i].block) {  // conv + ReLU + max-pool at once
        x = emit_s2d_triple(e, x, name, s2d[i], !in_run, carry, flat[i + 1].first, flat[i + 2].first);
        in_run = s2d[i].block > 2;
        if (!in_run) {
          size_t j = i + 3;
          auto is = [&](size_t k, auto* type) {
            return k < flat.size() && dynamic_cast<decltype(type)>(flat[k].second.get()) != nullptr;
          };
          const bool flatten = is(j, static_cast<torch::nn::FlattenImpl*>(nullptr));
          size_t k = j + 1;
          while (is(k, static_cast<torch::nn::DropoutImpl*>(nullptr))) ++k;
          if (flatten && k < flat.size() && std::dynamic_pointer_cast<nn::Linear>(flat[k].second))
            nhwc = {std::dynamic_pointer_cast<nn::Conv2d>(m)->out_channels, s2d[i].pooled_h, s2d[i].pooled_w};
        }
        i += 2;  // the pooled output is on `carry`'s grid already
        continue;
      }
      if (std::dynamic_pointer_cast<nn::Conv2d>(m)) {
        x = e.conv(x, name);
      } else if (std::dynamic_pointer_cast<nn::Linear>(m)) {
        x = e.linear(x, name, *rank);
      } else {
        throw UserError("export onnx: " + name + " (" + m->name() + ") has no ONNX translation here");
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
      if (!nhwc.empty()) {
        x = e.gb.op("Transpose", {x}, {ais("perm", {0, 2, 3, 1})}, name + ".channels_last");
        // feature (y, x, c) of the NHWC flattening is feature (c, y, x) of the model's
        e.linear_input_order = at::arange(nhwc[0] * nhwc[1] * nhwc[2], at::kLong)
                                   .reshape({nhwc[0], nhwc[1], nhwc[2]})
                                   .permute({1, 2, 0})
                                   .flatten()
                                   .contiguous();
        nhwc.clear();
      }
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
  SCULPT_ASSERT(!in_run, "export onnx: a space-to-depth run left unfinished");
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

}  // namespace

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

void emit_model(Emitter& e, const config::Config& cfg, const data::DataSpec& spec,
                std::vector<std::string>* dims) {
  models::hf::Arch arch;
  const Kind kind = kind_of(cfg, spec, &arch);
  auto& gb = e.gb;
  const auto blocks = e.model_.block_names();
  using V = onnxw::Value;
  auto text_in = [&](const char* name, const char* seq) {
    gb.g.inputs.push_back(V{name, onnxw::kInt64, {"batch", seq}});
    return std::string(name);
  };
  std::string out;
  const std::string mname = e.model_.name();
  std::vector<std::string>& out_dims = *dims;
  if (kind == Kind::dense) {
    V in{"input", onnxw::kFloat, {"batch"}};
    for (auto d : spec.input_shape) in.dims.push_back(dim(d));
    gb.g.inputs.push_back(in);
    int rank = static_cast<int>(in.dims.size());
    if (mname.rfind("resnet", 0) == 0) {
      out = emit_resnet(e, "input");
    } else if (mname == "lenet5" || mname == "mlp") {
      out = emit_sequential(e, "input", &rank, spec.input_shape);
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
        e.layer<nn::Embedding>("embed.tokens");
        const std::string w = e.tied_table("embed.tokens");
        out = gb.op("MatMul", {h, gb.op("Transpose", {w}, {ais("perm", {1, 0})})}, {}, "head");
      }
      if (e.has("head.bias")) out = gb.op("Add", {out, gb.init("head.bias", e.T("head.bias"))});
      out_dims = {"batch", t5 ? "decoder_sequence" : "sequence", dim(arch.vocab)};
    }
  }
  // The graph output is named `logits`.
  gb.g.nodes.push_back(onnxw::Node{"Identity", "logits/Identity", "", {out}, {"logits"}, {}});
}

}  // namespace sculpt::compression::onnx_graph
