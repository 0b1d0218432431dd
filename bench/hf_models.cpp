// bench_hf_models: Sculpt's Hugging Face models (core/models/hf) against `transformers`
// (bench/hf_models_ref.py runs the same modes on the same checkpoint; bench/hf_models.sh runs
// both and prints the ratios). Each mode prints one JSON line.
//   train DIR [WARMUP=3] [STEPS=10]  causal-LM training steps at batch 4, sequence 256: AdamW
//       (lr 1e-4, weight decay 0.01, one group), zero_grad, forward, mean cross-entropy over the
//       4 x 256 next tokens (the language_model task's loss), backward, step. Median ms/step of
//       the timed steps, the first and last losses, and the process's peak RSS (VmHWM).
//   generate DIR [REPS=5] [NEW=64]   greedy decoding of NEW tokens after a 16-token prompt at
//       batch 1 with the KV cache (generate_greedy); one untimed run, then the median of REPS;
//       the generated ids.
//   load DIR                         read_arch + load_pretrained (vocab from the checkpoint,
//       input_shape {1024}) and exit: time the whole process from outside.
// Threads: BENCH_THREADS, else OMP_NUM_THREADS, else 2. Diagnostics (environment variables):
//   BENCH_PROFILE=N      after the timing, one more step (train) or generation (generate) under
//                        ATen's profiler, and the N ops of most self time on stderr
//                        (hf_models_ref.py prints torch.profiler's table for the same)
//   BENCH_RSS_TRACE=1    train: the memory after each phase of every step, on stderr
//   BENCH_LOAD_DETAIL=1  load: also the time of build() alone (random init)
//   OMP_NUM_THREADS=2 build/bin/bench_hf_models train build/bench-hf/llama_bench
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <torch/csrc/autograd/profiler_legacy.h>
#include <torch/optim/optimizer.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <functional>
#include <map>
#include <string>
#include <vector>

#include "core/models/generate.h"
#include "core/optim/optimizers.h"
#include "core/models/hf/hf_model.h"

