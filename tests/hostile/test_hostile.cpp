// The hostile-inputs set (issue 28): every case under tests/hostile/cases/ (written by
// tests/hostile/make_cases.py) and a few large inputs written here is refused by `sculpt` with
// exit code 2 and a message naming the file, in < 1 s of CPU time and of wall time and < 200 MB
// of peak RSS above what `sculpt --version` itself takes (LibTorch's libraries alone are ~470 MB
// of RSS). The child's CPU time and RSS are its own (wait4's rusage). Wall time also counts the
// waits for a core: where the load average is above the cores (ctest -j beside other work), a
// case gets 3 s of wall time, and its CPU time still has to stay under 1 s. Each row goes to <SCULPT_TEST_TMP>/hostile-<pid>/hostile.tsv.
#include <catch2/catch.hpp>
#include <fcntl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>
#include <zlib.h>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <string>
#include <vector>

namespace fs = std::filesystem;

namespace {

const std::string kCases = std::string(SCULPT_SOURCE_DIR) + "/tests/hostile/cases";
constexpr double kMaxSeconds = 1.0;
constexpr long kMaxExtraRssKb = 200 * 1024;

struct Outcome {
  int exit_code = -1;
  double seconds = 0;
  double cpu_seconds = 0;  // user + system
  long rss_kb = 0;
  std::string err;
};

std::string tmp_root() {
  const char* t = std::getenv("SCULPT_TEST_TMP");
  // One folder per test process: ctest -j runs several cases at once (a shared stderr.txt
  // mixed their messages up).
  fs::path p = fs::path(t ? t : fs::temp_directory_path().string()) /
               ("hostile-" + std::to_string(getpid()));
  fs::create_directories(p);
  return p.string();
}

std::string slurp(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

void write(const std::string& path, const std::string& text) {
  fs::create_directories(fs::path(path).parent_path());
  std::ofstream(path, std::ios::binary) << text;
}

// Runs argv (stdout to /dev/null, stderr captured); wall time and the child's peak RSS.
Outcome run_once(const std::vector<std::string>& args) {
  const std::string err_file = tmp_root() + "/stderr.txt";
  std::vector<char*> argv;
  for (const auto& a : args) argv.push_back(const_cast<char*>(a.c_str()));
  argv.push_back(nullptr);
  const auto start = std::chrono::steady_clock::now();
  const pid_t pid = fork();
  if (pid == 0) {
    const int out = open("/dev/null", O_WRONLY);
    const int err = open(err_file.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    dup2(out, 1);
    dup2(err, 2);
    setenv("OMP_NUM_THREADS", "1", 1);
    execv(argv[0], argv.data());
    _exit(127);
  }
  int status = 0;
  struct rusage ru {};
  wait4(pid, &status, 0, &ru);
  Outcome o;
  o.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  o.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  o.rss_kb = ru.ru_maxrss;
  o.cpu_seconds = static_cast<double>(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) +
                  1e-6 * static_cast<double>(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec);
  o.err = slurp(err_file);
  return o;
}

// The fixed cost of starting `sculpt` (LibTorch loaded), the same for every case.
long baseline_rss_kb() {
  static long kb = [] {
    long best = 0;
    for (int i = 0; i < 2; ++i) best = std::max(best, run_once({SCULPT_BIN, "--version"}).rss_kb);
    return best;
  }();
  return kb;
}

// The wall-time limit now: 1 s, or 3 s while more processes want a core than there are cores.
double max_wall_seconds() {
  double load[1] = {0};
  const long cores = sysconf(_SC_NPROCESSORS_ONLN);
  if (getloadavg(load, 1) == 1 && cores > 0 && load[0] > static_cast<double>(cores))
    return 3 * kMaxSeconds;
  return kMaxSeconds;
}

// Runs one case; wall and CPU time are the best of up to 3 runs (the CI machine's 2 cores are
// shared with other tests), RSS and the message are the first run's.
void check_case(const std::string& name, const std::vector<std::string>& args,
                const std::string& must_name) {
  Outcome o = run_once(args);
  for (int again = 0; again < 2 && o.exit_code == 2 &&
                      (o.seconds >= kMaxSeconds || o.cpu_seconds >= kMaxSeconds);
       ++again) {
    const Outcome r = run_once(args);
    o.seconds = std::min(o.seconds, r.seconds);
    o.cpu_seconds = std::min(o.cpu_seconds, r.cpu_seconds);
  }
  const double max_wall = max_wall_seconds();
  const long extra = o.rss_kb - baseline_rss_kb();
  std::ofstream(tmp_root() + "/hostile.tsv", std::ios::app)
      << name << "\t" << o.exit_code << "\t" << o.seconds << " s\t" << o.cpu_seconds
      << " s CPU\t" << o.rss_kb / 1024
      << " MB\t+" << extra / 1024 << " MB\n";
  INFO("case " << name << ": exit " << o.exit_code << ", " << o.seconds << " s (limit "
               << max_wall << " s), " << o.cpu_seconds << " s CPU, peak RSS "
               << o.rss_kb / 1024 << " MB (+" << extra / 1024 << " MB over sculpt --version)\n"
               << "stderr: " << o.err.substr(0, 2000));
  CHECK(o.exit_code == 2);
  CHECK(o.err.find(must_name) != std::string::npos);
  CHECK(o.cpu_seconds < kMaxSeconds);
  CHECK(o.seconds < max_wall);
  CHECK(extra < kMaxExtraRssKb);
}

std::vector<fs::path> cases(const std::string& reader) {
  std::vector<fs::path> out;
  for (const auto& e : fs::directory_iterator(kCases + "/" + reader)) out.push_back(e.path());
  std::sort(out.begin(), out.end());
  return out;
}

// A run config around one data or model section (train cases fail while loading it).
std::string train_config(const std::string& name, const std::string& data,
                         const std::string& model) {
  const std::string dir = tmp_root() + "/" + name;
  write(dir + "/run.yaml", "run: {name: hostile, output_dir: " + dir + "/run, device: cpu}\n"
                           "data: " + data + "\nmodel: " + model +
                           "\noptimizer: {name: sgd, lr: 0.1}\ntrainer: {epochs: 1}\n");
  return dir + "/run.yaml";
}

void check_train(const std::string& name, const std::string& data, const std::string& model,
                 const std::string& must_name) {
  check_case(name, {SCULPT_BIN, "train", train_config(name, data, model)}, must_name);
}

// gzip of `header` followed by `bytes` bytes of `line` repeated (a "zip bomb": ~1000:1).
void write_gzip(const std::string& path, const std::string& header, size_t bytes,
                const std::string& line = std::string(1, '\0')) {
  fs::create_directories(fs::path(path).parent_path());
  gzFile f = gzopen(path.c_str(), "wb9");
  gzwrite(f, header.data(), static_cast<unsigned>(header.size()));
  std::string block;
  while (block.size() < (size_t(1) << 20)) block += line;
  for (size_t done = 0; done < bytes; done += block.size())
    gzwrite(f, block.data(), static_cast<unsigned>(std::min(block.size(), bytes - done)));
  gzclose(f);
}

const std::string kGood = kCases + "/_good";
const std::string kTextModel = "{name: transformer_encoder, d_model: 16, heads: 2, layers: 1}";

// data.name: text over `file` read through `tokenizer` (no token cache beside the cases).
std::string text_data(const std::string& file, const std::string& tokenizer,
                      const std::string& more = "") {
  return "{name: text, file: " + file + ", tokenizer: " + tokenizer + ", cache: false" +
         (more.empty() ? "" : ", " + more) + "}";
}

}  // namespace

TEST_CASE("hostile: the set holds at least 40 cases across every reader", "[hostile]") {
  size_t n = 0;
  for (const char* reader :
       {"yaml", "safetensors", "idx", "csv", "jsonl", "plugins", "hf", "tokenizer", "text"}) {
    INFO(reader);
    CHECK(cases(reader).size() >= 4);
    n += cases(reader).size();
  }
  CHECK(n >= 40);
}

TEST_CASE("hostile: YAML configs (alias bombs, deep nesting, huge, garbage, wrong types)",
          "[hostile]") {
  for (const auto& f : cases("yaml"))
    check_case("yaml/" + f.filename().string(), {SCULPT_BIN, "validate", f.string()}, f.string());
  // Large inputs, written here rather than committed.
  const std::string huge = tmp_root() + "/yaml/huge.yaml";
  std::string text = "run:\n  name: x\n";
  while (text.size() < (size_t(3) << 20)) text += "# " + std::string(78, 'x') + "\n";
  write(huge, text);
  check_case("yaml/huge.yaml (3 MiB)", {SCULPT_BIN, "validate", huge}, huge);
  const std::string many = tmp_root() + "/yaml/many_values.yaml";
  text = "data: [";
  while (text.size() < 65000) text += "1,";  // just under the 64 KiB limit
  write(many, text + "1]\n");
  check_case("yaml/many_values.yaml (32k values)", {SCULPT_BIN, "validate", many}, many);
  // Overrides: a wrong type and an index far past the list's end.
  const std::string quickstart = std::string(SCULPT_SOURCE_DIR) + "/configs/quickstart.yaml";
  check_case("override trainer.epochs=[[[1]]]",
             {SCULPT_BIN, "validate", quickstart, "trainer.epochs=[[[1]]]"}, "trainer.epochs");
  check_case("override compression[99999999].name=prune",
             {SCULPT_BIN, "validate", quickstart, "compression[99999999].name=prune"},
             "compression");
  check_case("override compression[99999999999999999999].name=prune",
             {SCULPT_BIN, "validate", quickstart, "compression[99999999999999999999].name=prune"},
             "compression");
}

TEST_CASE("hostile: safetensors files (header size, offsets, dtype x shape, truncation)",
          "[hostile]") {
  for (const auto& f : cases("safetensors"))
    check_case("safetensors/" + f.filename().string(), {SCULPT_BIN, "inspect", f.string()},
               f.string());
}

TEST_CASE("hostile: MNIST IDX files (declared sizes against the file's)", "[hostile]") {
  for (const auto& d : cases("idx"))
    check_train("idx/" + d.filename().string(), "{name: mnist, dir: " + d.string() + "}",
                "{name: lenet5}", d.string());
  // A gzip bomb: the header declares 2 images, 256 MiB of zeros follow.
  const std::string dir = tmp_root() + "/idx_gzip_bomb";
  std::string header = {0, 0, 8, 3, 0, 0, 0, 2, 0, 0, 0, 28, 0, 0, 0, 28};
  write_gzip(dir + "/train-images-idx3-ubyte.gz", header, size_t(256) << 20);
  write(dir + "/train-labels-idx1-ubyte", std::string({0, 0, 8, 1, 0, 0, 0, 2, 1, 2}));
  check_train("idx/gzip_bomb (256 MiB of zeros)", "{name: mnist, dir: " + dir + "}",
              "{name: lenet5}", dir);
}

TEST_CASE("hostile: CSV tables", "[hostile]") {
  for (const auto& f : cases("csv"))
    check_train("csv/" + f.filename().string(), "{name: csv, file: " + f.string() + "}",
                "{name: mlp}", f.string());
}

TEST_CASE("hostile: JSON lines", "[hostile]") {
  for (const auto& f : cases("jsonl"))
    check_train("jsonl/" + f.filename().string(), "{name: jsonl, file: " + f.string() + "}",
                "{name: transformer_encoder}", f.string());
}

TEST_CASE("hostile: a gzip bomb in a CSV or jsonl file stops at the gzip limit", "[hostile]") {
  // 256 MiB of rows that deflate compresses ~1000:1 (a 260 KB file): refused at 128 times
  // the file's size (64 MiB at least), naming the file and the limit.
  const std::string dir = tmp_root() + "/gzip_bombs";
  write_gzip(dir + "/bomb.csv.gz", "a,b,label\n", size_t(256) << 20, "1,2,0\n");
  check_train("csv/gzip_bomb (256 MiB of rows)", "{name: csv, file: " + dir + "/bomb.csv.gz}",
              "{name: mlp}", dir + "/bomb.csv.gz");
  const std::string row = "{\"text\": \"a b\", \"label\": 1}\n";
  write_gzip(dir + "/bomb.jsonl.gz", row, size_t(256) << 20, row);
  check_train("jsonl/gzip_bomb (256 MiB of rows)", "{name: jsonl, file: " + dir + "/bomb.jsonl.gz}",
              kTextModel, dir + "/bomb.jsonl.gz");
  check_train("text/gzip_bomb (256 MiB of rows)",
              text_data(dir + "/bomb.jsonl.gz", kGood + "/tokenizer"), kTextModel,
              dir + "/bomb.jsonl.gz");
}

TEST_CASE("hostile: tokenizers (tokenizer.json, SentencePiece .model, their config files)",
          "[hostile]") {
  for (const auto& d : cases("tokenizer"))
    check_train("tokenizer/" + d.filename().string(), text_data(kGood + "/train.jsonl", d.string()),
                kTextModel, d.string());
  for (const std::string& special : {std::string("/dev/zero"), tmp_root() + "/no_such_tokenizer"})
    check_train("tokenizer " + special, text_data(kGood + "/train.jsonl", special), kTextModel,
                special);
}

TEST_CASE("hostile: text datasets (jsonl, csv, tsv, txt read through a tokenizer)", "[hostile]") {
  for (const auto& d : cases("text")) {
    std::string file, test_file, more, expect = d.string();
    for (const auto& e : fs::directory_iterator(d)) {
      const std::string name = e.path().filename().string();
      if (name.rfind("data.", 0) == 0 && name != "data.yaml") file = e.path().string();
      if (name.rfind("test.", 0) == 0) test_file = e.path().string();
    }
    if (fs::exists(d / "data.yaml")) more = slurp((d / "data.yaml").string());
    if (fs::exists(d / "expect.txt")) expect = slurp((d / "expect.txt").string());
    while (!more.empty() && more.back() == '\n') more.pop_back();
    if (!test_file.empty())
      more += (more.empty() ? "" : ", ") + std::string("test_file: ") + test_file;
    check_train("text/" + d.filename().string(), text_data(file, kGood + "/tokenizer", more),
                kTextModel, expect);
  }
  // One record of 300,000 words among 3,000 short ones: padding every row to it would take
  // 7 GB; refused at 64 times the file's ids.
  const std::string padded = tmp_root() + "/text_padding/data.jsonl";
  std::string long_text;
  for (int i = 0; i < 300000; ++i) long_text += "a ";
  std::string rows = "{\"text\": \"" + long_text + "\", \"label\": \"pos\"}\n";
  for (int i = 0; i < 3000; ++i) rows += "{\"text\": \"the cat\", \"label\": \"neg\"}\n";
  write(padded, rows);
  check_train("text/one_long_record (padding)", text_data(padded, kGood + "/tokenizer"), kTextModel,
              padded);
}

TEST_CASE("hostile: a damaged token cache is rebuilt with a warning, not an error",
          "[hostile][cache]") {
  const std::string dir = tmp_root() + "/token_cache";
  fs::remove_all(dir);
  fs::create_directories(dir);
  fs::copy_file(kGood + "/train.jsonl", dir + "/train.jsonl");
  fs::copy(kGood + "/tokenizer", dir + "/tokenizer");
  // A second tokenizer: the same vocabulary, ids in another order.
  fs::create_directories(dir + "/other");
  std::string other = slurp(dir + "/tokenizer/tokenizer.json");
  other.replace(other.find("\"the\": 2"), 8, "\"the\": 10");
  other.replace(other.find("\"far\": 10"), 9, "\"far\": 2");
  write(dir + "/other/tokenizer.json", other);
  auto run = [&](const std::string& tokenizer, const std::string& tag) {
    const std::string cfg = dir + "/run-" + tag + ".yaml";
    write(cfg, "run: {name: cache, output_dir: " + dir + "/run-" + tag +
                   ", device: cpu}\n"
                   "data: {name: text, file: " +
                   dir + "/train.jsonl, tokenizer: " + dir + "/" + tokenizer +
                   ", batch_size: 2, pad_id: 0}\nmodel: " + kTextModel +
                   "\noptimizer: {name: sgd, lr: 0.1}\ntrainer: {max_steps: 1}\n");
    Outcome o = run_once({SCULPT_BIN, "train", cfg, "--log-level", "info"});
    INFO(tag << ": " << o.err.substr(0, 3000));
    CHECK(o.exit_code == 0);
    return o.err;
  };
  auto cache_of = [&](const std::string& except = "") {
    for (const auto& e : fs::directory_iterator(dir))
      if (e.path().string().find(".sculpt-tok-") != std::string::npos && e.path() != except)
        return e.path().string();
    return std::string();
  };
  CHECK(run("tokenizer", "first").find("data: tokenized") != std::string::npos);
  const std::string cache = cache_of();
  REQUIRE(!cache.empty());
  const std::string good = slurp(cache);
  CHECK(run("tokenizer", "hit").find("from the token cache " + cache) != std::string::npos);
  auto rebuilt = [&](const std::string& tag, const std::string& why) {
    const std::string err = run("tokenizer", tag);
    CHECK(err.find("token cache " + cache + " is not used: " + why) != std::string::npos);
    CHECK(err.find("data: tokenized") != std::string::npos);
  };
  fs::resize_file(cache, good.size() / 2);
  rebuilt("truncated", "it is truncated");
  write(cache, "not a cache at all, just some bytes in its place");
  rebuilt("garbage", "it is not a Sculpt token cache");
  // A header that claims longer rows than the file holds (rows are padded to it).
  std::string lie = good;
  const size_t at = lie.find("\"longest\":") + 10;
  lie[at] = lie[at] == '9' ? '8' : '9';
  write(cache, lie);
  rebuilt("longest", "its ids are damaged");
  // The cache another tokenizer wrote, under this tokenizer's name.
  run("other", "other");
  const std::string other_cache = cache_of(cache);
  REQUIRE(!other_cache.empty());
  fs::copy_file(other_cache, cache, fs::copy_options::overwrite_existing);
  rebuilt("swapped", "it was written by another tokenizer");
}

TEST_CASE("hostile: plugins (not a shared library, no entry point, wrong API version)",
          "[hostile]") {
  const std::string quickstart = std::string(SCULPT_SOURCE_DIR) + "/configs/quickstart.yaml";
  std::vector<std::string> files;
  for (const auto& f : cases("plugins")) files.push_back(f.string());
  files.push_back(SCULPT_TEST_NO_REGISTER_PLUGIN);  // a real .so without the register function
  files.push_back(SCULPT_TEST_WRONG_VERSION_PLUGIN);
  const std::string folder = tmp_root() + "/a_folder.so";
  fs::create_directories(folder);
  files.push_back(folder);
  files.push_back(tmp_root() + "/no_such_plugin.so");
  for (const auto& f : files)
    check_case("plugins/" + fs::path(f).filename().string(),
               {SCULPT_BIN, "validate", quickstart, "--plugin", f}, f);
}

TEST_CASE("hostile: Hugging Face checkpoints (config.json, weights, index)", "[hostile]") {
  for (const auto& d : cases("hf"))
    check_train("hf/" + d.filename().string(),
                "{name: synthetic_images, samples: 64, size: 8, batch_size: 8}",
                "{name: hf, path: " + d.string() + "}", d.string());
}

TEST_CASE("hostile: a truncated newest checkpoint is skipped for the previous valid one",
          "[hostile][checkpoint]") {
  const std::string dir = tmp_root() + "/checkpoint";
  fs::remove_all(dir);
  write(dir + "/run.yaml",
        "run: {name: ckpt, output_dir: " + dir + "/run, device: cpu, seed: 0}\n"
        "data: {name: synthetic_images, samples: 256, size: 16, channels: 1, classes: 4, "
        "batch_size: 32, val_fraction: 0.25}\n"
        "model: {name: lenet5}\noptimizer: {name: sgd, lr: 0.05}\n"
        "trainer: {epochs: 2, checkpoint_every: 3, keep_checkpoints: 5, log_every: 1}\n");
  Outcome first = run_once({SCULPT_BIN, "train", dir + "/run.yaml"});
  INFO(first.err.substr(0, 3000));
  REQUIRE(first.exit_code == 0);
  const fs::path ckpts = fs::path(dir) / "run" / "checkpoints";
  const std::string newest = slurp((ckpts / "latest").string()).substr(0, slurp((ckpts / "latest").string()).find('\n'));
  REQUIRE(fs::exists(ckpts / newest / "manifest.json"));
  // Cut the newest checkpoint's weights in half, as a crash or a full disk might.
  const fs::path weights = ckpts / newest / "model.safetensors";
  fs::resize_file(weights, fs::file_size(weights) / 2);
  Outcome resumed = run_once({SCULPT_BIN, "train", dir + "/run.yaml", "run.resume=auto"});
  INFO(resumed.err.substr(0, 3000));
  CHECK(resumed.exit_code == 0);
  CHECK(resumed.err.find("corrupt or partial") != std::string::npos);
  CHECK(resumed.err.find((ckpts / newest).string()) != std::string::npos);  // names both
  CHECK(resumed.err.find("resuming from " + ckpts.string() + "/step_") != std::string::npos);
  // An explicitly named corrupt checkpoint is refused, naming the file.
  fs::resize_file(weights, fs::file_size(weights) / 2);
  Outcome named = run_once({SCULPT_BIN, "train", dir + "/run.yaml",
                            "run.resume=" + (ckpts / newest).string()});
  INFO(named.err.substr(0, 3000));
  CHECK(named.exit_code == 2);
  CHECK(named.err.find("model.safetensors") != std::string::npos);
}
