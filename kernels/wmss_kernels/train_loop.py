"""The one training loop behind `sft` (step 1) and `joint` (step 5b).

AdamW, linear warm-up then linear decay to 0, gradient clipping, gradient accumulation with a
token-weighted loss (the summed cross-entropy of a whole optimizer step divided by the number of
target tokens in that step, as HF does with num_items_in_batch), atomic checkpoints that resume
exactly, SIGTERM → checkpoint → exit 4.

The data order is a pure function of the seed and the step (train_batches.py), so resuming only
needs the step number; under torchrun each rank takes its own slice of every global batch without
talking to the others, and the device count never changes the run (train_plan.py). One optimizer
step, the optimizer and the divergence checks are train_step.py.

Data parallelism is DistributedDataParallel (every rank holds the whole model and optimizer
state; gradients are averaged in backward) or FSDP2 (sharding.py: weights, gradients and optimizer
state sharded over the ranks), chosen by the job's `parallelism`. Under DDP rank 0 writes the
checkpoints; under FSDP every rank writes its shards with torch.distributed.checkpoint and the
final checkpoint is gathered into one Hugging Face model. Only rank 0 prints protocol lines; the
other ranks log.
"""

import logging
import math
import random
import time
from pathlib import Path

import numpy as np
import torch
from torch.nn.parallel import DistributedDataParallel

from . import __version__, checkpoints, distributed, faults, save_request, sharding, tracking
from .async_checkpoint import AsyncSaver
from .protocol import InvalidInput, OutOfMemory, Progress, Terminated, emit, install_sigterm_handler, stop_requested
from .train_batches import CausalLMLoss, step_indices
from .train_plan import accum_per_rank, batch_layout, check_same_run, train_result
from .train_step import all_finite, any_rank, compile_layers, diverged, lr_lambda, make_optimizer, optimizer_step

log = logging.getLogger("wmss_kernels.train_loop")

