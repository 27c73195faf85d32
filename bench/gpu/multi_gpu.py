"""Two GPUs on one host (issue #6), through the command lines the activities build
(kernelLaunch.ts: torchrun for training, deviceShards.ts: one entropy kernel per GPU):

  sft      20 optimizer steps on 1 GPU, on 2 GPUs with DDP and on 2 with FSDP, same global batch:
           loss curves (trainer_state.json's loss_history), step time (the kernel's step_s:
           optimizer steps only, checkpoint writes left out) and tokens/s scaling.
  joint    10 steps, both branches trainable, on 2 GPUs and on 1: peak memory and step time.
  entropy  sharded over 2 GPUs (shard {index, count}, CUDA_VISIBLE_DEVICES per shard) against one
           GPU: max abs difference and throughput scaling.
  kill     SIGKILL of rank 1 of an FSDP run mid-run: how long the survivor takes to exit, the
           error line the bridge classifies (RankLost), then the same job resumes from the last
           complete (sharded) checkpoint on 2 GPUs, and that checkpoint also on 1 GPU; losses
           against the uninterrupted FSDP run.

    python bench/gpu/multi_gpu.py --work /tmp/mg --out $OUT [--only sft,joint,entropy,kill]
    WMSS_BENCH_DEVICE=cpu python bench/gpu/multi_gpu.py --cpu-smoke   # checks the script (gloo)
"""

import argparse
import json
import os
import shutil
import signal
import threading
import time

from kernel_jobs import (
    CPU_SMOKE_SHAPE,
    GSM8K,
    QWEN3_06B,
    Kernel,
    gsm8k_training,
    make_random_model,
    result_of,
    run_kernel,
)


def loss_history(checkpoint_dir):
    with open(os.path.join(checkpoint_dir, "trainer_state.json")) as f:
        return [h["loss"] for h in json.load(f)["loss_history"]]


def entropies(path, field):
    with open(path) as f:
        return {r["idx"]: r[field] for r in map(json.loads, f)}


def step_seconds(events, skip=2):
    """Mean seconds per optimizer step from the arrival times of progress events (first `skip`
    steps excluded: CUDA/NCCL warm-up)."""
    ticks = [(e["done"], e["_t"]) for e in events if e["type"] == "progress" and e.get("unit") == "steps"]
    ticks = [t for t in ticks if t[0] > skip]
    if len(ticks) < 2:
        return None
    (s0, t0), (s1, t1) = ticks[0], ticks[-1]
    return (t1 - t0) / max(1, s1 - s0)


