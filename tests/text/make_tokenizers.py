#!/usr/bin/env python3
"""Write small trained tokenizers, a test corpus and the Python libraries' ids for Sculpt's
tokenizer parity tests (tests/text/test_tokenizers.cpp).

Usage: make_tokenizers.py OUT_DIR

Nothing is downloaded. Everything is deterministic (fixed seeds, one training thread).
  OUT_DIR/corpus.txt            >= 10,000 lines ('\n'-separated UTF-8, no '\r'): English,
                                contractions, CJK, Hangul, kana, emoji (ZWJ too), accents (composed
                                and combining), Greek, Cyrillic, Arabic, Devanagari, Thai, digits,
                                whitespace runs (tabs, NBSP, ideographic space), code, very long
                                words, empty lines and literal special tokens; the last lines
                                hold the grapheme clusters on which `tokenizers`' Precompiled
                                differs from SentencePiece's own normalizer.
  OUT_DIR/<name>/               a tokenizer directory shaped like a real checkpoint's:
    gpt2        tokenizer.json: byte-level BPE, GPT-2 regex, <|endoftext|>, merges as [a, b]
    gpt2_legacy the same with merges written the old way ("a b")
    llama3      tokenizer.json: byte-level BPE, Llama-3 split regex, ignore_merges,
                <|begin_of_text|> template
    qwen2       tokenizer.json: NFC, Qwen2 split regex, byte-level BPE, chat tokens, a
                single_word added token
    bert        tokenizer.json: WordPiece, BertNormalizer (lowercase, strip accents),
                BertPreTokenizer, [CLS] $A [SEP] template, a normalized non-special added token
    t5_unigram  tokenizer.json: Unigram, NFKC + Replace + Metaspace (prepend always), $A </s>
    bpe_suffix  tokenizer.json: BPE with unk, "##" and "</w>"; NFKD, StripAccents, Lowercase,
                Strip, Replace, Prepend; Whitespace, Digits, Punctuation; RobertaProcessing
    wordlevel_splits  tokenizer.json: WordLevel behind every Split behavior, invert, and
                Metaspace with prepend_scheme "first"
    sp_t5       spiece.model (SentencePiece unigram; pad 0, eos 1, unk 2) + tokenizer_config.json
    sp_llama    tokenizer.model (SentencePiece BPE, byte fallback; unk 0, <s> 1, </s> 2) +
                tokenizer_config.json (LlamaTokenizer, add_bos_token)
    llama2_hf   sp_llama as transformers' AutoTokenizer converts and saves it (tokenizer.json:
                BPE with byte fallback, Metaspace, the ByteFallback/Fuse/Strip decoders)
    t5_hf       sp_t5 as transformers' AutoTokenizer converts and saves it (tokenizer.json:
                Unigram behind a Precompiled normalizer, SentencePiece's nmt_nfkc map)
    unigram_cf  t5_hf's model behind Sequence [Replace, Precompiled with the nmt_nfkc_cf map
                (NFKC + case folding, taken from a small model trained with that rule),
                Replace " {2,}"], as XLM-R / ALBERT files nest it
  OUT_DIR/<name>.ids.txt        one line per corpus line: the ids, space separated, with the
                                special tokens (`tokenizers`' Tokenizer.encode; for sp_*:
                                sentencepiece's ids per stretch between special tokens, plus
                                Llama's <s> / T5's </s>, as transformers' slow tokenizers did)
  OUT_DIR/<name>.decode.jsonl   one JSON string per corpus line: decode(ids, skip specials)
  OUT_DIR/<name>.pairs.jsonl    (tokenizer.json only) 64 pairs encoded with truncation to 24 and
                                padding to 24: {"a", "b", "ids", "type_ids", "mask"}
and, last and atomically, OUT_DIR/manifest.json {"tokenizers": [...], "lines": N,
"script_sha256": ...}; a run whose manifest has this script's hash does nothing.
"""
import hashlib
import json
import os
import random
import sys
import time

T0 = time.time()

import sentencepiece as spm  # noqa: E402
from tokenizers import (  # noqa: E402
    AddedToken, Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, processors,
    trainers)

N_LINES = 10_000
N_TRAIN = 6_000
UNIGRAM_TRAIN = 2_000  # unigram training is the slow part

