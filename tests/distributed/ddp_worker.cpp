// One rank of the distributed tests (tests/distributed/test_distributed.cpp starts two, with
// RANK, WORLD_SIZE, MASTER_ADDR and MASTER_PORT set as torchrun sets them). Modes:
//   grads [sync|accumulate|bf16|unused]  DDP gradients vs the full-batch gradients computed
//                                        here in one process; prints "max_diff <x>"
//   timeout                              rank 1 never joins the collective; rank 0 must fail
//   agree                                all_reduce/broadcast/all_gather results
//   verify [same|differ]                 distributed.verify_state's check on an mlp whose
//                                        weights are (not) the same on every rank
//   views [keep|none]                    20 SGD steps of 2 accumulated micro-batches under DDP vs
//                                        one process on the whole batch; zero_grad keeps the
//                                        gradients (keep) or sets them to none; prints
//                                        "max_diff <x>", gradients outside their bucket, copies
//   eval [blobs|gr]                      trainers::evaluate sharded over the ranks vs this
//                                        process alone on all rows; prints "max_diff <x>" and
//                                        the rows this rank evaluated
// Exit 0: as expected; 1: a wrong result; 3: the expected error was raised (printed).
#include <torch/torch.h>

#include <chrono>
#include <cstdio>
#include <iostream>
#include <thread>

#include "cli/app.h"
#include "core/config/config.h"
#include "core/data/dataset.h"
#include "core/models/model.h"
#include "trainers/run_parts.h"
#include "trainers/train_loop.h"
#include "distributed/ddp.h"
#include "distributed/process_group.h"
#include "distributed/world.h"

using namespace sculpt;

