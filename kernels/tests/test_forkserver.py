"""The kernel fork server (wmss_kernels.forkserver) and its client, as the bridge uses them: a
kernel started through them gives byte for byte the outputs of a plain `python -m wmss_kernels`
and behaves like one towards its starter (protocol on stdout, exit code, SIGTERM = checkpoint and
exit 4, SIGKILL of the client's group kills the kernel); without a server, or for a job the
server refuses, the client runs the plain kernel itself."""

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import wmss_kernels
from conftest import kernel_env

KERNELS = Path(wmss_kernels.__file__).resolve().parents[1]
CLIENT = KERNELS / "wmss_kernels" / "forkclient.py"
TRAIN = {
    "lr": 3e-3,
    "micro_batch": 4,
    "grad_accum": 2,
    "max_steps": 6,
    "save_every": 3,
    "max_length": 96,
    "device": "cpu",
    "seed": 42,
}


@pytest.fixture
def server(fork_socket):
    """The session's fork server (conftest.py), as run_kernel uses it."""
    return {"socket": fork_socket}


def command(verb, job_file, sock=None):
    kernel = ["-m", "wmss_kernels", verb, "--job", str(job_file)]
    if sock is None:
        return [sys.executable, *kernel]
    return [sys.executable, "-I", "-S", str(CLIENT), sock, sys.executable, *kernel]


def start(verb, job, tmp_path, sock=None, env=None):
    job_file = tmp_path / f"{verb}-{'fork' if sock else 'plain'}.json"
    job_file.write_text(json.dumps(job))
    return subprocess.Popen(
        command(verb, job_file, sock),
        env=env or kernel_env(),
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )


def finish(proc):
    out, err = proc.communicate(timeout=600)
    return proc.returncode, [json.loads(line) for line in out.splitlines()], err


def without_speed(value):
    """A JSON value without its throughput figures: wall-clock speed, not a result."""
    if isinstance(value, dict):
        return {k: without_speed(v) for k, v in value.items() if k != "tokens_per_s"}
    if isinstance(value, list):
        return [without_speed(v) for v in value]
    return value


def tree(root):
    """Every file under `root` with its bytes (the outputs to compare); a checkpoint's
    trainer_state.json without its tokens_per_s."""
    files = {}
    for p in sorted(Path(root).rglob("*")):
        if p.is_file():
            data = p.read_bytes()
            if p.name == "trainer_state.json":
                data = json.dumps(without_speed(json.loads(data)), sort_keys=True).encode()
            files[str(p.relative_to(root))] = data
    return files


def run_both(verb, job_of, tmp_path, server, out_name, env=None):
    """The same job plainly and through the server, writing to the same paths in turn."""
    outputs, threads = {}, {}
    for way, sock in (("plain", None), ("fork", server["socket"])):
        rc, events, err = finish(start(verb, job_of(), tmp_path, sock, env))
        assert rc == 0, (way, events, err)
        assert events[-1]["type"] == "result"
        assert "[wmss fork client]" not in err  # the forked one went through the server
        outputs[way] = tree(tmp_path / out_name)
        shutil.move(tmp_path / out_name, tmp_path / f"{out_name}.{way}")
        log = Path(job_of()["log_file"])
        threads[way] = re.findall(r"torch threads: (\d+)", log.read_text())
        log.unlink()
    assert threads["plain"] and threads["plain"] == threads["fork"]  # the thread count as a fresh process has it
    return outputs


def test_entropy_outputs_are_byte_identical_with_torchs_default_threads(tiny_model, tmp_path, server):
    def job():
        return {
            "log_file": str(tmp_path / "log"),
            "model_path": tiny_model.model_dir,
            "data_file": tiny_model.train_file,
            "data_format": "messages",
            "output_path": str(tmp_path / "out" / "entropy.jsonl"),
            "field": "entropy_0",
            "limit": 48,
            "device": "cpu",
            "seed": 42,
        }

    outputs = run_both("entropy", job, tmp_path, server, "out")
    assert outputs["plain"] == outputs["fork"] and outputs["plain"]


