"""The one training loop behind `sft` (step 1) and `joint` (step 5b).

AdamW, linear warm-up then linear decay to 0, gradient clipping, gradient accumulation with a
token-weighted loss (the summed cross-entropy of a whole optimizer step divided by the number of
target tokens in that step, as HF does with num_items_in_batch), atomic checkpoints that resume
exactly, SIGTERM → checkpoint → exit 4.

Data order is a pure function of (seed, epoch): the sample stream is the concatenation of one
permutation per epoch and optimizer step s consumes stream[s·G : (s+1)·G] with
G = micro_batch · grad_accum, the global batch of the job. Resuming therefore only needs the step
number, and under torchrun each of the N ranks takes its own slice of G (grad_accum / N
micro-batches) without talking to the others; N never changes the run, so a run may resume on
another number of devices.

Data parallelism is DistributedDataParallel (every rank holds the whole model and optimizer
state; gradients are averaged in backward) or FSDP2 (sharding.py: weights, gradients and optimizer
state sharded over the ranks), chosen by the job's `parallelism`. Under DDP rank 0 writes the
checkpoints; under FSDP every rank writes its shards with torch.distributed.checkpoint and the
final checkpoint is gathered into one Hugging Face model. Only rank 0 prints protocol lines; the
other ranks log.
"""

import contextlib
import logging
import math
import random
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from . import __version__, checkpoints, distributed, faults, sharding
from .heads import linear_cross_entropy_sum
from .jobs import Field
from .protocol import (InvalidInput, OutOfMemory, Progress, Terminated, TrainingDiverged, emit,
                       install_sigterm_handler, stop_requested)

log = logging.getLogger("wmss_kernels.train_loop")

# Job fields shared by sft and joint (docs/kernel-protocol.md).
TRAIN_FIELDS = {
    "data_file": Field(str),
    "data_format": Field(str, "messages", choices=("messages", "gsm8k")),
    "output_dir": Field(str),
    "max_length": Field(int, 4096),
    "lr": Field(float, 1e-5),
    "warmup_ratio": Field(float, 0.0),
    "weight_decay": Field(float, 0.0),
    "max_grad_norm": Field(float, 1.0),
    "epochs": Field(float, 1.0),
    "micro_batch": Field(int, 1),
    "grad_accum": Field(int, 32),
    "max_steps": Field((int, type(None)), None),
    "save_every": Field(int, 0),
    "gradient_checkpointing": Field(bool, False),
    "compile_layers": Field((bool, type(None)), None),
    "dtype": Field(str, "auto", choices=("auto", "float32", "bfloat16")),
    "simulate_oom": Field(bool, False),
    "stop_after_steps": Field((int, type(None)), None),
    # several devices (sharding.py): ddp, fsdp, or auto = fsdp when memory_estimate_gib (the
    # activity's estimate of one device's footprint under DDP) does not fit this device
    "parallelism": Field(str, "ddp", choices=("auto", "ddp", "fsdp")),
    "memory_estimate_gib": Field((float, int, type(None)), None),
    "reshard_after_forward": Field(bool, True),
    "cpu_offload": Field(bool, False),
}


def check_train_job(job):
    """Range checks the type checks in jobs.py cannot express."""
    positive = ("max_length", "micro_batch", "grad_accum")
    for name in positive:
        if getattr(job, name) < 1:
            raise InvalidInput("must be >= 1", file=job._path, field=name)
    for name in ("lr", "epochs"):
        if not getattr(job, name) > 0:
            raise InvalidInput("must be > 0", file=job._path, field=name)
    for name in ("weight_decay", "max_grad_norm", "save_every"):
        if getattr(job, name) < 0:
            raise InvalidInput("must be >= 0", file=job._path, field=name)
    if not 0 <= job.warmup_ratio < 1:
        raise InvalidInput("must be in [0, 1)", file=job._path, field="warmup_ratio")
    for name in ("max_steps", "stop_after_steps"):
        if getattr(job, name) is not None and getattr(job, name) < 1:
            raise InvalidInput("must be >= 1", file=job._path, field=name)
    world = distributed.from_env().size
    accum_per_rank(job, world)  # before any model is loaded
    if job.parallelism == "fsdp" and world == 1:
        raise InvalidInput("fsdp shards the model over several processes, and this kernel runs as one "
                           "(one device, or a CPU-only worker): use ddp or auto, or start it on several "
                           "devices", file=job._path, field="parallelism")


