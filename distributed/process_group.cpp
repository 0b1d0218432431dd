#include "distributed/process_group.h"

#include <torch/csrc/distributed/c10d/PrefixStore.hpp>
#include <torch/csrc/distributed/c10d/ProcessGroupGloo.hpp>
#include <torch/csrc/distributed/c10d/TCPStore.hpp>

#include <netdb.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <atomic>
#include <chrono>
#include <cstdlib>
#include <functional>

#include "core/error.h"
#include "core/logging/logging.h"
#include "distributed/liveness.h"
#include "distributed/nccl_backend.h"

namespace sculpt::distributed {

namespace {

using Ms = std::chrono::milliseconds;

std::string message_of(const std::exception& e) {
  const auto* ce = dynamic_cast<const c10::Error*>(&e);
  std::string m = ce ? ce->what_without_backtrace() : e.what();
  if (m.size() > 600) m = m.substr(0, 600) + " ...";
  return m;
}

c10d::ReduceOp to_c10d(ReduceOp op) {
  switch (op) {
    case ReduceOp::max:
      return c10d::ReduceOp::MAX;
    case ReduceOp::min:
      return c10d::ReduceOp::MIN;
    default:  // mean: Gloo has no AVG; sum, then divide
      return c10d::ReduceOp::SUM;
  }
}

// Makes the backend (Gloo or NCCL, with the run's options) of a group over a store.
using BackendFactory = std::function<c10::intrusive_ptr<c10d::Backend>(
    const c10::intrusive_ptr<c10d::Store>&, int rank, int size)>;

class C10dCollectives final : public Collectives {
 public:
  C10dCollectives(const WorldInfo& w, c10::intrusive_ptr<c10d::Store> store,
                  c10::intrusive_ptr<c10d::Backend> backend, std::string name, double timeout_s,
                  BackendFactory factory, std::shared_ptr<Heartbeat> heartbeat)
      : rank_(w.rank),
        size_(w.world_size),
        store_(std::move(store)),
        backend_(std::move(backend)),
        name_(std::move(name)),
        timeout_s_(timeout_s),
        factory_(std::move(factory)),
        heartbeat_(std::move(heartbeat)) {}

  int rank() const override { return rank_; }
  int world_size() const override { return size_; }

  void all_reduce(at::Tensor& t, ReduceOp op, const std::string& what) override {
    c10d::AllreduceOptions o;
    o.reduceOp = to_c10d(op);
    std::vector<at::Tensor> v{t};
    wait(start("all_reduce", what, [&] { return backend_->allreduce(v, o); }), "all_reduce", what);
    if (op == ReduceOp::mean) t.div_(size_);
  }

  void broadcast(at::Tensor& t, int root, const std::string& what) override {
    c10d::BroadcastOptions o;
    o.rootRank = root;
    std::vector<at::Tensor> v{t};
    wait(start("broadcast", what, [&] { return backend_->broadcast(v, o); }), "broadcast", what);
  }

  std::vector<std::string> all_gather(const std::string& value,
                                      const std::string& what) override {
    const std::string key = "sculpt/gather/" + std::to_string(gathers_++) + "/";
    std::vector<std::string> all(static_cast<size_t>(size_));
    try {
      store_->set(key + std::to_string(rank_), std::vector<uint8_t>(value.begin(), value.end()));
      for (int r = 0; r < size_; ++r) {
        auto bytes = store_->get(key + std::to_string(r));
        all[static_cast<size_t>(r)] = std::string(bytes.begin(), bytes.end());
      }
    } catch (const std::exception& e) {
      throw std::runtime_error(failure("all_gather", what, e));
    }
    return all;
  }