WORDS = ("the of and to in is was for on that with as by at from it this be are an or not "
         "have has had were which their they you we he she his her its can will would there "
         "model training data tokenizer network compress prune quantize layer weight sparse "
         "language vision transformer attention gradient learning rate batch epoch loss "
         "Sculpt Python Rust café naïve résumé coöperate façade über señor jalapeño Zürich "
         "Ελλάδα Москва привет мир σοφία").split()
CONTRACTIONS = ["don't", "it's", "they're", "we've", "I'm", "you'll", "she'd", "can't", "WON'T",
                "IT'S", "o'clock", "rock'n'roll"]
CODE = [
    "def f(x): return x ** 2  # square",
    "for (int i = 0; i < n; ++i) { sum += a[i]; }",
    "if (ptr != nullptr && ptr->next) return ptr->next->value;",
    "const auto& [key, value] = *map.find(\"answer\");",
    "SELECT id, name FROM users WHERE age >= 18 ORDER BY name;",
    "<div class=\"note\">Hello &amp; welcome</div>",
    "x = {'a': [1, 2, 3], \"b\": None}",
    "fn main() { println!(\"{}\", 1 + 1); }",
    "    return torch.cat([q, k], dim=-1)",
    "\tif err != nil {\t\treturn err\t}",
    "$ ./configure --prefix=/usr/local && make -j4",
    "lambda s: s.strip().lower().split('_')",
]
SPECIALS = ["<|endoftext|>", "[CLS]", "[SEP]", "[MASK]", "</s>", "<s>", "<pad>", "<unk>",
            "<|begin_of_text|>", "<|im_start|>", "<|im_end|>", "zz_single", "SculptWord"]
SPACES = [" ", "  ", "   ", "\t", " \t ", "\u00a0", "\u3000", "      ", "\u2003"]


def rand_range(r, lo, hi, n):
    return "".join(chr(r.randint(lo, hi)) for _ in range(n))


