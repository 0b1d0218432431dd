// Several updates of new documents in the generative-retrieval corpora: gr_synthetic's
// `updates` and gr_jsonl's "update" field select disjoint slices (documents: update<k>),
// earlier documents keep their IDs when later updates are added, eval_docs counts per update,
// DataSpec::documents describes the selected documents as the rows do, and bad selections
// name the key (or the file and line).
#include <torch/torch.h>
#include <catch2/catch.hpp>

#include <set>

#include "core/data/dataset.h"
#include "core/data/gr.h"
#include "tests/support/load_dataset.h"
#include "tests/support/process.h"

namespace data = sculpt::data;
namespace token = sculpt::data::token;
using data::DataPart;
using sculpt::test::load_dataset;

namespace {
const std::string& kBase = sculpt::test::kSmallGr;

std::string error_of(const std::string& yaml, DataPart part = DataPart::train) {
  return sculpt::test::load_error(yaml, part);
}

// The distinct target rows (document IDs) of a dataset.
std::set<std::vector<int64_t>> ids_of(const data::Dataset& ds) {
  std::set<std::vector<int64_t>> out;
  auto t = ds.targets().contiguous();
  for (int64_t r = 0; r < t.size(0); ++r) {
    auto row = t[r].contiguous();
    out.emplace(row.data_ptr<int64_t>(), row.data_ptr<int64_t>() + row.numel());
  }
  return out;
}
}  // namespace

TEST_CASE("gr_synthetic updates: disjoint slices of new_docs documents each", "[gr][data]") {
  data::GrSyntheticOptions o;
  o.docs = 40;
  o.new_docs = 5;
  o.updates = 3;
  o.vocab = 200;
  o.topics = 4;
  const auto c = data::generate_gr_corpus(o);
  REQUIRE(c.docs.size() == 55);
  REQUIRE(c.update.size() == 55);
  CHECK(c.update[39] == 0);
  CHECK(c.update[40] == 1);
  CHECK(c.update[44] == 1);
  CHECK(c.update[45] == 2);
  CHECK(c.update[54] == 3);
  // One update of 5: the same first 45 documents and queries.
  auto one = o;
  one.updates = 1;
  const auto c1 = data::generate_gr_corpus(one);
  for (size_t d = 0; d < 45; ++d) CHECK(c1.docs[d] == c.docs[d]);

  const std::string three = kBase + ", updates: 3";
  std::set<std::vector<int64_t>> seen;
  size_t total = 0;
  for (int k = 1; k <= 3; ++k) {
    auto test = load_dataset(three + ", documents: update" + std::to_string(k) + "}",
                             DataPart::test);
    CHECK(test->size() == 12);  // one test query per document
    auto train = load_dataset(three + ", documents: update" + std::to_string(k) + "}",
                              DataPart::train);
    const auto ids = ids_of(*train);
    CHECK(ids.size() == 12);
    CHECK(ids_of(*test) == ids);
    total += ids.size();
    seen.insert(ids.begin(), ids.end());
    REQUIRE(train->spec().documents);
    CHECK(train->spec().documents->size() == 12);
    CHECK(train->spec().documents->corpus_doc.front() == 120 + 12 * (k - 1));
  }
  CHECK(seen.size() == total);  // disjoint
  CHECK(ids_of(*load_dataset(three + ", documents: new}", DataPart::test)) == seen);
  CHECK(load_dataset(three + ", documents: all}", DataPart::test)->size() == 120 + 36);
  // The trie holds every document of every update.
  CHECK(load_dataset(three + ", documents: old}", DataPart::test)->spec().valid_targets->size() ==
        156);
  // eval_docs counts within each update: the first 5 documents of update 2.
  CHECK(load_dataset(three + ", documents: update2, eval_docs: 5}", DataPart::test)->size() == 5);
  CHECK(load_dataset(three + ", documents: new, eval_docs: 5}", DataPart::test)->size() == 15);
}

TEST_CASE("later updates leave the rows and IDs of earlier documents unchanged", "[gr][data]") {
  for (const char* sel : {"old", "new", "all"}) {
    INFO(sel);
    // updates: 1 is the default: the same rows, bit for bit.
    const auto a = load_dataset(kBase + ", documents: " + sel + "}", DataPart::train);
    const auto b = load_dataset(kBase + ", updates: 1, documents: " + sel + "}", DataPart::train);
    CHECK(torch::equal(a->inputs(), b->inputs()));
    CHECK(torch::equal(a->targets(), b->targets()));
  }
  // documents: update1 of a one-update corpus is documents: new.
  const auto nw = load_dataset(kBase + ", documents: new}", DataPart::train);
  const auto u1 = load_dataset(kBase + ", documents: update1}", DataPart::train);
  CHECK(torch::equal(nw->inputs(), u1->inputs()));
  CHECK(torch::equal(nw->targets(), u1->targets()));
  // Three updates: the old documents' and the first update's rows are those of one update
  // (IDs are handed out in the order documents arrive).
  for (const char* sel : {"old", "update1"}) {
    INFO(sel);
    const auto one = load_dataset(kBase + ", updates: 1, documents: " + sel + "}", DataPart::train);
    const auto three =
        load_dataset(kBase + ", updates: 3, documents: " + sel + "}", DataPart::train);
    CHECK(torch::equal(one->inputs(), three->inputs()));
    CHECK(torch::equal(one->targets(), three->targets()));
  }
}

