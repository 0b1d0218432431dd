// Atomic file writes: a temporary file beside the target, fsync, rename, fsync of the folder.
// A reader sees the old file or the new one, never a torn one.
#pragma once

#include <nlohmann/json_fwd.hpp>
#include <string>

namespace sculpt::io {

// Writes `data` to `path` atomically. Throws std::runtime_error naming the file on failure.
void write_file_atomic(const std::string& path, const std::string& data);

// Reads a whole file; throws UserError naming the file when it cannot be opened.
std::string read_file(const std::string& path);
// Reads a whole file as JSON; UserError naming the file when it is not valid JSON.
nlohmann::json read_json_file(const std::string& path);

}  // namespace sculpt::io
