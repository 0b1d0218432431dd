"""Sculpt's safetensors files are read by Python's `safetensors`, and the other way round.

Usage: safetensors_interop.py SCULPT_BIN WORK_DIR. Exit 77 (skipped) when the package is absent.
"""
import json
import os
import subprocess
import sys

try:
    import torch
    from safetensors import safe_open
    from safetensors.torch import load_file, save_file
except ImportError as e:  # reported as skipped by ctest
    print(f"SKIPPED: {e}")
    sys.exit(77)

sculpt, work = sys.argv[1], sys.argv[2]
os.makedirs(work, exist_ok=True)
config = os.path.join(work, "run.yaml")
with open(config, "w") as f:
    f.write(f"""run: {{name: interop, output_dir: {work}/run, device: cpu, seed: 3}}
model: {{name: mlp, hidden: [12]}}
data: {{name: synthetic_blobs, samples: 200, features: 5, classes: 3}}
trainer: {{epochs: 1}}
""")
subprocess.run([sculpt, "train", config, "--log-level", "warn"], check=True)

# 1. Sculpt -> Python: names, shapes, dtypes and metadata as Sculpt wrote them.
path = os.path.join(work, "run", "model.safetensors")
tensors = load_file(path)
expected = {"hidden0.seq.0.weight": (12, 5), "hidden0.seq.0.bias": (12,),
            "head.seq.0.weight": (3, 12), "head.seq.0.bias": (3,)}
assert {k: tuple(v.shape) for k, v in tensors.items()} == expected, tensors.keys()
assert all(v.dtype == torch.float32 for v in tensors.values())
with safe_open(path, "pt") as f:
    meta = f.metadata()
assert meta["sculpt_model"] == "mlp" and len(meta["sculpt_config_hash"]) == 16, meta
# `sculpt eval` reads the same file back and the trained model beats chance (1/3).
out = subprocess.run([sculpt, "eval", config, "--log-level", "warn"], check=True,
                     capture_output=True, text=True).stdout
assert json.loads(out)["val"]["accuracy"] > 0.5, out

# 2. Python -> Sculpt: `sculpt inspect` reads a file written by Python.
mine = os.path.join(work, "python.safetensors")
save_file({"a": torch.arange(12, dtype=torch.float32).reshape(3, 4),
           "b": torch.zeros(5, dtype=torch.bfloat16),
           "c": torch.tensor([0, 1, 0, 2], dtype=torch.int64)}, mine, metadata={"who": "python"})
out = subprocess.run([sculpt, "inspect", mine], check=True, capture_output=True, text=True).stdout
lines = {l.split()[0]: l.split() for l in out.splitlines() if l.startswith("  ") and len(l.split()) >= 4}
assert lines["a"][1] == "F32" and "[3," in out and lines["a"][-1] == "8.33%", out
assert lines["b"][1] == "BF16" and lines["b"][-1] == "100.00%", out
assert lines["c"][1] == "I64" and lines["c"][-1] == "50.00%", out
assert "who: python" in out, out
print("safetensors interop: ok")
