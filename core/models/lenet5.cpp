// LeNet-5 (LeCun et al. 1998) with ReLU and max-pooling: conv5x5(6, pad 2) -> pool ->
// conv5x5(16) -> pool -> 120 -> 84 -> classes. Any input of at least 12x12 pixels.
#include <torch/nn/modules/activation.h>
#include <torch/nn/modules/linear.h>
#include <torch/nn/modules/pooling.h>

#include "core/error.h"
#include "core/models/builtin_models.h"
#include "core/nn/layers.h"

namespace sculpt::models {

namespace {
std::shared_ptr<SequentialBlock> block(std::initializer_list<torch::nn::AnyModule> mods) {
  torch::nn::Sequential s;
  for (const auto& m : mods) s->push_back(m);
  return std::make_shared<SequentialBlock>(s);
}
using torch::nn::AnyModule;
}  // namespace

void LeNet5Options::visit(config::Visitor& v) {
  v.choice("variant", variant, {"lecun", "caffe"},
           "lenet5: lecun (6 and 16 filters, 120-84 hidden, 61k weights on MNIST) or caffe (20 "
           "and 50 filters, 500 hidden, 431k weights: the LeNet-5 of Caffe and Han et al. 2015)");
}

void add_lenet5(ModelRegistry& r) {
  r.add(
      "lenet5",
      "LeNet-5: two 5x5 conv+pool blocks, then 120-84-classes (variant caffe: 20/50 filters, "
      "500 hidden); images >= 12x12",
      [](const config::ModelConfig& cfg, const data::DataSpec& spec) {
        const auto o = cfg.options ? dynamic_cast<const LeNet5Options&>(*cfg.options)
                                   : LeNet5Options{};
        SCULPT_CHECK(spec.input_shape.size() == 3, "model lenet5: needs image data [C, H, W]");
        const int64_t c = spec.input_shape[0], h = spec.input_shape[1], w = spec.input_shape[2];
        const bool caffe = o.variant == "caffe";
        // lecun pads conv1 (28 -> 28 -> 14 -> 10 -> 5); caffe does not (28 -> 24 -> 12 -> 8 -> 4).
        const int64_t pad = caffe ? 0 : 2, c1 = caffe ? 20 : 6, c2 = caffe ? 50 : 16;
        const int64_t fh = ((h + 2 * pad - 4) / 2 - 4) / 2, fw = ((w + 2 * pad - 4) / 2 - 4) / 2;
        SCULPT_CHECK(fh >= 1 && fw >= 1, "model lenet5: images of ", h, "x", w,
                     " are too small (at least ", caffe ? 16 : 12, "x", caffe ? 16 : 12, ")");
        SCULPT_CHECK(spec.num_classes > 0, "model lenet5: the dataset has no classes");
        auto m = std::make_unique<Model>("lenet5");
        m->set_channel_removal(Model::ChannelRemoval::chain);
        m->add_block("conv1",
                     block({AnyModule(std::make_shared<nn::Conv2d>(c, c1, 5, 1, pad)),
                            AnyModule(torch::nn::ReLU()), AnyModule(torch::nn::MaxPool2d(2))}));
        m->add_block("conv2",
                     block({AnyModule(std::make_shared<nn::Conv2d>(c1, c2, 5)),
                            AnyModule(torch::nn::ReLU()), AnyModule(torch::nn::MaxPool2d(2))}));
        if (caffe) {
          m->add_block("fc1", block({AnyModule(torch::nn::Flatten()),
                                     AnyModule(std::make_shared<nn::Linear>(c2 * fh * fw, 500)),
                                     AnyModule(torch::nn::ReLU())}));
          m->add_block("head", block({AnyModule(std::make_shared<nn::Linear>(500, spec.num_classes))}));
          return m;
        }
        m->add_block("fc1", block({AnyModule(torch::nn::Flatten()),
                                   AnyModule(std::make_shared<nn::Linear>(c2 * fh * fw, 120)),
                                   AnyModule(torch::nn::ReLU())}));
        m->add_block("fc2", block({AnyModule(std::make_shared<nn::Linear>(120, 84)),
                                   AnyModule(torch::nn::ReLU())}));
        m->add_block("head",
                     block({AnyModule(std::make_shared<nn::Linear>(84, spec.num_classes))}));
        return m;
      },
      [] { return std::make_shared<LeNet5Options>(); });
}

}  // namespace sculpt::models
