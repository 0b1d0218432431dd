// The integer model of a quantize pass as its export stores it (<run>/quantized, the layout
// compression/passes/quantize/int8_model.h writes), read by the exporters without building the
// integer model: a layer's grid specs and its integer weight values.
#pragma once

#include <ATen/core/Tensor.h>

#include <nlohmann/json.hpp>
#include <string>

#include "compression/export_dir.h"
#include "compression/passes/quantize/qparams.h"

namespace sculpt::compression {

// A manifest's grid description ({"bits", "symmetric", "signed", "granularity", "axis",
// "group_size"}); UserError naming `where` for an unknown granularity.
quant::QSpec quantized_spec(const nlohmann::json& j, const std::string& where);

// The weight grid values (int32, the manifest's "shape") of layer `name` (manifest entry `j`,
// weight grid `w` with its scale and zero point): int8 storage (unsigned 8-bit grids shifted by
// -128), or two values per byte shifted by -qmin ("packed": "int4"); a pruned layer as a bitmask
// of the kept entries and their values, the grid's zero elsewhere. Exactly what
// quant::load_quantized reads (its raw weight is dequantize of these).
at::Tensor read_grid(ExportReader& r, const std::string& name, const nlohmann::json& j,
                     const quant::QParams& w);

}  // namespace sculpt::compression
