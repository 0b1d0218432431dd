#!/usr/bin/env python3
"""Writes the seed corpora under tests/fuzz/<name>/corpus/ (deterministic). Seeds are small
valid inputs of each reader plus a few of tests/hostile/cases/; libFuzzer mutates from them."""
import glob, json, os, shutil, struct

here = os.path.dirname(os.path.abspath(__file__))
repo = os.path.dirname(os.path.dirname(here))
hostile = os.path.join(repo, "tests", "hostile", "cases")


def corpus(name):
    d = os.path.join(here, name, "corpus")
    shutil.rmtree(d, ignore_errors=True)
    os.makedirs(d)
    return d


def put(d, name, data):
    with open(os.path.join(d, name), "wb") as f:
        f.write(data.encode() if isinstance(data, str) else data)


def small(paths, limit=8192):
    return [p for p in sorted(paths) if os.path.getsize(p) <= limit]


# config: the shipped recipes, overrides after NUL bytes, hostile YAML
d = corpus("config")
for p in small(glob.glob(os.path.join(repo, "configs", "*.yaml"))):
    put(d, os.path.basename(p), open(p, "rb").read())
put(d, "overrides.yaml", open(os.path.join(repo, "configs", "quickstart.yaml"), "rb").read() +
    b"\0trainer.epochs=2\0compression[0].name=prune\0model={name: mlp}\0optimizer.lr=1e-3")
# (not the alias bombs: each takes ~1 s under ASan to refuse, and mutants of them would spend
# the fuzzer's time there; tests/hostile and the sanitizer replay cover them)
# Found by fuzzing: an override index longer than a long (std::stol threw out_of_range).
put(d, "regression_override_index", b"trainer:\n  epochs: 1\n\0compression[" + b"3" * 30 + b"].name=prune")
# Found by fuzzing: an extends path too long for the file system (exists() threw).
put(d, "regression_extends_long_name", "extends: " + "x" * 5000 + ".yaml\n")
for p in small(glob.glob(os.path.join(hostile, "yaml", "*.yaml"))):
    if "alias_bomb" not in p:
        put(d, "hostile_" + os.path.basename(p), open(p, "rb").read())


# safetensors: valid files of every dtype, metadata, zero-size tensors; hostile headers
def st(header, data=b""):
    h = json.dumps(header).encode()
    h += b" " * ((8 - len(h) % 8) % 8)
    return struct.pack("<Q", len(h)) + h + data


d = corpus("safetensors")
sizes = {"F32": 4, "F64": 8, "F16": 2, "BF16": 2, "I64": 8, "I32": 4, "I16": 2, "I8": 1, "U8": 1, "BOOL": 1}
for dt, n in sizes.items():
    put(d, f"valid_{dt}", st({"t": {"dtype": dt, "shape": [2, 3], "data_offsets": [0, 6 * n]}}, b"\1" * 6 * n))
put(d, "valid_two_meta", st({"__metadata__": {"format": "pt"},
                             "a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]},
                             "b": {"dtype": "I64", "shape": [], "data_offsets": [8, 16]}}, b"\0" * 16))
put(d, "valid_empty_tensor", st({"e": {"dtype": "F32", "shape": [0, 4], "data_offsets": [0, 0]}}))
# Found by fuzzing (a float shape, 3.7e21: UB when converted to int64), kept as a regression seed.
put(d, "regression_float_shape", st({"w": {"dtype": "F64", "shape": [3.66667e21], "data_offsets": [0, 8]}}, b"\0" * 8))
for p in small(glob.glob(os.path.join(hostile, "safetensors", "*"))):
    put(d, "hostile_" + os.path.basename(p), open(p, "rb").read())

