// gr_jsonl (gr.h): documents and queries from JSON-lines files. A new document's optional
// "update" field (an integer >= 1, default 1) says which update brings it; the new documents
// are ordered by update (stably, so a file's order holds within one), so update k's documents
// get IDs after every earlier one's.
#include <algorithm>
#include <cctype>
#include <nlohmann/json.hpp>
#include <unordered_map>

#include "core/data/file_input.h"
#include "core/data/gr_rows.h"
#include "core/error.h"

namespace sculpt::data::gr_rows {

namespace {

std::vector<std::string> whitespace_words(std::string_view text) {
  std::vector<std::string> out;
  std::string w;
  for (char ch : text) {
    const auto c = static_cast<unsigned char>(ch);
    if (c < 0x80 && std::isspace(c)) {
      if (!w.empty()) out.push_back(w);
      w.clear();
    } else {
      w += c < 0x80 ? static_cast<char>(std::tolower(c)) : ch;
    }
  }
  if (!w.empty()) out.push_back(w);
  return out;
}

nlohmann::json parse_line(const std::string& path, int64_t line_no, std::string_view line) {
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(line.begin(), line.end());
  } catch (const nlohmann::json::exception& e) {  // parse_error, out_of_range (1e999)
    throw UserError(path + ":" + std::to_string(line_no) + ": not valid JSON: " + e.what());
  }
  SCULPT_CHECK(j.is_object(), path, ":", line_no, ": expected a JSON object, got ", j.type_name());
  return j;
}

std::string string_field(const std::string& path, int64_t line_no, const nlohmann::json& j,
                         const char* key) {
  SCULPT_CHECK(j.contains(key), path, ":", line_no, ": missing key \"", key, "\"");
  const auto& v = j.at(key);
  if (v.is_string()) return v.get<std::string>();
  SCULPT_CHECK(v.is_number_integer() && std::string(key) == "doc_id", path, ":", line_no,
               ": \"", key, "\" must be a string", std::string(key) == "doc_id" ? " or an integer" : "");
  return std::to_string(v.get<int64_t>());
}

struct JsonlTokenizer {
  const GrJsonlOptions& o;
  std::unordered_map<std::string, int64_t> vocab;  // vocab tokenizer
  int64_t words() const { return o.tokenizer == "hash" ? o.buckets : int64_t(vocab.size()) + 1; }
  // Word ids in [0, words()); the vocab tokenizer maps unknown words to the last id.
  TokenSeq encode(const std::vector<std::string>& ws) const {
    TokenSeq out;
    for (const auto& w : ws) {
      if (o.tokenizer == "hash") {
        uint64_t h = 1469598103934665603ull;  // FNV-1a
        for (char ch : w) h = (h ^ static_cast<unsigned char>(ch)) * 1099511628211ull;
        out.push_back(static_cast<int64_t>(h % static_cast<uint64_t>(o.buckets)));
      } else {
        auto it = vocab.find(w);
        out.push_back(it == vocab.end() ? static_cast<int64_t>(vocab.size()) : it->second);
      }
    }
    return out;
  }
};


// A document's "update": absent is `fallback`; else an integer in [min, max].
int64_t update_field(const std::string& path, int64_t line_no, const nlohmann::json& j,
                     int64_t fallback, int64_t min) {
  if (!j.contains("update")) return fallback;
  const auto& v = j.at("update");
  SCULPT_CHECK(v.is_number_integer() && v.get<int64_t>() >= min, path, ":", line_no,
               ": \"update\" must be an integer >= ", min, min == 0 ? " (0 here: the documents"
               " of docs_file are the original ones)" : "", ", got ", v.dump());
  if (min == 0)
    SCULPT_CHECK(v.get<int64_t>() == 0, path, ":", line_no,
                 ": \"update\" in docs_file must be 0 (later documents go to new_docs_file)");
  return v.get<int64_t>();
}

}  // namespace

std::unique_ptr<Dataset> load_gr_jsonl(const GrJsonlOptions& o, DataPart part) {
  if (part == DataPart::test && o.test_queries_file.empty()) return nullptr;
  auto b = cached("gr_jsonl\n" + key_of(o), [&] {
    auto out = std::make_shared<Built>();
    std::unordered_map<std::string, int64_t> doc_index;
    std::vector<std::vector<std::string>> texts;
    struct Read {
      std::string id;
      std::vector<std::string> words;
      int64_t update;
    };
    auto read_docs = [&](const std::string& path, bool later) {
      std::vector<Read> docs;
      for_each_line(read_maybe_gz(path), [&](std::string_view line, int64_t no) {
        auto j = parse_line(path, no, line);
        Read r{string_field(path, no, j, "doc_id"), {}, 0};
        SCULPT_CHECK(doc_index.emplace(r.id, -1).second, path, ":", no, ": doc_id \"", r.id,
                     "\" appears twice");
        r.words = whitespace_words(string_field(path, no, j, "text"));
        r.update = later ? update_field(path, no, j, 1, 1) : update_field(path, no, j, 0, 0);
        docs.push_back(std::move(r));
      });
      std::stable_sort(docs.begin(), docs.end(),
                       [](const Read& a, const Read& b) { return a.update < b.update; });
      for (auto& r : docs) {
        doc_index[r.id] = static_cast<int64_t>(texts.size());
        texts.push_back(std::move(r.words));
        out->names.push_back(r.id);
        out->corpus.update.push_back(r.update);
      }
    };
    read_docs(o.docs_file, false);
    out->corpus.old_docs = static_cast<int64_t>(texts.size());
    SCULPT_CHECK(out->corpus.old_docs >= 2, o.docs_file, ": fewer than 2 documents");
    if (!o.new_docs_file.empty()) read_docs(o.new_docs_file, true);
    JsonlTokenizer tok{o, {}};
    if (o.tokenizer == "vocab")
      for (int64_t d = 0; d < out->corpus.old_docs; ++d)
        for (const auto& w : texts[size_t(d)])
          tok.vocab.emplace(w, static_cast<int64_t>(tok.vocab.size()));
    for (const auto& t : texts) out->corpus.docs.push_back(tok.encode(t));
    auto read_queries = [&](const std::string& path, int split) {
      for_each_line(read_maybe_gz(path), [&](std::string_view line, int64_t no) {
        auto j = parse_line(path, no, line);
        const auto id = string_field(path, no, j, "doc_id");
        auto it = doc_index.find(id);
        SCULPT_CHECK(it != doc_index.end(), path, ":", no, ": doc_id \"", id,
                     "\" is not a document of ", o.docs_file,
                     o.new_docs_file.empty() ? "" : " or " + o.new_docs_file);
        GrQuery q;
        q.doc = it->second;
        q.split = split;
        q.tokens = tok.encode(whitespace_words(string_field(path, no, j, "query")));
        if (q.tokens.empty()) q.tokens.push_back(0);
        out->corpus.queries.push_back(std::move(q));
      });
    };
    read_queries(o.queries_file, 0);
    if (!o.test_queries_file.empty()) read_queries(o.test_queries_file, 2);
    for (auto& d : out->corpus.docs)
      if (d.empty()) d.push_back(0);
    out->words = tok.words();
    out->source_len = o.max_query_len;
    assign_ids(o, *out);
    return out;
  });
  return make_rows(o, *b, part);
}

}  // namespace sculpt::data::gr_rows
