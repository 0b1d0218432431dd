#include "core/run/collectives.h"

#include <chrono>

#include "core/error.h"

namespace sculpt {

namespace {
class Done final : public Collectives::Pending {
 public:
  Done() : at_(steady_seconds()) {}
  void wait() override {}
  double completed_at() const override { return at_; }

 private:
  double at_;
};
}  // namespace

std::unique_ptr<Collectives::Pending> Collectives::start_sum(at::Tensor& t,
                                                             const std::string& what) {
  all_reduce(t, ReduceOp::sum, what);
  return std::make_unique<Done>();
}

std::unique_ptr<Collectives::Pending> Collectives::send(at::Tensor&, int to,
                                                        const std::string& what) {
  throw UserError(detail::concat("send of ", what, " to rank ", to,
                                 ": this is a single process (no distributed world)"));
}

void Collectives::recv(at::Tensor&, int from, const std::string& what) {
  throw UserError(detail::concat("recv of ", what, " from rank ", from,
                                 ": this is a single process (no distributed world)"));
}

std::shared_ptr<Collectives> Collectives::subgroup(const std::vector<int>& ranks,
                                                   const std::string& name) {
  SCULPT_CHECK(ranks.size() == 1 && ranks[0] == rank(), "subgroup ", name,
               ": a single process can only form a group of itself");
  return std::shared_ptr<Collectives>(std::shared_ptr<Collectives>{}, this);
}

Collectives& local_collectives() {
  static Collectives local;
  return local;
}

double steady_seconds() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

}  // namespace sculpt
