// Datasets: an in-memory set of (input, target) rows that the loader batches. Registered by
// name in the "datasets" family; each describes itself (input shape, classes) so models and
// tasks are sized from the data, not from repeated config keys.
#pragma once

#include <ATen/core/Tensor.h>

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "core/config/config.h"
#include "core/registry/registry.h"

namespace sculpt::data {

class IdTrie;
struct RetrievalDocs;

// Token ids shared by every text dataset and sequence model.
namespace token {
constexpr int64_t pad = 0;  // padding; targets equal to pad are ignored by the losses
constexpr int64_t unk = 1;  // a word outside the vocabulary
constexpr int64_t bos = 2;  // starts every decoder input
constexpr int64_t eos = 3;  // ends every target sequence
constexpr int64_t first_word = 4;
}  // namespace token

// What a dataset holds, so models and tasks are sized from the data:
// - images/tabular: inputs float [N, ...input_shape], targets int64 [N] (num_classes > 0) or
//   float [N] / [N, D] for regression (num_classes == 0);
// - token classification (jsonl text/label): inputs int64 [N, L] padded with token::pad,
//   targets int64 [N], vocab_size > 0;
// - language modelling (tokens): inputs int64 [N, T], targets int64 [N, T] (the next tokens),
//   vocab_size > 0, num_classes == 0;
// - seq2seq (jsonl query/target): inputs int64 [N, source_len + T] = the source padded to
//   source_len, then the decoder input (token::bos + target, padded); targets int64 [N, T] =
//   target + token::eos, padded with token::pad. source_len > 0 marks this kind;
//   decoder_start_id / eos_id / pad_id say which ids start, end and never appear in a
//   generated target (Sculpt's vocabularies: token::bos / eos / pad; text datasets: the
//   tokenizer's or the hf checkpoint's, core/data/text_files.h);
// - text pairs with segment ids (token_type_ids): inputs int64 [N, 2, L], row 0 the ids, row 1
//   the token type ids (0 first text, 1 second, as the tokenizer's pair template assigns them).
struct DataSpec {
  std::vector<int64_t> input_shape;  // one sample, e.g. {16} or {1, 28, 28} or {T}
  int64_t num_classes = 0;           // 0 for regression targets and token sequences
  int64_t vocab_size = 0;            // token datasets: ids in [0, vocab_size)
  int64_t source_len = 0;            // seq2seq: source positions at the front of each input
  std::vector<std::string> vocab;    // text datasets: id -> word (decoding, reports); may be empty
  // Seq2seq decoding: the decoder's first input, the id that ends a target (-1: none) and an id
  // never generated (-1: none). Targets are padded with token::pad whatever these are.
  int64_t decoder_start_id = token::bos, eos_id = token::eos, pad_id = token::pad;
  bool token_type_ids = false;  // inputs [N, 2, L]: ids, then token type ids
  // Generative retrieval (gr.h): every valid target (document ID tokens + eos), for decoding
  // constrained to them; null for other datasets.
  std::shared_ptr<const IdTrie> valid_targets;
  // Generative retrieval: the documents the rows come from, their texts and ID rows (gr.h),
  // for passes that make rows of their own (replay's pseudo queries); null for other datasets.
  std::shared_ptr<const RetrievalDocs> documents;
};

class Dataset {
 public:
  Dataset(at::Tensor inputs, at::Tensor targets, DataSpec spec);
  int64_t size() const { return size_; }
  const DataSpec& spec() const { return spec_; }
  // All rows (gathered when this is a subset).
  at::Tensor inputs() const;
  at::Tensor targets() const;
  // Rows `rows` (int64 positions in this dataset) as one batch.
  at::Tensor input_rows(const at::Tensor& rows) const;
  at::Tensor target_rows(const at::Tensor& rows) const;
  // A view of the rows `index` (an int64 tensor) of this one: it shares the tensors and keeps
  // only the index, so a train/val split of a large dataset costs no copy.
  Dataset subset(const at::Tensor& index) const;
  // Rows (int64 positions) the dataset holds out for validation itself (a generated corpus's
  // validation queries); split_dataset uses them instead of a random val_fraction share.
  void set_val_rows(at::Tensor rows) { val_rows_ = std::move(rows); }
  const at::Tensor& val_rows() const { return val_rows_; }

