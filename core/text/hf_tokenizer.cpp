// A `tokenizer.json` tokenizer: the file's added tokens, normalizer, pre-tokenizer, model,
// post-processor and decoder, run in the order of Hugging Face `tokenizers`.
#include <filesystem>

#include <nlohmann/json.hpp>

#include "core/error.h"
#include "core/text/added_tokens.h"
#include "core/text/components.h"
#include "core/text/loaders.h"
#include "core/text/unicode.h"

namespace sculpt::text::detail {

namespace {

std::string token_name(const nlohmann::json& v) {
  if (v.is_string()) return v.get<std::string>();
  if (v.is_object() && v.contains("content") && v["content"].is_string())
    return v["content"].get<std::string>();
  return "";
}

void check_utf8(std::string_view text) {
  const size_t bad = find_invalid_utf8(text);
  if (bad != std::string_view::npos)
    throw UserError("text is not valid UTF-8 (byte offset " + std::to_string(bad) + ")");
}

class HfTokenizer : public Tokenizer {
 public:
  HfTokenizer(const std::string& file, const std::string& dir) {
    const Where root{file, ""};
    const nlohmann::json j = parse_json(read_file(file), root);
    if (!j.is_object()) fail(root, "expected a JSON object");
    normalizer_ = make_normalizer(j.value("normalizer", nlohmann::json()), root.at("normalizer"));
    pre_tokenizer_ =
        make_pre_tokenizer(j.value("pre_tokenizer", nlohmann::json()), root.at("pre_tokenizer"));
    model_ = make_model(member(j, "model", root), root.at("model"));
    post_ =
        make_post_processor(j.value("post_processor", nlohmann::json()), root.at("post_processor"));
    decoder_ = make_decoder(j.value("decoder", nlohmann::json()), root.at("decoder"));

    std::vector<AddedToken> added;
    if (j.contains("added_tokens") && !j["added_tokens"].is_null()) {
      const auto& list = j["added_tokens"];
      if (!list.is_array()) fail(root.at("added_tokens"), "expected a list");
      const int64_t bound = model_->vocab_size() + static_cast<int64_t>(list.size()) + kIdSlack;
      for (size_t i = 0; i < list.size(); ++i) {
        const Where w = root.at("added_tokens").at(i);
        const auto& e = list[i];
        if (!e.is_object() || !e.contains("id"))
          fail(w, "expected {\"id\": ..., \"content\": ...}");
        AddedToken t;
        t.id = get_id(e["id"], bound, w.at("id"),
                      "the model's ids and the added tokens, plus " + std::to_string(kIdSlack));
        t.content = get_string(e, "content", w);
        t.single_word = get_bool(e, "single_word", w, false);
        t.lstrip = get_bool(e, "lstrip", w, false);
        t.rstrip = get_bool(e, "rstrip", w, false);
        t.special = get_bool(e, "special", w, false);
        t.normalized = get_bool(e, "normalized", w, !t.special);
        max_added_id_ = std::max(max_added_id_, t.id);
        added.push_back(std::move(t));
      }
    }
    added_ = AddedVocabulary(std::move(added), normalizer_.get());

    std::vector<std::string> files = {file};
    SpecialTokenNames names;
    if (!dir.empty()) names = read_special_token_names(dir);
    files.insert(files.end(), names.files.begin(), names.files.end());
    fingerprint_ = fingerprint_files(files);

    if (vocab_size() == 0)
      fail(root.at("model").at("vocab"), "no tokens: the tokenizer has no ids");
    if (j.contains("padding") && j["padding"].is_object() && j["padding"].contains("pad_id"))
      pad_ = get_id(j["padding"]["pad_id"], vocab_size(), root.at("padding").at("pad_id"),
                    "the tokenizer's ids");
    if (post_)
      for (const int32_t id : post_->special_ids())
        if (id < 0 || id >= vocab_size())
          fail(root.at("post_processor"), "special token id " + std::to_string(id) +
                                              " is outside the tokenizer's ids [0, " +
                                              std::to_string(vocab_size()) + ")");
    pad_ = pick(names.pad, {"[PAD]", "<pad>", "<|pad|>"}, pad_);
    unk_ = pick(names.unk, {}, model_->unk_id());
    bos_ = pick(names.bos, {"<s>", "[CLS]", "<|begin_of_text|>", "<|endoftext|>", "<bos>"},
                std::nullopt);
    eos_ = pick(names.eos, {"</s>", "[SEP]", "<|end_of_text|>", "<|endoftext|>", "<eos>"},
                std::nullopt);
  }

