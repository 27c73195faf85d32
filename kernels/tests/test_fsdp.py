"""FSDP2 with 2 gloo ranks on the CPU against one process (fp32): sft and joint (weak branch frozen)
follow the same loss curve and end in the same weights (the consolidated export); a sharded (DCP)
checkpoint written by 2 ranks resumes on 1 and on 2; a rank killed mid-run makes the other leave
within seconds with a RankLost error line naming it.
"""

import json
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest
import wmss_kernels
from conftest import torchrun_command
from test_joint import joint_job, pair  # noqa: F401 (fixture)
from test_joint import run_inproc as run_joint_inproc
from test_sft import max_diff, of_type, one_thread, run_inproc, sft_job, weights  # noqa: F401 (fixture)
from wmss_kernels import sft

KERNELS = Path(wmss_kernels.__file__).resolve().parents[1]
STEPS = {"max_steps": 6, "micro_batch": 2, "grad_accum": 2, "save_every": 3}
FSDP = {"parallelism": "fsdp"}


def launch(verb, job, tmp_path, nproc=2, env=None):
    """torchrun as the activity starts it (activities/kernelLaunch.ts), WMSS_PID_DIR included."""
    name = Path(job["output_dir"]).name
    job_file = tmp_path / f"job-{name}.json"
    job_file.write_text(json.dumps(job))
    env = {
        **os.environ,
        "PYTHONPATH": str(KERNELS),
        "OMP_NUM_THREADS": "1",
        "WMSS_PID_DIR": str(tmp_path / f"{name}.pids"),
        **(env or {}),
    }
    return subprocess.Popen(
        torchrun_command(verb, job_file, nproc),
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def torchrun(verb, job, tmp_path, nproc=2):
    proc = launch(verb, job, tmp_path, nproc)
    out, err = proc.communicate(timeout=600)
    if proc.returncode != 0:
        print(err[-3000:])
    return proc.returncode, [json.loads(line) for line in out.splitlines()]


def losses(ckpt):
    return [h["loss"] for h in json.loads((Path(ckpt) / "trainer_state.json").read_text())["loss_history"]]


def test_sft_fsdp_equals_one_process_and_resumes_on_1_and_2_ranks(tiny_model, tmp_path, one_thread):
    single = run_inproc(sft, sft_job(tiny_model, tmp_path, "single", **STEPS), tmp_path)["outputs"]["checkpoint"]

    rc, events = torchrun("sft", sft_job(tiny_model, tmp_path, "fsdp", **STEPS, **FSDP), tmp_path)
    assert rc == 0, events
    result = of_type(events, "result")[0]
    assert result["metrics"]["parallelism"] == "fsdp" and result["metrics"]["world_size"] == 2
    final = Path(result["outputs"]["checkpoint"])
    assert losses(final) == pytest.approx(losses(single), rel=1e-5)
    # the final checkpoint is a plain HF model gathered from the shards: same tensors as one process
    assert max_diff(weights(final), weights(single)) < 1e-5
    assert (final / "config.json").is_file() and (final / "tokenizer.json").is_file()
    # the intermediate one is sharded: DCP files of both ranks, scheduler, RNG and data position
    mid = tmp_path / "fsdp" / "checkpoint-3"
    assert (mid / "COMPLETE").is_file() and not (mid / "model.safetensors").exists()
    assert len(list((mid / "dcp").glob("*.distcp"))) == 2
    assert json.loads((mid / "trainer_state.json").read_text())["consumed_samples"] == 12

    # checkpoint-3 of the 2-rank run, resumed on one process and on two ranks
    for name in ("on1", "on2"):
        shutil.copytree(mid, tmp_path / name / "checkpoint-3")
    res1 = run_inproc(sft, sft_job(tiny_model, tmp_path, "on1", **STEPS), tmp_path)
    assert res1["metrics"]["resumed_from_step"] == 3 and res1["metrics"]["parallelism"] == "none"
    rc, events = torchrun("sft", sft_job(tiny_model, tmp_path, "on2", **STEPS, **FSDP), tmp_path)
    assert rc == 0, events
    res2 = of_type(events, "result")[0]
    assert res2["metrics"]["resumed_from_step"] == 3
    for res in (res1, res2):
        assert losses(res["outputs"]["checkpoint"]) == pytest.approx(losses(single), rel=1e-5)
        assert max_diff(weights(res["outputs"]["checkpoint"]), weights(single)) < 1e-5


def test_joint_fsdp_with_frozen_weak_equals_one_process(tiny_model, pair, tmp_path, one_thread):  # noqa: F811
    (tmp_path / "indices.txt").write_text("\n".join(str(i % 16) for i in range(32)) + "\n")
    common = {"fused_dir": str(pair[2]), "freeze_weak": True, **STEPS, "save_every": 0}
    single = run_joint_inproc(joint_job(tiny_model, tmp_path, "single", **common), tmp_path)["outputs"]["checkpoint"]
    rc, events = torchrun("joint", joint_job(tiny_model, tmp_path, "fsdp", **common, **FSDP), tmp_path)
    assert rc == 0, events
    final = of_type(events, "result")[0]["outputs"]["checkpoint"]
    assert losses(final) == pytest.approx(losses(single), rel=1e-5)
    a, b = weights(final), weights(single)
    assert max_diff(a, b) < 1e-5
    # the frozen weak branch came out exactly as it went in, the strong one trained
    before = weights(pair[2])
    assert (
        max_diff(
            {k: a[k] for k in a if k.startswith("sub_models.0.")},
            {k: before[k] for k in a if k.startswith("sub_models.0.")},
        )
        == 0
    )
    assert (
        max_diff(
            {k: a[k] for k in a if k.startswith("sub_models.1.")},
            {k: before[k] for k in a if k.startswith("sub_models.1.")},
        )
        > 0
    )


def test_fsdp_on_one_process_is_refused_with_the_reason(tiny_model, tmp_path):
    from wmss_kernels.protocol import InvalidInput

    with pytest.raises(InvalidInput, match="fsdp shards the model over several processes") as err:
        run_inproc(sft, sft_job(tiny_model, tmp_path, "one", **STEPS, **FSDP), tmp_path)
    assert err.value.field == "parallelism"


def test_a_killed_rank_stops_the_others_with_rank_lost(tiny_model, tmp_path):
    job = sft_job(tiny_model, tmp_path, "kill", max_steps=100000, micro_batch=2, grad_accum=2, save_every=2)
    proc = launch("sft", job, tmp_path)
    pid_dir = tmp_path / "kill.pids"
    ckpt = tmp_path / "kill" / "checkpoint-2"
    deadline = time.time() + 120
    while not (ckpt / "COMPLETE").is_file():  # a complete checkpoint first, so there is something to resume
        assert proc.poll() is None and time.time() < deadline, proc.stderr.read()[-3000:]
        time.sleep(0.2)
    os.kill(int((pid_dir / "rank-1").read_text()), signal.SIGKILL)
    killed = time.time()
    out, err = proc.communicate(timeout=60)
    gone_s = time.time() - killed
    assert proc.returncode != 0
    errors = of_type([json.loads(line) for line in out.splitlines()], "error")
    assert len(errors) == 1 and errors[0]["error_type"] == "RankLost" and errors[0]["rank"] == 1, errors
    assert gone_s < 10, gone_s
    # torchrun's own summary names the rank and the signal, for the bridge (kernelBridge.ts)
    assert "exitcode  : -9" in err and "rank      : 1" in err, err[-2000:]
