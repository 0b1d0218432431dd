#!/usr/bin/env python3
"""Writes the seed corpora under tests/fuzz/<name>/corpus/ (deterministic). Seeds are small
valid inputs of each reader plus a few of tests/hostile/cases/; libFuzzer mutates from them."""
import base64, glob, json, os, shutil, struct, sys, zlib

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "support"))
import protobuf_wire  # noqa: E402  (tests/support/protobuf_wire.py)

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
    return [p for p in sorted(paths) if os.path.isfile(p) and os.path.getsize(p) <= limit]


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

# data: selector byte (low 4 bits: 0 IDX, 1 CSV, 2 jsonl, 3 text records, 4 token cache, 5 text
# dataset; bits 4-6 options; bit 7 gzip)
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
# data.name: text (selector 3 records, 5 the dataset; a second byte: bits 0-1 the format
# jsonl / csv / tsv / txt, bit 2 invalid UTF-8 replaced; 5: bits 2-4 the shape, 5-7 options)
jl = lambda **k: json.dumps(k) + "\n"
classify = jl(text="the cat sat", label="pos") + jl(text="a dog!", label="neg") + jl(text="the dog", label=3)
put(d, "text_records_jsonl", b"\x03\x00" + classify.encode())
put(d, "text_records_csv_gz", b"\x83\x01" + b'text,label\n"the ""cat""",pos\n"a\ndog",neg\n')
put(d, "text_records_tsv_replace", b"\x03\x06" + b"text\tpair\tlabel\nthe \xff cat\ta dog\t1\n")
put(d, "text_records_txt", b"\x03\x03" + "the cat\n\n  a dog sat ²\r\n".encode())
put(d, "text_dataset_classify", b"\x05\x00" + classify.encode())
put(d, "text_dataset_pair_maxlen", b"\x05\x68" + (jl(text="the cat", pair="a dog sat", label=1) +
                                                  jl(text="a", pair="the", label=0)).encode())
put(d, "text_dataset_seq2seq", b"\x05\x2c" + (jl(query="the cat sat", target="a dog") +
                                              jl(query="a", target="the cat sat dog")).encode())
put(d, "text_dataset_lm_txt", b"\x15\x13" + b"the cat sat , the dog sat !\nthe \xc3 a cat\n")
put(d, "text_dataset_csv_truncation_off", b"\x05\xa5" + b"text,label\nthe cat sat the dog,a\nthe,b\n")
for p in small(glob.glob(os.path.join(hostile, "text", "*", "data.*")), 4096):
    ext = [".jsonl", ".csv", ".tsv", ".txt"]
    fmt = next((k for k, e in enumerate(ext) if e in os.path.basename(p)), 0)
    put(d, "hostile_text_" + os.path.basename(os.path.dirname(p)), bytes([5, fmt]) + open(p, "rb").read())


