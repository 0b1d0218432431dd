#include "core/report/tensorboard.h"

#include <unistd.h>

#include <array>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <stdexcept>
#include <system_error>

namespace sculpt::report {

namespace {

// Protobuf wire types (https://protobuf.dev/programming-guides/encoding/).
constexpr uint32_t kVarint = 0, kFixed64 = 1, kLengthDelimited = 2, kFixed32 = 5;

// Field numbers of event.proto and summary.proto.
constexpr uint32_t kEventWallTime = 1, kEventStep = 2, kEventFileVersion = 3, kEventSummary = 5;
constexpr uint32_t kSummaryValue = 1;
constexpr uint32_t kValueTag = 1, kValueSimpleValue = 2;

constexpr char kFileVersion[] = "brain.Event:2";

constexpr std::array<uint32_t, 256> make_crc32c_table() {
  std::array<uint32_t, 256> table{};
  for (uint32_t i = 0; i < 256; ++i) {
    uint32_t c = i;
    for (int bit = 0; bit < 8; ++bit) c = (c & 1) ? (c >> 1) ^ 0x82F63B78u : c >> 1;
    table[i] = c;
  }
  return table;
}
constexpr std::array<uint32_t, 256> kCrc32cTable = make_crc32c_table();

// --- encoding ---------------------------------------------------------------------------------

void put_varint(std::string& out, uint64_t v) {
  while (v >= 0x80) {
    out += static_cast<char>((v & 0x7f) | 0x80);
    v >>= 7;
  }
  out += static_cast<char>(v);
}

void put_little_endian(std::string& out, uint64_t v, int bytes) {
  for (int i = 0; i < bytes; ++i) out += static_cast<char>((v >> (8 * i)) & 0xff);
}

void put_key(std::string& out, uint32_t field, uint32_t wire_type) {
  put_varint(out, (field << 3) | wire_type);
}

void put_bytes(std::string& out, uint32_t field, std::string_view bytes) {
  put_key(out, field, kLengthDelimited);
  put_varint(out, bytes.size());
  out.append(bytes);
}

void put_double(std::string& out, uint32_t field, double v) {
  uint64_t bits = 0;
  std::memcpy(&bits, &v, sizeof bits);
  put_key(out, field, kFixed64);
  put_little_endian(out, bits, 8);
}

void put_float(std::string& out, uint32_t field, float v) {
  uint32_t bits = 0;
  std::memcpy(&bits, &v, sizeof bits);
  put_key(out, field, kFixed32);
  put_little_endian(out, bits, 4);
}

// --- decoding ---------------------------------------------------------------------------------

// Reads protobuf fields from a byte range; throws std::runtime_error on malformed input.
class WireReader {
 public:
  explicit WireReader(std::string_view data) : data_(data) {}
  bool done() const { return pos_ == data_.size(); }

  uint64_t varint() {
    uint64_t v = 0;
    for (int shift = 0; shift < 64; shift += 7) {
      const auto byte = static_cast<uint8_t>(take(1)[0]);
      v |= static_cast<uint64_t>(byte & 0x7f) << shift;
      if (!(byte & 0x80)) return v;
    }
    throw std::runtime_error("varint longer than 10 bytes");
  }
  uint64_t little_endian(int bytes) {
    std::string_view b = take(static_cast<size_t>(bytes));
    uint64_t v = 0;
    for (int i = 0; i < bytes; ++i)
      v |= static_cast<uint64_t>(static_cast<uint8_t>(b[i])) << (8 * i);
    return v;
  }
  std::string_view bytes() { return take(varint()); }
  void skip(uint32_t wire_type) {
    switch (wire_type) {
      case kVarint:
        varint();
        break;
      case kFixed64:
        take(8);
        break;
      case kLengthDelimited:
        bytes();
        break;
      case kFixed32:
        take(4);
        break;
      default:
        throw std::runtime_error("unsupported protobuf wire type " + std::to_string(wire_type));
    }
  }