def test_sft_outputs_are_byte_identical_with_the_jobs_thread_environment(tiny_model, tmp_path, server):
    # OMP_NUM_THREADS set for the job but not for the server: the forked kernel applies it
    env = {**kernel_env(), "OMP_NUM_THREADS": "1"}

    def job():
        return {
            "log_file": str(tmp_path / "log"),
            "model_path": tiny_model.model_dir,
            "data_file": tiny_model.train_file,
            "output_dir": str(tmp_path / "sft"),
            **TRAIN,
        }

    outputs = run_both("sft", job, tmp_path, server, "sft", env)
    assert any(name.endswith("model.safetensors") for name in outputs["plain"])
    assert outputs["plain"] == outputs["fork"]


def test_exit_codes_and_stderr_come_through(tiny_model, tmp_path, server):
    rc, events, err = finish(
        start("sft", {"model_path": tiny_model.model_dir, "micro_batch": 0}, tmp_path, server["socket"])
    )
    assert rc == 2 and events[-1]["error_type"] == "InvalidInput"
    assert "[wmss fork client]" not in err  # it went through the server


def test_sigterm_to_the_clients_group_checkpoints_and_exits_4(tiny_model, tmp_path, server):
    job = {
        "log_file": str(tmp_path / "log"),
        "model_path": tiny_model.model_dir,
        "data_file": tiny_model.train_file,
        "output_dir": str(tmp_path / "term"),
        **TRAIN,
        "max_steps": 100000,
        "save_every": 0,
        "threads": 1,
    }
    proc = start("sft", job, tmp_path, server["socket"])
    events = []
    for line in proc.stdout:
        events.append(json.loads(line))
        if events[-1]["type"] == "progress" and events[-1]["done"] >= 1:
            os.killpg(proc.pid, signal.SIGTERM)  # what the bridge does on cancellation
            break
    rc, rest, _ = finish(proc)
    events += rest
    assert rc == 4, events
    checkpoint = [e for e in events if e["type"] == "checkpoint"][-1]
    assert (Path(checkpoint["path"]) / "COMPLETE").is_file()
    assert events[-1]["error_type"] == "KernelTerminated"


def kernel_pid(pid_dir, timeout=60):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        pids = [int(n) for n in os.listdir(pid_dir)] if os.path.isdir(pid_dir) else []
        if pids:
            return pids[0]
        time.sleep(0.05)
    raise AssertionError("the kernel recorded no pid")


def gone(pid, timeout=10):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with open(f"/proc/{pid}/stat") as f:
                if f.read().rsplit(")", 1)[1].split()[0] == "Z":
                    return True
        except FileNotFoundError:
            return True
        time.sleep(0.05)
    return False


def test_sigkill_of_the_clients_group_kills_the_kernel(tiny_model, tmp_path, server):
    pid_dir = tmp_path / "pids"
    job = {
        "log_file": str(tmp_path / "log"),
        "model_path": tiny_model.model_dir,
        "data_file": tiny_model.train_file,
        "output_dir": str(tmp_path / "killed"),
        **TRAIN,
        "max_steps": 100000,
        "save_every": 0,
        "threads": 1,
    }
    proc = start("sft", job, tmp_path, server["socket"], {**kernel_env(), "WMSS_PID_DIR": str(pid_dir)})
    kernel = kernel_pid(pid_dir)
    assert kernel != proc.pid and os.getpgid(kernel) == kernel  # forked by the server, in a session of its own
    os.killpg(proc.pid, signal.SIGKILL)  # only the client's group, as a stalled kernel's bridge would
    proc.communicate(timeout=60)
    assert proc.returncode == -signal.SIGKILL
    assert gone(kernel)