def piece(r, wide):
    k = r.random()
    cjk_hi = 0x9FA5 if wide and r.random() < 0.3 else 0x4FFF  # rare ideographs: unknown pieces
    if k < 0.35:
        return " ".join(r.choice(WORDS) for _ in range(r.randint(1, 8)))
    if k < 0.42:
        return r.choice(CONTRACTIONS)
    if k < 0.50:
        return rand_range(r, 0x4E00, cjk_hi, r.randint(1, 12))  # CJK ideographs
    if k < 0.53:
        return rand_range(r, 0x3041, 0x3096, r.randint(1, 6)) + rand_range(r, 0x30A1, 0x30FA, 3)
    if k < 0.56:
        return rand_range(r, 0xAC00, 0xD7A3 if wide else 0xAE00, r.randint(1, 6))  # Hangul
    if k < 0.61:
        emoji = [chr(r.randint(0x1F600, 0x1F64F)) for _ in range(r.randint(1, 3))]
        if r.random() < 0.3:
            emoji.append("\U0001F468\u200D\U0001F469\u200D\U0001F467")  # ZWJ family
        if r.random() < 0.2:
            emoji.append("\U0001F44D\U0001F3FD")  # skin tone
        return "".join(emoji)
    if k < 0.66:
        base = r.choice(["e", "a", "o", "u", "n", "E", "A"])
        comb = r.choice(["\u0301", "\u0300", "\u0308", "\u0303", "\u0302"])
        return r.choice(["éèêë", "ÀÉÎÕÜ", "ñandú", "Ångström", "Tiếng Việt", "ﬁne ﬂow",
                         "ǅemal", "İstanbul", "ΣΊΣΥΦΟΣ"]) + " " + base + comb + "x"
    if k < 0.72:
        return r.choice([str(r.randint(0, 10 ** r.randint(1, 12))),
                         f"{r.random() * 1000:.3f}", f"{r.randint(1, 28)}/{r.randint(1, 12)}/2026",
                         f"+1 ({r.randint(200, 999)}) {r.randint(100, 999)}-{r.randint(1000, 9999)}",
                         "٣٤٥ ١٢", "½ ¾ ²³", "١٢٣٤٥٦"])
    if k < 0.77:
        return r.choice(SPACES) * r.randint(1, 3)
    if k < 0.83:
        return r.choice(CODE)
    if k < 0.86:
        n = r.randint(60, 600)
        kind = r.random()
        if kind < 0.3:
            return "".join(r.choice("abcdefghijklmnopqrstuvwxyz") for _ in range(n))
        if kind < 0.5:
            return r.choice("ab") * n
        if kind < 0.7:
            return "https://example.com/" + "/".join(
                "".join(r.choice("abcxyz0123_-") for _ in range(8)) for _ in range(n // 9))
        return "Pneumonoultramicroscopicsilicovolcanoconiosis" * r.randint(1, 6)
    if k < 0.90:
        return r.choice(["Ελληνικά κείμενα", "Русский текст тут", "مرحبا بالعالم",
                         "नमस्ते दुनिया", "สวัสดีชาวโลก", "שלום עולם", "ქართული"])
    if k < 0.93:
        return r.choice(SPECIALS)
    return r.choice(["!!", "...", "?!", "—", "«quoted»", "“smart”", "(paren)", "#hashtag",
                     "@user", "100%", "$5.00", "a-b_c", "~/path/to/file.txt", "C++17"])


def make_line(r, wide):
    k = r.random()
    if k < 0.02:
        return ""
    if k < 0.03:
        return r.choice(SPACES) * r.randint(1, 4)
    parts = [piece(r, wide) for _ in range(r.randint(1, 7))]
    out = ""
    for p in parts:
        sep = r.choice([" ", " ", " ", "", "  ", ", ", ". ", "\t"])
        out += (sep if out else "") + p
    if r.random() < 0.15:
        out = " " + out
    if r.random() < 0.1:
        out += "  "
    return out.replace("\r", "").replace("\n", " ")


# Clusters of fewer than 6 bytes whose first character has a rule of its own (the Precompiled
# normalizer then replaces the whole cluster by that rule), 6-byte clusters (per character),
# and combining sequences.
PRECOMPILED_LINES = [
    "\ufb01\u0301 and \u2460\u0308 then \uff21\u0301\uff22",
    "\uff76\uff9e \uff8a\uff9f \u00c5\u0301 \u212b e\u0301 a\u200d b\u0300\u0301",
    "\u00a9\ufe0f \u2122 \u00bd\u0301 \u3000x\u0308 \u1100\u1161 \u1100\u1161\u11a8",
    "\u0130\u0307 \u03a3\u0301 \u00df \u1e9e \ufb00\u0327 \u2126 K\u212a",
]


def corpus(seed, n, wide):
    r = random.Random(seed)
    return [make_line(r, wide) for _ in range(n)]


def write_json(path, obj):
    with open(path, "w", encoding="utf-8") as f:
        json.dump(obj, f, ensure_ascii=False, indent=2)


def save_dir(out, name, tok, config):
    d = os.path.join(out, name)
    os.makedirs(d, exist_ok=True)
    tok.save(os.path.join(d, "tokenizer.json"))
    write_json(os.path.join(d, "tokenizer_config.json"), config)
    return d


def added(content, special=True, **kw):
    return AddedToken(content, special=special, normalized=kw.pop("normalized", not special), **kw)


def bpe_byte_level(train, specials, split=None, normalizer=None, ignore_merges=False, vocab=3000):
    tok = Tokenizer(models.BPE(ignore_merges=ignore_merges))
    if normalizer:
        tok.normalizer = normalizer
    if split:
        tok.pre_tokenizer = pre_tokenizers.Sequence([
            pre_tokenizers.Split(Regex(split), behavior="isolated"),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)])
    else:
        tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab, show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                  special_tokens=specials)
    tok.train_from_iterator(train, trainer)
    return tok


LLAMA3_SPLIT = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+"
                r"[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+")
QWEN2_SPLIT = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+"
               r"[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+")


