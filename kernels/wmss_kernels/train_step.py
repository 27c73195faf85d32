"""One optimizer step of the training loop (train_loop.py) and what it needs: the optimizer and
its schedule, per-layer compilation, and the divergence checks on loss, gradients and weights."""

import contextlib

import torch

from . import checkpoints, distributed
from .protocol import TrainingDiverged
from .train_batches import PAD_MULTIPLE, collate


def make_optimizer(model, lr, weight_decay, device, fused=None):
    """AdamW over the trainable parameters (fused kernel on CUDA); returns (optimizer, params)."""
    decay = [p for p in model.parameters() if p.requires_grad and p.ndim >= 2]
    no_decay = [p for p in model.parameters() if p.requires_grad and p.ndim < 2]  # norms, biases
    opt = torch.optim.AdamW(
        [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
        lr=lr,
        betas=(0.9, 0.999),
        eps=1e-8,
        fused=device.type == "cuda" if fused is None else fused,
    )
    return opt, decay + no_decay


def lr_lambda(warmup, total):
    # HF's linear schedule: ramp 0 → 1 over `warmup` steps, then straight down to 0 at `total`
    def f(step):
        if step < warmup:
            return step / max(1, warmup)
        return max(0.0, (total - step) / max(1, total - warmup))

    return f


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
    Returns (summed loss on this rank as a tensor, real tokens on this rank, gradient norm before clipping)."""
    # Sorted by length, micro-batches pad little; the step's summed loss does not depend on how
    # its examples are grouped.
    mine = sorted(mine, key=lambda e: len(e["input_ids"]))
    loss_sum, tokens = torch.zeros((), device=device), 0
    starts = list(range(0, len(mine), micro_batch))
    for k in starts:
        chunk = mine[k : k + micro_batch]
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


def diverged(job, out_dir, rank, step, max_steps, history, lr, what, value):
    """TrainingDiverged for a non-finite loss, gradient norm or weights at optimizer step `step`.
    The run's checkpoints are set aside (checkpoints.set_aside_diverged): resuming them with the
    same settings diverges again, and with other settings (a lower lr) is refused, so left in place
    they would only block the corrected run in this output_dir."""
    last = history[-1] if history else None
    details = {
        "step": step,
        "max_steps": max_steps,
        "what": what,
        "value": value,
        "lr": lr,
        "last_finite_loss": last["loss"] if last else None,
        "last_finite_step": last["step"] if last else None,
        "output_dir": str(out_dir),
    }
    moved = checkpoints.set_aside_diverged(out_dir, details) if rank == 0 else None
    lastly = f"last finite loss {last['loss']:.4g} at step {last['step']}" if last else "no finite loss before it"
    aside = f"; its checkpoints were moved to {moved} (not resumable)" if moved else ""
    return TrainingDiverged(
        f"training diverged at optimizer step {step} of {max_steps}: the {what} is {value} "
        f"(lr {lr:.3g}; {lastly}). Lower the learning rate (or raise warmup, lower max_grad_norm) and run again; "
        f"no checkpoint with non-finite weights was saved{aside}",
        details=details,
    )


def any_rank(flag, device):
    return distributed.sum_across([float(flag)], device)[0] > 0
