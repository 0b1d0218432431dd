#include "distributed/pipeline.h"

#include <ATen/ops/empty.h>
#include <ATen/ops/zeros.h>
#include <ATen/ops/zeros_like.h>
#include <torch/csrc/autograd/autograd.h>

#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <deque>
#include <limits>
#include <map>
#include <mutex>

#include "core/error.h"
#include "core/run/collectives.h"

namespace sculpt::distributed::pipeline {

namespace {
using Clock = std::chrono::steady_clock;
double since(Clock::time_point t0) {
  return std::chrono::duration<double>(Clock::now() - t0).count();
}
}  // namespace

Schedule parse_schedule(const std::string& name, const std::string& what) {
  if (name == "gpipe") return Schedule::gpipe;
  if (name == "1f1b") return Schedule::one_f_one_b;
  throw UserError(what + ": unknown pipeline schedule '" + name + "' (gpipe | 1f1b)");
}

const char* schedule_name(Schedule s) { return s == Schedule::gpipe ? "gpipe" : "1f1b"; }

std::vector<Action> schedule(Schedule kind, int64_t stage, int64_t stages, int64_t m) {
  SCULPT_CHECK(stages >= 1 && stage >= 0 && stage < stages && m >= 1,
               "pipeline schedule: stage ", stage, " of ", stages, " with ", m, " micro-batches");
  std::vector<Action> out;
  out.reserve(static_cast<size_t>(2 * m));
  if (kind == Schedule::gpipe) {
    for (int64_t i = 0; i < m; ++i) out.push_back({true, i});
    for (int64_t i = m - 1; i >= 0; --i) out.push_back({false, i});
    return out;
  }
  const int64_t warmup = std::min(stages - stage - 1, m);
  for (int64_t i = 0; i < warmup; ++i) out.push_back({true, i});
  for (int64_t i = warmup; i < m; ++i) {
    out.push_back({true, i});
    out.push_back({false, i - warmup});
  }
  for (int64_t i = m - warmup; i < m; ++i) out.push_back({false, i});
  return out;
}

int64_t peak_live(const std::vector<Action>& actions) {
  int64_t live = 0, peak = 0;
  for (const auto& a : actions) {
    live += a.forward ? 1 : -1;
    peak = std::max(peak, live);
  }
  return peak;
}

double theoretical_bubble(int64_t p, int64_t m) {
  return static_cast<double>(p - 1) / static_cast<double>(m + p - 1);
}

StageRanges balance(const std::vector<double>& w, int64_t stages) {
  const auto n = static_cast<int64_t>(w.size());
  if (n < stages)
    throw UserError("pipeline: " + std::to_string(stages) + " stages need at least as many blocks; the model has " +
                    std::to_string(n));
  std::vector<double> prefix(static_cast<size_t>(n) + 1, 0.0);
  for (int64_t i = 0; i < n; ++i) prefix[i + 1] = prefix[i] + w[i];
  const double inf = std::numeric_limits<double>::infinity();
  // best[k][i]: the smallest possible largest stage over the first i blocks in k stages.
  std::vector<std::vector<double>> best(stages + 1, std::vector<double>(n + 1, inf));
  std::vector<std::vector<int64_t>> cut(stages + 1, std::vector<int64_t>(n + 1, 0));
  best[0][0] = 0;
  for (int64_t k = 1; k <= stages; ++k)
    for (int64_t i = k; i <= n; ++i)
      for (int64_t j = k - 1; j < i; ++j) {
        const double v = std::max(best[k - 1][j], prefix[i] - prefix[j]);
        if (v < best[k][i]) best[k][i] = v, cut[k][i] = j;
      }
  StageRanges out(static_cast<size_t>(stages));
  for (int64_t k = stages, i = n; k >= 1; --k) {
    out[k - 1] = {cut[k][i], i};
    i = cut[k][i];
  }
  return out;
}

StageRanges split_at(const std::vector<std::string>& names, const std::vector<std::string>& cuts,
                     int64_t stages, const std::string& what) {
  const auto n = static_cast<int64_t>(names.size());
  std::string known;
  for (const auto& b : names) known += (known.empty() ? "" : ", ") + b;
  if (static_cast<int64_t>(cuts.size()) != stages - 1)
    throw UserError(what + ": " + std::to_string(stages) + " stages need " +
                    std::to_string(stages - 1) + " cut points, got " +
                    std::to_string(cuts.size()) + " (the model's blocks: " + known + ")");
  std::vector<int64_t> at;
  for (const auto& c : cuts) {
    int64_t idx = -1;
    if (!c.empty() && std::all_of(c.begin(), c.end(), [](char ch) { return ch >= '0' && ch <= '9'; })) {
      idx = std::stoll(c);
      if (idx < 1 || idx >= n)
        throw UserError(what + ": cut point " + c + " is not a block index in 1.." +
                        std::to_string(n - 1) + " (a stage starts at each cut)");
    } else {
      auto it = std::find(names.begin(), names.end(), c);
      if (it == names.end())
        throw UserError(what + ": cut point '" + c + "' is not a block of the model; its blocks: " + known);
      idx = it - names.begin();
      if (idx == 0)
        throw UserError(what + ": cut point '" + c + "' is the first block, which leaves stage 0 empty");
    }
    if (!at.empty() && idx <= at.back())
      throw UserError(what + ": cut points must be in increasing block order ('" + c + "' is not after the previous one)");
    at.push_back(idx);
  }
  StageRanges out;
  int64_t first = 0;
  for (int64_t c : at) out.emplace_back(first, c), first = c;
  out.emplace_back(first, n);
  return out;
}

std::vector<int64_t> microbatch_rows(int64_t rows, int64_t m) {
  if (m < 1 || rows < m)
    throw UserError("pipeline: a batch of " + std::to_string(rows) + " rows cannot make " +
                    std::to_string(m) + " micro-batches (distributed.pipeline.microbatches)");
  std::vector<int64_t> out(static_cast<size_t>(m), rows / m);
  for (int64_t i = 0; i < rows % m; ++i) ++out[i];
  return out;
}

std::vector<at::Tensor> split_rows(const at::Tensor& t, const std::vector<int64_t>& rows) {
  std::vector<at::Tensor> out;
  int64_t at = 0;
  for (auto r : rows) {
    out.push_back(t.narrow(0, at, r));
    at += r;
  }
  return out;
}

StepStats run_step(Schedule kind, int64_t stage, int64_t stages, const std::vector<int64_t>& rows,
                   const std::vector<at::Tensor>& inputs, const std::vector<at::Tensor>& targets,
                   const StageFunctions& fns, Transport& transport) {
  const auto m = static_cast<int64_t>(rows.size());
  const bool first = stage == 0, last = stage == stages - 1;
  SCULPT_CHECK(!first || static_cast<int64_t>(inputs.size()) == m,
               "pipeline: the first stage needs ", m, " input micro-batches, got ", inputs.size());
  SCULPT_CHECK(!last || static_cast<int64_t>(targets.size()) == m,
               "pipeline: the last stage needs ", m, " target micro-batches, got ", targets.size());
  int64_t total_rows = 0;
  for (auto r : rows) total_rows += r;

  StepStats st;
  const auto t_step = Clock::now();
  auto timed_recv = [&](int64_t from) {
    const auto t0 = Clock::now();
    auto t = transport.recv(from);
    st.wait_seconds += since(t0);
    return t;
  };
  std::vector<at::Tensor> in(static_cast<size_t>(m)), out(static_cast<size_t>(m));
  int64_t live = 0, backwards = 0;
  for (const auto& a : schedule(kind, stage, stages, m)) {
    const auto i = static_cast<size_t>(a.microbatch);
    if (a.forward) {
      at::Tensor x = first ? inputs[i] : timed_recv(stage - 1).requires_grad_(true);
      at::Tensor y = fns.forward(x);
      if (last) {
        const double share = static_cast<double>(rows[i]) / static_cast<double>(total_rows);
        at::Tensor l = fns.loss(y, targets[i]);
        st.loss += l.item<double>() * share;
        st.outputs.push_back(y.detach());
        out[i] = l * share;
      } else {
        transport.send(y.detach(), stage + 1);
        out[i] = y;
      }
      in[i] = x;
      st.peak_live = std::max(st.peak_live, ++live);
    } else {
      const bool final_backward = ++backwards == m;
      at::Tensor g = last ? at::Tensor() : timed_recv(stage + 1);
      if (fns.before_backward) fns.before_backward(final_backward);
      // The micro-batch's output (unless nothing before it trains: a first stage without
      // parameters) and, at the final backward, the stage's extra term, in one backward.
      std::vector<at::Tensor> roots, grads;
      if (out[i].requires_grad()) {
        roots.push_back(out[i]);
        grads.push_back(last ? at::Tensor() : g);
      }
      at::Tensor extra = final_backward && fns.extra_loss ? fns.extra_loss() : at::Tensor();
      if (extra.defined()) {
        st.extra_loss = extra.item<double>();
        if (extra.requires_grad()) {
          roots.push_back(extra);
          grads.push_back(at::Tensor());
        }
      }
      if (!roots.empty()) torch::autograd::backward(roots, grads);
      if (!first) {  // the previous stage waits for this before the reduction below
        at::Tensor gi = in[i].grad();
        transport.send(gi.defined() ? gi : at::zeros_like(in[i]), stage - 1);
      }
      if (final_backward && fns.after_backwards) fns.after_backwards();
      in[i] = at::Tensor();
      out[i] = at::Tensor();
      --live;
    }
  }
  const auto t0 = Clock::now();
  transport.flush();
  st.wait_seconds += since(t0);
  st.total_seconds = since(t_step);
  st.busy_seconds = st.total_seconds - st.wait_seconds;
  return st;
}

// ---- between processes ----

namespace {
constexpr int64_t kMaxDims = 8;

class CollectivesTransport final : public Transport {
 public:
  CollectivesTransport(Collectives& comm, c10::Device device) : comm_(comm), device_(device) {}