def build_tokenizer_json(out, train):
    made = {}
    print(f"  corpus: {time.time() - T0:.1f} s", flush=True)
    # GPT-2: byte-level BPE, <|endoftext|>, a <mask> with lstrip (as RoBERTa's).
    tok = bpe_byte_level(train, ["<|endoftext|>"])
    tok.add_special_tokens([added("<mask>", lstrip=True)])
    tok.post_processor = processors.ByteLevel(trim_offsets=False)
    made["gpt2"] = (tok, save_dir(out, "gpt2", tok, {
        "tokenizer_class": "GPT2Tokenizer", "bos_token": "<|endoftext|>",
        "eos_token": "<|endoftext|>", "unk_token": "<|endoftext|>", "model_max_length": 1024}))
    legacy = json.loads(tok.to_str())
    legacy["model"]["merges"] = [" ".join(m) for m in legacy["model"]["merges"]]
    d = os.path.join(out, "gpt2_legacy")
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, "tokenizer.json"), "w", encoding="utf-8") as f:
        json.dump(legacy, f, ensure_ascii=False)
    made["gpt2_legacy"] = (Tokenizer.from_file(os.path.join(d, "tokenizer.json")), d)

    print(f"  gpt2 trained: {time.time() - T0:.1f} s", flush=True)
    # Llama 3: split regex, ignore_merges, <|begin_of_text|> before each text.
    tok = bpe_byte_level(train, ["<|begin_of_text|>", "<|end_of_text|>"] +
                         [f"<|reserved_special_token_{i}|>" for i in range(4)],
                         split=LLAMA3_SPLIT, ignore_merges=True)
    tok.post_processor = processors.Sequence([
        processors.ByteLevel(trim_offsets=False),
        processors.TemplateProcessing(
            single="<|begin_of_text|> $A", pair="<|begin_of_text|> $A <|begin_of_text|>:1 $B:1",
            special_tokens=[("<|begin_of_text|>", tok.token_to_id("<|begin_of_text|>"))])])
    made["llama3"] = (tok, save_dir(out, "llama3", tok, {
        "tokenizer_class": "PreTrainedTokenizerFast", "bos_token": "<|begin_of_text|>",
        "eos_token": "<|end_of_text|>"}))

    # Qwen2: NFC, its split regex, chat tokens, a single_word token.
    tok = bpe_byte_level(train, ["<|endoftext|>", "<|im_start|>", "<|im_end|>"],
                         split=QWEN2_SPLIT, normalizer=normalizers.NFC())
    tok.add_tokens([AddedToken("zz_single", single_word=True, normalized=False)])
    made["qwen2"] = (tok, save_dir(out, "qwen2", tok, {
        "tokenizer_class": "Qwen2Tokenizer", "eos_token": "<|endoftext|>",
        "pad_token": "<|endoftext|>"}))

    # BERT: WordPiece, lowercase + strip accents, [CLS] $A [SEP].
    tok = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    tok.normalizer = normalizers.BertNormalizer(lowercase=True)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.decoder = decoders.WordPiece()
    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    tok.train_from_iterator(train, trainers.WordPieceTrainer(
        vocab_size=3000, show_progress=False, special_tokens=specials))
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B:1 [SEP]:1",
        special_tokens=[(t, tok.token_to_id(t)) for t in ("[CLS]", "[SEP]")])
    tok.add_tokens([AddedToken("SculptWord", normalized=True)])
    made["bert"] = (tok, save_dir(out, "bert", tok, {
        "tokenizer_class": "BertTokenizer", "do_lower_case": True, "unk_token": "[UNK]",
        "sep_token": "[SEP]", "pad_token": "[PAD]", "cls_token": "[CLS]",
        "mask_token": "[MASK]"}))

    print(f"  bert trained: {time.time() - T0:.1f} s", flush=True)
    # T5 saved as tokenizer.json: Unigram with Metaspace, $A </s>.
    tok = Tokenizer(models.Unigram())
    tok.normalizer = normalizers.Sequence([normalizers.NFKC(),
                                           normalizers.Replace(Regex(" {2,}"), " ")])
    tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement="\u2581", prepend_scheme="always")
    tok.decoder = decoders.Metaspace(replacement="\u2581", prepend_scheme="always")
    tok.train_from_iterator(train[:UNIGRAM_TRAIN], trainers.UnigramTrainer(
        vocab_size=3000, show_progress=False, special_tokens=["<pad>", "</s>", "<unk>"],
        unk_token="<unk>"))
    tok.post_processor = processors.TemplateProcessing(
        single="$A </s>", pair="$A </s> $B:1 </s>:1",
        special_tokens=[("</s>", tok.token_to_id("</s>"))])
    made["t5_unigram"] = (tok, save_dir(out, "t5_unigram", tok, {
        "tokenizer_class": "T5Tokenizer", "eos_token": "</s>", "unk_token": "<unk>",
        "pad_token": "<pad>"}))

    # The other pieces: BPE with an unk, "##" prefix and "</w>" suffix; NFKD + StripAccents +
    # Lowercase + Strip + Replace + Prepend; Whitespace, Digits, Punctuation; RoBERTa's template.
    tok = Tokenizer(models.BPE(unk_token="<unk>", continuing_subword_prefix="##",
                               end_of_word_suffix="</w>", fuse_unk=True))
    tok.normalizer = normalizers.Sequence([
        normalizers.NFKD(), normalizers.StripAccents(), normalizers.Lowercase(),
        normalizers.Strip(), normalizers.Replace("``", '"'), normalizers.Prepend("_")])
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Whitespace(), pre_tokenizers.Digits(individual_digits=True),
        pre_tokenizers.Punctuation()])
    tok.decoder = decoders.BPEDecoder(suffix="</w>")
    tok.train_from_iterator(train[:3000], trainers.BpeTrainer(
        vocab_size=2000, special_tokens=["<unk>", "<s>", "</s>"], continuing_subword_prefix="##",
        end_of_word_suffix="</w>", show_progress=False))
    tok.post_processor = processors.RobertaProcessing(("</s>", 2), ("<s>", 1))
    made["bpe_suffix"] = (tok, save_dir(out, "bpe_suffix", tok, {"unk_token": "<unk>"}))

    # WordLevel behind every Split behavior, invert, and Metaspace with prepend_scheme "first".
    tok = Tokenizer(models.WordLevel(unk_token="<unk>"))
    tok.normalizer = normalizers.NFC()
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.WhitespaceSplit(),
        pre_tokenizers.Split(Regex(r"\d+"), behavior="merged_with_next"),
        pre_tokenizers.Split("-", behavior="merged_with_previous"),
        pre_tokenizers.Split(Regex(r"[aeiou]"), behavior="contiguous"),
        pre_tokenizers.Split(Regex(r"[.;]"), behavior="isolated", invert=True),
        pre_tokenizers.Split(",", behavior="removed"),
        pre_tokenizers.Metaspace(prepend_scheme="first", split=True)])
    tok.train_from_iterator(train[:3000], trainers.WordLevelTrainer(
        vocab_size=3000, special_tokens=["<unk>"], show_progress=False))
    tok.add_special_tokens(["<|endoftext|>"])
    made["wordlevel_splits"] = (tok, save_dir(out, "wordlevel_splits", tok, {"unk_token": "<unk>"}))
    return made


