"""Entropy (steps 0 and 2): the kernel's batched path against the original's method, in one run.

baseline  the original (docs/method.md#entropy-steps-0-and-2): batch 1, `model(ids, labels=…)` with the whole [T, V]
          logits in bf16, softmax in bf16, −Σ p·ln(p + 1e-12) over the rows whose label ≠ −100.
kernel    wmss_kernels.entropy.batch_entropies over length-bucketed batches (make_batches):
          no attention mask, LM head only on scored rows, float32 entropy in chunks.
bare      the base model's forward (no LM head) over the same batches: the floor.
reference float32 entropy of the same rows, batch 1, full-precision head: the accuracy yardstick.

    python bench/gpu/entropy_bench.py --out DIR [--sizes 0.6B,1.7B,4B]
"""

import argparse

import torch
from common import (
    DEVICE,
    GSM8K_LENGTHS,
    LONG_LENGTHS,
    Report,
    build_model,
    peak_gib,
    peak_reset,
    synthetic_samples,
    timed,
)
from wmss_kernels.entropy import batch_entropies, make_batches


@torch.no_grad()
def original_method(model, samples):
    out = []
    for ids, n_prompt in samples:
        x = torch.tensor([ids], device=DEVICE)
        labels = x.clone()
        labels[:, :n_prompt] = -100
        logits = model(input_ids=x, labels=labels, use_cache=True).logits[0]
        rows = logits[labels[0] != -100]
        p = torch.softmax(rows, dim=-1)  # model dtype (bf16)
        out.append(float((-(p * torch.log(p + 1e-12)).sum(-1)).mean()) if rows.shape[0] else 0.0)
    return out


@torch.no_grad()
def float32_reference(model, samples):
    base, weight = model.model, model.lm_head.weight.float()
    out = []
    for ids, n_prompt in samples:
        h = base(input_ids=torch.tensor([ids], device=DEVICE)).last_hidden_state[0, n_prompt:].float()
        logp = torch.log_softmax(h @ weight.T, dim=-1)
        out.append(float((-(logp.exp() * logp).sum(-1)).mean()))
    return out


def kernel_path(model, samples, batch_tokens, vocab_chunk):
    seqs, n_prompts = [s[0] for s in samples], [s[1] for s in samples]
    out = [0.0] * len(samples)
    for batch in make_batches([len(s) for s in seqs], batch_tokens):
        means, _ = batch_entropies(
            model, [seqs[i] for i in batch], [n_prompts[i] for i in batch], "repo", vocab_chunk, 0
        )
        for i, m in zip(batch, means):
            out[i] = m
    return out


@torch.no_grad()
def bare_forward(model, samples, batch_tokens):
    seqs = [s[0] for s in samples]
    for batch in make_batches([len(s) for s in seqs], batch_tokens):
        longest = max(len(seqs[i]) for i in batch)
        ids = torch.zeros((len(batch), longest), dtype=torch.long)
        for r, i in enumerate(batch):
            ids[r, : len(seqs[i])] = torch.tensor(seqs[i])
        model.model(input_ids=ids.to(DEVICE), use_cache=False)


def measure(rep, model, label, samples, batch_tokens, vocab_chunk, with_baseline=True):
    tokens = sum(len(s[0]) for s in samples)
    kernel_path(model, samples[:8], batch_tokens, vocab_chunk)  # warm-up (cuBLAS, allocator)
    peak_reset()
    ours, t_ours = timed(kernel_path, model, samples, batch_tokens, vocab_chunk)
    rep.add(f"{label}.kernel_tokens_per_s", tokens / t_ours, "tok/s")
    rep.add(f"{label}.kernel_peak_gib", peak_gib(), "GiB")
    _, t_bare = timed(bare_forward, model, samples, batch_tokens)
    rep.add(f"{label}.bare_forward_tokens_per_s", tokens / t_bare, "tok/s")
    rep.ratio(f"{label}.kernel_time_over_bare_forward", t_ours / t_bare, "<= 1.15")
    if not with_baseline:
        return
    original_method(model, samples[:4])
    peak_reset()
    base, t_base = timed(original_method, model, samples)
    rep.add(f"{label}.original_tokens_per_s", tokens / t_base, "tok/s")
    rep.add(f"{label}.original_peak_gib", peak_gib(), "GiB")
    ref = float32_reference(model, samples)
    rep.add(f"{label}.max_abs_diff_kernel_vs_fp32_reference", max(abs(a - b) for a, b in zip(ours, ref)), "nats")
    rep.add(f"{label}.max_abs_diff_original_vs_fp32_reference", max(abs(a - b) for a, b in zip(base, ref)), "nats")
    rep.add(f"{label}.mean_entropy", sum(ours) / len(ours), "nats")
    rep.ratio(f"{label}.speedup_vs_original", t_base / t_ours, ">= 4")
    weights = sum(p.numel() * p.element_size() for p in model.parameters()) / 2**30
    rep.add(f"{label}.kernel_peak_above_weights_gib", rep.figures[f"{label}.kernel_peak_gib"] - weights, "GiB")
    rep.add(f"{label}.original_peak_above_weights_gib", rep.figures[f"{label}.original_peak_gib"] - weights, "GiB")
    rep.ratio(
        f"{label}.peak_memory_vs_original",
        rep.figures[f"{label}.kernel_peak_gib"] / max(rep.figures[f"{label}.original_peak_gib"], 1e-9),
        "<= 0.5",
    )


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default="bench/results")
    ap.add_argument("--sizes", default="0.6B", help="comma-separated Qwen3 shapes; baselines on the first only")
    ap.add_argument("--samples", type=int, default=512)
    ap.add_argument("--long-samples", type=int, default=48)
    ap.add_argument("--batch-tokens", type=int, default=32768)
    ap.add_argument("--vocab-chunk", type=int, default=1024)
    a = ap.parse_args()
    rep = Report("entropy", a.out)
    for k, size in enumerate(a.sizes.split(",")):
        model = build_model(size)
        rep.add(f"{size}.parameters", sum(p.numel() for p in model.parameters()))
        measure(
            rep,
            model,
            f"{size}.gsm8k",
            synthetic_samples(a.samples, *GSM8K_LENGTHS),
            a.batch_tokens,
            a.vocab_chunk,
            with_baseline=k == 0,
        )
        measure(
            rep,
            model,
            f"{size}.long",
            synthetic_samples(a.long_samples, *LONG_LENGTHS, seed=1),
            a.batch_tokens,
            a.vocab_chunk,
            with_baseline=k == 0,
        )
        del model
        if DEVICE == "cuda":
            torch.cuda.empty_cache()
    rep.save()


if __name__ == "__main__":
    main()
