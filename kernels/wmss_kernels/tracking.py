"""Experiment tracking of a kernel: TensorBoard event files by default, MLflow and Weights & Biases
when the run config asks for them (job field `tracking`, docs/tracking.md).

Only rank 0 of a torchrun job logs. Every tracker is optional and imported lazily: a package that
is missing, or a tracker server that is down, costs a warning line in the kernel log, never the
step. MLflow and W&B calls go through a background thread (tracker_backends.py) so a slow or dead
server never holds up a training step.

Retries: a training kernel that resumes from the checkpoint of step S opens its TensorBoard
writer with purge_step S + 1. TensorBoard then drops what an earlier attempt logged after S (it
was computed again), so after a kill and a retry every step appears once, at the same global step.
Entropy and evaluate start over on a retry: they purge from step 0.
"""

import logging
import os

from . import tracker_backends

log = logging.getLogger("wmss_kernels.tracking")
_warned = set()


def warn_once(key, message, *args):
    if key not in _warned:
        _warned.add(key)
        log.warning(message, *args)


def _rank() -> int:
    return int(os.environ.get("RANK", "0"))


class Tracker:
    """Scalars and histograms of one kernel, under the job's prefix (its step id: `sft/loss`)."""

    def __init__(self, spec, purge_step):
        self.prefix = spec["prefix"]
        self.tb = _tensorboard_writer(spec.get("tensorboard_dir"), purge_step)
        self.remote = tracker_backends.open_remote(spec, self.prefix, warn_once)

    def scalars(self, step, values):
        values = {k: float(v) for k, v in values.items() if v is not None}
        if self.tb is not None:
            _safe("tensorboard", lambda: [self.tb.add_scalar(k, v, step) for k, v in values.items()])
        if self.remote is not None:
            self.remote.log(step, {f"{self.prefix}/{k}": v for k, v in values.items()})

    def histogram(self, tag, values, step=0):
        if self.tb is not None and len(values):
            import numpy as np

            _safe("tensorboard", lambda: self.tb.add_histogram(tag, np.asarray(values, dtype=np.float64), step))

    def link(self, name, target):
        """Where an output is (a model dir): an MLflow tag / W&B summary, not a copy of the weights."""
        if self.remote is not None:
            self.remote.link(f"{self.prefix}/{name}", str(target))

    def flush(self):
        """At each checkpoint: what a retry resumes from is on disk, so a kill loses no curve."""
        if self.tb is not None:
            _safe("tensorboard", self.tb.flush)

    def close(self):
        if self.tb is not None:
            _safe("tensorboard", self.tb.close)
        if self.remote is not None:
            self.remote.close()


class _Off:
    """Tracking switched off (no `tracking` in the job) or a rank other than 0."""

    def scalars(self, step, values):
        pass

    def histogram(self, tag, values, step=0):
        pass

    def link(self, name, target):
        pass

    def flush(self):
        pass

    def close(self):
        pass


def open_tracker(job, purge_step=0):
    spec = getattr(job, "tracking", None)
    if not spec or _rank() != 0:
        return _Off()
    return Tracker(spec, purge_step)


def summarize(job, scalars, histograms=None, run=None):
    """The end-of-kernel summaries of entropy and evaluate, at step 0. `run` (the evaluated
    model's label) gets a TensorBoard run of its own: a retry purges only its own events."""
    spec = getattr(job, "tracking", None)
    if not spec or _rank() != 0:
        return
    if run:
        tb = spec.get("tensorboard_dir")
        spec = {**spec, "prefix": f"{spec['prefix']}/{run}", "tensorboard_dir": tb and os.path.join(tb, run)}
    tracker = Tracker(spec, purge_step=0)
    tracker.scalars(0, scalars)
    for tag, values in (histograms or {}).items():
        tracker.histogram(tag, values)
    tracker.close()


def _tensorboard_writer(log_dir, purge_step):
    if not log_dir:
        return None
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError as e:
        warn_once("tb", "tensorboard is not installed (%s): no event files in %s; pip install tensorboard", e, log_dir)
        return None
    try:
        return SummaryWriter(log_dir=log_dir, purge_step=purge_step, flush_secs=10)
    except Exception as e:  # noqa: BLE001 - a log dir that cannot be written must not fail the step
        warn_once("tb-open", "cannot write TensorBoard events to %s: %s", log_dir, e)
        return None


def _safe(what, fn):
    try:
        fn()
    except Exception as e:  # noqa: BLE001 - tracking never fails a step
        warn_once(f"{what}-write", "%s: logging failed (%s: %s); training goes on", what, type(e).__name__, e)


# Per-branch losses are a diagnostic: every 20th optimizer step (and the first and the last)
# keeps their curve while their cost (one forward of each head per micro-batch, +15 % of a
# compiled 0.6B joint step on an H200, docs/performance.md) shrinks to under 1 %.
BRANCH_LOSS_EVERY = 20


def log_branch_losses(job, loss_module, step, max_steps):
    """Whether optimizer step `step` (1-based) computes the per-branch losses: a tracked job on the
    first, every BRANCH_LOSS_EVERY-th and the last step. Every rank decides the same (same job,
    same step), so the per-step all-reduce has one length on all of them."""
    if hasattr(loss_module, "track_branches"):
        loss_module.track_branches = bool(getattr(job, "tracking", None)) and (
            step == 1 or step % BRANCH_LOSS_EVERY == 0 or step == max_steps
        )


def branch_sums(loss_module) -> list:
    """[weak, strong] summed CE of the fused model's branches over the last optimizer step
    (fused.FusedLMLoss), reset for the next; [] for a plain model."""
    sums = getattr(loss_module, "branch_loss_sums", None)
    if sums is None:
        return []
    loss_module.branch_loss_sums = None
    return [float(v) for v in sums.tolist()]


def train_scalars(loss, lr, grad_norm, tokens_per_s, device, branches=(), n_targets=1):
    """What a training step logs; GPU memory only on a GPU; joint training each branch's loss
    (`branches`: summed over every rank, like the loss)."""
    out = {
        "loss": loss,
        "lr": lr,
        "grad_norm": grad_norm,
        "tokens_per_s": tokens_per_s,
        "gpu_memory_gib": device_memory_gib(device),
    }
    for name, total in zip(("loss_weak", "loss_strong"), branches):
        out[name] = total / n_targets
    return out


def device_memory_gib(device):
    """Peak memory of this process on its GPU since the last reset (GiB), None on the CPU."""
    import torch

    if getattr(device, "type", str(device)) != "cuda":
        return None
    return torch.cuda.max_memory_allocated(device) / 2**30