# Optimizer steps of a process left out of its throughput figures (compilation, recompilation for
# the first dynamic shapes; measured on an H200: steps 1-3 of a compiled 0.6B run are slower)
WARMUP_STEPS = 3


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
    layout = {**batch_layout(job, world), "parallelism": strategy or "none"}
    loss_module = loss_module or CausalLMLoss(model)
    prefix = _child_prefix(loss_module, model)

    if job.gradient_checkpointing:
        # before sharding: FSDP's hooks then run inside the recomputed region, which FSDP2 expects
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    offload = strategy == "fsdp" and job.cpu_offload
    if strategy == "fsdp":
        n_groups = sharding.shard(
            loss_module, reshard_after_forward=job.reshard_after_forward, cpu_offload=offload, device=device
        )
        log.info(
            "fsdp: %d decoder layers + root sharded over %d ranks (reshard_after_forward=%s, cpu_offload=%s)",
            n_groups,
            world,
            job.reshard_after_forward,
            offload,
        )
    # offloaded parameters live on the host, where the fused (CUDA) AdamW cannot run
    opt, params = make_optimizer(loss_module, job.lr, job.weight_decay, device, fused=False if offload else None)
    warmup = math.ceil(job.warmup_ratio * max_steps)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lr_lambda(warmup, max_steps))

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
        check_same_run(ckpt, hp)
        state = checkpoints.read_json(ckpt / "trainer_state.json")
        if sharding.is_sharded(ckpt):
            # written by FSDP on any number of ranks; readable under every strategy
            sharding.load(loss_module, opt, ckpt)
        elif strategy == "fsdp":
            raise InvalidInput(
                f"{ckpt} was written without sharding (ddp or one device) and fsdp cannot resume "
                "its optimizer state: resume with parallelism ddp, or use a new output_dir",
                field="parallelism",
            )
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
        forward = ddp = DistributedDataParallel(
            loss_module,
            device_ids=[device.index if device.index is not None else torch.cuda.current_device()]
            if device.type == "cuda"
            else None,
        )
    autocast = torch.autocast(
        "cuda", dtype=torch.bfloat16, enabled=device.type == "cuda" and any(p.dtype == torch.bfloat16 for p in params)
    )

    tracker = tracking.open_tracker(job, purge_step=start + 1)  # rank 0 only; see tracking.py
    progress = Progress(max_steps, "steps")
    if rank == 0:
        progress.update(start, epoch=start * global_batch / n)
    # Throughput: the tokens of all ranks over the time spent in optimizer steps, leaving out this
    # process's warm-up steps (compilation and the recompilations of the next new shapes, allocator
    # warm-up: a longer run amortises them) and the checkpoint writes (saveEvery decides those,
    # not the device count). tokens_per_s and step_s therefore scale with the steps themselves.
    clock = {"times": [], "tokens": [], "save_s": []}
    step, last_saved, path = start, start, None
    # sharded checkpoints before the last are written in the background (async_checkpoint.py)
    saver = AsyncSaver(out_dir, device) if strategy == "fsdp" and job.async_checkpoints else None

    def timed():
        """(seconds, tokens) of the steps after warm-up: the first WARMUP_STEPS once there are
        at least twice as many steps, else only the first (a short run still reports a figure)."""
        skip = WARMUP_STEPS if len(clock["times"]) >= 2 * WARMUP_STEPS else min(1, len(clock["times"]) - 1)
        return sum(clock["times"][skip:]), sum(clock["tokens"][skip:]), len(clock["times"][skip:])

    def tokens_per_s():
        seconds, tokens, _ = timed()
        return tokens / seconds if seconds > 0 else 0.0

    def publish(step, tmp, loss, lr):
        """Rank 0: COMPLETE and rename once every part of the checkpoint is written; report it."""
        path = checkpoints.publish(out_dir, step, tmp).resolve()
        emit("checkpoint", path=str(path), step=step)
        emit(
            "progress",
            done=step,
            total=max_steps,
            unit="steps",
            loss=loss,
            lr=lr,
            tokens_per_s=tokens_per_s(),
            epoch=step * global_batch / n,
        )
        return path

    def save(step, loss, background=False):
        """Collective under FSDP (every rank writes its shards or joins the gather); rank 0 alone
        otherwise. Rank 0 publishes the checkpoint (COMPLETE, rename) once every part is written:
        at once, or with `background` (sharded checkpoints before the last) when the AsyncSaver's
        write has finished."""
        if saver is not None:
            saver.finish()  # one save in flight at most, and none under a synchronous one
        background = background and saver is not None and step < max_steps
        state = {
            "step": step,
            "max_steps": max_steps,
            "consumed_samples": step * global_batch,
            "epoch": step * global_batch / n,
            "loss_history": history,
            "hparams": hp,
            "layout": layout,
            "tokens_per_s": tokens_per_s(),
            "kernel_version": __version__,
        }
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
                if background:
                    saver.start(loss_module, opt, step, tmp)
                else:
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
            lr = sched.get_last_lr()[0]
            if background:
                saver.publish_when_written(lambda: publish(step, tmp, loss, lr))
                return None
            return publish(step, tmp, loss, lr)
        except Exception as e:  # a full disk or a read-only dir: typed, and no partial checkpoint left
            checkpoints.raise_as_disk_failure(e, out_dir, step, tmp)
            raise

    while step < max_steps:
        # SIGTERM before this process trained anything: nothing new to save. Ranks agree first, so
        # none of them waits in a collective for one that has already left.
        if step == start and any_rank(stop_requested(), device):
            raise Terminated(f"stopped by SIGTERM before step {step + 1}; nothing new to save")
        if job.simulate_oom:
            raise OutOfMemory("simulated out of memory (simulate_oom)")

        # Token-weighting needs the target count of the whole global batch; the data order is
        # known to every rank, so each one counts it locally instead of an all-reduce.
        all_idx = step_indices(step, n, global_batch, job.seed)
        n_tgt = max(1, sum(examples[i]["n_targets"] for i in all_idx))
        mine = [examples[i] for i in all_idx[rank * per_rank : (rank + 1) * per_rank]]
        lr = sched.get_last_lr()[0]
        tracking.log_branch_losses(job, loss_module, step + 1, max_steps)
        t_step = time.monotonic()
        loss_sum, tokens, grad_norm = optimizer_step(
            forward, ddp, mine, n_tgt, job.micro_batch, world, device, autocast, params, job.max_grad_norm, opt
        )
        sched.step()
        step += 1
        if saver is not None:
            saver.poll()  # publish the checkpoint written in the background, if it is whole

        # One all-reduce per step: the logged loss and token count cover every rank, and a SIGTERM
        # seen by any rank stops all of them at the same step.
        # A save request (SIGUSR1, save_request.py) seen by any rank makes every rank save here too.
        summed_loss, summed_tokens, stops, norms, asked, *branches = distributed.sum_across(
            [
                loss_sum.item(),
                tokens,
                float(stop_requested()),
                grad_norm.item(),
                float(save_request.take()),
                *tracking.branch_sums(loss_module),
            ],
            device,
        )
        loss = faults.poison_loss(step, summed_loss / n_tgt)
        if not (math.isfinite(loss) and math.isfinite(norms)):
            # every rank sees the same sums, so all stop here; nothing of this step is saved (a
            # save still in flight lands first: its weights were finite, and it is set aside too)
            if saver is not None:
                saver.finish()
            raise diverged(
                job,
                out_dir,
                rank,
                step,
                max_steps,
                history,
                lr,
                "loss" if not math.isfinite(loss) else "gradient norm",
                loss if not math.isfinite(loss) else norms,
            )
        clock["times"].append(time.monotonic() - t_step)  # .item() above waited for the device
        clock["tokens"].append(int(summed_tokens))
        # tokens per step in the history: the run's total survives resumes (the baseline arm's
        # equal-cost check compares them)
        history.append({"step": step, "loss": loss, "lr": lr, "tokens": int(summed_tokens), "target_tokens": n_tgt})
        tracker.scalars(step, tracking.train_scalars(loss, lr, norms / world, tokens_per_s(), device, branches, n_tgt))
        if rank == 0:
            progress.update(step, loss=loss, lr=lr, tokens_per_s=tokens_per_s(), epoch=step * global_batch / n)

        stop = stops > 0 or step == job.stop_after_steps
        if step == max_steps or stop or asked > 0 or (job.save_every and step % job.save_every == 0):
            # a finite loss does not prove finite weights: a huge lr can overflow the update itself
            if any_rank(not all_finite(params), device):
                if saver is not None:
                    saver.finish()
                raise diverged(job, out_dir, rank, step, max_steps, history, lr, "weights", float("nan"))
            t_save = time.monotonic()
            path = save(step, loss, background=not stop)
            tracker.flush()
            # nobody reads the checkpoint or leaves (torchrun would kill a rank still saving)
            # before rank 0 has finished writing it
            distributed.barrier()
            clock["save_s"].append(time.monotonic() - t_save)
            last_saved = step
        if stop and step < max_steps:
            where = f"checkpoint saved: {path}" if rank == 0 else "rank 0 saved the checkpoint"
            raise Terminated(f"stopped at step {step} of {max_steps}; {where}")

    if saver is not None:
        saver.close()
    final = checkpoints.checkpoint_dir(out_dir, max_steps)
    tracker.link("model", final)
    tracker.close()
    state = checkpoints.read_json(final / "trainer_state.json")
    assert last_saved == max_steps
    seconds, _, n_timed = timed()
    timing = {"step_s": seconds / max(1, n_timed), "checkpoint_s_max": max(clock["save_s"], default=0.0)}
    return train_result(final, state, start, tokens_per_s(), {**layout, **timing})
