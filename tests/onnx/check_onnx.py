"""Checks one `sculpt export --format onnx` folder against Sculpt's outputs (tests/onnx).

usage: check_onnx.py EXPORT_DIR REF.safetensors [--qdq]

REF holds cases written by the C++ test from Sculpt's own model (the run's integer model for a
quantized run): `c<i>.in.<input>` (the ONNX inputs) and `c<i>.expected` (Sculpt's logits), at
several batch sizes (1 and 3) and, for text, several sequence lengths. Asserts:
  - onnx.checker (full check) passes; opset >= 17; the batch (and sequence) axes are symbolic;
  - ONNX Runtime (CPU) gives Sculpt's logits within export.json's verify tolerance (1e-4 fp32,
    one quantization step int8) for every case, from one session (dynamic shapes really work);
  - --qdq: QuantizeLinear/DequantizeLinear nodes with int8/uint8 weight initializers and
    per-channel scales, and ONNX Runtime's optimized graph runs integer kernels (QLinear*/QGemm/
    *Integer*).
Prints one JSON line with the figures.
"""
import json
import os
import sys
import tempfile

import numpy as np
import onnx
import onnxruntime as ort
from safetensors.numpy import load_file


def main():
    out, ref_file = sys.argv[1], sys.argv[2]
    qdq = "--qdq" in sys.argv[3:]
    path = os.path.join(out, "model.onnx")
    info = json.load(open(os.path.join(out, "export.json")))
    onnx.checker.check_model(path, full_check=True)
    m = onnx.load(path)
    assert max(o.version for o in m.opset_import if o.domain in ("", "ai.onnx")) >= 17
    for i in m.graph.input:
        dims = i.type.tensor_type.shape.dim
        assert dims[0].dim_param == "batch", (i.name, dims)
        if i.name in ("input_ids", "attention_mask", "decoder_input_ids") and info["model"] != "transformer_seq2seq" or i.name == "decoder_input_ids":
            assert dims[1].dim_param, (i.name, "sequence axis not symbolic")
    tol = info.get("verify", {}).get("tolerance", 1e-4)
    ref = load_file(ref_file)
    cases = sorted({k.split(".")[0] for k in ref})
    so = ort.SessionOptions()
    so.intra_op_num_threads = 2
    sess = ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])
    names = [i.name for i in sess.get_inputs()]
    worst = 0.0
    shapes = []
    for c in cases:
        feeds = {n: ref[f"{c}.in.{n}"] for n in names}
        got = sess.run(["logits"], feeds)[0]
        want = ref[f"{c}.expected"]
        assert got.shape == want.shape, (c, got.shape, want.shape)
        diff = float(np.abs(got - want).max())
        assert diff <= tol, f"{c}: ONNX Runtime differs from Sculpt by {diff} (tolerance {tol})"
        worst = max(worst, diff)
        shapes.append(list(feeds[names[0]].shape))
    result = {"cases": len(cases), "shapes": shapes, "max_abs_diff": worst, "tolerance": tol}
    if qdq:
        ops = [n.op_type for n in m.graph.node]
        assert "QuantizeLinear" in ops and "DequantizeLinear" in ops, "no Q/DQ nodes"
        inits = {t.name: t for t in m.graph.initializer}
        int_w = [t for t in m.graph.initializer if t.name.endswith(".weight_quantized")]
        assert int_w and all(t.data_type in (onnx.TensorProto.INT8, onnx.TensorProto.UINT8) for t in int_w)
        per_channel = [t for t in m.graph.initializer if t.name.endswith(".weight_scale") and len(t.dims) == 1]
        assert per_channel, "no per-channel weight scales"
        with tempfile.TemporaryDirectory() as d:
            opt = ort.SessionOptions()
            opt.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
            opt.optimized_model_filepath = os.path.join(d, "opt.onnx")
            ort.InferenceSession(path, opt, providers=["CPUExecutionProvider"])
            fused = [n.op_type for n in onnx.load(opt.optimized_model_filepath).graph.node]
        ints = sorted({o for o in fused if o.startswith("QLinear") or o == "QGemm" or "Integer" in o})
        assert ints, f"ONNX Runtime runs no integer kernel: {sorted(set(fused))}"
        result["integer_ops"] = ints
        result["int8_weights"] = len(int_w)
        del inits
    print(json.dumps(result))


if __name__ == "__main__":
    main()
