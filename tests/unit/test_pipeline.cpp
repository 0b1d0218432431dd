// Pipeline parallelism without the network: cut points, schedules, and one step of 2 and 4
// stages (threads over in-memory queues) against single-process training of the same batch.
#include <catch2/catch.hpp>
#include <torch/torch.h>

#include <random>
#include <thread>

#include "core/error.h"
#include "core/models/model.h"
#include "distributed/pipeline.h"

namespace sculpt::distributed::pipeline {
// How Catch prints a schedule that differs ("F0 F1 B0 ...").
std::ostream& operator<<(std::ostream& o, const Action& a) {
  return o << (a.forward ? "F" : "B") << a.microbatch;
}
}  // namespace sculpt::distributed::pipeline

namespace pp = sculpt::distributed::pipeline;
using pp::Action;
using pp::Schedule;

namespace {
// A 6-block MLP (tanh, so every block has a non-trivial gradient).
std::shared_ptr<sculpt::models::Model> make_mlp(uint64_t seed) {
  torch::manual_seed(seed);
  auto m = std::make_shared<sculpt::models::Model>("mlp");
  const int64_t widths[] = {7, 12, 10, 9, 11, 8, 5};
  for (int i = 0; i < 6; ++i) {
    torch::nn::Sequential seq(torch::nn::Linear(widths[i], widths[i + 1]));
    if (i < 5) seq->push_back(torch::nn::Tanh());
    m->add_block("b" + std::to_string(i), std::make_shared<sculpt::models::SequentialBlock>(seq));
  }
  return m;
}

at::Tensor ce(const at::Tensor& out, const at::Tensor& y) {
  return torch::nn::functional::cross_entropy(out, y);
}

// Runs one pipelined step of `model` over (x, y) with `stages` threads; returns the loss
// reported by the last stage and each stage's peak of live micro-batches.
double pipelined_step(sculpt::models::Model& model, const pp::StageRanges& ranges, Schedule kind,
                      int64_t m, const at::Tensor& x, const at::Tensor& y,
                      std::vector<int64_t>* peaks = nullptr) {
  const auto stages = static_cast<int64_t>(ranges.size());
  const auto rows = pp::microbatch_rows(x.size(0), m);
  const auto xs = pp::split_rows(x, rows), ys = pp::split_rows(y, rows);
  pp::LocalHub hub(stages);
  std::vector<pp::StepStats> stats(static_cast<size_t>(stages));
  std::vector<std::thread> threads;
  std::vector<std::string> errors(static_cast<size_t>(stages));
  for (int64_t s = 0; s < stages; ++s)
    threads.emplace_back([&, s] {
      try {
        auto tr = hub.endpoint(s);
        pp::StageFunctions fns;
        fns.forward = [&, s](const at::Tensor& in) {
          return model.forward_blocks(in, ranges[s].first, ranges[s].second);
        };
        fns.loss = ce;
        stats[s] = pp::run_step(kind, s, stages, rows, s == 0 ? xs : std::vector<at::Tensor>{},
                                s == stages - 1 ? ys : std::vector<at::Tensor>{}, fns, *tr);
      } catch (const std::exception& e) {
        errors[s] = e.what();
      }
    });
  for (auto& t : threads) t.join();
  for (const auto& e : errors) REQUIRE(e.empty());
  if (peaks)
    for (const auto& st : stats) peaks->push_back(st.peak_live);
  return stats.back().loss;
}
}  // namespace

TEST_CASE("pipeline: GPipe runs every forward, then every backward", "[pipeline]") {
  auto a = pp::schedule(Schedule::gpipe, 1, 3, 3);
  std::vector<Action> want = {{true, 0}, {true, 1}, {true, 2}, {false, 2}, {false, 1}, {false, 0}};
  CHECK(a == want);
  CHECK(pp::peak_live(a) == 3);
}

TEST_CASE("pipeline: 1F1B warms up with stages - stage - 1 forwards", "[pipeline]") {
  // Stage 0 of 4 with 6 micro-batches: F0 F1 F2 | F3 B0 F4 B1 F5 B2 | B3 B4 B5.
  auto a = pp::schedule(Schedule::one_f_one_b, 0, 4, 6);
  std::vector<Action> want = {{true, 0},  {true, 1},  {true, 2},  {true, 3},
                              {false, 0}, {true, 4},  {false, 1}, {true, 5},
                              {false, 2}, {false, 3}, {false, 4}, {false, 5}};
  CHECK(a == want);
  // The last stage alternates from the start.
  auto l = pp::schedule(Schedule::one_f_one_b, 3, 4, 3);
  std::vector<Action> want_last = {{true, 0}, {false, 0}, {true, 1}, {false, 1}, {true, 2}, {false, 2}};
  CHECK(l == want_last);
}

TEST_CASE("pipeline: every schedule runs each micro-batch once each way, backward after forward",
          "[pipeline]") {
  for (auto kind : {Schedule::gpipe, Schedule::one_f_one_b})
    for (int64_t p : {1, 2, 3, 4, 8})
      for (int64_t m : {1, 2, 3, 5, 8, 16})
        for (int64_t s = 0; s < p; ++s) {
          auto a = pp::schedule(kind, s, p, m);
          REQUIRE(a.size() == static_cast<size_t>(2 * m));
          std::vector<int> seen_f(m, 0), seen_b(m, 0);
          for (const auto& x : a) {
            if (x.forward) {
              ++seen_f[x.microbatch];
            } else {
              REQUIRE(seen_f[x.microbatch] == 1);  // its forward came first
              ++seen_b[x.microbatch];
            }
          }
          for (int64_t i = 0; i < m; ++i) REQUIRE((seen_f[i] == 1 && seen_b[i] == 1));
          // Activations held: GPipe all m, 1F1B at most the stages still ahead of this one.
          const int64_t want = kind == Schedule::gpipe ? m : std::min(p - s, m);
          REQUIRE(pp::peak_live(a) == want);
        }
}

