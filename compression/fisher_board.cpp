#include "compression/fisher_board.h"

namespace sculpt::compression {

void FisherBoard::publish(const at::Tensor& param, const at::Tensor& fisher) {
  fisher_[param.unsafeGetTensorImpl()] = fisher.detach();
}

at::Tensor FisherBoard::published(const at::Tensor& param) const {
  auto it = fisher_.find(param.unsafeGetTensorImpl());
  if (it == fisher_.end() || it->second.sizes() != param.sizes()) return {};
  return it->second;
}

void FisherBoard::withdraw(const at::Tensor& param) { fisher_.erase(param.unsafeGetTensorImpl()); }

}  // namespace sculpt::compression