# data: selector byte (low 4 bits: 0 IDX, 1 CSV, 2 jsonl; bits 4-6 options; bit 7 gzip)
d = corpus("data")
imgs = struct.pack(">IIII", 0x0803, 2, 4, 4) + bytes(range(32))
labels = struct.pack(">II", 0x0801, 2) + b"\x03\x07"
put(d, "idx_valid", b"\x00" + struct.pack("<H", len(imgs)) + imgs + labels)
put(d, "idx_valid_gz", b"\x80" + struct.pack("<H", len(imgs)) + imgs + labels)
# Found by fuzzing: an IDX file of 0 images (memcpy from an empty tensor's null data pointer).
empty_imgs = struct.pack(">IIII", 0x0803, 0, 28, 28)
put(d, "regression_idx_empty", b"\x00" + struct.pack("<H", len(empty_imgs)) + empty_imgs + struct.pack(">II", 0x0801, 0))
# Found by fuzzing: sizes 0 x 2^32-1 x 2^32-1 (no bytes, but strides overflow in at::empty).
zero_span = struct.pack(">IIII", 0x0803, 0, 0xFFFFFFFF, 0xFFFFFFFF)
put(d, "regression_idx_zero_span", b"\x00" + struct.pack("<H", len(zero_span)) + zero_span + struct.pack(">II", 0x0801, 0))
put(d, "csv_header", b"\x01" + b"a,b,label\n1,2.5,0\n3,-4e2,1\n5,6,2\n")
put(d, "csv_noheader_regression", b"\x31" + b"1,2,0.5\n3,4,1.5\n")
put(d, "csv_standardize_gz", b"\xc1" + b"x,y,z,label\n1,2,3,0\n4,5,6,1\n")
put(d, "jsonl_labels", b"\x02" + b'{"text": "the cat sat", "label": "pos"}\n{"text": "a dog", "label": "neg"}\n')
put(d, "jsonl_int_char", b"\x12" + b'{"text": "ab c", "label": 0}\n\n{"text": "d", "label": 2}\n')
put(d, "jsonl_seq2seq", b"\x42" + b'{"query": "where is it", "target": "here"}\n{"query": "x", "target": "y z"}\n')
# Found by fuzzing: a number too large for a double threw out_of_range, not parse_error.
put(d, "regression_jsonl_number_overflow", b"\x02" + b'{"text": "a", "label": 0}\n{"text": "b", "label": 1e999}\n')
for reader, sel in (("csv", b"\x01"), ("jsonl", b"\x02")):
    for p in small(glob.glob(os.path.join(hostile, reader, "*")), 4096):
        put(d, f"hostile_{reader}_" + os.path.basename(p), sel + open(p, "rb").read())

# hf_config: one config.json per family, and the hostile ones
d = corpus("hf_config")
fams = {
    "gpt2": {"model_type": "gpt2", "architectures": ["GPT2LMHeadModel"], "vocab_size": 50, "n_embd": 16,
             "n_layer": 2, "n_head": 2, "n_positions": 32, "activation_function": "gelu_new"},
    "llama": {"model_type": "llama", "vocab_size": 50, "hidden_size": 16, "num_hidden_layers": 2,
              "num_attention_heads": 4, "num_key_value_heads": 2, "intermediate_size": 32,
              "rope_scaling": {"rope_type": "llama3", "factor": 8.0, "original_max_position_embeddings": 64},
              "tie_word_embeddings": False},
    "mistral": {"model_type": "mistral", "vocab_size": 50, "hidden_size": 16, "num_hidden_layers": 1,
                "num_attention_heads": 4, "intermediate_size": 32, "sliding_window": 8},
    "qwen2": {"model_type": "qwen2", "vocab_size": 50, "hidden_size": 16, "num_hidden_layers": 1,
              "num_attention_heads": 4, "intermediate_size": 32, "use_sliding_window": True,
              "rope_parameters": {"rope_theta": 1e6, "rope_type": "linear", "factor": 2.0}},
    "bert": {"model_type": "bert", "architectures": ["BertForSequenceClassification"], "vocab_size": 50,
             "hidden_size": 16, "num_hidden_layers": 2, "num_attention_heads": 2, "intermediate_size": 32,
             "max_position_embeddings": 64, "id2label": {"0": "a", "1": "b", "2": "c"}},
    "roberta": {"model_type": "roberta", "vocab_size": 50, "hidden_size": 16, "num_hidden_layers": 1,
                "num_attention_heads": 2, "intermediate_size": 32, "max_position_embeddings": 64,
                "pad_token_id": 1},
    "t5": {"model_type": "t5", "vocab_size": 50, "d_model": 16, "d_kv": 4, "d_ff": 32, "num_layers": 2,
           "num_decoder_layers": 1, "num_heads": 4, "feed_forward_proj": "gated-gelu",
           "eos_token_id": [1, 2]},
    "vit": {"model_type": "vit", "architectures": ["ViTForImageClassification"], "hidden_size": 16,
            "num_hidden_layers": 1, "num_attention_heads": 2, "intermediate_size": 32, "image_size": 32,
            "patch_size": 8, "num_labels": 10},
}
for fam, c in fams.items():
    put(d, fam + ".json", json.dumps(c, indent=1))
for p in small(glob.glob(os.path.join(hostile, "hf", "*", "config.json")), 4096):
    put(d, "hostile_" + os.path.basename(os.path.dirname(p)) + ".json", open(p, "rb").read())

for name in ("config", "safetensors", "data", "hf_config"):
    print(name, len(os.listdir(os.path.join(here, name, "corpus"))), "seeds")
