// CIFAR-style ResNet (He et al. 2016, §4.2): a 3x3 stem, three stages of n basic blocks with
// 16w/32w/64w channels (stride 1, 2, 2), global average pooling and a linear head;
// depth = 6n + 2 (20, 32, 56, ...). Shortcuts that change shape are 1x1 conv + BN.
#include <torch/nn/functional/activation.h>
#include <torch/nn/modules/batchnorm.h>
#include <torch/nn/modules/linear.h>

#include <cmath>

#include "core/error.h"
#include "core/models/builtin_models.h"
#include "core/nn/layers.h"

namespace sculpt::models {

namespace {

class BasicBlock final : public Block {
 public:
  BasicBlock(int64_t in, int64_t out, int64_t stride) {
    conv1_ = register_module("conv1", std::make_shared<nn::Conv2d>(in, out, 3, stride, 1, false));
    bn1_ = register_module("bn1", torch::nn::BatchNorm2d(out));
    conv2_ = register_module("conv2", std::make_shared<nn::Conv2d>(out, out, 3, 1, 1, false));
    bn2_ = register_module("bn2", torch::nn::BatchNorm2d(out));
    if (stride != 1 || in != out) {
      down_ = register_module("down", std::make_shared<nn::Conv2d>(in, out, 1, stride, 0, false));
      down_bn_ = register_module("down_bn", torch::nn::BatchNorm2d(out));
    }
  }
  // conv -> BN pairs inside the block (relative names).
  std::vector<std::pair<std::string, std::string>> norm_pairs() const {
    std::vector<std::pair<std::string, std::string>> p{{"conv1", "bn1"}, {"conv2", "bn2"}};
    if (down_) p.emplace_back("down", "down_bn");
    return p;
  }
  at::Tensor forward(const at::Tensor& x) override {
    auto y = at::relu(bn1_->forward(conv1_->forward(x)));
    y = bn2_->forward(conv2_->forward(y));
    auto shortcut = down_ ? down_bn_->forward(down_->forward(x)) : x;
    return at::relu(y + shortcut);
  }

 private:
  std::shared_ptr<nn::Conv2d> conv1_, conv2_, down_;
  torch::nn::BatchNorm2d bn1_{nullptr}, bn2_{nullptr}, down_bn_{nullptr};
};

class Stem final : public Block {
 public:
  Stem(int64_t in, int64_t out) {
    conv_ = register_module("conv", std::make_shared<nn::Conv2d>(in, out, 3, 1, 1, false));
    bn_ = register_module("bn", torch::nn::BatchNorm2d(out));
  }
  at::Tensor forward(const at::Tensor& x) override {
    return at::relu(bn_->forward(conv_->forward(x)));
  }

 private:
  std::shared_ptr<nn::Conv2d> conv_;
  torch::nn::BatchNorm2d bn_{nullptr};
};

class Head final : public Block {
 public:
  Head(int64_t in, int64_t classes) {
    fc_ = register_module("fc", std::make_shared<nn::Linear>(in, classes));
  }
  at::Tensor forward(const at::Tensor& x) override { return fc_->forward(x.mean({2, 3})); }

 private:
  std::shared_ptr<nn::Linear> fc_;
};

}  // namespace

void ResNetOptions::visit(config::Visitor& v) {
  v.field("depth", depth, "resnet: 6n+2 layers (20, 32, 56, 110)", config::Range::at_least(8));
  v.field("width", width, "resnet: channel multiplier of the 16/32/64 stages",
          config::Range::above(0));
}

void ResNetOptions::check(config::Checker& c) const {
  if ((depth - 2) % 6 != 0)
    c.error("depth", "resnet depth must be 6n+2 (20, 32, 56, ...); got " + std::to_string(depth));
}

void add_resnet(ModelRegistry& r) {
  r.add(
      "resnet", "CIFAR-style ResNet, depth 6n+2 (20/32/56), width multiplier; BN, 1x1 shortcuts",
      [](const config::ModelConfig& c, const data::DataSpec& spec) {
        const auto o = c.options ? dynamic_cast<const ResNetOptions&>(*c.options) : ResNetOptions{};
        SCULPT_CHECK(spec.input_shape.size() == 3, "model resnet: needs image data [C, H, W]");
        SCULPT_CHECK(spec.num_classes > 0, "model resnet: the dataset has no classes");
        const int64_t n = (o.depth - 2) / 6;
        auto ch = [&](int64_t base) { return std::max<int64_t>(1, std::llround(base * o.width)); };
        auto m = std::make_unique<Model>("resnet" + std::to_string(o.depth));
        m->set_channel_removal(Model::ChannelRemoval::basic_blocks);
        m->add_block("stem", std::make_shared<Stem>(spec.input_shape[0], ch(16)));
        m->add_norm_pair("stem.conv", "stem.bn");
        int64_t in = ch(16);
        // The residual stream of each width: the layers adding into it and those reading it.
        Model::ChannelGroup stream{"stem", {"stem.conv"}, {}};
        for (int stage = 0; stage < 3; ++stage) {
          const int64_t out = ch(16 << stage);
          for (int64_t i = 0; i < n; ++i) {
            const int64_t stride = (stage > 0 && i == 0) ? 2 : 1;
            const std::string name = "stage" + std::to_string(stage + 1) + "_" + std::to_string(i);
            auto block = std::make_shared<BasicBlock>(in, out, stride);
            m->add_block(name, block);
            bool down = false;
            for (const auto& [conv, bn] : block->norm_pairs()) {
              m->add_norm_pair(name + "." + conv, name + "." + bn);
              down = down || conv == "down";
            }
            stream.consumers.push_back(name + ".conv1");
            if (down) {  // a new stream starts at the 1x1 shortcut
              stream.consumers.push_back(name + ".down");
              m->add_channel_group(stream);
              stream = {name, {name + ".down"}, {}};
            }
            stream.producers.push_back(name + ".conv2");
            in = out;
          }
        }
        m->add_block("head", std::make_shared<Head>(in, spec.num_classes));
        stream.consumers.push_back("head.fc");
        m->add_channel_group(stream);
        return m;
      },
      [] { return std::make_shared<ResNetOptions>(); });
}

}  // namespace sculpt::models
