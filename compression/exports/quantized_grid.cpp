// See quantized_grid.h.
#include "compression/exports/quantized_grid.h"

#include <ATen/ATen.h>

#include <vector>

#include "compression/passes/prune/prune_core.h"
#include "core/error.h"

namespace sculpt::compression {

quant::QSpec quantized_spec(const nlohmann::json& j, const std::string& where) {
  quant::QSpec s;
  s.bits = j.at("bits").get<int>();
  s.symmetric = j.at("symmetric").get<bool>();
  s.is_signed = j.at("signed").get<bool>();
  const std::string g = j.at("granularity").get<std::string>();
  SCULPT_CHECK(config::parse_spelling(quant::kGranularities, g, s.granularity), where,
               ": unknown granularity '", g, "'");
  s.axis = j.at("axis").get<int64_t>();
  s.group_size = j.at("group_size").get<int64_t>();
  return s;
}

at::Tensor read_grid(ExportReader& r, const std::string& name, const nlohmann::json& j,
                     const quant::QParams& w) {
  const auto shape = j.at("shape").get<std::vector<int64_t>>();
  int64_t n = 1;
  for (auto d : shape) n *= d;
  const bool sparse = j.contains("sparse");
  const int64_t count = sparse ? j.at("sparse").at("nnz").get<int64_t>() : n;
  const quant::QSpec& s = w.spec;
  at::Tensor values;
  if (j.value("packed", std::string("int8")) == "int4") {
    const at::Tensor p = r.take(name + ".qweight_packed").to(at::kByte);
    values = at::stack({p.bitwise_and(15), p.bitwise_right_shift(4)}, 1)
                 .flatten()
                 .slice(0, 0, count)
                 .to(at::kInt)
                 .add_(s.qmin());
  } else {
    const int64_t offset = s.qmin() < 0 ? 0 : (s.bits == 8 ? 128 : 0);  // unsigned 8-bit storage
    values = r.take(name + ".qweight").to(at::kInt).flatten();
    if (offset) values.add_(offset);
  }
  SCULPT_CHECK(values.numel() == count, r.tensors_path(), ": layer ", name, " stores ",
               values.numel(), " weight values, its manifest says ", count);
  if (!sparse) return values.reshape(shape);
  const at::Tensor mask = prune::unpack_bits(r.take(name + ".qweight_mask"), {n});
  SCULPT_CHECK(mask.sum().item<int64_t>() == count, r.tensors_path(), ": layer ", name,
               ": its bitmask marks ", mask.sum().item<int64_t>(), " weights, its manifest ",
               count);
  // the grid's zero everywhere (the zero point: 0 on a symmetric grid), then the kept values
  at::Tensor q = quant::quantize_to_int(at::zeros(shape, at::kFloat), w).flatten();
  q.masked_scatter_(mask, values);
  return q.reshape(shape);
}

}  // namespace sculpt::compression
