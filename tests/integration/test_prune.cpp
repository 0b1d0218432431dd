// The prune pass through real fits: the conformance suite (hooks in order, exact resume in the
// middle of the schedule with masks, scores and the curve restored) for each pattern, scorer and
// schedule family.
#include <catch2/catch.hpp>

#include "tests/support/pass_conformance.h"

TEST_CASE("prune (agp, unstructured, magnitude) passes the conformance suite",
          "[passes][conformance][prune]") {
  sculpt::test::run_pass_conformance(
      "{name: prune, schedule: agp, sparsity: 0.8, start: 1, end: 7, every: 2}");
}

TEST_CASE("prune (n:m, blocks, taylor and movement scores) passes the conformance suite",
          "[passes][conformance][prune]") {
  sculpt::test::run_pass_conformance(
      "{name: prune, pattern: 'n:m', schedule: one_shot, start: 3, scorer: taylor, "
      "overrides: [{layers: 'hidden1.*', pattern: block, block: 4, scorer: movement, "
      "schedule: exponential, sparsity: 0.5, start: 2, end: 6, every: 1}]}");
}

TEST_CASE("prune (rigl, global budget) passes the conformance suite",
          "[passes][conformance][prune]") {
  sculpt::test::run_pass_conformance(
      "{name: prune, schedule: rigl, sparsity: 0.7, start: 0, end: 7, every: 2, group: all, "
      "max_sparsity: 0.9, exclude: ['head.*']}");
}

TEST_CASE("prune (iterative channels, removed at the end) passes the conformance suite",
          "[passes][conformance][prune]") {
  sculpt::test::run_pass_conformance(
      "{name: prune, pattern: channel, schedule: iterative, cycles: 2, sparsity: 0.5, start: 1, "
      "end: 5, include: ['hidden.*']}");
}

TEST_CASE("lora passes the conformance suite", "[passes][conformance][lora]") {
  sculpt::test::run_pass_conformance("{name: lora, rank: 2, alpha: 4, dropout: 0.1}");
}

TEST_CASE("lowrank passes the conformance suite", "[passes][conformance][lowrank]") {
  sculpt::test::run_pass_conformance("{name: lowrank, energy: 0.7, exclude: ['head.*']}");
}