  class Work final : public Pending {
   public:
    Work(C10dCollectives& owner, c10::intrusive_ptr<c10d::Work> work, std::string what,
         const char* op = "all_reduce")
        : owner_(owner), work_(std::move(work)), what_(std::move(what)), op_(op),
          done_(std::make_shared<std::atomic<double>>(-1.0)) {
      auto done = done_;
      try {
        work_->getFuture()->addCallback(
            [done](c10::ivalue::Future&) { done->store(steady_seconds()); });
      } catch (const std::exception&) {  // a backend without futures: time taken at wait()
      }
    }
    void wait() override {
      owner_.wait(work_, op_, what_);
      if (done_->load() < 0) done_->store(steady_seconds());
    }
    double completed_at() const override { return done_->load(); }

   private:
    C10dCollectives& owner_;
    c10::intrusive_ptr<c10d::Work> work_;
    std::string what_;
    const char* op_;
    std::shared_ptr<std::atomic<double>> done_;
  };

  std::unique_ptr<Pending> start_sum(at::Tensor& t, const std::string& what) override {
    c10d::AllreduceOptions o;
    o.reduceOp = c10d::ReduceOp::SUM;
    std::vector<at::Tensor> v{t};
    return std::make_unique<Work>(
        *this, start("all_reduce", what, [&] { return backend_->allreduce(v, o); }), what);
  }

  std::unique_ptr<Pending> send(at::Tensor& t, int to, const std::string& what) override {
    std::vector<at::Tensor> v{t};
    return std::make_unique<Work>(*this, start("send", what, [&] { return backend_->send(v, to, 0); }),
                                  what, "send");
  }

  void recv(at::Tensor& t, int from, const std::string& what) override {
    std::vector<at::Tensor> v{t};
    wait(start("recv", what, [&] { return backend_->recv(v, from, 0); }), "recv", what);
  }

  std::shared_ptr<Collectives> subgroup(const std::vector<int>& ranks,
                                        const std::string& name) override {
    auto it = std::find(ranks.begin(), ranks.end(), rank_);
    SCULPT_CHECK(it != ranks.end(), "rank ", rank_, " is not a member of the group ", name);
    WorldInfo w;
    w.rank = static_cast<int>(it - ranks.begin());
    w.world_size = static_cast<int>(ranks.size());
    auto store = c10::make_intrusive<c10d::PrefixStore>("group/" + name + "/", store_);
    c10::intrusive_ptr<c10d::Backend> backend;
    try {
      backend = factory_(store, w.rank, w.world_size);
    } catch (const std::exception& e) {
      throw std::runtime_error(failure("creating the group", name, e));
    }
    return std::make_shared<C10dCollectives>(w, store, backend, name_, timeout_s_, factory_,
                                             heartbeat_);
  }

  // Names this rank, the operation and what it carried, and (from the heartbeats) the ranks
  // that stopped responding.
  std::string failure(const char* op, const std::string& what, const std::exception& e) const {
    // Only a timeout needs the heartbeats (1.5 s): a dead peer's closed connection says itself
    // which rank is gone, and the group must fail at once so that its launcher restarts it.
    const std::string m = message_of(e);
    const bool timed_out = m.find("imed out") != std::string::npos ||
                           m.find("imeout") != std::string::npos;
    const std::string who = heartbeat_ && timed_out ? heartbeat_->diagnose()
                                                    : "a rank stopped, died or runs another step";
    return detail::concat("rank ", rank_, " of ", size_, ": ", op, " of ", what, " failed (",
                          name_, " backend, distributed.timeout_s=", timeout_s_, "): ", who,
                          "; ", m);
  }

 private:
  c10::intrusive_ptr<c10d::Work> start(const char* op, const std::string& what,
                                       const std::function<c10::intrusive_ptr<c10d::Work>()>& f) {
    try {
      return f();
    } catch (const std::exception& e) {
      throw std::runtime_error(failure(op, what, e));
    }
  }

  void wait(const c10::intrusive_ptr<c10d::Work>& work, const char* op, const std::string& what) {
    try {
      // Gloo's own context timeout ends a stuck operation; NCCL's wait blocks at most this long.
      const bool ok = name_ == "nccl" ? work->wait(Ms(static_cast<int64_t>(timeout_s_ * 1000)))
                                      : work->wait();
      if (!ok) throw std::runtime_error("timed out");
    } catch (const std::exception& e) {
      throw std::runtime_error(failure(op, what, e));
    }
  }

