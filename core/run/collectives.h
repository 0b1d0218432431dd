// Collectives: how the ranks of a data-parallel run keep state equal. Trainers reduce metrics
// and agree on stopping through it; compression passes all-reduce observer ranges and Fisher
// estimates and broadcast masks through it (StepContext::collectives). The single-process one
// leaves every tensor as it is; distributed/process_group.h implements it on c10d.
//
// Every call is collective: all ranks make it, in the same order, with tensors of the same shape
// and dtype. `what` names the operation in the error a failure or a timeout raises.
#pragma once

#include <ATen/core/Tensor.h>

#include <memory>
#include <string>
#include <vector>

namespace sculpt {

enum class ReduceOp { sum, mean, max, min };

class Collectives {
 public:
  virtual ~Collectives() = default;
  virtual int rank() const { return 0; }
  virtual int world_size() const { return 1; }
  bool distributed() const { return world_size() > 1; }

  // In place on every rank; `mean` is the sum divided by the world size (float tensors).
  virtual void all_reduce(at::Tensor& /*t*/, ReduceOp /*op*/, const std::string& /*what*/) {}
  // Rank `root`'s values into `t` on every rank.
  virtual void broadcast(at::Tensor& /*t*/, int /*root*/, const std::string& /*what*/) {}
  // Every rank's `value`, in rank order.
  virtual std::vector<std::string> all_gather(const std::string& value,
                                              const std::string& /*what*/) {
    return {value};
  }

  // An asynchronous in-place sum (DDP's bucket reduction). wait() returns when `t` holds the
  // sum, or throws the error naming the rank and `what`.
  class Pending {
   public:
    virtual ~Pending() = default;
    virtual void wait() = 0;
    // Seconds (steady clock) at which the reduction completed; < 0 while unknown.
    virtual double completed_at() const { return -1; }
  };
  virtual std::unique_ptr<Pending> start_sum(at::Tensor& t, const std::string& what);

  // Point to point (pipeline stages): send() returns at once, the Pending completes when the
  // tensor has left (keep `t` alive and unchanged until then); recv() fills `t`, whose shape
  // and dtype must match what the peer sends. A single process has no peer: UserError.
  virtual std::unique_ptr<Pending> send(at::Tensor& t, int to, const std::string& what);
  virtual void recv(at::Tensor& t, int from, const std::string& what);

  // The collectives of some ranks (pipeline stages, data-parallel replicas): every rank in
  // `ranks` calls it with the same list and `name`; they are renumbered 0..n-1 in list order.
  // UserError when this rank is not in `ranks`.
  virtual std::shared_ptr<Collectives> subgroup(const std::vector<int>& ranks,
                                                const std::string& name);
};

// The single-process collectives (a shared instance).
Collectives& local_collectives();

// Seconds of the steady clock (the time base of Pending::completed_at).
double steady_seconds();

}  // namespace sculpt
