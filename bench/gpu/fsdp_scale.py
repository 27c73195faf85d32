"""Training steps of the kernel's loop on 1..N GPUs, in process under torchrun: the same pieces
train() uses (sharding.shard or DistributedDataParallel, make_optimizer, optimizer_step,
compile), on Qwen3-shaped random models built on the GPU (a 2×8B fused model cannot be written
to and read from disk in a benchmark's time). Checkpoints are left out: multi_gpu.py measures
those through the kernel.

  torchrun --nproc-per-node 2 bench/gpu/fsdp_scale.py --size 4B --joint --strategy fsdp --name joint4b

Prints and writes (rank 0) <out>/<name>.json: step seconds (mean after 2 warm-up steps), global
tokens/s, MFU = tokens/s × FLOPs/token ÷ (ranks × the bf16 matmul peak measured in this run on
this GPU), peak memory of every rank, and on out-of-memory the per-GPU memory table
(weights, gradients, AdamW moments at their sharded sizes) that shows why.
"""

import argparse
import json
import os
import time

import torch
import torch.distributed as dist
from common import (
    DEVICE,
    GSM8K_LENGTHS,
    build_model,
    matmul_peak_tflops,
    sync,
    synthetic_samples,
    train_flops_per_token,
)
from sft_bench import examples_of
from wmss_kernels import distributed, sharding
from wmss_kernels.fused import FusedCausalLM, FusedLMLoss
from wmss_kernels.train_batches import CausalLMLoss, step_indices
from wmss_kernels.train_step import compile_layers, make_optimizer, optimizer_step

WARMUP = 2


def gib(n):
    return round(n / 2**30, 2)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--size", default="0.6B")
    ap.add_argument("--joint", action="store_true", help="fused weak+strong, both trainable")
    ap.add_argument("--strategy", default="ddp", choices=("ddp", "fsdp"))
    ap.add_argument("--ac", action="store_true", help="activation checkpointing per layer")
    ap.add_argument("--offload", action="store_true", help="FSDP CPU offload")
    ap.add_argument("--no-compile", action="store_true")
    ap.add_argument("--micro", type=int, default=8)
    ap.add_argument("--global-batch", type=int, default=128)
    ap.add_argument("--steps", type=int, default=6)
    ap.add_argument("--name", default="scale")
    ap.add_argument("--out", default=os.environ.get("OUT", "bench/results"))
    a = ap.parse_args()

    device = torch.device(DEVICE)  # WMSS_BENCH_DEVICE=cpu --size tiny: a gloo smoke check
    cuda = device.type == "cuda"
    world = distributed.setup(device)
    rank, n = world.rank, world.size
    peak_tflops = matmul_peak_tflops()
    fig = {
        "size": a.size,
        "joint": a.joint,
        "strategy": a.strategy if n > 1 else "none",
        "ranks": n,
        "activation_checkpointing": a.ac,
        "cpu_offload": a.offload,
        "compile": not a.no_compile,
        "micro_batch": a.micro,
        "global_batch": a.global_batch,
        "matmul_peak_tflops_per_gpu": peak_tflops,
        "gpu": torch.cuda.get_device_name(0) if cuda else "cpu",
    }

    one = build_model(a.size, seed=0)
    model = FusedCausalLM(one, build_model(a.size, seed=1), 0.5) if a.joint else one
    flops_per_token = train_flops_per_token(one, mean_seq=sum(GSM8K_LENGTHS) / 2) * (2 if a.joint else 1)
    n_params = sum(p.numel() for p in model.parameters())
    loss_module = FusedLMLoss(model) if a.joint else CausalLMLoss(model)
    if a.ac:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    shards = n if a.strategy == "fsdp" else 1
    # bf16 weights, gradients and both AdamW moments (the kernel's precision), per GPU
    fig["memory_table_gib_per_gpu"] = {
        "weights": gib(2 * n_params / shards),
        "gradients": gib(2 * n_params / shards),
        "adamw_moments": gib(4 * n_params / shards),
        "params_b": round(n_params / 1e9, 2),
    }
    forward, ddp = loss_module, None
    if a.strategy == "fsdp" and n > 1:
        sharding.shard(loss_module, reshard_after_forward=True, cpu_offload=a.offload, device=device)
    opt, params = make_optimizer(loss_module, 1e-5, 0.0, device, fused=False if a.offload else None)
    if not a.no_compile:
        (sharding.compile_sharded_layers(loss_module) if a.strategy == "fsdp" and n > 1 else compile_layers(model))
    if a.strategy == "ddp" and n > 1:
        forward = ddp = torch.nn.parallel.DistributedDataParallel(
            loss_module, device_ids=[world.local_rank] if cuda else None
        )
    autocast = torch.autocast("cuda", dtype=torch.bfloat16, enabled=cuda)
    model.train()
    examples = examples_of(synthetic_samples(4096, *GSM8K_LENGTHS))
    per_rank = a.global_batch // n
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    times, tokens, losses = [], [], []
    try:
        for step in range(a.steps):
            idx = step_indices(step, len(examples), a.global_batch, seed=0)
            n_tgt = max(1, sum(examples[i]["n_targets"] for i in idx))
            mine = [examples[i] for i in idx[rank * per_rank : (rank + 1) * per_rank]]
            sync()
            t = time.perf_counter()
            loss, _, _ = optimizer_step(forward, ddp, mine, n_tgt, a.micro, n, device, autocast, params, 1.0, opt)
            total = distributed.sum_across([loss.item()], device)[0] / n_tgt
            sync()
            times.append(time.perf_counter() - t)
            tokens.append(sum(len(examples[i]["input_ids"]) for i in idx))
            losses.append(total)
            if rank == 0:
                print(f"{a.name}: step {step + 1} {times[-1]:.3f} s loss {total:.4f}", flush=True)
        step_s = sum(times[WARMUP:]) / len(times[WARMUP:])
        tps = sum(tokens[WARMUP:]) / sum(times[WARMUP:])
        fig.update(
            step_s=step_s,
            first_step_s=times[0],
            tokens_per_s=tps,
            losses=losses,
            mfu=tps * flops_per_token / (n * peak_tflops * 1e12),
            oom=False,
        )
    except torch.cuda.OutOfMemoryError as e:
        fig.update(oom=True, error=str(e)[:400])
    peaks = [0.0] * n
    peaks[rank] = torch.cuda.max_memory_allocated() / 2**30 if cuda else 0.0
    if n > 1:
        t = torch.tensor(peaks, device=device)
        dist.all_reduce(t)
        peaks = t.tolist()
    fig["peak_gib_per_gpu"] = [round(p, 2) for p in peaks]
    fig["gpu_total_gib"] = gib(torch.cuda.get_device_properties(0).total_memory) if cuda else None
    if rank == 0:
        os.makedirs(a.out, exist_ok=True)
        with open(os.path.join(a.out, f"{a.name}.json"), "w") as f:
            json.dump(fig, f, indent=2)
        print(f"{a.name}: " + json.dumps({k: v for k, v in fig.items() if k != "losses"}), flush=True)
    distributed.shutdown()


if __name__ == "__main__":
    main()
