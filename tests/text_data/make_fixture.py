#!/usr/bin/env python3
"""Fixtures of the text-dataset tests (tests/text_data/) and of configs/text_classify_distill.yaml
in tests/integration/test_configs.cpp: python make_fixture.py OUT writes

  OUT/bert/        a small random BertForSequenceClassification (4 layers, 3 labels) with a
                   WordPiece tokenizer trained on examples/text_classify/train.jsonl
                   (tokenizer.json, tokenizer_config.json, special_tokens_map.json)
  OUT/bert_other/  another WordPiece tokenizer (a smaller vocabulary): another fingerprint
  OUT/bpe/         a byte-level BPE tokenizer with <|endoftext|> (the lm shape)
  OUT/bert_pairs/  the BERT's config and tokenizer with weights drawn wider (N(0, 0.3)), so
                   that the token type embeddings move the logits (text-pair parity)
  OUT/expected.json  the Python tokenizers' ids of the first lines of the example file (single
                   texts and pairs, with the pairs' token_type_ids), for the end-to-end checks,
                   and bert_pairs' logits on those pairs (padded, token_type_ids passed), as
                   transformers computes them

Everything is seeded; rerunning writes the same files. Needs `tokenizers`, `transformers` and
`torch` from the venv."""
import json
import os
import sys

here = os.path.dirname(os.path.abspath(__file__))
root = os.path.dirname(os.path.dirname(here))


def texts():
    with open(os.path.join(root, "examples", "text_classify", "train.jsonl"), encoding="utf-8") as f:
        return [json.loads(line)["text"] for line in f if line.strip()]


def wordpiece(corpus, vocab_size, out_dir):
    from tokenizers import BertWordPieceTokenizer
    from transformers import PreTrainedTokenizerFast

    tok = BertWordPieceTokenizer(lowercase=True, strip_accents=True, clean_text=True,
                                 handle_chinese_chars=True)
    tok.train_from_iterator(corpus, vocab_size=vocab_size, min_frequency=1,
                            special_tokens=["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"])
    from tokenizers.processors import TemplateProcessing
    cls, sep = tok.token_to_id("[CLS]"), tok.token_to_id("[SEP]")
    tok._tokenizer.post_processor = TemplateProcessing(
        single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B:1 [SEP]:1",
        special_tokens=[("[CLS]", cls), ("[SEP]", sep)])
    fast = PreTrainedTokenizerFast(tokenizer_object=tok._tokenizer, unk_token="[UNK]",
                                   pad_token="[PAD]", cls_token="[CLS]", sep_token="[SEP]",
                                   mask_token="[MASK]")
    os.makedirs(out_dir, exist_ok=True)
    fast.save_pretrained(out_dir)
    return fast


def main(out):
    import torch
    from transformers import BertConfig, BertForSequenceClassification

    corpus = texts()
    bert = wordpiece(corpus, 400, os.path.join(out, "bert"))
    wordpiece(corpus, 200, os.path.join(out, "bert_other"))

    torch.manual_seed(0)
    config = BertConfig(vocab_size=len(bert), hidden_size=32, num_hidden_layers=4,
                        num_attention_heads=2, intermediate_size=64,
                        max_position_embeddings=128, num_labels=3, pad_token_id=bert.pad_token_id,
                        hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    model = BertForSequenceClassification(config)
    model.save_pretrained(os.path.join(out, "bert"), safe_serialization=True)

    from tokenizers import ByteLevelBPETokenizer
    from transformers import PreTrainedTokenizerFast
    bpe = ByteLevelBPETokenizer()
    bpe.train_from_iterator(corpus, vocab_size=400, min_frequency=1,
                            special_tokens=["<|endoftext|>"])
    fast = PreTrainedTokenizerFast(tokenizer_object=bpe._tokenizer, eos_token="<|endoftext|>",
                                   bos_token="<|endoftext|>", unk_token="<|endoftext|>")
    fast.save_pretrained(os.path.join(out, "bpe"))

    torch.manual_seed(1)
    pair_model = BertForSequenceClassification(config)
    with torch.no_grad():
        for name, p in pair_model.named_parameters():
            if "LayerNorm" not in name:
                p.normal_(0.0, 0.3)
    pair_model.save_pretrained(os.path.join(out, "bert_pairs"), safe_serialization=True)
    bert.save_pretrained(os.path.join(out, "bert_pairs"))

    first = corpus[:20]
    pairs_a, pairs_b = first, first[1:] + first[:1]
    batch = bert(pairs_a, pairs_b, padding=True, return_token_type_ids=True,
                 return_tensors="pt")
    pair_model.eval()
    with torch.no_grad():
        pair_logits = pair_model(**batch).logits
        batch["token_type_ids"].zero_()
        moved = float((pair_logits - pair_model(**batch).logits).abs().max())
    if moved < 0.05:
        sys.exit(f"bert_pairs: token types move the logits by {moved} only")
    expected = {
        "texts": first,
        "ids": [bert(t)["input_ids"] for t in first],
        "pair_ids": [bert(a, b)["input_ids"] for a, b in zip(pairs_a, pairs_b)],
        "pair_type_ids": [bert(a, b, return_token_type_ids=True)["token_type_ids"]
                          for a, b in zip(pairs_a, pairs_b)],
        "pair_logits": pair_logits.tolist(),
        "bpe_ids": [fast(t)["input_ids"] for t in first],
        "pad_id": bert.pad_token_id,
        "vocab_size": len(bert),
    }
    with open(os.path.join(out, "expected.json"), "w", encoding="utf-8") as f:
        json.dump(expected, f, ensure_ascii=False)


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: make_fixture.py OUT")
    main(sys.argv[1])
