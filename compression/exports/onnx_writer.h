// The ONNX file writer of `sculpt export --format onnx` (onnx_export.h): Debian's ONNX protobuf
// classes (libonnx-dev's onnx/onnx-ml.pb.h and libonnx_proto, namespace onnx) on Debian's
// libprotobuf, in a shared library of its own (libsculpt_onnx_writer.so) built without LibTorch's
// headers and never linked: the exporter loads it with dlopen(RTLD_NOW | RTLD_LOCAL |
// RTLD_DEEPBIND) when an ONNX file is written. Other libraries of the process export protobuf
// symbols of their own (libsentencepiece.so.0 bundles protobuf-lite; LibTorch bundles a protobuf
// but hides it), and a libprotobuf.so.32 loaded at start-up binds some of its calls to them and
// crashes in its static initializers; under RTLD_DEEPBIND the writer, libonnx_proto and
// libprotobuf resolve among themselves first. The interface uses plain C++ types only (no torch,
// no protobuf); the one exported entry is the C function sculpt_onnx_write.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#define SCULPT_ONNXW_API __attribute__((visibility("default")))

namespace sculpt::onnxw {

// TensorProto.DataType values.
enum DType : int { kFloat = 1, kUint8 = 2, kInt8 = 3, kInt32 = 6, kInt64 = 7, kBool = 9 };

struct Attr {
  enum Kind { kInt, kFloatAttr, kString, kInts, kFloats } kind = kInt;
  std::string name;
  int64_t i = 0;
  float f = 0;
  std::string s;
  std::vector<int64_t> ints;
  std::vector<float> floats;
};

struct Node {
  std::string op, name, domain;
  std::vector<std::string> inputs, outputs;
  std::vector<Attr> attrs;
};

struct Initializer {
  std::string name;
  int dtype = kFloat;
  std::vector<int64_t> dims;
  std::string raw;  // little-endian element bytes (moved into the file)
};

// A graph input or output: each dim a number ("28") or a symbolic name ("batch").
struct Value {
  std::string name;
  int dtype = kFloat;
  std::vector<std::string> dims;
};

struct Graph {
  std::string name = "sculpt", producer_version, doc;
  int64_t opset = 17;
  std::vector<Node> nodes;
  std::vector<Initializer> initializers;
  std::vector<Value> inputs, outputs;
  std::map<std::string, std::string> metadata;  // ModelProto.metadata_props
};

// Builds the ModelProto (IR version 8) and writes it to `path`; the initializers' bytes are
// moved out of `g`. Returns the file's size in bytes. Throws std::runtime_error on failure.
int64_t write_onnx_model(Graph& g, const std::string& path);

}  // namespace sculpt::onnxw

// The entry dlsym finds: write_onnx_model on a sculpt::onnxw::Graph; the file size, or -1 with
// the reason in `error` (no exception crosses the library boundary).
extern "C" SCULPT_ONNXW_API int64_t sculpt_onnx_write(void* graph, const char* path, char* error,
                                                      size_t error_size);
