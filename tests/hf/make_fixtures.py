#!/usr/bin/env python3
"""Write tiny, random Hugging Face checkpoints plus reference outputs for Sculpt's HF loader tests.

Usage: make_fixtures.py OUT_DIR

Nothing is downloaded: every model is built from a config and randomly initialised.
For each fixture NAME this writes
  OUT_DIR/NAME/                   model.save_pretrained(..., safe_serialization=True), fp32:
                                  config.json, model.safetensors (or, for llama_sharded, an
                                  index plus >= 3 model-0000X-of-0000N.safetensors shards) and,
                                  for generative models, generation_config.json.
  OUT_DIR/NAME.ref.safetensors    reference tensors (all contiguous), computed in fp32 under
                                  torch.no_grad() with the eager ("plain math") attention path.
and, last and atomically (tmp file + os.replace), OUT_DIR/manifest.json:
  {"transformers": <version>, "fixtures": [{"name", "family", "model_type", "head",
                                            "generate", "sharded"}, ...]}
so its presence means the whole set is complete.

Conventions
- Weights are re-randomised after construction so that every weight matters: matrices and
  embeddings ~ N(0, s) (s = 0.15 unless a family sets otherwise), norm weights ~ 1 + N(0, 0.1),
  biases (norm biases too) ~ N(0, 0.1), T5 relative_attention_bias ~ N(0, 0.5). Tied weights are
  one parameter and are drawn once. Seeds are fixed per fixture, so the output is deterministic.
- Text inputs: input_ids int64 [3, L], L = 16 (T5 source: 12), ids drawn from [2, vocab).
  Right padding: row 0 is full, row 1 has its last 5 positions padded, row 2 its last 9.
  Padded positions hold config.pad_token_id, or 0 when the config has none.
  attention_mask int64 [3, L], 1 = real token. Logits are saved for every position, padded
  ones included (for right padding the real positions do not depend on the padded ones).
- BERT / RoBERTa: token_type_ids = zeros [3, L] are passed explicitly and saved.
- T5: decoder_input_ids int64 [3, 8] = decoder_start_token_id (0) then ids from [2, vocab);
  logits [3, 8, V] by teacher forcing, attention_mask applying to the encoder input.
- ViT: pixel_values float32 [3, 3, 32, 32] ~ N(0, 1); logits [3, num_labels].
- logits: causal_lm / masked_lm [3, L, V]; classify [3, num_labels]; seq2seq_lm [3, 8, V].
- Generation (greedy, num_beams 1, exactly 32 new tokens, EOS disabled, KV cache on):
  decoder-only: prompt_ids int64 [1, 5], generated_ids int64 [1, 37] (prompt included);
  T5: gen_input_ids int64 [1, 10], generated_ids int64 [1, 33] (starts with decoder start 0).
  margin float32 scalar: smallest top-1 minus top-2 raw logit over the 32 steps. Prompts are
  re-drawn until margin >= 1e-3 so that float rounding cannot flip an argmax.
- Every saved directory is reloaded with AutoModelFor*.from_pretrained and must reproduce the
  reference logits to within 1e-5; logits std must lie in [0.5, 10]. Any failure exits 1.
"""
import json
import os
import sys
import tempfile
import time
import traceback

T0 = time.time()

import torch  # noqa: E402
import transformers  # noqa: E402
from safetensors.torch import save_file  # noqa: E402
from transformers import (  # noqa: E402
    AutoModelForCausalLM,
    AutoModelForImageClassification,
    AutoModelForMaskedLM,
    AutoModelForSeq2SeqLM,
    AutoModelForSequenceClassification,
    BertConfig,
    DynamicCache,
    EncoderDecoderCache,
    GPT2Config,
    LlamaConfig,
    MistralConfig,
    Qwen2Config,
    RobertaConfig,
    T5Config,
    ViTConfig,
)

transformers.logging.set_verbosity_error()
try:
    transformers.utils.logging.disable_progress_bar()
except AttributeError:
    pass

SEQ_LEN = 16
T5_SRC_LEN = 12
T5_DEC_LEN = 8
PAD_TAIL = (0, 5, 9)  # padded positions at the end of rows 0, 1, 2
PROMPT_LEN = 5
T5_GEN_SRC_LEN = 10
NEW_TOKENS = 32
MIN_MARGIN = 1e-3
PROMPT_TRIES = 20
RELOAD_TOL = 1e-5
STD_RANGE = (0.5, 10.0)

