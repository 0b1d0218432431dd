#include "trainers/versions_ab.h"

#include <ATen/Parallel.h>
#include <torch/torch.h>

#include <algorithm>
#include <chrono>
#include <cmath>

#include "core/data/loader.h"
#include "core/error.h"
#include "core/logging/logging.h"
#include "core/run/run_context.h"
#include "trainers/data_fingerprint.h"
#include "trainers/increments.h"
#include "trainers/run_parts.h"

namespace sculpt::trainers::versions {

namespace {

using OutputMap = std::function<at::Tensor(const at::Tensor&)>;

// The config a version recorded, without model.init (the weights come from the store).
config::Config version_config(const nlohmann::json& info, const std::string& where) {
  const auto yaml = info.value("config", std::string());
  SCULPT_CHECK(!yaml.empty(), where,
               "/version.json records no config (a run added without "
               "config.yaml), so it cannot be rebuilt and evaluated\nHINT: diff A B --no-eval "
               "compares what the versions recorded");
  auto c = config::Config::parse(yaml, where + "/version.json (config)");
  c.model.init.clear();
  c.model.init_blocks.clear();
  return c;
}

// The model version `id`'s config builds, holding its rebuilt (checked, merged) weights.
std::unique_ptr<models::Model> version_model(const Store& s, int64_t id, const config::Config& c,
                                             c10::Device device) {
  auto all = data::dataset_registry().create(c.data.name, c.data, data::DataPart::train);
  auto model = models::model_registry().create(c.model.name, c.model, all->spec());
  model->load_state_tensors(s.weights(id), s.path_of(id));
  model->to(device);
  model->eval();
  return model;
}

// One measured slice: an increment of the newer config, or its data's test part.
struct Slice {
  std::string name;
  const data::Dataset* eval = nullptr;
  const tasks::Task* task = nullptr;
  config::DataConfig data;
  OutputMap map;
};

// One query for the latency rounds: a batch of one row and its slice's task and output map.
struct Query {
  data::Batch batch;
  const Slice* slice = nullptr;
};

std::vector<Query> latency_queries(const std::vector<Slice>& slices, int64_t n,
                                   c10::Device device) {
  std::vector<Query> out;
  if (n <= 0 || slices.empty()) return out;
  const auto count = static_cast<int64_t>(slices.size());
  for (int64_t i = 0; i < n; ++i) {
    const auto& s = slices[size_t(i % count)];
    if (s.eval->size() == 0) continue;
    const int64_t row = (i / count) % s.eval->size();
    auto one = s.eval->subset(at::tensor({row}, at::kLong));
    data::Loader loader(one, 1, data::LoaderOptions::for_evaluation(s.data));
    Query q;
    q.slice = &s;
    SCULPT_ASSERT(loader.next(q.batch), "versions diff: a one-row loader gave no batch");
    q.batch.inputs = q.batch.inputs.to(device);
    q.batch.targets = q.batch.targets.to(device);
    out.push_back(std::move(q));
  }
  return out;
}

// Milliseconds per query of `model` over `queries` (its task's evaluation of one row: encoder,
// decoding and the metric's bookkeeping, as `sculpt eval` spends them).
double time_queries(models::Model& model, const std::vector<Query>& queries, c10::Device device,
                    bool bf16) {
  torch::NoGradGuard no_grad;
  tasks::MetricSums sums;
  const auto t0 = std::chrono::steady_clock::now();
  for (const auto& q : queries) {
    const auto& map = q.slice->map;
    const tasks::Forward forward = [&](const at::Tensor& x) {
      Autocast autocast(device, bf16);
      auto out = model.forward(x).to(at::kFloat);
      return map ? map(out) : out;
    };
    q.slice->task->evaluate_batch(sums, forward, q.batch.inputs, q.batch.targets);
  }
  // The metric's sums are read back per query (.item()), so a CUDA run has finished here.
  const std::chrono::duration<double, std::milli> dt = std::chrono::steady_clock::now() - t0;
  return dt.count() / static_cast<double>(queries.size());
}

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  const size_t n = v.size();
  return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

nlohmann::json bytes_of_version(const Store& s, int64_t id, const nlohmann::json& info) {
  const auto& d = info.at("delta");
  const int64_t weights = bytes_of(s.weights(id));
  const int64_t stored = d.value("bytes", int64_t{0});
  return {
      {"weights", weights},
      {"stored", stored},
      {"file", d.value("file", std::string())},
      {"kind", info.value("kind", std::string())},
      {"ratio", weights > 0 ? static_cast<double>(stored) / static_cast<double>(weights) : 0.0}};
}

}  // namespace

nlohmann::json ab_report(const Store& s, int64_t a, int64_t b, const AbOptions& o) {
  SCULPT_CHECK(o.latency_rounds >= 1 && o.latency_queries >= 0,
               "versions diff: latency rounds must be >= 1 and queries >= 0");
  const auto ja = s.info(a), jb = s.info(b);
  const auto mismatch =
      fingerprint_mismatch(ja.value("data", nlohmann::json()), jb.value("data", nlohmann::json()));
  SCULPT_CHECK(mismatch.empty(), s.dir(), ": versions ", a, " and ", b,
               " read their data "
               "through different tokenizers or document IDs, so the same test queries would "
               "mean other things to them (",
               a, " vs ", b, "):\n", mismatch,
               "\nHINT: diff A B --no-eval compares what the versions recorded");
  const int64_t newer = std::max(a, b);
  const auto& jn = newer == a ? ja : jb;
  const auto cn = version_config(jn, s.path_of(newer));
  const auto device = resolve_device(cn.run.device);
  const bool bf16 = use_bf16(cn.trainer.precision, device);

  // The slices: the newer config's increments up to the one its version was written after
  // (all of them for a base or an added run), else its data's test part.
  auto parts = build_run_parts(cn, device);
  std::vector<Increment> incs;
  std::vector<Slice> slices;
  std::string metric;
  if (!cn.increments.empty()) {
    metric = cn.incremental.metric;
    const int64_t last =
        jn.value("source", nlohmann::json::object()).value("increment", int64_t{-1});
    const auto n = static_cast<int64_t>(cn.increments.size());
    const int64_t upto = last >= 0 && last < n ? last + 1 : n;
    for (int64_t i = 0; i < upto; ++i) incs.push_back(make_increment(cn, parts, i));
    for (const auto& inc : incs)
      slices.push_back({inc.name, inc.eval.get(), inc.task ? inc.task.get() : parts.task.get(),
                        inc.data, increment_output_map(inc)});
  } else {
    const data::Dataset* test = parts.test ? parts.test.get() : &parts.split.val;
    SCULPT_CHECK(test->size() > 0, s.path_of(newer),
                 ": its config's data has no test part and "
                 "no validation rows to evaluate on");
    slices.push_back({parts.test ? "test" : "val", test, parts.task.get(), cn.data, {}});
  }

  auto ma = version_model(s, a, version_config(ja, s.path_of(a)), device);
  auto mb = version_model(s, b, version_config(jb, s.path_of(b)), device);

  nlohmann::json out_slices = nlohmann::json::array();
  double sum_a = 0, sum_b = 0;
  for (const auto& sl : slices) {
    auto measure = [&](models::Model& m) {
      const auto r = evaluate(m, *sl.task, *sl.eval, sl.data, device, bf16, sl.map);
      if (metric.empty()) {
        for (const char* k : {"hits@1", "accuracy", "exact_match"})
          if (r.count(k)) {
            metric = k;
            break;
          }
        if (metric.empty() && !r.empty()) metric = r.begin()->first;
      }
      auto it = r.find(metric);
      SCULPT_CHECK(it != r.end(), "versions diff: the task reports no metric '", metric, "'");
      return it->second;
    };
    const double va = measure(*ma), vb = measure(*mb);
    sum_a += va, sum_b += vb;
    const int64_t n = sl.eval->size();
    auto cell = [&](double v) {
      auto j = slice_json(sl.name, v, n, metric);
      j.erase("name");
      j.erase("n");
      return j;
    };
    out_slices.push_back(
        {{"name", sl.name}, {"n", n}, {"a", cell(va)}, {"b", cell(vb)}, {"diff", vb - va}});
  }
  const double count = static_cast<double>(slices.size());
  nlohmann::json report = {
      {"config_from", newer},
      {"metric", metric},
      {"device", device.str()},
      {"threads", at::get_num_threads()},
      {"slices", out_slices},
      {"headline", {{"a", sum_a / count}, {"b", sum_b / count}, {"diff", (sum_b - sum_a) / count}}},
      {"bytes", {{"a", bytes_of_version(s, a, ja)}, {"b", bytes_of_version(s, b, jb)}}}};

  const auto queries = latency_queries(slices, o.latency_queries, device);
  if (!queries.empty()) {
    // A warm-up of each, then rounds A B, B A, ... so drift in the machine's load hits both.
    time_queries(*ma, {queries.begin(), queries.begin() + 1}, device, bf16);
    time_queries(*mb, {queries.begin(), queries.begin() + 1}, device, bf16);
    std::vector<double> ta, tb;
    for (int64_t r = 0; r < o.latency_rounds; ++r) {
      if (r % 2 == 0) {
        ta.push_back(time_queries(*ma, queries, device, bf16));
        tb.push_back(time_queries(*mb, queries, device, bf16));
      } else {
        tb.push_back(time_queries(*mb, queries, device, bf16));
        ta.push_back(time_queries(*ma, queries, device, bf16));
      }
    }
    report["latency"] = {{"queries", static_cast<int64_t>(queries.size())},
                         {"rounds", o.latency_rounds},
                         {"a_ms", median(ta)},
                         {"b_ms", median(tb)},
                         {"a_rounds_ms", ta},
                         {"b_rounds_ms", tb}};
  }
  return report;
}

}  // namespace sculpt::trainers::versions
