"""Loads a folder `sculpt export --format hf` wrote with transformers and compares its outputs
with Sculpt's. Usage: check_export.py EXPORT_DIR REFERENCE.safetensors
The reference holds the inputs Sculpt ran (input_ids with -1 for padding, or pixel_values; T5's
decoder_input_ids) and Sculpt's logits. Exit 0 when transformers' logits are within 1e-4 at
every non-padding position, 1 otherwise (the difference printed), 2 on bad usage."""
import json
import sys

import torch
import transformers
from safetensors.torch import load_file


def main():
    if len(sys.argv) != 3:
        print(__doc__, file=sys.stderr)
        return 2
    out, ref_path = sys.argv[1], sys.argv[2]
    ref = load_file(ref_path)
    arch = json.load(open(f"{out}/config.json"))["architectures"][0]
    model = getattr(transformers, arch).from_pretrained(out, attn_implementation="eager").eval()
    with torch.no_grad():
        if "pixel_values" in ref:
            logits = model(pixel_values=ref["pixel_values"]).logits
            valid = None
        else:
            ids = ref["input_ids"]
            mask = (ids >= 0).long()
            pad = model.config.pad_token_id if model.config.pad_token_id is not None else 0
            ids = torch.where(mask.bool(), ids, torch.full_like(ids, pad))
            kwargs = {"input_ids": ids, "attention_mask": mask}
            if "decoder_input_ids" in ref:
                kwargs["decoder_input_ids"] = ref["decoder_input_ids"]
            logits = model(**kwargs).logits
            valid = mask if logits.dim() == 3 and "decoder_input_ids" not in ref else None
    ours = ref["logits"]
    if logits.shape != ours.shape:
        print(f"shape: transformers {tuple(logits.shape)}, Sculpt {tuple(ours.shape)}")
        return 1
    diff = (logits - ours).abs()
    if valid is not None:
        diff = diff * valid.unsqueeze(-1)
    worst = diff.max().item()
    print(f"{arch}: max |transformers - Sculpt| = {worst:.3g}")
    return 0 if worst <= 1e-4 else 1


if __name__ == "__main__":
    sys.exit(main())
