"""The GPU benchmarks (bench/gpu) call the kernels' own training step; run on the CPU with a tiny
shape, a benchmark that no longer matches the kernels fails here instead of on the GPU machine."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[2] / "bench" / "gpu"


@pytest.mark.parametrize("script", ["branch_loss_bench.py"])
def test_a_training_benchmark_runs_on_a_tiny_shape(script, tmp_path):
    env = {
        **os.environ,
        "WMSS_BENCH_DEVICE": "cpu",
        "PYTHONPATH": os.pathsep.join([str(BENCH.parents[1] / "kernels"), str(BENCH)]),
        "OMP_NUM_THREADS": "1",
    }
    done = subprocess.run(
        [
            sys.executable,
            str(BENCH / script),
            "--size",
            "tiny",
            "--steps",
            "4",
            "--global-batch",
            "8",
            "--micro",
            "4",
            "--out",
            str(tmp_path),
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    (report,) = tmp_path.glob("*.json")
    figures = json.loads(report.read_text())
    assert all(v > 0 for k, v in figures.items() if k.endswith("_s"))