def train_sp(out, train, name, model_file, model_type, config, **kw):
    d = os.path.join(out, name)
    os.makedirs(d, exist_ok=True)
    prefix = os.path.join(d, model_file.rsplit(".", 1)[0])
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(train[:UNIGRAM_TRAIN] if model_type == "unigram" else train), model_prefix=prefix, model_type=model_type,
        vocab_size=2500, character_coverage=0.995, num_threads=1, minloglevel=2,
        max_sentence_length=8192, shuffle_input_sentence=False, **kw)
    os.remove(prefix + ".vocab")
    sp = spm.SentencePieceProcessor(model_file=os.path.join(d, model_file))
    decoder = {}
    for i in range(sp.get_piece_size()):
        if sp.is_control(i) or sp.is_unknown(i):
            decoder[str(i)] = {"content": sp.id_to_piece(i), "lstrip": False, "rstrip": False,
                               "normalized": False, "single_word": False, "special": True}
    config = dict(config, added_tokens_decoder=decoder)
    write_json(os.path.join(d, "tokenizer_config.json"), config)
    return sp, d, config


def sp_reference(sp, config, lines):
    """sentencepiece's ids for each stretch between special tokens, plus <s> / </s>."""
    specials = {v["content"]: int(k) for k, v in config["added_tokens_decoder"].items()}
    names = sorted(specials, key=len, reverse=True)
    bos = [specials[config["bos_token"]]] if config.get("add_bos_token") else []
    eos = [specials[config["eos_token"]]] if "T5" in config["tokenizer_class"] else []
    ids_out, dec_out = [], []
    for line in lines:
        ids, i, start = [], 0, 0
        while i < len(line):
            hit = next((n for n in names if line.startswith(n, i)), None)
            if hit:
                if start < i:
                    ids += sp.encode(line[start:i])
                ids.append(specials[hit])
                i += len(hit)
                start = i
            else:
                i += 1
        if start < len(line):
            ids += sp.encode(line[start:])
        ids = bos + ids + eos
        ids_out.append(ids)
        special_ids = set(specials.values())
        dec_out.append(sp.decode([t for t in ids if t not in special_ids]))
    return ids_out, dec_out


