// The CSV reader, compiled (instrumented) from its source for fuzz_data.cpp.
#include "core/data/images_tables.cpp"

namespace sculpt::fuzz {
void load_csv_file(const std::string& path, int variant) {
  data::CsvDatasetOptions o;
  o.file = path;
  o.test_file = path;
  o.header = !(variant & 1);
  o.target = variant & 2 ? "regression" : "classification";
  o.standardize = variant & 4;
  (void)data::load_csv(o, data::DataPart::train);
  (void)data::load_csv(o, data::DataPart::test);
}
}  // namespace sculpt::fuzz
