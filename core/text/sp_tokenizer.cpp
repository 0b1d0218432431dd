// A SentencePiece `.model` tokenizer. The model is read and run by SpEncoder (sp_model.h),
// which gives the ids and text of the `sentencepiece` 0.2 package. Ids are what that package
// returns for each stretch of text between special tokens, with the special tokens
// transformers' SentencePiece tokenizers add: Llama's <s> before (add_bos_token, default true
// for Llama), T5's </s> after (always for T5Tokenizer; add_eos_token otherwise).
#include <filesystem>

#include <nlohmann/json.hpp>

#include "core/error.h"
#include "core/text/added_tokens.h"
#include "core/text/components.h"
#include "core/text/loaders.h"
#include "core/text/sp_model.h"
#include "core/text/unicode.h"

namespace sculpt::text::detail {

namespace {

class SpTokenizer : public Tokenizer {
 public:
  SpTokenizer(const std::string& model_file, const std::string& dir) {
    std::string why;
    sp_ = SpEncoder::from_proto(read_file(model_file), &why);
    if (!sp_) fail({model_file, ""}, why);
    std::vector<std::string> files = {model_file};
    SpecialTokenNames names;
    if (!dir.empty()) names = read_special_token_names(dir);
    files.insert(files.end(), names.files.begin(), names.files.end());
    fingerprint_ = fingerprint_files(files);

    // Added tokens: tokenizer_config.json's added_tokens_decoder, else the named specials.
    std::vector<AddedToken> added;
    bool add_bos = false, add_eos = false;
    if (!names.config_json.empty()) {
      const Where root{(std::filesystem::path(dir) / "tokenizer_config.json").string(), ""};
      const auto j = parse_json(names.config_json, root);
      if (j.contains("added_tokens_decoder") && j["added_tokens_decoder"].is_object()) {
        for (auto it = j["added_tokens_decoder"].begin(); it != j["added_tokens_decoder"].end();
             ++it) {
          const Where w = root.at("added_tokens_decoder").at(it.key());
          AddedToken t;
          const std::string& key = it.key();
          const int64_t bound = sp_->size() + kIdSlack;
          int64_t id = key.empty() || key.size() > 10 ? -1 : 0;
          for (const char c : key) id = c >= '0' && c <= '9' && id >= 0 ? id * 10 + (c - '0') : -1;
          if (id < 0 || id >= bound)
            fail(w, "expected an id in [0, " + std::to_string(bound) +
                        ") as the key (the model's pieces plus " + std::to_string(kIdSlack) + ")");
          t.id = static_cast<int32_t>(id);
          t.content = get_string(it.value(), "content", w);
          t.single_word = get_bool(it.value(), "single_word", w, false);
          t.lstrip = get_bool(it.value(), "lstrip", w, false);
          t.rstrip = get_bool(it.value(), "rstrip", w, false);
          t.special = get_bool(it.value(), "special", w, true);
          t.normalized = false;  // SentencePiece normalizes inside its encoder
          added.push_back(std::move(t));
        }
      }
      const bool is_t5 = names.tokenizer_class.find("T5") != std::string::npos;
      const bool is_llama = names.tokenizer_class.find("Llama") != std::string::npos;
      add_bos = get_bool(j, "add_bos_token", root, is_llama);
      add_eos = is_t5 || get_bool(j, "add_eos_token", root, false);
    }
    if (added.empty())
      for (const std::string* name : {&names.bos, &names.eos, &names.unk, &names.pad})
        if (!name->empty())
          if (const auto id = sp_->find(*name)) {
            AddedToken t;
            t.id = *id;
            t.content = *name;
            t.special = true;
            added.push_back(std::move(t));
          }
    for (const auto& t : added) max_added_id_ = std::max(max_added_id_, t.id);
    added_ = AddedVocabulary(std::move(added), nullptr);

    auto id_of = [this](const std::string& name, std::optional<int32_t> fallback) {
      if (!name.empty())
        if (const auto id = token_to_id(name)) return id;
      return fallback;
    };
    bos_ = id_of(names.bos, sp_->control("<s>"));
    eos_ = id_of(names.eos, sp_->control("</s>"));
    unk_ = id_of(names.unk, sp_->unk_id());
    pad_ = id_of(names.pad, sp_->control("<pad>"));
    if (add_bos && bos_) prefix_.push_back(*bos_);
    if (add_eos && eos_) suffix_.push_back(*eos_);
  }