# ---------------------------------------------------------------------------------------------
# Examples and batches

# Optimizer steps of a process left out of its throughput figures (compilation, recompilation for
# the first dynamic shapes; measured on an H200: steps 1-3 of a compiled 0.6B run are slower)
WARMUP_STEPS = 3

# Sequence lengths are padded to a multiple of this: tensor-core friendly shapes.
PAD_MULTIPLE = 16

def make_example(input_ids, n_masked):
    """Labels copy the ids with the first n_masked positions set to -100 (no loss there)."""
    ids = list(input_ids)
    labels = [-100] * min(n_masked, len(ids)) + ids[n_masked:]
    # targets are the tokens at positions 1.. (position t predicts t+1); counted once, here
    n_targets = sum(1 for t in labels[1:] if t != -100)
    return {"input_ids": ids, "labels": labels, "n_targets": n_targets}


def collate(examples, device, multiple=1):
    """Right-pad to the longest example (rounded up to `multiple`); pads are out of the loss, and
    under causal attention no real token sees them, so the training forward needs no mask."""
    width = -(-max(len(e["input_ids"]) for e in examples) // multiple) * multiple
    ids = torch.zeros(len(examples), width, dtype=torch.long)
    labels = torch.full((len(examples), width), -100, dtype=torch.long)
    mask = torch.zeros(len(examples), width, dtype=torch.long)
    for i, e in enumerate(examples):
        n = len(e["input_ids"])
        ids[i, :n] = torch.tensor(e["input_ids"])
        labels[i, :n] = torch.tensor(e["labels"])
        mask[i, :n] = 1
    return {"input_ids": ids.to(device), "labels": labels.to(device), "attention_mask": mask.to(device)}


def lm_loss_sum(logits, labels):
    """Summed next-token cross-entropy over positions whose label is not -100."""
    # Shift the labels rather than the logits: slicing the (B, T, V) logits would copy them.
    target = F.pad(labels[:, 1:], (0, 1), value=-100)
    return F.cross_entropy(logits.flatten(0, 1).float(), target.flatten(), ignore_index=-100, reduction="sum")


class CausalLMLoss(nn.Module):
    """The training forward of a plain HF causal LM: summed next-token cross-entropy straight from
    the final hidden states (heads.py), never the [B, T, vocab] logits. DistributedDataParallel
    wraps this module, so the output projection's gradient is averaged like every other."""

    def __init__(self, lm):
        super().__init__()
        self.lm = lm

    def forward(self, input_ids, labels):
        base = getattr(self.lm, self.lm.base_model_prefix)
        hidden = base(input_ids=input_ids, use_cache=False).last_hidden_state
        return linear_cross_entropy_sum(hidden, self.lm.get_output_embeddings().weight, labels)


def epoch_order(seed, epoch, n):
    return np.random.default_rng([seed, epoch]).permutation(n)


_orders = {}  # (seed, epoch, n) → permutation; only the current epoch is kept


def step_indices(step, n, global_batch, seed):
    """Example indices of one optimizer step (the whole global batch, all ranks)."""
    out = []
    for pos in range(step * global_batch, (step + 1) * global_batch):
        key = (seed, pos // n, n)
        if key not in _orders:
            _orders.clear()
            _orders[key] = epoch_order(seed, pos // n, n)
        out.append(int(_orders[key][pos % n]))
    return out


# ---------------------------------------------------------------------------------------------
# Planning: everything that determines the run, known before the model is loaded

def accum_per_rank(job, world):
    """Micro-batches each of `world` ranks runs per optimizer step, keeping the job's global batch
    (micro_batch · grad_accum) whatever the number of devices."""
    if job.grad_accum % world:
        raise InvalidInput(
            f"grad_accum {job.grad_accum} cannot be split over {world} devices: the global batch "
            f"micro_batch {job.micro_batch} × grad_accum {job.grad_accum} stays the same on any number of "
            f"devices, so grad_accum must be a multiple of the device count (or start the worker on "
            f"a device set whose size divides it)", file=job._path, field="grad_accum")
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
            file=job.data_file)
    hp = {"lr": job.lr, "warmup_ratio": job.warmup_ratio, "weight_decay": job.weight_decay,
          "max_grad_norm": job.max_grad_norm, "epochs": job.epochs,
          # how the global batch is split (micro-batch × accumulation) may change between attempts,
          # e.g. halved micro-batch after an out-of-memory failure; the global batch may not
          "global_batch": global_batch, "max_steps": max_steps, "seed": job.seed,
          "max_length": job.max_length, "train_samples": n_examples}
    hp.update(extra or {})
    return hp


def _check_same_run(ckpt, hp):
    saved = checkpoints.read_json(Path(ckpt) / "trainer_state.json").get("hparams", {})
    # "world" was recorded by kernels that tied the global batch to the device count; the device
    # count no longer changes a run, so it is not compared
    diff = [f"{k}: checkpoint {saved.get(k)!r}, job {hp.get(k)!r}"
            for k in sorted(set(saved) | set(hp)) if k != "world" and saved.get(k) != hp.get(k)]
    if diff:
        raise InvalidInput(f"cannot resume from {ckpt}: it was trained with other settings ({'; '.join(diff)}); "
                           "use a new output_dir or restore the settings", field=diff[0].split(":")[0])


def _layout(job, world):
    """How the global batch was laid out over devices: recorded in the result, not compared on resume."""
    return {"world_size": world, "micro_batch": job.micro_batch, "grad_accum_per_rank": job.grad_accum // world,
            "global_batch": job.micro_batch * job.grad_accum}


def _result(ckpt, state, resumed_from, tokens_per_s, layout):
    hist = state["loss_history"]
    return {"outputs": {"checkpoint": str(Path(ckpt).resolve())},
            "metrics": {"steps": state["step"], "resumed_from_step": resumed_from,
                        "final_loss": hist[-1]["loss"] if hist else float("nan"),
                        "tokens_per_s": tokens_per_s, "train_samples": state["hparams"]["train_samples"],
                        **layout}}


def finished(job, hp):
    """The result of a run whose final checkpoint is already complete, else None."""
    ckpt = checkpoints.checkpoint_dir(job.output_dir, hp["max_steps"])
    if not checkpoints.is_complete(ckpt):
        return None
    _check_same_run(ckpt, hp)
    state = checkpoints.read_json(ckpt / "trainer_state.json")
    layout = state.get("layout") or _layout(job, 1)
    return _result(ckpt, state, state["step"], state.get("tokens_per_s", 0.0), layout)


# ---------------------------------------------------------------------------------------------
# The loop

def make_optimizer(model, lr, weight_decay, device, fused=None):
    """AdamW over the trainable parameters (fused kernel on CUDA); returns (optimizer, params)."""
    decay = [p for p in model.parameters() if p.requires_grad and p.ndim >= 2]
    no_decay = [p for p in model.parameters() if p.requires_grad and p.ndim < 2]  # norms, biases
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": weight_decay},
                             {"params": no_decay, "weight_decay": 0.0}],
                            lr=lr, betas=(0.9, 0.999), eps=1e-8,
                            fused=device.type == "cuda" if fused is None else fused)
    return opt, decay + no_decay