def precompiled_tokenizers(out, sp_dir, train):
    """t5_hf: sp_t5 converted by transformers (a Precompiled normalizer); unigram_cf: the same
    model behind a Sequence holding the nmt_nfkc_cf map."""
    import base64
    import io

    import transformers
    from sentencepiece import sentencepiece_model_pb2
    transformers.logging.set_verbosity_error()
    conv = os.path.join(out, "t5_hf")
    transformers.AutoTokenizer.from_pretrained(sp_dir).save_pretrained(conv)
    path = os.path.join(conv, "tokenizer.json")
    with open(path, encoding="utf-8") as f:
        j = json.load(f)
    if j["normalizer"]["type"] != "Precompiled":
        raise SystemExit(f"{path}: expected a Precompiled normalizer, got {j['normalizer']}")
    made = [("t5_hf", Tokenizer.from_file(path), conv)]

    model = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(["abc def", "ghi"] * 20), model_writer=model,
        model_type="unigram", vocab_size=20, normalization_rule_name="nmt_nfkc_cf", num_threads=1,
        minloglevel=2, hard_vocab_limit=False)
    proto = sentencepiece_model_pb2.ModelProto()
    proto.ParseFromString(model.getvalue())
    cf = base64.b64encode(proto.normalizer_spec.precompiled_charsmap).decode()
    j["normalizer"] = {"type": "Sequence", "normalizers": [
        {"type": "Replace", "pattern": {"String": "``"}, "content": "\""},
        {"type": "Precompiled", "precompiled_charsmap": cf},
        {"type": "Replace", "pattern": {"Regex": " {2,}"}, "content": " "}]}
    d = os.path.join(out, "unigram_cf")
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, "tokenizer.json"), "w", encoding="utf-8") as f:
        json.dump(j, f, ensure_ascii=False)
    made.append(("unigram_cf", Tokenizer.from_file(os.path.join(d, "tokenizer.json")), d))
    return made


def write_expected(out, name, ids, decoded):
    with open(os.path.join(out, name + ".ids.txt"), "w", encoding="utf-8") as f:
        for row in ids:
            f.write(" ".join(map(str, row)) + "\n")
    with open(os.path.join(out, name + ".decode.jsonl"), "w", encoding="utf-8") as f:
        for s in decoded:
            f.write(json.dumps(s, ensure_ascii=False) + "\n")


def write_hf_reference(out, name, tok, d, lines):
    """`tokenizers`' ids and decodes of every line, and 64 pairs truncated and padded to 24."""
    encs = tok.encode_batch(lines, add_special_tokens=True)
    ids = [e.ids for e in encs]
    decoded = tok.decode_batch(ids, skip_special_tokens=True)
    write_expected(out, name, ids, decoded)
    r = random.Random(5)
    tok.enable_truncation(max_length=24)
    # The pad id Sculpt picks: the directory's pad_token, else [PAD] / <pad> / <|pad|>, else 0.
    cfg_path = os.path.join(d, "tokenizer_config.json")
    cfg = {}
    if os.path.exists(cfg_path):
        with open(cfg_path, encoding="utf-8") as f:
            cfg = json.load(f)
    pad = cfg.get("pad_token")
    pad = pad.get("content") if isinstance(pad, dict) else pad
    pad_id = next((tok.token_to_id(t) for t in (pad, "[PAD]", "<pad>", "<|pad|>")
                   if t and tok.token_to_id(t) is not None), 0)
    tok.enable_padding(length=24, pad_id=pad_id)
    with open(os.path.join(out, name + ".pairs.jsonl"), "w", encoding="utf-8") as f:
        for _ in range(64):
            a, b = r.choice(lines), r.choice(lines)
            e = tok.encode(a, b)
            f.write(json.dumps({"a": a, "b": b, "ids": e.ids, "type_ids": e.type_ids,
                                "mask": e.attention_mask}, ensure_ascii=False) + "\n")
    tok.no_truncation()
    tok.no_padding()