def test_a_kernel_killed_by_a_signal_kills_its_client_with_it(tiny_model, tmp_path, server):
    pid_dir = tmp_path / "pids"
    job = {
        "log_file": str(tmp_path / "log"),
        "model_path": tiny_model.model_dir,
        "data_file": tiny_model.train_file,
        "output_dir": str(tmp_path / "crash"),
        **TRAIN,
        "max_steps": 100000,
        "save_every": 0,
        "threads": 1,
    }
    proc = start("sft", job, tmp_path, server["socket"], {**kernel_env(), "WMSS_PID_DIR": str(pid_dir)})
    os.kill(kernel_pid(pid_dir), signal.SIGKILL)
    proc.communicate(timeout=60)
    assert proc.returncode == -signal.SIGKILL


def test_without_a_server_the_client_runs_the_plain_kernel(tiny_model, tmp_path):
    rc, events, err = finish(
        start("sft", {"model_path": tiny_model.model_dir, "micro_batch": 0}, tmp_path, str(tmp_path / "no-such.sock"))
    )
    assert rc == 2 and events[-1]["error_type"] == "InvalidInput"
    assert "no fork server" in err


def test_a_job_with_other_load_time_settings_is_refused_and_runs_plainly(tiny_model, tmp_path, server):
    env = {**kernel_env(), "PYTHONHASHSEED": "7", "TORCH_SHOW_CPP_STACKTRACES": "1"}
    rc, events, err = finish(
        start("sft", {"model_path": tiny_model.model_dir, "micro_batch": 0}, tmp_path, server["socket"], env)
    )
    assert rc == 2 and events[-1]["error_type"] == "InvalidInput"
    assert "refused the job: PYTHONHASHSEED, TORCH_SHOW_CPP_STACKTRACES differ" in err


def test_the_server_stops_with_its_worker_and_stops_its_kernels_gracefully(tiny_model, tmp_path):
    sock = tmp_path / "own.sock"
    srv = subprocess.Popen(
        [sys.executable, "-m", "wmss_kernels.forkserver", "--socket", str(sock)],
        env=kernel_env(),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert srv.stdout.readline().strip() == "listening"
    job = {
        "log_file": str(tmp_path / "log"),
        "model_path": tiny_model.model_dir,
        "data_file": tiny_model.train_file,
        "output_dir": str(tmp_path / "orphan"),
        **TRAIN,
        "max_steps": 100000,
        "save_every": 0,
        "threads": 1,
    }
    proc = start("sft", job, tmp_path, str(sock))
    first = json.loads(proc.stdout.readline())
    assert first["type"] == "progress"
    srv.stdin.close()  # the worker is gone: its kernels get SIGTERM, as plain ones would from Linux
    rc, events, _ = finish(proc)
    assert rc == 4 and events[-1]["error_type"] == "KernelTerminated"
    assert srv.wait(timeout=60) == 0
    assert not sock.exists()


def test_which_environments_a_forked_kernel_can_have():
    from wmss_kernels.forkserver import load_time_difference

    base = {"PATH": "/bin", "PYTHONPATH": "k", "OMP_PROC_BIND": "true"}
    imported = {"TORCHINDUCTOR_CACHE_DIR": "/tmp/ti"}  # set by importing torch
    assert load_time_difference(base, {**base, "CUDA_VISIBLE_DEVICES": "1", "WMSS_FAULT": "hang"}) == (None, None)
    assert load_time_difference(base, {**base, "OMP_NUM_THREADS": "3"}) == (None, 3)
    assert load_time_difference(base, {**base, "OMP_NUM_THREADS": "3", "MKL_NUM_THREADS": "2"})[0]
    assert load_time_difference(base, {"PATH": "/bin", "PYTHONPATH": "k"})[0].startswith("OMP_PROC_BIND differ")
    assert load_time_difference(base, {**base, "PYTHONPATH": "k:x", "HF_HOME": "/h"})[0].startswith(
        "HF_HOME, PYTHONPATH"
    )
    assert load_time_difference(base, base, imported) == (None, None)
    assert load_time_difference(base, {**base, **imported}, imported) == (None, None)
    assert load_time_difference(base, {**base, "TORCHINDUCTOR_CACHE_DIR": "/x"}, imported)[0]
