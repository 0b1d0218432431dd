// Transformer models and sequence tasks: a hand-written reference forward pass, causality,
// padding that cannot leak, parameter counts by formula, beam search against brute force, and
// the metrics of every task against direct computations.
#include <torch/torch.h>
#include <catch2/catch.hpp>

#include <cmath>

#include "cli/app.h"
#include "core/config/config.h"
#include "core/data/dataset.h"
#include "core/models/decode_cache.h"
#include "core/models/model.h"
#include "core/nn/layers.h"
#include "core/tasks/decoding.h"
#include "core/tasks/task.h"

namespace {
using sculpt::data::DataSpec;
namespace token = sculpt::data::token;

sculpt::config::Config parse(const std::string& yaml) {
  sculpt::cli::register_builtins();
  return sculpt::config::Config::parse(yaml + "\ndata: {name: synthetic_blobs}\n");
}

std::unique_ptr<sculpt::models::Model> build(const std::string& yaml, const DataSpec& spec) {
  auto cfg = parse(yaml);
  return sculpt::models::model_registry().create(cfg.model.name, cfg.model, spec);
}

std::unique_ptr<sculpt::tasks::Task> task(const std::string& yaml, const DataSpec& spec) {
  auto cfg = parse(yaml + "\nmodel: {name: mlp}");
  return sculpt::tasks::task_registry().create(cfg.task.name, cfg.task, spec);
}

std::map<std::string, at::Tensor> params(torch::nn::Module& m) {
  std::map<std::string, at::Tensor> out;
  for (const auto& p : m.named_parameters()) out[p.key()] = p.value();
  return out;
}

DataSpec lm_spec(int64_t len, int64_t vocab) {
  DataSpec s;
  s.input_shape = {len};
  s.vocab_size = vocab;
  return s;
}

DataSpec seq2seq_spec(int64_t source, int64_t target, int64_t vocab) {
  DataSpec s;
  s.input_shape = {source + target};
  s.vocab_size = vocab;
  s.source_len = source;
  return s;
}
}  // namespace

TEST_CASE("transformer_lm computes pre-norm causal attention exactly as written out by hand",
          "[sequence]") {
  torch::manual_seed(1);
  auto m = build("model: {name: transformer_lm, d_model: 8, heads: 2, layers: 1, ff: 12}",
                 lm_spec(5, 7));
  auto p = params(*m);
  auto ids = torch::randint(0, 7, {2, 5}, torch::kLong);
  auto lin = [&](const std::string& n, const at::Tensor& x) {
    return torch::nn::functional::linear(x, p.at(n + ".weight"), p.at(n + ".bias"));
  };
  auto ln = [&](const std::string& n, const at::Tensor& x) {
    return at::layer_norm(x, {8}, p.at(n + ".weight"), p.at(n + ".bias"));
  };
  auto x = p.at("embed.tokens.weight").index_select(0, ids.reshape(-1)).view({2, 5, 8}) +
           p.at("embed.positions");
  const std::string l = "layer0.layer.";
  auto a = ln(l + "ln1", x);
  auto split = [](const at::Tensor& t) { return t.view({2, 5, 2, 4}).transpose(1, 2); };
  auto q = split(lin(l + "self_attn.q", a)), k = split(lin(l + "self_attn.k", a)),
       v = split(lin(l + "self_attn.v", a));
  auto scores = q.matmul(k.transpose(-1, -2)) / std::sqrt(4.0);
  auto future = torch::ones({5, 5}, torch::kBool).triu(1);
  auto att = scores.masked_fill(future, -INFINITY).softmax(-1).matmul(v);
  x = x + lin(l + "self_attn.o", att.transpose(1, 2).reshape({2, 5, 8}));
  x = x + lin(l + "fc2", at::gelu(lin(l + "fc1", ln(l + "ln2", x))));
  auto expected = lin("head.fc", ln("head.ln", x));
  auto got = m->forward(ids);
  REQUIRE(got.sizes() == torch::IntArrayRef({2, 5, 7}));
  CHECK(torch::allclose(got, expected, 1e-5, 1e-5));
  // Parameter count by formula: embeddings, one layer, head.
  const int64_t d = 8, ff = 12, vocab = 7, len = 5;
  const int64_t layer = 2 * 2 * d + 4 * (d * d + d) + (d * ff + ff) + (ff * d + d);
  CHECK(m->parameter_count() == vocab * d + len * d + layer + 2 * d + d * vocab + vocab);
  CHECK(sculpt::nn::compressible_layers(*m).size() == 1 + 6 + 1);
}

