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

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "support"))
import protobuf_wire  # noqa: E402  (tests/support/protobuf_wire.py)

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

# ---- tokenizers (tokenizer.json, SentencePiece .model) and text datasets (data.name: text) ----
# _good/ holds a working tokenizer and data file; tokenizer/NAME/ is read as data.tokenizer
# with _good/train.jsonl, text/NAME/ (data.<ext>, optional test.<ext>, data.yaml: more data
# keys, expect.txt: what the message must name instead of the folder) with _good/tokenizer.
words = ["<unk>", "<pad>", "the", "cat", "sat", "on", "a", "mat", "dog", "ran", "far", "aaaa"]
good_tok = {"version": "1.0", "added_tokens": [{"id": 1, "content": "<pad>", "special": True}],
            "normalizer": {"type": "Lowercase"}, "pre_tokenizer": {"type": "WhitespaceSplit"},
            "model": {"type": "WordLevel", "vocab": {w: i for i, w in enumerate(words)},
                      "unk_token": "<unk>"}}
write("_good/tokenizer/tokenizer.json", json.dumps(good_tok))
write("_good/train.jsonl", "".join(json.dumps({"text": t, "label": l}) + "\n" for t, l in [
    ("the cat sat", "pos"), ("a dog ran far", "neg"), ("the mat", "pos"), ("zebra crossing", "neg"),
    ("a" * 40, "pos"), ("the dog sat on a mat", "neg")]))


def tokenizer(name, body, rel="tokenizer.json", extra=None):
    write(f"tokenizer/{name}/{rel}", body if isinstance(body, (bytes, str)) else json.dumps(body))
    for r, data in (extra or {}).items():
        write(f"tokenizer/{name}/{r}", data)


def with_model(model, **parts):
    j = dict(good_tok, model=model)
    j.update(parts)
    return j


def wordlevel(vocab, unk="<unk>"):
    return with_model({"type": "WordLevel", "vocab": vocab, "unk_token": unk})


good_vocab = good_tok["model"]["vocab"]
tokenizer("not_json", "{\"model\": ")
tokenizer("empty", "")
tokenizer("binary_garbage", garbage(3000))
tokenizer("top_level_array", "[1, 2, 3]")
tokenizer("deep_json", "{\"model\": " + "[" * 20000 + "]" * 20000 + "}")
nested = {"type": "Lowercase"}
for _ in range(100):
    nested = {"type": "Sequence", "normalizers": [nested]}
