// The families' writers of onnx_emitter.h: each model family's blocks walked into ONNX nodes.
#include <torch/nn/modules/activation.h>
#include <torch/nn/modules/batchnorm.h>
#include <torch/nn/modules/dropout.h>
#include <torch/nn/modules/linear.h>
#include <torch/nn/modules/normalization.h>
#include <torch/nn/modules/pooling.h>

#include <cmath>

#include "compression/exports/onnx_emitter.h"
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

using Flat = std::vector<std::pair<std::string, std::shared_ptr<torch::nn::Module>>>;

// ---- space-to-depth convolutions ----
// ONNX Runtime's int8 convolution (QLinearConv) costs about the same per output pixel whatever
// the channel count, so a convolution with few channels (LeNet-5's 1 -> 6 and 6 -> 16) runs
// slower in int8 than ONNX Runtime's float kernels (1.32, x86 with VNNI, batch 64: 4x slower at
// 1 -> 6 channels on 28x28, 0.9x at 6 -> 16, 0.37x from 16 -> 16 on; bench/onnx_export.sh
// measures LeNet-5 as a whole). Written on
// the SpaceToDepth(b) of its input it has b^2 times the channels and 1/b^2 of the pixels: the
// same integer products (the weight rearranged, zeros where a tap falls outside the kernel),
// hence the same outputs, bit for bit. A ReLU + 2x2 max-pool after it becomes the max over the
// four output phases of each pooled pixel (Slice + Max on the quantized values, no DepthToSpace,
// which would stop ONNX Runtime's QDQ fusion), which leaves the pooled map in SpaceToDepth(b/2)
// layout: the next such convolution takes it as its input with b/2, the last (b = 2) leaves the
// plain layout again. So a run of n conv+ReLU+pool triples starts with b = 2^n (n <= 2 here).

struct S2dStep {
  int64_t block = 0;      // b for the conv at this index (0: written plainly)
  int64_t pad_h = 0, pad_w = 0;  // first of a run: the float input padded (bottom/right extra)
  int64_t blocks_pad = 0;        // later in a run: the conv's padding in blocks
  int64_t pooled_h = 0, pooled_w = 0;  // the pooled output's size (plain layout)
};

// For each index of `flat`, the s2d form of the conv there (block 0 where there is none).
std::vector<S2dStep> plan_s2d(Emitter& e, const Flat& flat, std::vector<int64_t> shape) {
  std::vector<S2dStep> plan(flat.size());
  if (shape.size() != 3) return plan;
  struct Triple { size_t at; int64_t h, w; };  // a conv+ReLU+pool and its input's size
  std::vector<Triple> triples;
  int64_t h = shape[1], w = shape[2];
  for (size_t i = 0; i < flat.size(); ++i) {
    const auto& m = flat[i].second;
    if (auto c = std::dynamic_pointer_cast<nn::Conv2d>(m)) {
      const QLayer* q = e.quant_of(flat[i].first);
      const auto* pool = i + 2 < flat.size() ? dynamic_cast<torch::nn::MaxPool2dImpl*>(flat[i + 2].second.get()) : nullptr;
      const bool relu = i + 1 < flat.size() && dynamic_cast<torch::nn::ReLUImpl*>(flat[i + 1].second.get());
      bool ok = q && q->act && q->w.symmetric && q->w.granularity != quant::Granularity::per_group &&
                (q->w.granularity == quant::Granularity::per_tensor || q->w.axis == 0) &&
                c->stride == 1 && c->groups == 1 && relu && pool;
      if (ok) {
        const auto& o = pool->options;
        ok = o.kernel_size()->at(0) == 2 && o.kernel_size()->at(1) == 2 && o.stride()->at(0) == 2 &&
             o.stride()->at(1) == 2 && o.padding()->at(0) == 0 && o.padding()->at(1) == 0 &&
             o.dilation()->at(0) == 1 && o.dilation()->at(1) == 1 && !o.ceil_mode();
      }
      if (ok) triples.push_back({i, h, w});
      h = (h + 2 * c->padding - c->kernel_size) / c->stride + 1;
      w = (w + 2 * c->padding - c->kernel_size) / c->stride + 1;
    } else if (auto p = dynamic_cast<torch::nn::MaxPool2dImpl*>(m.get())) {
      const auto& o = p->options;
      h = (h + 2 * o.padding()->at(0) - o.dilation()->at(0) * (o.kernel_size()->at(0) - 1) - 1) / o.stride()->at(0) + 1;
      w = (w + 2 * o.padding()->at(1) - o.dilation()->at(1) * (o.kernel_size()->at(1) - 1) - 1) / o.stride()->at(1) + 1;
    } else if (dynamic_cast<torch::nn::FlattenImpl*>(m.get()) || std::dynamic_pointer_cast<nn::Linear>(m)) {
      break;
    }
  }
  // Runs of back-to-back triples, in pieces of at most two, each checked as a whole.
  for (size_t t = 0; t < triples.size();) {
    size_t n = 1;
    if (t + 1 < triples.size() && triples[t + 1].at == triples[t].at + 3) n = 2;
    for (; n >= 1; --n) {
      std::vector<S2dStep> steps(n);
      bool ok = true;
      for (size_t j = 0; j < n && ok; ++j) {
        const Triple& tr = triples[t + j];
        auto c = std::dynamic_pointer_cast<nn::Conv2d>(flat[tr.at].second);
        const int64_t b = int64_t{1} << (n - j), k = c->kernel_size, p = c->padding;
        const int64_t ho = tr.h + 2 * p - k + 1, wo = tr.w + 2 * p - k + 1;
        const int64_t kb = (k + b - 2) / b + 1;  // the kernel in blocks
        ok = ho > 0 && wo > 0 && ho % b == 0 && wo % b == 0;
        S2dStep& s = steps[j];
        s.block = b;
        s.pooled_h = ho / 2;
        s.pooled_w = wo / 2;
        if (j == 0) {  // from the plain layout: pad the float input to whole blocks
          if (c->in_channels >= 16) ok = false;  // enough channels for ONNX Runtime as it is
          const int64_t hp = (tr.h + 2 * p + b - 1) / b * b, wp = (tr.w + 2 * p + b - 1) / b * b;
          s.pad_h = hp - tr.h - 2 * p;
          s.pad_w = wp - tr.w - 2 * p;
          ok = ok && hp / b - kb + 1 == ho / b && wp / b - kb + 1 == wo / b;
        } else {  // from the previous pool's SpaceToDepth(b) layout
          ok = ok && p % b == 0 && tr.h % b == 0 && tr.w % b == 0 &&
               (tr.h + 2 * p) / b - kb + 1 == ho / b && (tr.w + 2 * p) / b - kb + 1 == wo / b;
          s.blocks_pad = p / b;
        }
      }
      if (!ok) continue;
      for (size_t j = 0; j < n; ++j) plan[triples[t + j].at] = steps[j];
      break;
    }
    t += std::max<size_t>(n, 1);
  }
  return plan;
}

