"""Shared fixtures: a tiny model made once per session, and a runner for the kernel CLI."""

import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections import namedtuple
from pathlib import Path

import pytest

KERNELS_DIR = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(KERNELS_DIR))

TinyModel = namedtuple("TinyModel", "model_dir train_file test_file")


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory):
    from wmss_kernels.tiny import make_tiny

    root = tmp_path_factory.mktemp("tiny")
    out = make_tiny(str(root / "model"), str(root / "data"), 256, 32)["outputs"]
    return TinyModel(out["model_dir"], out["train_file"], out["test_file"])


_fork_server = None  # (process, socket path) once the first run_kernel started it


def kernel_env():
    """The environment of a kernel the tests start (and of the session's fork server)."""
    return {**os.environ, "PYTHONPATH": str(KERNELS_DIR)}


def _fork_socket(always=False):
    """The socket of this session's kernel fork server, started on first use, as a GPU worker
    starts its own (docs/kernel-launch.md); None when WMSS_KERNEL_FORK_SERVER turns it off (unless
    `always`: the fork server's own tests). A job it refuses runs as a plain process (the
    client's fallback)."""
    global _fork_server
    if not always and os.environ.get("WMSS_KERNEL_FORK_SERVER", "").strip().lower() in ("0", "false", "off", "no"):
        return None
    if _fork_server is None:
        sock = os.path.join(tempfile.mkdtemp(prefix="wmss-fork-"), "kernels.sock")
        proc = subprocess.Popen(
            [sys.executable, "-m", "wmss_kernels.forkserver", "--socket", sock],
            env=kernel_env(),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        assert proc.stdout.readline().strip() == "listening"
        _fork_server = (proc, sock)
    return _fork_server[1]


def pytest_sessionfinish(session, exitstatus):
    if _fork_server is not None:
        proc, sock = _fork_server
        proc.stdin.close()  # the server ends when its stdin closes
        proc.wait(timeout=120)
        shutil.rmtree(os.path.dirname(sock), ignore_errors=True)


@pytest.fixture(scope="session")
def fork_socket():
    return _fork_socket(always=True)


def torchrun_command(verb, job_file, nproc):
    """`torchrun --standalone --nproc-per-node N -m wmss_kernels <verb> --job <file>`, as the
    activity launches a kernel on several devices (never through the fork server)."""
    torchrun = ["-m", "torch.distributed.run", "--standalone", "--nnodes", "1", "--nproc-per-node", str(nproc)]
    return [sys.executable, *torchrun, "-m", "wmss_kernels", verb, "--job", str(job_file)]


def kernel_command(verb, job_file):
    """`python -m wmss_kernels <verb> --job <file>`, through the session's fork server when it runs
    (the fork client: the command the kernel bridge uses)."""
    kernel = ["-m", "wmss_kernels", verb, "--job", str(job_file)]
    sock = _fork_socket()
    if sock is None:
        return [sys.executable, *kernel]
    return [
        sys.executable,
        "-I",
        "-S",
        str(KERNELS_DIR / "wmss_kernels" / "forkclient.py"),
        sock,
        sys.executable,
        *kernel,
    ]


def run_kernel(verb, job: dict, tmp_path):
    """Runs `python -m wmss_kernels <verb> --job <file>` (kernel_command); returns (returncode,
    protocol events).

    Fails the test if stdout holds anything but JSON lines."""
    tmp_path = Path(tmp_path)
    job = {"log_file": str(tmp_path / f"{verb}.log"), **job}
    job_file = tmp_path / f"{verb}-job.json"
    job_file.write_text(json.dumps(job))
    proc = subprocess.run(
        kernel_command(verb, job_file), cwd=tmp_path, env=kernel_env(), capture_output=True, text=True, timeout=600
    )
    events = []
    for line in proc.stdout.splitlines():
        try:
            event = json.loads(line)
        except json.JSONDecodeError:
            raise AssertionError(f"non-JSON line on stdout: {line!r}\nstderr:\n{proc.stderr[-3000:]}")
        assert isinstance(event, dict) and "type" in event, line
        events.append(event)
    if proc.returncode != 0:
        print(proc.stderr[-3000:])  # shown by pytest when the test fails
    return proc.returncode, events
