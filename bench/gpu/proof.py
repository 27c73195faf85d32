"""GPU proof run: drives the kernels exactly as the activities do (a job file per step and
`python -m wmss_kernels <verb> --job <file>`, reading the JSON-lines protocol) on a
Qwen3-0.6B-shaped random model in bf16, and records wall time, tokens/s and peak GPU memory.

The GPU machine has no Node.js, so this stands in for the worker. Usage:
    python bench/gpu/proof.py --work /tmp/proof --out $OUT
"""

import argparse
import json
import os

from kernel_jobs import CPU_SMOKE_SHAPE, GSM8K, QWEN3_06B, gsm8k_training, make_random_model, result_of, run_kernel


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--work", default="/tmp/wmss-proof")
    ap.add_argument("--out", default=os.environ.get("OUT", "."))
    ap.add_argument("--entropy-samples", type=int, default=512)
    ap.add_argument("--sft-steps", type=int, default=20)
    ap.add_argument("--joint-steps", type=int, default=10)
    ap.add_argument("--eval-questions", type=int, default=64)
    ap.add_argument("--cpu-smoke", action="store_true", help="tiny shape on the CPU, to check this script")
    a = ap.parse_args()
    work, figures = a.work, {}
    model = os.path.join(work, "qwen3-0.6b-random")
    common = {"device": "cuda", "seed": 42}
    if a.cpu_smoke:
        QWEN3_06B.update(CPU_SMOKE_SHAPE)
        common = {"device": "cpu", "seed": 42, "threads": 1}
        a.entropy_samples, a.sft_steps, a.joint_steps, a.eval_questions = 16, 4, 2, 4

    code, ev, s = make_random_model(common, QWEN3_06B, model, work)
    figures["make_model"] = {"seconds": s, **result_of(ev)["metrics"]}

    code, ev, s = run_kernel(
        "entropy",
        {
            **common,
            "model_path": model,
            "data_file": GSM8K,
            "data_format": "gsm8k",
            "output_path": os.path.join(work, "entropy", "entropy_0.jsonl"),
            "field": "entropy_0",
            "definition": "shifted",
            "max_length": 2048,
            "batch_tokens": 65536,
            "vocab_chunk": 4096,
            "limit": a.entropy_samples,
        },
        work,
        "entropy",
    )
    figures["entropy"] = {"exit": code, "seconds": s, **result_of(ev)["metrics"]}

    train = gsm8k_training(common, 8, 2, save_every=a.sft_steps // 2)
    sft_dir = os.path.join(work, "stage1_m1")
    sft = {**train, "model_path": model, "output_dir": sft_dir, "max_steps": a.sft_steps}
    code1, ev1, s1 = run_kernel("sft", {**sft, "stop_after_steps": a.sft_steps // 2}, work, "sft-part1")
    code2, ev2, s2 = run_kernel("sft", sft, work, "sft-resume")
    r2 = result_of(ev2)
    figures["sft"] = {
        "first_exit": code1,
        "first_seconds": s1,
        "first_metrics": result_of(ev1)["metrics"],
        "checkpoints_first": [e["step"] for e in ev1 if e["type"] == "checkpoint"],
        "resume_exit": code2,
        "resume_seconds": s2,
        **r2["metrics"],
    }

    positions = os.path.join(work, "positions.txt")
    with open(positions, "w") as f:
        f.write("\n".join(str(i) for i in range(1319)) + "\n")
    joint = {
        **train,
        "weak_path": model,
        "strong_path": r2["outputs"].get("checkpoint", sft_dir),
        "indices_file": positions,
        "output_dir": os.path.join(work, "stage3"),
        "max_steps": a.joint_steps,
        "save_every": a.joint_steps,
        "fusion_lambda": 0.5,
        "freeze_weak": False,
        "loss_on": "all",
    }
    code, ev, s = run_kernel("joint", joint, work, "joint")
    figures["joint"] = {"exit": code, "seconds": s, **result_of(ev)["metrics"]}

    code, ev, s = run_kernel(
        "evaluate",
        {
            **common,
            "model_path": model,
            "label": "base",
            "output_dir": os.path.join(work, "results", "base"),
            "datasets": [
                {
                    "name": "gsm8k",
                    "path": GSM8K,
                    "format": "gsm8k",
                    "max_input_tokens": 2048,
                    "max_new_tokens": 256,
                    "limit": a.eval_questions,
                }
            ],
            "batch_size": 64,
            "enable_thinking": True,
        },
        work,
        "evaluate",
    )
    figures["evaluate"] = {"exit": code, "seconds": s, **result_of(ev)["metrics"]}

    import torch

    figures["device"] = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu"
    figures["torch"] = torch.__version__
    os.makedirs(a.out, exist_ok=True)
    with open(os.path.join(a.out, "gpu-proof.json"), "w") as f:
        json.dump(figures, f, indent=2)
    print(json.dumps(figures, indent=2))


if __name__ == "__main__":
    main()
