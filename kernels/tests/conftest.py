"""Shared fixtures: a tiny model made once per session, and a runner for the kernel CLI."""

import json
import os
import subprocess
import sys
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


def run_kernel(verb, job: dict, tmp_path):
    """Runs `python -m wmss_kernels <verb> --job <file>`; returns (returncode, protocol events).

    Fails the test if stdout holds anything but JSON lines."""
    tmp_path = Path(tmp_path)
    job = {"log_file": str(tmp_path / f"{verb}.log"), **job}
    job_file = tmp_path / f"{verb}-job.json"
    job_file.write_text(json.dumps(job))
    env = {**os.environ, "PYTHONPATH": str(KERNELS_DIR)}
    proc = subprocess.run([sys.executable, "-m", "wmss_kernels", verb, "--job", str(job_file)],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
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
