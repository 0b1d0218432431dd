#!/usr/bin/env python3
"""The `transformers` side of build/bin/bench_hf_models (bench/hf_models.cpp): the same modes on
the same checkpoint, each printing one JSON line with the same keys.

  train DIR [WARMUP=3] [STEPS=10]  AutoModelForCausalLM.from_pretrained (fp32, the default
      attention implementation: sdpa), a plain PyTorch loop at batch 4, sequence 256:
      torch.optim.AdamW (lr 1e-4, weight decay 0.01, one group), zero_grad, forward
      (use_cache=False), F.cross_entropy over the 4 x 256 next tokens, backward, step.
  generate DIR [REPS=5] [NEW=64]   model.generate(do_sample=False, max_new_tokens=NEW,
      min_new_tokens=NEW) after the same 16-token prompt at batch 1 (KV cache on); one untimed
      run, then the median of REPS; the generated ids.
  load DIR                         imports transformers and calls from_pretrained, nothing else:
      time the whole process from outside.
Threads: BENCH_THREADS, else OMP_NUM_THREADS, else 2 (torch.set_num_threads; not in load mode,
where the environment decides on both sides). BENCH_PROFILE=N: after the timing, one more step
or generation under torch.profiler, and its N ops of most self CPU time on stderr.
BENCH_REF_FUSED=1: train with torch.optim.AdamW(fused=True) (transformers' Trainer default).

    OMP_NUM_THREADS=2 $SCULPT_PYTHON bench/hf_models_ref.py train build/bench-hf/llama_bench
"""
import json
import os
import sys
import time


def peak_rss_mib():
    """VmHWM of this process (what /proc/self/status says, as on the C++ side), MiB."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024.0
    return -1.0


def rss_mib():
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024.0
    return -1.0


def bench_ids(rows, cols, vocab, salt):
    """The benchmark's token ids, the same formula as hf_models.cpp."""
    import torch
    r = torch.arange(rows, dtype=torch.long).unsqueeze(1)
    c = torch.arange(cols, dtype=torch.long)
    return (r * 7919 + c * 104729 + salt * 31337 + 17).remainder(vocab - 3) + 3


def maybe_profile(fn):
    n = os.environ.get("BENCH_PROFILE")
    if not n:
        return
    from torch.profiler import ProfilerActivity, profile
    with profile(activities=[ProfilerActivity.CPU]) as p:
        fn()
    print(p.key_averages().table(sort_by="self_cpu_time_total", row_limit=max(1, int(n))),
          file=sys.stderr)


def threads():
    for v in ("BENCH_THREADS", "OMP_NUM_THREADS"):
        if os.environ.get(v):
            return int(os.environ[v])
    return 2


def load_model(d):
    import transformers
    from transformers import AutoModelForCausalLM
    transformers.logging.set_verbosity_error()
    try:
        transformers.utils.logging.disable_progress_bar()
    except AttributeError:
        pass
    import torch
    return AutoModelForCausalLM.from_pretrained(d, dtype=torch.float32)


def train(d, warmup, steps):
    import statistics
    import torch
    import torch.nn.functional as F
    torch.set_num_threads(threads())
    batch, length = 4, 256
    model = load_model(d)
    rss_loaded = rss_mib()
    model.train()
    vocab = model.config.vocab_size
    ids = bench_ids(batch, length + 1, vocab, 0)
    x, y = ids[:, :length].contiguous(), ids[:, 1:].contiguous()
    # BENCH_REF_FUSED=1: fused=True, what transformers' Trainer uses by default (optim
    # "adamw_torch_fused" with torch >= 2.8); the peer is the plain loop's default AdamW.
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4, betas=(0.9, 0.999), eps=1e-8,
                            weight_decay=0.01, fused=os.environ.get("BENCH_REF_FUSED") == "1")
    times, fwd, bwd, upd, losses = [], [], [], [], []

    def step():
        t0 = time.perf_counter()
        opt.zero_grad()
        logits = model(input_ids=x, use_cache=False).logits
        loss = F.cross_entropy(logits.reshape(-1, logits.size(-1)), y.reshape(-1))
        t1 = time.perf_counter()
        loss.backward()
        t2 = time.perf_counter()
        opt.step()
        t3 = time.perf_counter()
        fwd.append(1e3 * (t1 - t0)), bwd.append(1e3 * (t2 - t1)), upd.append(1e3 * (t3 - t2))
        times.append(1e3 * (t3 - t0))
        return loss

    for i in range(warmup + steps):
        losses.append(step().item())
        if i < warmup:
            del times[-1], fwd[-1], bwd[-1], upd[-1]
    print(json.dumps({
        "side": "transformers", "mode": "train", "threads": torch.get_num_threads(),
        "params": sum(p.numel() for p in model.parameters()), "attn": model.config._attn_implementation,
        "warmup": warmup, "steps": steps, "ms_per_step": round(statistics.median(times), 2),
        "ms_min": round(min(times), 2), "ms_forward_loss": round(statistics.median(fwd), 2),
        "ms_backward": round(statistics.median(bwd), 2), "ms_optimizer": round(statistics.median(upd), 2),
        "loss_first": round(losses[0], 6),
        "loss_last": round(losses[-1], 6), "rss_loaded_mib": round(rss_loaded, 1),
        "peak_rss_mib": round(peak_rss_mib(), 1)}), flush=True)
    maybe_profile(step)


def generate(d, reps, new_tokens):
    import statistics
    import torch
    torch.set_num_threads(threads())
    model = load_model(d).eval()
    prompt = bench_ids(1, 16, model.config.vocab_size, 1)
    mask = torch.ones_like(prompt)
    pad = model.config.pad_token_id
    if pad is None:
        pad = model.config.eos_token_id if model.config.eos_token_id is not None else 0
    kw = dict(attention_mask=mask, do_sample=False, num_beams=1, max_new_tokens=new_tokens,
              min_new_tokens=new_tokens, pad_token_id=pad, use_cache=True)
    with torch.no_grad():
        out = model.generate(prompt, **kw)  # untimed
        times = []
        for _ in range(reps):
            t0 = time.perf_counter()
            out = model.generate(prompt, **kw)
            times.append(1e3 * (time.perf_counter() - t0))
    print(json.dumps({
        "side": "transformers", "mode": "generate", "threads": torch.get_num_threads(),
        "new_tokens": new_tokens, "reps": reps, "ms": round(statistics.median(times), 2),
        "ms_min": round(min(times), 2), "peak_rss_mib": round(peak_rss_mib(), 1),
        "ids": out.reshape(-1).tolist()}), flush=True)
    with torch.no_grad():
        maybe_profile(lambda: model.generate(prompt, **kw))


def load(d):
    t0 = time.perf_counter()
    model = load_model(d)
    print(json.dumps({
        "side": "transformers", "mode": "load", "params": sum(p.numel() for p in model.parameters()),
        "ms_in_process": round(1e3 * (time.perf_counter() - t0), 1),
        "peak_rss_mib": round(peak_rss_mib(), 1)}))


def main():
    if len(sys.argv) < 3 or sys.argv[1] not in ("train", "generate", "load"):
        sys.exit(__doc__)
    mode, d = sys.argv[1], sys.argv[2]
    arg = lambda i, default: int(sys.argv[i]) if len(sys.argv) > i else default  # noqa: E731
    if mode == "train":
        train(d, arg(3, 3), arg(4, 10))
    elif mode == "generate":
        generate(d, arg(3, 5), arg(4, 64))
    else:
        load(d)


if __name__ == "__main__":
    main()
