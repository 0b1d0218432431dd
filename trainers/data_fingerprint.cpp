#include "trainers/data_fingerprint.h"

#include "core/data/dataset.h"
#include "core/data/gr.h"
#include "core/data/text_files.h"
#include "core/text/tokenizer.h"
#include "trainers/sha256.h"

namespace sculpt::trainers {

namespace {

// `params` with "sha256" of their canonical dump added.
nlohmann::json sealed(nlohmann::json params) {
  const auto s = params.dump();
  params["sha256"] = sha256_hex(s.data(), s.size());
  return params;
}

nlohmann::json gr_tokenizer(const data::GrCommonOptions& common) {
  if (const auto* o = dynamic_cast<const data::GrSyntheticOptions*>(&common))
    return {{"kind", "gr_synthetic words"}, {"vocab", o->vocab}};
  const auto& o = dynamic_cast<const data::GrJsonlOptions&>(common);
  if (o.tokenizer == "hash") return {{"kind", "gr_jsonl hash"}, {"buckets", o.buckets}};
  // The vocabulary is built from the documents of docs_file.
  return {{"kind", "gr_jsonl vocab"}, {"docs_file_sha256", sha256_file(o.docs_file)}};
}

nlohmann::json gr_ids(const data::GrCommonOptions& o, const nlohmann::json& tokenizer) {
  nlohmann::json j = {{"ids", o.ids}, {"seed", o.seed}};
  if (o.ids != "atomic") {
    j["id_branch"] = o.id_branch;
    j["id_reserve"] = o.id_reserve;
    j["id_max_depth"] = o.id_max_depth;
    j["id_dims"] = o.id_dims;
  }
  // The corpus the ID tree is built on (and whose word count offsets the ID tokens).
  if (const auto* s = dynamic_cast<const data::GrSyntheticOptions*>(&o)) {
    j["corpus"] = {{"docs", s->docs},
                   {"topics", s->topics},
                   {"vocab", s->vocab},
                   {"zipf", s->zipf},
                   {"doc_len", s->doc_len}};
  } else {
    const auto& f = dynamic_cast<const data::GrJsonlOptions&>(o);
    j["corpus"] = {{"docs_file_sha256", sha256_file(f.docs_file)},
                   {"tokenizer_sha256", tokenizer.at("sha256")}};
  }
  return j;
}

// One part as a line: its parameters (without the hash) and the hash's first 12 digits.
std::string describe(const nlohmann::json& part) {
  if (part.is_null()) return "none";
  nlohmann::json p = part;
  p.erase("sha256");
  return p.dump() + " (sha256 " + part.value("sha256", std::string()).substr(0, 12) + ")";
}

}  // namespace

nlohmann::json data_fingerprint(const config::DataConfig& d) {
  nlohmann::json tokenizer, ids;
  const auto* options = d.options.get();
  if (const auto* gr = dynamic_cast<const data::GrCommonOptions*>(options)) {
    tokenizer = sealed(gr_tokenizer(*gr));
    ids = sealed(gr_ids(*gr, tokenizer));
  } else if (const auto* j = dynamic_cast<const data::JsonlOptions*>(options)) {
    tokenizer = sealed({{"kind", "jsonl " + j->tokenizer},
                        {"min_count", j->min_count},
                        {"file_sha256", sha256_file(j->file)}});
  } else if (const auto* t = dynamic_cast<const data::TextFilesOptions*>(options)) {
    const std::string path = !t->tokenizer.empty() ? t->tokenizer : d.default_tokenizer;
    if (!path.empty())
      tokenizer = sealed({{"kind", "text"}, {"files", text::load_tokenizer(path)->fingerprint()}});
  }
  return {{"tokenizer", tokenizer}, {"id_scheme", ids}};
}

std::string fingerprint_mismatch(const nlohmann::json& a, const nlohmann::json& b) {
  std::string out;
  if (!a.is_object() || !b.is_object()) return out;
  for (const char* part : {"tokenizer", "id_scheme"}) {
    const auto x = a.value(part, nlohmann::json()), y = b.value(part, nlohmann::json());
    if (x.is_null() && y.is_null()) continue;
    if (!x.is_null() && !y.is_null() &&
        x.value("sha256", std::string()) == y.value("sha256", std::string()))
      continue;
    out += std::string(out.empty() ? "" : "\n") + part + ": " + describe(x) + " vs " + describe(y);
  }
  return out;
}

}  // namespace sculpt::trainers