  int rank_, size_;
  c10::intrusive_ptr<c10d::Store> store_;
  c10::intrusive_ptr<c10d::Backend> backend_;
  std::string name_;
  double timeout_s_;
  BackendFactory factory_;
  std::shared_ptr<Heartbeat> heartbeat_;  // shared with the subgroups (global ranks)
  int64_t gathers_ = 0;
};

// A listening socket bound to `host`:`port` only (c10d's own store server would listen on every
// interface): 127.0.0.1 under --standalone, MASTER_ADDR's address otherwise.
int listen_on(const std::string& host, int port) {
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  addrinfo* found = nullptr;
  const std::string service = std::to_string(port);
  if (const int rc = ::getaddrinfo(host.c_str(), service.c_str(), &hints, &found); rc != 0)
    throw std::runtime_error(detail::concat("cannot resolve ", host, ": ", gai_strerror(rc)));
  std::string why;
  int fd = -1;
  for (addrinfo* a = found; a && fd < 0; a = a->ai_next) {
    fd = ::socket(a->ai_family, a->ai_socktype | SOCK_CLOEXEC, a->ai_protocol);
    if (fd < 0) continue;
    const int one = 1;
    ::setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (a->ai_family == AF_INET6) ::setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof one);
    if (::bind(fd, a->ai_addr, a->ai_addrlen) != 0 || ::listen(fd, SOMAXCONN) != 0) {
      why = std::strerror(errno);
      ::close(fd);
      fd = -1;
    }
  }
  ::freeaddrinfo(found);
  if (fd < 0)
    throw std::runtime_error(detail::concat("cannot listen on ", host, ":", port, " (", why,
                                            "; is MASTER_ADDR an address of this machine?)"));
  return fd;
}

bool is_loopback(const std::string& host) {
  return host == "localhost" || host.rfind("127.", 0) == 0 || host == "::1";
}

}  // namespace

NcclMaker& nccl_maker() {
  static NcclMaker maker = nullptr;
  return maker;
}

bool nccl_built() {
#ifdef SCULPT_NCCL_LIB
  return true;
#else
  return false;
#endif
}

std::string choose_backend(const std::string& configured, c10::Device device) {
  std::string b = configured;
  if (b == "auto") b = device.is_cuda() ? "nccl" : "gloo";
  if (b == "nccl") {
    SCULPT_CHECK(nccl_built(), "distributed.backend: nccl, but this build of Sculpt has no NCCL "
                               "(a CPU build); use distributed.backend=gloo");
    SCULPT_CHECK(device.is_cuda(), "distributed.backend: nccl needs CUDA devices, but the run's "
                                   "device is ", device.str(), "; use distributed.backend=gloo or "
                                   "run.device=cuda");
  }
  return b;
}