  Encoding encode(std::string_view text, const EncodeOptions& options,
                  std::optional<std::string_view> pair) const override {
    Encoding a;
    encode_ids(text, a.ids);
    Encoding b;
    if (pair) encode_ids(*pair, b.ids);
    if (options.max_length > 0) {
      const size_t added =
          (options.add_special_tokens && post_) ? post_->added_tokens(pair.has_value()) : 0;
      const auto max = static_cast<size_t>(options.max_length);
      truncate_pair(a, pair ? &b : nullptr, max > added ? max - added : 0);
    }
    Encoding out =
        post_ ? post_->process(std::move(a), pair ? &b : nullptr, options.add_special_tokens)
              : concat_plain(std::move(a), pair ? &b : nullptr);
    truncate_and_pad(out, options, pad_.value_or(0));
    return out;
  }

  std::string decode(const std::vector<int32_t>& ids, bool skip_special_tokens) const override {
    std::vector<std::string> tokens;
    tokens.reserve(ids.size());
    for (const int32_t id : ids) {
      std::string token;
      if (const auto* t = added_.by_id(id))
        token = t->token;
      else if (auto s = model_->id_to_token(id))
        token = std::move(*s);
      else
        continue;
      if (skip_special_tokens && added_.is_special_text(token)) continue;
      tokens.push_back(std::move(token));
    }
    if (!decoder_) {
      std::string out;
      for (size_t i = 0; i < tokens.size(); ++i) out += (i ? " " : "") + tokens[i];
      return out;
    }
    decoder_->decode_chain(tokens);
    std::string out;
    for (const auto& t : tokens) out += t;
    return out;
  }

  int64_t vocab_size() const override {
    return std::max<int64_t>(model_->vocab_size(), max_added_id_ + 1);
  }
  std::optional<int32_t> token_to_id(std::string_view token) const override {
    if (const auto* t = added_.by_content(token)) return t->id;
    return model_->token_to_id(token);
  }
  std::string id_to_token(int32_t id) const override {
    if (const auto* t = added_.by_id(id)) return t->token;
    return model_->id_to_token(id).value_or("");
  }
  std::optional<int32_t> pad_id() const override { return pad_; }
  std::optional<int32_t> unk_id() const override { return unk_; }
  std::optional<int32_t> bos_id() const override { return bos_; }
  std::optional<int32_t> eos_id() const override { return eos_; }
  std::string fingerprint() const override { return fingerprint_; }

 private:
  void encode_ids(std::string_view text, std::vector<int32_t>& ids) const {
    check_utf8(text);
    thread_local std::vector<Piece> pieces;
    added_.split(text, normalizer_.get(), pieces);
    if (pre_tokenizer_) pre_tokenizer_->split(pieces);
    for (const auto& p : pieces) {
      if (p.id >= 0)
        ids.push_back(p.id);
      else
        model_->tokenize(p.text, ids);
    }
  }

  // The id of the configured name, else of the first candidate known, else `fallback`.
  std::optional<int32_t> pick(const std::string& configured,
                              std::initializer_list<const char*> candidates,
                              std::optional<int32_t> fallback) const {
    if (!configured.empty())
      if (const auto id = token_to_id(configured)) return id;
    if (fallback) return fallback;
    for (const char* c : candidates)
      if (const auto id = token_to_id(c)) return id;
    return std::nullopt;
  }

  std::unique_ptr<Normalizer> normalizer_;
  std::unique_ptr<PreTokenizer> pre_tokenizer_;
  std::unique_ptr<Model> model_;
  std::unique_ptr<PostProcessor> post_;
  std::unique_ptr<Decoder> decoder_;
  AddedVocabulary added_;
  int32_t max_added_id_ = -1;
  std::optional<int32_t> pad_, unk_, bos_, eos_;
  std::string fingerprint_;
};

}  // namespace

SpecialTokenNames read_special_token_names(const std::string& dir) {
  namespace fs = std::filesystem;
  SpecialTokenNames names;
  for (const char* name : {"tokenizer_config.json", "special_tokens_map.json"}) {
    const fs::path f = fs::path(dir) / name;
    if (!fs::exists(f)) continue;
    const std::string text = read_file(f.string());
    names.files.push_back(f.string());
    const nlohmann::json j = parse_json(text, {f.string(), ""});
    if (!j.is_object()) fail({f.string(), ""}, "expected a JSON object");
    if (std::string(name) == "tokenizer_config.json") {
      names.config_json = text;
      if (j.contains("tokenizer_class") && j["tokenizer_class"].is_string())
        names.tokenizer_class = j["tokenizer_class"].get<std::string>();
    }
    auto take = [&](const char* key, std::string& into) {
      if (j.contains(key)) {
        const std::string v = token_name(j[key]);
        if (!v.empty()) into = v;
      }
    };
    take("bos_token", names.bos);
    take("eos_token", names.eos);
    take("unk_token", names.unk);
    take("pad_token", names.pad);
  }
  return names;
}

std::unique_ptr<Tokenizer> load_hf_tokenizer(const std::string& json_file, const std::string& dir) {
  try {
    return std::make_unique<HfTokenizer>(json_file, dir);
  } catch (const nlohmann::json::exception& e) {  // a value of an unexpected type
    fail({json_file, ""}, std::string("unexpected JSON: ") + e.what());
  }
}

}  // namespace sculpt::text::detail
