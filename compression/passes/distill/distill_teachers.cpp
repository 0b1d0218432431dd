#include "compression/passes/distill/distill_teachers.h"

#include <torch/script.h>
#include <torch/torch.h>

#include <filesystem>

#include "core/config/config.h"
#include "core/error.h"
#include "core/io/safetensors.h"
#include "core/models/hf/hf_model.h"

namespace sculpt::compression {

namespace fs = std::filesystem;

namespace {

class SculptTeacher final : public Teacher {
 public:
  SculptTeacher(const fs::path& dir, const data::DataSpec& spec, c10::Device device, bool bf16) {
    source = dir.string();
    bf16_ = bf16;
    if (models::hf::is_checkpoint_dir(dir.string()))  // a Hugging Face checkpoint folder
      model_ = models::hf::load_pretrained(dir.string(), spec);
    else
      model_ = sculpt_model(dir, spec);
    model_->to(device);
    if (bf16) model_->to(at::kBFloat16);
    model_->eval();
    for (auto& p : model_->parameters()) p.set_requires_grad(false);
    params = model_->parameter_count();
    bytes = model_->parameter_bytes();
  }
  at::Tensor forward(const at::Tensor& x) override {
    torch::NoGradGuard no_grad;
    return model_->forward(cast_input(x)).to(at::kFloat);
  }
  models::Model* model() override { return model_.get(); }

 private:
  static std::unique_ptr<models::Model> sculpt_model(const fs::path& dir, const data::DataSpec& spec) {
    // A run directory holds config.yaml beside model.safetensors; a checkpoint folder
    // (<run>/checkpoints/step_N) holds the weights, its run's config two levels up.
    fs::path config = dir / "config.yaml";
    if (!fs::exists(config)) config = dir.parent_path().parent_path() / "config.yaml";
    SCULPT_CHECK(fs::exists(config), "distill teacher ", dir.string(),
                 ": no config.yaml (expected a Sculpt run directory or checkpoint folder)");
    const fs::path weights = dir / "model.safetensors";
    SCULPT_CHECK(fs::exists(weights), "distill teacher ", dir.string(), ": no model.safetensors");
    auto cfg = config::Config::load(config.string());
    auto model = models::model_registry().create(cfg.model.name, cfg.model, spec);
    try {
      model->load_state_tensors(io::load_safetensors(weights.string()), weights.string());
    } catch (const UserError& e) {
      throw UserError("distill teacher " + dir.string() + ": " + e.what() +
                      " (the teacher is built for this run's data: it must predict the same "
                      "classes or tokens as the student)");
    }
    return model;
  }
  std::unique_ptr<models::Model> model_;
};

class ScriptTeacher final : public Teacher {
 public:
  ScriptTeacher(const fs::path& file, c10::Device device, bool bf16) {
    source = file.string();
    bf16_ = bf16;
    try {
      module_ = torch::jit::load(file.string(), device);
    } catch (const c10::Error& e) {
      throw UserError("distill teacher " + file.string() +
                      ": not a TorchScript file (torch::jit::load: " + e.what_without_backtrace() +
                      ")");
    }
    if (bf16) module_.to(at::kBFloat16);
    module_.eval();
    for (const auto& p : module_.parameters()) {
      params += p.numel();
      bytes += p.numel() * static_cast<int64_t>(p.element_size());
    }
  }
  at::Tensor forward(const at::Tensor& x) override {
    torch::NoGradGuard no_grad;
    auto out = module_.forward({cast_input(x)});
    SCULPT_CHECK(out.isTensor(), "distill teacher ", source, ": forward() must return a tensor");
    return out.toTensor().to(at::kFloat);
  }

 private:
  torch::jit::Module module_;
};

}  // namespace

std::unique_ptr<Teacher> load_teacher(const std::string& path, const data::DataSpec& spec,
                                      c10::Device device, bool bf16) {
  SCULPT_CHECK(fs::exists(path), "distill teacher ", path, ": no such file or directory");
  if (fs::is_directory(path)) return std::make_unique<SculptTeacher>(path, spec, device, bf16);
  return std::make_unique<ScriptTeacher>(path, device, bf16);
}

}  // namespace sculpt::compression