AUTO_CLASS = {
    "causal_lm": AutoModelForCausalLM,
    "masked_lm": AutoModelForMaskedLM,
    "classify": AutoModelForSequenceClassification,
    "seq2seq_lm": AutoModelForSeq2SeqLM,
}


class FixtureError(RuntimeError):
    pass


def llama_gqa_config():
    return LlamaConfig(
        vocab_size=1000, hidden_size=64, num_attention_heads=4, num_key_value_heads=2,
        num_hidden_layers=2, intermediate_size=96, tie_word_embeddings=False, rms_norm_eps=1e-5,
        max_position_embeddings=256,
    )


def llama3_rope_config():
    return LlamaConfig(
        vocab_size=1000, hidden_size=64, num_attention_heads=4, num_key_value_heads=2,
        num_hidden_layers=2, intermediate_size=96, tie_word_embeddings=False, rms_norm_eps=1e-5,
        max_position_embeddings=256, head_dim=24, rope_theta=500000.0,
        rope_scaling={"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0,
                      "high_freq_factor": 4.0, "original_max_position_embeddings": 64},
    )


def bert_config(**kw):
    return BertConfig(vocab_size=1000, hidden_size=64, num_attention_heads=4, num_hidden_layers=2,
                      intermediate_size=128, max_position_embeddings=64, type_vocab_size=2,
                      pad_token_id=0, **kw)


def roberta_config(**kw):
    return RobertaConfig(vocab_size=1000, hidden_size=64, num_attention_heads=4,
                         num_hidden_layers=2, intermediate_size=128, max_position_embeddings=66,
                         pad_token_id=1, type_vocab_size=1, **kw)


def t5_config(**kw):
    base = dict(vocab_size=600, d_model=64, d_kv=16, num_heads=4, num_layers=2,
                num_decoder_layers=2, d_ff=128, feed_forward_proj="relu", tie_word_embeddings=True,
                relative_attention_num_buckets=32, relative_attention_max_distance=128,
                decoder_start_token_id=0, pad_token_id=0, eos_token_id=1)
    base.update(kw)
    return T5Config(**base)


# name, family, head, generate, sharded, seed, config factory, matrix std (a number, or a dict
# from full parameter name to std with "" as the default)
FIXTURES = [
    ("gpt2", "gpt2", "causal_lm", True, False, 101, lambda: GPT2Config(
        vocab_size=1000, n_embd=64, n_head=4, n_layer=2, n_positions=128,
        bos_token_id=999, eos_token_id=999), 0.15),
    ("gpt2_odd", "gpt2", "causal_lm", True, False, 102, lambda: GPT2Config(
        vocab_size=500, n_embd=60, n_head=4, n_layer=3, n_positions=128,
        activation_function="gelu_new", bos_token_id=499, eos_token_id=499), 0.15),
    ("llama_gqa", "llama", "causal_lm", True, False, 103, llama_gqa_config, 0.15),
    ("llama_tied_mha", "llama", "causal_lm", True, False, 104, lambda: LlamaConfig(
        vocab_size=700, hidden_size=48, num_attention_heads=4, num_key_value_heads=4,
        num_hidden_layers=2, intermediate_size=80, tie_word_embeddings=True), 0.15),
    ("llama3_rope", "llama", "causal_lm", True, False, 105, llama3_rope_config, 0.15),
    ("qwen2", "llama", "causal_lm", True, False, 106, lambda: Qwen2Config(
        vocab_size=900, hidden_size=64, num_attention_heads=4, num_key_value_heads=2,
        num_hidden_layers=2, intermediate_size=96, tie_word_embeddings=False,
        use_sliding_window=False), 0.15),
    ("mistral", "llama", "causal_lm", True, False, 107, lambda: MistralConfig(
        vocab_size=800, hidden_size=64, num_attention_heads=4, num_key_value_heads=1,
        num_hidden_layers=2, intermediate_size=96, sliding_window=None), 0.15),
    ("llama_sharded", "llama", "causal_lm", True, True, 108, llama_gqa_config, 0.15),
    ("bert_mlm", "bert", "masked_lm", False, False, 201, lambda: bert_config(), 0.15),
    ("bert_cls", "bert", "classify", False, False, 202, lambda: bert_config(num_labels=3), 0.15),
    ("roberta_mlm", "bert", "masked_lm", False, False, 203, lambda: roberta_config(), 0.15),
    ("roberta_cls", "bert", "classify", False, False, 204,
     lambda: roberta_config(num_labels=4), 0.15),
    # T5 v1.0 scales the decoder output by d_model**-0.5 before the tied lm_head, so its shared
    # embedding is drawn larger to keep logits of order 1; the layers are drawn a little larger
    # too, or the (tied) input embedding dominates the residual stream and greedy decoding
    # just repeats one token.
    ("t5_v1_0", "t5", "seq2seq_lm", True, False, 301, lambda: t5_config(),
     {"": 0.2, "shared.weight": 0.7}),
    ("t5_v1_1", "t5", "seq2seq_lm", True, False, 302, lambda: t5_config(
        feed_forward_proj="gated-gelu", tie_word_embeddings=False, num_decoder_layers=3,
        d_kv=12), 0.15),
    ("vit", "vit", "classify", False, False, 401, lambda: ViTConfig(
        image_size=32, patch_size=8, num_channels=3, hidden_size=64, num_attention_heads=4,
        num_hidden_layers=2, intermediate_size=128, num_labels=10), 0.15),
]


