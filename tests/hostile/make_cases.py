#!/usr/bin/env python3
"""Writes the committed hostile inputs under tests/hostile/cases/ (deterministic: run it again and
`git diff` shows nothing). Each folder is one reader; tests/hostile/test_hostile.cpp runs `sculpt`
on every case and expects exit 2 with a message naming the file, in < 1 s.

  yaml/NAME.yaml            sculpt validate NAME.yaml
  safetensors/NAME.st       sculpt inspect NAME.st
  idx/NAME/                 sculpt train (data: mnist, dir: NAME/)
  csv/NAME.csv              sculpt train (data: csv, file: NAME.csv)
  jsonl/NAME.jsonl          sculpt train (data: jsonl, file: NAME.jsonl)
  plugins/NAME.so           sculpt validate quickstart --plugin NAME.so
  hf/NAME/                  sculpt train (model: hf, path: NAME/): config.json, weights, index
Large inputs (a 8 MiB YAML, a YAML of 300k values, a gzip bomb) are written by the test itself.
"""
import gzip, json, os, random, shutil, struct, sys

root = os.path.join(os.path.dirname(os.path.abspath(__file__)), "cases")
shutil.rmtree(root, ignore_errors=True)
rng = random.Random(28)


def write(rel, data):
    path = os.path.join(root, rel)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as f:
        f.write(data.encode() if isinstance(data, str) else data)


def garbage(n):
    return bytes(rng.randrange(256) for _ in range(n))


# ---- YAML configs --------------------------------------------------------------------------
levels = ["a: &a [lol, lol, lol, lol, lol, lol, lol, lol, lol]"]
for i, c in enumerate("bcdefghi"):
    p = "abcdefghi"[i]
    levels.append(f"{c}: &{c} [" + ", ".join([f"*{p}"] * 9) + "]")
write("yaml/alias_bomb.yaml", "\n".join(levels) + "\n")
maps = ["a: &a {x1: 1, x2: 2, x3: 3, x4: 4, x5: 5, x6: 6, x7: 7, x8: 8}"]
for i, c in enumerate("bcdefghi"):
    p = "abcdefghi"[i]
    maps.append(f"{c}: &{c} {{" + ", ".join(f"k{j}: *{p}" for j in range(8)) + "}")
write("yaml/alias_bomb_maps.yaml", "\n".join(maps) + "\n")
write("yaml/deep_flow_lists.yaml", "run: " + "[" * 20000 + "]" * 20000 + "\n")
write("yaml/deep_flow_maps.yaml", "run: " + "{a: " * 5000 + "1" + "}" * 5000 + "\n")
write("yaml/deep_block_maps.yaml", "".join("  " * i + f"k{i}:\n" for i in range(100)) + "  " * 100 + "v: 1\n")
write("yaml/binary_garbage.yaml", garbage(4096))
write("yaml/nul_bytes.yaml", b"run:\n  name: a\x00b\ntrainer:\n  epochs: \x00\x01\x02\n")
write("yaml/wrong_type_integer.yaml", "trainer:\n  epochs: many\n")
write("yaml/wrong_type_section.yaml", "data: [1, 2, 3]\n")
write("yaml/wrong_type_list.yaml", "compression: prune\n")
write("yaml/top_level_list.yaml", "- run\n- data\n")
write("yaml/top_level_scalar.yaml", "just a sentence\n")
write("yaml/huge_integer.yaml", "trainer:\n  epochs: 99999999999999999999999999999999\n")
write("yaml/float_overflow.yaml", "optimizer:\n  name: sgd\n  lr: 1e400\n")
write("yaml/nan_lr.yaml", "optimizer:\n  name: sgd\n  lr: .nan\n")
write("yaml/unterminated_quote.yaml", "run:\n  name: \"quickstart\ntrainer:\n  epochs: 1\n")
write("yaml/tab_indent.yaml", "run:\n\tname: x\n")
write("yaml/undefined_alias.yaml", "run: *nowhere\n")
write("yaml/duplicate_keys.yaml", "trainer:\n  epochs: 1\n  epochs: 2\n")
write("yaml/extends_self.yaml", "extends: extends_self.yaml\ntrainer:\n  epochs: 1\n")
write("yaml/extends_missing.yaml", "extends: no_such_file.yaml\n")
write("yaml/extends_dev_zero.yaml", "extends: /dev/zero\n")
write("yaml/extends_directory.yaml", "extends: /\n")
write("yaml/long_key.yaml", "k" * 100000 + ": 1\n")
write("yaml/unknown_everything.yaml", "".join(f"key{i}: {i}\n" for i in range(2000)))