  Encoding encode(std::string_view text, const EncodeOptions& options,
                  std::optional<std::string_view> pair) const override {
    Encoding a, b;
    encode_ids(text, a.ids);
    if (pair) encode_ids(*pair, b.ids);
    const size_t added =
        options.add_special_tokens ? (prefix_.size() + suffix_.size()) * (pair ? 2 : 1) : 0;
    if (options.max_length > 0) {
      const auto max = static_cast<size_t>(options.max_length);
      truncate_pair(a, pair ? &b : nullptr, max > added ? max - added : 0);
    }
    Encoding out;
    auto append = [&](const std::vector<int32_t>& ids, int32_t type) {
      out.ids.insert(out.ids.end(), ids.begin(), ids.end());
      out.type_ids.insert(out.type_ids.end(), ids.size(), type);
    };
    const std::vector<int32_t> none;
    const auto& pre = options.add_special_tokens ? prefix_ : none;
    const auto& post = options.add_special_tokens ? suffix_ : none;
    append(pre, 0), append(a.ids, 0), append(post, 0);
    if (pair) append(pre, 1), append(b.ids, 1), append(post, 1);
    out.attention_mask.assign(out.ids.size(), 1);
    truncate_and_pad(out, options, pad_.value_or(0));
    return out;
  }

  std::string decode(const std::vector<int32_t>& ids, bool skip_special_tokens) const override {
    std::string out;
    std::vector<int32_t> run;
    auto flush = [&] {
      if (run.empty()) return;
      out += sp_->decode(run);
      run.clear();
    };
    for (const int32_t id : ids) {
      if (const auto* t = added_.by_id(id)) {
        if (skip_special_tokens && t->special) continue;
        flush();
        out += t->content;
        continue;
      }
      run.push_back(id);
    }
    flush();
    return out;
  }

  int64_t vocab_size() const override { return std::max<int64_t>(sp_->size(), max_added_id_ + 1); }
  std::optional<int32_t> token_to_id(std::string_view token) const override {
    if (const auto* t = added_.by_content(token)) return t->id;
    return sp_->find(token);
  }
  std::string id_to_token(int32_t id) const override {
    if (const auto* t = added_.by_id(id)) return t->content;
    if (id < 0 || id >= sp_->size()) return "";
    return sp_->piece(id);
  }
  std::optional<int32_t> pad_id() const override { return pad_; }
  std::optional<int32_t> unk_id() const override { return unk_; }
  std::optional<int32_t> bos_id() const override { return bos_; }
  std::optional<int32_t> eos_id() const override { return eos_; }
  std::string fingerprint() const override { return fingerprint_; }

 private:
  void encode_ids(std::string_view text, std::vector<int32_t>& ids) const {
    const size_t bad = find_invalid_utf8(text);
    if (bad != std::string_view::npos)
      throw UserError("text is not valid UTF-8 (byte offset " + std::to_string(bad) + ")");
    thread_local std::vector<Piece> pieces;
    added_.split(text, nullptr, pieces);
    for (const auto& p : pieces) {
      if (p.id >= 0)
        ids.push_back(p.id);
      else
        sp_->encode(p.text, ids);
    }
  }

  std::unique_ptr<SpEncoder> sp_;
  AddedVocabulary added_;
  int32_t max_added_id_ = -1;
  std::vector<int32_t> prefix_, suffix_;
  std::optional<int32_t> pad_, unk_, bos_, eos_;
  std::string fingerprint_;
};

}  // namespace

std::unique_ptr<Tokenizer> load_sp_tokenizer(const std::string& model_file,
                                             const std::string& dir) {
  try {
    return std::make_unique<SpTokenizer>(model_file, dir);
  } catch (const nlohmann::json::exception& e) {  // tokenizer_config.json: an unexpected type
    fail({(std::filesystem::path(dir) / "tokenizer_config.json").string(), ""},
         std::string("unexpected JSON: ") + e.what());
  }
}

}  // namespace sculpt::text::detail
