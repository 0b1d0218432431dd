#include "compression/export_dir.h"

#include <filesystem>

#include "core/error.h"
#include "core/io/atomic_file.h"

namespace sculpt::compression {
namespace fs = std::filesystem;

void write_export(const std::string& dir, const io::NamedTensors& tensors,
                  nlohmann::json& manifest, const std::string& format) {
  io::replace_dir_atomic(dir, [&](const fs::path& tmp) {
    io::save_safetensors((tmp / "model.safetensors").string(), tensors, {{"format", format}});
    manifest["bytes"] = static_cast<int64_t>(fs::file_size(tmp / "model.safetensors"));
    io::write_file_atomic((tmp / "manifest.json").string(), manifest.dump(2) + "\n");
  });
}

ExportReader::ExportReader(const std::string& dir, const std::string& format,
                           const std::string& writer)
    : manifest_path_((fs::path(dir) / "manifest.json").string()),
      tensors_path_((fs::path(dir) / "model.safetensors").string()) {
  const std::string kind = format.substr(format.rfind('-') + 1);  // sculpt-sparse: sparse
  SCULPT_CHECK(fs::exists(manifest_path_) && fs::exists(tensors_path_), dir, ": not a ", kind,
               " export (expected manifest.json and model.safetensors; ", writer, ")");
  manifest_ = io::read_json_file(manifest_path_);
  SCULPT_CHECK(manifest_.value("format", "") == format, manifest_path_, ": format is not ", format);
  for (auto& [n, t] : io::load_safetensors(tensors_path_)) tensors_[n] = t;
}

at::Tensor ExportReader::take(const std::string& name) {
  auto it = tensors_.find(name);
  SCULPT_CHECK(it != tensors_.end(), tensors_path_, ": tensor '", name, "' is missing");
  at::Tensor t = it->second;
  tensors_.erase(it);
  return t;
}

}  // namespace sculpt::compression
