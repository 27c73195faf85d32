"""Data parallelism for the training verbs: the process group, and the few collectives the loop needs.

A kernel started by torchrun (`--nproc-per-node N`) finds RANK, LOCAL_RANK and WORLD_SIZE in its
environment; a kernel started directly is world 1 and never touches torch.distributed, so the
single-process path stays exactly what it was. Backend: NCCL when the kernel trains on CUDA,
gloo on the CPU (tests, and workers started with `--gpus cpu`).
"""

import json
import logging
import os
import threading
import time
from dataclasses import dataclass
from datetime import timedelta

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


# How long a collective may wait for a live peer. Long on purpose: under DDP the other ranks wait
# in a barrier while rank 0 writes a checkpoint, and under FSDP while it writes the gathered model
# (minutes at 8B). A peer that dies is found by the watchdog below within a second, not by this
# timeout; a live but hung one by the activity's stall limit.
COLLECTIVE_TIMEOUT_S = int(os.environ.get("WMSS_COLLECTIVE_TIMEOUT_S", "1800"))
WATCH_EVERY_S = 0.25
EXIT_RANK_LOST = 8

log = logging.getLogger("wmss_kernels.distributed")


def setup(device: torch.device) -> World:
    """Join the process group when started by torchrun; pins each rank to its own GPU first."""
    world = from_env()
    if world.size == 1 or dist.is_initialized():
        return world
    # a timed-out or failed NCCL collective aborts the communicator and ends the process instead
    # of leaving it blocked (torch's default in recent versions; set so it does not depend on one)
    os.environ.setdefault("TORCH_NCCL_ASYNC_ERROR_HANDLING", "1")
    timeout = timedelta(seconds=COLLECTIVE_TIMEOUT_S)
    if device.type == "cuda":
        # torch.device("cuda") means the current device: make that this rank's GPU before any
        # model or NCCL communicator is created on it
        torch.cuda.set_device(world.local_rank)
        dist.init_process_group("nccl", device_id=torch.device("cuda", world.local_rank), timeout=timeout)
    else:
        dist.init_process_group("gloo", timeout=timeout)
    return world


# ---------------------------------------------------------------------------------------------
# Lost ranks. Every rank of one host records its pid in WMSS_PID_DIR (rank-<r>) and, when it ends
# through Python, how it ended (exit-<r>.json). A thread in each rank watches the others: a peer
# whose process is gone without an exit record was killed (SIGKILL, the OOM killer, a segfault),
# and the collective this rank is in, or will enter, can never complete. The rank then says so
# (rank 0 as a protocol error line, RankLost, naming the peer) and leaves at once with os._exit:
# unwinding would block in that collective, and torchrun's SIGTERM only sets the stop flag.


def _rank_file(pid_dir, rank):
    return os.path.join(pid_dir, f"rank-{rank}")


def _exit_file(pid_dir, rank):
    return os.path.join(pid_dir, f"exit-{rank}.json")


def _alive(pid):
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as f:
            return f.read().rsplit(")", 1)[1].split()[0] not in ("Z", "X")  # a zombie is dead
    except OSError:
        return False


def record_exit(fields):
    """Called by __main__ as a rank ends through Python: {"ok": true} or its error line's fields."""
    pid_dir, world = os.environ.get("WMSS_PID_DIR"), from_env()
    if pid_dir and world.size > 1:
        try:
            with open(_exit_file(pid_dir, world.rank), "w", encoding="utf-8") as f:
                json.dump(fields, f)
        except OSError:
            pass


class PeerWatchdog:
    def __init__(self, pid_dir, world, on_lost):
        self.pid_dir, self.world, self.on_lost = pid_dir, world, on_lost
        self.armed = True
        with open(_rank_file(pid_dir, world.rank), "w", encoding="ascii") as f:
            f.write(str(os.getpid()))
        threading.Thread(target=self._watch, name="peer-watchdog", daemon=True).start()

    def _peer(self, rank):
        try:
            with open(_rank_file(self.pid_dir, rank), encoding="ascii") as f:
                return int(f.read().strip())
        except (OSError, ValueError):
            return None  # not started yet, or the file of an earlier attempt being replaced

    def lost(self):
        """(rank, pid, its exit record or None) of a peer that is gone without finishing, or None."""
        for rank in range(self.world.size):
            pid = None if rank == self.world.rank else self._peer(rank)
            if pid is None or _alive(pid):
                continue
            try:
                with open(_exit_file(self.pid_dir, rank), encoding="utf-8") as f:
                    ended = json.load(f)
            except (OSError, ValueError):
                ended = None
            if not (ended and ended.get("ok")):  # not finished normally
                return rank, pid, ended
        return None

    def lost_within(self, seconds):
        """A collective failed: was it because a peer died? (the socket may close a moment
        before the process is gone)"""
        deadline = time.monotonic() + seconds
        while True:
            found = self.lost()
            if found or time.monotonic() > deadline:
                return found
            time.sleep(0.05)

    def _watch(self):
        while self.armed:
            time.sleep(WATCH_EVERY_S)
            found = self.lost() if self.armed else None
            if found and self.armed:
                self.armed = False
                self.on_lost(*found)
                return

    def disarm(self):
        self.armed = False


def watch_peers(on_lost):
    """Start the watchdog when this is one of several ranks and WMSS_PID_DIR is set (the activity
    and the benchmarks set it); returns it, or None."""
    pid_dir, world = os.environ.get("WMSS_PID_DIR"), from_env()
    if not pid_dir or world.size == 1:
        return None
    os.makedirs(pid_dir, exist_ok=True)
    return PeerWatchdog(pid_dir, world, on_lost)


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