def rerandomise(model, matrix_std):
    """Redraw every parameter (each shared/tied parameter once) so that none is trivial."""
    stds = matrix_std if isinstance(matrix_std, dict) else {"": matrix_std}
    seen = set()
    with torch.no_grad():
        for mod_name, module in model.named_modules():
            is_norm = "norm" in type(module).__name__.lower()
            is_rel_bias = mod_name.endswith("relative_attention_bias")
            for p_name, p in module.named_parameters(recurse=False):
                if id(p) in seen:
                    continue
                seen.add(id(p))
                if is_rel_bias:
                    p.normal_(0.0, 0.5)
                elif is_norm and p_name == "weight":
                    p.normal_(0.0, 0.1).add_(1.0)
                elif p_name == "bias" or p_name.endswith("_bias"):
                    p.normal_(0.0, 0.1)
                else:
                    full = f"{mod_name}.{p_name}" if mod_name else p_name
                    p.normal_(0.0, stds.get(full, stds[""]))


def padded_batch(gen, vocab, length, pad_id):
    ids = torch.randint(2, vocab, (3, length), generator=gen, dtype=torch.int64)
    mask = torch.ones(3, length, dtype=torch.int64)
    for row, tail in enumerate(PAD_TAIL):
        if tail:
            ids[row, length - tail:] = pad_id
            mask[row, length - tail:] = 0
    return ids, mask


def greedy(model, config, inputs):
    """Greedy-generate exactly NEW_TOKENS tokens with EOS disabled; return (sequences, margin)."""
    gc = model.generation_config.__class__.from_dict(model.generation_config.to_dict())
    gc.eos_token_id = None
    gc.bos_token_id = None
    gc.pad_token_id = config.pad_token_id if config.pad_token_id is not None else 0
    gc.do_sample = False
    gc.num_beams = 1
    gc.max_new_tokens = NEW_TOKENS
    gc.min_new_tokens = NEW_TOKENS
    gc.max_length = None
    gc.use_cache = True
    for attr in ("temperature", "top_p", "top_k", "repetition_penalty",
                 "no_repeat_ngram_size", "forced_bos_token_id", "forced_eos_token_id"):
        if hasattr(gc, attr):
            setattr(gc, attr, None)
    extra = {}
    if config.is_encoder_decoder:
        # generate() would size the self-attention cache from config.num_layers (the encoder's
        # depth), which breaks when num_decoder_layers differs; hand it one sized by the decoder.
        dec_cfg = model.get_decoder().config
        extra["cache"] = EncoderDecoderCache(DynamicCache(config=dec_cfg),
                                             DynamicCache(config=dec_cfg))
    out = model.generate(**inputs, generation_config=gc, return_dict_in_generate=True,
                         output_logits=True, **extra)
    seq = out.sequences
    steps = out.logits
    if len(steps) != NEW_TOKENS:
        raise FixtureError(f"generate produced {len(steps)} steps, expected {NEW_TOKENS}")
    margin = float("inf")
    start = seq.shape[1] - NEW_TOKENS
    for i, step in enumerate(steps):
        step = step.float()
        top2 = torch.topk(step[0], 2)
        margin = min(margin, float(top2.values[0] - top2.values[1]))
        if int(top2.indices[0]) != int(seq[0, start + i]):
            raise FixtureError(f"generated token {i} is not the argmax of its logits")
    return seq.contiguous(), margin


