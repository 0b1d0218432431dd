#include "compression/passes/prune/bsr.h"

#include <torch/torch.h>

#include <sstream>

#include "core/error.h"
#include "core/logging/logging.h"

namespace sculpt::compression::prune {

Bsr to_bsr(const at::Tensor& weight, int64_t b) {
  SCULPT_CHECK(weight.dim() == 2 && weight.size(0) % b == 0 && weight.size(1) % b == 0,
               "BSR: a weight of shape ", weight.sizes(), " does not split into ", b, "x", b,
               " blocks");
  return kernels::bsr_from_dense(weight.detach().to(at::kCPU, at::kFloat), b);
}

at::Tensor bsr_to_dense(const Bsr& m) { return kernels::bsr_to_dense(m); }

at::Tensor bsr_linear(const at::Tensor& x, const Bsr& m, const at::Tensor& bias) {
  SCULPT_CHECK(x.size(-1) == m.cols, "BSR linear: input has ", x.size(-1), " features, the weight ",
               m.cols);
  const auto t = m.values.scalar_type();
  return kernels::bsr_linear_sparse(x.to(t), m, bias.defined() ? bias.to(t) : bias)
      .to(x.scalar_type());
}

BsrLinearRuntime::BsrLinearRuntime(Bsr m, at::Tensor bias) : m_(std::move(m)), bias_(std::move(bias)) {
  if (bias_.defined()) bias_ = bias_.detach().to(at::kCPU, at::kFloat).contiguous();
}

at::Tensor BsrLinearRuntime::forward(const at::Tensor& input) {
  return prune::bsr_linear(input.to(at::kCPU), m_, bias_).to(input.device());
}

std::string BsrLinearRuntime::describe() const {
  std::ostringstream os;
  os << "BSR " << m_.block << "x" << m_.block << ", " << m_.nnz() << " of "
     << (m_.rows / m_.block) * (m_.cols / m_.block) << " blocks (" << m_.density() * 100
     << "% dense), " << m_.bytes() / 1024.0 << " KB";
  return os.str();
}

std::string install_bsr_runtime(nn::Compressible& layer, const std::string& name, Bsr m,
                                bool force, const std::string& who) {
  auto* lin = dynamic_cast<nn::Linear*>(&layer);
  std::string why;
  const double crossover = kernels::bsr_crossover_density(at::kCPU, m.block, at::kFloat);
  if (!lin)
    why = "not a Linear layer";
  else if (!lin->raw_weight().device().is_cpu())
    why = "the block-sparse kernel is CPU-only, the layer is on " +
          lin->raw_weight().device().str();
  else if (!force && m.density() > crossover)
    why = detail::concat(m.density() * 100, "% of its blocks remain, above the ", crossover * 100,
                         "% where the CPU block-sparse kernel stops being faster");
  if (!why.empty()) {
    log::info(who, ": ", name, " runs dense: ", why);
    return {};
  }
  auto rt = std::make_shared<BsrLinearRuntime>(std::move(m), lin->bias());
  log::info(who, ": ", name, " runs block-sparse: ", rt->describe());
  lin->set_runtime(rt);
  return rt->describe();
}

}  // namespace sculpt::compression::prune
