"""Test-only fault injection (docs/recovery.md; activities/faults.ts arms it).

The activity sets WMSS_FAULT=<kind> and WMSS_FAULT_MARKER=<file> for one kernel of one step; the
kernel writes the marker when the fault fires, and the activity arms no fault once the marker
exists, so the retry runs normally. Without WMSS_FAULT (always, outside the fault tests) the hooks
return at once.

  hang                 the first progress line past 0 is never printed: the kernel sleeps, alive
                       and silent, until the activity's stall limit kills it
  nan-loss             the loss of optimizer step 2 onwards reads NaN, as an lr far above the
                       config's bound would make it (the kernel tests reach it with a real lr)
  die-mid-training     SIGKILL as optimizer step 2 ends, before its checkpoint (one rank of a
                       multi-node group: the group's member failure)
  die-during-async-save  SIGKILL while a sharded checkpoint is written in the background
  die-before-complete  SIGKILL while writing the second checkpoint of this process, after its
                       files are written and before its COMPLETE marker

WMSS_PROGRESS_TRACE=<file> (bench/recovery.ts) appends every progress update, also the ones the
protocol does not print (it prints at most one every 5 s), with its wall-clock time:
{"t", "pid", "verb", "done", "total", "unit"}.
"""

import json
import os
import signal
import sys
import time

_kind = os.environ.get("WMSS_FAULT") or None
_trace = os.environ.get("WMSS_PROGRESS_TRACE") or None
_checkpoints = 0


def trace_progress(done, total, unit):
    """protocol.Progress calls this on every update."""
    if _trace:
        verb = sys.argv[1] if len(sys.argv) > 1 else "?"
        line = json.dumps(
            {"t": time.time(), "pid": os.getpid(), "verb": verb, "done": int(done), "total": int(total), "unit": unit}
        )
        with open(_trace, "a", encoding="utf-8") as f:
            f.write(line + "\n")


def _fired(what):
    marker = os.environ.get("WMSS_FAULT_MARKER")
    if marker:
        os.makedirs(os.path.dirname(marker), exist_ok=True)
        with open(marker, "w", encoding="utf-8") as f:
            f.write(f"{what} (pid {os.getpid()})\n")
            f.flush()
            os.fsync(f.fileno())


def poison_loss(step, loss):
    """train_loop passes each optimizer step's loss (summed over ranks) through here, on every rank."""
    if _kind == "die-mid-training" and step >= 2:
        _fired(f"die-mid-training at step {step}")
        os.kill(os.getpid(), signal.SIGKILL)
    if _kind == "nan-loss" and step >= 2:
        _fired(f"nan loss at step {step}")
        return float("nan")
    return loss


def before_progress_line(done):
    """protocol.Progress calls this before it prints a progress line."""
    if _kind == "hang" and done >= 1:
        _fired(f"hang before progress {done}")
        while True:  # SIGTERM only sets a flag (protocol.py); the stall limit's SIGKILL ends this
            time.sleep(3600)


def during_async_save(step):
    """async_checkpoint.AsyncSaver calls this once a background write has started."""
    if _kind == "die-during-async-save":
        _fired(f"die-during-async-save at checkpoint-{step}")
        os.kill(os.getpid(), signal.SIGKILL)


def before_complete_marker(step):
    """checkpoints.save_atomic calls this when a checkpoint's files are written, before COMPLETE."""
    global _checkpoints
    if _kind != "die-before-complete":
        return
    _checkpoints += 1
    if _checkpoints == 2:
        _fired(f"die-before-complete at checkpoint-{step}")
        os.kill(os.getpid(), signal.SIGKILL)