namespace {

struct Net : torch::nn::Module {
  torch::nn::Linear fc1{nullptr}, fc2{nullptr}, side{nullptr};
  Net() {
    fc1 = register_module("fc1", torch::nn::Linear(8, 300));  // 2400 + 300 values
    fc2 = register_module("fc2", torch::nn::Linear(300, 4));
    side = register_module("side", torch::nn::Linear(8, 4));  // used by some ranks only
  }
  at::Tensor forward(const at::Tensor& x, bool use_side) {
    auto y = fc2->forward(torch::tanh(fc1->forward(x)));
    return use_side ? y + side->forward(x) : y;
  }
};

// `net`'s parameters and names, and DDP options that make several buckets (4 KiB).
distributed::DdpOptions small_buckets(Net& net, std::vector<at::Tensor>& params,
                                      std::vector<std::string>& names) {
  for (const auto& p : net.named_parameters()) {
    params.push_back(p.value());
    names.push_back(p.key());
  }
  distributed::DdpOptions opt;
  opt.bucket_cap_mb = 0.004;
  opt.first_bucket_mb = 0.001;
  return opt;
}

int grads(Collectives& comm, const std::string& variant) {
  const int rank = comm.rank(), world = comm.world_size();
  torch::manual_seed(100 + rank);  // different initial weights: DDP must broadcast rank 0's
  auto net = std::make_shared<Net>();
  torch::manual_seed(7);  // the same data on every rank
  const int64_t n = 16 * world;
  auto x = torch::randn({n, 8});
  auto y = torch::randint(0, 4, {n});

  std::vector<at::Tensor> params;
  std::vector<std::string> names;
  auto opt = small_buckets(*net, params, names);
  opt.find_unused_parameters = variant == "unused";
  if (variant == "bf16") opt.compression = "bf16";
  distributed::DataParallel ddp(params, names, {}, comm, opt);
  std::printf("buckets %zu\n", ddp.bucket_params().size());

  // The reference: one process, the whole batch (hooks inert: no sync).
  const bool side_here = variant != "unused" || rank == 0;
  ddp.begin_backward(false);
  std::vector<at::Tensor> ref;
  if (variant == "unused") {  // rank 0's rows use `side`, the others' do not
    auto rows0 = x.slice(0, 0, 16);
    auto rest = x.slice(0, 16, n);
    auto l0 = torch::nn::functional::cross_entropy(net->forward(rows0, true), y.slice(0, 0, 16),
                                                   torch::nn::functional::CrossEntropyFuncOptions().reduction(torch::kSum));
    auto l1 = torch::nn::functional::cross_entropy(net->forward(rest, false), y.slice(0, 16, n),
                                                   torch::nn::functional::CrossEntropyFuncOptions().reduction(torch::kSum));
    ref = torch::autograd::grad({(l0 + l1) / static_cast<double>(n)}, params, {}, false, false,
                                true);
  } else {
    auto loss = torch::nn::functional::cross_entropy(net->forward(x, true), y);
    ref = torch::autograd::grad({loss}, params);
  }
  for (auto& p : params) p.mutable_grad() = at::Tensor();

  // DDP: this rank's 16 rows, as one batch or as two accumulated micro-batches.
  auto xs = x.slice(0, rank * 16, rank * 16 + 16), ys = y.slice(0, rank * 16, rank * 16 + 16);
  if (variant == "accumulate") {
    for (int m = 0; m < 2; ++m) {
      ddp.begin_backward(m == 1);
      auto l = torch::nn::functional::cross_entropy(
          net->forward(xs.slice(0, m * 8, m * 8 + 8), true), ys.slice(0, m * 8, m * 8 + 8));
      (l / 2.0).backward();
      if (m == 1) ddp.finish_backward();
    }
  } else {
    ddp.begin_backward(true);
    auto l = torch::nn::functional::cross_entropy(net->forward(xs, side_here), ys);
    l.backward();
    ddp.finish_backward();
  }
  double max_diff = 0;
  for (size_t i = 0; i < params.size(); ++i) {
    if (!params[i].grad().defined()) {
      std::printf("parameter %s has no gradient\n", names[i].c_str());
      return 1;
    }
    max_diff = std::max(max_diff, (params[i].grad() - ref[i]).abs().max().item<double>());
  }
  std::printf("max_diff %.3g\n", max_diff);
  return 0;
}

int views(Collectives& comm, const std::string& variant) {
  const int rank = comm.rank(), world = comm.world_size();
  torch::manual_seed(100);
  auto ref = std::make_shared<Net>();
  torch::manual_seed(100 + rank);  // rank 0's weights are ref's; DDP broadcasts them
  auto net = std::make_shared<Net>();
  std::vector<at::Tensor> params;
  std::vector<std::string> names;
  const auto opt = small_buckets(*net, params, names);
  distributed::DataParallel ddp(params, names, {}, comm, opt);
  const auto sgd = torch::optim::SGDOptions(0.1).momentum(0.9);
  torch::optim::SGD ref_opt(ref->parameters(), sgd), opt_ddp(net->parameters(), sgd);
  torch::manual_seed(7);  // the same batches on every rank
  int64_t outside = 0;
  for (int step = 0; step < 20; ++step) {
    auto x = torch::randn({16 * world, 8});
    auto y = torch::randint(0, 4, {16 * world});
    ref_opt.zero_grad();
    torch::nn::functional::cross_entropy(ref->forward(x, true), y).backward();
    ref_opt.step();
    // This rank's 16 rows as 2 micro-batches of 8; DDP reduces in the second.
    opt_ddp.zero_grad(variant != "keep");
    for (int m = 0; m < 2; ++m) {
      ddp.begin_backward(m == 1);
      const int64_t at = rank * 16 + m * 8;
      auto l = torch::nn::functional::cross_entropy(net->forward(x.slice(0, at, at + 8), true),
                                                    y.slice(0, at, at + 8));
      (l / 2.0).backward();
    }
    ddp.finish_backward();
    for (size_t i = 0; i < params.size(); ++i) outside += ddp.grad_in_bucket(i) ? 0 : 1;
    opt_ddp.step();
  }
  double max_diff = 0;
  auto a = ref->parameters(), b = net->parameters();
  for (size_t i = 0; i < a.size(); ++i)
    max_diff = std::max(max_diff, (a[i] - b[i]).abs().max().item<double>());
  std::printf("max_diff %.3g\noutside %lld copies %lld params %zu\n", max_diff,
              static_cast<long long>(outside), static_cast<long long>(ddp.stats().grad_copies),
              params.size());
  return 0;
}

// The wrapped task, counting the rows this process evaluates.
class CountingTask final : public tasks::Task {
 public:
  explicit CountingTask(std::unique_ptr<tasks::Task> inner) : inner_(std::move(inner)) {}
  at::Tensor loss(const at::Tensor& o, const at::Tensor& t) const override {
    return inner_->loss(o, t);
  }
  void accumulate(tasks::MetricSums& s, const at::Tensor& o, const at::Tensor& t) const override {
    inner_->accumulate(s, o, t);
  }
  void evaluate_batch(tasks::MetricSums& s, const tasks::Forward& f, const at::Tensor& in,
                      const at::Tensor& t) const override {
    rows += t.size(0);
    inner_->evaluate_batch(s, f, in, t);
  }
  std::map<std::string, double> finish(const tasks::MetricSums& s) const override {
    return inner_->finish(s);
  }
  mutable int64_t rows = 0;