def _lr_lambda(warmup, total):
    # HF's linear schedule: ramp 0 → 1 over `warmup` steps, then straight down to 0 at `total`
    def f(step):
        if step < warmup:
            return step / max(1, warmup)
        return max(0.0, (total - step) / max(1, total - warmup))
    return f


def _seed_all(seed):
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def _child_prefix(loss_module, model):
    """'lm.' or 'fused.': where `model` sits in the loss module's state dict."""
    for name, child in loss_module.named_children():
        if child is model:
            return name + "."
    raise ValueError("the loss module does not hold the model as a direct child")


def train(job, model, examples, hp, *, save_model, load_weights, device, loss_module=None):
    """Train `model` in place; returns the verb's result dict.

    save_model(model, dir, state_dict=None) writes weights + config + tokenizer (the given full
    state dict instead of the model's own when sharded); load_weights(model, dir) reads them back
    in place. loss_module(input_ids, labels) returns the summed CE over the batch's targets
    (default CausalLMLoss(model)); it must hold `model` as a direct child.
    Only parameters with requires_grad go to the optimizer (freeze_weak relies on this).
    Under torchrun every rank calls this with the same job; distributed.setup() ran before.
    """
    install_sigterm_handler()
    world_info = distributed.from_env()
    world, rank = world_info.size, world_info.rank
    out_dir = Path(job.output_dir)
    max_steps, n = hp["max_steps"], len(examples)
    global_batch = job.micro_batch * job.grad_accum
    per_rank = job.micro_batch * accum_per_rank(job, world)
    strategy = sharding.choose(job.parallelism, world, device, job.memory_estimate_gib)
    layout = {**_layout(job, world), "parallelism": strategy or "none"}
    loss_module = loss_module or CausalLMLoss(model)
    prefix = _child_prefix(loss_module, model)

    if job.gradient_checkpointing:
        # before sharding: FSDP's hooks then run inside the recomputed region, which FSDP2 expects
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    offload = strategy == "fsdp" and job.cpu_offload
    if strategy == "fsdp":
        n_groups = sharding.shard(loss_module, reshard_after_forward=job.reshard_after_forward,
                                  cpu_offload=offload, device=device)
        log.info("fsdp: %d decoder layers + root sharded over %d ranks (reshard_after_forward=%s, cpu_offload=%s)",
                 n_groups, world, job.reshard_after_forward, offload)
    # offloaded parameters live on the host, where the fused (CUDA) AdamW cannot run
    opt, params = make_optimizer(loss_module, job.lr, job.weight_decay, device, fused=False if offload else None)
    warmup = math.ceil(job.warmup_ratio * max_steps)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, _lr_lambda(warmup, max_steps))

    # Resume from the newest complete checkpoint (partials are crash leftovers). Rank 0 tidies
    # first, then every rank reads the same newest checkpoint.
    if rank == 0:
        checkpoints.remove_stale_partials(out_dir)
    distributed.barrier()
    start, history = 0, []
    latest = checkpoints.latest_checkpoint(out_dir)
    if latest is not None and latest[0] > max_steps:
        raise InvalidInput(f"{latest[1]} is beyond max_steps {max_steps}", field="max_steps")
    if latest is not None:
        step0, ckpt = latest
        _check_same_run(ckpt, hp)
        state = checkpoints.read_json(ckpt / "trainer_state.json")
        if sharding.is_sharded(ckpt):
            # written by FSDP on any number of ranks; readable under every strategy
            sharding.load(loss_module, opt, ckpt)
        elif strategy == "fsdp":
            raise InvalidInput(f"{ckpt} was written without sharding (ddp or one device) and fsdp cannot resume "
                               "its optimizer state: resume with parallelism ddp, or use a new output_dir",
                               field="parallelism")
        else:
            load_weights(model, ckpt)
            opt.load_state_dict(torch.load(ckpt / "optimizer.pt", map_location=device, weights_only=True))
        sched.load_state_dict(torch.load(ckpt / "scheduler.pt", weights_only=True))
        checkpoints.load_rng(ckpt / "rng.pt")
        start, history = step0, state["loss_history"]
    else:
        _seed_all(job.seed)

    if job.compile_layers if job.compile_layers is not None else device.type == "cuda":
        if strategy == "fsdp":
            sharding.compile_sharded_layers(loss_module)
        else:
            compile_layers(model)
    model.train()
    # DDP broadcasts rank 0's weights at construction and averages gradients in backward. Frozen
    # parameters (freeze_weak) are skipped by DDP as they are by the optimizer.
    forward, ddp = loss_module, None
    if strategy == "ddp":
        forward = ddp = DistributedDataParallel(loss_module, device_ids=[
            device.index if device.index is not None else torch.cuda.current_device()]
            if device.type == "cuda" else None)
    autocast = torch.autocast("cuda", dtype=torch.bfloat16,
                              enabled=device.type == "cuda" and any(p.dtype == torch.bfloat16 for p in params))

    progress = Progress(max_steps, "steps")
    if rank == 0:
        progress.update(start, epoch=start * global_batch / n)
    # Throughput: the tokens of all ranks over the time spent in optimizer steps, leaving out this
    # process's warm-up steps (compilation and the recompilations of the next new shapes, allocator
    # warm-up: a longer run amortises them) and the checkpoint writes (saveEvery decides those,
    # not the device count). tokens_per_s and step_s therefore scale with the steps themselves.
    clock = {"times": [], "tokens": [], "save_s": []}
    step, last_saved, path = start, start, None

    def timed():
        """(seconds, tokens) of the steps after warm-up: the first WARMUP_STEPS once there are
        at least twice as many steps, else only the first (a short run still reports a figure)."""
        skip = WARMUP_STEPS if len(clock["times"]) >= 2 * WARMUP_STEPS else min(1, len(clock["times"]) - 1)
        return sum(clock["times"][skip:]), sum(clock["tokens"][skip:]), len(clock["times"][skip:])

    def tokens_per_s():
        seconds, tokens, _ = timed()
        return tokens / seconds if seconds > 0 else 0.0

    def save(step, loss):
        """Collective under FSDP (every rank writes its shards or joins the gather); rank 0 alone
        otherwise. Rank 0 publishes the checkpoint (COMPLETE, rename) once every part is written."""
        state = {"step": step, "max_steps": max_steps, "consumed_samples": step * global_batch,
                 "epoch": step * global_batch / n, "loss_history": history, "hparams": hp,
                 "layout": layout, "tokens_per_s": tokens_per_s(), "kernel_version": __version__}
        full = None
        if strategy == "fsdp" and step == max_steps:
            # the steps after training read a plain Hugging Face model: gather it, tensor by tensor
            full = sharding.full_state_dict(loss_module, prefix)
        tmp = checkpoints.partial_dir(out_dir, step)
        try:
            if rank == 0:
                checkpoints.begin_partial(tmp)
            if strategy == "fsdp" and step < max_steps:
                distributed.barrier()  # the partial dir exists before any rank writes into it
                sharding.save(loss_module, opt, tmp)
            if rank != 0:
                return None
            if strategy != "fsdp":
                save_model(model, tmp)
                torch.save(opt.state_dict(), tmp / "optimizer.pt")
            elif full is not None:
                save_model(model, tmp, full)
            checkpoints.write_json(tmp / "trainer_state.json", state)
            torch.save(sched.state_dict(), tmp / "scheduler.pt")
            checkpoints.save_rng(tmp / "rng.pt")
            path = checkpoints.publish(out_dir, step, tmp).resolve()
        except Exception as e:  # a full disk or a read-only dir: typed, and no partial checkpoint left
            checkpoints.raise_as_disk_failure(e, out_dir, step, tmp)
            raise
        emit("checkpoint", path=str(path), step=step)
        emit("progress", done=step, total=max_steps, unit="steps", loss=loss, lr=sched.get_last_lr()[0],
             tokens_per_s=tokens_per_s(), epoch=step * global_batch / n)
        return path

    while step < max_steps:
        # SIGTERM before this process trained anything: nothing new to save. Ranks agree first, so
        # none of them waits in a collective for one that has already left.
        if step == start and _any_rank(stop_requested(), device):
            raise Terminated(f"stopped by SIGTERM before step {step + 1}; nothing new to save")
        if job.simulate_oom:
            raise OutOfMemory("simulated out of memory (simulate_oom)")

        # Token-weighting needs the target count of the whole global batch; the data order is
        # known to every rank, so each one counts it locally instead of an all-reduce.
        all_idx = step_indices(step, n, global_batch, job.seed)
        n_tgt = max(1, sum(examples[i]["n_targets"] for i in all_idx))
        mine = [examples[i] for i in all_idx[rank * per_rank:(rank + 1) * per_rank]]
        lr = sched.get_last_lr()[0]
        t_step = time.monotonic()
        loss_sum, tokens, grad_norm = optimizer_step(forward, ddp, mine, n_tgt, job.micro_batch, world, device,
                                                     autocast, params, job.max_grad_norm, opt)
        sched.step()
        step += 1

        # One all-reduce per step: the logged loss and token count cover every rank, and a SIGTERM
        # seen by any rank stops all of them at the same step.
        summed_loss, summed_tokens, stops, norms = distributed.sum_across(
            [loss_sum.item(), tokens, float(stop_requested()), grad_norm.item()], device)
        loss = faults.poison_loss(step, summed_loss / n_tgt)
        if not (math.isfinite(loss) and math.isfinite(norms)):
            # every rank sees the same sums, so all stop here; nothing of this step is saved
            raise _diverged(job, out_dir, rank, step, max_steps, history, lr,
                            "loss" if not math.isfinite(loss) else "gradient norm",
                            loss if not math.isfinite(loss) else norms)
        clock["times"].append(time.monotonic() - t_step)  # .item() above waited for the device
        clock["tokens"].append(int(summed_tokens))
        history.append({"step": step, "loss": loss, "lr": lr})
        if rank == 0:
            progress.update(step, loss=loss, lr=lr, tokens_per_s=tokens_per_s(),
                            epoch=step * global_batch / n)

        stop = stops > 0 or step == job.stop_after_steps
        if step == max_steps or stop or (job.save_every and step % job.save_every == 0):
            # a finite loss does not prove finite weights: a huge lr can overflow the update itself
            if _any_rank(not all_finite(params), device):
                raise _diverged(job, out_dir, rank, step, max_steps, history, lr, "weights", float("nan"))
            t_save = time.monotonic()
            path = save(step, loss)
            # nobody reads the checkpoint or leaves (torchrun would kill a rank still saving)
            # before rank 0 has finished writing it
            distributed.barrier()
            clock["save_s"].append(time.monotonic() - t_save)
            last_saved = step
        if stop and step < max_steps:
            where = f"checkpoint saved: {path}" if rank == 0 else "rank 0 saved the checkpoint"
            raise Terminated(f"stopped at step {step} of {max_steps}; {where}")

    final = checkpoints.checkpoint_dir(out_dir, max_steps)
    state = checkpoints.read_json(final / "trainer_state.json")
    assert last_saved == max_steps
    seconds, _, n_timed = timed()
    timing = {"step_s": seconds / max(1, n_timed),
              "checkpoint_s_max": max(clock["save_s"], default=0.0)}
    return _result(final, state, start, tokens_per_s(), {**layout, **timing})