tokenizer("deep_sequence", dict(good_tok, normalizer=nested))
tokenizer("model_missing", {k: v for k, v in good_tok.items() if k != "model"})
tokenizer("model_type_unknown", with_model({"type": "CharLevel", "vocab": good_vocab}))
tokenizer("vocab_id_huge", wordlevel(dict(good_vocab, zebra=2 ** 31 - 1)))
tokenizer("vocab_id_1e12", wordlevel(dict(good_vocab, zebra=10 ** 12)))
tokenizer("vocab_id_negative", wordlevel(dict(good_vocab, zebra=-5)))
tokenizer("vocab_id_float", wordlevel(dict(good_vocab, zebra=3.5)))
tokenizer("vocab_not_map", wordlevel([1, 2, 3]))
tokenizer("vocab_empty", dict(wordlevel({}), added_tokens=[]))
tokenizer("added_token_id_huge", dict(good_tok, added_tokens=[{"id": 2 ** 31 - 2, "content": "<x>"}]))
tokenizer("added_token_not_object", dict(good_tok, added_tokens=["<x>"]))
bpe_vocab = {"<unk>": 0, "a": 1, "b": 2, "ab": 3}
tokenizer("merges_unknown_token", with_model({"type": "BPE", "vocab": bpe_vocab, "merges": ["a x"]}))
tokenizer("merged_token_unknown", with_model({"type": "BPE", "vocab": bpe_vocab, "merges": ["b a"]}))
tokenizer("merges_not_pairs", with_model({"type": "BPE", "vocab": bpe_vocab, "merges": ["abc"]}))
tokenizer("merges_not_list", with_model({"type": "BPE", "vocab": bpe_vocab, "merges": {"a": "b"}}))
tokenizer("bpe_dropout_string", with_model({"type": "BPE", "vocab": bpe_vocab, "merges": [], "dropout": "0.1"}))
tokenizer("pad_id_string", dict(good_tok, padding={"pad_id": "zero"}))
tokenizer("pad_id_outside_vocab", dict(good_tok, padding={"pad_id": 5000}))
single = [{"SpecialToken": {"id": "[CLS]", "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}}]
tokenizer("template_special_missing", dict(good_tok, post_processor={
    "type": "TemplateProcessing", "single": single, "pair": single, "special_tokens": {}}))
tokenizer("template_id_outside_vocab", dict(good_tok, post_processor={
    "type": "TemplateProcessing", "single": single, "pair": single,
    "special_tokens": {"[CLS]": {"id": "[CLS]", "ids": [99999999], "tokens": ["[CLS]"]}}}))
tokenizer("template_ids_not_list", dict(good_tok, post_processor={
    "type": "TemplateProcessing", "single": single, "pair": single,
    "special_tokens": {"[CLS]": {"id": "[CLS]", "ids": "0"}}}))
tokenizer("template_type_id_huge", dict(good_tok, post_processor={
    "type": "TemplateProcessing", "single": [{"Sequence": {"id": "A", "type_id": 4096}}], "pair": single,
    "special_tokens": {"[CLS]": {"id": "[CLS]", "ids": [0]}}}))
tokenizer("regex_does_not_compile", dict(good_tok, pre_tokenizer={
    "type": "Split", "pattern": {"Regex": "(unclosed"}, "behavior": "Isolated", "invert": False}))
# Exponential backtracking on _good/train.jsonl's line of 40 a's: stopped by PCRE2's limits.
tokenizer("regex_backtracking", dict(good_tok, pre_tokenizer={
    "type": "Split", "pattern": {"Regex": "(a+a+)+[^a]"}, "behavior": "Isolated", "invert": False}))
tokenizer("precompiled_not_base64", dict(good_tok, normalizer={"type": "Precompiled", "precompiled_charsmap": "%%%"}))
tokenizer("precompiled_bad_trie", dict(good_tok, normalizer={"type": "Precompiled", "precompiled_charsmap": "//8AAAAA"}))
tokenizer("normalizer_unknown", dict(good_tok, normalizer={"type": "NFKZ"}))
tokenizer("pre_tokenizer_unknown", dict(good_tok, pre_tokenizer={"type": "SplitEverything"}))
tokenizer("decoder_unknown", dict(good_tok, decoder={"type": "Reverse"}))
tokenizer("strip_decoder_start_string", dict(good_tok, decoder={"type": "Strip", "content": " ", "start": "1", "stop": 0}))
# No unknown token: _good/train.jsonl's "zebra" cannot be encoded (an error naming data file,
# line and the tokenizer).
tokenizer("wordlevel_no_unk", wordlevel({w: i for i, w in enumerate(words)}, None))
tokenizer("unigram_no_unk", with_model({"type": "Unigram", "vocab": [[w, -1.0] for w in words]}))
tokenizer("unigram_unk_id_outside", with_model({"type": "Unigram", "unk_id": 4096, "vocab": [[w, -1.0] for w in words]}))
tokenizer("tokenizer_config_garbage", good_tok, extra={"tokenizer_config.json": garbage(500)})
tokenizer("special_tokens_map_deep", good_tok, extra={"special_tokens_map.json": "{\"pad_token\": " + "[" * 5000 + "]" * 5000 + "}"})
tokenizer("no_tokenizer_files", "just notes\n", rel="README.txt")
tokenizer("folder_named_tokenizer_json", "x\n", rel="tokenizer.json/inside.txt")


# SentencePiece .model files (ModelProto: pieces 1, trainer_spec 2, normalizer_spec 3).
pb_varint = protobuf_wire.varint
pb = protobuf_wire.field


def sp(pieces, model_type=1, trainer=b"", normalizer=b""):
    out = b"".join(pb(1, pb(1, t.encode() if isinstance(t, str) else t) + pb(2, float(s)) + pb(3, k))
                   for t, s, k in pieces)
    return out + pb(2, pb(3, model_type) + trainer) + pb(3, pb(3, 1) + pb(4, 1) + pb(5, 1) + normalizer)


sp_pieces = [("<unk>", 0.0, 2), ("<s>", 0.0, 3), ("</s>", 0.0, 3), ("\u2581", -2.0, 1)] + \
            [(c, -3.0, 1) for c in "abcdefghijklmnopqrstuvwxyz"] + [("\u2581the", -1.0, 1)]
good_sp = sp(sp_pieces)


def sp_case(name, body):
    tokenizer(name, body, rel="tokenizer.model")


sp_case("sp_empty", b"")
sp_case("sp_binary_garbage", garbage(2000))
sp_case("sp_truncated", good_sp[: len(good_sp) // 2])
sp_case("sp_huge_varint_length", pb_varint(1 << 3 | 2) + pb_varint(1 << 62) + b"\x0a\x01a")
sp_case("sp_piece_huge_varint_length", pb(1, pb_varint(1 << 3 | 2) + pb_varint(2 ** 63)) + good_sp)
sp_case("sp_varint_too_long", b"\x0a" + b"\xff" * 20)
sp_case("sp_wrong_model_type", sp(sp_pieces, model_type=3))
sp_case("sp_byte_piece_not_hex", sp(sp_pieces + [("<0xZZ>", 0.0, 6)]))
sp_case("sp_byte_piece_negative", sp(sp_pieces + [("<0x-1>", 0.0, 6)]))
sp_case("sp_byte_piece_short", sp(sp_pieces + [("<0", 0.0, 6)]))
sp_case("sp_no_unk", sp(sp_pieces[1:]))
sp_case("sp_user_defined", sp(sp_pieces + [("<x>", 0.0, 4)]))
sp_case("sp_piece_type_99", sp(sp_pieces + [("q", 0.0, 99)]))
sp_case("sp_whitespace_suffix", sp(sp_pieces, trainer=pb(24, 1)))
sp_case("sp_charsmap_bad_trie", sp(sp_pieces, normalizer=pb(2, b"\xff\xff\x00\x00abcd")))
sp_case("sp_no_pieces", sp([]))
tokenizer("sp_added_tokens_bad_id", good_sp, rel="tokenizer.model",
          extra={"tokenizer_config.json": json.dumps({"added_tokens_decoder": {"1e9": {"content": "<x>"}}})})
tokenizer("sp_added_tokens_id_huge", good_sp, rel="tokenizer.model",
          extra={"tokenizer_config.json": json.dumps({"added_tokens_decoder": {"2147483647": {"content": "<x>"}}})})
tokenizer("sp_config_deep", good_sp, rel="tokenizer.model",
          extra={"tokenizer_config.json": "{\"add_bos_token\": " + "[" * 5000 + "]" * 5000 + "}"})
tokenizer("sp_config_add_bos_string", good_sp, rel="tokenizer.model",
          extra={"tokenizer_config.json": json.dumps({"add_bos_token": "yes"})})


def text(name, files, yaml=None, expect=None):
    for rel, data in files.items():
        write(f"text/{name}/{rel}", data)
    if yaml:
        write(f"text/{name}/data.yaml", yaml + "\n")
    if expect:
        write(f"text/{name}/expect.txt", expect)


line = lambda t, l: json.dumps({"text": t, "label": l}) + "\n"
ok_lines = line("the cat", "pos") + line("a dog", "neg")
text("invalid_utf8_jsonl", {"data.jsonl": ok_lines.encode() + b'{"text": "a \xff b", "label": "pos"}\n'})
text("invalid_utf8_txt", {"data.txt": b"the cat sat\nthe \xc3\x28 dog\n"})
text("invalid_utf8_csv", {"data.csv": b"text,label\nthe cat,pos\n\xed\xa0\x80,neg\n"})
text("label_not_in_map", {"data.jsonl": ok_lines + line("the mat", "neutral")}, "labels: [neg, pos]")
text("test_label_not_in_train", {"data.jsonl": ok_lines, "test.jsonl": line("the dog", "other")})
text("one_label_only", {"data.jsonl": line("the cat", "pos") + line("a dog", "pos")})
text("jsonl_not_json", {"data.jsonl": ok_lines + "{\"text\": \n"})
text("jsonl_deep_nesting", {"data.jsonl": ok_lines + "{\"text\": " + "[" * 20000 + "]" * 20000 + "}\n"})
text("jsonl_text_not_string", {"data.jsonl": ok_lines + json.dumps({"text": 5, "label": "pos"}) + "\n"})
text("jsonl_missing_label", {"data.jsonl": ok_lines + json.dumps({"text": "a"}) + "\n"})
text("jsonl_label_float", {"data.jsonl": ok_lines + json.dumps({"text": "a", "label": 0.5}) + "\n"})
text("jsonl_array_line", {"data.jsonl": ok_lines + "[1, 2]\n"})
text("jsonl_empty", {"data.jsonl": ""})
text("jsonl_binary_garbage", {"data.jsonl": garbage(1500)})
text("csv_missing_column", {"data.csv": "words,label\nthe cat,pos\n"})
text("csv_ragged", {"data.csv": "text,label\nthe cat,pos\na dog\n"})
text("csv_header_only", {"data.csv": "text,label\n"})
text("tsv_binary_garbage", {"data.tsv": garbage(1500)})
text("gzip_corrupt", {"data.jsonl.gz": b"\x1f\x8b\x08\x00" + garbage(300)})
text("gzip_truncated", {"data.jsonl.gz": gzip.compress((ok_lines * 50).encode(), mtime=0)[:60]})
text("lm_fewer_ids_than_block", {"data.txt": "the cat sat\n"}, "block_size: 64")
text("seq2seq_missing_target", {"data.jsonl": json.dumps({"query": "the cat", "target": "a dog"}) + "\n" +
                                              json.dumps({"query": "the mat"}) + "\n"})
text("pair_field_missing", {"data.jsonl": ok_lines}, "shape: pair, pair_field: second")
text("truncation_false_too_long", {"data.jsonl": ok_lines + line("the cat sat on a mat", "pos")},
     "max_length: 3, truncation: false")
text("max_length_huge", {"data.jsonl": ok_lines}, "max_length: 1000000000000, padding: max_length",
     expect="data.max_length")
text("block_size_huge", {"data.txt": "the cat sat\n"}, "block_size: 1000000000000", expect="data.block_size")

count = sum(len(files) for _, _, files in os.walk(root))
cases = sum(len(os.listdir(os.path.join(root, d))) for d in os.listdir(root))
print(f"{cases} cases ({count} files) under {root}")
