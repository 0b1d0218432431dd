// Shared steps of the Hugging Face tests: the families' fixtures (written by make_fixtures.py
// into SCULPT_HF_FIXTURES), generated data for them, and `sculpt train` of a small run.
#pragma once

#include <ATen/core/Tensor.h>

#include <filesystem>
#include <map>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

namespace sculpt::test::hf {

extern const std::filesystem::path kFixtures;

// A family's fixture, its data and task, and the names of its blocks for a 1-layer student.
struct Family {
  std::string fixture;
  std::string kind;  // tokens | classify | seq2seq | images
  std::string student_blocks;
};
const std::vector<Family>& families();
const Family& family(const std::string& fixture);

// Little-endian uint16 ids in [4, vocab).
void write_tokens(const std::string& path, int64_t count, int64_t vocab, uint64_t seed);
// jsonl lines of words w0..w29: text/label (classification) or query/target (seq2seq).
void write_jsonl(const std::string& path, bool seq2seq);
// `data:` and `task:` of a run on `f`'s fixture, writing the data files into `dir`.
std::string data_yaml(const Family& f, const std::string& dir);
std::string model_yaml(const Family& f, const std::string& extra = "");
// `sculpt train` in a fresh folder (a Catch2 CHECK on its exit code); returns the run
// directory, "" when it failed.
std::string train(const std::string& tag, const Family& f, const std::string& model,
                  const std::string& compression);
std::map<std::string, at::Tensor> weights(const std::string& run);
nlohmann::json summary(const std::string& run);

}  // namespace sculpt::test::hf
