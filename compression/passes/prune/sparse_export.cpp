#include "compression/passes/prune/sparse_export.h"

#include <torch/torch.h>

#include <filesystem>
#include <map>
#include <set>

#include "compression/export_dir.h"
#include "compression/passes/prune/bsr.h"
#include "compression/passes/prune/prune_core.h"
#include "core/error.h"
#include "core/io/atomic_file.h"
#include "core/io/safetensors.h"
#include "core/logging/logging.h"
#include "core/nn/layers.h"
#include "core/run/run_context.h"

namespace sculpt::compression::prune {
namespace fs = std::filesystem;

namespace {
constexpr const char* kFormat = "sculpt-sparse";

// How a layer's weight is stored, as the manifest spells it.
enum class Storage { bsr, bitmask };
const config::Spellings<Storage> kStorages = {{Storage::bsr, "bsr"}, {Storage::bitmask, "bitmask"}};

int64_t dense_fp32_bytes(const io::NamedTensors& state) {
  int64_t bytes = 0;
  for (const auto& [name, t] : state)
    if (t.is_floating_point()) bytes += t.numel() * 4;
  return bytes;
}
}  // namespace

nlohmann::json export_sparse(models::Model& model, const std::vector<SparseTarget>& targets,
                             const std::string& dir) {
  torch::NoGradGuard no_grad;
  const auto state = model.state_tensors();
  std::map<std::string, at::Tensor> by_name(state.begin(), state.end());
  io::NamedTensors out;
  nlohmann::json manifest = {{"format", kFormat}, {"version", 1},
                             {"layers", nlohmann::json::object()}};
  std::set<std::string> replaced;
  for (const auto& t : targets) {
    const std::string key = t.name + ".weight";
    auto it = by_name.find(key);
    if (it == by_name.end()) continue;
    const at::Tensor w = it->second.detach().to(at::kCPU, at::kFloat).contiguous();
    const int64_t n = w.numel(), dense = n * 4;
    nlohmann::json j = {{"shape", w.sizes().vec()}};
    if (t.block > 0 && w.dim() == 2 && w.size(0) % t.block == 0 && w.size(1) % t.block == 0) {
      const auto m = to_bsr(w, t.block);
      const int64_t bytes = m.values.numel() * 4 + (m.col.numel() + m.crow.numel()) * 4;
      if (bytes >= dense) continue;
      out.emplace_back(t.name + ".bsr_values", m.values.contiguous());
      out.emplace_back(t.name + ".bsr_col", m.col.to(at::kInt).contiguous());
      out.emplace_back(t.name + ".bsr_crow", m.crow.to(at::kInt).contiguous());
      j["storage"] = config::spelling(kStorages, Storage::bsr);
      j["block"] = t.block;
      j["blocks"] = m.nnz();
    } else {
      const at::Tensor keep = w.ne(0);
      const int64_t nnz = keep.sum().item<int64_t>();
      if ((n + 7) / 8 + nnz * 4 >= dense) continue;
      out.emplace_back(t.name + ".weight_mask", pack_bits(keep));
      out.emplace_back(t.name + ".weight_values", w.flatten().masked_select(keep.flatten()));
      j["storage"] = config::spelling(kStorages, Storage::bitmask);
      j["nnz"] = nnz;
    }
    replaced.insert(key);
    manifest["layers"][t.name] = j;
  }
  for (const auto& [name, t] : state)
    if (!replaced.count(name)) out.emplace_back(name, t.detach().cpu().contiguous());
  manifest["dense_fp32_bytes"] = dense_fp32_bytes(state);
  write_export(dir, out, manifest, kFormat);
  return manifest;
}

nlohmann::json export_sparse_at_end(models::Model& model, const std::vector<SparseTarget>& targets,
                                    const trainers::StepContext& ctx) {
  if (targets.empty() || !ctx.run || !ctx.run->writes_files()) return nullptr;
  if (ctx.pipelined) {
    log::info("prune: no sparse export under a pipeline (each stage holds part of the model)");
    return nullptr;
  }
  const auto dir = (ctx.run->dir() / "sparse").string();
  const auto m = export_sparse(model, targets, dir);
  log::info("prune: sparse export ", dir, ": ", m.at("bytes").get<int64_t>(), " bytes (dense FP32 ",
            m.at("dense_fp32_bytes").get<int64_t>(), "), ", m.at("layers").size(),
            " layer(s) stored sparse");
  return {{"dir", dir},
          {"bytes", m.at("bytes")},
          {"dense_fp32_bytes", m.at("dense_fp32_bytes")},
          {"sparse_layers", m.at("layers").size()}};
}

nlohmann::json load_sparse(models::Model& model, const std::string& dir) {
  torch::NoGradGuard no_grad;
  ExportReader reader(dir, kFormat, "a prune pass writes <run>/sparse when training ends");
  const auto& manifest = reader.manifest();
  const std::string mpath = reader.manifest_path(), tpath = reader.tensors_path();
  auto& file = reader.rest();
  auto take = [&](const std::string& n) { return reader.take(n); };
  std::map<std::string, Bsr> bsr;
  for (const auto& [name, j] : manifest.at("layers").items()) {
    const auto shape = j.at("shape").get<std::vector<int64_t>>();
    const std::string text = j.at("storage");
    Storage storage{};
    SCULPT_CHECK(config::parse_spelling(kStorages, text, storage), mpath, ": layer ", name,
                 ": unknown storage '", text, "'");
    at::Tensor w;
    if (storage == Storage::bsr) {
      Bsr m;
      m.block = j.at("block").get<int64_t>();
      SCULPT_CHECK(shape.size() == 2 && m.block > 0, mpath, ": layer ", name,
                   ": a BSR weight needs 2 dimensions and a block size");
      m.rows = shape[0];
      m.cols = shape[1];
      m.values = take(name + ".bsr_values").to(at::kFloat);
      m.col = take(name + ".bsr_col").to(at::kLong);
      m.crow = take(name + ".bsr_crow").to(at::kLong);
      SCULPT_CHECK(m.crow.numel() == m.rows / m.block + 1 &&
                       m.crow[-1].item<int64_t>() == m.col.numel() &&
                       m.values.size(0) == m.col.numel(),
                   tpath, ": layer ", name, ": inconsistent BSR tensors (", m.col.numel(),
                   " blocks, ", m.values.size(0), " values, ", m.crow.numel(), " row offsets)");
      w = kernels::bsr_to_dense(m);
      bsr.emplace(name, std::move(m));
    } else {
      int64_t n = 1;
      for (auto d : shape) n *= d;
      const auto keep = unpack_bits(take(name + ".weight_mask"), {n});
      const auto values = take(name + ".weight_values").to(at::kFloat);
      SCULPT_CHECK(keep.sum().item<int64_t>() == values.numel(), tpath, ": layer ", name,
                   ": its bitmask marks ", keep.sum().item<int64_t>(), " weights but ",
                   values.numel(), " values are stored");
      w = at::zeros({n}, at::kFloat).masked_scatter_(keep, values).reshape(shape);
      log::info("sparse: ", name, ": stored as a bitmask and ", values.numel(), " of ", n,
                " values; it runs dense (no CPU kernel for unstructured sparsity beats dense)");
    }
    file[name + ".weight"] = w;
  }
  io::NamedTensors dense(file.begin(), file.end());
  model.load_state_tensors(dense, tpath);
  // Block-sparse layers compute through the BSR kernel where it is faster than dense.
  const auto layers = nn::compressible_layers(model);
  for (auto& [name, m] : bsr)
    for (const auto& [n, l] : layers)
      if (n == name) install_bsr_runtime(*l, name, std::move(m), false, "sparse");
  return manifest;
}

}  // namespace sculpt::compression::prune
