"""Several devices in one step: sft under torchrun with 2 CPU ranks (gloo) against one process.

The global batch stays micro_batch × grad_accum whatever the number of ranks, so the two runs see
the same samples per optimizer step and must follow the same loss curve (up to the summation
order of the all-reduce), and a run may resume on another number of ranks.
"""

import json
import os
import subprocess
import types
from pathlib import Path

import pytest
import wmss_kernels
from conftest import torchrun_command
from test_sft import max_diff, of_type, one_thread, run_inproc, sft_job, weights  # noqa: F401 (fixture)
from wmss_kernels import sft
from wmss_kernels.protocol import InvalidInput, Terminated
from wmss_kernels.train_plan import accum_per_rank

KERNELS = Path(wmss_kernels.__file__).resolve().parents[1]
STEPS = {"max_steps": 8, "micro_batch": 4, "grad_accum": 2, "save_every": 4}


def torchrun(job, tmp_path, nproc=2):
    """`torchrun --standalone --nproc-per-node N -m wmss_kernels sft`, as the activity launches it."""
    job_file = tmp_path / f"job-{Path(job['output_dir']).name}.json"
    job_file.write_text(json.dumps(job))
    env = {**os.environ, "PYTHONPATH": str(KERNELS), "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(
        torchrun_command("sft", job_file, nproc),
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    # only rank 0 speaks the protocol: every stdout line is one JSON event, none from rank 1
    events = [json.loads(line) for line in proc.stdout.splitlines()]
    if proc.returncode != 0:
        print(proc.stderr[-3000:])
    return proc.returncode, events


def losses(ckpt):
    return [h["loss"] for h in json.loads((Path(ckpt) / "trainer_state.json").read_text())["loss_history"]]


def test_two_ranks_follow_the_single_process_curve_and_resume_across_world_sizes(tiny_model, tmp_path, one_thread):
    single = run_inproc(sft, sft_job(tiny_model, tmp_path, "single", **STEPS), tmp_path)
    assert single["metrics"]["world_size"] == 1 and single["metrics"]["grad_accum_per_rank"] == 2

    rc, events = torchrun(sft_job(tiny_model, tmp_path, "ddp", **STEPS), tmp_path)
    assert rc == 0, events
    result = of_type(events, "result")
    assert len(result) == 1 and len(of_type(events, "checkpoint")) == 2  # rank 0 only: steps 4 and 8
    metrics = result[0]["metrics"]
    assert (metrics["world_size"], metrics["micro_batch"], metrics["grad_accum_per_rank"], metrics["global_batch"]) == (
        2,
        4,
        1,
        8,
    )
    ddp = result[0]["outputs"]["checkpoint"]
    assert losses(ddp) == pytest.approx(losses(single["outputs"]["checkpoint"]), rel=1e-4)
    assert max_diff(weights(ddp), weights(single["outputs"]["checkpoint"])) < 1e-4
    log = (tmp_path / "ddp.log").read_text()
    assert "rank 1 of 2" in log and '[rank 1 protocol] {"type": "result"' in log

    # Stopped on one process after step 4, resumed on two ranks: both ranks load checkpoint-4.
    with pytest.raises(Terminated):
        run_inproc(sft, sft_job(tiny_model, tmp_path, "mixed", stop_after_steps=4, **STEPS), tmp_path)
    rc, events = torchrun(sft_job(tiny_model, tmp_path, "mixed", **STEPS), tmp_path)
    assert rc == 0, events
    assert of_type(events, "result")[0]["metrics"]["resumed_from_step"] == 4
    mixed = of_type(events, "result")[0]["outputs"]["checkpoint"]
    assert losses(mixed) == pytest.approx(losses(single["outputs"]["checkpoint"]), rel=1e-4)
    assert max_diff(weights(mixed), weights(single["outputs"]["checkpoint"])) < 1e-4


def test_grad_accum_must_split_evenly_over_the_devices():
    job = types.SimpleNamespace(micro_batch=2, grad_accum=6, _path="job.json")
    assert accum_per_rank(job, 1) == 6 and accum_per_rank(job, 3) == 2
    with pytest.raises(InvalidInput, match="grad_accum 6 cannot be split over 4 devices") as err:
        accum_per_rank(job, 4)
    assert err.value.field == "grad_accum"
