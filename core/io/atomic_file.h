// Atomic file writes: a temporary file beside the target, fsync, rename, fsync of the folder.
// A reader sees the old file or the new one, never a torn one.
#pragma once

#include <filesystem>
#include <functional>
#include <nlohmann/json_fwd.hpp>
#include <string>

namespace sculpt::io {

// Writes `data` to `path` atomically. Throws std::runtime_error naming the file on failure.
void write_file_atomic(const std::string& path, const std::string& data);

// Replaces the folder `dir` as a whole: `fill` writes the new contents into a temporary folder
// beside it, which then takes its place; a failure in `fill` leaves `dir` as it was and removes
// the temporary folder.
void replace_dir_atomic(const std::string& dir,
                        const std::function<void(const std::filesystem::path& tmp)>& fill);

// Reads a whole file; throws UserError naming the file when it cannot be opened.
std::string read_file(const std::string& path);
// Reads a whole file as JSON; UserError naming the file when it is not valid JSON.
nlohmann::json read_json_file(const std::string& path);

}  // namespace sculpt::io