// Conv `name` + ReLU + 2x2 max-pool on x in space-to-depth form (see above); x is the float
// input (first of a run: plain layout, padded and rearranged here) or the previous pool's output
// (SpaceToDepth(step.block) layout). `carry`: the next quantized layer's input grid.
std::string emit_s2d_triple(Emitter& e, std::string x, const std::string& name, const S2dStep& step,
                            bool first, const std::optional<QAct>& carry, const std::string& relu_name,
                            const std::string& pool_name) {
  auto& gb = e.gb;
  auto c = e.layer<nn::Conv2d>(name);
  const QLayer& q = *e.quant_of(name);
  const int64_t b = step.block, k = c->kernel_size, O = c->out_channels, C = c->in_channels;
  const int64_t kb = (k + b - 2) / b + 1, hb = b / 2;
  if (first) {
    // SpaceToDepth(b) of the zero-padded float input, as a float convolution with one-hot b x b
    // kernels (stride b; its pads do the padding): exact (one product by 1 and zeros), and where
    // ONNX Runtime runs Pad + SpaceToDepth as two slow copies it runs one fast float kernel.
    const int64_t p = c->padding;
    at::Tensor onehot = at::zeros({b * b * C, C, b, b}, at::kFloat);
    for (int64_t qy = 0; qy < b; ++qy)
      for (int64_t qx = 0; qx < b; ++qx)
        for (int64_t ch = 0; ch < C; ++ch) onehot[(qy * b + qx) * C + ch][ch][qy][qx] = 1.0f;
    x = gb.op("Conv", {x, gb.init(name + ".space_to_depth", onehot, false)},
              {ais("kernel_shape", {b, b}), ais("strides", {b, b}),
               ais("pads", {p, p, p + step.pad_h, p + step.pad_w}), ai("group", 1), ais("dilations", {1, 1})},
              name + ".space_to_depth");
    x = e.qdq(x, *q.act, name + ".input");
  } else if (!e.skip_input_qdq) {
    x = e.qdq(x, *q.act, name + ".input");
  }
  e.skip_input_qdq = false;
  // Output channel (sy, sx, by, bx, o) for the output phase (py, px) = (2 by + sy, 2 bx + sx):
  // the four sub-phases of each 2x2 pool window are contiguous slices of (b/2)^2 O channels.
  auto out_channel = [&](int64_t py, int64_t px, int64_t o) {
    return (((py % 2) * 2 + (px % 2)) * hb * hb + (py / 2) * hb + (px / 2)) * O + o;
  };
  const at::Tensor grid = q.grid.to(at::kChar).contiguous();  // [O, C, k, k], symmetric: zero is 0
  at::Tensor wq = at::zeros({b * b * O, b * b * C, kb, kb}, at::kChar);
  at::Tensor scale = at::empty({b * b * O}, at::kFloat);
  const at::Tensor ws = q.w_scale.flatten().to(at::kFloat).contiguous();
  const bool per_tensor = q.w.granularity == quant::Granularity::per_tensor;
  std::vector<int64_t> perm(b * b * O);  // new channel -> original output channel
  for (int64_t py = 0; py < b; ++py)
    for (int64_t px = 0; px < b; ++px)
      for (int64_t o = 0; o < O; ++o) {
        const int64_t oc = out_channel(py, px, o);
        perm[oc] = o;
        for (int64_t qy = 0; qy < b; ++qy)
          for (int64_t qx = 0; qx < b; ++qx)
            for (int64_t ky = 0; ky < kb; ++ky)
              for (int64_t kx = 0; kx < kb; ++kx) {
                const int64_t dy = b * ky + qy - py, dx = b * kx + qx - px;
                if (dy < 0 || dy >= k || dx < 0 || dx >= k) continue;
                wq.select(0, oc).narrow(0, (qy * b + qx) * C, C).select(1, ky).select(1, kx)
                    .copy_(grid.select(0, o).select(1, dy).select(1, dx));
              }
      }
  const at::Tensor idx = at::tensor(perm, at::kLong);
  const std::string wname = gb.op(
      "DequantizeLinear",
      {gb.init(name + ".weight_quantized", wq, /*count=*/false),
       per_tensor ? gb.init(name + ".weight_scale", ws.reshape({}), false)
                  : gb.init(name + ".weight_scale", ws.index_select(0, idx), false),
       per_tensor ? gb.init(name + ".weight_zero_point", at::zeros({}, at::kChar), false)
                  : gb.init(name + ".weight_zero_point", at::zeros({b * b * O}, at::kChar), false)},
      per_tensor ? std::vector<Attr>{} : std::vector<Attr>{ai("axis", 0)}, name + ".weight");
  gb.parameters += q.grid.numel();  // the model's weights; the zeros added are not parameters
  e.quantized.push_back(name);
  e.space_to_depth.push_back(name + ": SpaceToDepth(" + std::to_string(b) + ")");
  e.note_step(&q);
  Strs in = {x, wname};
  const at::Tensor bias = q.bias.defined() ? q.bias : (c->bias().defined() ? c->bias().detach() : at::Tensor());
  if (bias.defined()) {  // int32 at input scale x weight scale, as QDQ runtimes expect
    const at::Tensor s = (ws.expand({O}) * q.act->scale).to(at::kFloat).contiguous();
    const at::Tensor bq = at::round(bias.to(at::kFloat) / s).clamp(-2147483647.0, 2147483647.0).to(at::kInt);
    in.push_back(gb.op("DequantizeLinear",
                       {gb.init(name + ".bias_quantized", bq.index_select(0, idx)),
                        gb.init(name + ".bias_scale", s.index_select(0, idx), false),
                        gb.init(name + ".bias_zero_point", at::zeros({b * b * O}, at::kInt), false)},
                       {ai("axis", 0)}, name + ".bias"));
  }
  const int64_t pb = step.blocks_pad;
  std::string y = gb.op("Conv", in,
                        {ais("kernel_shape", {kb, kb}), ais("strides", {1, 1}), ais("pads", {pb, pb, pb, pb}),
                         ai("group", 1), ais("dilations", {1, 1})},
                        name);
  if (carry) y = e.qdq(y, *carry, name + ".output");
  y = gb.op("Relu", {y}, {}, relu_name);
  if (carry) y = e.qdq(y, *carry, relu_name + ".output");
  // the 2x2 max-pool: the max of the four sub-phase slices, on the quantized values when the
  // next layer's grid is known (uint8/int8 Max), else in float
  const int64_t n = hb * hb * O;
  std::string t = y;
  std::string zp;
  if (carry) {
    const bool u = carry->qmin >= 0;
    zp = gb.init(pool_name + ".zero_point", u ? at::scalar_tensor(carry->zp, at::kByte)
                                               : at::scalar_tensor(carry->zp, at::kChar), false);
    t = gb.op("QuantizeLinear", {y, gb.f32(carry->scale), zp}, {}, pool_name + ".q");
  }
  Strs parts;
  for (int64_t i = 0; i < 4; ++i)
    parts.push_back(gb.op("Slice", {t, gb.i64s({i * n}), gb.i64s({(i + 1) * n}), gb.i64s({1})}, {},
                          pool_name + ".phase"));
  std::string pooled = gb.op("Max", parts, {}, pool_name);
  if (carry) pooled = gb.op("DequantizeLinear", {pooled, gb.f32(carry->scale), zp}, {}, pool_name + ".output");
  return pooled;
}

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
