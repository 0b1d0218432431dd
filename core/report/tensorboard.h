// TensorBoard scalar event files, written without TensorFlow or protobuf.
// A file is a sequence of TFRecords: uint64 little-endian length, uint32 masked CRC32C of those
// 8 bytes, the data, uint32 masked CRC32C of the data. Each record holds one `Event` protobuf
// (tensorflow/core/util/event.proto), hand-encoded:
//   Event   { double wall_time = 1; int64 step = 2; string file_version = 3; Summary summary = 5; }
//   Summary { repeated Value value = 1; }   Value { string tag = 1; float simple_value = 2; }
// CRC32C is Castagnoli's (reflected polynomial 0x82F63B78); mask(c) = ((c >> 15) | (c << 17))
// + 0xa282ead8, as TFRecord defines it.
#pragma once

#include <cstdint>
#include <cstdio>
#include <string>
#include <string_view>
#include <vector>

namespace sculpt::report {

uint32_t crc32c(std::string_view data);
// TFRecord's masked CRC: a CRC of data that itself contains CRCs stays well distributed.
uint32_t mask_crc32c(uint32_t crc);

// Seconds since the Unix epoch, with sub-second precision (TensorBoard's wall_time).
double unix_time_now();

// Appends scalar events to <log_dir>/events.out.tfevents.<unix seconds>.<hostname>.<pid>.sculpt,
// one file per writer (TensorBoard reads every file in the folder, so a resumed run simply adds
// one). Not thread-safe. Write errors throw std::runtime_error naming the file.
class EventWriter {
 public:
  // Creates log_dir if needed, opens the file and writes the `brain.Event:2` version event.
  explicit EventWriter(const std::string& log_dir);
  ~EventWriter();  // flushes and closes; errors there are swallowed (use close() to see them)
  EventWriter(const EventWriter&) = delete;
  EventWriter& operator=(const EventWriter&) = delete;

  // One Event with a Summary of one Value{tag, simple_value}; `value` is stored as float32.
  void add_scalar(const std::string& tag, double value, int64_t step,
                  double wall_time = unix_time_now());
  // Hands buffered events to the OS, so that a running TensorBoard sees them.
  void flush();
  // Flushes and closes; later calls to add_scalar throw. Idempotent.
  void close();

  const std::string& path() const { return path_; }

 private:
  void write_event(const std::string& event);

  std::string path_;
  std::FILE* file_ = nullptr;
};

// One decoded Event; the reader keeps only the fields the writer writes.
struct EventRecord {
  struct Value {
    std::string tag;
    float simple_value = 0;
  };
  double wall_time = 0;
  int64_t step = 0;
  std::string file_version;   // set on a file's first event only
  std::vector<Value> values;  // the summary's values with a simple_value
};

// Reads every event of one file, checking both CRCs of each record. Throws std::runtime_error
// naming the file and the byte offset on a CRC mismatch, a truncated record or a bad message.
std::vector<EventRecord> read_event_file(const std::string& path);

}  // namespace sculpt::report