# ---- safetensors ---------------------------------------------------------------------------
def st(header, data=b"", hlen=None):
    h = header if isinstance(header, bytes) else json.dumps(header).encode()
    return struct.pack("<Q", len(h) if hlen is None else hlen) + h + data


f32 = lambda shape, b, e: {"dtype": "F32", "shape": shape, "data_offsets": [b, e]}
write("safetensors/empty.safetensors", b"")
write("safetensors/short.safetensors", b"\x05\x00\x00")
write("safetensors/header_len_max.safetensors", st({}, hlen=0xFFFFFFFFFFFFFFFF))
write("safetensors/header_len_2e62.safetensors", st({}, hlen=1 << 62))
write("safetensors/header_len_past_end.safetensors", st({"w": f32([1], 0, 4)}, b"\0" * 4, hlen=4000))
write("safetensors/header_not_json.safetensors", st(b"this is not json at all", b"\0" * 16))
write("safetensors/header_array.safetensors", st([1, 2, 3]))
write("safetensors/header_deep_json.safetensors", st(b"[" * 20000 + b"]" * 20000))
write("safetensors/offsets_outside_file.safetensors", st({"w": f32([4], 1 << 40, (1 << 40) + 16)}, b"\0" * 16))
write("safetensors/offsets_negative.safetensors", st({"w": f32([4], -16, 0)}, b"\0" * 16))
write("safetensors/offsets_reversed.safetensors", st({"w": f32([0], 16, 0)}, b"\0" * 16))
write("safetensors/offsets_arity.safetensors", st({"w": {"dtype": "F32", "shape": [1], "data_offsets": [0]}}, b"\0" * 4))
write("safetensors/dtype_shape_mismatch.safetensors", st({"w": f32([2, 2], 0, 8)}, b"\0" * 16))
write("safetensors/dtype_unknown.safetensors", st({"w": {"dtype": "F128", "shape": [1], "data_offsets": [0, 16]}}, b"\0" * 16))
write("safetensors/dtype_not_string.safetensors", st({"w": {"dtype": 4, "shape": [1], "data_offsets": [0, 4]}}, b"\0" * 4))
write("safetensors/shape_not_list.safetensors", st({"w": {"dtype": "F32", "shape": "2x2", "data_offsets": [0, 16]}}, b"\0" * 16))
# 2^32 * 2^32 elements: the product wraps to 0 in 64 bits, matching empty offsets.
write("safetensors/shape_overflow.safetensors", st({"w": f32([1 << 32, 1 << 32], 0, 0)}, b""))
write("safetensors/shape_negative.safetensors", st({"w": f32([-2, -2], 0, 16)}, b"\0" * 16))
write("safetensors/truncated_data.safetensors", st({"a": f32([4], 0, 16), "b": f32([1024], 16, 4112)}, b"\0" * 64))
write("safetensors/metadata_not_object.safetensors", st({"__metadata__": 5, "w": f32([1], 0, 4)}, b"\0" * 4))
write("safetensors/binary_garbage.safetensors", garbage(2048))

# ---- IDX (MNIST) ---------------------------------------------------------------------------
def idx(dims, data=b"", magic=None):
    m = 0x0800 + len(dims) if magic is None else magic
    return struct.pack(">I", m) + b"".join(struct.pack(">I", d) for d in dims) + data


def mnist(name, images, labels):
    write(f"idx/{name}/train-images-idx3-ubyte", images)
    write(f"idx/{name}/train-labels-idx1-ubyte", labels)


