"""Issue 21 defect 4: every failure a kernel can raise is a typed error event that says what to
fix, and the permanent ones (bad model dir, diverged training, full disk, read-only dir, a
max_length that fits no sample) are not exit 1 (KernelCrashed, retried)."""

import json
import math
import shutil
import subprocess
from pathlib import Path

import pytest
import torch
from conftest import run_kernel
from safetensors.torch import load_file
from wmss_kernels import sft
from wmss_kernels.modeling import check_model_dir, load_tokenizer
from wmss_kernels.protocol import InvalidInput

# no recomputation, checkpoints only at the end: the tiny model needs neither (the job schema's
# defaults are the run config's: on, every 50 steps)
FAST = {
    "micro_batch": 4,
    "grad_accum": 2,
    "max_length": 128,
    "threads": 1,
    "device": "cpu",
    "gradient_checkpointing": False,
    "save_every": 0,
}


def sft_job(tiny, out_dir, **over):
    return {
        "model_path": str(tiny.model_dir),
        "data_file": str(tiny.train_file),
        "output_dir": str(out_dir),
        **FAST,
        **over,
    }


def errors(events):
    return [e for e in events if e["type"] == "error"]


def broken_copy(tiny, tmp_path, name, edit):
    model = tmp_path / f"model-{name.replace('.', '-')}"
    shutil.copytree(tiny.model_dir, model)
    edit(model / name)
    return model


def break_json_at_line(file: Path, line: int):
    lines = file.read_text().split("\n")
    lines[line - 1] += " ,,"
    file.write_text("\n".join(lines))


def test_a_bad_tokenizer_json_is_invalid_input_naming_file_and_line(tiny_model, tmp_path):
    model = broken_copy(tiny_model, tmp_path, "tokenizer.json", lambda f: break_json_at_line(f, 40))
    job = {
        "model_path": str(model),
        "data_file": str(tiny_model.train_file),
        "data_format": "messages",
        "output_path": str(tmp_path / "e.jsonl"),
        "field": "entropy_0",
        "definition": "shifted",
        "max_length": 128,
        "threads": 1,
        "device": "cpu",
        "limit": 4,
    }
    rc, events = run_kernel("entropy", job, tmp_path)
    assert rc == 2
    [err] = errors(events)
    assert err["error_type"] == "InvalidInput"
    assert err["file"] == str(model / "tokenizer.json") and err["line"] == 40
    assert err["message"].startswith(f"{model / 'tokenizer.json'} line 40: invalid JSON")
    assert "column" in err["message"]


@pytest.mark.parametrize(
    "name, edit, message",
    [
        ("config.json", lambda f: break_json_at_line(f, 3), "invalid JSON"),
        ("tokenizer_config.json", lambda f: f.write_bytes(b"\xff\xfe{}"), "not UTF-8"),
        ("model.safetensors", lambda f: f.write_bytes(f.read_bytes()[:1000]), "not a valid safetensors file"),
        (
            "model.safetensors",
            lambda f: f.write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json}      "),
            "not a valid safetensors file",
        ),
    ],
)
def test_model_dir_load_failures_name_the_file(tiny_model, tmp_path, name, edit, message):
    model = broken_copy(tiny_model, tmp_path, name, edit)
    with pytest.raises(InvalidInput) as e:
        check_model_dir(str(model))
        load_tokenizer(str(model))
    assert e.value.file == str(model / name)
    assert message in e.value.message


