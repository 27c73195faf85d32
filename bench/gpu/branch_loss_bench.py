"""The per-branch losses of joint training (tracking.log_branch_losses): one optimizer step of the
fused 0.6B+0.6B model with them (one extra forward of each output head per micro-batch) against
the same step without, same data, in one run. The kernel computes them on every BRANCH_LOSS_EVERY-th step, so
the sampled overhead is that fraction of the per-step one (BRANCH_LOSS_EVERY).

    python bench/gpu/branch_loss_bench.py --out DIR
"""

import argparse

import torch
from common import GSM8K_LENGTHS, Report, build_model, synthetic_samples
from sft_bench import examples_of, kernel_steps
from wmss_kernels.fused import FusedCausalLM, FusedLMLoss
from wmss_kernels.tracking import BRANCH_LOSS_EVERY
from wmss_kernels.train_step import compile_layers


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default="bench/results")
    ap.add_argument("--size", default="0.6B")
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--global-batch", type=int, default=128)
    ap.add_argument("--micro", type=int, default=16)
    ap.add_argument(
        "--compile-layers", action="store_true", help="torch.compile each decoder layer, as train() does on CUDA"
    )
    a = ap.parse_args()
    rep = Report("branch_loss_compiled" if a.compile_layers else "branch_loss", a.out)
    examples = examples_of(synthetic_samples(2048, *GSM8K_LENGTHS))
    fused = FusedCausalLM(build_model(a.size), build_model(a.size, seed=1), 0.5)
    if a.compile_layers:
        for sub in fused.sub_models:
            compile_layers(sub)
    loss = FusedLMLoss(fused)
    times = {}
    # twice in alternation, so neither setting gets the warmer device
    for tracked in (False, True, False, True):
        loss.track_branches = tracked
        s, _, _, _ = kernel_steps(fused, loss, examples, a.micro, a.global_batch, a.steps)
        times.setdefault(tracked, []).append(s)
        loss.branch_loss_sums = None
    off, on = min(times[False]), min(times[True])
    rep.add("joint_step_s", off, "s", "per-branch losses off")
    rep.add("joint_step_with_branch_losses_s", on, "s", "on every step")
    rep.ratio("every_step_over_off", on / off, "none: measured")
    rep.ratio(
        "sampled_over_off",
        1 + (on / off - 1) / BRANCH_LOSS_EVERY,
        f"<= 1.01 (every {BRANCH_LOSS_EVERY}th step, derived)",
    )
    del fused
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
    rep.save()


if __name__ == "__main__":
    main()