good_labels = idx([2], b"\x01\x02")
good_images = idx([2, 28, 28], b"\0" * (2 * 28 * 28))
mnist("empty_files", b"", b"")
mnist("wrong_magic", idx([2, 28, 28], b"\0" * 1568, magic=0x0D03), good_labels)
mnist("declared_huge", idx([0xFFFFFFFF, 28, 28]), good_labels)
# 2^31 * 2^31 * 4 = 2^64: the byte count wraps to 0, matching a header-only file.
mnist("declared_size_wraps", idx([1 << 31, 1 << 31, 4]), good_labels)
# No bytes (a size is 0), but the other sizes overflow the strides of an empty tensor.
mnist("zero_with_huge_sizes", idx([0, 0xFFFFFFFF, 0xFFFFFFFF]), good_labels)
mnist("truncated_images", idx([10, 28, 28], b"\0" * 100), good_labels)
mnist("oversized_images", idx([2, 28, 28], b"\0" * 5000), good_labels)
mnist("count_mismatch", good_images, idx([3], b"\x01\x02\x03"))
mnist("label_not_a_digit", good_images, idx([2], b"\x01\xc8"))
mnist("binary_garbage", garbage(1000), garbage(100))
write("idx/bad_gzip/train-images-idx3-ubyte.gz", b"\x1f\x8b\x08\x00" + garbage(200))
write("idx/bad_gzip/train-labels-idx1-ubyte", good_labels)
# A valid gzip stream whose trailer claims 4 GiB: the reader must not trust it.
gz = bytearray(gzip.compress(good_images, mtime=0))
gz[-4:] = b"\xff\xff\xff\xff"
write("idx/gzip_trailer_lies/train-images-idx3-ubyte.gz", bytes(gz))
write("idx/gzip_trailer_lies/train-labels-idx1-ubyte", good_labels)

# ---- CSV -----------------------------------------------------------------------------------
write("csv/empty.csv", "")
write("csv/header_only.csv", "a,b,label\n")
write("csv/ragged.csv", "a,b,label\n1,2,0\n1,2\n")
write("csv/not_numbers.csv", "a,b,label\n1,two,0\n")
write("csv/infinite.csv", "a,b,label\n1,inf,0\n")
write("csv/one_column.csv", "label\n0\n1\n")
write("csv/negative_label.csv", "a,b,label\n1,2,-1\n")
write("csv/huge_label.csv", "a,b,label\n1,2,0\n3,4,99999999999999\n")
write("csv/binary_garbage.csv", garbage(3000))
write("csv/bad_gzip.csv.gz", b"\x1f\x8b\x08\x00" + garbage(100))

# ---- jsonl ---------------------------------------------------------------------------------
write("jsonl/empty.jsonl", "")
write("jsonl/not_json.jsonl", "{\"text\": \"a\", \"label\": 1}\nnot json\n")
write("jsonl/array_line.jsonl", "[1, 2]\n")
write("jsonl/missing_label.jsonl", "{\"text\": \"a b\"}\n")
write("jsonl/label_object.jsonl", "{\"text\": \"a b\", \"label\": {\"x\": 1}}\n")
write("jsonl/mixed_labels.jsonl", "{\"text\": \"a\", \"label\": 1}\n{\"text\": \"b\", \"label\": \"x\"}\n")
write("jsonl/huge_label.jsonl", "{\"text\": \"a\", \"label\": 0}\n{\"text\": \"b\", \"label\": 999999999999999999}\n")
write("jsonl/deep_nesting.jsonl", "{\"text\": " + "[" * 20000 + "]" * 20000 + "}\n")
write("jsonl/binary_garbage.jsonl", garbage(2000))
write("jsonl/text_not_string.jsonl", "{\"text\": 5, \"label\": 1}\n")

# ---- plugins -------------------------------------------------------------------------------
write("plugins/text_file.so", "this is not a shared library\n")
write("plugins/empty.so", b"")
write("plugins/truncated_elf.so", b"\x7fELF\x02\x01\x01\x00" + b"\0" * 8 + b"\x03\x00\x3e\x00" + garbage(44))
write("plugins/binary_garbage.so", garbage(4096))

# ---- Hugging Face checkpoints ----------------------------------------------------------------
tiny_gpt2 = {"model_type": "gpt2", "architectures": ["GPT2LMHeadModel"], "vocab_size": 16,
             "n_embd": 8, "n_layer": 1, "n_head": 2, "n_positions": 16}
tiny_weights = st({"wte.weight": f32([16, 8], 0, 512)}, b"\0" * 512)


