"""Save on request (SIGUSR1, save_request.py): a training kernel saves a complete checkpoint at the
step the request finds, keeps training, and a kernel never dies of the signal."""

import json
import os
import signal
import subprocess
import time
from pathlib import Path

from conftest import kernel_command, kernel_env
from wmss_kernels import save_request


def test_the_flag_is_taken_once():
    save_request.install()
    assert save_request.take() is False
    os.kill(os.getpid(), signal.SIGUSR1)
    time.sleep(0.05)  # Python runs the handler between bytecodes of the main thread
    assert save_request.take() is True
    assert save_request.take() is False  # cleared: one request, one checkpoint


def _recorded_pid(pid_dir, timeout=120):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        names = [n for n in os.listdir(pid_dir) if n.isdigit()] if os.path.isdir(pid_dir) else []
        if names:
            return int(names[0])
        time.sleep(0.05)
    raise AssertionError("the kernel recorded no pid")


def test_sigusr1_saves_a_complete_checkpoint_and_training_goes_on(tiny_model, tmp_path):
    job = {
        "log_file": str(tmp_path / "sft.log"),
        "model_path": str(tiny_model.model_dir),
        "data_file": str(tiny_model.train_file),
        "output_dir": str(tmp_path / "out"),
        "lr": 3e-3,
        "micro_batch": 4,
        "grad_accum": 1,
        "max_steps": 100000,  # never reached: SIGTERM ends the test
        "max_length": 128,
        "threads": 1,
        "device": "cpu",
        "gradient_checkpointing": False,
        "save_every": 0,  # no checkpoint but the requested one (and the SIGTERM one)
    }
    job_file = tmp_path / "job.json"
    job_file.write_text(json.dumps(job))
    pid_dir = tmp_path / "pids"
    env = {**kernel_env(), "WMSS_PID_DIR": str(pid_dir)}
    proc = subprocess.Popen(kernel_command("sft", job_file), env=env, stdout=subprocess.PIPE, text=True)
    events, asked, requested = [], False, None
    try:
        for line in proc.stdout:
            event = json.loads(line)
            events.append(event)
            if event["type"] == "progress" and event["done"] >= 1 and not asked:
                os.kill(_recorded_pid(pid_dir), signal.SIGUSR1)  # what the activity does
                asked = True
            elif event["type"] == "checkpoint" and requested is None:
                requested = event
            elif requested is not None and event["type"] == "progress" and event["done"] > requested["step"]:
                os.kill(_recorded_pid(pid_dir), signal.SIGTERM)  # it trains on after the save; stop it
                break
        rc = proc.wait(timeout=300)
    finally:
        proc.kill()
    events += [json.loads(line) for line in proc.stdout.read().splitlines() if line.strip()]
    assert requested is not None, events
    path = Path(requested["path"])
    assert path.name == f"checkpoint-{requested['step']}" and (path / "COMPLETE").is_file()
    assert json.loads((path / "trainer_state.json").read_text())["step"] == requested["step"]
    assert rc == 4 and events[-1]["error_type"] == "KernelTerminated", events[-3:]
