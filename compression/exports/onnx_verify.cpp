// The ONNX Runtime check of `sculpt export --format onnx` (onnx_export.h): onnx.checker and ONNX
// Runtime in the venv's Python, started in the background when the export starts (its imports
// take a second or more) and given the model once it is written, so that it runs while Sculpt
// builds its reference outputs (the integer model, for a quantized run); the outputs are
// compared here.
#include <ATen/ATen.h>

#include <fcntl.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <csignal>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <sstream>

#include "compression/exports/onnx_export.h"
#include "core/error.h"
#include "core/io/atomic_file.h"

extern char** environ;

namespace sculpt::compression {

namespace fs = std::filesystem;

std::string verify_python() {
  std::vector<std::string> candidates;
  if (const char* p = std::getenv("SCULPT_PYTHON"); p && *p) candidates.push_back(p);
  if (const char* d = std::getenv("SCULPT_DEPS_DIR"); d && *d) candidates.push_back(std::string(d) + "/venv/bin/python");
  if (const char* x = std::getenv("XDG_CACHE_HOME"); x && *x) candidates.push_back(std::string(x) + "/sculpt/venv/bin/python");
  if (const char* h = std::getenv("HOME"); h && *h) candidates.push_back(std::string(h) + "/.cache/sculpt/venv/bin/python");
  for (const auto& c : candidates)
    if (fs::exists(c)) return c;
  return "";
}

namespace {

// argv: the request file to wait for, the exporting process's id. The imports run while the
// export is being written; the request ({"model", "data", "names", "out"}) says what to check:
// onnx.checker on the model, then ONNX Runtime on the inputs of `data` (safetensors,
// "in.<name>"), its logits saved to `out`. Exits if the exporting process goes away first.
const char* kCheckScript = R"PY(
import json, os, sys, time
try:
    import numpy as np
    import onnx
    import onnxruntime as ort
    from safetensors.numpy import load_file, save_file
except ImportError as e:
    print(json.dumps({"missing": str(e)}))
    sys.exit(3)
request, parent = sys.argv[1], int(sys.argv[2])
while not os.path.exists(request):
    try:
        os.kill(parent, 0)
    except OSError:
        sys.exit(5)
    time.sleep(0.01)
r = json.load(open(request))
onnx.checker.check_model(r["model"], full_check=True)
d = load_file(r["data"])
so = ort.SessionOptions()
so.intra_op_num_threads = 2
so.add_session_config_entry("session.intra_op.allow_spinning", "0")  # a busy machine: no spinning
so.add_session_config_entry("session.disable_prepacking", "1")       # one run: not worth packing
sess = ort.InferenceSession(r["model"], so, providers=["CPUExecutionProvider"])
logits = sess.run(["logits"], {n: d["in." + n] for n in r["names"]})[0]
save_file({"logits": np.ascontiguousarray(logits.astype(np.float32))}, r["out"])
print(json.dumps({"checker": "ok", "onnxruntime": ort.__version__, "onnx": onnx.__version__}))
)PY";

}  // namespace

OnnxCheck start_onnx_check(const fs::path& scratch) {
  OnnxCheck c;
  c.python = verify_python();
  SCULPT_CHECK(!c.python.empty(), "export onnx: the verification needs Python with onnx and onnxruntime and "
               "none was found (set SCULPT_PYTHON, or run scripts/setup.sh for the venv); --no-verify "
               "skips the check");
  fs::create_directories(scratch);
  const fs::path script = scratch / "check_onnx.py";
  c.scratch = scratch;
  c.outputs = scratch / "outputs.safetensors";
  c.log = scratch / "check.log";
  io::write_file_atomic(script.string(), kCheckScript);
  // Python itself, its arguments as they are (no shell), its output into check.log; a process
  // group of its own, so that abandon_onnx_check stops it and anything it started
  const std::string script_s = script.string(), request = (scratch / "request.json").string(),
                    parent = std::to_string(::getpid()), log = c.log.string();
  const char* argv[] = {c.python.c_str(), script_s.c_str(), request.c_str(), parent.c_str(), nullptr};
  posix_spawn_file_actions_t files;
  posix_spawn_file_actions_init(&files);
  posix_spawn_file_actions_addopen(&files, STDOUT_FILENO, log.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
  posix_spawn_file_actions_adddup2(&files, STDOUT_FILENO, STDERR_FILENO);
  posix_spawnattr_t attr;
  posix_spawnattr_init(&attr);
  posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETPGROUP);
  posix_spawnattr_setpgroup(&attr, 0);
  pid_t pid = -1;
  const int err = posix_spawnp(&pid, c.python.c_str(), &files, &attr, const_cast<char* const*>(argv), environ);
  posix_spawnattr_destroy(&attr);
  posix_spawn_file_actions_destroy(&files);
  if (err != 0) throw std::runtime_error("export onnx: cannot start " + c.python + ": " + std::strerror(err));
  c.pid = pid;
  return c;
}

