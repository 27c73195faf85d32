"""Entry point: python -m wmss_kernels <verb> --job <job.json>  (docs/kernel-protocol.md)."""

import importlib
import logging
import os
import random
import sys
import traceback
import warnings

from . import protocol, save_request
from .jobs import job_schema, load_job
from .protocol import InvalidInput, KernelError, disk_error, emit

VERBS = {
    "make-tiny": "tiny",
    "entropy": "entropy",
    "evaluate": "evaluate",
    "export-onnx": "export_onnx",
    "sft": "sft",
    "joint": "joint",
}

log = logging.getLogger("wmss_kernels")
_watchdog = None  # distributed.PeerWatchdog of a rank under torchrun


def _parse_args(argv):
    usage = f"usage: python -m wmss_kernels <{'|'.join(VERBS)}> --job <job.json>"
    if not argv or argv[0] not in VERBS:
        what = f"unknown verb {argv[0]!r}" if argv else "no verb given"
        raise InvalidInput(f"{what}; {usage}")
    verb, rest = argv[0], argv[1:]
    if len(rest) == 2 and rest[0] == "--job":
        return verb, rest[1]
    if len(rest) == 1 and rest[0].startswith("--job="):
        return verb, rest[0][len("--job=") :]
    raise InvalidInput(f"expected --job <file>; {usage}")


def _record_pid():
    """torchrun starts each rank in a session of its own, out of reach of the signal the activity
    sends to the kernel's process group; a file per process under WMSS_PID_DIR lets the activity
    signal every rank directly. The file holds the process start time, so a recycled pid is not
    mistaken for a rank."""
    pid_dir = os.environ.get("WMSS_PID_DIR")
    if not pid_dir:
        return
    try:
        with open(f"/proc/{os.getpid()}/stat", encoding="ascii") as f:
            started = f.read().rsplit(")", 1)[1].split()[19]
    except OSError:
        started = ""
    os.makedirs(pid_dir, exist_ok=True)
    with open(os.path.join(pid_dir, str(os.getpid())), "w", encoding="ascii") as f:
        f.write(started)


def _setup_logging(log_file):
    try:
        os.makedirs(os.path.dirname(os.path.abspath(log_file)), exist_ok=True)
        handle = open(log_file, "a", buffering=1, encoding="utf-8")
    except OSError as e:
        raise disk_error(e, log_file) or InvalidInput(
            f"cannot open the log file: {e.strerror or e}", file=log_file, field="log_file"
        )
    protocol.take_stdout(handle)  # from here on, stray prints land in the log
    rank = f" rank {os.environ['RANK']}" if "RANK" in os.environ else ""  # ranks share one log
    logging.basicConfig(
        stream=handle, level=logging.INFO, force=True, format=f"%(asctime)s{rank} %(levelname)s %(name)s: %(message)s"
    )
    logging.captureWarnings(True)
    warnings.simplefilter("default")
    try:  # transformers keeps its own stderr handler; send its messages to the log instead
        from transformers.utils import logging as hf_logging

        hf_logging.disable_default_handler()
        hf_logging.enable_propagation()
        hf_logging.disable_progress_bar()  # tqdm bars are noise in a log file
    except ImportError:
        pass


def _seed(seed, threads):
    import numpy as np
    import torch

    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    if threads:
        torch.set_num_threads(threads)
    # float sums depend on the thread count: the log says which one this kernel ran with
    log.info("torch threads: %d", torch.get_num_threads())


