"""Asynchronous sharded checkpoints (job field `async_checkpoints`, on by default).

A sharded (FSDP) checkpoint between the first and the last step is written with DCP's
`async_save`: each rank copies its shards to host memory (the only part training waits for) and a
background thread writes them into `checkpoint-<step>.partial/` while training goes on. Rank 0
publishes the checkpoint (fsync, `COMPLETE`, rename) only once that write has finished on every
rank: DCP's future completes on rank 0 after the coordinator has gathered every rank's write
results and written the metadata. Until then the directory is a partial one, which resume ignores
and retention (activities/store/diskSpace.ts) never touches, so a kill during the write leaves no
checkpoint that looks complete.

At most one save is in flight: a new one, the final (synchronous) one, or the end of the run
waits for it first. The background write talks over its own gloo group, so its collectives never
interleave with training's on the default group.
"""

import logging
import time
from pathlib import Path

import torch
import torch.distributed as dist

from . import checkpoints, faults
from .sharding import DCP_DIR

log = logging.getLogger("wmss_kernels.async_checkpoint")


def make_stager(device):
    """The host copy of the shards: on CUDA into pinned buffers allocated at the first save and
    reused by the next ones (a fast device-to-host copy, no allocation per save); on the CPU a
    plain copy. (DCP's DefaultStager deep-copies the state dict, which fails on DTensors.)"""
    from torch.distributed.checkpoint.staging import BlockingAsyncStager

    return BlockingAsyncStager(cache_staged_state_dict=torch.device(device).type == "cuda")


class AsyncSaver:
    """Writes sharded checkpoints in the background and publishes each once it is whole.

    Every rank creates it at the same point (the gloo group is a collective) and calls `start`,
    `poll` and `finish` the same way; only rank 0 publishes."""

    def __init__(self, out_dir, device):
        self.out_dir = Path(out_dir)
        self.group = dist.new_group(backend="gloo") if dist.is_initialized() else None
        self.stager = make_stager(device)
        self.pending = None  # (future, step, partial dir, publish function or None)
        self.stalls = []  # seconds training waited for each save (staging)

    def start(self, loss_module, opt, step, tmp):
        """Stage this rank's shards and start writing them into `tmp`/dcp; returns once the host
        copy is made. Rank 0 then says how to publish with `publish_when_written`."""
        import torch.distributed.checkpoint as dcp
        from torch.distributed.checkpoint.state_dict import get_state_dict

        self.finish()
        t0 = time.monotonic()
        msd, osd = get_state_dict(loss_module, opt)
        future = dcp.async_save(
            {"model": msd, "optim": osd},
            checkpoint_id=str(Path(tmp) / DCP_DIR),
            process_group=self.group,
            async_stager=self.stager,
        )
        self.stalls.append(time.monotonic() - t0)
        self.pending = [future, step, Path(tmp), None]
        faults.during_async_save(step)  # test-only (faults.py); nothing unless armed

    def publish_when_written(self, publish):
        """Rank 0: what to run once the write in flight is done (fsync, COMPLETE, rename, report)."""
        if self.pending is not None:
            self.pending[3] = publish

    def poll(self):
        """Between steps: publish the save in flight if its write has finished; never waits."""
        if self.pending is not None and self.pending[0].done():
            self.finish()

    def finish(self):
        """Wait for the save in flight, then publish it (rank 0); returns the published path or None."""
        if self.pending is None:
            return None
        future, step, tmp, publish = self.pending
        self.pending = None
        try:
            future.result()
            return publish() if publish is not None else None
        except Exception as e:  # a full disk in the background write: typed, partial dir removed
            checkpoints.raise_as_disk_failure(e, self.out_dir, step, tmp)
            raise

    def close(self):
        """End of training: the last save in flight is published and the host buffers let go."""
        try:
            self.finish()
        finally:
            self.stager.close()
            self.stager = None  # the pinned copies it caches
            if self.stalls:
                log.info("async checkpoints: %d saves, longest stall %.3f s", len(self.stalls), max(self.stalls))
