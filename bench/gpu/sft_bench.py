"""SFT (step 1): the kernel's optimizer step against transformers' Trainer, in one run.

kernel   wmss_kernels.train_step.optimizer_step with CausalLMLoss (no attention mask, loss from the
         hidden states chunk by chunk, length-sorted micro-batches), fused AdamW, bf16 weights.
baseline transformers.Trainer on the same model shape, data, global batch and precision (bf16
         weights, bf16 autocast, fused AdamW, pad-to-longest batches with an attention mask).
Tokens/s counts real (non-pad) tokens. MFU = tokens/s × FLOPs/token ÷ the bf16 matmul peak
measured in the same run (common.train_flops_per_token states the FLOP formula).

    python bench/gpu/sft_bench.py --out DIR [--profile] [--sizes 0.6B,1.7B] [--configs gsm8k,long]
"""

import argparse
import tempfile

import torch
from common import (
    DEVICE,
    GSM8K_LENGTHS,
    LONG_LENGTHS,
    Report,
    build_model,
    matmul_peak_tflops,
    peak_gib,
    peak_reset,
    sync,
    synthetic_samples,
    train_flops_per_token,
)
from wmss_kernels.train_batches import CausalLMLoss, make_example, step_indices
from wmss_kernels.train_step import compile_layers, make_optimizer, optimizer_step

CUDA = torch.device(DEVICE)
WARMUP = 3


def examples_of(samples):
    return [make_example(ids, n_prompt) for ids, n_prompt in samples]


def kernel_steps(model, loss_module, examples, micro, global_batch, steps, profile=False):
    """Seconds per optimizer step after WARMUP steps, and the peak memory."""
    import time

    forward = loss_module
    opt, params = make_optimizer(model, 1e-5, 0.0, CUDA)
    autocast = torch.autocast("cuda", dtype=torch.bfloat16, enabled=DEVICE == "cuda")
    model.train()
    peak_reset()
    times, first = [], None
    for step in range(steps):
        idx = step_indices(step, len(examples), global_batch, seed=0)
        mine = [examples[i] for i in idx]
        n_tgt = max(1, sum(e["n_targets"] for e in mine))
        sync()
        t = time.perf_counter()
        loss, _, _ = optimizer_step(forward, None, mine, n_tgt, micro, 1, CUDA, autocast, params, 1.0, opt)
        loss.item()
        sync()
        times.append(time.perf_counter() - t)
        first = first or float(loss) / n_tgt
    if profile:
        from torch.profiler import ProfilerActivity
        from torch.profiler import profile as torch_profile

        with torch_profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
            optimizer_step(forward, None, mine, n_tgt, micro, 1, CUDA, autocast, params, 1.0, opt)
            sync()
        print(prof.key_averages().table(sort_by="cuda_time_total", row_limit=25), flush=True)
    del opt
    return sum(times[WARMUP:]) / len(times[WARMUP:]), peak_gib(), times[0], first


def trainer_steps(model, examples, micro, global_batch, steps):
    """Seconds per optimizer step of transformers.Trainer after WARMUP steps, and its peak memory."""
    import time

    from transformers import Trainer, TrainerCallback, TrainingArguments

    class Data(torch.utils.data.Dataset):
        def __len__(self):
            return len(examples)

        def __getitem__(self, i):
            return examples[i]

    def collate(batch):
        width = max(len(e["input_ids"]) for e in batch)
        ids = torch.zeros(len(batch), width, dtype=torch.long)
        labels = torch.full((len(batch), width), -100, dtype=torch.long)
        mask = torch.zeros(len(batch), width, dtype=torch.long)
        for r, e in enumerate(batch):
            n = len(e["input_ids"])
            ids[r, :n], labels[r, :n], mask[r, :n] = torch.tensor(e["input_ids"]), torch.tensor(e["labels"]), 1
        return {"input_ids": ids, "labels": labels, "attention_mask": mask}

    times = []

    class Clock(TrainerCallback):
        def on_step_begin(self, args, state, control, **kw):
            sync()
            self.t = time.perf_counter()

        def on_step_end(self, args, state, control, **kw):
            sync()
            times.append(time.perf_counter() - self.t)

    with tempfile.TemporaryDirectory() as tmp:
        args = TrainingArguments(
            output_dir=tmp,
            per_device_train_batch_size=micro,
            gradient_accumulation_steps=global_batch // micro,
            max_steps=steps,
            learning_rate=1e-5,
            lr_scheduler_type="linear",
            max_grad_norm=1.0,
            bf16=DEVICE == "cuda",
            optim="adamw_torch_fused" if DEVICE == "cuda" else "adamw_torch",
            save_strategy="no",
            report_to=[],
            logging_steps=1000,
            disable_tqdm=True,
            remove_unused_columns=False,
            dataloader_num_workers=0,
            seed=0,
        )
        model.train()
        peak_reset()
        Trainer(model=model, args=args, train_dataset=Data(), data_collator=collate, callbacks=[Clock()]).train()
    return sum(times[WARMUP:]) / len(times[WARMUP:]), peak_gib()