def main(argv) -> int:
    try:
        save_request.install()  # before the pid is recorded: SIGUSR1 must never kill a kernel
        _record_pid()
        verb, job_path = _parse_args(argv)
        module = importlib.import_module(f".{VERBS[verb]}", __package__)
        job = load_job(job_path, job_schema(verb))
        _setup_logging(job.log_file)
        log.info("wmss_kernels %s: %s --job %s", _version(), verb, os.path.abspath(job_path))
        protocol.install_sigterm_handler()
        _die_with_parent()
        _seed(job.seed, job.threads)
        _join_process_group(job)
        result = module.run(job)
        if "torch.distributed" in sys.modules:
            from . import distributed

            if distributed.active():
                # every rank past its last collective before any tears its process group down: a
                # peer that leaves early can abort gloo's threads in a rank still finishing (SIGABRT)
                distributed.barrier()
        _stop_watching({"ok": True})
        _add_peak_memory(result.setdefault("metrics", {}))
        emit("result", outputs=result.get("outputs", {}), metrics=result.get("metrics", {}))
        log.info("done: %s", result.get("metrics", {}))
        return 0
    except KernelError as e:
        _stop_watching({**e.fields(), "exit_code": e.exit_code})
        log.error("%s: %s", e.error_type, e.message)
        emit("error", **e.fields())
        return e.exit_code
    except Exception as e:  # noqa: BLE001 - the protocol needs an error line for every failure
        from .modeling import is_oom

        log.error("crash:\n%s", traceback.format_exc())
        # a collective that fails (gloo: connection reset) because a peer died is a lost rank
        lost = None
        if _watchdog is not None:
            _watchdog.disarm()  # this thread decides now, not the watchdog's
            lost = _watchdog.lost_within(1.0)
        if lost:
            _on_rank_lost(*lost)
        typed = disk_error(e) if isinstance(e, OSError) else None
        if typed is not None:
            fields, code = typed.fields(), typed.exit_code
        else:
            error_type, code = ("KernelOutOfMemory", 3) if is_oom(e) else ("KernelCrashed", 1)
            fields = {"error_type": error_type, "message": f"{type(e).__name__}: {e}"[:2000]}
        _stop_watching({"error_type": fields["error_type"], "message": fields["message"], "exit_code": code})
        emit("error", **fields)
        return code


def _stop_watching(ended):
    """This rank ends through Python: its own error line speaks for it, not the watchdog, and the
    peers learn how it ended (distributed.record_exit)."""
    if _watchdog is not None:
        _watchdog.disarm()
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        from . import distributed

        distributed.record_exit(ended)


def _on_rank_lost(rank, pid, ended):
    """A peer rank is gone (distributed.PeerWatchdog). Its own error, when it left one, else
    RankLost; then leave without unwinding: the collectives ahead cannot complete."""
    from . import distributed

    if ended:
        fields = {
            "error_type": ended.get("error_type", "KernelCrashed"),
            "message": f"rank {rank} failed: {ended.get('message', '')}"[:2000],
            "rank": rank,
        }
        code = int(ended.get("exit_code", 1))
    else:
        fields = {
            "error_type": "RankLost",
            "rank": rank,
            "pid": pid,
            "message": f"rank {rank} (pid {pid}) of {distributed.from_env().size} died without an error line "
            "(killed by a signal: SIGKILL, the OOM killer, a crash in native code); the other "
            "ranks stopped, and a retry resumes from the last complete checkpoint",
        }
        code = distributed.EXIT_RANK_LOST
    log.error("%s: %s", fields["error_type"], fields["message"])
    emit("error", **fields)
    for handler in logging.getLogger().handlers:
        handler.flush()
    os._exit(code)


def _die_with_parent():
    """A kernel must not outlive the worker that started it, even one killed with SIGKILL:
    ask Linux to send us SIGTERM when the parent dies (training then checkpoints and exits)."""
    if not sys.platform.startswith("linux"):
        return
    import ctypes
    import signal

    PR_SET_PDEATHSIG = 1
    parent = os.getppid()
    try:
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    except (OSError, AttributeError):
        log.warning("prctl(PR_SET_PDEATHSIG) unavailable; an orphaned kernel will not stop by itself")
        return
    if os.getppid() != parent:  # the parent died before the request took effect
        os.kill(os.getpid(), signal.SIGTERM)


def _add_peak_memory(metrics):
    import torch

    if torch.cuda.is_available() and torch.cuda.is_initialized():
        metrics["peak_gpu_mem_gib"] = round(torch.cuda.max_memory_allocated() / 2**30, 3)


def _join_process_group(job):
    """Under torchrun (WORLD_SIZE > 1): NCCL on CUDA, gloo on the CPU, chosen by the job's device."""
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        from . import distributed
        from .modeling import pick_device

        global _watchdog
        world = distributed.setup(pick_device(job))
        _watchdog = distributed.watch_peers(_on_rank_lost)
        log.info(
            "rank %d of %d (local rank %d)%s",
            world.rank,
            world.size,
            world.local_rank,
            ", watching the other ranks" if _watchdog else "",
        )


def _leave_process_group():
    if "torch.distributed" in sys.modules:
        from . import distributed

        distributed.shutdown()


def _version():
    from . import __version__

    return __version__


if __name__ == "__main__":
    try:
        code = main(sys.argv[1:])
    finally:
        _leave_process_group()
    sys.stdout.flush()
    sys.exit(code)