void submit_onnx_check(OnnxCheck& c, const fs::path& model, const io::NamedTensors& feeds) {
  const fs::path data = c.scratch / "check.safetensors";
  io::NamedTensors d;
  nlohmann::json names = nlohmann::json::array();
  for (const auto& [n, t] : feeds) {
    d.emplace_back("in." + n, t.contiguous());
    names.push_back(n);
  }
  io::save_safetensors(data.string(), d);
  const nlohmann::json request = {
      {"model", model.string()}, {"data", data.string()}, {"names", names}, {"out", c.outputs.string()}};
  io::write_file_atomic((c.scratch / "request.json").string(), request.dump());  // renamed into place
}

nlohmann::json finish_onnx_check(OnnxCheck& c, const at::Tensor& expected) {
  SCULPT_ASSERT(c.pid > 0, "finish_onnx_check without a started check");
  int status = -1;
  while (waitpid(c.pid, &status, 0) < 0 && errno == EINTR) {
  }
  c.pid = -1;
  std::string output;
  {
    std::ifstream f(c.log);
    std::stringstream ss;
    ss << f.rdbuf();
    output = ss.str();
  }
  const int code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  nlohmann::json result;
  const auto last = output.find_last_of('{');
  if (last != std::string::npos) result = nlohmann::json::parse(output.substr(last), nullptr, false);
  if (code == 3)
    throw UserError("export onnx: the verification needs onnx and onnxruntime in " + c.python + " (" +
                    (result.is_object() ? result.value("missing", std::string()) : output) +
                    "); pip install onnx onnxruntime, or --no-verify skips the check");
  if (code != 0 || !result.is_object() || !fs::exists(c.outputs))
    throw std::runtime_error("export onnx: verification failed: onnx.checker or ONNX Runtime (" + c.python +
                             ") rejected the model:\n" + output);
  at::Tensor out;
  for (auto& [n, t] : io::load_safetensors(c.outputs.string()))
    if (n == "logits") out = t;
  const at::Tensor ref = expected.to(at::kFloat);
  if (!out.defined() || out.sizes() != ref.sizes())
    throw std::runtime_error("export onnx: verification failed: ONNX Runtime's logits have shape " +
                             (out.defined() ? c10::str(out.sizes()) : std::string("(none)")) +
                             ", Sculpt's " + c10::str(ref.sizes()));
  result["max_abs_diff"] = (out - ref).abs().max().item<double>();
  result["argmax_agreement"] = out.argmax(-1).eq(ref.argmax(-1)).to(at::kFloat).mean().item<double>();
  result["rows"] = out.size(0);
  result["python"] = c.python;
  return result;
}

void abandon_onnx_check(OnnxCheck& c) {
  if (c.pid <= 0) return;
  ::kill(-c.pid, SIGTERM);  // its process group
  int status = 0;
  waitpid(c.pid, &status, 0);
  c.pid = -1;
}

nlohmann::json run_onnx_check(const fs::path& model, const io::NamedTensors& feeds, const at::Tensor& expected,
                              const fs::path& scratch) {
  OnnxCheck c = start_onnx_check(scratch);
  try {
    submit_onnx_check(c, model, feeds);
    return finish_onnx_check(c, expected);
  } catch (...) {
    abandon_onnx_check(c);
    throw;
  }
}

}  // namespace sculpt::compression