TEST_CASE("transformer_lm never looks ahead", "[sequence]") {
  torch::manual_seed(2);
  auto m = build("model: {name: transformer_lm, d_model: 16, heads: 4, layers: 2}", lm_spec(8, 11));
  m->eval();
  auto ids = torch::randint(0, 11, {3, 8}, torch::kLong);
  auto changed = ids.clone();
  changed.select(1, 5).fill_(10);
  changed.select(1, 6).fill_(9);
  auto a = m->forward(ids), b = m->forward(changed);
  CHECK(torch::equal(a.narrow(1, 0, 5), b.narrow(1, 0, 5)));
  CHECK_FALSE(torch::allclose(a.narrow(1, 5, 1), b.narrow(1, 5, 1)));
}

TEST_CASE("transformer_encoder classifies token rows without reading the padding", "[sequence]") {
  torch::manual_seed(3);
  auto spec = lm_spec(6, 12);
  spec.num_classes = 3;
  auto m = build("model: {name: transformer_encoder, d_model: 16, heads: 2, layers: 2}", spec);
  m->eval();
  auto ids = torch::tensor({4, 7, 9, 0, 0, 0, 5, 6, 7, 8, 9, 10}, torch::kLong).view({2, 6});
  auto before = m->forward(ids);
  REQUIRE(before.sizes() == torch::IntArrayRef({2, 3}));
  {
    torch::NoGradGuard no_grad;  // a different padding embedding changes nothing
    params(*m).at("embed.tokens.weight")[token::pad].normal_();
  }
  CHECK(torch::allclose(m->forward(ids), before, 1e-6, 1e-6));
  // Text datasets pad with data.pad_id, -1 by default: the same padding (it once indexed the
  // token table at -1, "index out of range").
  auto text_ids = torch::tensor({4, 7, 9, -1, -1, -1, 5, 6, 7, 8, 9, 10}, torch::kLong).view({2, 6});
  CHECK(torch::allclose(m->forward(text_ids), before, 1e-6, 1e-6));
}

TEST_CASE("transformer_encoder on images embeds patches; sizes are checked", "[sequence]") {
  DataSpec spec;
  spec.input_shape = {3, 16, 16};
  spec.num_classes = 5;
  auto m = build("model: {name: transformer_encoder, d_model: 12, heads: 3, patch_size: 4}", spec);
  CHECK(m->forward(torch::randn({2, 3, 16, 16})).sizes() == torch::IntArrayRef({2, 5}));
  CHECK(params(*m).at("embed.positions").sizes() == torch::IntArrayRef({16, 12}));
  CHECK_THROWS_WITH(
      build("model: {name: transformer_encoder, d_model: 12, heads: 3, patch_size: 5}", spec),
      Catch::Contains("patch_size 5 does not divide"));
  CHECK_THROWS_WITH(build("model: {name: transformer_encoder, d_model: 10, heads: 3}", spec),
                    Catch::Contains("model.d_model"));
  CHECK_THROWS_WITH(build("model: {name: transformer_lm}", spec),
                    Catch::Contains("needs a token dataset"));
}

