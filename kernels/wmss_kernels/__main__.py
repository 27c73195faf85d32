"""Entry point: python -m wmss_kernels <verb> --job <job.json>  (docs/kernel-protocol.md)."""

import importlib
import logging
import os
import random
import sys
import traceback
import warnings

from . import protocol
from .jobs import load_job
from .protocol import InvalidInput, KernelError, emit

VERBS = {
    "make-tiny": "tiny",
    "entropy": "entropy",
    "evaluate": "evaluate",
    "sft": "sft",
    "joint": "joint",
}

log = logging.getLogger("wmss_kernels")


def _parse_args(argv):
    usage = f"usage: python -m wmss_kernels <{'|'.join(VERBS)}> --job <job.json>"
    if not argv or argv[0] not in VERBS:
        what = f"unknown verb {argv[0]!r}" if argv else "no verb given"
        raise InvalidInput(f"{what}; {usage}")
    verb, rest = argv[0], argv[1:]
    if len(rest) == 2 and rest[0] == "--job":
        return verb, rest[1]
    if len(rest) == 1 and rest[0].startswith("--job="):
        return verb, rest[0][len("--job="):]
    raise InvalidInput(f"expected --job <file>; {usage}")


def _setup_logging(log_file):
    try:
        os.makedirs(os.path.dirname(os.path.abspath(log_file)), exist_ok=True)
        handle = open(log_file, "a", buffering=1, encoding="utf-8")
    except OSError as e:
        raise InvalidInput(f"cannot open the log file: {e.strerror or e}", file=log_file, field="log_file")
    protocol.take_stdout(handle)  # from here on, stray prints land in the log
    logging.basicConfig(stream=handle, level=logging.INFO, force=True,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
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


def main(argv) -> int:
    try:
        verb, job_path = _parse_args(argv)
        module = importlib.import_module(f".{VERBS[verb]}", __package__)
        job = load_job(job_path, module.FIELDS)
        _setup_logging(job.log_file)
        log.info("wmss_kernels %s: %s --job %s", _version(), verb, os.path.abspath(job_path))
        protocol.install_sigterm_handler()
        _seed(job.seed, job.threads)
        result = module.run(job)
        emit("result", outputs=result.get("outputs", {}), metrics=result.get("metrics", {}))
        log.info("done: %s", result.get("metrics", {}))
        return 0
    except KernelError as e:
        log.error("%s: %s", e.error_type, e.message)
        emit("error", **e.fields())
        return e.exit_code
    except Exception as e:  # noqa: BLE001 - the protocol needs an error line for every failure
        from .modeling import is_oom

        log.error("crash:\n%s", traceback.format_exc())
        if is_oom(e):
            emit("error", error_type="KernelOutOfMemory", message=f"{type(e).__name__}: {e}"[:2000])
            return 3
        emit("error", error_type="KernelCrashed", message=f"{type(e).__name__}: {e}"[:2000])
        return 1


def _version():
    from . import __version__
    return __version__


if __name__ == "__main__":
    code = main(sys.argv[1:])
    sys.stdout.flush()
    sys.exit(code)