def main():
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    out = sys.argv[1]
    os.makedirs(out, exist_ok=True)
    manifest = os.path.join(out, "manifest.json")
    with open(__file__, "rb") as f:
        script_hash = hashlib.sha256(f.read()).hexdigest()
    try:
        with open(manifest, encoding="utf-8") as f:
            if json.load(f).get("script_sha256") == script_hash:
                print("make_tokenizers.py: up to date")
                return
    except (OSError, ValueError):
        pass
    if os.path.exists(manifest):
        os.remove(manifest)
    lines = corpus(2026, N_LINES, wide=True) + PRECOMPILED_LINES
    train = corpus(7, N_TRAIN, wide=False)
    with open(os.path.join(out, "corpus.txt"), "w", encoding="utf-8", newline="\n") as f:
        f.write("\n".join(lines) + "\n")

    names = []
    for name, (tok, d) in build_tokenizer_json(out, train).items():
        write_hf_reference(out, name, tok, d, lines)
        names.append(name)
        print(f"  {name}: {time.time() - T0:.1f} s", flush=True)

    t5_config = {"tokenizer_class": "T5Tokenizer", "eos_token": "</s>", "unk_token": "<unk>",
                 "pad_token": "<pad>", "extra_ids": 0}
    llama_config = {"tokenizer_class": "LlamaTokenizer", "bos_token": "<s>", "eos_token": "</s>",
                    "unk_token": "<unk>", "add_bos_token": True, "add_eos_token": False,
                    "legacy": True}
    for name, model_file, model_type, config, kw in [
            ("sp_t5", "spiece.model", "unigram", t5_config,
             dict(pad_id=0, eos_id=1, unk_id=2, bos_id=-1)),
            ("sp_llama", "tokenizer.model", "bpe", llama_config,
             dict(unk_id=0, bos_id=1, eos_id=2, pad_id=-1, byte_fallback=True,
                  split_digits=True))]:
        sp, d, config = train_sp(out, train, name, model_file, model_type, config, **kw)
        ids, decoded = sp_reference(sp, config, lines)
        write_expected(out, name, ids, decoded)
        names.append(name)
        print(f"  {name}: {time.time() - T0:.1f} s", flush=True)
        if name == "sp_t5":
            for conv_name, tok, conv in precompiled_tokenizers(out, d, train):
                write_hf_reference(out, conv_name, tok, conv, lines)
                names.append(conv_name)
                print(f"  {conv_name}: {time.time() - T0:.1f} s", flush=True)
        if name == "sp_llama":
            # Llama 2's tokenizer.json as transformers converts it from tokenizer.model: BPE with
            # byte fallback, Metaspace (no split), Replace/ByteFallback/Fuse/Strip decoders.
            import transformers
            transformers.logging.set_verbosity_error()
            conv = os.path.join(out, "llama2_hf")
            transformers.AutoTokenizer.from_pretrained(d).save_pretrained(conv)
            tok = Tokenizer.from_file(os.path.join(conv, "tokenizer.json"))
            write_hf_reference(out, "llama2_hf", tok, conv, lines)
            names.append("llama2_hf")
            print(f"  llama2_hf: {time.time() - T0:.1f} s", flush=True)

    tmp = manifest + ".tmp"
    write_json(tmp, {"tokenizers": names, "lines": len(lines), "script_sha256": script_hash,
                    "sentencepiece": spm.__version__})
    os.replace(tmp, manifest)
    print(f"make_tokenizers.py: {len(names)} tokenizers, {len(lines)} lines, "
          f"{time.time() - T0:.1f} s")


if __name__ == "__main__":
    main()
