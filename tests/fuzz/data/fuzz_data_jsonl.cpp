// The JSON-lines reader, compiled (instrumented) from its source for fuzz_data.cpp.
#include "core/data/text.cpp"

namespace sculpt::fuzz {
void load_jsonl_file(const std::string& path, int variant) {
  data::JsonlOptions o;
  o.file = path;
  o.test_file = path;
  o.tokenizer = variant & 1 ? "char" : "word";
  o.min_count = variant & 2 ? 2 : 1;
  o.max_source_len = variant & 4 ? 8 : 0;
  (void)data::load_jsonl(o, data::DataPart::train);
  (void)data::load_jsonl(o, data::DataPart::test);
}
}  // namespace sculpt::fuzz
