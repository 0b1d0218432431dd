// Batch encoding of the tokenizer test corpus (tests/text/make_tokenizers.py) with Sculpt's
// tokenizers: median seconds of REPS passes over the corpus after one warm-up pass (which
// also fills the BPE word cache, as the Python libraries' own caches are filled by theirs).
// Prints one JSON line per tokenizer: {"name", "threads", "seconds", "lines_per_s", "mb_per_s"}.
// Usage: bench_tokenize FIXTURE_DIR THREADS REPS NAME...
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <string>
#include <vector>

#include "core/text/tokenizer.h"

int main(int argc, char** argv) {
  if (argc < 5) {
    std::fprintf(stderr, "usage: bench_tokenize FIXTURE_DIR THREADS REPS NAME...\n");
    return 2;
  }
  const std::string dir = argv[1];
  const int threads = std::atoi(argv[2]), reps = std::atoi(argv[3]);
  std::ifstream in(dir + "/corpus.txt", std::ios::binary);
  std::vector<std::string> lines;
  size_t bytes = 0;
  for (std::string l; std::getline(in, l);) bytes += l.size() + 1, lines.push_back(l);
  for (int a = 4; a < argc; ++a) {
    const auto tok = sculpt::text::load_tokenizer(dir + "/" + argv[a]);
    size_t total = 0;
    for (const auto& e : tok->encode_batch(lines, {}, threads)) total += e.ids.size();
    std::vector<double> secs;
    for (int r = 0; r < reps; ++r) {
      const auto t0 = std::chrono::steady_clock::now();
      const auto enc = tok->encode_batch(lines, {}, threads);
      secs.push_back(std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
      if (enc.size() != lines.size()) return 1;
    }
    std::sort(secs.begin(), secs.end());
    const double s = secs[secs.size() / 2];
    std::printf(
        "{\"name\": \"%s\", \"threads\": %d, \"seconds\": %.5f, \"lines_per_s\": %.0f, "
        "\"mb_per_s\": %.3f, \"tokens\": %zu}\n",
        argv[a], threads, s, static_cast<double>(lines.size()) / s,
        static_cast<double>(bytes) / s / 1e6, total);
  }
  return 0;
}
