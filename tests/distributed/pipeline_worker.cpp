// One rank of a pipelined (and optionally data-parallel) training run over Gloo, started by
// tests/distributed/test_pipeline_dist.cpp with torchrun's variables. World = stages x data:
// rank r is stage r % stages of replica r / stages. Every rank also computes the single-process
// reference (the whole global batch through the whole model) and compares, step by step.
//
//   pipeline_worker STAGES DATA SCHEDULE MICROBATCHES STEPS
//
// Prints "loss <step> <pipelined> <reference>" on last stages, "max_grad_diff <x>" and
// "max_weight_diff <x>" on every rank; exit 0 when it ran (the test judges the numbers).
#include <torch/torch.h>

#include <cstdio>
#include <cstdlib>

#include "core/config/config.h"
#include "core/error.h"
#include "core/models/model.h"
#include "core/run/collectives.h"
#include "distributed/ddp.h"
#include "distributed/pipeline.h"
#include "distributed/process_group.h"
#include "distributed/world.h"

using namespace sculpt;
namespace pp = sculpt::distributed::pipeline;

namespace {
std::shared_ptr<models::Model> make_mlp() {
  torch::manual_seed(11);
  auto m = std::make_shared<models::Model>("mlp");
  const int64_t widths[] = {7, 12, 10, 9, 11, 8, 5};
  for (int i = 0; i < 6; ++i) {
    torch::nn::Sequential seq(torch::nn::Linear(widths[i], widths[i + 1]));
    if (i < 5) seq->push_back(torch::nn::Tanh());
    m->add_block("b" + std::to_string(i), std::make_shared<models::SequentialBlock>(seq));
  }
  return m;
}

at::Tensor ce(const at::Tensor& out, const at::Tensor& y) {
  return torch::nn::functional::cross_entropy(out, y);
}

std::vector<at::Tensor> stage_params(models::Model& model, const std::pair<int64_t, int64_t>& r,
                                     std::vector<std::string>* names) {
  std::vector<at::Tensor> out;
  for (int64_t b = r.first; b < r.second; ++b)
    for (const auto& p : model.block(static_cast<size_t>(b)).named_parameters()) {
      out.push_back(p.value());
      if (names) names->push_back(model.block_names()[static_cast<size_t>(b)] + "." + p.key());
    }
  return out;
}
}  // namespace

int main(int argc, char** argv) {
  try {
    if (argc < 6) {
      std::fprintf(stderr, "usage: pipeline_worker STAGES DATA SCHEDULE MICROBATCHES STEPS\n");
      return 2;
    }
    const int stages = std::atoi(argv[1]), data = std::atoi(argv[2]);
    const auto kind = pp::parse_schedule(argv[3], "schedule");
    const int64_t m = std::atoll(argv[4]);
    const int steps = std::atoi(argv[5]);
    auto world = distributed::world_from_env();
    SCULPT_CHECK(world.world_size == stages * data, "world size ", world.world_size, " != ",
                 stages, " x ", data);
    config::DistributedConfig dc;
    dc.timeout_s = 60;
    auto comm = distributed::connect(world, dc, c10::Device(c10::kCPU));
    const int stage = world.rank % stages, replica = world.rank / stages;
    std::vector<int> pipe_ranks, data_ranks;
    for (int s = 0; s < stages; ++s) pipe_ranks.push_back(replica * stages + s);
    for (int d = 0; d < data; ++d) data_ranks.push_back(d * stages + stage);
    // Each rank joins its own two groups; the groups' names keep their stores apart.
    std::shared_ptr<Collectives> pipe, dp;
    for (int d = 0; d < data; ++d) {
      std::vector<int> g;
      for (int s = 0; s < stages; ++s) g.push_back(d * stages + s);
      if (d == replica) pipe = comm->subgroup(g, "pipe" + std::to_string(d));
    }
    for (int s = 0; s < stages; ++s) {
      std::vector<int> g;
      for (int d = 0; d < data; ++d) g.push_back(d * stages + s);
      if (s == stage) dp = comm->subgroup(g, "data" + std::to_string(s));
    }

    auto model = make_mlp(), ref = make_mlp();
    const auto ranges = pp::balance(std::vector<double>(6, 1.0), stages);
    const auto range = ranges[static_cast<size_t>(stage)];
    std::vector<std::string> names;
    auto params = stage_params(*model, range, &names);
    auto ref_params = stage_params(*ref, range, nullptr);
    torch::optim::SGD opt(params, torch::optim::SGDOptions(0.1).momentum(0.9));
    torch::optim::SGD ref_opt(ref->parameters(), torch::optim::SGDOptions(0.1).momentum(0.9));
    std::unique_ptr<distributed::DataParallel> ddp;
    if (data > 1) {
      distributed::DdpOptions o;
      o.bucket_cap_mb = 0.0005;  // several buckets
      o.first_bucket_mb = 0.0002;
      ddp = std::make_unique<distributed::DataParallel>(params, names, std::vector<at::Tensor>{},
                                                        *dp, o);
    }
    auto transport = pp::collectives_transport(*pipe, c10::Device(c10::kCPU));
    pp::StageFunctions fns;
    fns.forward = [&](const at::Tensor& x) {
      return model->forward_blocks(x, range.first, range.second);
    };
    fns.loss = ce;
    if (ddp) {
      fns.before_backward = [&](bool last) { ddp->begin_backward(last); };
      fns.after_backwards = [&] { ddp->finish_backward(); };
    }

    double max_grad = 0, max_weight = 0;
    const int64_t per_replica = 12;  // rows of each replica's batch
    for (int step = 0; step < steps; ++step) {
      torch::manual_seed(1000 + step);  // the same global batch on every rank
      auto x = torch::randn({per_replica * data, 7});
      auto y = torch::randint(0, 5, {per_replica * data}, torch::kLong);
      // The reference: one process, the whole global batch.
      ref_opt.zero_grad();
      auto ref_loss = ce(ref->forward(x), y);
      ref_loss.backward();
      // This replica's rows, cut into micro-batches.
      auto xr = x.narrow(0, replica * per_replica, per_replica);
      auto yr = y.narrow(0, replica * per_replica, per_replica);
      const auto rows = pp::microbatch_rows(per_replica, m);
      const auto xs = pp::split_rows(xr, rows), ys = pp::split_rows(yr, rows);
      opt.zero_grad();
      auto st = pp::run_step(kind, stage, stages, rows, stage == 0 ? xs : std::vector<at::Tensor>{},
                             stage == stages - 1 ? ys : std::vector<at::Tensor>{}, fns, *transport);
      for (size_t i = 0; i < params.size(); ++i)
        max_grad = std::max(max_grad,
                            (params[i].grad() - ref_params[i].grad()).abs().max().item<double>());
      if (stage == stages - 1) {
        // The replicas' mean loss is the global batch's (equal replica sizes).
        auto l = torch::tensor({st.loss}, torch::kDouble);
        dp->all_reduce(l, ReduceOp::mean, "the step's loss");
        std::printf("loss %d %.9f %.9f peak %lld\n", step, l.item<double>(),
                    ref_loss.item<double>(), static_cast<long long>(st.peak_live));
      } else {
        std::printf("peak %lld\n", static_cast<long long>(st.peak_live));
      }
      opt.step();
      ref_opt.step();
    }
    for (size_t i = 0; i < params.size(); ++i)
      max_weight = std::max(max_weight, (params[i] - ref_params[i]).abs().max().item<double>());
    std::printf("max_grad_diff %.3g\nmax_weight_diff %.3g\n", max_grad, max_weight);
    return 0;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "pipeline_worker: %s\n", e.what());
    return 1;
  }
}