@torch.no_grad()
def compiled_vs_eager(compiled, eager):
    """Largest relative difference of the summed loss between the compiled and the eager model
    (same weights) over a few micro-batches of both lengths."""
    from wmss_kernels.train_batches import collate

    worst = 0.0
    with torch.autocast("cuda", dtype=torch.bfloat16, enabled=DEVICE == "cuda"):
        for seed, (lo, hi) in enumerate((GSM8K_LENGTHS, GSM8K_LENGTHS, LONG_LENGTHS, LONG_LENGTHS)):
            batch = collate(examples_of(synthetic_samples(4, lo, hi, seed=10 + seed)), CUDA)
            args = (batch["input_ids"], batch["labels"])
            x, y = CausalLMLoss(compiled)(*args).float(), CausalLMLoss(eager)(*args).float()
            worst = max(worst, float((x - y).abs() / y.abs()))
    return worst


def run_config(
    rep, label, model, samples, micro, trainer_micro, global_batch, steps, peak, profile, baseline, plain_model=None
):
    examples = examples_of(samples)
    mean_len = sum(len(e["input_ids"]) for e in examples) / len(examples)
    tokens_per_step = global_batch * mean_len
    flops = train_flops_per_token(
        model, sum(len(e["input_ids"]) ** 2 for e in examples) / sum(len(e["input_ids"]) for e in examples)
    )
    rep.add(f"{label}.flops_per_token", flops)
    s, mem, first_s, _ = kernel_steps(model, CausalLMLoss(model), examples, micro, global_batch, steps, profile)
    tps = tokens_per_step / s
    rep.add(f"{label}.kernel_first_step_s", first_s, "s", "includes compiling, if any")
    rep.add(f"{label}.kernel_step_s", s, "s", f"micro-batch {micro}, global batch {global_batch}")
    rep.add(f"{label}.kernel_tokens_per_s", tps, "tok/s")
    rep.add(f"{label}.kernel_peak_gib", mem, "GiB")
    rep.ratio(f"{label}.kernel_mfu", tps * flops / (peak * 1e12), ">= 0.45")
    if baseline:
        s_t, mem_t = trainer_steps(plain_model or model, examples, trainer_micro, global_batch, steps)
        rep.add(f"{label}.trainer_step_s", s_t, "s", f"micro-batch {trainer_micro}")
        rep.add(f"{label}.trainer_tokens_per_s", tokens_per_step / s_t, "tok/s")
        rep.add(f"{label}.trainer_peak_gib", mem_t, "GiB")
        rep.add(f"{label}.trainer_mfu", tokens_per_step / s_t * flops / (peak * 1e12))
        rep.ratio(f"{label}.kernel_speedup_vs_trainer", s_t / s, ">= 1.3")
    return s


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default="bench/results")
    ap.add_argument("--sizes", default="0.6B", help="comma-separated Qwen3 shapes; baselines on the first only")
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--profile", action="store_true", help="print the kernel step's top CUDA ops")
    ap.add_argument("--configs", default="gsm8k,long")
    ap.add_argument(
        "--compile-layers", action="store_true", help="torch.compile each decoder layer (train_step.compile_layers)"
    )
    a = ap.parse_args()
    rep = Report("sft", a.out)
    peak = matmul_peak_tflops()
    rep.add("bf16_matmul_peak_tflops", peak, "TFLOP/s", "8192³ matmuls, measured now")
    for k, size in enumerate(a.sizes.split(",")):
        model = build_model(size)
        rep.add(f"{size}.parameters", sum(p.numel() for p in model.parameters()))
        plain = None
        if a.compile_layers:
            plain = build_model(size)  # the Trainer baseline runs the model as a user would: eager
            compile_layers(model)
            rep.add(
                f"{size}.compiled_vs_eager_max_rel_loss_diff",
                compiled_vs_eager(model, plain),
                "",
                "summed CE of 4 micro-batches, bf16 autocast",
            )
        if "gsm8k" in a.configs:
            run_config(
                rep,
                f"{size}.gsm8k",
                model,
                synthetic_samples(2048, *GSM8K_LENGTHS),
                16,
                16,
                128,
                a.steps,
                peak,
                a.profile and k == 0,
                k == 0,
                plain,
            )
        if "long" in a.configs:
            run_config(
                rep,
                f"{size}.long",
                model,
                synthetic_samples(256, *LONG_LENGTHS, seed=1),
                2,
                2,
                16,
                a.steps,
                peak,
                a.profile and k == 0,
                k == 0,
                plain,
            )
        del model
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
    rep.save()


if __name__ == "__main__":
    main()
