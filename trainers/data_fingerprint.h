// What a model's input and output ids mean: the tokenizer that turns text into input ids, and
// the scheme that gives documents their ID tokens (generative retrieval). A model version
// records both (version.json "data"), and an update whose tokenizer or ID scheme differs from
// its parent version's is refused: its ids would mean other words or other documents.
//
// Each fingerprint is the parameters that define it (the files it reads by their sha256) and a
// "sha256" of those; null where the data has none (images, tables, pre-tokenized ids).
//   tokenizer: gr_synthetic: its vocabulary size (words are generated ids);
//              gr_jsonl: hash (buckets) or vocab (built from docs_file: its sha256);
//              jsonl: word | char, min_count and the train file the vocabulary comes from;
//              text: the tokenizer files' fingerprint (core/text/tokenizer.h).
//   id_scheme: gr_*: ids (semantic | atomic), the ID tree's options (branch, reserve, depth,
//              TF-IDF width, seed) and the corpus the tree is built on (gr_synthetic's
//              generator keys; gr_jsonl's docs_file and tokenizer). Which rows a part holds
//              (documents, new documents, removed_docs, queries) is no part of either.
#pragma once

#include <nlohmann/json.hpp>
#include <string>

#include "core/config/config.h"

namespace sculpt::trainers {

// {"tokenizer": ..., "id_scheme": ...} of a data config.
nlohmann::json data_fingerprint(const config::DataConfig& d);

// "" when `a` and `b` agree (or one is not an object: a store written before fingerprints);
// otherwise one line per differing part: "tokenizer: <a> vs <b>".
std::string fingerprint_mismatch(const nlohmann::json& a, const nlohmann::json& b);

}  // namespace sculpt::trainers