def test_nan_loss_is_training_diverged_without_a_nan_checkpoint_and_a_lower_lr_then_runs(tiny_model, tmp_path):
    out = tmp_path / "out"
    # warm-up makes step 1's lr 0, so checkpoint-1 is finite; the steps after it explode
    bad = sft_job(tiny_model, out, lr=1e8, warmup_ratio=0.5, max_steps=4, save_every=1)
    rc, events = run_kernel("sft", bad, tmp_path)
    assert rc == 5
    [err] = errors(events)
    assert err["error_type"] == "TrainingDiverged" and err["field"] == "lr"
    d = err["details"]
    assert d["step"] in (2, 3) and d["max_steps"] == 4 and math.isfinite(d["last_finite_loss"])
    assert f"optimizer step {d['step']} of 4" in err["message"] and "last finite loss" in err["message"]
    assert not [e for e in events if e["type"] == "checkpoint" and e["step"] >= d["step"]]
    # nothing at the top level claims to be resumable; what was saved before is kept aside, finite
    assert sorted(p.name for p in out.iterdir()) == [".diverged"]
    aside = out / ".diverged"
    assert json.loads((aside / "DIVERGED.json").read_text())["step"] == d["step"]
    for ckpt in aside.glob("checkpoint-*"):
        assert all(torch.isfinite(t).all() for t in load_file(str(ckpt / "model.safetensors")).values())

    # the corrected config in the same output_dir is not refused as "cannot resume ... other settings"
    good = {**bad, "lr": 3e-3, "log_file": str(tmp_path / "good.log")}
    job_file = tmp_path / "good.json"
    job_file.write_text(json.dumps(good))
    from wmss_kernels.jobs import job_schema, load_job

    result = sft.run(load_job(str(job_file), job_schema("sft")))
    assert result["metrics"]["steps"] == 4 and result["metrics"]["resumed_from_step"] == 0
    assert math.isfinite(result["metrics"]["final_loss"])


def test_max_length_below_every_prompt_says_how_far_to_raise_it(tiny_model, tmp_path):
    rc, events = run_kernel("sft", sft_job(tiny_model, tmp_path / "out", max_length=8, max_steps=1), tmp_path)
    assert rc == 2
    [err] = errors(events)
    assert err["field"] == "max_length"
    assert "raise it to at least" in err["reason"]
    need = int(err["reason"].split("raise it to at least ")[1].split(" ")[0])
    assert need > 8


def _mount_tmpfs(where: Path, options: str):
    where.mkdir(parents=True, exist_ok=True)
    proc = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(where)], capture_output=True)
    if proc.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here (needs root): {proc.stderr.decode().strip()}")


@pytest.fixture
def tmpfs(tmp_path):
    mounted = []

    def mount(name, options):
        where = tmp_path / name
        _mount_tmpfs(where, options)
        mounted.append(where)
        return where

    yield mount
    for where in mounted:
        subprocess.run(["umount", str(where)], check=False)


def test_a_full_disk_is_insufficient_disk_naming_the_checkpoint_and_leaves_no_partial(tiny_model, tmp_path, tmpfs):
    out = tmpfs("small", "size=2m")  # the tiny model's checkpoint (weights + AdamW) is about 2.3 MB
    rc, events = run_kernel("sft", sft_job(tiny_model, out, lr=3e-3, max_steps=1), tmp_path)
    assert rc == 6
    [err] = errors(events)
    assert err["error_type"] == "InsufficientDisk"
    assert str(out / "checkpoint-1") in err["message"] and "full" in err["message"]
    assert list(out.iterdir()) == []  # no checkpoint-1.partial


def test_a_read_only_output_dir_is_not_writable_naming_it(tiny_model, tmp_path, tmpfs):
    out = tmpfs("ro", "ro,size=1m")
    rc, events = run_kernel("sft", sft_job(tiny_model, out / "stage1", lr=3e-3, max_steps=1), tmp_path)
    assert rc == 7
    [err] = errors(events)
    assert err["error_type"] == "NotWritable"
    assert str(out / "stage1") in err["message"] and "read-only" in err["message"]


def test_a_full_disk_under_the_entropy_writer_leaves_no_temp_file_and_names_it(tmp_path, tmpfs):
    from wmss_kernels.entropy import write_jsonl_atomic
    from wmss_kernels.protocol import disk_error

    out = tmpfs("tiny", "size=64k")
    rows = [{"idx": i, "entropy_0": 0.5, "pad": "x" * 100} for i in range(2000)]  # about 240 kB
    with pytest.raises(OSError) as e:
        write_jsonl_atomic(str(out / "entropy_0.jsonl"), rows)
    typed = disk_error(e.value)
    assert typed is not None and typed.error_type == "InsufficientDisk" and typed.exit_code == 6
    assert typed.file.startswith(str(out / "entropy_0.jsonl.tmp-"))
    assert list(out.iterdir()) == []