TEST_CASE("transformer_seq2seq: padding and later decoder tokens do not leak", "[sequence]") {
  torch::manual_seed(4);
  auto m = build("model: {name: transformer_seq2seq, d_model: 16, heads: 2, layers: 2}",
                 seq2seq_spec(5, 4, 13));
  m->eval();
  // source [6 7 8 pad pad], decoder input [bos 9 10 pad]
  auto ids = torch::tensor({6, 7, 8, 0, 0, 2, 9, 10, 0}, torch::kLong).view({1, 9});
  auto out = m->forward(ids);
  REQUIRE(out.sizes() == torch::IntArrayRef({1, 4, 13}));
  CHECK(m->block_names() ==
        std::vector<std::string>{"embed", "enc0", "enc1", "enc_norm", "dec0", "dec1", "head"});
  {
    torch::NoGradGuard no_grad;
    params(*m).at("embed.tokens.weight")[token::pad].normal_();
  }
  auto after = m->forward(ids);
  CHECK(torch::allclose(after.narrow(1, 0, 3), out.narrow(1, 0, 3), 1e-6, 1e-6));
  // -1 (a text dataset's default data.pad_id) in the source is padding as well
  auto text_ids = ids.clone();
  text_ids.narrow(1, 3, 2).fill_(-1);
  CHECK(torch::allclose(m->forward(text_ids).narrow(1, 0, 3), after.narrow(1, 0, 3), 1e-6, 1e-6));
  // A shorter decoder input gives the same logits for the positions it has.
  auto prefix = m->forward(ids.narrow(1, 0, 7));
  CHECK(torch::allclose(prefix, after.narrow(1, 0, 2), 1e-5, 1e-5));
}

TEST_CASE("model.init_blocks loads a shallower model from chosen blocks of a deeper one",
          "[sequence]") {
  torch::manual_seed(6);
  const auto spec = seq2seq_spec(5, 4, 13);
  auto deep = build("model: {name: transformer_seq2seq, d_model: 16, heads: 2, layers: 4}", spec);
  auto shallow = build("model: {name: transformer_seq2seq, d_model: 16, heads: 2, layers: 2}", spec);
  const std::vector<std::string> from = {"embed", "enc0", "enc3", "enc_norm", "dec0", "dec3", "head"};
  shallow->load_state_tensors(shallow->pick_blocks(deep->state_tensors(), from, "t.yaml"), "t");
  const auto d = params(*deep), s = params(*shallow);
  CHECK(torch::equal(s.at("enc1.layer.fc1.weight"), d.at("enc3.layer.fc1.weight")));
  CHECK(torch::equal(s.at("dec1.layer.cross_attn.q.weight"), d.at("dec3.layer.cross_attn.q.weight")));
  CHECK(torch::equal(s.at("enc0.layer.fc1.weight"), d.at("enc0.layer.fc1.weight")));
  CHECK(torch::equal(s.at("embed.tokens.weight"), d.at("embed.tokens.weight")));
  CHECK_FALSE(torch::equal(s.at("enc1.layer.fc1.weight"), d.at("enc1.layer.fc1.weight")));
  // Bad lists name the file, the counts and the block.
  CHECK_THROWS_WITH(shallow->pick_blocks(deep->state_tensors(), {"embed", "enc0"}, "t.yaml"),
                    Catch::Contains("t.yaml: init_blocks names 2 blocks but the model has 7"));
  auto typo = from;
  typo[2] = "enc9";
  CHECK_THROWS_WITH(shallow->pick_blocks(deep->state_tensors(), typo, "t.yaml"),
                    Catch::Contains("block 'enc9' (for the model's block 'enc1') has no tensors"));
  CHECK_THROWS_WITH(parse("model: {name: mlp, init_blocks: [a]}"),
                    Catch::Contains("init_blocks") && Catch::Contains("model.init is empty"));
}