# Token caches (selector 4) in the format of core/data/text_cache.h, written for what the
# harness expects: data hash "d", tokenizer "t", options "o", ids below 64.
def token_cache(shape, header, sections):
    names = sorted(sections)
    blobs = {k: b"".join(struct.pack("<" + f, x) for x in v) for k, (f, v) in sections.items()}
    h = dict(header, data_hash="d", tokenizer="t", options="o", shape=shape, file="t.jsonl")
    hlen = 0
    while True:
        off, secs = 16 + hlen, {}
        for k in names:
            secs[k] = [off, len(blobs[k])]
            off += (len(blobs[k]) + 7) // 8 * 8
        h.update(sections=secs, file_size=off + 8)
        text = json.dumps(h, sort_keys=True, separators=(",", ":")).encode()
        if len(text) <= hlen:
            break
        hlen = (len(text) + 8) // 8 * 8
    out = b"SCULPTTK" + struct.pack("<II", 1, hlen) + text.ljust(hlen, b" ")
    for k in names:
        out += blobs[k].ljust((len(blobs[k]) + 7) // 8 * 8, b"\0")
    return out + b"SCULPTOK"


put(d, "cache_classify", b"\x04" + token_cache("classify", {
    "rows": 2, "ids": 5, "labels": ["neg", "pos"], "longest": 3, "longest_target": 0}, {
    "lines": ("q", [1, 2]), "label_ids": ("i", [1, 0]), "offsets": ("q", [0, 3, 5]),
    "ids": ("i", [1, 3, 5, 1, 4])}))
put(d, "cache_pair", b"\x04" + token_cache("pair", {
    "rows": 1, "ids": 4, "labels": ["0"], "longest": 4, "longest_target": 0}, {
    "lines": ("q", [1]), "label_ids": ("i", [0]), "offsets": ("q", [0, 4]),
    "ids": ("i", [3, 2, 4, 6]), "type_ids": ("B", [0, 1, 1, 1])}))
put(d, "cache_seq2seq", b"\x04" + token_cache("seq2seq", {
    "rows": 2, "ids": 3, "target_ids": 4, "labels": [], "longest": 2, "longest_target": 3}, {
    "lines": ("q", [1, 2]), "offsets": ("q", [0, 2, 3]), "ids": ("i", [5, 6, 7]),
    "target_offsets": ("q", [0, 1, 4]), "target_ids": ("i", [2, 3, 4, 2])}))
# Found by fuzzing (a harness bug): line numbers near 2^63, which the harness summed as int64.
put(d, "regression_cache_huge_lines", b"\x04" + token_cache("classify", {
    "rows": 2, "ids": 2, "labels": ["a"], "longest": 1, "longest_target": 0}, {
    "lines": ("q", [2 ** 62 + 7, 2 ** 62 + 9]), "label_ids": ("i", [0, 0]), "offsets": ("q", [0, 1, 2]),
    "ids": ("i", [1, 2])}))
put(d, "cache_lm", b"\x04" + token_cache("lm", {
    "rows": 2, "ids": 6, "labels": [], "longest": 0, "longest_target": 0}, {
    "ids": ("i", [3, 5, 7, 2, 4, 2])}))

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

# tokenizer: byte 0 selects (bit 0 .model, bit 1 tokenizer_config.json, bit 2 pair, bit 3
# truncate + pad, bit 4 no specials), byte 1 the text's length at the end (0: a fixed text).
# Small hand-written files of every model, normalizer, pre-tokenizer, post-processor and
# decoder the reader knows (tests/text/make_tokenizers.py writes large real ones).
d = corpus("tokenizer")
# A SentencePiece precompiled character map of three rules (U+FF41 -> a, U+FF42 -> b, A -> a),
# from a model trained with a custom normalization_rule_tsv: zlib + base64 of its 1032 bytes.
CHARSMAP = zlib.decompress(base64.b64decode(
    "eNod0gWsl1UYB+APxkZ3eOluBEnplu5OgQtIqZSEdIN0d3eObi/SSkiHinRJg3Tz/Dl7n73vzs7OdvY7QZTAihSUih3q"
    "wYCIsMjBwKRBENkc1cag6EGggmjEJAaho7GISxziE4+EJCAxifiCJLguCCM5yUhJClKTirSkIT3pyEgGMpOJrGQhO9n4"
    "khzkIie5+Yq85CE/+fiaAhSiIEUoTDGKUoLilKIkZSjNN5SlPOWoSAUqU4mqVKE61ahJDWpTi7rUoT71aEgDGtOIpjSh"
    "Gd/Sgua0JJzWtKIN39GOtnSgPT/wPR35kc50oitd6MZP9KA7P9OT3vSiL33oTz8GhoJncChvhjKE4QzjF0YwipGMYTTj"
    "GMsExjOJiUxhMtOYygymM4uZzGE285jLAuaziIUsYTHLWMoKlrOKlaxhNWt5JKj1+jo2soHNbGIrW9jONnaygwh+5Td2"
    "sYfd7GMvB9jP7xzkEH9whMP8yVGOc4yTnOA0pzjLGc5zjr/5iwv8w0X+5TKXuMoVrnONm9zgNre4w3/c4y4PuB96Ow95"
    "wmOe8j/PecZLXvCaV7zlDe95x0c+fP5/4cEnLjmEBQ=="))
letters = list("abcdefghijklmnopqrstuvwxyz") + [",", "!", "'", "?", "."]
vocab = {t: i for i, t in enumerate(["<unk>", "<s>", "</s>", "<pad>"] + letters +
                                     ["he", "hel", "hell", "hello", "wo", "wor", "worl", "world"])}
merges = ["h e", "he l", "hel l", "hell o", "w o", "wo r", "wor l", "worl d"]


def tok(model, **parts):
    j = {"version": "1.0", "truncation": None, "padding": None,
         "added_tokens": [{"id": 1, "content": "<s>", "special": True},
                          {"id": 2, "content": "</s>", "special": True, "rstrip": True},
                          {"id": 3, "content": "<pad>", "special": True, "lstrip": True}]}
    j.update(parts)
    j["model"] = model
    return json.dumps(j, ensure_ascii=False, separators=(",", ":")).encode()


def seed(name, sel, body, text=b""):
    put(d, name, bytes([sel, len(text)]) + body + text)


template = {"type": "TemplateProcessing",
            "single": [{"SpecialToken": {"id": "<s>", "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}}],
            "pair": [{"SpecialToken": {"id": "<s>", "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}},
                     {"SpecialToken": {"id": "</s>", "type_id": 1}}, {"Sequence": {"id": "B", "type_id": 1}}],
            "special_tokens": {"<s>": {"id": "<s>", "ids": [1], "tokens": ["<s>"]},
                               "</s>": {"id": "</s>", "ids": [2], "tokens": ["</s>"]}}}
bytelevel_vocab = dict(vocab, **{"Ġ": len(vocab), "Ġw": len(vocab) + 1})
seed("bpe_bytelevel.json", 0, tok(
    {"type": "BPE", "vocab": bytelevel_vocab, "merges": merges + ["Ġ w"], "unk_token": None},
    pre_tokenizer={"type": "ByteLevel", "add_prefix_space": False, "use_regex": True},
    post_processor={"type": "ByteLevel"}, decoder={"type": "ByteLevel"}))
bf_vocab = dict(vocab)
for b in range(256):
    bf_vocab["<0x%02X>" % b] = len(bf_vocab)
bf_vocab["▁"] = len(bf_vocab)
seed("bpe_byte_fallback_metaspace.json", 12, tok(
    {"type": "BPE", "vocab": bf_vocab, "merges": [["h", "e"], ["he", "l"]], "unk_token": "<unk>",
     "byte_fallback": True, "fuse_unk": True},
    normalizer={"type": "Sequence", "normalizers": [{"type": "Prepend", "prepend": "▁"},
                                                     {"type": "Replace", "pattern": {"String": " "}, "content": "▁"}]},
    post_processor=template,
    decoder={"type": "Sequence", "decoders": [
        {"type": "Replace", "pattern": {"String": "▁"}, "content": " "}, {"type": "ByteFallback"},
        {"type": "Fuse"}, {"type": "Strip", "content": " ", "start": 1, "stop": 0}]}))
wp_vocab = dict(vocab, **{"[UNK]": len(vocab), "##l": len(vocab) + 1, "##o": len(vocab) + 2})
seed("wordpiece_bert.json", 4, tok(
    {"type": "WordPiece", "vocab": wp_vocab, "unk_token": "[UNK]", "continuing_subword_prefix": "##",
     "max_input_chars_per_word": 100},
    normalizer={"type": "BertNormalizer", "clean_text": True, "handle_chinese_chars": True,
                "strip_accents": None, "lowercase": True},
    pre_tokenizer={"type": "BertPreTokenizer"},
    post_processor={"type": "BertProcessing", "sep": ["</s>", 2], "cls": ["<s>", 1]},
    decoder={"type": "WordPiece", "prefix": "##", "cleanup": True}))
uni = [["<unk>", 0.0], ["<s>", 0.0], ["</s>", 0.0], ["▁", -2.0]] + \
      [[c, -3.0 - i * 0.1] for i, c in enumerate(letters)] + [["▁hello", -1.5], ["▁world", -1.6], ["ll", -2.5]]
seed("unigram_precompiled.json", 8, tok(
    {"type": "Unigram", "unk_id": 0, "vocab": uni, "byte_fallback": False},
    normalizer={"type": "Sequence", "normalizers": [
        {"type": "Precompiled", "precompiled_charsmap": base64.b64encode(CHARSMAP).decode()},
        {"type": "Replace", "pattern": {"Regex": " {2,}"}, "content": " "}]},
    pre_tokenizer={"type": "Metaspace", "replacement": "▁", "prepend_scheme": "always", "split": True},
    post_processor=template,
    decoder={"type": "Metaspace", "replacement": "▁", "prepend_scheme": "always", "split": True}))
words = {w: i for i, w in enumerate(["<unk>", "<s>", "</s>", "<pad>", "hello", "world", ",", "!",
                                     "2024", "2", "0", "4", "it", "'", "s", "x", "don", "t"])}
seed("wordlevel_splits.json", 4, tok(
    {"type": "WordLevel", "vocab": words, "unk_token": "<unk>"},
    pre_tokenizer={"type": "Sequence", "pretokenizers": [
        {"type": "Split", "pattern": {"Regex": "\\s+"}, "behavior": "Removed", "invert": False},
        {"type": "Split", "pattern": {"String": "'"}, "behavior": "MergedWithNext", "invert": False},
        {"type": "Digits", "individual_digits": True},
        {"type": "Punctuation", "behavior": "Contiguous"},
        {"type": "CharDelimiterSplit", "delimiter": "x"},
        {"type": "Metaspace", "replacement": "▁", "prepend_scheme": "first", "split": False}]}))
suffix_vocab = dict(vocab, **{"o</w>": len(vocab), "hello</w>": len(vocab) + 1})
seed("bpe_suffix_roberta.json", 20, tok(
    {"type": "BPE", "vocab": suffix_vocab, "merges": ["h e", "he l", "hel l", "hell o</w>"],
     "unk_token": "<unk>", "continuing_subword_prefix": None, "end_of_word_suffix": "</w>"},
    normalizer={"type": "Sequence", "normalizers": [
        {"type": "NFKD"}, {"type": "StripAccents"}, {"type": "Lowercase"},
        {"type": "Strip", "strip_left": True, "strip_right": True}, {"type": "NFC"}]},
    pre_tokenizer={"type": "Sequence", "pretokenizers": [{"type": "Whitespace"}, {"type": "WhitespaceSplit"}]},
    post_processor={"type": "RobertaProcessing", "sep": ["</s>", 2], "cls": ["<s>", 1],
                    "trim_offsets": True, "add_prefix_space": False},
    decoder={"type": "BPEDecoder", "suffix": "</w>"}), b"hello, world")
seed("bpe_legacy_no_type.json", 1 << 1, tok({"vocab": vocab, "merges": merges}))


# SentencePiece .model files: the protobuf written here (ModelProto: pieces, trainer_spec,
# normalizer_spec), unigram and BPE with byte pieces and the character map.
pb_varint = protobuf_wire.varint
pb_field = protobuf_wire.field


def sp_model(pieces, model_type, charsmap=b"", byte_fallback=False):
    out = b""
    for text, score, typ in pieces:
        out += pb_field(1, pb_field(1, text.encode()) + pb_field(2, float(score)) + pb_field(3, typ))
    out += pb_field(2, pb_field(3, model_type) + pb_field(35, int(byte_fallback)))
    norm = pb_field(1, b"identity" if not charsmap else b"custom")
    if charsmap:
        norm += pb_field(2, charsmap)
    out += pb_field(3, norm + pb_field(3, 1) + pb_field(4, 1) + pb_field(5, 1))
    return out


specials = [("<unk>", 0.0, 2), ("<s>", 0.0, 3), ("</s>", 0.0, 3), ("<pad>", 0.0, 3)]
normal = [("▁", -2.0, 1)] + [(c, -3.0 - i * 0.1, 1) for i, c in enumerate(letters)] + \
         [("▁hello", -1.5, 1), ("▁world", -1.6, 1), ("ll", -2.5, 1), ("▁wo", -4.0, 5)]
seed("sp_unigram.model", 1, sp_model(specials + normal, 1, CHARSMAP))
seed("sp_unigram_config.model", 3 | 4, sp_model(specials + normal, 1))
byte_pieces = [("<0x%02X>" % b, 0.0, 6) for b in range(256)]
bpe_pieces = [("▁", -1.0, 1), ("h", -2.0, 1), ("e", -2.1, 1), ("l", -2.2, 1), ("o", -2.3, 1),
              ("he", -0.5, 1), ("hel", -0.6, 1), ("▁hel", -0.7, 5), ("▁w", -0.8, 1)]
seed("sp_bpe_bytes.model", 1 | 8, sp_model(specials + byte_pieces + bpe_pieces, 2, CHARSMAP, True))
seed("sp_bpe_config.model", 3 | 16, sp_model(specials + byte_pieces[:4] + bpe_pieces, 2, b"", True),
     "hello ｈel".encode())
# Found by fuzzing: a character map whose trie is empty (memcpy to a null pointer).
seed("regression_charsmap_empty_trie.model", 1, sp_model(specials + normal, 1, b"\0\0\0\0a\0"))
for p in small(glob.glob(os.path.join(hostile, "tokenizer", "*", "tokenizer.*")), 4096):
    sel = 1 if p.endswith(".model") else 0
    put(d, "hostile_" + os.path.basename(os.path.dirname(p)), bytes([sel, 0]) + open(p, "rb").read())

for name in ("config", "safetensors", "data", "hf_config", "tokenizer"):
    print(name, len(os.listdir(os.path.join(here, name, "corpus"))), "seeds")
