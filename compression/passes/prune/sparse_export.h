// The sparse export of a pruned model (issue 7), written by the prune pass at the end of a run
// into <run>/sparse and read by `sculpt eval --sparse`:
//
// <dir>/model.safetensors holds, per pruned layer L stored sparse, either
//   BSR (block patterns):      L.bsr_values [nnz, b, b] (float32), L.bsr_col [nnz] and
//                              L.bsr_crow [rows/b + 1] (int32): the non-zero blocks by block row;
//   bitmask (other patterns):  L.weight_mask (bits, 8 per byte, least significant first, in
//                              row-major order) and L.weight_values (float32, the masked-in
//                              entries in that order);
// each only when smaller than the dense weight (else L.weight stays dense), and every other
// tensor of the model under its own name. <dir>/manifest.json: the format, per sparse layer its
// storage, shape and counts, and the file's size next to the dense FP32 one.
//
// Loading puts the dense weights back into a model built from the same config; a BSR layer then
// computes through the block-sparse kernel when its density is below the CPU crossover, and
// every other layer runs dense (the log says which and why).
#pragma once

#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "core/models/model.h"
#include "trainers/callback.h"

namespace sculpt::compression::prune {

struct SparseTarget {
  std::string name;     // dotted layer name (its weight is <name>.weight)
  int64_t block = 0;    // b of a block pattern; 0: bitmask
};

// Writes the export to `dir` atomically (a temporary folder renamed into place); returns its
// manifest.
nlohmann::json export_sparse(models::Model& model, const std::vector<SparseTarget>& targets,
                             const std::string& dir);

// The end of a run: the export in <run>/sparse, written by rank 0 (none in a pipeline, whose
// stages hold part of the model each, nor outside a run); what it wrote, for the pass's
// summary, or null.
nlohmann::json export_sparse_at_end(models::Model& model, const std::vector<SparseTarget>& targets,
                                    const trainers::StepContext& ctx);

// Loads an export into `model` (built from the same config). UserError naming the file on a
// missing or inconsistent tensor, or a folder that is not a sparse export.
nlohmann::json load_sparse(models::Model& model, const std::string& dir);

}  // namespace sculpt::compression::prune
