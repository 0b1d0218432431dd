// SHA-256 (FIPS 180-4) of bytes, files and tensors: the checksums of version stores
// (versions.h) and the fingerprints of tokenizer files (data_fingerprint.h).
#pragma once

#include <ATen/core/Tensor.h>

#include <cstddef>
#include <string>

namespace sculpt::trainers {

// As 64 lowercase hex digits.
std::string sha256_hex(const void* data, size_t size);
std::string sha256_file(const std::string& path);
// Of a tensor's bytes (CPU, contiguous, its own dtype).
std::string sha256_tensor(const at::Tensor& t);

}  // namespace sculpt::trainers
