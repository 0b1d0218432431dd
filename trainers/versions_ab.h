// `sculpt versions DIR diff A B` as an A/B report (docs/versions.md): both versions' weights are
// rebuilt from the store as rollback rebuilds them (every checksum checked, adapters merged),
// each is loaded into the model its own recorded config builds, and both are evaluated on the
// same test sets — every slice (each increment's test queries) of the newer version's config up
// to the increment that version was written after, with that config's task and decoding — so
// both answer identical queries. Batch-1 latency per query is timed on the same queries,
// alternating A and B (A B, then B A, ...); the medians over the rounds are reported.
// Refused (UserError) when the two versions record different tokenizers or ID schemes.
#pragma once

#include <cstdint>
#include <nlohmann/json.hpp>

#include "trainers/versions.h"

namespace sculpt::trainers::versions {

struct AbOptions {
  int64_t latency_queries = 16;  // queries per round, spread over the slices; 0: no latency
  int64_t latency_rounds = 5;    // rounds, each timing A and B once, >= 1
};

// {"config_from", "metric", "device", "threads", "slices": [{"name", "n", "a", "b", "diff"}],
//  "headline", "bytes": {"a", "b"}, "latency": {"queries", "rounds", "a_ms", "b_ms", ...}}.
nlohmann::json ab_report(const Store& s, int64_t a, int64_t b, const AbOptions& o = {});

}  // namespace sculpt::trainers::versions
