"""Data parallelism for the training verbs: the process group, and the few collectives the loop needs.

A kernel started by torchrun (`--nproc-per-node N`) finds RANK, LOCAL_RANK and WORLD_SIZE in its
environment; a kernel started directly is world 1 and never touches torch.distributed, so the
single-process path stays exactly what it was. Backend: NCCL when the kernel trains on CUDA,
gloo on the CPU (tests, and workers started with `--gpus cpu`).
"""

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class World:
    size: int = 1
    rank: int = 0
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def from_env() -> World:
    """Where this process sits, from torchrun's variables (world 1 without them)."""
    size = int(os.environ.get("WORLD_SIZE", "1"))
    return World(size=size, rank=int(os.environ.get("RANK", "0")), local_rank=int(os.environ.get("LOCAL_RANK", "0")))


def setup(device: torch.device) -> World:
    """Join the process group when started by torchrun; pins each rank to its own GPU first."""
    world = from_env()
    if world.size == 1 or dist.is_initialized():
        return world
    if device.type == "cuda":
        # torch.device("cuda") means the current device: make that this rank's GPU before any
        # model or NCCL communicator is created on it
        torch.cuda.set_device(world.local_rank)
        dist.init_process_group("nccl", device_id=torch.device("cuda", world.local_rank))
    else:
        dist.init_process_group("gloo")
    return world


def shutdown():
    if dist.is_initialized():
        dist.destroy_process_group()


def active() -> bool:
    return dist.is_initialized() and dist.get_world_size() > 1


def sum_across(values: list[float], device) -> list[float]:
    """Element-wise sum of a few numbers over all ranks (the values themselves when world is 1)."""
    if not active():
        return list(values)
    t = torch.tensor(values, dtype=torch.float64, device=device)
    dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return t.tolist()


def barrier():
    if active():
        dist.barrier()