TEST_CASE("decode scope: encoder blocks compute once per source within a decode", "[sequence]") {
  using sculpt::models::DecodeScope;
  using sculpt::models::memoize_source;
  torch::NoGradGuard no_grad;
  int calls = 0;
  const int key = 0;
  auto src = torch::arange(6, torch::kFloat).view({2, 3});
  auto run = [&](const at::Tensor& x, bool training = false) {
    return memoize_source(&key, training, x, [&](const at::Tensor& rows) {
      ++calls;
      return rows * 2;
    });
  };
  run(src), run(src);
  CHECK(calls == 2);  // no scope: nothing is kept
  {
    DecodeScope scope;
    CHECK(torch::equal(run(src), src * 2));
    CHECK(torch::equal(run(src.clone()), src * 2));  // equal values, another tensor: reused
    CHECK(calls == 3);
    auto other = src + 1;
    CHECK(torch::equal(run(other), other * 2));  // another source: computed
    CHECK(calls == 4);
    run(other, /*training=*/true);
    CHECK(calls == 5);
    {
      torch::AutoGradMode grad(true);
      run(other);
      CHECK(calls == 6);
    }
    {
      DecodeScope inner;  // a scope of its own
      run(other);
      CHECK(calls == 7);
    }
    run(other);
    CHECK(calls == 7);
  }
  run(src);
  CHECK(calls == 8);
  {
    // Repeat scope: rows in groups of 2 equal rows run as one row each, then repeat.
    DecodeScope scope(2);
    int64_t rows_seen = 0;
    auto run_rows = [&](const at::Tensor& x) {
      return memoize_source(&key, false, x, [&](const at::Tensor& rows) {
        rows_seen = rows.size(0);
        return rows * 2;
      });
    };
    auto pairs = src.repeat_interleave(2, 0);  // [4, 3]: rows 0 0 1 1
    CHECK(torch::equal(run_rows(pairs), pairs * 2));
    CHECK(rows_seen == 2);
    auto mixed = torch::cat({src, src});  // rows 0 1 0 1: not in groups
    CHECK(torch::equal(run_rows(mixed), mixed * 2));
    CHECK(rows_seen == 4);
    auto odd = src.narrow(0, 0, 1).repeat({3, 1});  // 3 rows: not a multiple of 2
    CHECK(torch::equal(run_rows(odd), odd * 2));
    CHECK(rows_seen == 3);
  }

  // transformer_seq2seq: inside a scope every decoder step gives the logits of a plain forward,
  // and the second step really reuses the encoder (NaN encoder weights set in between do not
  // reach it).
  torch::manual_seed(5);
  auto m = build("model: {name: transformer_seq2seq, d_model: 16, heads: 2, layers: 2}",
                 seq2seq_spec(5, 4, 13));
  m->eval();
  auto step1 = torch::tensor({6, 7, 8, 0, 0, 2}, torch::kLong).view({1, 6});
  auto step2 = torch::tensor({6, 7, 8, 0, 0, 2, 9}, torch::kLong).view({1, 7});
  auto other = torch::tensor({5, 7, 8, 9, 0, 2, 9}, torch::kLong).view({1, 7});
  const auto want1 = m->forward(step1), want2 = m->forward(step2);
  DecodeScope scope;
  CHECK(torch::allclose(m->forward(step1), want1, 1e-6, 1e-6));
  for (auto& p : m->named_parameters())
    if (p.key().rfind("enc", 0) == 0) p.value().fill_(std::nan(""));
  auto got2 = m->forward(step2);
  CHECK(torch::allclose(got2, want2, 1e-5, 1e-5));
  CHECK(torch::isnan(m->forward(other)).all().item<bool>());  // a new source runs the encoder

  // Under a repeat scope (beam search's k beams per row) the same logits as a plain forward.
  auto m2 = build("model: {name: transformer_seq2seq, d_model: 16, heads: 2, layers: 2}",
                  seq2seq_spec(5, 4, 13));
  m2->eval();
  auto beams = torch::cat({step2.repeat({3, 1}), other.repeat({3, 1})});  // 2 rows x 3 beams
  const auto plain = m2->forward(beams);
  {
    DecodeScope repeated(3);
    CHECK(torch::allclose(m2->forward(beams), plain, 1e-5, 1e-5));
    CHECK(torch::allclose(m2->forward(beams), plain, 1e-5, 1e-5));  // and from the memo
  }
  // A last_only scope (greedy and beam search read the next token alone): the head gives the
  // last position's logits only, [B, 1, V], equal to that position of a plain forward.
  DecodeScope last(3, /*last_only=*/true);
  CHECK(sculpt::models::decode_last_only());
  for (int pass = 0; pass < 2; ++pass) {  // the second from the memo
    auto got = m2->forward(beams);
    REQUIRE(got.sizes() == at::IntArrayRef({6, 1, 13}));
    CHECK(torch::allclose(got.select(1, 0), plain.select(1, plain.size(1) - 1), 1e-5, 1e-5));
  }
  {
    torch::AutoGradMode grad(true);  // autograd recording: every position, nothing reused
    CHECK_FALSE(sculpt::models::decode_last_only());
    CHECK(m2->forward(beams).sizes() == plain.sizes());
  }
}