  void send(const at::Tensor& t, int64_t to) override {
    SCULPT_CHECK(t.dim() <= kMaxDims, "pipeline: a stage output with ", t.dim(),
                 " dimensions (at most ", kMaxDims, " travel between stages)");
    auto header = at::zeros({2 + kMaxDims}, at::kLong);
    auto h = header.accessor<int64_t, 1>();
    h[0] = static_cast<int64_t>(t.scalar_type());
    h[1] = t.dim();
    for (int64_t d = 0; d < t.dim(); ++d) h[2 + d] = t.size(d);
    header = header.to(device_);
    auto data = t.detach().contiguous();
    const auto what = detail::concat("a tensor for pipeline stage ", to);
    pending_.push_back({header, comm_.send(header, static_cast<int>(to), what)});
    pending_.push_back({data, comm_.send(data, static_cast<int>(to), what)});
  }

  at::Tensor recv(int64_t from) override {
    const auto what = detail::concat("a tensor from pipeline stage ", from);
    auto header = at::empty({2 + kMaxDims}, at::TensorOptions().dtype(at::kLong).device(device_));
    comm_.recv(header, static_cast<int>(from), what);
    header = header.cpu();
    auto h = header.accessor<int64_t, 1>();
    std::vector<int64_t> sizes(h.data() + 2, h.data() + 2 + h[1]);
    auto t = at::empty(sizes, at::TensorOptions()
                                  .dtype(static_cast<c10::ScalarType>(h[0]))
                                  .device(device_));
    comm_.recv(t, static_cast<int>(from), what);
    return t;
  }

