// Diagonal Fisher estimates that one pass publishes for a parameter so that other passes of the
// same recipe can use them: the EWC pass publishes its Fisher (the sum of its penalty terms)
// after each increment and on resume; the prune pass's `fisher` scorer uses it when present
// (else its own estimate). One board per recipe: build_recipe creates it and hands it to every
// pass that shares it (FisherBoardUser), so two recipes in one process never see each other's.
#pragma once

#include <ATen/core/Tensor.h>

#include <map>
#include <memory>

namespace sculpt::compression {

class FisherBoard {
 public:
  void publish(const at::Tensor& param, const at::Tensor& fisher);
  // The Fisher published for `param` (its shape), or an undefined tensor.
  at::Tensor published(const at::Tensor& param) const;
  void withdraw(const at::Tensor& param);

 private:
  std::map<const void*, at::Tensor> fisher_;  // keyed by the parameter's storage object
};

// A pass that publishes to or reads from the recipe's Fisher board.
class FisherBoardUser {
 public:
  virtual ~FisherBoardUser() = default;
  virtual void set_fisher_board(std::shared_ptr<FisherBoard> board) = 0;
};

}  // namespace sculpt::compression
