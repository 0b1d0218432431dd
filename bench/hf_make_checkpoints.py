#!/usr/bin/env python3
"""Random-weight Hugging Face checkpoints for bench/hf_models.sh (Sculpt's HF models against
`transformers`). Nothing is downloaded: each model is built from its config with transformers'
own random init (seed 0) and written with save_pretrained (safetensors, fp32).

    $SCULPT_PYTHON bench/hf_make_checkpoints.py OUT_DIR

writes
  OUT_DIR/llama_bench/  LlamaForCausalLM: hidden 512, 8 layers, 8 heads, 2 KV heads, intermediate
                        1408, vocab 32000 (untied head): ~55 M parameters, 221 MB
  OUT_DIR/gpt2_124m/    GPT2LMHeadModel with GPT2Config() defaults: n_embd 768, 12 layers, vocab
                        50257, 1024 positions, tied head: ~124 M parameters, 498 MB
A folder that already holds config.json and model.safetensors is left as it is.
"""
import os
import sys


def main():
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    out = sys.argv[1]
    import torch
    import transformers
    from transformers import GPT2Config, GPT2LMHeadModel, LlamaConfig, LlamaForCausalLM

    transformers.logging.set_verbosity_error()
    models = {
        "llama_bench": lambda: LlamaForCausalLM(LlamaConfig(
            hidden_size=512, num_hidden_layers=8, num_attention_heads=8, num_key_value_heads=2,
            intermediate_size=1408, vocab_size=32000, max_position_embeddings=2048,
            tie_word_embeddings=False)),
        "gpt2_124m": lambda: GPT2LMHeadModel(GPT2Config()),
    }
    for name, make in models.items():
        d = os.path.join(out, name)
        if all(os.path.exists(os.path.join(d, f)) for f in ("config.json", "model.safetensors")):
            print(f"{d}: present")
            continue
        torch.manual_seed(0)
        model = make().eval()
        tmp = d + ".tmp"
        model.save_pretrained(tmp, safe_serialization=True)
        os.replace(tmp, d)  # a folder is complete or absent
        n = sum(p.numel() for p in model.parameters())
        print(f"{d}: {n / 1e6:.1f} M parameters")


if __name__ == "__main__":
    main()
