"""The stdout protocol of a kernel (docs/kernel-protocol.md).

stdout carries only JSON lines written by `emit`. `take_stdout` (called by __main__) keeps a
private handle on the real stdout and points both the Python-level and the C-level stdout
elsewhere, so a stray print from a library cannot corrupt the stream the activity parses.
"""

import errno
import json
import math
import os
import signal
import sys
import time

from . import faults

_stream = None  # the real stdout once take_stdout() ran; sys.stdout before that (in-process use)
_stop = False  # set by the SIGTERM handler; verbs check it between batches/steps
_reader_gone = False  # stdout's reader (the worker) went away: protocol lines go to the log only
# Under torchrun every rank of a host shares the launcher's stdout; only the host's first rank
# speaks the protocol there. On one host that is rank 0; in a multi-node group each member's
# launcher has its own reader, which needs that member's result and errors (progress and
# checkpoint lines come from global rank 0 alone, on member 0: train_loop.py).
_rank = int(os.environ.get("LOCAL_RANK", os.environ.get("RANK", "0")))


def take_stdout(redirect_to):
    """Keep fd 1 for protocol lines only; everything else printed goes to `redirect_to` (a file)."""
    global _stream
    sys.stdout.flush()
    _stream = os.fdopen(os.dup(1), "w", buffering=1, encoding="utf-8")
    os.dup2(redirect_to.fileno(), 1)  # C-level writes to fd 1 (native libraries)
    sys.stdout = redirect_to  # Python-level print()


def emit(type: str, **fields):
    """Print one protocol line ({"type": ..., **fields}) and flush. Ranks other than a host's first
    write it to their log instead (sys.stdout is the log once take_stdout ran)."""
    line = json.dumps(_plain({"type": type, **fields}), allow_nan=False)
    if _rank != 0:
        sys.stdout.write(f"[rank {_rank} protocol] {line}\n")
        sys.stdout.flush()
        return
    global _reader_gone
    if _reader_gone:
        return
    out = _stream if _stream is not None else sys.stdout
    try:
        out.write(line + "\n")
        out.flush()
    except BrokenPipeError:
        # The worker that reads this stream is gone (killed): nobody is listening any more. The
        # kernel goes on to what it was doing, e.g. saving its checkpoint after the SIGTERM that
        # Linux sends when the parent dies, and exits as it would have; its log still says what
        # happened.
        _reader_gone = True
        try:  # what is still buffered for the closed pipe goes nowhere instead of failing at exit
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, out.fileno())
            os.close(devnull)
        except (OSError, ValueError):
            pass
        if _stream is not None:  # sys.stdout is the log
            sys.stdout.write(f"[protocol line not delivered, the worker is gone] {line}\n")
            sys.stdout.flush()


def _plain(value):
    # numpy / torch scalars sneak into metrics, and NaN is not JSON (the TS side would choke on
    # it): turn both into plain values, a non-finite float into null
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if hasattr(value, "item") and not isinstance(value, (str, bytes)):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    return str(value)


class KernelError(Exception):
    """An error with a protocol type and exit code; the message names file/line/field when known."""

    def __init__(
        self, error_type: str, message: str, *, file=None, line=None, field=None, exit_code: int = 1, details=None
    ):
        prefix = ""
        if file is not None:
            prefix += str(file)
            if line is not None:
                prefix += f" line {line}"
            prefix += ": "
        if field is not None:
            prefix += f"field '{field}': "
        # callers sometimes pre-format the location themselves; do not say it twice
        full = message if message.startswith(prefix) else prefix + message
        super().__init__(full)
        self.reason = message  # without the location: the activity may say it with a config key
        self.error_type = error_type
        self.message = full
        self.file = None if file is None else str(file)
        self.line = line
        self.field = field
        self.exit_code = exit_code
        self.details = details

    def fields(self) -> dict:
        """The fields of the protocol `error` line."""
        out = {"error_type": self.error_type, "message": self.message, "reason": self.reason}
        for key in ("file", "line", "field", "details"):
            if getattr(self, key) is not None:
                out[key] = getattr(self, key)
        return out


class InvalidInput(KernelError):
    def __init__(self, message: str, *, file=None, line=None, field=None):
        super().__init__("InvalidInput", message, file=file, line=line, field=field, exit_code=2)


class OutOfMemory(KernelError):
    def __init__(self, message: str = "out of memory", **where):
        super().__init__("KernelOutOfMemory", message, exit_code=3, **where)


class Terminated(KernelError):
    def __init__(self, message: str = "stopped by SIGTERM", **where):
        super().__init__("KernelTerminated", message, exit_code=4, **where)


class TrainingDiverged(KernelError):
    """The loss or the gradient norm became NaN/Inf: the same settings diverge again on a retry."""

    def __init__(self, message: str, *, field="lr", details=None):
        # field: the job field to change (the activity names the config key the user wrote)
        super().__init__("TrainingDiverged", message, field=field, exit_code=5, details=details)


class InsufficientDisk(KernelError):
    """A write failed because the file system is full (ENOSPC) or the quota is used up (EDQUOT)."""

    def __init__(self, message: str, *, file=None):
        super().__init__("InsufficientDisk", message, file=file, exit_code=6)


class NotWritable(KernelError):
    """A write was refused: read-only file system (EROFS) or no permission (EACCES, EPERM)."""

    def __init__(self, message: str, *, file=None):
        super().__init__("NotWritable", message, file=file, exit_code=7)


_FULL = (errno.ENOSPC, errno.EDQUOT)
_READ_ONLY = (errno.EROFS, errno.EACCES, errno.EPERM)


def disk_error(exc, path=None):
    """The typed error for an OSError that a retry cannot fix (full disk, read-only or forbidden
    path), naming the path being written; None for any other error (a crash, retried).
    Libraries that hide the errno (safetensors) still say "os error 28" in their message."""
    code = getattr(exc, "errno", None)
    text = str(exc)
    if code is None and ("os error 28" in text or "No space left" in text):
        code = errno.ENOSPC
    if code is None and ("os error 122" in text or "quota exceeded" in text.lower()):
        code = errno.EDQUOT
    where = getattr(exc, "filename", None) or path
    if code in _FULL:
        why = "the disk quota is used up" if code == errno.EDQUOT else "the file system is full"
        return InsufficientDisk(f"cannot write: {why} ({text}); free space and resume the run", file=where)
    if code in _READ_ONLY:
        why = "the file system is read-only" if code == errno.EROFS else "permission denied"
        return NotWritable(f"cannot write: {why} ({text}); the run dir must be writable by the worker", file=where)
    return None


def install_sigterm_handler():
    """On SIGTERM only set a flag: the verb finishes its batch (or saves a checkpoint) and then
    raises Terminated itself, so no half-written output is left behind."""

    def handler(signum, frame):
        global _stop
        _stop = True

    signal.signal(signal.SIGTERM, handler)


def stop_requested() -> bool:
    return _stop


class Progress:
    """Emits `progress` lines at most every `every_s` seconds (always the first and the last)."""

    def __init__(self, total: int, unit: str, every_s: float = 5.0):
        self.total = int(total)
        self.unit = unit
        self.every_s = every_s
        self._last = None

    def update(self, done: int, **extra):
        faults.trace_progress(done, self.total, self.unit)  # bench-only (faults.py); nothing unless set
        now = time.monotonic()
        if self._last is None or done >= self.total or now - self._last >= self.every_s:
            faults.before_progress_line(done)  # test-only (faults.py); nothing unless armed
            self._last = now
            fields = {k: v for k, v in extra.items() if v is not None}
            emit("progress", done=int(done), total=self.total, unit=self.unit, **fields)