 private:
  std::unique_ptr<tasks::Task> inner_;
};

int eval(Collectives& comm, const std::string& variant) {
  cli::register_builtins();
  const std::string yaml =
      variant == "gr"
          ? "data: {name: gr_synthetic, docs: 60, topics: 4, vocab: 200, doc_len: 12, "
            "query_len: 6, batch_size: 16, val_fraction: 0.3}\n"
            "model: {name: transformer_seq2seq, d_model: 32, heads: 2, layers: 1, ff: 64}\n"
            "task: {name: generative_retrieval, greedy: true}\n"
          : "data: {name: synthetic_blobs, samples: 203, features: 6, classes: 5, spread: 3, "
            "batch_size: 16}\n"
            "model: {name: mlp, hidden: [16]}\n";
  auto cfg = config::Config::parse(yaml);
  auto ds = data::dataset_registry().create(cfg.data.name, cfg.data, data::DataPart::train);
  torch::manual_seed(1);  // the same weights on every rank
  auto model = models::model_registry().create(cfg.model.name, cfg.model, ds->spec());
  CountingTask task(tasks::task_registry().create(cfg.task.name, cfg.task, ds->spec()));
  const auto device = c10::Device(c10::kCPU);
  const auto alone = trainers::evaluate(*model, task, *ds, cfg.data, device);
  task.rows = 0;
  const auto shared = trainers::evaluate(*model, task, *ds, cfg.data, device, false, {}, &comm);
  double max_diff = alone.size() == shared.size() ? 0 : 1e9;
  std::string values;
  for (const auto& [k, v] : alone) {
    max_diff = std::max(max_diff, shared.count(k) ? std::abs(shared.at(k) - v) : 1e9);
    values += " " + k + "=" + std::to_string(v);
  }
  std::printf("rows %lld of %lld\nmax_diff %.3g\nmetrics%s\n", static_cast<long long>(task.rows),
              static_cast<long long>(ds->size()), max_diff, values.c_str());
  return 0;
}

int timeout(Collectives& comm) {
  if (comm.rank() == 1) {  // alive, but never joins the collective
    std::this_thread::sleep_for(std::chrono::seconds(8));
    return 0;
  }
  auto t = torch::ones({4});
  const auto t0 = std::chrono::steady_clock::now();
  try {
    comm.all_reduce(t, ReduceOp::sum, "the test tensor");
  } catch (const std::exception& e) {
    const double s =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    std::printf("error after %.2f s: %s\n", s, e.what());
    return 3;
  }
  std::printf("the collective returned\n");
  return 1;
}

int agree(Collectives& comm) {
  const int rank = comm.rank();
  auto s = torch::full({3}, static_cast<float>(rank + 1));
  comm.all_reduce(s, ReduceOp::sum, "sum");
  auto m = torch::full({3}, static_cast<float>(rank + 1));
  comm.all_reduce(m, ReduceOp::mean, "mean");
  auto mx = torch::full({2}, static_cast<float>(rank * 10));
  comm.all_reduce(mx, ReduceOp::max, "max");
  auto b = torch::full({2}, static_cast<float>(rank + 5));
  comm.broadcast(b, 1, "broadcast");
  auto names = comm.all_gather("r" + std::to_string(rank), "names");
  std::printf("sum %g mean %g max %g bcast %g gather %s,%s\n", s[0].item<float>(),
              m[0].item<float>(), mx[0].item<float>(), b[0].item<float>(), names[0].c_str(),
              names[1].c_str());
  return 0;
}

int verify(Collectives& comm, bool differ) {
  cli::register_builtins();
  auto cfg = config::Config::parse(
      "data: {name: synthetic_blobs, samples: 64, features: 4}\nmodel: {name: mlp, hidden: [8]}\n");
  auto ds = data::dataset_registry().create(cfg.data.name, cfg.data, data::DataPart::train);
  torch::manual_seed(differ ? 1 + comm.rank() : 1);
  auto model = models::model_registry().create(cfg.model.name, cfg.model, ds->spec());
  try {
    trainers::verify_ranks_agree(comm, *model, {});
  } catch (const std::exception& e) {
    std::printf("error: %s\n", e.what());
    return 3;
  }
  std::printf("agree\n");
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  try {
    const std::string mode = argc > 1 ? argv[1] : "grads";
    const std::string variant = argc > 2 ? argv[2] : "sync";
    auto world = distributed::world_from_env();
    config::DistributedConfig dc;
    dc.timeout_s = mode == "timeout" ? 2 : 60;
    auto comm = distributed::connect(world, dc, c10::Device(c10::kCPU));
    if (mode == "grads") return grads(*comm, variant);
    if (mode == "timeout") return timeout(*comm);
    if (mode == "agree") return agree(*comm);
    if (mode == "verify") return verify(*comm, variant == "differ");
    if (mode == "views") return views(*comm, variant);
    if (mode == "eval") return eval(*comm, variant);
    std::fprintf(stderr, "unknown mode %s\n", mode.c_str());
    return 2;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "ddp_worker: %s\n", e.what());
    return 1;
  }
}
