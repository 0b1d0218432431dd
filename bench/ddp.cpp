// DDP benchmark (issue 9). Two measurements on LeNet-5 and an MLP 784-256-256-10, SGD, batch 64
// per rank, CPU, one intra-op thread per process:
//   1. DDP at world size 1 (a real Gloo group of one) against plain training: time per step;
//      also with the buckets filled as at world size > 1 (the fixed cost of that path apart
//      from communication), with zero_grad setting the gradients to none and keeping them.
//   2. Two processes (Gloo over loopback, started by this program as RANK 0/1): time per step
//      and the share of the all-reduce time not hidden behind backward, from timestamps around
//      bucket launch and completion (DdpStats: first launch -> last completion, and the part of
//      it after backward had returned), for the default buckets (25 MiB, first 1 MiB) and for
//      small ones.
// Usage: bench_ddp [steps]   (the load average is printed beside the figures)
#include <ATen/Parallel.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>
#include <torch/torch.h>

#include <algorithm>
#include <array>
#include <map>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "core/config/config.h"
#include "distributed/ddp.h"
#include "distributed/process_group.h"
#include "distributed/world.h"

using namespace sculpt;

namespace {

struct LeNet : torch::nn::Module {
  torch::nn::Conv2d c1{nullptr}, c2{nullptr};
  torch::nn::Linear f1{nullptr}, f2{nullptr}, f3{nullptr};
  LeNet() {
    c1 = register_module("c1", torch::nn::Conv2d(torch::nn::Conv2dOptions(1, 6, 5).padding(2)));
    c2 = register_module("c2", torch::nn::Conv2d(6, 16, 5));
    f1 = register_module("f1", torch::nn::Linear(400, 120));
    f2 = register_module("f2", torch::nn::Linear(120, 84));
    f3 = register_module("f3", torch::nn::Linear(84, 10));
  }
  at::Tensor forward(at::Tensor x) {
    x = torch::max_pool2d(torch::relu(c1->forward(x)), 2);
    x = torch::max_pool2d(torch::relu(c2->forward(x)), 2).flatten(1);
    return f3->forward(torch::relu(f2->forward(torch::relu(f1->forward(x)))));
  }
};

struct Mlp : torch::nn::Module {
  torch::nn::Linear f1{nullptr}, f2{nullptr}, f3{nullptr};
  Mlp() {
    f1 = register_module("f1", torch::nn::Linear(784, 256));
    f2 = register_module("f2", torch::nn::Linear(256, 256));
    f3 = register_module("f3", torch::nn::Linear(256, 10));
  }
  at::Tensor forward(at::Tensor x) {
    x = x.flatten(1);
    return f3->forward(torch::relu(f2->forward(torch::relu(f1->forward(x)))));
  }
};

struct Result {
  double step_ms = 0;
  double exposed = -1;  // share of all-reduce time after backward
  size_t buckets = 0;
};

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

// SGD on a fixed random batch of 64; with `comm`, under DDP.
template <class Net>
struct Runner {
  std::shared_ptr<Net> net;
  std::unique_ptr<torch::optim::SGD> opt;
  std::unique_ptr<distributed::DataParallel> ddp;
  at::Tensor x, y;
  bool keep_grads = false;  // zero_grad zeroes in place (set_to_none=false)
  Runner(Collectives* comm, double bucket_mb, double first_mb, bool buckets_at_world_1 = false) {
    torch::manual_seed(1);
    net = std::make_shared<Net>();
    opt = std::make_unique<torch::optim::SGD>(net->parameters(),
                                              torch::optim::SGDOptions(0.01).momentum(0.9));
    if (comm) {
      std::vector<std::string> names;
      for (const auto& p : net->named_parameters()) names.push_back(p.key());
      distributed::DdpOptions o;
      o.bucket_cap_mb = bucket_mb;
      o.first_bucket_mb = first_mb;
      o.buckets_at_world_1 = buckets_at_world_1;
      ddp = std::make_unique<distributed::DataParallel>(net->parameters(), names,
                                                        std::vector<at::Tensor>{}, *comm, o);
    }
    x = torch::randn({64, 1, 28, 28});
    y = torch::randint(0, 10, {64});
  }
  double step() {  // milliseconds
    const auto t0 = std::chrono::steady_clock::now();
    opt->zero_grad(!keep_grads);
    if (ddp) ddp->begin_backward(true);
    auto loss = torch::nn::functional::cross_entropy(net->forward(x), y);
    loss.backward();
    if (ddp) ddp->finish_backward();
    opt->step();
    return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0)
        .count();
  }
};

