// TensorBoard event files: CRC32C, TFRecord framing and the hand-encoded Event protobufs.
#include <catch2/catch.hpp>

#include <unistd.h>

#include <cstdint>
#include <filesystem>
#include <stdexcept>
#include <string>
#include <vector>

#include "core/report/tensorboard.h"
#include "tests/support/process.h"

using sculpt::report::crc32c;
using sculpt::report::EventRecord;
using sculpt::report::EventWriter;
using sculpt::report::mask_crc32c;
using sculpt::report::read_event_file;

namespace {

std::vector<std::string> event_files(const std::string& dir) {
  std::vector<std::string> files;
  for (const auto& entry : std::filesystem::directory_iterator(dir))
    if (entry.path().filename().string().find("tfevents") != std::string::npos)
      files.push_back(entry.path().string());
  return files;
}

// A file with the version event and two scalars; returns its path.
std::string write_small_file(const std::string& dir) {
  EventWriter writer(dir);
  writer.add_scalar("train/loss", 0.5, 1, 1700000000.0);
  writer.add_scalar("train/loss", 0.25, 2, 1700000001.0);
  return writer.path();
}

}  // namespace

TEST_CASE("tensorboard: crc32c matches the Castagnoli check values", "[report]") {
  CHECK(crc32c("123456789") == 0xE3069283u);
  CHECK(crc32c(std::string(32, '\0')) == 0x8A9136AAu);
  CHECK(crc32c("") == 0u);
}

TEST_CASE("tensorboard: masked crc rotates right by 15 and adds 0xa282ead8", "[report]") {
  for (uint32_t c : {0u, 1u, 0xE3069283u, 0xFFFFFFFFu, 0x12345678u})
    CHECK(mask_crc32c(c) == static_cast<uint32_t>(((c >> 15) | (c << 17)) + 0xa282ead8u));
  // Values computed independently in Python.
  CHECK(mask_crc32c(0u) == 0xa282ead8u);
  CHECK(mask_crc32c(0xE3069283u) == 0xc78ab0e5u);
  CHECK(mask_crc32c(0xFFFFFFFFu) == 0xa282ead7u);
}

TEST_CASE("tensorboard: a written file reads back as the exact events", "[report]") {
  const std::string dir = sculpt::test::temp_dir("tb") + "/logs/nested";  // created by the writer
  struct Scalar {
    std::string tag;
    double value;
    int64_t step;
    double wall_time;
  };
  const std::vector<Scalar> scalars = {
      {"train/loss", 2.302585092994046, 0, 1700000000.125},
      {"train/loss", 0.1, 1, 1700000000.5},  // not a float32: stored rounded
      {"train/lr", 1e-3, 1, 1700000000.75},
      {"val/accuracy", -2.5, int64_t{1} << 40, 1700000123.0},
      {"a tag with spaces/and-ünïcode", 1e30, -1, 0.0},  // a negative step is ten varint bytes
  };
  std::string path;
  const double before = sculpt::report::unix_time_now();
  {
    EventWriter writer(dir);
    path = writer.path();
    for (const auto& s : scalars) writer.add_scalar(s.tag, s.value, s.step, s.wall_time);
  }  // the destructor flushes and closes

  const std::string name = std::filesystem::path(path).filename().string();
  CHECK(std::filesystem::path(path).parent_path() == std::filesystem::path(dir));
  CHECK(name.rfind("events.out.tfevents.", 0) == 0);
  CHECK(name.find("." + std::to_string(::getpid()) + ".sculpt") != std::string::npos);

  const std::vector<EventRecord> events = read_event_file(path);
  REQUIRE(events.size() == scalars.size() + 1);
  CHECK(events[0].file_version == "brain.Event:2");
  CHECK(events[0].values.empty());
  CHECK(events[0].wall_time >= before - 1);
  CHECK(events[0].wall_time <= sculpt::report::unix_time_now() + 1);
  for (size_t i = 0; i < scalars.size(); ++i) {
    INFO("scalar " << i);
    const EventRecord& e = events[i + 1];
    CHECK(e.file_version.empty());
    CHECK(e.wall_time == scalars[i].wall_time);
    CHECK(e.step == scalars[i].step);
    REQUIRE(e.values.size() == 1);
    CHECK(e.values[0].tag == scalars[i].tag);
    CHECK(e.values[0].simple_value == static_cast<float>(scalars[i].value));
  }
}

TEST_CASE("tensorboard: flush makes events readable while the writer is open", "[report]") {
  const std::string dir = sculpt::test::temp_dir("tb");
  EventWriter writer(dir);
  writer.add_scalar("x", 3.0, 7);
  writer.flush();
  const auto events = read_event_file(writer.path());
  REQUIRE(events.size() == 2);
  CHECK(events[1].step == 7);
  CHECK(events[1].values.at(0).simple_value == 3.0f);
}

TEST_CASE("tensorboard: a second writer in the same folder adds its events", "[report]") {
  const std::string dir = sculpt::test::temp_dir("tb");
  write_small_file(dir);
  write_small_file(dir);  // same name when within the same second: appended, one version event
  size_t versions = 0, scalars = 0;
  for (const auto& file : event_files(dir)) {
    const auto events = read_event_file(file);
    REQUIRE(!events.empty());
    CHECK(events.front().file_version == "brain.Event:2");
    for (const auto& e : events) {
      versions += e.file_version.empty() ? 0 : 1;
      scalars += e.values.size();
    }
  }
  CHECK(versions == event_files(dir).size());
  CHECK(scalars == 4);
}

TEST_CASE("tensorboard: the reader detects a corrupted or truncated record", "[report]") {
  const std::string dir = sculpt::test::temp_dir("tb");
  const std::string path = write_small_file(dir);
  const std::string good = sculpt::test::read_text(path);
  REQUIRE(read_event_file(path).size() == 3);

  auto with_byte_flipped = [&](size_t at) {
    std::string bad = good;
    bad.at(at) = static_cast<char>(bad.at(at) ^ 0x01);
    sculpt::test::write_text(path, bad);
  };
  with_byte_flipped(2);  // the first record's length
  CHECK_THROWS_WITH(read_event_file(path),
                    Catch::Contains(path) && Catch::Contains("byte 0: length CRC mismatch"));
  with_byte_flipped(good.size() - 10);  // inside the last record's data
  CHECK_THROWS_WITH(read_event_file(path), Catch::Contains("data CRC mismatch"));
  with_byte_flipped(good.size() - 1);  // the last record's data CRC
  CHECK_THROWS_WITH(read_event_file(path), Catch::Contains("data CRC mismatch"));
  sculpt::test::write_text(path, good.substr(0, good.size() - 3));
  CHECK_THROWS_WITH(read_event_file(path), Catch::Contains("truncated data"));
}

TEST_CASE("tensorboard: errors name the folder or the file", "[report]") {
  const std::string dir = sculpt::test::temp_dir("tb");
  sculpt::test::write_text(dir + "/plain_file", "x");
  CHECK_THROWS_WITH(EventWriter(dir + "/plain_file/logs"),
                    Catch::Contains("cannot create folder " + dir + "/plain_file/logs"));
  EventWriter writer(dir);
  writer.close();
  writer.close();  // idempotent
  CHECK_THROWS_WITH(writer.add_scalar("x", 1.0, 0),
                    Catch::Contains(writer.path()) && Catch::Contains("closed"));
}
