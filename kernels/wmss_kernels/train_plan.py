"""Planning a training run: everything that determines it, known before the model is loaded,
and what a finished or resumed run must agree with (the hyper-parameters in its checkpoints).

The global batch micro_batch · grad_accum is the job's whatever the number of devices: under
torchrun each of the N ranks takes its own slice of it (grad_accum / N micro-batches), so N never
changes the run and a run may resume on another number of devices.
"""

import math
from pathlib import Path

from . import checkpoints, distributed
from .protocol import InvalidInput


def check_train_job(job):
    """What the job schema (jobs.py) cannot say: a warm-up shorter than the run, a device count
    that divides the global batch, fsdp only on several processes."""
    if job.warmup_ratio >= 1:
        raise InvalidInput(
            "must be below 1 (the warm-up would take the whole run)", file=job._path, field="warmup_ratio"
        )
    world = distributed.from_env().size
    accum_per_rank(job, world)  # before any model is loaded
    if job.parallelism == "fsdp" and world == 1:
        raise InvalidInput(
            "fsdp shards the model over several processes, and this kernel runs as one "
            "(one device, or a CPU-only worker): use ddp or auto, or start it on several "
            "devices",
            file=job._path,
            field="parallelism",
        )


def accum_per_rank(job, world):
    """Micro-batches each of `world` ranks runs per optimizer step, keeping the job's global batch
    (micro_batch · grad_accum) whatever the number of devices."""
    if job.grad_accum % world:
        raise InvalidInput(
            f"grad_accum {job.grad_accum} cannot be split over {world} devices: the global batch "
            f"micro_batch {job.micro_batch} × grad_accum {job.grad_accum} stays the same on any number of "
            f"devices, so grad_accum must be a multiple of the device count (or start the worker on "
            f"a device set whose size divides it)",
            file=job._path,
            field="grad_accum",
        )
    return job.grad_accum // world


def plan(job, n_examples, extra=None):
    """The hyper-parameters that determine the run; resuming requires them unchanged. The device
    count and the micro-batch are not among them: neither changes the data order or the global batch."""
    global_batch = job.micro_batch * job.grad_accum
    max_steps = job.max_steps
    if max_steps is None:
        max_steps = math.floor(n_examples * job.epochs / global_batch)
    if max_steps < 1:
        raise InvalidInput(
            f"{n_examples} training samples × {job.epochs} epochs are fewer than one optimizer step "
            f"(global batch micro_batch {job.micro_batch} × grad_accum {job.grad_accum} = {global_batch})",
            file=job.data_file,
        )
    hp = {
        "lr": job.lr,
        "warmup_ratio": job.warmup_ratio,
        "weight_decay": job.weight_decay,
        "max_grad_norm": job.max_grad_norm,
        "epochs": job.epochs,
        # how the global batch is split (micro-batch × accumulation) may change between attempts,
        # e.g. halved micro-batch after an out-of-memory failure; the global batch may not
        "global_batch": global_batch,
        "max_steps": max_steps,
        "seed": job.seed,
        "max_length": job.max_length,
        "train_samples": n_examples,
    }
    hp.update(extra or {})
    return hp


def check_same_run(ckpt, hp):
    saved = checkpoints.read_json(Path(ckpt) / "trainer_state.json").get("hparams", {})
    # "world" was recorded by kernels that tied the global batch to the device count; the device
    # count no longer changes a run, so it is not compared
    diff = [
        f"{k}: checkpoint {saved.get(k)!r}, job {hp.get(k)!r}"
        for k in sorted(set(saved) | set(hp))
        if k != "world" and saved.get(k) != hp.get(k)
    ]
    if diff:
        raise InvalidInput(
            f"cannot resume from {ckpt}: it was trained with other settings ({'; '.join(diff)}); "
            "use a new output_dir or restore the settings",
            field=diff[0].split(":")[0],
        )


def batch_layout(job, world):
    """How the global batch was laid out over devices: recorded in the result, not compared on resume."""
    return {
        "world_size": world,
        "micro_batch": job.micro_batch,
        "grad_accum_per_rank": job.grad_accum // world,
        "global_batch": job.micro_batch * job.grad_accum,
    }


def train_result(ckpt, state, resumed_from, tokens_per_s, layout):
    hist = state["loss_history"]
    # checkpoints of older kernels lack per-step tokens: then no total rather than a partial one
    counted = all("tokens" in h for h in hist)
    return {
        "outputs": {"checkpoint": str(Path(ckpt).resolve())},
        "metrics": {
            "steps": state["step"],
            "resumed_from_step": resumed_from,
            "final_loss": hist[-1]["loss"] if hist else float("nan"),
            "tokens_per_s": tokens_per_s,
            "train_samples": state["hparams"]["train_samples"],
            **({"trained_tokens": sum(h["tokens"] for h in hist)} if counted and hist else {}),
            **({"target_tokens": sum(h["target_tokens"] for h in hist)} if counted and hist else {}),
            **layout,
        },
    }


def finished(job, hp):
    """The result of a run whose final checkpoint is already complete, else None."""
    ckpt = checkpoints.checkpoint_dir(job.output_dir, hp["max_steps"])
    if not checkpoints.is_complete(ckpt):
        return None
    check_same_run(ckpt, hp)
    state = checkpoints.read_json(ckpt / "trainer_state.json")
    layout = state.get("layout") or batch_layout(job, 1)
    return train_result(ckpt, state, state["step"], state.get("tokens_per_s", 0.0), layout)