TEST_CASE("pipeline: balancing minimises the largest stage", "[pipeline]") {
  auto r = pp::balance({1, 1, 1, 1, 4}, 2);
  REQUIRE(r.size() == 2);
  CHECK((r[0] == std::make_pair<int64_t, int64_t>(0, 4)));
  CHECK((r[1] == std::make_pair<int64_t, int64_t>(4, 5)));
  // Against brute force over every way to cut 7 random weights into 3 stages.
  std::mt19937 gen(7);
  std::uniform_real_distribution<double> u(0.1, 5.0);
  for (int trial = 0; trial < 20; ++trial) {
    std::vector<double> w(7);
    for (auto& v : w) v = u(gen);
    auto sum = [&](int64_t a, int64_t b) {
      double t = 0;
      for (int64_t i = a; i < b; ++i) t += w[i];
      return t;
    };
    double best = 1e300;
    for (int64_t c1 = 1; c1 < 7; ++c1)
      for (int64_t c2 = c1 + 1; c2 < 7; ++c2)
        best = std::min(best, std::max({sum(0, c1), sum(c1, c2), sum(c2, 7)}));
    auto got = pp::balance(w, 3);
    REQUIRE(got.front().first == 0);
    REQUIRE(got.back().second == 7);
    double worst = 0;
    for (size_t k = 0; k < got.size(); ++k) {
      REQUIRE(got[k].first < got[k].second);
      if (k) REQUIRE(got[k].first == got[k - 1].second);
      worst = std::max(worst, sum(got[k].first, got[k].second));
    }
    CHECK(worst == Approx(best));
  }
  CHECK_THROWS_WITH(pp::balance({1, 2}, 3), Catch::Contains("at least as many blocks"));
}

TEST_CASE("pipeline: explicit cut points by name or index, and their errors", "[pipeline]") {
  const std::vector<std::string> names = {"stem", "blocks.0", "blocks.1", "head"};
  auto r = pp::split_at(names, {"blocks.1"}, 2, "distributed.pipeline.stages");
  CHECK((r == pp::StageRanges{{0, 2}, {2, 4}}));
  CHECK((pp::split_at(names, {"1", "3"}, 3, "x") == pp::StageRanges{{0, 1}, {1, 3}, {3, 4}}));
  CHECK_THROWS_WITH(pp::split_at(names, {"blocks.9"}, 2, "distributed.pipeline.stages"),
                    Catch::Contains("distributed.pipeline.stages") &&
                        Catch::Contains("'blocks.9' is not a block") && Catch::Contains("head"));
  CHECK_THROWS_WITH(pp::split_at(names, {"head", "blocks.0"}, 3, "x"),
                    Catch::Contains("increasing"));
  CHECK_THROWS_WITH(pp::split_at(names, {"stem"}, 2, "x"), Catch::Contains("stage 0 empty"));
  CHECK_THROWS_WITH(pp::split_at(names, {"4"}, 2, "x"), Catch::Contains("1..3"));
  CHECK_THROWS_WITH(pp::split_at(names, {"1"}, 3, "x"), Catch::Contains("need 2 cut points"));
  CHECK_THROWS_WITH(pp::microbatch_rows(3, 4), Catch::Contains("cannot make 4 micro-batches"));
  CHECK((pp::microbatch_rows(10, 4) == std::vector<int64_t>{3, 3, 2, 2}));
  CHECK_THROWS_WITH(pp::parse_schedule("zb", "distributed.pipeline.schedule"),
                    Catch::Contains("distributed.pipeline.schedule") && Catch::Contains("gpipe | 1f1b"));
}

TEST_CASE("pipeline: 2 and 4 stages, GPipe and 1F1B, equal single-process loss and gradients",
          "[pipeline]") {
  torch::manual_seed(3);
  auto x = torch::randn({10, 7});
  auto y = torch::randint(0, 5, {10}, torch::kLong);

  auto ref = make_mlp(11);
  auto ref_loss = ce(ref->forward(x), y);
  ref_loss.backward();

  for (int64_t stages : {2, 4})
    for (auto kind : {Schedule::gpipe, Schedule::one_f_one_b})
      for (int64_t m : {1, 3, 4}) {  // 10 rows in 3 or 4 micro-batches: unequal sizes
        CAPTURE(stages, pp::schedule_name(kind), m);
        auto model = make_mlp(11);
        const auto names = model->block_names();
        auto ranges = stages == 2 ? pp::split_at(names, {"b3"}, 2, "test")
                                  : pp::balance(std::vector<double>(names.size(), 1.0), 4);
        std::vector<int64_t> peaks;
        const double loss = pipelined_step(*model, ranges, kind, m, x, y, &peaks);
        CHECK(loss == Approx(ref_loss.item<double>()).margin(1e-6));
        auto got = model->named_parameters();
        auto want = ref->named_parameters();
        for (const auto& kv : want) {
          CAPTURE(kv.key());
          const auto& g = got[kv.key()].grad();
          REQUIRE(g.defined());
          CHECK((g - kv.value().grad()).abs().max().item<double>() < 1e-5);
        }
        for (int64_t s = 0; s < stages; ++s)
          CHECK(peaks[s] == (kind == Schedule::gpipe ? m : std::min(stages - s, m)));
      }
}
