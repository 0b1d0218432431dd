// The sequential writer's space-to-depth convolutions: planned (plan_s2d) and written.
#include "compression/exports/onnx_s2d.h"

#include <torch/nn/modules/activation.h>
#include <torch/nn/modules/linear.h>
#include <torch/nn/modules/pooling.h>

namespace sculpt::compression::onnx_graph {

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

}  // namespace sculpt::compression::onnx_graph