template <class Net>
Result train(int steps, Collectives* comm, double bucket_mb, double first_mb) {
  Runner<Net> run(comm, bucket_mb, first_mb);
  std::vector<double> times;
  for (int s = 0; s < steps + 5; ++s) {
    const double ms = run.step();
    if (s >= 5) times.push_back(ms);
  }
  Result r;
  r.step_ms = median(times);
  if (run.ddp) {
    const auto& st = run.ddp->stats();
    r.exposed = st.comm_s > 0 ? st.exposed_s / st.comm_s : 0;
    r.buckets = run.ddp->bucket_params().size();
  }
  return r;
}

// Plain and DDP steps interleaved, in rotating order (the same load for all): median ms of plain, of DDP, and of
// DDP made to fill its buckets (the identity reduction of one rank skipped otherwise) with
// zero_grad setting the gradients to none (one copy into the bucket per gradient and step) and
// with zero_grad keeping them (the gradients stay bucket views: no copy).
template <class Net>
std::array<double, 4> alternate(int steps, Collectives& comm) {
  Runner<Net> plain(nullptr, 25, 1), ddp(&comm, 25, 1), copy(&comm, 25, 1, true),
      view(&comm, 25, 1, true);
  view.keep_grads = true;
  std::array<Runner<Net>*, 4> runners{&plain, &ddp, &copy, &view};
  std::array<std::vector<double>, 4> t;
  for (int s = 0; s < steps + 5; ++s)
    for (int k = 0; k < 4; ++k) {  // each one first in turn (the one after another's step
      const int r = (s + k) % 4;   // finds other caches and allocator state)
      const double ms = runners[r]->step();
      if (s >= 5) t[r].push_back(ms);
    }
  return {median(t[0]), median(t[1]), median(t[2]), median(t[3])};
}

std::shared_ptr<Collectives> join(const distributed::WorldInfo& w) {
  config::DistributedConfig dc;
  dc.timeout_s = 120;
  return distributed::connect(w, dc, c10::Device(c10::kCPU));
}

int free_port() {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof a;
  bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a);
  getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len);
  close(fd);
  return ntohs(a.sin_port);
}

std::string load_average() {
  std::ifstream in("/proc/loadavg");
  std::string a, b, c;
  in >> a >> b >> c;
  return a + " " + b + " " + c;
}