TEST_CASE("beam search finds the k most likely sequences; greedy is beam 1", "[sequence]") {
  torch::manual_seed(5);
  // Vocabulary: pad unk bos eos w4 -> generated tokens are unk, eos, w4.
  const int64_t s = 3, t = 3, vocab = 5;
  auto m = build("model: {name: transformer_seq2seq, d_model: 8, heads: 2, layers: 1}",
                 seq2seq_spec(s, t, vocab));
  m->eval();
  torch::NoGradGuard no_grad;
  sculpt::tasks::Forward f = [&](const at::Tensor& x) { return m->forward(x); };
  auto source = torch::tensor({4, 1, 4, 1, 4, 0}, torch::kLong).view({2, 3});
  // Brute force: every sequence of generated tokens that ends at eos or at length t.
  for (int64_t row = 0; row < 2; ++row) {
    auto src = source.narrow(0, row, 1);
    std::vector<std::pair<double, std::vector<int64_t>>> all;
    std::vector<std::vector<int64_t>> frontier = {{}};
    while (!frontier.empty()) {
      auto seq = frontier.back();
      frontier.pop_back();
      for (int64_t tok : {token::unk, token::eos, int64_t{4}}) {
        auto next = seq;
        next.push_back(tok);
        if (tok == token::eos || static_cast<int64_t>(next.size()) == t) {
          auto padded = next;
          padded.resize(t, token::pad);
          auto dec = torch::tensor(std::vector<int64_t>{token::bos}, torch::kLong);
          dec = torch::cat({dec, torch::tensor(next, torch::kLong)}).narrow(0, 0, next.size());
          auto logp = f(torch::cat({src, dec.unsqueeze(0)}, 1)).log_softmax(-1)[0];
          double score = 0;
          for (size_t i = 0; i < next.size(); ++i) score += logp[i][next[i]].item<double>();
          all.emplace_back(score, padded);
        } else {
          frontier.push_back(next);
        }
      }
    }
    REQUIRE(all.size() == 1 + 2 + 4 + 8);
    std::sort(all.begin(), all.end(), [](const auto& a, const auto& b) { return a > b; });
    auto beams = sculpt::tasks::beam_search(f, src, t, static_cast<int64_t>(all.size()));
    for (size_t i = 0; i < 5; ++i) {
      auto got = beams.tokens[0][static_cast<int64_t>(i)];
      CHECK(torch::equal(got, torch::tensor(all[i].second, torch::kLong)));
      CHECK(beams.scores[0][static_cast<int64_t>(i)].item<double>() ==
            Approx(all[i].first).epsilon(1e-4));
    }
  }
  auto greedy = sculpt::tasks::greedy_decode(f, source, t);
  auto one = sculpt::tasks::beam_search(f, source, t, 1);
  CHECK(torch::equal(greedy, one.tokens.select(1, 0)));
}

