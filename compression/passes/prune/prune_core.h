// The pieces every pruning method is built from (issue 7): a schedule (target sparsity per
// step), a scorer's output (a score per weight, higher = more important), a MaskCreator (scores
// -> a mask of a pattern: unstructured, N:M, b x b blocks, output channels/neurons) and an
// Allocator (a sparsity per layer from one budget shared by a group of layers). Pure functions
// of tensors, so each is unit-tested against its definition without a training loop.
#pragma once

#include <ATen/core/Tensor.h>

#include <cstdint>
#include <string>
#include <vector>

#include "core/config/section.h"

namespace sculpt::compression::prune {

// ---- Schedules (all in optimizer steps; t = steps done) --------------------------------------
// one_shot:    s = s_i before t0, s_f from t0 on (one mask update, at t0).
// agp:         Zhu & Gupta 2017: s_t = s_f + (s_i - s_f)(1 - (t - t0)/(n dt))^3, t in
//              [t0, t0 + n dt], n dt = end - t0; the mask changes every dt steps, so between
//              updates the value of the last update holds.
// iterative:   `cycles` prune -> fine-tune cycles of (end - t0)/cycles steps; cycle j (1-based)
//              starts at t0 + (j-1) L with s = s_i + (s_f - s_i) j / cycles.
// exponential: the density falls geometrically: 1 - s_t = (1 - s_i) ((1 - s_f)/(1 - s_i))^f,
//              f = (t - t0)/(end - t0) taken at the last update (every dt).
// rigl:        Evci et al. 2020, fixed density: s_f from t0 on; every dt steps until `end` a
//              fraction alpha/2 (1 + cos(pi (t - t0)/(end - t0))) of the active weights is dropped
//              (lowest magnitude) and as many regrown (highest dense gradient).
enum class ScheduleKind { one_shot, agp, iterative, exponential, rigl };
inline const config::Spellings<ScheduleKind> kScheduleKinds = {
    {ScheduleKind::one_shot, "one_shot"},       {ScheduleKind::agp, "agp"},
    {ScheduleKind::iterative, "iterative"},     {ScheduleKind::exponential, "exponential"},
    {ScheduleKind::rigl, "rigl"}};

struct Schedule {
  ScheduleKind kind = ScheduleKind::agp;
  double initial = 0.0;  // s_i
  double final = 0.5;    // s_f
  int64_t start = 0;     // t0
  int64_t end = 0;       // last update, > start (one_shot: unused)
  int64_t every = 1;     // dt, >= 1
  int64_t cycles = 3;    // iterative
  double rigl_alpha = 0.3;
};

// The planned sparsity after t steps.
double planned_sparsity(const Schedule& s, int64_t t);
// Whether the mask is (re)computed after t steps (t = 0: at attach).
bool update_due(const Schedule& s, int64_t t);
// rigl: the fraction of active weights dropped and regrown at update step t.
double rigl_drop_fraction(const Schedule& s, int64_t t);


// ---- Mask patterns ---------------------------------------------------------------------------
// A weight is handled as a matrix [rows, cols]: Linear [out, in]; Conv2d [out, in/g * k * k];
// Embedding [num, dim]. A mask is stored per *unit*: one bool per weight (unstructured, n:m),
// per b x b block ([ceil(rows/b), ceil(cols/b)]), per row (channel: output channels of a
// conv, neurons of a Linear) or per head ([heads]). true = kept.
// head: the cols split into `heads` equal groups (an attention output projection's inputs, one
// group per head: zeroing a group removes that head's contribution); one bool per head.
enum class PatternKind { unstructured, n_m, block, channel, head };
inline const config::Spellings<PatternKind> kPatternKinds = {
    {PatternKind::unstructured, "unstructured"}, {PatternKind::n_m, "n:m"},
    {PatternKind::block, "block"},               {PatternKind::channel, "channel"},
    {PatternKind::head, "head"}};

struct Pattern {
  PatternKind kind = PatternKind::unstructured;  // unstructured | n:m | block | channel | head
  int64_t n = 2, m = 4;               // n:m: keep n of every m consecutive weights along cols
  int64_t block = 4;                  // block: b
  int64_t heads = 0;                  // head: number of heads
};

// rigl: the unit mask after dropping the fraction f of active units with the lowest magnitude
// (of `w2d`) and growing as many inactive ones with the largest dense gradient `g2d`; undefined
// when nothing moves.
at::Tensor rigl_swap(const at::Tensor& unit_mask, const at::Tensor& w2d, const at::Tensor& g2d,
                     double f, const Pattern& p);
// The pattern for people: "unstructured", "2:4", "block 4x4", "8 heads".
std::string pattern_label(const Pattern& p);
// Bytes of a [rows, cols] weight at `sparsity` stored sparse in fp32: bitmask + kept values
// (unstructured, n:m), BSR values + block indices (block), the smaller dense matrix (channel).
double sparse_fp32_bytes(int64_t rows, int64_t cols, double sparsity, const Pattern& p);

// Unit scores from element scores [rows, cols]: the mean over each unit (mean, so that the
// ragged edge blocks compare fairly with full ones).
at::Tensor unit_scores(const at::Tensor& scores2d, const Pattern& p);
// The number of weights in each unit (same shape as unit_scores).
at::Tensor unit_sizes(int64_t rows, int64_t cols, const Pattern& p);
// The unit mask back to one bool per weight, [rows, cols].
at::Tensor expand_mask(const at::Tensor& unit_mask, int64_t rows, int64_t cols, const Pattern& p);
// The kept units: the lowest-scoring units are dropped until `sparsity` of the weights (by unit
// size) are gone, never more. Ties break by position (stable). n:m ignores `sparsity`: in every
// group of m along cols the n highest scores stay (cols % m == 0 required).
at::Tensor select_units(const at::Tensor& unit_scores, const at::Tensor& unit_sizes,
                        double sparsity, const Pattern& p);
// One mask for layers whose output channels are summed (a residual stream): their unit scores,
// each scaled by the mean magnitude of its finite entries, summed, then select_units with the
// first layer's unit sizes; at least one unit stays.
at::Tensor select_shared_units(const std::vector<at::Tensor>& unit_scores,
                               const at::Tensor& unit_sizes, double sparsity, const Pattern& p);
// The fraction of weights a unit mask removes.
double mask_sparsity(const at::Tensor& unit_mask, const at::Tensor& unit_sizes);

// ---- Allocator ---------------------------------------------------------------------------------
// One budget shared by layers: the per-layer sparsities s_i in [lo_i, hi_i] that remove
// `sparsity` of all their weights together, by one global score threshold (layers whose units
// score low lose more). `scores[i]` are layer i's unit scores, `sizes[i]` its unit sizes.
std::vector<double> allocate_global(const std::vector<at::Tensor>& scores,
                                    const std::vector<at::Tensor>& sizes, double sparsity,
                                    const std::vector<double>& lo, const std::vector<double>& hi);

// The units each layer of one mask update keeps: the Allocator of the composition. Layers of a
// residual stream share one mask (select_shared_units); layers of a group (or a layer with
// `group:`) share one budget split by allocate_global within each layer's [min, max]
// (min never above the plan); a layer alone takes the target. No layer loses every unit.
struct AllocatedLayer {
  at::Tensor sizes;  // its unit sizes
  Pattern pattern;
  double min_sparsity = 0.0, max_sparsity = 1.0;
};
struct Allocation {
  double target = 0.0;             // the schedule's sparsity for this update
  bool shared_stream = false;      // one mask for every layer (a residual stream)
  bool shared_budget = false;      // one budget for the layers (a group)
  std::vector<at::Tensor> unit_scores;  // per layer; pruned units at -inf
  std::vector<AllocatedLayer> layers;
};
std::vector<at::Tensor> allocate_units(const Allocation& a);

// Packs a bool tensor into bits (uint8, 8 per byte, little end first) and back: masks in
// checkpoints take one bit per unit.
at::Tensor pack_bits(const at::Tensor& mask);
at::Tensor unpack_bits(const at::Tensor& packed, at::IntArrayRef shape);

}  // namespace sculpt::compression::prune
