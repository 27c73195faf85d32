"""How long training stalls for a sharded checkpoint: a synchronous DCP save (sharding.save, what
async_checkpoints false does) against the kernel's background save (async_checkpoint.AsyncSaver:
the stall is the copy to host memory; the write runs while training goes on). One GPU, a world
of one process (its own process group, no torchrun needed), the model sharded with FSDP2 as the
kernel shards it, AdamW state present (two optimizer steps first).

  python bench/gpu/async_save.py --size 0.6B --saves 3
  WMSS_BENCH_DEVICE=cpu python bench/gpu/async_save.py --size tiny --saves 2   # smoke check

Prints per save: sync seconds; async stall, seconds until published, and the optimizer steps
that ran during the background write. Then the ratio sync ÷ async stall (median of the saves
after the first, which also allocates the pinned host buffers), and writes <out>/<name>.json.
"""

import argparse
import json
import os
import shutil
import socket
import statistics
import tempfile
import time
from pathlib import Path

import torch
from common import DEVICE, GSM8K_LENGTHS, build_model, sync, synthetic_samples
from sft_bench import examples_of
from wmss_kernels import checkpoints, distributed, sharding
from wmss_kernels.async_checkpoint import AsyncSaver
from wmss_kernels.train_batches import CausalLMLoss, step_indices
from wmss_kernels.train_step import make_optimizer, optimizer_step


def parse_args(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--size", default="0.6B")
    ap.add_argument("--saves", type=int, default=3, help="saves of each kind (at least 2)")
    ap.add_argument("--micro", type=int, default=8)
    ap.add_argument("--global-batch", type=int, default=32)
    ap.add_argument("--dir", default=None, help="where checkpoints are written (default: a temp dir)")
    ap.add_argument("--name", default="async_save")
    ap.add_argument("--out", default=os.environ.get("OUT", "bench/results"))
    a = ap.parse_args(argv)
    if a.saves < 2:
        ap.error("--saves must be at least 2 (the first save also allocates host buffers)")
    return a


def single_process_world():
    """A process group of one (torchrun's variables, set here when started with plain python)."""
    if "RANK" not in os.environ:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK="0", LOCAL_RANK="0", WORLD_SIZE="1")
    os.environ["WORLD_SIZE"] = os.environ.get("WORLD_SIZE", "1")


def main(argv=None):
    a = parse_args(argv)
    single_process_world()
    device = torch.device(DEVICE)
    # distributed.setup leaves a world of one alone: join a group of one explicitly
    import torch.distributed as dist

    if device.type == "cuda":
        torch.cuda.set_device(0)
        dist.init_process_group("nccl", device_id=torch.device("cuda", 0))
    else:
        dist.init_process_group("gloo")

    model = build_model(a.size, seed=0)
    loss_module = CausalLMLoss(model)
    sharding.shard(loss_module, reshard_after_forward=True, cpu_offload=False, device=device)
    opt, params = make_optimizer(loss_module, 1e-5, 0.0, device)
    autocast = torch.autocast("cuda", dtype=torch.bfloat16, enabled=device.type == "cuda")
    examples = examples_of(synthetic_samples(512, *GSM8K_LENGTHS))
    state = {"step": 0}

    def train_step():
        idx = step_indices(state["step"], len(examples), a.global_batch, seed=0)
        n_tgt = max(1, sum(examples[i]["n_targets"] for i in idx))
        optimizer_step(
            loss_module, None, [examples[i] for i in idx], n_tgt, a.micro, 1, device, autocast, params, 1.0, opt
        )
        state["step"] += 1

    for _ in range(2):  # AdamW moments exist from the first step on
        train_step()
    sync()

    root = Path(a.dir or tempfile.mkdtemp(prefix="wmss-async-save-"))
    saver = AsyncSaver(root, device)
    fig = {"size": a.size, "device": torch.cuda.get_device_name(0) if device.type == "cuda" else "cpu"}
    sync_s, stall_s, publish_s, steps_during = [], [], [], []
    for i in range(a.saves):
        tmp = checkpoints.begin_partial(checkpoints.partial_dir(root, 1000 + i))
        sync()
        t = time.perf_counter()
        sharding.save(loss_module, opt, tmp)
        sync()
        sync_s.append(time.perf_counter() - t)
        shutil.rmtree(tmp)

        tmp = checkpoints.begin_partial(checkpoints.partial_dir(root, 2000 + i))
        sync()
        t = time.perf_counter()
        saver.start(loss_module, opt, 2000 + i, tmp)
        stall_s.append(time.perf_counter() - t)
        saver.publish_when_written(lambda step=2000 + i, tmp=tmp: checkpoints.publish(root, step, tmp))
        ran = 0
        while saver.pending is not None and not saver.pending[0].done():
            train_step()  # training goes on while the shards are written
            sync()
            ran += 1
        path = saver.finish()
        publish_s.append(time.perf_counter() - t)
        steps_during.append(ran)
        assert checkpoints.is_complete(path), path
        shutil.rmtree(path)
        print(
            f"{a.name} save {i + 1}: sync {sync_s[-1]:.3f} s; async stall {stall_s[-1]:.3f} s, "
            f"published after {publish_s[-1]:.3f} s, {ran} optimizer steps meanwhile",
            flush=True,
        )
    saver.close()
    shutil.rmtree(root, ignore_errors=True)
    steady_sync, steady_stall = statistics.median(sync_s[1:]), statistics.median(stall_s[1:])
    fig.update(
        sync_save_s=sync_s,
        async_stall_s=stall_s,
        async_published_after_s=publish_s,
        optimizer_steps_during_write=steps_during,
        sync_over_async_stall=steady_sync / steady_stall if steady_stall > 0 else None,
        stall_under_1s=steady_stall < 1.0,
    )
    print(
        f"{a.name}: stall sync {steady_sync:.3f} s vs async {steady_stall:.3f} s "
        f"= {fig['sync_over_async_stall']:.1f}x (median of saves 2..{a.saves})",
        flush=True,
    )
    os.makedirs(a.out, exist_ok=True)
    with open(os.path.join(a.out, f"{a.name}.json"), "w") as f:
        json.dump(fig, f, indent=2)
    distributed.shutdown()
    return fig


if __name__ == "__main__":
    main()