TEST_CASE("DataSpec::documents holds the selected documents as the rows describe them",
          "[gr][data]") {
  const auto ds = load_dataset(kBase + ", documents: update1, index_stride: 8}", DataPart::train);
  const auto& docs = *ds->spec().documents;
  REQUIRE(docs.size() == 12);
  CHECK(docs.source_len == 8);
  CHECK(docs.decoder_inputs.size(1) == ds->targets().size(1));
  // The first rows are the index windows, two per document: the first window of document i is
  // input_row(its first 8 tokens, i) with target targets[i].
  for (int64_t i = 0; i < docs.size(); ++i) {
    REQUIRE(docs.texts[size_t(i)].size() == 16);
    const data::TokenSeq head(docs.texts[size_t(i)].begin(), docs.texts[size_t(i)].begin() + 8);
    CHECK(torch::equal(docs.input_row(head, i), ds->inputs()[2 * i]));
    CHECK(torch::equal(docs.targets[i], ds->targets()[2 * i]));
    for (int64_t w : docs.texts[size_t(i)]) CHECK(w >= token::first_word);
  }
  // Removed documents are not among them.
  const auto kept = load_dataset(kBase + ", documents: update1, removed_docs: ['121']}",
                                 DataPart::train);
  CHECK(kept->spec().documents->size() == 11);
  CHECK(kept->spec().documents->corpus_doc[1] == 122);
}

TEST_CASE("documents: a selection that is not old, new, all or an update of the corpus is named",
          "[gr][data]") {
  for (const char* bad : {"update0", "update", "updates2", "newest", "update1x", "update-1"}) {
    INFO(bad);
    CHECK_THAT(error_of(kBase + ", documents: " + bad + "}"),
               Catch::Contains("documents") && Catch::Contains("update<k>"));
  }
  CHECK_THAT(error_of(kBase + ", updates: 2, documents: update3}"),
             Catch::Contains("data.documents") && Catch::Contains("updates: 2"));
  CHECK_THAT(error_of("{name: gr_synthetic, docs: 120, documents: update1}"),
             Catch::Contains("data.documents") && Catch::Contains("no new documents"));
  CHECK_THAT(error_of(kBase + ", updates: 0}"), Catch::Contains("data.updates"));
}

TEST_CASE("gr_jsonl: a new document's \"update\" field makes the update slices", "[gr][data]") {
  auto dir = sculpt::test::temp_dir("gr_jsonl_updates");
  sculpt::test::write_text(dir + "/docs.jsonl",
                           "{\"doc_id\": \"a\", \"text\": \"red apples grow on trees\"}\n"
                           "{\"doc_id\": \"b\", \"text\": \"blue whales swim in oceans\"}\n"
                           "{\"doc_id\": \"c\", \"text\": \"green frogs jump in ponds\"}\n");
  // Update 2 listed first: documents are ordered by update, the file's order within one.
  sculpt::test::write_text(dir + "/new.jsonl",
                           "{\"doc_id\": \"x\", \"text\": \"grey wolves howl\", \"update\": 2}\n"
                           "{\"doc_id\": \"y\", \"text\": \"red apples fall\"}\n"
                           "{\"doc_id\": \"z\", \"text\": \"blue whales sing\", \"update\": 1}\n"
                           "{\"doc_id\": \"w\", \"text\": \"green frogs croak\", \"update\": 2}\n");
  sculpt::test::write_text(dir + "/q.jsonl", "{\"query\": \"apples\", \"doc_id\": \"a\"}\n"
                                             "{\"query\": \"wolves\", \"doc_id\": \"x\"}\n"
                                             "{\"query\": \"whales\", \"doc_id\": \"z\"}\n");
  const std::string base = "{name: gr_jsonl, docs_file: " + dir + "/docs.jsonl, new_docs_file: " +
                           dir + "/new.jsonl, queries_file: " + dir +
                           "/q.jsonl, max_query_len: 4, ids: atomic, index_docs: false";
  // Atomic IDs in document order: a b c, then y z (update 1), then x w (update 2).
  const int64_t first = token::first_word + 8192;
  auto u1 = load_dataset(base + ", documents: update1}", DataPart::train);
  REQUIRE(u1->size() == 1);  // the query of z
  CHECK(u1->targets()[0][0].item<int64_t>() == first + 4);
  CHECK(u1->spec().documents->size() == 2);
  auto u2 = load_dataset(base + ", documents: update2}", DataPart::train);
  REQUIRE(u2->size() == 1);  // the query of x
  CHECK(u2->targets()[0][0].item<int64_t>() == first + 5);
  CHECK(load_dataset(base + ", documents: new}", DataPart::train)->size() == 2);
  CHECK_THAT(error_of(base + ", documents: update3}"),
             Catch::Contains("update3") && Catch::Contains("2 updates"));
  sculpt::test::write_text(dir + "/bad.jsonl",
                           "{\"doc_id\": \"x\", \"text\": \"grey wolves\", \"update\": 0}\n");
  CHECK_THAT(error_of("{name: gr_jsonl, docs_file: " + dir + "/docs.jsonl, new_docs_file: " + dir +
                      "/bad.jsonl, queries_file: " + dir + "/q.jsonl}"),
             Catch::Contains("bad.jsonl:1") && Catch::Contains("\"update\""));
  sculpt::test::write_text(dir + "/old_update.jsonl",
                           "{\"doc_id\": \"a\", \"text\": \"red\", \"update\": 1}\n"
                           "{\"doc_id\": \"b\", \"text\": \"blue\"}\n");
  CHECK_THAT(error_of("{name: gr_jsonl, docs_file: " + dir + "/old_update.jsonl, queries_file: " +
                      dir + "/q.jsonl}"),
             Catch::Contains("old_update.jsonl:1") && Catch::Contains("\"update\""));
}