std::shared_ptr<Collectives> connect(const WorldInfo& world, const config::DistributedConfig& cfg,
                                     c10::Device device) {
  const std::string backend_name = choose_backend(cfg.backend, device);
  const Ms timeout(static_cast<int64_t>(cfg.timeout_s * 1000));
  c10::intrusive_ptr<c10d::Store> store;
  try {
    // Under torchrun the agent already hosts the store on MASTER_PORT (it says so with
    // TORCHELASTIC_USE_AGENT_STORE): every rank is its client, under the attempt's prefix.
    const char* agent = std::getenv("TORCHELASTIC_USE_AGENT_STORE");
    const bool agent_store = agent && std::string(agent) == "True";
    c10d::TCPStoreOptions o;
    o.port = static_cast<uint16_t>(world.master_port);
    o.isServer = world.rank == 0 && !agent_store;
    o.numWorkers = static_cast<size_t>(world.world_size);
    o.waitWorkers = !agent_store;
    o.timeout = timeout;
    if (o.isServer) o.masterListenFd = listen_on(world.master_addr, world.master_port);
    store = c10::make_intrusive<c10d::TCPStore>(world.master_addr, o);
    if (agent_store) {
      const char* restart = std::getenv("TORCHELASTIC_RESTART_COUNT");
      store = c10::make_intrusive<c10d::PrefixStore>(
          std::string("/worker/attempt_") + (restart ? restart : "0"), store);
    }
  } catch (const std::exception& e) {
    throw std::runtime_error(detail::concat(
        "rank ", world.rank, " of ", world.world_size, ": rendezvous at ", world.master_addr, ":",
        world.master_port, " (", world.source, ") failed within distributed.timeout_s=",
        cfg.timeout_s, " s", world.rank == 0 ? " (rank 0 hosts the store there)" : "", ": ",
        message_of(e)));
  }
  const std::string master_addr = world.master_addr;
  const int device_index = device.index();
  BackendFactory factory = [backend_name, timeout, master_addr, device_index](
                               const c10::intrusive_ptr<c10d::Store>& st, int rank,
                               int size) -> c10::intrusive_ptr<c10d::Backend> {
    if (backend_name == "gloo") {
      auto opts = c10d::ProcessGroupGloo::Options::create(timeout);
      const char* iface = std::getenv("GLOO_SOCKET_IFNAME");
      if (iface && *iface)
        opts->devices.push_back(c10d::ProcessGroupGloo::createDeviceForInterface(iface));
      else if (is_loopback(master_addr))
        opts->devices.push_back(c10d::ProcessGroupGloo::createDeviceForHostname("127.0.0.1"));
      else
        opts->devices.push_back(c10d::ProcessGroupGloo::createDefaultDevice());
      return c10::make_intrusive<c10d::ProcessGroupGloo>(
          c10::make_intrusive<c10d::PrefixStore>("gloo/", st), rank, size, opts);
    }
    if (!nccl_maker())
      throw std::runtime_error(
          "the NCCL backend (libsculpt_nccl.so) is not loaded: this build has none, or no NVIDIA "
          "driver was found (sculpt::load_cuda_runtime)");
    return nccl_maker()(st, rank, size, timeout, device_index);
  };
  c10::intrusive_ptr<c10d::Backend> backend;
  try {
    backend = factory(store, world.rank, world.world_size);
  } catch (const std::exception& e) {
    throw std::runtime_error(detail::concat("rank ", world.rank, " of ", world.world_size,
                                            ": creating the ", backend_name,
                                            " process group failed: ", message_of(e)));
  }
  log::info("distributed: rank ", world.rank, " of ", world.world_size, " (local rank ",
            world.local_rank, ", ", world.source, "), ", backend_name, " backend, store ",
            world.master_addr, ":", world.master_port);
  std::shared_ptr<Heartbeat> heartbeat;
  if (world.world_size > 1) {
    try {
      heartbeat = std::make_shared<Heartbeat>(store, world.rank, world.world_size, cfg.timeout_s);
    } catch (const std::exception& e) {
      log::warn("distributed: no heartbeat (", message_of(e),
                "); a failed collective will not name the rank that stopped");
    }
  }
  return std::make_shared<C10dCollectives>(world, store, backend, backend_name, cfg.timeout_s,
                                           std::move(factory), std::move(heartbeat));
}

void check_same_config(Collectives& comm, const std::string& hash) {
  const auto all = comm.all_gather(hash, "the config hash");
  std::string differing;
  for (size_t r = 1; r < all.size(); ++r)
    if (all[r] != all[0]) differing += (differing.empty() ? "" : ", ") + std::to_string(r);
  SCULPT_CHECK(differing.empty(), "the ranks run different configs: rank(s) ", differing,
               " differ from rank 0 (config hash ", all[0], "; ranks: ",
               [&] {
                 std::string s;
                 for (size_t r = 0; r < all.size(); ++r)
                   s += (r ? ", " : "") + std::to_string(r) + "=" + all[r];
                 return s;
               }(),
               "); every rank must get the same YAML file and overrides");
}

}  // namespace sculpt::distributed