namespace {

using Clock = std::chrono::steady_clock;
namespace hf = sculpt::models::hf;

double ms_since(Clock::time_point t0) {
  return std::chrono::duration<double, std::milli>(Clock::now() - t0).count();
}

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  const size_t n = v.size();
  return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

// A /proc/self/status field (VmHWM: peak RSS, VmRSS: current) in MiB.
double status_mib(const char* field) {
  std::ifstream f("/proc/self/status");
  std::string line;
  const std::string key = std::string(field) + ":";
  while (std::getline(f, line))
    if (line.rfind(key, 0) == 0) return std::strtod(line.c_str() + key.size(), nullptr) / 1024.0;
  return -1;
}

// An experiment switch: set, not empty and not "0".
bool env_on(const char* name) {
  const char* v = std::getenv(name);
  return v && *v && std::string(v) != "0";
}

// BENCH_RSS_TRACE set: the process's memory at a phase on stderr (current, anonymous and
// file-backed RSS, peak), to see where the peak comes from.
void rss_trace(const char* phase) {
  if (!env_on("BENCH_RSS_TRACE")) return;
  std::fprintf(stderr, "rss %-24s VmRSS %7.1f  RssAnon %7.1f  RssFile %7.1f  VmHWM %7.1f MiB\n", phase,
               status_mib("VmRSS"), status_mib("RssAnon"), status_mib("RssFile"), status_mib("VmHWM"));
}

int threads() {
  for (const char* v : {"BENCH_THREADS", "OMP_NUM_THREADS"})
    if (const char* s = std::getenv(v)) return std::atoi(s);
  return 2;
}

// The benchmark's token ids, the same formulas as hf_models_ref.py: [rows, cols] int64.
at::Tensor bench_ids(int64_t rows, int64_t cols, int64_t vocab, int64_t salt) {
  at::Tensor r = at::arange(rows, at::kLong).unsqueeze(1), c = at::arange(cols, at::kLong);
  return (r * 7919 + c * 104729 + salt * 31337 + 17).remainder(vocab - 3) + 3;
}

// BENCH_PROFILE=N: profiles `fn` and prints the N ops of most self time (ms, calls) to stderr.
void maybe_profile(const std::function<void()>& fn) {
  const char* env = std::getenv("BENCH_PROFILE");
  if (!env) return;
  const int top = std::max(1, std::atoi(env));
  namespace prof = torch::autograd::profiler;
  struct Row {
    double self_us = 0, total_us = 0;
    int64_t calls = 0;
  };
  std::map<std::string, Row> rows;
  double all_us = 0;
  {
    prof::TLSLegacyProfilerGuard guard(
        torch::profiler::impl::ProfilerConfig(torch::profiler::impl::ProfilerState::CPU),
        [&](const prof::thread_event_lists& lists) {
          for (const auto& list : lists) {
            struct Open {
              const prof::LegacyEvent* ev;
              double child_us;
            };
            std::vector<Open> stack;
            for (const auto& e : list) {
              if (e.kind() == prof::EventKind::PushRange) {
                stack.push_back({&e, 0.0});
              } else if (e.kind() == prof::EventKind::PopRange && !stack.empty()) {
                const Open o = stack.back();
                stack.pop_back();
                const double us = o.ev->cpuElapsedUs(e);
                Row& r = rows[o.ev->name()];
                r.self_us += us - o.child_us, r.total_us += us, ++r.calls;
                if (stack.empty()) all_us += us;
                else stack.back().child_us += us;
              }
            }
          }
        });
    fn();
  }
  std::vector<std::pair<std::string, Row>> sorted(rows.begin(), rows.end());
  std::sort(sorted.begin(), sorted.end(),
            [](const auto& a, const auto& b) { return a.second.self_us > b.second.self_us; });
  std::fprintf(stderr, "%-48s %10s %10s %8s   (ops' total %.1f ms)\n", "op", "self ms", "total ms",
               "calls", all_us / 1e3);
  for (size_t i = 0; i < sorted.size() && i < static_cast<size_t>(top); ++i)
    std::fprintf(stderr, "%-48s %10.2f %10.2f %8lld\n", sorted[i].first.c_str(),
                 sorted[i].second.self_us / 1e3, sorted[i].second.total_us / 1e3,
                 static_cast<long long>(sorted[i].second.calls));
}

sculpt::data::DataSpec token_spec(const hf::Arch& a, int64_t len) {
  sculpt::data::DataSpec s;
  s.vocab_size = a.vocab;
  s.input_shape = {len};
  return s;
}

// The step as Sculpt's trainer takes it (trainers/strategies/local_step.cpp): zero_grad, forward,
// the language_model task's loss, the outputs released, backward, the optimizer step of
// `optimizer: {name: adamw}` (Sculpt's registry: ATen's fused update), one parameter group as
// the peer's torch.optim.AdamW(model.parameters()).
int train(const std::string& dir, int warmup, int steps) {
  const int64_t batch = 4, len = 256;
  rss_trace("start");
  const hf::Arch a = hf::read_arch(dir);
  auto model = hf::load_pretrained(a, token_spec(a, len), hf::LoadOptions{a.head});
  const double rss_loaded = status_mib("VmRSS");
  rss_trace("loaded");
  model->train();
  const at::Tensor ids = bench_ids(batch, len + 1, a.vocab, 0);
  const at::Tensor x = ids.narrow(1, 0, len).contiguous(), y = ids.narrow(1, 1, len).contiguous();
  sculpt::register_builtin_optimizers(sculpt::optimizer_registry());
  sculpt::config::OptimizerConfig oc;
  oc.name = "adamw";
  oc.lr = 1e-4;
  oc.weight_decay = 0.01;
  oc.no_decay_bias_norm = false;
  std::vector<std::pair<std::string, at::Tensor>> named;
  for (const auto& p : model->named_parameters()) named.emplace_back(p.key(), p.value());
  auto adamw = sculpt::optimizer_registry().create(
      oc.name, sculpt::split_for_weight_decay(named, oc.no_decay_bias_norm), oc);
  std::vector<double> times, fwd, bwd, upd, losses;
  auto step = [&] {
    const auto t0 = Clock::now();
    adamw->zero_grad();
    at::Tensor logits = model->forward(x);
    rss_trace("forward");
    at::Tensor loss = at::cross_entropy_loss(logits.reshape({-1, logits.size(-1)}), y.reshape(-1));
    logits = at::Tensor();
    const auto t1 = Clock::now();
    loss.backward();
    rss_trace("backward");
    const auto t2 = Clock::now();
    adamw->step();
    rss_trace("step");
    const auto t3 = Clock::now();
    auto ms = [](Clock::time_point a, Clock::time_point b) {
      return std::chrono::duration<double, std::milli>(b - a).count();
    };
    fwd.push_back(ms(t0, t1)), bwd.push_back(ms(t1, t2)), upd.push_back(ms(t2, t3));
    times.push_back(ms(t0, t3));
    return loss;
  };
  for (int i = 0; i < warmup + steps; ++i) {
    losses.push_back(step().item<double>());
    if (i < warmup) times.pop_back(), fwd.pop_back(), bwd.pop_back(), upd.pop_back();
  }
  std::printf("{\"side\": \"sculpt\", \"mode\": \"train\", \"threads\": %d, \"params\": %lld, "
              "\"optimizer\": \"%s\", \"warmup\": %d, \"steps\": %d, \"ms_per_step\": %.2f, "
              "\"ms_min\": %.2f, \"ms_forward_loss\": %.2f, \"ms_backward\": %.2f, "
              "\"ms_optimizer\": %.2f, \"loss_first\": %.6f, \"loss_last\": %.6f, "
              "\"rss_loaded_mib\": %.1f, \"peak_rss_mib\": %.1f}\n",
              at::get_num_threads(), static_cast<long long>(model->parameter_count()),
              "sculpt adamw (fused)", warmup, steps,
              median(times), *std::min_element(times.begin(), times.end()), median(fwd),
              median(bwd), median(upd), losses.front(), losses.back(), rss_loaded,
              status_mib("VmHWM"));
  std::fflush(stdout);
  maybe_profile([&] { step(); });
  return 0;
}

int generate(const std::string& dir, int reps, int64_t new_tokens) {
  const int64_t prompt_len = 16;
  const hf::Arch a = hf::read_arch(dir);
  auto model = hf::load_pretrained(a, token_spec(a, prompt_len + new_tokens), hf::LoadOptions{a.head});
  model->eval();
  const at::Tensor prompt = bench_ids(1, prompt_len, a.vocab, 1);
  sculpt::models::GenerateOptions o;
  o.new_tokens = new_tokens;
  o.cache = true;
  at::Tensor out = sculpt::models::generate_greedy(*model, prompt, o);  // untimed
  std::vector<double> times;
  for (int r = 0; r < reps; ++r) {
    const auto t0 = Clock::now();
    out = sculpt::models::generate_greedy(*model, prompt, o);
    times.push_back(ms_since(t0));
  }
  std::string ids;
  const at::Tensor flat = out.reshape(-1).contiguous();
  for (int64_t i = 0; i < flat.numel(); ++i)
    ids += (i ? "," : "") + std::to_string(flat[i].item<int64_t>());
  std::printf("{\"side\": \"sculpt\", \"mode\": \"generate\", \"threads\": %d, \"new_tokens\": %lld, "
              "\"reps\": %d, \"ms\": %.2f, \"ms_min\": %.2f, \"peak_rss_mib\": %.1f, \"ids\": [%s]}\n",
              at::get_num_threads(), static_cast<long long>(new_tokens), reps, median(times),
              *std::min_element(times.begin(), times.end()), status_mib("VmHWM"), ids.c_str());
  std::fflush(stdout);
  maybe_profile([&] { sculpt::models::generate_greedy(*model, prompt, o); });
  return 0;
}

// BENCH_LOAD_DETAIL=1: also the time of build() alone (the model with random weights, before
// load_pretrained copies the checkpoint in), measured after the load, so the process's own
// wall time then covers both.
int load(const std::string& dir) {
  const auto t0 = Clock::now();
  const hf::Arch a = hf::read_arch(dir);
  const auto spec = token_spec(a, 1024);
  auto model = hf::load_pretrained(a, spec, hf::LoadOptions{a.head});
  const double ms = ms_since(t0);
  const int64_t params = model->parameter_count();
  double build_ms = -1;
  if (env_on("BENCH_LOAD_DETAIL")) {
    model.reset();
    const auto t1 = Clock::now();
    auto fresh = hf::build(a, a.head, spec);
    build_ms = ms_since(t1);
  }
  std::printf("{\"side\": \"sculpt\", \"mode\": \"load\", \"params\": %lld, \"ms_in_process\": %.1f, "
              "\"ms_build_alone\": %.1f, \"peak_rss_mib\": %.1f}\n",
              static_cast<long long>(params), ms, build_ms, status_mib("VmHWM"));
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  const std::string mode = argc > 1 ? argv[1] : "";
  if (argc < 3 || (mode != "train" && mode != "generate" && mode != "load")) {
    std::fprintf(stderr, "usage: bench_hf_models train DIR [WARMUP=3] [STEPS=10]\n"
                         "       bench_hf_models generate DIR [REPS=5] [NEW_TOKENS=64]\n"
                         "       bench_hf_models load DIR\n");
    return 2;
  }
  const std::string dir = argv[2];
  auto arg = [&](int i, int fallback) { return argc > i ? std::atoi(argv[i]) : fallback; };
  if (mode == "load") return load(dir);  // the default thread count: what a plain run gets
  at::set_num_threads(threads());
  if (mode == "train") return train(dir, arg(3, 3), arg(4, 10));
  return generate(dir, arg(3, 5), arg(4, 64));
}