 private:
  at::Tensor inputs_, targets_;
  at::Tensor index_;  // undefined: all rows in order
  at::Tensor val_rows_;  // undefined: none of its own (only on a dataset that is no subset)
  DataSpec spec_;
  int64_t size_;
};

// Which part of a dataset to build. `test` is a held-out set the dataset ships (MNIST's t10k)
// or, for generated data, a fresh sample; a factory returns nullptr when there is none.
enum class DataPart { train, test };
using DatasetRegistry = Registry<Dataset, const config::DataConfig&, DataPart>;
DatasetRegistry& dataset_registry();
void register_builtin_datasets(DatasetRegistry& r);

// Deterministic train/validation split by data.val_fraction and data.split_seed. A dataset
// with validation rows of its own (set_val_rows) is split into those and the rest whenever
// val_fraction > 0.
struct Split {
  Dataset train;
  Dataset val;
};
Split split_dataset(const Dataset& all, double val_fraction, int64_t seed);

struct SyntheticBlobsOptions : config::Section {
  int64_t samples = 2048;  // rows generated, >= 2
  int64_t features = 16;   // input width, >= 1
  int64_t classes = 4;     // Gaussian clusters, one per class, >= 2
  double spread = 1.0;     // cluster standard deviation (centers have unit scale * 3), > 0
  int64_t seed = 0;        // generator seed, >= 0
  void visit(config::Visitor& v) override;
};

struct SyntheticImagesOptions : config::Section {
  int64_t samples = 4096;  // images generated, >= 2
  int64_t size = 16;       // height = width in pixels, >= 8
  int64_t channels = 1;    // image channels, >= 1
  int64_t classes = 10;    // one smooth random prototype per class, >= 2
  double noise = 0.5;      // per-pixel Gaussian noise (prototypes have unit contrast), >= 0
  int64_t max_shift = 2;   // random translation of the prototype in pixels, >= 0
  int64_t seed = 0;        // generator seed, >= 0
  void visit(config::Visitor& v) override;
};

struct IdxDatasetOptions : config::Section {
  std::string dir;  // folder with the four IDX files (train-/t10k- images and labels, .gz or raw)
  bool standardize = true;  // minus the published pixel mean, over its std; false: pixels in [0, 1]
  void visit(config::Visitor& v) override;
};

struct DigitsOptions : config::Section {
  std::string file;  // digits.csv(.gz): 65 integers per line, 64 pixels (0-16) then the label
  void visit(config::Visitor& v) override;
};

struct Cifar10Options : config::Section {
  std::string dir;  // folder with data_batch_1..5.bin and test_batch.bin, or its parent
  void visit(config::Visitor& v) override;
};

struct CsvDatasetOptions : config::Section {
  std::string file;                       // training rows, .csv or .csv.gz, comma-separated
  std::string test_file;                  // held-out rows (test part), same columns; "": none
  std::string label_column;               // header name or 0-based index; "": the last column
  bool header = true;                     // the first line holds the column names
  std::string target = "classification";  // classification (integer labels) | regression
  bool standardize = false;               // z-score features with the train file's mean/std
  void visit(config::Visitor& v) override;
};

struct TokenFileOptions : config::Section {
  std::string file;              // flat little-endian token ids (.gz or raw)
  std::string test_file;         // held-out token file (test part); "": none
  std::string dtype = "uint16";  // uint16 | uint32
  int64_t seq_len = 128;         // tokens per sample (inputs and targets), >= 1
  int64_t vocab_size = 0;        // ids in [0, vocab_size); 0: max token of the train file + 1
  void visit(config::Visitor& v) override;
};

struct JsonlOptions : config::Section {
  std::string file;                // one JSON object per line: text/label or query/target
  std::string test_file;           // held-out lines (test part); "": none
  std::string tokenizer = "word";  // word | char (see split_words)
  int64_t max_source_len = 0;      // text/query tokens kept; 0: the longest in the train file
  int64_t max_target_len = 0;      // target tokens kept (seq2seq); 0: the longest in the train file
  int64_t min_count = 1;           // rarer train-file words become token::unk, >= 1
  std::string mode = "auto";       // auto (from the first line's keys) | classification | seq2seq
  void visit(config::Visitor& v) override;
};

// The text datasets' tokenizer, so decoders split text the same way.
//  word (chars = false): ASCII letters lowercased, split on whitespace, every ASCII punctuation
//                        character a token of its own; other bytes (UTF-8) stay inside words.
//  char (chars = true):  every UTF-8 character is a token, whitespace included, case kept.
std::vector<std::string> split_words(const std::string& text, bool chars);

// Registration of the generated (synthetic.cpp) and file-backed (files.cpp: IDX and digits;
// images_tables.cpp: cifar10 and csv; text.cpp: tokens and jsonl) datasets.
void add_synthetic_datasets(DatasetRegistry& r);
void add_file_datasets(DatasetRegistry& r);
void add_image_table_datasets(DatasetRegistry& r);
void add_text_datasets(DatasetRegistry& r);
void add_gr_datasets(DatasetRegistry& r);  // gr_data.cpp: gr_synthetic, gr_jsonl
void add_text_file_datasets(DatasetRegistry& r);  // text_files.cpp: text (through a tokenizer)

}  // namespace sculpt::data