def make_generation(model, config, family, seed):
    vocab = config.vocab_size
    fallback = None
    for attempt in range(PROMPT_TRIES):
        gen = torch.Generator().manual_seed(seed * 1000 + 500 + attempt)
        if family == "t5":
            src = torch.randint(2, vocab, (1, T5_GEN_SRC_LEN), generator=gen, dtype=torch.int64)
            inputs = {"input_ids": src, "attention_mask": torch.ones_like(src)}
            key = "gen_input_ids"
            want = (1, NEW_TOKENS + 1)
        else:
            src = torch.randint(2, vocab, (1, PROMPT_LEN), generator=gen, dtype=torch.int64)
            inputs = {"input_ids": src, "attention_mask": torch.ones_like(src)}
            key = "prompt_ids"
            want = (1, PROMPT_LEN + NEW_TOKENS)
        seq, margin = greedy(model, config, inputs)
        if tuple(seq.shape) != want:
            raise FixtureError(f"generated_ids shape {tuple(seq.shape)}, expected {want}")
        if family == "t5" and int(seq[0, 0]) != config.decoder_start_token_id:
            raise FixtureError("T5 generation does not start with decoder_start_token_id")
        if margin < MIN_MARGIN:
            continue
        check_greedy_without_cache(model, config, src, seq)
        found = ({key: src.contiguous(), "generated_ids": seq,
                  "margin": torch.tensor(margin, dtype=torch.float32)}, attempt)
        # Prefer a prompt whose continuation is not one repeated token (a stronger test).
        if len(set(seq[0, -NEW_TOKENS:].tolist())) > 1:
            return found
        fallback = fallback or found
    if fallback:
        return fallback
    raise FixtureError(f"no prompt with greedy margin >= {MIN_MARGIN} in {PROMPT_TRIES} tries")


def check_greedy_without_cache(model, config, src, seq):
    """The cached greedy output is also the argmax of one full, cache-free forward pass."""
    if config.is_encoder_decoder:
        logits = model(input_ids=src, attention_mask=torch.ones_like(src),
                       decoder_input_ids=seq[:, :-1], use_cache=False).logits[0]
    else:
        logits = model(input_ids=seq[:, :-1], use_cache=False).logits[0, src.shape[1] - 1:]
    if not torch.equal(logits.argmax(-1), seq[0, -NEW_TOKENS:]):
        raise FixtureError("cached greedy generation disagrees with a full forward pass")


def forward_refs(model, config, family, head, seed):
    gen = torch.Generator().manual_seed(seed * 1000)
    refs = {}
    if family == "vit":
        pix = torch.randn(3, config.num_channels, config.image_size, config.image_size,
                          generator=gen, dtype=torch.float32)
        refs["pixel_values"] = pix
        inputs = {"pixel_values": pix}
    else:
        pad = config.pad_token_id if config.pad_token_id is not None else 0
        length = T5_SRC_LEN if family == "t5" else SEQ_LEN
        ids, mask = padded_batch(gen, config.vocab_size, length, pad)
        refs["input_ids"], refs["attention_mask"] = ids, mask
        inputs = {"input_ids": ids, "attention_mask": mask}
        if family == "bert":
            refs["token_type_ids"] = torch.zeros_like(ids)
            inputs["token_type_ids"] = refs["token_type_ids"]
        if family == "t5":
            dec = torch.randint(2, config.vocab_size, (3, T5_DEC_LEN), generator=gen,
                                dtype=torch.int64)
            dec[:, 0] = config.decoder_start_token_id
            refs["decoder_input_ids"] = dec
            inputs["decoder_input_ids"] = dec
    logits = model(**inputs).logits.float().contiguous()
    if head == "classify":
        want = (3, config.num_labels)
    elif head == "seq2seq_lm":
        want = (3, T5_DEC_LEN, config.vocab_size)
    else:
        want = (3, SEQ_LEN, config.vocab_size)
    if tuple(logits.shape) != want:
        raise FixtureError(f"logits shape {tuple(logits.shape)}, expected {want}")
    refs["logits"] = logits
    return refs, inputs


