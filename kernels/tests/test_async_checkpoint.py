"""Asynchronous sharded checkpoints (async_checkpoint.py) with 2 gloo ranks on the CPU: a run
whose checkpoints were written in the background resumes from one of them with the losses of an
uninterrupted synchronous run, and a rank killed while a background write is in flight leaves no
checkpoint marked COMPLETE (and the rerun starts over cleanly)."""

import json
import shutil
from pathlib import Path

import pytest
from test_fsdp import FSDP, launch, losses, torchrun
from test_sft import of_type, one_thread, sft_job  # noqa: F401 (fixture)

STEPS = {"max_steps": 6, "micro_batch": 2, "grad_accum": 2, "save_every": 2}


def test_an_async_saved_checkpoint_resumes_with_the_losses_of_a_sync_run(tiny_model, tmp_path, one_thread):
    rc, events = torchrun(
        "sft", sft_job(tiny_model, tmp_path, "sync", **STEPS, **FSDP, async_checkpoints=False), tmp_path
    )
    assert rc == 0, events
    sync_final = of_type(events, "result")[0]["outputs"]["checkpoint"]

    # stop after step 5 (a synchronous save); checkpoints 2 and 4 were written in the background
    job = sft_job(tiny_model, tmp_path, "async", **STEPS, **FSDP, stop_after_steps=5)
    rc, events = torchrun("sft", job, tmp_path)
    # stopped as after SIGTERM (each rank exits 4; torchrun reports 1)
    assert rc != 0 and of_type(events, "error")[0]["error_type"] == "KernelTerminated", events
    out = Path(job["output_dir"])
    published = [e["step"] for e in of_type(events, "checkpoint")]
    assert published == [2, 4, 5]
    for step in (2, 4):
        ckpt = out / f"checkpoint-{step}"
        assert (ckpt / "COMPLETE").is_file() and (ckpt / "dcp" / ".metadata").is_file()
        assert len(list((ckpt / "dcp").glob("*.distcp"))) == 2
    assert not list(out.glob("*.partial"))

    # resume from the background-written checkpoint-4
    shutil.rmtree(out / "checkpoint-5")
    rc, events = torchrun("sft", {**job, "stop_after_steps": None}, tmp_path)
    assert rc == 0, events
    result = of_type(events, "result")[0]
    assert result["metrics"]["resumed_from_step"] == 4
    assert losses(result["outputs"]["checkpoint"]) == pytest.approx(losses(sync_final), rel=1e-5)


def test_a_kill_during_a_background_write_leaves_no_complete_checkpoint(tiny_model, tmp_path, one_thread):
    job = sft_job(tiny_model, tmp_path, "killed", **STEPS, **FSDP)
    marker = tmp_path / "fault-marker"
    proc = launch("sft", job, tmp_path, env={"WMSS_FAULT": "die-during-async-save", "WMSS_FAULT_MARKER": str(marker)})
    out, err = proc.communicate(timeout=600)
    assert proc.returncode != 0 and marker.is_file(), err[-3000:]
    events = [json.loads(line) for line in out.splitlines()]
    assert of_type(events, "checkpoint") == []
    root = Path(job["output_dir"])
    assert [p.name for p in root.glob("checkpoint-*") if (p / "COMPLETE").exists()] == []
    assert not (root / "checkpoint-2").exists()  # at most checkpoint-2.partial, which resume ignores

    rc, events = torchrun("sft", job, tmp_path)
    assert rc == 0, events
    assert of_type(events, "result")[0]["metrics"]["resumed_from_step"] == 0
