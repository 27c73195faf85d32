"""Runs kernels the way the GPU worker does: a job file per step and
`python -m wmss_kernels <verb> --job <file>` (under `python -m torch.distributed.run` for several
ranks, the command line of activities/kernelLaunch.ts), reading the JSON-lines protocol.
The GPU machine has no Node.js, so the GPU scripts use this in place of the worker."""

import json
import os
import subprocess
import sys
import threading
import time

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
GSM8K = os.path.join(REPO, "data", "gsm8k", "test.jsonl")

# Qwen3-0.6B's published shape (config.json of Qwen/Qwen3-0.6B-Base), random weights.
QWEN3_06B = dict(
    vocab_size=151936,
    hidden_size=1024,
    num_layers=28,
    num_heads=16,
    num_kv_heads=8,
    head_dim=128,
    intermediate_size=3072,
    max_position_embeddings=40960,
    tie_word_embeddings=True,
)
CPU_SMOKE_SHAPE = dict(
    vocab_size=512, hidden_size=64, num_layers=2, num_heads=4, num_kv_heads=2, head_dim=16, intermediate_size=128
)


def kernel_command(verb, job_file, ranks=1):
    kernel = ["-m", "wmss_kernels", verb, "--job", job_file]
    if ranks <= 1:
        return [sys.executable, *kernel]
    return [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nnodes",
        "1",
        "--nproc-per-node",
        str(ranks),
        *kernel,
    ]


class Kernel:
    """One kernel process started in the background; `wait()` returns (exit code, events, seconds).
    `on_event(kernel, event)` sees every protocol event as it arrives (to inject faults)."""

    def __init__(self, verb, job, work, name, env=None, ranks=1, on_event=None):
        job = {"log_file": os.path.join(work, "logs", f"{name}.log"), **job}
        os.makedirs(os.path.join(work, "jobs"), exist_ok=True)
        self.name, self.events, self.pid_dir = name, [], os.path.join(work, "jobs", f"{name}.pids")
        self.log_file = job["log_file"]
        path = os.path.join(work, "jobs", f"{name}.json")
        with open(path, "w") as f:
            json.dump(job, f, indent=2)
        full_env = {
            **os.environ,
            "PYTHONPATH": os.path.join(REPO, "kernels"),
            "PYTHONUNBUFFERED": "1",
            "WMSS_PID_DIR": self.pid_dir,
            **(env or {}),
        }
        self.start = time.time()
        self.proc = subprocess.Popen(
            kernel_command(verb, path, ranks),
            env=full_env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,
        )
        self.stderr = []
        threading.Thread(target=lambda: self.stderr.extend(self.proc.stderr), daemon=True).start()
        self.on_event = on_event
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self):
        for line in self.proc.stdout:
            if not line.startswith("{"):
                continue
            event = {**json.loads(line), "_t": time.time() - self.start}
            self.events.append(event)
            if self.on_event:
                self.on_event(self, event)

    def rank_pids(self):
        """{rank: pid} of the kernel processes recorded under WMSS_PID_DIR."""
        out = {}
        for name in os.listdir(self.pid_dir) if os.path.isdir(self.pid_dir) else []:
            try:
                with open(f"/proc/{name}/environ", "rb") as f:
                    env = dict(kv.split(b"=", 1) for kv in f.read().split(b"\0") if b"=" in kv)
                out[int(env.get(b"RANK", b"0"))] = int(name)
            except (OSError, ValueError):
                pass
        return out

    def wait(self, timeout=None):
        try:
            code = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, 9)
            code = self.proc.wait()
        self.reader.join(10)
        seconds = time.time() - self.start
        print(f"[{self.name}] exit {code} in {seconds:.1f} s", flush=True)
        for e in self.events:
            if e["type"] in ("result", "error", "checkpoint"):
                print(f"    {json.dumps(e)[:400]}", flush=True)
        if code not in (0, 4):
            print("".join(self.stderr)[-2500:], flush=True)
            try:
                with open(self.log_file) as f:
                    print(f.read()[-2500:], flush=True)
            except OSError:
                pass
        return code, self.events, seconds


def run_kernel(verb, job, work, name, **kw):
    """Runs one kernel to its end: (exit code, events, seconds)."""
    return Kernel(verb, job, work, name, **kw).wait()


def make_random_model(common, shape, model_dir, work):
    """A random-weight model of the given shape (and a small data set beside it) via the make-tiny kernel."""
    job = {
        **common,
        "output_dir": model_dir,
        "data_dir": os.path.join(work, "tiny-data"),
        "train_samples": 64,
        "test_samples": 8,
        **shape,
    }
    return run_kernel("make-tiny", job, work, "make-model")


def gsm8k_training(common, micro_batch, grad_accum, **more):
    """A training job's fields for one epoch of GSM8K at 1024 tokens, the original's optimiser settings."""
    return {
        **common,
        "data_file": GSM8K,
        "data_format": "gsm8k",
        "max_length": 1024,
        "lr": 1e-5,
        "warmup_ratio": 0.1,
        "weight_decay": 0.0,
        "max_grad_norm": 1.0,
        "epochs": 1,
        "micro_batch": micro_batch,
        "grad_accum": grad_accum,
        "gradient_checkpointing": False,
        "dtype": "auto",
        **more,
    }


def result_of(events):
    return next((e for e in events if e["type"] == "result"), {"metrics": {}, "outputs": {}})