def build(name, family, head, gen_flag, sharded, seed, make_config, matrix_std, out_dir):
    torch.manual_seed(seed)
    config = make_config()
    config._attn_implementation = "eager"
    if family != "vit":
        for attr in ("bos_token_id", "eos_token_id", "pad_token_id", "decoder_start_token_id"):
            tok = getattr(config, attr, None)
            if isinstance(tok, int) and not 0 <= tok < config.vocab_size:
                raise FixtureError(f"{attr} {tok} outside vocab {config.vocab_size}")
    if family == "vit":
        model = AutoModelForImageClassification.from_config(config, attn_implementation="eager")
    else:
        model = AUTO_CLASS[head].from_config(config, attn_implementation="eager")
    model = model.float()
    rerandomise(model, matrix_std)
    model.eval()
    config = model.config

    with torch.no_grad():
        refs, inputs = forward_refs(model, config, family, head, seed)
        attempts = 0
        if gen_flag:
            gen_refs, attempts = make_generation(model, config, family, seed)
            refs.update(gen_refs)

    model_dir = os.path.join(out_dir, name)
    save_kw = {"safe_serialization": True}
    if sharded:
        save_kw["max_shard_size"] = "300KB"
    model.save_pretrained(model_dir, **save_kw)
    shards = [f for f in os.listdir(model_dir) if f.startswith("model") and
              f.endswith(".safetensors")]
    if sharded:
        if not os.path.exists(os.path.join(model_dir, "model.safetensors.index.json")):
            raise FixtureError("sharded save wrote no model.safetensors.index.json")
        if len(shards) < 3:
            raise FixtureError(f"sharded save wrote only {len(shards)} shard(s)")
    elif shards != ["model.safetensors"]:
        raise FixtureError(f"expected a single model.safetensors, got {shards}")

    refs = {k: v.contiguous() for k, v in refs.items()}
    save_file(refs, os.path.join(out_dir, name + ".ref.safetensors"))

    # Self-consistency: the saved directory alone reproduces the reference logits.
    auto = AutoModelForImageClassification if family == "vit" else AUTO_CLASS[head]
    reloaded = auto.from_pretrained(model_dir, attn_implementation="eager", dtype=torch.float32)
    reloaded.eval()
    with torch.no_grad():
        again = reloaded(**inputs).logits.float()
    diff = float((again - refs["logits"]).abs().max())
    if diff >= RELOAD_TOL:
        raise FixtureError(f"reloaded logits differ from the reference by {diff:.3g}")

    logits = refs["logits"]
    std = float(logits.std())
    if not STD_RANGE[0] <= std <= STD_RANGE[1]:
        raise FixtureError(f"logits std {std:.3g} outside {STD_RANGE}")
    n_params = sum(p.numel() for p in model.parameters())
    line = (f"{name:15s} params {n_params:7d}  logits std {std:6.3f}  max|logit| "
            f"{float(logits.abs().max()):7.3f}  reload diff {diff:.1e}")
    distinct = None
    if gen_flag:
        new = refs["generated_ids"][0, -NEW_TOKENS:]
        distinct = len(set(new.tolist()))
        line += f"  margin {float(refs['margin']):.4f} (prompt try {attempts})  " \
                f"distinct new tokens {distinct}"
    print(line, flush=True)
    if distinct == 1:
        print(f"NOTE: {name}: greedy generation collapsed to a single repeated token", flush=True)
    entry = {"name": name, "family": family, "model_type": config.model_type, "head": head,
             "generate": gen_flag, "sharded": sharded}
    return entry, distinct


def main(argv):
    if len(argv) != 2:
        print(f"usage: {argv[0]} OUT_DIR", file=sys.stderr)
        return 2
    out_dir = argv[1]
    torch.set_num_threads(2)
    os.makedirs(out_dir, exist_ok=True)
    manifest_path = os.path.join(out_dir, "manifest.json")
    if os.path.exists(manifest_path):
        os.remove(manifest_path)  # absent until this run is complete

    entries = []
    distinct_by_family = {}
    for fx in FIXTURES:
        name = fx[0]
        try:
            entry, distinct = build(*fx, out_dir)
        except Exception as exc:  # noqa: BLE001 - report which fixture failed, then stop
            traceback.print_exc()
            print(f"make_fixtures: FAILED on fixture '{name}': {type(exc).__name__}: {exc}",
                  file=sys.stderr)
            return 1
        entries.append(entry)
        if distinct is not None:
            distinct_by_family.setdefault(entry["family"], []).append(distinct)
    for family, counts in distinct_by_family.items():
        if all(c == 1 for c in counts):
            print(f"NOTE: every {family} fixture's greedy output is one repeated token", flush=True)

    manifest = {"transformers": transformers.__version__, "fixtures": entries}
    fd, tmp = tempfile.mkstemp(prefix=".manifest.", suffix=".tmp", dir=out_dir)
    with os.fdopen(fd, "w") as f:
        json.dump(manifest, f, indent=2)
        f.write("\n")
    os.replace(tmp, manifest_path)
    elapsed = time.time() - T0
    print(f"wrote {len(entries)} fixtures to {out_dir} in {elapsed:.1f} s "
          f"(transformers {transformers.__version__}, torch {torch.__version__})", flush=True)
    if elapsed >= 60:
        print(f"make_fixtures: WARNING: took {elapsed:.1f} s, budget is 60 s", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
