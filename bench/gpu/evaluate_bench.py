"""Generation (step 7): the kernel's static-cache, compiled decoding against plain transformers
`generate` (dynamic cache) at batch 1 and 64, same prompts, greedy, in one run.

The model is random with a sharpened output projection (common.sharpen_head), so that greedy
choices have clear winners and output equality is meaningful. Prompts are random token ids of
GSM8K prompt lengths; no row stops early, so every row generates max_new_tokens.

    python bench/gpu/evaluate_bench.py --out DIR
"""

import argparse

import torch

from common import Report, build_model, sharpen_head, synthetic_samples, timed

from wmss_kernels.evaluate import generate


class PadTokenizer:
    pad_token_id = 0


def new_tokens(results):
    return sum(len(ids) for ids, _ in results)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default="bench/results")
    ap.add_argument("--size", default="0.6B")
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--new-tokens", type=int, default=256)
    a = ap.parse_args()
    rep = Report("evaluate", a.out)
    model = build_model(a.size)
    sharpen_head(model, 10.0)
    eos = [151645]
    tok = PadTokenizer()
    prompts = [ids for ids, _ in synthetic_samples(2 * a.batch, 100, 250, seed=3)]
    set_a, set_b = prompts[:a.batch], prompts[a.batch:]
    width = -(-max(len(p) for p in prompts) // 64) * 64  # as evaluate.static_batch_shape does per dataset

    one, t_one = timed(generate, model, tok, set_a[:2], 128, eos)
    out1, t_one = timed(generate, model, tok, set_a[2:4], 128, eos)
    rep.add("generate_batch1_tokens_per_s", new_tokens(out1) / t_one, "tok/s")

    generate(model, tok, set_b[:8], 8, eos)  # warm-up
    plain, t_plain = timed(generate, model, tok, set_a, a.new_tokens, eos)
    rep.add(f"generate_batch{a.batch}_tokens_per_s", new_tokens(plain) / t_plain, "tok/s")

    ours_a, t_first = timed(generate, model, tok, set_a, a.new_tokens, eos, (a.batch, width))
    rep.add("kernel_first_batch_s", t_first, "s", "includes compiling the decoding step")
    ours_b, t_ours = timed(generate, model, tok, set_b, a.new_tokens, eos, (a.batch, width))
    rep.add(f"kernel_batch{a.batch}_tokens_per_s", new_tokens(ours_b) / t_ours, "tok/s")
    same_rows = sum(x[0] == y[0] for x, y in zip(ours_a, plain))
    same_tokens = sum(sum(p == q for p, q in zip(x[0], y[0])) for x, y in zip(ours_a, plain))
    first_diff = [next((i for i, (p, q) in enumerate(zip(x[0], y[0])) if p != q), None) for x, y in zip(ours_a, plain)]
    rep.add("identical_rows", f"{same_rows}/{len(plain)}")
    rep.add("identical_token_fraction", same_tokens / new_tokens(plain))
    rep.add("earliest_divergence", min((d for d in first_diff if d is not None), default=None),
            "", "generated-token index of the first difference, if any")
    rep.ratio(f"kernel_speedup_vs_generate_batch{a.batch}", t_plain / t_ours, ">= 6")
    # bf16 kernels that differ in padding width and cache layout round differently, and a flipped
    # near-tie changes the rest of a row; in float32 both paths must agree token for token
    del model
    torch.cuda.empty_cache()
    model32 = build_model(a.size, dtype=torch.float32)
    sharpen_head(model32, 10.0)
    few = set_a[:16]
    plain32 = generate(model32, tok, few, 64, eos)
    ours32 = generate(model32, tok, few, 64, eos, (16, width))
    rep.add("float32_identical_rows", f"{sum(x[0] == y[0] for x, y in zip(ours32, plain32))}/{len(few)}",
            "", "16 prompts × 64 tokens, float32 weights")
    rep.ratio("kernel_speedup_vs_generate_batch1", (new_tokens(ours_b) / t_ours) /
              rep.figures["generate_batch1_tokens_per_s"], "(information)")
    rep.save()


if __name__ == "__main__":
    main()