def compile_layers(model):
    """torch.compile each transformer block on its own (dynamic in the sequence length).

    Eager small models are bound by the launches of their many elementwise kernels (norms,
    rotary, SiLU, casts); compiling fuses them. Per block rather than the whole model: the blocks
    share one forward, so one compilation serves all of them, and varying batch shapes do not
    recompile. Needs a C compiler and Triton, which the CPU tests do not assume."""
    n = 0
    for module in model.modules():
        if type(module).__name__.endswith("DecoderLayer"):
            module.compile(dynamic=True)
            n += 1
    return n


def optimizer_step(forward, ddp, mine, n_tgt, micro_batch, world, device, autocast, params, max_grad_norm, opt):
    """Forward and backward over this rank's examples of one optimizer step, then clip and step.
    Returns (summed loss on this rank as a tensor, real tokens on this rank)."""
    # Sorted by length, micro-batches pad little; the step's summed loss does not depend on how
    # its examples are grouped.
    mine = sorted(mine, key=lambda e: len(e["input_ids"]))
    loss_sum, tokens = torch.zeros((), device=device), 0
    starts = list(range(0, len(mine), micro_batch))
    for k in starts:
        chunk = mine[k:k + micro_batch]
        batch = collate(chunk, device, PAD_MULTIPLE)
        # gradients are all-reduced once per optimizer step, in the last micro-batch's backward
        sync = k == starts[-1] or ddp is None
        with contextlib.nullcontext() if sync else ddp.no_sync():
            with autocast:
                part = forward(batch["input_ids"], batch["labels"])
            # ×world because data-parallel gradient averaging divides by it again
            (part * (world / n_tgt)).backward()
        loss_sum += part.detach()
        tokens += sum(len(e["input_ids"]) for e in chunk)  # counted on the host: no device sync
    # the norm is wanted even unclipped: a NaN/Inf gradient is how divergence shows first
    norm = torch.nn.utils.clip_grad_norm_(params, max_grad_norm if max_grad_norm > 0 else float("inf"))
    if hasattr(norm, "full_tensor"):  # FSDP: a DTensor of per-shard parts; every rank takes the whole
        norm = norm.full_tensor()
    opt.step()
    opt.zero_grad(set_to_none=True)
    return loss_sum, tokens, norm


