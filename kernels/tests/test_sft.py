"""sft kernel: learning, exact resume, incomplete checkpoints, SIGTERM, OOM and bad jobs."""

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import wmss_kernels
from conftest import run_kernel
from safetensors.torch import load_file
from wmss_kernels import sft
from wmss_kernels.jobs import job_schema, load_job
from wmss_kernels.protocol import InvalidInput, Terminated

KERNELS = Path(wmss_kernels.__file__).resolve().parents[1]

# Small and fast: 30 optimizer steps of 8 samples on one CPU thread.
# no recomputation, checkpoints only at the end unless a test asks: the tiny model needs neither
# (the job schema's defaults are the run config's: on, every 50 steps)
BASE = {
    "lr": 3e-3,
    "micro_batch": 4,
    "grad_accum": 2,
    "max_steps": 30,
    "warmup_ratio": 0.1,
    "max_length": 128,
    "threads": 1,
    "device": "cpu",
    "gradient_checkpointing": False,
    "save_every": 0,
}


def sft_job(tiny, tmp_path, name, **over):
    return {
        "model_path": str(tiny.model_dir),
        "data_file": str(tiny.train_file),
        "output_dir": str(tmp_path / name),
        "log_file": str(tmp_path / f"{name}.log"),
        **BASE,
        **over,
    }


def of_type(events, t):
    return [e for e in events if e.get("type") == t]


def weights(ckpt):
    return load_file(str(Path(ckpt) / "model.safetensors"))


def max_diff(a, b):
    assert a.keys() == b.keys()
    return max((a[k] - b[k]).abs().max().item() for k in a)


def run_inproc(module, job, tmp_path):
    """Run a verb in this process (no interpreter + transformers start-up, ~8 s of CPU per run)."""
    path = tmp_path / f"job-{Path(job['output_dir']).name}.json"
    path.write_text(json.dumps(job))
    return module.run(load_job(str(path), job_schema(module.__name__.rsplit(".", 1)[1])))


@pytest.fixture
def one_thread():
    # the tiny model is faster on one thread, and CI machines are shared
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def test_learns_and_resumes_exactly(tiny_model, tmp_path, one_thread):
    result = run_inproc(sft, sft_job(tiny_model, tmp_path, "straight"), tmp_path)
    straight = Path(result["outputs"]["checkpoint"])
    assert straight.name == "checkpoint-30" and (straight / "COMPLETE").is_file()
    assert result["metrics"]["steps"] == 30 and result["metrics"]["resumed_from_step"] == 0
    state = json.loads((straight / "trainer_state.json").read_text())
    assert state["step"] == 30 and state["consumed_samples"] == 240 and len(state["loss_history"]) == 30
    losses = [h["loss"] for h in state["loss_history"]]
    assert sum(losses[-3:]) / 3 < 0.6 * losses[0], losses
    for f in ("optimizer.pt", "scheduler.pt", "rng.pt", "config.json", "tokenizer.json"):
        assert (straight / f).is_file(), f

    # Stopped after step 12 as if SIGTERM came: Terminated (exit 4) with a complete checkpoint.
    with pytest.raises(Terminated):
        run_inproc(sft, sft_job(tiny_model, tmp_path, "split", stop_after_steps=12), tmp_path)
    split = tmp_path / "split"
    assert [p.name for p in split.iterdir()] == ["checkpoint-12"]
    # A crash leftover: newer but without COMPLETE, and a half-written partial. Both ignored.
    (split / "checkpoint-20").mkdir()
    (split / "checkpoint-21.partial").mkdir()

    # Other settings cannot continue that run.
    with pytest.raises(InvalidInput, match="lr"):
        run_inproc(sft, sft_job(tiny_model, tmp_path, "split", lr=1e-3), tmp_path)

    result = run_inproc(sft, sft_job(tiny_model, tmp_path, "split"), tmp_path)
    assert result["metrics"]["resumed_from_step"] == 12 and result["metrics"]["steps"] == 30
    assert not (split / "checkpoint-21.partial").exists()
    resumed = Path(result["outputs"]["checkpoint"])
    assert resumed.name == "checkpoint-30"
    assert max_diff(weights(straight), weights(resumed)) <= 1e-6

    # A finished run returns its final checkpoint without training again.
    again = run_inproc(sft, sft_job(tiny_model, tmp_path, "split"), tmp_path)
    assert again["outputs"] == result["outputs"] and again["metrics"]["resumed_from_step"] == 30


def test_sigterm_saves_checkpoint(tiny_model, tmp_path):
    job = tmp_path / "job.json"
    job.write_text(json.dumps(sft_job(tiny_model, tmp_path, "term", max_steps=100000)))
    env = {**os.environ, "PYTHONPATH": str(KERNELS)}
    proc = subprocess.Popen(
        [sys.executable, "-m", "wmss_kernels", "sft", "--job", str(job)],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        env=env,
        cwd=tmp_path,
    )
    events = []
    for line in proc.stdout:
        events.append(json.loads(line))
        if events[-1].get("type") == "progress" and events[-1]["done"] >= 1:
            proc.send_signal(signal.SIGTERM)
            break
    events += [json.loads(line) for line in proc.stdout]
    assert proc.wait(timeout=60) == 4, events
    ckpt = of_type(events, "checkpoint")[-1]
    assert (Path(ckpt["path"]) / "COMPLETE").is_file() and ckpt["step"] >= 1
    assert of_type(events, "error")[0]["error_type"] == "KernelTerminated"


def test_simulated_oom(tiny_model, tmp_path):
    rc, ev = run_kernel("sft", sft_job(tiny_model, tmp_path, "oom", simulate_oom=True), tmp_path)
    assert rc == 3 and of_type(ev, "error")[0]["error_type"] == "KernelOutOfMemory"
    assert not list((tmp_path / "oom").glob("checkpoint-*"))


def test_bad_job(tiny_model, tmp_path):
    rc, ev = run_kernel("sft", sft_job(tiny_model, tmp_path, "bad", micro_batch=0), tmp_path)
    assert rc == 2 and of_type(ev, "error")[0]["field"] == "micro_batch"


def test_step_order_is_deterministic_and_shardable():
    from wmss_kernels.train_batches import step_indices

    a = [step_indices(s, 10, 4, seed=1) for s in range(5)]  # 20 positions = 2 epochs of 10
    assert a == [step_indices(s, 10, 4, seed=1) for s in range(5)]
    flat = sum(a, [])
    assert sorted(flat[:10]) == list(range(10)) and sorted(flat[10:]) == list(range(10))
    assert flat[:10] != flat[10:]  # each epoch has its own order
    assert torch.tensor(flat).ne(torch.tensor(sum([step_indices(s, 10, 4, seed=2) for s in range(5)], []))).any()