TEST_CASE("seq2seq task: loss ignores padding; decoding metrics from an oracle", "[sequence]") {
  auto spec = seq2seq_spec(2, 3, 6);
  auto t = task("task: {name: seq2seq, beam_size: 2}", spec);
  // targets: [5 eos pad] and [4 5 eos]; an oracle that knows the targets of each source.
  auto targets = torch::tensor({5, 3, 0, 4, 5, 3}, torch::kLong).view({2, 3});
  auto inputs = torch::tensor({4, 0, 2, 5, 3, 5, 4, 2, 4, 5}, torch::kLong).view({2, 5});
  sculpt::tasks::Forward oracle = [&](const at::Tensor& x) {
    const int64_t len = x.size(1) - 2;
    auto logits = torch::zeros({x.size(0), len, 6});
    for (int64_t r = 0; r < x.size(0); ++r) {
      const int64_t row = x[r][0].item<int64_t>() == 4 ? 0 : 1;
      for (int64_t i = 0; i < len; ++i) logits[r][i][targets[row][i].item<int64_t>()] = 5.0;
    }
    return logits;
  };
  sculpt::tasks::MetricSums sums;
  t->evaluate_batch(sums, oracle, inputs, targets);
  auto m = t->finish(sums);
  CHECK(m.at("exact_match") == 1.0);
  CHECK(m.at("hits@1") == 1.0);
  CHECK(m.at("hits@2") == 1.0);
  CHECK(m.at("token_accuracy") == 1.0);
  // 5 real target tokens, each with probability e^5 / (e^5 + 5).
  CHECK(m.at("loss") == Approx(-std::log(std::exp(5.0) / (std::exp(5.0) + 5.0))));
  auto logits = oracle(inputs);
  CHECK(t->loss(logits, targets).item<double>() == Approx(m.at("loss")).epsilon(1e-5));
}

TEST_CASE("language_model, regression and top-k metrics match direct computations",
          "[sequence]") {
  torch::manual_seed(6);
  auto lm = task("task: {name: language_model}", lm_spec(4, 9));
  auto logits = torch::randn({3, 4, 9});
  auto next = torch::randint(0, 9, {3, 4}, torch::kLong);
  sculpt::tasks::MetricSums sums;
  lm->accumulate(sums, logits, next);
  auto m = lm->finish(sums);
  const double ce = at::cross_entropy_loss(logits.view({12, 9}), next.view(12)).item<double>();
  CHECK(m.at("loss") == Approx(ce));
  CHECK(m.at("perplexity") == Approx(std::exp(ce)));
  CHECK(m.at("accuracy") == Approx(logits.argmax(-1).eq(next).sum().item<double>() / 12.0));

  auto reg = task("task: {name: regression}", DataSpec{{3}, 0});
  auto pred = torch::randn({5, 1}), y = torch::randn({5});
  sums.clear();
  reg->accumulate(sums, pred, y);
  m = reg->finish(sums);
  CHECK(m.at("loss") == Approx((pred.view(5) - y).square().mean().item<double>()));
  CHECK(m.at("mae") == Approx((pred.view(5) - y).abs().mean().item<double>()));
  CHECK(reg->loss(pred, y).item<double>() == Approx(m.at("loss")));

  auto cls = task("task: {name: classification, top_k: 2}", DataSpec{{3}, 4});
  auto out = torch::tensor({4., 3., 0., 0., 0., 1., 3., 2., 1., 0., 0., 2.}).view({3, 4});
  auto labels = torch::tensor({1, 0, 3}, torch::kLong);
  sums.clear();
  cls->accumulate(sums, out, labels);
  m = cls->finish(sums);
  CHECK(m.at("accuracy") == Approx(1.0 / 3));
  CHECK(m.at("top2_accuracy") == Approx(2.0 / 3));
}
