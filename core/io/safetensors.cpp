#include "core/io/safetensors.h"

#include <ATen/ATen.h>

#include <algorithm>
#include <cstring>
#include <fstream>
#include <nlohmann/json.hpp>

#include "core/error.h"
#include "core/io/atomic_file.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

namespace sculpt::io {

namespace {

struct DtypeName {
  at::ScalarType type;
  const char* name;
};
constexpr DtypeName kDtypes[] = {{at::kFloat, "F32"},     {at::kDouble, "F64"}, {at::kHalf, "F16"},
                                 {at::kBFloat16, "BF16"}, {at::kLong, "I64"},   {at::kInt, "I32"},
                                 {at::kShort, "I16"},     {at::kChar, "I8"},    {at::kByte, "U8"},
                                 {at::kBool, "BOOL"}};

const char* dtype_name(at::ScalarType t) {
  for (const auto& d : kDtypes)
    if (d.type == t) return d.name;
  throw UserError(std::string("safetensors: cannot store dtype ") + c10::toString(t));
}

at::ScalarType dtype_of(const std::string& name, const std::string& path,
                        const std::string& tensor) {
  for (const auto& d : kDtypes)
    if (name == d.name) return d.type;
  throw UserError(path + ": tensor '" + tensor + "' has unsupported dtype '" + name + "'");
}

}  // namespace

void save_safetensors(const std::string& path, const NamedTensors& tensors,
                      const std::map<std::string, std::string>& metadata) {
  nlohmann::json header = nlohmann::json::object();
  if (!metadata.empty()) header["__metadata__"] = metadata;
  std::vector<at::Tensor> cpu;
  int64_t offset = 0;
  for (const auto& [name, t] : tensors) {
    auto c = t.detach().to(at::kCPU).contiguous();
    int64_t bytes = c.numel() * static_cast<int64_t>(c.element_size());
    header[name] = {{"dtype", dtype_name(c.scalar_type())},
                    {"shape", c.sizes().vec()},
                    {"data_offsets", {offset, offset + bytes}}};
    offset += bytes;
    cpu.push_back(c);
  }
  std::string json = header.dump();
  json.append((8 - json.size() % 8) % 8, ' ');  // align the data section to 8 bytes
  std::string out(8, '\0');
  uint64_t n = json.size();
  for (int i = 0; i < 8; ++i) out[i] = static_cast<char>((n >> (8 * i)) & 0xff);
  out += json;
  out.reserve(out.size() + static_cast<size_t>(offset));
  for (const auto& c : cpu)
    out.append(static_cast<const char*>(c.data_ptr()), c.numel() * c.element_size());
  write_file_atomic(path, out);
}

SafetensorsHeader read_safetensors_header(const std::string& path) {
  std::ifstream in(path, std::ios::binary | std::ios::ate);
  SCULPT_CHECK(in.good(), path, ": cannot open safetensors file");
  const auto file_size = static_cast<int64_t>(in.tellg());
  SCULPT_CHECK(file_size >= 8, path, ": not a safetensors file (", file_size, " bytes)");
  in.seekg(0);
  unsigned char len_bytes[8];
  in.read(reinterpret_cast<char*>(len_bytes), 8);
  uint64_t n = 0;
  for (int i = 7; i >= 0; --i) n = (n << 8) | len_bytes[i];
  SCULPT_CHECK(n <= static_cast<uint64_t>(file_size - 8) && n < (100u << 20), path,
               ": header length ", n, " does not fit in a file of ", file_size,
               " bytes (truncated or not safetensors)");
  std::string json(n, '\0');
  in.read(json.data(), static_cast<std::streamsize>(n));
  SafetensorsHeader h;
  h.data_start = 8 + static_cast<int64_t>(n);
  nlohmann::json parsed;
  try {
    parsed = nlohmann::json::parse(json);
  } catch (const std::exception& e) {
    throw UserError(path + ": malformed safetensors header: " + e.what());
  }
  SCULPT_CHECK(parsed.is_object(), path, ": malformed safetensors header (not a JSON object)");
  const int64_t data_size = file_size - h.data_start;
  for (const auto& [name, v] : parsed.items()) {
    if (name == "__metadata__") {
      SCULPT_CHECK(v.is_object(), path, ": '__metadata__' must be a JSON object, not ", v.type_name());
    for (const auto& [k, m] : v.items())
        h.metadata[k] = m.is_string() ? m.get<std::string>() : m.dump();
      continue;
    }
    TensorEntry e;
    e.name = name;
    try {
      e.dtype = v.at("dtype").get<std::string>();
      // Integers only: converting a JSON float such as 1e21 to int64 is undefined behaviour.
      auto ints = [](const nlohmann::json& list) {
        SCULPT_CHECK(list.is_array(), "");
        for (const auto& x : list)
          SCULPT_CHECK(x.is_number_integer() &&
                           (!x.is_number_unsigned() || x.get<uint64_t>() <= INT64_MAX), "");
        return list.get<std::vector<int64_t>>();
      };
      e.shape = ints(v.at("shape"));
      auto off = ints(v.at("data_offsets"));
      SCULPT_CHECK(off.size() == 2, "");
      e.begin = off[0];
      e.end = off[1];
    } catch (const std::exception&) {
      throw UserError(path + ": tensor '" + name + "' has a malformed header entry");
    }
    // The byte count, refused before it can overflow: a shape may not claim more bytes than
    // the file holds (dimensions of 2^32 would otherwise wrap to a product of 0).
    auto elem = static_cast<int64_t>(c10::elementSize(dtype_of(e.dtype, path, name)));
    int64_t bytes = elem;
    for (auto d : e.shape) {
      SCULPT_CHECK(d >= 0, path, ": tensor '", name, "' has a negative dimension ", d);
      if (d == 0) bytes = 0;
    }
    for (auto d : e.shape) {
      SCULPT_CHECK(bytes == 0 || bytes <= data_size / d, path, ": tensor '", name,
                   "' has a shape larger than the file's ", data_size, "-byte data section");
      bytes *= d;
    }
    SCULPT_CHECK(e.begin >= 0 && e.end >= e.begin && e.end - e.begin == bytes, path,
                 ": tensor '", name, "' has data offsets [", e.begin, ", ", e.end,
                 "] that do not match its shape and dtype (", bytes, " bytes)");
    SCULPT_CHECK(e.end <= data_size, path, ": tensor '", name, "' ends at byte ", e.end,
                 " but the data section has ", data_size, " bytes (file truncated)");
    h.tensors.push_back(std::move(e));
  }
  std::sort(h.tensors.begin(), h.tensors.end(),
            [](const TensorEntry& a, const TensorEntry& b) { return a.begin < b.begin; });
  return h;
}

NamedTensors load_safetensors(const std::string& path) {
  auto h = read_safetensors_header(path);
  std::ifstream in(path, std::ios::binary);
  NamedTensors out;
  for (const auto& e : h.tensors) {
    auto t = at::empty(e.shape, at::TensorOptions().dtype(dtype_of(e.dtype, path, e.name)));
    in.seekg(h.data_start + e.begin);
    in.read(static_cast<char*>(t.data_ptr()), e.end - e.begin);
    SCULPT_CHECK(in.good(), path, ": cannot read tensor '", e.name, "'");
    out.emplace_back(e.name, t);
  }
  return out;
}

MappedSafetensors::MappedSafetensors(const std::string& path)
    : path_(path), header_(read_safetensors_header(path)) {
  for (size_t i = 0; i < header_.tensors.size(); ++i) index_[header_.tensors[i].name] = i;
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  SCULPT_CHECK(fd >= 0, path, ": cannot open: ", std::strerror(errno));
  struct stat st {};
  ::fstat(fd, &st);
  size_ = static_cast<size_t>(st.st_size);
  if (size_ > 0) base_ = ::mmap(nullptr, size_, PROT_READ, MAP_PRIVATE, fd, 0);
  ::close(fd);
  SCULPT_CHECK(base_ != MAP_FAILED, path, ": cannot map: ", std::strerror(errno));
}

MappedSafetensors::~MappedSafetensors() {
  if (base_ && base_ != MAP_FAILED) ::munmap(base_, size_);
}

const TensorEntry* MappedSafetensors::find(const std::string& name) const {
  auto it = index_.find(name);
  return it == index_.end() ? nullptr : &header_.tensors[it->second];
}

at::Tensor MappedSafetensors::view(const TensorEntry& e) const {
  auto* p = static_cast<char*>(base_) + header_.data_start + e.begin;
  return at::from_blob(p, e.shape, at::TensorOptions().dtype(dtype_of(e.dtype, path_, e.name)));
}

void MappedSafetensors::release(const TensorEntry& e, int64_t from, int64_t to) const {
  const auto page = static_cast<uintptr_t>(::sysconf(_SC_PAGESIZE));
  const int64_t end = to < 0 ? e.end : e.begin + to;
  auto first = reinterpret_cast<uintptr_t>(base_) + static_cast<uintptr_t>(header_.data_start + e.begin + from);
  auto last = reinterpret_cast<uintptr_t>(base_) + static_cast<uintptr_t>(header_.data_start + end);
  first = first / page * page;  // pages shared with a neighbour are dropped too: they map a file
  last = (last + page - 1) / page * page;
  if (last > first) ::madvise(reinterpret_cast<void*>(first), last - first, MADV_DONTNEED);
}

}  // namespace sculpt::io
