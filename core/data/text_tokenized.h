// Tokenizing the files of data.name: text (text_files.h): a file's records through the
// tokenizer into token-cache bytes (text_cache.h), and a file's ids from its cache when one
// fits, else tokenized and cached (beside the data, or in <run>/tokenized). Internal to
// core/data.
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include "core/data/text_cache.h"
#include "core/data/text_files.h"
#include "core/data/text_records.h"

namespace sculpt::data::textdata {

// The options that change the ids a file tokenizes to (the cache key; padding, labels,
// block_size and pad_id are applied when the rows are built).
std::string ids_options(const TextFilesOptions& o, const std::string& format, Shape shape,
                        int64_t target_eos);

// Holds the bytes a view points into.
struct LoadedFile {
  std::unique_ptr<Mapping> map;
  std::string bytes;
  TokenView view;
  std::string path;  // the data file
};

// `path` tokenized: from its cache when one fits, else tokenized (and cached).
void load_file(LoadedFile& out, const TextFilesOptions& o, const std::string& path,
               const std::string& format, Shape shape, const text::Tokenizer& tok,
               int64_t target_eos, const TextFilesContext& ctx);

// The cache file's name for `path` and the key of what it must hold.
std::string cache_name(const std::string& path, const std::string& key);
std::string key_of(const Expect& want);

}  // namespace sculpt::data::textdata
