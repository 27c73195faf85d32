"""Kernel start-up: the same tiny entropy job run as a plain `python -m wmss_kernels` process
(baseline) and through the kernel fork server (docs/kernel-launch.md), alternating, in one run.

    PYTHONPATH=kernels .venv/bin/python bench/kernel_start.py [--runs 5] [--out DIR]

Prints each kernel's wall time, the medians and the ratio plain / forked; writes
kernel_start.json into --out (default bench/results/). The outputs of both ways are compared
byte for byte, so a fast but wrong forked kernel fails the bench.
"""

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
KERNELS = REPO / "kernels"
sys.path.insert(0, str(KERNELS))


def start_server(env):
    """The fork server as a GPU worker starts it; returns (process, socket) once it listens."""
    sock = os.path.join(tempfile.mkdtemp(prefix="wmss-fork-"), "kernels.sock")
    proc = subprocess.Popen(
        [sys.executable, "-m", "wmss_kernels.forkserver", "--socket", sock],
        env=env,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    if proc.stdout.readline().strip() != "listening":
        raise SystemExit("the fork server did not start")
    while proc.stdout.readline().split()[:1] != ["ready"]:  # imports done: time kernels, not the preload
        if proc.poll() is not None:
            raise SystemExit("the fork server stopped while importing")
    return proc, sock


def run_once(command, job, work, name, env):
    """Runs one entropy kernel; returns (seconds, output bytes)."""
    out = work / f"{name}.jsonl"
    job_file = work / f"{name}.json"
    job_file.write_text(json.dumps({**job, "output_path": str(out), "log_file": str(work / f"{name}.log")}))
    started = time.perf_counter()
    proc = subprocess.run(
        [*command, "-m", "wmss_kernels", "entropy", "--job", str(job_file)],
        cwd=work,
        env=env,
        capture_output=True,
        text=True,
    )
    seconds = time.perf_counter() - started
    if proc.returncode != 0:
        raise SystemExit(f"{name}: exit {proc.returncode}\n{proc.stderr[-2000:]}")
    if "[wmss fork client]" in proc.stderr:
        raise SystemExit(f"{name}: the fork client fell back to a plain start:\n{proc.stderr[-2000:]}")
    return seconds, out.read_bytes()


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--out", default=str(REPO / "bench" / "results"))
    args = parser.parse_args()
    from wmss_kernels.tiny import make_tiny

    work = Path(tempfile.mkdtemp(prefix="wmss-kstart-"))
    env = {**os.environ, "PYTHONPATH": str(KERNELS), "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")}
    tiny = make_tiny(str(work / "model"), str(work / "data"), 256, 32)["outputs"]
    job = {
        "model_path": tiny["model_dir"],
        "data_file": tiny["train_file"],
        "data_format": "messages",
        "field": "entropy_0",
        "limit": 8,
    }
    server, sock = start_server(env)
    plain_cmd = [sys.executable]
    fork_cmd = [sys.executable, "-I", "-S", str(KERNELS / "wmss_kernels" / "forkclient.py"), sock, sys.executable]
    times = {"plain": [], "forked": []}
    try:
        reference = None
        for i in range(args.runs):  # alternate, so a change in the machine's load hits both alike
            for way, command in (("plain", plain_cmd), ("forked", fork_cmd)):
                seconds, output = run_once(command, job, work, f"{way}{i}", env)
                reference = reference if reference is not None else output
                if output != reference:
                    raise SystemExit(f"{way} run {i}: output differs from the first run's")
                times[way].append(seconds)
                print(f"{way:6} run {i}: {seconds:.2f} s", flush=True)
    finally:
        server.stdin.close()  # the server ends when its stdin closes
        server.wait(timeout=120)
        shutil.rmtree(os.path.dirname(sock), ignore_errors=True)
        shutil.rmtree(work, ignore_errors=True)
    plain, forked = statistics.median(times["plain"]), statistics.median(times["forked"])
    print(f"median plain {plain:.2f} s, forked {forked:.2f} s")
    print(f"ratio plain/forked: {plain / forked:.1f}")
    Path(args.out).mkdir(parents=True, exist_ok=True)
    result = {
        "runs": args.runs,
        "seconds": times,
        "median": {"plain": plain, "forked": forked},
        "ratio": plain / forked,
        "cpus": os.cpu_count(),
        "load": os.getloadavg(),
    }
    (Path(args.out) / "kernel_start.json").write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
