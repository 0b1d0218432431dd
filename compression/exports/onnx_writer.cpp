// See onnx_writer.h: the only translation unit that sees protobuf.
#include "compression/exports/onnx_writer.h"

#include <cstring>
#include <fstream>
#include <stdexcept>

#include <onnx/onnx_pb.h>  // Debian libonnx-dev: onnx/onnx-ml.pb.h under ONNX_ML (libonnx_proto)

namespace sculpt::onnxw {

namespace {

void set_value(onnx::ValueInfoProto* v, const Value& in) {
  v->set_name(in.name);
  auto* t = v->mutable_type()->mutable_tensor_type();
  t->set_elem_type(in.dtype);
  auto* shape = t->mutable_shape();
  for (const auto& d : in.dims) {
    auto* dim = shape->add_dim();
    if (!d.empty() && d.find_first_not_of("0123456789") == std::string::npos)
      dim->set_dim_value(std::stoll(d));
    else
      dim->set_dim_param(d);
  }
}

}  // namespace

int64_t write_onnx_model(Graph& g, const std::string& path) {
  GOOGLE_PROTOBUF_VERIFY_VERSION;
  onnx::ModelProto model;
  model.set_ir_version(8);  // ONNX 1.10+; opset 17 needs IR >= 8
  model.set_producer_name("sculpt");
  model.set_producer_version(g.producer_version);
  model.set_doc_string(g.doc);
  auto* op = model.add_opset_import();
  op->set_domain("");
  op->set_version(g.opset);
  for (const auto& [k, v] : g.metadata) {
    auto* p = model.add_metadata_props();
    p->set_key(k);
    p->set_value(v);
  }
  auto* graph = model.mutable_graph();
  graph->set_name(g.name);
  for (const auto& n : g.nodes) {
    auto* node = graph->add_node();
    node->set_op_type(n.op);
    if (!n.name.empty()) node->set_name(n.name);
    if (!n.domain.empty()) node->set_domain(n.domain);
    for (const auto& i : n.inputs) node->add_input(i);
    for (const auto& o : n.outputs) node->add_output(o);
    for (const auto& a : n.attrs) {
      auto* attr = node->add_attribute();
      attr->set_name(a.name);
      switch (a.kind) {
        case Attr::kInt:
          attr->set_type(onnx::AttributeProto::INT);
          attr->set_i(a.i);
          break;
        case Attr::kFloatAttr:
          attr->set_type(onnx::AttributeProto::FLOAT);
          attr->set_f(a.f);
          break;
        case Attr::kString:
          attr->set_type(onnx::AttributeProto::STRING);
          attr->set_s(a.s);
          break;
        case Attr::kInts:
          attr->set_type(onnx::AttributeProto::INTS);
          for (auto v : a.ints) attr->add_ints(v);
          break;
        case Attr::kFloats:
          attr->set_type(onnx::AttributeProto::FLOATS);
          for (auto v : a.floats) attr->add_floats(v);
          break;
      }
    }
  }
  for (auto& in : g.initializers) {
    auto* t = graph->add_initializer();
    t->set_name(in.name);
    t->set_data_type(in.dtype);
    for (auto d : in.dims) t->add_dims(d);
    t->set_raw_data(std::move(in.raw));
    in.raw.clear();
  }
  for (const auto& v : g.inputs) set_value(graph->add_input(), v);
  for (const auto& v : g.outputs) set_value(graph->add_output(), v);
  const size_t bytes = model.ByteSizeLong();
  if (bytes > static_cast<size_t>(INT32_MAX))
    throw std::runtime_error("the model is " + std::to_string(bytes) +
                             " bytes; a single ONNX protobuf file holds at most 2 GB");
  std::ofstream f(path, std::ios::binary | std::ios::trunc);
  if (!f) throw std::runtime_error("cannot write " + path);
  if (!model.SerializeToOstream(&f)) throw std::runtime_error("protobuf could not serialize " + path);
  f.close();
  if (!f) throw std::runtime_error("writing " + path + " failed");
  return static_cast<int64_t>(bytes);
}

}  // namespace sculpt::onnxw

extern "C" int64_t sculpt_onnx_write(void* graph, const char* path, char* error, size_t error_size) {
  try {
    return sculpt::onnxw::write_onnx_model(*static_cast<sculpt::onnxw::Graph*>(graph), path);
  } catch (const std::exception& e) {
    if (error_size > 0) {
      std::strncpy(error, e.what(), error_size - 1);
      error[error_size - 1] = 0;
    }
    return -1;
  }
}