 private:
  std::string_view take(uint64_t n) {
    if (n > data_.size() - pos_) throw std::runtime_error("protobuf field runs past its message");
    std::string_view out = data_.substr(pos_, n);
    pos_ += n;
    return out;
  }

  std::string_view data_;
  size_t pos_ = 0;
};

double double_from_bits(uint64_t bits) {
  double v = 0;
  std::memcpy(&v, &bits, sizeof v);
  return v;
}

float float_from_bits(uint32_t bits) {
  float v = 0;
  std::memcpy(&v, &bits, sizeof v);
  return v;
}

// Throws when a known field arrives with another wire type than its .proto declares.
void expect_wire_type(uint32_t got, uint32_t expected, uint32_t field) {
  if (got != expected)
    throw std::runtime_error("field " + std::to_string(field) + " has wire type " +
                             std::to_string(got) + ", expected " + std::to_string(expected));
}

void decode_summary(std::string_view data, std::vector<EventRecord::Value>& values) {
  WireReader summary(data);
  while (!summary.done()) {
    const uint64_t key = summary.varint();
    const auto field = static_cast<uint32_t>(key >> 3), wire = static_cast<uint32_t>(key & 7);
    if (field != kSummaryValue) {
      summary.skip(wire);
      continue;
    }
    expect_wire_type(wire, kLengthDelimited, field);
    WireReader value(summary.bytes());
    EventRecord::Value v;
    bool simple = false;
    while (!value.done()) {
      const uint64_t vkey = value.varint();
      const auto vfield = static_cast<uint32_t>(vkey >> 3), vwire = static_cast<uint32_t>(vkey & 7);
      if (vfield == kValueTag) {
        expect_wire_type(vwire, kLengthDelimited, vfield);
        v.tag = std::string(value.bytes());
      } else if (vfield == kValueSimpleValue) {
        expect_wire_type(vwire, kFixed32, vfield);
        v.simple_value = float_from_bits(static_cast<uint32_t>(value.little_endian(4)));
        simple = true;
      } else {
        value.skip(vwire);
      }
    }
    if (simple) values.push_back(std::move(v));
  }
}

EventRecord decode_event(std::string_view data) {
  EventRecord event;
  WireReader in(data);
  while (!in.done()) {
    const uint64_t key = in.varint();
    const auto field = static_cast<uint32_t>(key >> 3), wire = static_cast<uint32_t>(key & 7);
    switch (field) {
      case kEventWallTime:
        expect_wire_type(wire, kFixed64, field);
        event.wall_time = double_from_bits(in.little_endian(8));
        break;
      case kEventStep:
        expect_wire_type(wire, kVarint, field);
        event.step = static_cast<int64_t>(in.varint());
        break;
      case kEventFileVersion:
        expect_wire_type(wire, kLengthDelimited, field);
        event.file_version = std::string(in.bytes());
        break;
      case kEventSummary:
        expect_wire_type(wire, kLengthDelimited, field);
        decode_summary(in.bytes(), event.values);
        break;
      default:
        in.skip(wire);
    }
  }
  return event;
}

std::string host_name() {
  char buf[256] = {};
  if (::gethostname(buf, sizeof buf - 1) != 0 || buf[0] == '\0') return "localhost";
  std::string name(buf);
  for (char& c : name)
    if (c == '/') c = '_';
  return name;
}

[[noreturn]] void fail(const std::string& what, const std::string& path, int err) {
  throw std::runtime_error(what + " " + path + ": " + std::strerror(err));
}

}  // namespace

uint32_t crc32c(std::string_view data) {
  uint32_t c = 0xFFFFFFFFu;
  for (char ch : data) c = kCrc32cTable[(c ^ static_cast<uint8_t>(ch)) & 0xff] ^ (c >> 8);
  return c ^ 0xFFFFFFFFu;
}

uint32_t mask_crc32c(uint32_t crc) {
  return ((crc >> 15) | (crc << 17)) + 0xa282ead8u;
}

double unix_time_now() {
  using namespace std::chrono;
  return duration<double>(system_clock::now().time_since_epoch()).count();
}

EventWriter::EventWriter(const std::string& log_dir) {
  namespace fs = std::filesystem;
  std::error_code ec;
  fs::create_directories(log_dir, ec);
  if (ec) throw std::runtime_error("cannot create folder " + log_dir + ": " + ec.message());
  const double now = unix_time_now();
  path_ = (fs::path(log_dir) / ("events.out.tfevents." + std::to_string(static_cast<int64_t>(now)) +
                                "." + host_name() + "." + std::to_string(::getpid()) + ".sculpt"))
              .string();
  file_ = std::fopen(path_.c_str(), "ab");
  if (!file_) fail("cannot open", path_, errno);
  // A file reopened within the same second by the same pid already has its version event.
  if (std::fseek(file_, 0, SEEK_END) != 0) fail("cannot seek in", path_, errno);
  if (std::ftell(file_) == 0) {
    std::string event;
    put_double(event, kEventWallTime, now);
    put_bytes(event, kEventFileVersion, kFileVersion);
    write_event(event);
  }
}

EventWriter::~EventWriter() {
  try {
    close();
  } catch (const std::exception&) {  // a destructor must not throw; close() reports the error
  }
}

void EventWriter::add_scalar(const std::string& tag, double value, int64_t step, double wall_time) {
  std::string summary_value;
  put_bytes(summary_value, kValueTag, tag);
  put_float(summary_value, kValueSimpleValue, static_cast<float>(value));
  std::string summary;
  put_bytes(summary, kSummaryValue, summary_value);
  std::string event;
  put_double(event, kEventWallTime, wall_time);
  put_key(event, kEventStep, kVarint);
  put_varint(event, static_cast<uint64_t>(step));  // negative steps: ten bytes, as protobuf does
  put_bytes(event, kEventSummary, summary);
  write_event(event);
}

void EventWriter::write_event(const std::string& event) {
  if (!file_) throw std::runtime_error("cannot write to " + path_ + ": the writer is closed");
  std::string record;
  record.reserve(event.size() + 16);
  put_little_endian(record, event.size(), 8);
  put_little_endian(record, mask_crc32c(crc32c(record)), 4);
  record += event;
  put_little_endian(record, mask_crc32c(crc32c(event)), 4);
  if (std::fwrite(record.data(), 1, record.size(), file_) != record.size())
    fail("cannot write", path_, errno);
}

void EventWriter::flush() {
  if (file_ && std::fflush(file_) != 0) fail("cannot write", path_, errno);
}

void EventWriter::close() {
  if (!file_) return;
  const int flushed = std::fflush(file_);
  const int flush_errno = errno;
  const int closed = std::fclose(file_);
  file_ = nullptr;
  if (flushed != 0) fail("cannot write", path_, flush_errno);
  if (closed != 0) fail("cannot close", path_, errno);
}

std::vector<EventRecord> read_event_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) fail("cannot open", path, errno);
  const std::string data((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  const std::string_view all(data);
  std::vector<EventRecord> events;
  size_t pos = 0;
  while (pos < all.size()) {
    const std::string where = path + ": record at byte " + std::to_string(pos) + ": ";
    if (all.size() - pos < 12) throw std::runtime_error(where + "truncated header");
    WireReader header(all.substr(pos, 12));
    const uint64_t length = header.little_endian(8);
    if (mask_crc32c(crc32c(all.substr(pos, 8))) != header.little_endian(4))
      throw std::runtime_error(where + "length CRC mismatch");
    if (all.size() - pos - 12 < length || all.size() - pos - 12 - length < 4)
      throw std::runtime_error(where + "truncated data (" + std::to_string(length) + " bytes)");
    const std::string_view body = all.substr(pos + 12, length);
    if (mask_crc32c(crc32c(body)) != WireReader(all.substr(pos + 12 + length, 4)).little_endian(4))
      throw std::runtime_error(where + "data CRC mismatch");
    try {
      events.push_back(decode_event(body));
    } catch (const std::runtime_error& e) {
      throw std::runtime_error(where + "bad Event message: " + e.what());
    }
    pos += 12 + length + 4;
  }
  return events;
}

}  // namespace sculpt::report