def _local(t):
    """This rank's part of a tensor: under FSDP parameters and the gradient norm are DTensors."""
    return t.to_local() if hasattr(t, "to_local") else t


def all_finite(params):
    """Whether this rank's parameters (its shards under FSDP) are finite; _any_rank combines ranks."""
    return bool(torch.stack([torch.isfinite(_local(p)).all() for p in params]).all().item()) if params else True


def _diverged(job, out_dir, rank, step, max_steps, history, lr, what, value):
    """TrainingDiverged for a non-finite loss, gradient norm or weights at optimizer step `step`.
    The run's checkpoints are set aside (checkpoints.set_aside_diverged): resuming them with the
    same settings diverges again, and with other settings (a lower lr) is refused, so left in place
    they would only block the corrected run in this output_dir."""
    last = history[-1] if history else None
    details = {"step": step, "max_steps": max_steps, "what": what, "value": value, "lr": lr,
               "last_finite_loss": last["loss"] if last else None,
               "last_finite_step": last["step"] if last else None, "output_dir": str(out_dir)}
    moved = checkpoints.set_aside_diverged(out_dir, details) if rank == 0 else None
    lastly = (f"last finite loss {last['loss']:.4g} at step {last['step']}" if last
              else "no finite loss before it")
    aside = f"; its checkpoints were moved to {moved} (not resumable)" if moved else ""
    return TrainingDiverged(
        f"training diverged at optimizer step {step} of {max_steps}: the {what} is {value} "
        f"(lr {lr:.3g}; {lastly}). Lower the learning rate (or raise warmup, lower max_grad_norm) and run again; "
        f"no checkpoint with non-finite weights was saved{aside}", details=details)


def _any_rank(flag, device):
    return distributed.sum_across([float(flag)], device)[0] > 0
