// The IDX reader, compiled (instrumented) from its source for fuzz_data.cpp.
#include "core/data/files.cpp"

namespace sculpt::fuzz {
void load_idx_dir(const std::string& dir) {
  data::IdxDatasetOptions o;
  o.dir = dir;
  (void)data::load_idx(o, data::DataPart::train, 0.1307, 0.3081);
}
}  // namespace sculpt::fuzz
