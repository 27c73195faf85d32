"""FSDP2 sharding and sharded (torch.distributed.checkpoint) checkpoints for the training loop.

Strategy (job field `parallelism`): `ddp` keeps every weight, gradient and AdamW moment on every
rank; `fsdp` shards them over the ranks (torch.distributed.fsdp.fully_shard), one group per decoder
layer and one for the rest (embeddings, final norms, output heads) on the module that computes the
loss, so the fused weak+strong model is sharded as one module. `auto` asks the estimate the
activity computed (`memory_estimate_gib`, pipeline/parallelism.ts, the one place where it is
computed) against this device's real memory: FSDP when the DDP footprint does not fit.

Mixed precision: parameters stay in the model's dtype (bf16 on CUDA, as under DDP, so both
strategies compute the same AdamW update on the same bf16 master weights); gradients are reduced
in fp32 (reduce_dtype) because a bf16 sum over ranks loses the low bits that a per-step update of
lr 1e-5 lives in; the cost is twice the reduce-scatter bytes, small next to a decoder layer's
matmuls.
"""

import logging
from pathlib import Path

import torch
import torch.distributed as dist

log = logging.getLogger("wmss_kernels.sharding")

DCP_DIR = "dcp"  # a checkpoint's sharded model + optimizer state
# fraction of the device's memory the DDP estimate may take before auto picks FSDP: the rest is
# the CUDA context, the allocator's fragmentation and NCCL buffers
FIT_FRACTION = 0.85


def choose(strategy, world, device, estimate_gib):
    """'ddp' or 'fsdp' for a run of `world` ranks (None on one process: nothing to shard)."""
    if world == 1:
        return None
    if strategy != "auto":
        return strategy
    if estimate_gib is None or device.type != "cuda":
        return "ddp"
    total = torch.cuda.get_device_properties(device).total_memory / 2**30
    pick = "fsdp" if estimate_gib > FIT_FRACTION * total else "ddp"
    log.info(
        "parallelism auto: estimate %.1f GiB per device under DDP, device %.1f GiB → %s", estimate_gib, total, pick
    )
    return pick


def decoder_layers(module):
    """Every transformer block of the model(s) under `module`, in order."""
    return [m for m in module.modules() if type(m).__name__.endswith("DecoderLayer")]


def shard(loss_module, *, reshard_after_forward=True, cpu_offload=False, device=None):
    """fully_shard every decoder layer, then the loss module itself (the root: embeddings, norms,
    heads). Must run before the optimizer is built: sharding replaces the parameters by DTensors."""
    from torch.distributed.fsdp import CPUOffloadPolicy, MixedPrecisionPolicy, fully_shard

    dtype = next(loss_module.parameters()).dtype
    kw = {"mp_policy": MixedPrecisionPolicy(param_dtype=dtype, reduce_dtype=torch.float32)}
    if cpu_offload:
        # parameters, gradients and the optimizer step live on the host; only the layer being
        # computed is gathered on the GPU (torch's policy offloads all three together)
        kw["offload_policy"] = CPUOffloadPolicy(pin_memory=device is not None and device.type == "cuda")
    layers = decoder_layers(loss_module)
    for layer in layers:
        fully_shard(layer, reshard_after_forward=reshard_after_forward, **kw)
    # the root's parameters are needed again first thing in backward (the output heads): keep them
    fully_shard(loss_module, reshard_after_forward=False, **kw)
    return len(layers)


def compile_sharded_layers(loss_module):
    """torch.compile the forward of each block, leaving FSDP's hooks (which unshard and reshard
    around it) in eager mode outside the compiled graph."""
    layers = decoder_layers(loss_module)
    for layer in layers:
        layer.forward = torch.compile(layer.forward, dynamic=True)
    return len(layers)


def _options(**kw):
    from torch.distributed.checkpoint.state_dict import StateDictOptions

    return StateDictOptions(**kw)


def save(loss_module, opt, path):
    """Every rank writes its shards of the model and optimizer state to `path`/dcp (collective)."""
    import torch.distributed.checkpoint as dcp
    from torch.distributed.checkpoint.state_dict import get_state_dict

    msd, osd = get_state_dict(loss_module, opt)
    dcp.save({"model": msd, "optim": osd}, checkpoint_id=str(Path(path) / DCP_DIR))


def load(loss_module, opt, path):
    """Read a sharded checkpoint into the model and optimizer, whatever the number of ranks that
    wrote it and whatever this run's strategy (FSDP, DDP or one process): DCP reshards by name."""
    import torch.distributed.checkpoint as dcp
    from torch.distributed.checkpoint.state_dict import get_state_dict, set_state_dict

    msd, osd = get_state_dict(loss_module, opt)  # the layout to fill, optimizer state created empty
    state = {"model": msd, "optim": osd}
    dcp.load(state, checkpoint_id=str(Path(path) / DCP_DIR))
    set_state_dict(loss_module, opt, model_state_dict=state["model"], optim_state_dict=state["optim"])


def is_sharded(path):
    return (Path(path) / DCP_DIR).is_dir()


def full_state_dict(loss_module, prefix):
    """The unsharded weights under `prefix` (e.g. 'lm.'), gathered one parameter at a time into
    host memory of rank 0 (the other ranks get an empty dict): no GPU ever holds the whole model."""
    from torch.distributed.checkpoint.state_dict import get_model_state_dict

    sd = get_model_state_dict(loss_module, options=_options(full_state_dict=True, cpu_offload=True))
    return {k[len(prefix) :]: v for k, v in sd.items() if k.startswith(prefix)}


def rank():
    return dist.get_rank() if dist.is_initialized() else 0