  void flush() override {
    for (auto& p : pending_) p.second->wait();
    pending_.clear();
  }

 private:
  Collectives& comm_;
  c10::Device device_;
  std::vector<std::pair<at::Tensor, std::unique_ptr<Collectives::Pending>>> pending_;
};
}  // namespace

std::unique_ptr<Transport> collectives_transport(Collectives& comm, c10::Device device) {
  return std::make_unique<CollectivesTransport>(comm, device);
}

// ---- in-process transport ----

struct LocalHub::Queues {
  std::mutex mu;
  std::condition_variable cv;
  std::map<std::pair<int64_t, int64_t>, std::deque<at::Tensor>> q;  // (from, to)
};

namespace {
class LocalEndpoint final : public Transport {
 public:
  LocalEndpoint(void* queues, int64_t stage) : q_(queues), stage_(stage) {}
  void send(const at::Tensor& t, int64_t to) override;
  at::Tensor recv(int64_t from) override;

 private:
  void* q_;
  int64_t stage_;
};
}  // namespace

LocalHub::LocalHub(int64_t /*stages*/) : q_(std::make_unique<Queues>()) {}
LocalHub::~LocalHub() = default;

std::unique_ptr<Transport> LocalHub::endpoint(int64_t stage) {
  return std::make_unique<LocalEndpoint>(q_.get(), stage);
}

void LocalEndpoint::send(const at::Tensor& t, int64_t to) {
  auto& q = *static_cast<LocalHub::Queues*>(q_);
  {
    std::lock_guard<std::mutex> lock(q.mu);
    q.q[{stage_, to}].push_back(t.detach().clone());  // as if it crossed a process boundary
  }
  q.cv.notify_all();
}

at::Tensor LocalEndpoint::recv(int64_t from) {
  auto& q = *static_cast<LocalHub::Queues*>(q_);
  std::unique_lock<std::mutex> lock(q.mu);
  auto& dq = q.q[{from, stage_}];
  q.cv.wait(lock, [&] { return !dq.empty(); });
  at::Tensor t = std::move(dq.front());
  dq.pop_front();
  return t;
}

}  // namespace sculpt::distributed::pipeline