def ratio(a, b):
    """a / b, or None when either figure is missing."""
    return a / b if a and b else None


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--work", default="/tmp/wmss-multi-gpu")
    ap.add_argument("--out", default=os.environ.get("OUT", "bench/results"))
    ap.add_argument("--only", default="sft,joint,entropy,kill")
    ap.add_argument("--cpu-smoke", action="store_true", help="tiny shape, 2 gloo ranks on the CPU")
    a = ap.parse_args()
    work, fig, only = a.work, {}, a.only.split(",")
    os.makedirs(a.out, exist_ok=True)
    shape, common = dict(QWEN3_06B), {"device": "cuda", "seed": 42}
    sft_steps, joint_steps, micro, accum, data_copies = 20, 10, 16, 8, 6
    one_gpu, two_gpus = {"CUDA_VISIBLE_DEVICES": "0"}, {"CUDA_VISIBLE_DEVICES": "0,1"}
    if a.cpu_smoke:
        shape.update(CPU_SMOKE_SHAPE)
        common = {"device": "cpu", "seed": 42, "threads": 1}
        sft_steps, joint_steps, micro, accum, data_copies = 12, 2, 2, 2, 1
        one_gpu = two_gpus = {}

    def save():
        with open(os.path.join(a.out, "multi-gpu.json"), "w") as f:
            json.dump(fig, f, indent=2)

    model = os.path.join(work, "qwen3-0.6b-random")
    code, ev, s = make_random_model(common, shape, model, work)
    assert code == 0, "make-tiny failed"

    train = gsm8k_training(common, micro, accum)

    if "sft" in only:
        runs = {}
        for label, env, ranks, strategy in (
            ("1gpu", one_gpu, 1, "ddp"),
            ("2gpu", two_gpus, 2, "ddp"),
            ("2gpu-fsdp", two_gpus, 2, "fsdp"),
        ):
            out = os.path.join(work, f"sft-{label}")
            job = {
                **train,
                "model_path": model,
                "output_dir": out,
                "max_steps": sft_steps,
                "save_every": sft_steps,
                "parallelism": strategy,
            }
            code, ev, s = run_kernel("sft", job, work, f"sft-{label}", env=env, ranks=ranks)
            r = result_of(ev)
            # step_s: the kernel's own (optimizer steps only); events_step_s: from progress lines
            runs[label] = {
                "exit": code,
                "wall_s": s,
                "events_step_s": step_seconds(ev),
                **r["metrics"],
                "losses": loss_history(r["outputs"]["checkpoint"]) if code == 0 else [],
            }
        l1, l2, lf = runs["1gpu"]["losses"], runs["2gpu"]["losses"], runs["2gpu-fsdp"]["losses"]
        fig["sft"] = {
            **runs,
            "max_abs_loss_diff": max((abs(x - y) for x, y in zip(l1, l2)), default=None),
            "max_rel_loss_diff": max((abs(x - y) / abs(x) for x, y in zip(l1, l2)), default=None),
            "fsdp_vs_ddp_max_rel_loss_diff": max((abs(x - y) / abs(x) for x, y in zip(l2, lf)), default=None),
            "scaling_tokens_per_s": ratio(runs["2gpu"].get("tokens_per_s"), runs["1gpu"].get("tokens_per_s")),
            "scaling_step_time": ratio(runs["1gpu"].get("step_s"), runs["2gpu"].get("step_s")),
            "scaling_step_time_fsdp": ratio(runs["1gpu"].get("step_s"), runs["2gpu-fsdp"].get("step_s")),
        }
        print("multi-gpu: sft", json.dumps({k: v for k, v in fig["sft"].items() if k not in runs}), flush=True)
        save()

    if "joint" in only:
        positions = os.path.join(work, "positions.txt")
        with open(positions, "w") as f:
            f.write("\n".join(str(i) for i in range(1319)) + "\n")
        runs = {}
        for label, env, ranks in (("1gpu", one_gpu, 1), ("2gpu", two_gpus, 2)):
            job = {
                **train,
                "micro_batch": max(1, micro // 2),
                "grad_accum": accum,
                "weak_path": model,
                "strong_path": model,
                "indices_file": positions,
                "output_dir": os.path.join(work, f"joint-{label}"),
                "max_steps": joint_steps,
                "save_every": joint_steps,
                "fusion_lambda": 0.5,
                "freeze_weak": False,
                "loss_on": "all",
            }
            code, ev, s = run_kernel("joint", job, work, f"joint-{label}", env=env, ranks=ranks)
            runs[label] = {"exit": code, "wall_s": s, "events_step_s": step_seconds(ev), **result_of(ev)["metrics"]}
        fig["joint"] = {
            **runs,
            "scaling_step_time": ratio(runs["1gpu"].get("step_s"), runs["2gpu"].get("step_s")),
            "scaling_tokens_per_s": ratio(runs["2gpu"].get("tokens_per_s"), runs["1gpu"].get("tokens_per_s")),
        }
        print("multi-gpu: joint", json.dumps(fig["joint"])[:600], flush=True)
        save()

    if "entropy" in only:
        data = os.path.join(work, "gsm8k-x.jsonl")
        with open(GSM8K) as f:
            lines = f.read()
        with open(data, "w") as f:
            f.write(lines * data_copies)
        job = {
            **common,
            "model_path": model,
            "data_file": data,
            "data_format": "gsm8k",
            "field": "entropy_0",
            "definition": "shifted",
            "max_length": 2048,
            "batch_tokens": 65536,
            "vocab_chunk": 1024,
        }
        single = os.path.join(work, "entropy-1gpu.jsonl")
        code, ev, s1 = run_kernel("entropy", {**job, "output_path": single}, work, "entropy-1gpu", env=one_gpu)
        m1 = result_of(ev)["metrics"]
        t0 = time.time()
        shards = [
            Kernel(
                "entropy",
                {
                    **job,
                    "output_path": os.path.join(work, f"entropy-shard{i}.jsonl"),
                    "shard": {"index": i, "count": 2},
                },
                work,
                f"entropy-shard{i}",
                env={"CUDA_VISIBLE_DEVICES": str(i)} if not a.cpu_smoke else {},
            )
            for i in range(2)
        ]
        outcomes = [k.wait() for k in shards]
        s2 = time.time() - t0
        merged = {}
        for i in range(2):
            merged.update(entropies(os.path.join(work, f"entropy-shard{i}.jsonl"), "entropy_0"))
        ref = entropies(single, "entropy_0")
        shard_metrics = [result_of(ev)["metrics"] for _, ev, _ in outcomes]
        fig["entropy"] = {
            "samples": len(ref),
            "same_idx_set": sorted(ref) == sorted(merged),
            "max_abs_diff": max(abs(ref[i] - merged[i]) for i in ref) if sorted(ref) == sorted(merged) else None,
            "1gpu": {"wall_s": s1, **m1},
            "2gpu": {"wall_s": s2, "shards": shard_metrics},
            "scaling_kernel_tokens_per_s": ratio(
                sum(m.get("tokens_per_s", 0) for m in shard_metrics), m1.get("tokens_per_s")
            ),
            "scaling_wall": s1 / s2,
        }
        print(
            "multi-gpu: entropy",
            json.dumps({k: v for k, v in fig["entropy"].items() if k not in ("1gpu", "2gpu")}),
            flush=True,
        )
        save()

    if "kill" in only:
        out = os.path.join(work, "sft-kill")
        job = {
            **train,
            "model_path": model,
            "output_dir": out,
            "max_steps": sft_steps,
            "save_every": 5,
            "parallelism": "fsdp",
        }
        killed = {}

        def kill_rank1_after_first_checkpoint(kernel, event):
            # 2 s after checkpoint-5 is announced: mid-way through the steps that follow it
            if event["type"] == "checkpoint" and not killed:
                killed["after_checkpoint"] = event["step"]

                def kill():
                    pids = kernel.rank_pids()
                    killed.update(pid=pids.get(1), t=time.time() - kernel.start)
                    if 1 in pids:
                        os.kill(pids[1], signal.SIGKILL)

                threading.Timer(2.0, kill).start()

        code, ev, s = Kernel(
            "sft", job, work, "sft-kill", env=two_gpus, ranks=2, on_event=kill_rank1_after_first_checkpoint
        ).wait(timeout=300)
        complete = sorted(
            (d for d in os.listdir(out) if os.path.exists(os.path.join(out, d, "COMPLETE"))),
            key=lambda d: int(d.split("-")[1]),
        )
        first = {
            "exit": code,
            "wall_s": s,
            "killed": killed,
            "survivors_gone_s": s - killed["t"] if "t" in killed else None,
            "errors": [e for e in ev if e["type"] == "error"],
            "checkpoints": [e["step"] for e in ev if e["type"] == "checkpoint"],
            "complete_checkpoints_on_disk": complete,
        }
        # the last complete checkpoint, resumed on one GPU as well (DCP reshards 2 → 1)
        on1 = os.path.join(work, "sft-kill-on1")
        shutil.rmtree(on1, ignore_errors=True)
        if complete:
            shutil.copytree(os.path.join(out, complete[-1]), os.path.join(on1, complete[-1]))
        code2, ev2, s2 = run_kernel("sft", job, work, "sft-kill-retry", env=two_gpus, ranks=2)
        code3, ev3, s3 = run_kernel(
            "sft", {**job, "output_dir": on1, "parallelism": "ddp"}, work, "sft-kill-on1", env=one_gpu
        )
        retry, single = result_of(ev2), result_of(ev3)
        ref = fig.get("sft", {}).get("2gpu-fsdp", {}).get("losses", [])

        for r in (retry, single):
            r["losses"] = loss_history(r["outputs"]["checkpoint"]) if r["outputs"] else []

        def rel_to_ref(result):
            if not ref or not result["outputs"]:
                return None
            got = loss_history(result["outputs"]["checkpoint"])
            return max(abs(x - y) / abs(x) for x, y in zip(ref, got))

        fig["kill"] = {
            "first_attempt": first,
            "retry": {
                "exit": code2,
                "wall_s": s2,
                **retry["metrics"],
                "losses": retry["losses"],
                "max_rel_loss_vs_uninterrupted": rel_to_ref(retry),
            },
            "resume_on_1gpu": {
                "exit": code3,
                "wall_s": s3,
                **single["metrics"],
                "losses": single["losses"],
                "max_rel_loss_vs_uninterrupted": rel_to_ref(single),
            },
        }
        print("multi-gpu: kill", json.dumps(fig["kill"])[:1200], flush=True)
        save()

    import torch

    fig["devices"] = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
    fig["torch"] = torch.__version__
    save()


if __name__ == "__main__":
    main()
