"""Joint training (step 5b): one optimizer step of the fused weak+strong model (both branches
trainable, FusedLMLoss: z_mix from concatenated hidden states and heads) against the same step of
one model (sft), same data and global batch, in one run. Goal: ≤ 2.1× one model's step.

    python bench/gpu/joint_bench.py --out DIR
"""

import argparse

import torch
from common import GSM8K_LENGTHS, LONG_LENGTHS, Report, build_model, synthetic_samples
from sft_bench import examples_of, kernel_steps
from wmss_kernels.fused import FusedCausalLM, FusedLMLoss
from wmss_kernels.train_batches import CausalLMLoss
from wmss_kernels.train_step import compile_layers


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default="bench/results")
    ap.add_argument("--size", default="0.6B")
    ap.add_argument("--steps", type=int, default=8)
    ap.add_argument(
        "--compile-layers", action="store_true", help="torch.compile each decoder layer, as train() does on CUDA"
    )
    a = ap.parse_args()
    rep = Report("joint", a.out)
    for label, samples, micro, global_batch in (
        ("gsm8k", synthetic_samples(2048, *GSM8K_LENGTHS), 16, 128),
        ("long", synthetic_samples(256, *LONG_LENGTHS, seed=1), 2, 16),
    ):
        examples = examples_of(samples)
        one = build_model(a.size)
        if a.compile_layers:
            compile_layers(one)
        s1, m1, _, _ = kernel_steps(one, CausalLMLoss(one), examples, micro, global_batch, a.steps)
        rep.add(f"{label}.one_model_step_s", s1, "s")
        rep.add(f"{label}.one_model_peak_gib", m1, "GiB")
        fused = FusedCausalLM(one, build_model(a.size, seed=1), 0.5)
        if a.compile_layers:
            compile_layers(fused.sub_models[1])
        s2, m2, _, _ = kernel_steps(fused, FusedLMLoss(fused), examples, micro, global_batch, a.steps)
        rep.add(f"{label}.joint_step_s", s2, "s", "both branches trainable")
        rep.add(f"{label}.joint_peak_gib", m2, "GiB")
        rep.ratio(f"{label}.joint_over_one_model", s2 / s1, "<= 2.1")
        del one, fused
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
    rep.save()


if __name__ == "__main__":
    main()
