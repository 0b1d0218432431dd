// Text datasets read through a real tokenizer (data.name: text; docs/text.md, "Text datasets"):
// jsonl, csv/tsv and plain-text files, tokenized on first use into a memory-mapped token cache
// beside the data file (`<file>.sculpt-tok-<key>.bin`), keyed by the hash of the file, the
// tokenizer's fingerprint and the options that change the ids; reused while all three agree.
//
// Shapes, as dataset.h's DataSpec lays them out (inputs padded with `pad_id`, -1 by default:
// every hf model reads a negative id as padding, whatever the tokenizer's pad id):
//  classify: {text, label}           -> inputs int64 [N, L], targets int64 [N] (label map)
//  pair:     {text, pair, label}     -> the tokenizer's pair template ([CLS] a [SEP] b [SEP]);
//                                       with token_type_ids, inputs [N, 2, L]: ids, type ids
//  seq2seq:  {query, target}         -> [source padded to S | start + target], targets
//                                       target (+ eos) padded with token::pad; source_len = S;
//                                       start / eos: the hf checkpoint's decoder_start_token_id
//                                       / eos_token_id, else the tokenizer's pad (or bos) / eos
//  lm:       lines / a text field    -> every record's ids + eos, concatenated, cut into
//                                       block_size windows; targets the next ids
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "core/config/config.h"
#include "core/data/dataset.h"

namespace sculpt::text {
class Tokenizer;
}

namespace sculpt::data {

struct TextFilesOptions : config::Section {
  std::string file;                 // training records: .jsonl, .csv, .tsv or plain text (.gz too)
  std::string test_file;            // held-out records, same format; "": none
  std::string format = "auto";      // auto (by extension) | jsonl | csv | tsv | txt
  std::string shape = "auto";       // auto | classify | pair | seq2seq | lm
  std::string tokenizer;            // path; "": tokenizer.path, else model.path of an hf model
  int64_t max_length = 0;           // ids per text (pair: both); 0: the train file's longest
  int64_t max_target_length = 0;    // seq2seq target ids; 0: the train file's longest
  std::string padding = "longest";  // longest (of the train file, up to max_length) | max_length
  bool truncation = true;           // cut longer texts to max_length; false: an error
  bool add_special_tokens = true;   // the tokenizer's template ([CLS] .. [SEP], <s>, </s>)
  int64_t block_size = 128;         // lm: ids per sample
  std::string invalid_utf8 = "error";  // error (file, line, byte offset) | replace (U+FFFD)
  std::vector<std::string> labels;  // the label map (id = position); empty: the train file's, sorted
  std::string text_field = "text";
  std::string pair_field;           // "": no pair (shape pair needs it)
  std::string label_field = "label";
  std::string query_field = "query";
  std::string target_field = "target";
  int64_t pad_id = -1;              // what padding positions of the inputs hold
  std::string token_type_ids = "auto";  // pair: auto (an hf checkpoint with type_vocab_size >= 2)
                                        // | true | false
  bool cache = true;                // false: tokenize every time, write no cache
  void visit(config::Visitor& v) override;
  void check(config::Checker& c) const override;
};

// Where the token cache goes when the data file's folder is not writable (`<run_dir>/tokenized`),
// and where the label map is saved (`<run_dir>/labels.json`); "": neither.
// `hf_model_path`: the hf checkpoint the data feeds (model.path when model.name is hf), whose
// config.json gives seq2seq's start and eos ids and (pair) whether it takes token type ids.
struct TextFilesContext {
  std::string run_dir;
  int threads = 0;  // tokenizer threads; 0: every core
  std::string hf_model_path;
};

// The dataset of `part` tokenized by `tok` (tests and tools; the registry entry loads the
// tokenizer that the options name). nullptr for the test part without a test_file.
std::unique_ptr<Dataset> load_text_files(const TextFilesOptions& o, DataPart part,
                                         const text::Tokenizer& tok, const TextFilesContext& ctx);

// The path of `file`'s token cache for these options and tokenizer (tests, bench).
std::string text_cache_path(const TextFilesOptions& o, const std::string& file,
                            const text::Tokenizer& tok, const TextFilesContext& ctx = {});

// Registers `text`.
void add_text_file_datasets(DatasetRegistry& r);

}  // namespace sculpt::data