// One rank of the 2-process measurement: prints "<model> <bucket> <step_ms> <exposed> <n>".
int worker(int steps) {
  auto comm = join(distributed::world_from_env());
  for (const auto& [bucket, first] : {std::pair<double, double>{25, 1}, {0.05, 0.02}}) {
    Result l = train<LeNet>(steps, comm.get(), bucket, first);
    Result m = train<Mlp>(steps, comm.get(), bucket, first);
    if (comm->rank() == 0) {
      std::printf("lenet %g %.4f %.4f %zu\n", bucket, l.step_ms, l.exposed, l.buckets);
      std::printf("mlp %g %.4f %.4f %zu\n", bucket, m.step_ms, m.exposed, m.buckets);
    }
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  at::set_num_threads(1);
  if (argc > 1 && std::string(argv[1]) == "worker") return worker(argc > 2 ? std::atoi(argv[2]) : 60);
  if (argc > 1 && std::string(argv[1]).rfind("--", 0) == 0) {  // gpu_check.sh's --device cuda
    std::printf("bench_ddp measures Gloo on the CPU; nothing to do for %s\n", argv[1]);
    return 0;
  }
  const int steps = argc > 1 ? std::max(1, std::atoi(argv[1])) : 60;
  std::printf("load average before: %s\n\n", load_average().c_str());

  // 1. World size 1: plain vs DDP (a Gloo group of one: the gradient hooks and the per-step
  // bookkeeping are paid; the mean over one rank is the gradient itself, so no bucket copy and
  // no collective).
  distributed::WorldInfo one;
  one.master_port = free_port();
  one.source = "bench";
  auto comm = join(one);
  std::printf("| model | plain ms/step | DDP world 1 ms/step | overhead | through the buckets, "
              "zero_grad to none | through the buckets, zero_grad in place |\n"
              "|---|---|---|---|---|---|\n");
  {
    const auto l = alternate<LeNet>(steps * 3, *comm);
    const auto m = alternate<Mlp>(steps * 10, *comm);
    for (const auto& [name, r] : {std::pair<const char*, std::array<double, 4>>{"LeNet-5", l},
                                  {"MLP 784-256-256-10", m}})
      std::printf("| %s | %.3f | %.3f | %+.1f%% | %.3f (%+.1f%%) | %.3f (%+.1f%%) |\n", name, r[0],
                  r[1], 100 * (r[1] / r[0] - 1), r[2], 100 * (r[2] / r[0] - 1), r[3],
                  100 * (r[3] / r[0] - 1));
  }
  comm.reset();

  // 2. Two processes.
  const std::string self = "/proc/" + std::to_string(getpid()) + "/exe";
  char exe[4096];
  const ssize_t n = readlink(self.c_str(), exe, sizeof exe - 1);
  exe[n > 0 ? n : 0] = 0;
  const std::string out = "/tmp/bench_ddp_rank0_" + std::to_string(getpid()) + ".txt";
  // Three launches (the load of other jobs moves the figures); the median of each figure.
  std::map<std::pair<std::string, double>, std::vector<std::array<double, 3>>> rows;
  for (int launch = 0; launch < 3; ++launch) {
    const int port = free_port();
    std::ostringstream cmd;
    for (int r = 0; r < 2; ++r)
      cmd << "OMP_NUM_THREADS=1 RANK=" << r
          << " WORLD_SIZE=2 MASTER_ADDR=127.0.0.1 MASTER_PORT=" << port << " " << exe
          << " worker " << steps << (r == 0 ? " > " + out : " > /dev/null") << " 2>/dev/null & ";
    cmd << "wait";
    if (std::system(cmd.str().c_str()) != 0) return 1;
    std::ifstream in(out);
    std::string model;
    double bucket, ms, exposed, buckets;
    while (in >> model >> bucket >> ms >> exposed >> buckets)
      rows[{model, bucket}].push_back({ms, exposed, buckets});
  }
  std::remove(out.c_str());
  std::printf("\n2 processes (Gloo, loopback), batch 64 per rank, median of 3 launches:\n\n");
  std::printf("| model | bucket_cap_mb | buckets | ms/step | all-reduce time exposed after backward |\n"
              "|---|---|---|---|---|\n");
  for (const auto& [key, runs] : rows) {
    std::vector<double> ms, ex;
    for (const auto& r : runs) {
      ms.push_back(r[0]);
      ex.push_back(r[1]);
    }
    std::printf("| %s | %g | %.0f | %.3f | %.0f%% (launches: %s) |\n", key.first.c_str(),
                key.second, runs[0][2], median(ms), 100 * median(ex), [&] {
                  std::string s;
                  for (double e : ex) s += (s.empty() ? "" : " ") + std::to_string(int(100 * e + 0.5)) + "%";
                  return s;
                }().c_str());
  }
  std::printf("\nload average after: %s\n", load_average().c_str());
  return 0;
}