def hf(name, config, weights=tiny_weights, extra=None):
    write(f"hf/{name}/config.json", config if isinstance(config, (bytes, str)) else json.dumps(config))
    if weights is not None:
        write(f"hf/{name}/model.safetensors", weights)
    for rel, data in (extra or {}).items():
        write(f"hf/{name}/{rel}", data)


def gpt2(**changes):
    c = dict(tiny_gpt2)
    c.update(changes)
    return c


hf("config_not_json", "{\"model_type\": \"gpt2\", ")
hf("config_array", "[1, 2, 3]")
hf("config_binary_garbage", garbage(1500))
hf("config_deep_json", "{\"model_type\": " + "[" * 20000 + "]" * 20000 + "}")
hf("vocab_float_1e12", "{\"model_type\": \"gpt2\", \"vocab_size\": 1e12, \"n_embd\": 8, \"n_layer\": 1, \"n_head\": 2, \"n_positions\": 16}")
hf("vocab_1e12", gpt2(vocab_size=10 ** 12))
hf("vocab_negative", gpt2(vocab_size=-5))
hf("hidden_string", gpt2(n_embd="768"))
hf("layers_max_int64", gpt2(n_layer=2 ** 63 - 1))
hf("model_type_missing", {k: v for k, v in tiny_gpt2.items() if k != "model_type"})
hf("model_type_unknown", gpt2(model_type="gpt5"))
hf("heads_do_not_divide", gpt2(n_head=3))
# Within every per-key limit, but the model it declares (2^24 x 8192 embedding) is far larger
# than the weights file: refused before anything is allocated.
hf("declared_larger_than_weights", gpt2(vocab_size=1 << 24, n_embd=8192, n_head=64))
hf("positions_huge", gpt2(n_positions=1 << 40))
hf("vit_labels_huge", {"model_type": "vit", "architectures": ["ViTForImageClassification"],
                       "hidden_size": 8, "num_hidden_layers": 1, "num_attention_heads": 2,
                       "intermediate_size": 16, "image_size": 8, "patch_size": 4,
                       "num_labels": 1 << 40})
hf("rope_scaling_not_object", {"model_type": "llama", "vocab_size": 16, "hidden_size": 8,
                               "num_hidden_layers": 1, "num_attention_heads": 2,
                               "intermediate_size": 16, "rope_scaling": [1, 2]})
# Sharded checkpoints: model.safetensors.index.json
ok_shard = tiny_weights
hf("index_not_json", tiny_gpt2, None, {"model.safetensors.index.json": "{\"weight_map\": "})
hf("index_no_weight_map", tiny_gpt2, None, {"model.safetensors.index.json": json.dumps({"metadata": {}})})
hf("index_parent_path", tiny_gpt2, None, {"model.safetensors.index.json": json.dumps({"weight_map": {"wte.weight": "../model.safetensors"}})})
hf("index_absolute_path", tiny_gpt2, None, {"model.safetensors.index.json": json.dumps({"weight_map": {"wte.weight": "/etc/passwd"}})})
hf("index_missing_shard", tiny_gpt2, None, {"model.safetensors.index.json": json.dumps({"weight_map": {"wte.weight": "shard-1.safetensors"}})})
hf("index_value_not_string", tiny_gpt2, None, {"model.safetensors.index.json": json.dumps({"weight_map": {"wte.weight": 7}})})
hf("index_shard_garbage", tiny_gpt2, None, {"model.safetensors.index.json": json.dumps({"weight_map": {"wte.weight": "s.safetensors"}}),
                                             "s.safetensors": garbage(300)})
hf("index_shard_lacks_tensor", tiny_gpt2, None, {"model.safetensors.index.json": json.dumps({"weight_map": {"wpe.weight": "s.safetensors"}}),
                                                 "s.safetensors": ok_shard})
hf("index_deep_json", tiny_gpt2, None, {"model.safetensors.index.json": "{\"weight_map\": " + "[" * 20000 + "]" * 20000 + "}"})

count = sum(len(files) for _, _, files in os.walk(root))
cases = sum(len(os.listdir(os.path.join(root, d))) for d in os.listdir(root))
print(f"{cases} cases ({count} files) under {root}")
