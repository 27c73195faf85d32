"""Training checkpoints on disk: `checkpoint-<step>/` directories under a run's output_dir.

A checkpoint is written into `checkpoint-<step>.partial/`, every file is fsynced, the `COMPLETE`
marker goes in last, and only then is the directory renamed into place. A reader therefore
trusts a checkpoint only if it has `COMPLETE`: anything else is a crash leftover.
"""

import errno
import json
import os
import re
import shutil
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import save_file

from . import faults
from .protocol import disk_error

COMPLETE = "COMPLETE"
_NAME = re.compile(r"^checkpoint-(\d+)$")
SHARD_BYTES = 5 * 1024**3  # bounds the host memory save_file needs for one shard


def checkpoint_dir(output_dir, step):
    return Path(output_dir) / f"checkpoint-{step}"


def is_complete(path):
    return (Path(path) / COMPLETE).is_file()


def list_checkpoints(output_dir, complete_only=True):
    """[(step, path)] sorted by step; partial and (by default) incomplete ones left out."""
    root = Path(output_dir)
    if not root.is_dir():
        return []
    found = []
    for p in root.iterdir():
        m = _NAME.match(p.name)
        if m and p.is_dir() and (is_complete(p) or not complete_only):
            found.append((int(m.group(1)), p))
    return sorted(found)


def latest_checkpoint(output_dir):
    """(step, path) of the newest complete checkpoint, or None."""
    found = list_checkpoints(output_dir)
    return found[-1] if found else None


def remove_stale_partials(output_dir):
    """Delete `checkpoint-*.partial` dirs left by a killed run; returns their names."""
    root = Path(output_dir)
    removed = []
    if root.is_dir():
        for p in root.glob("checkpoint-*.partial"):
            shutil.rmtree(p, ignore_errors=True)
            removed.append(p.name)
    return removed


def _fsync_path(path):
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def partial_dir(output_dir, step):
    """Where checkpoint-<step> is written before it is published."""
    return Path(output_dir) / f"checkpoint-{step}.partial"


def begin_partial(tmp):
    """An empty partial dir (a leftover of the same step is discarded)."""
    tmp = Path(tmp)
    tmp.parent.mkdir(parents=True, exist_ok=True)
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    return tmp


def publish(output_dir, step, tmp):
    """fsync everything under `tmp`, mark it COMPLETE, rename it to checkpoint-<step>."""
    root = Path(output_dir)
    final = checkpoint_dir(root, step)
    # The marker must not reach the disk before the data it vouches for.
    for dirpath, _, files in os.walk(tmp):
        for f in files:
            _fsync_path(os.path.join(dirpath, f))
        _fsync_path(dirpath)  # sharded checkpoints have subdirectories whose entries must land too
    faults.before_complete_marker(step)  # test-only (faults.py); nothing unless armed
    (tmp / COMPLETE).write_text("ok\n")
    _fsync_path(tmp / COMPLETE)
    _fsync_path(tmp)
    if final.exists():  # an incomplete leftover of the same step
        shutil.rmtree(final)
    os.replace(tmp, final)
    _fsync_path(root)
    return final


def save_atomic(output_dir, step, write_fn):
    """Run write_fn(tmp_dir), fsync, mark COMPLETE, rename to checkpoint-<step>; return the path."""
    tmp = partial_dir(output_dir, step)
    try:
        begin_partial(tmp)
        write_fn(tmp)
        return publish(output_dir, step, tmp)
    except Exception as e:
        raise_as_disk_failure(e, output_dir, step, tmp)
        raise


def raise_as_disk_failure(e, output_dir, step, tmp):
    """After a failed checkpoint write: remove the partial dir (a half-written checkpoint must not
    stay behind) and raise a typed disk failure when the disk is the cause; else return."""
    # Measured before the cleanup frees the space again: torch.save reports a full disk only
    # as "unexpected pos", without an errno.
    full = _nearly_full(output_dir)
    shutil.rmtree(tmp, ignore_errors=True)
    typed = disk_error(e, str(tmp))
    if typed is None and full:
        typed = disk_error(OSError(errno.ENOSPC, f"No space left on device ({type(e).__name__}: {e})"), str(tmp))
    if typed is None:
        return
    typed.message = typed.reason = (
        f"checkpoint {checkpoint_dir(output_dir, step)}: {typed.message}; the partial checkpoint {tmp} was removed"
    )
    raise typed from e


def _nearly_full(path, below=1 << 20):
    try:
        st = os.statvfs(path)
    except OSError:
        return False
    return st.f_bavail * st.f_frsize < below


def write_json(path, obj):
    Path(path).write_text(json.dumps(obj, indent=2, sort_keys=True) + "\n")


def read_json(path):
    return json.loads(Path(path).read_text())


def save_tensors(state_dict, out_dir, metadata=None):
    """Write a state dict as model.safetensors, or 5 GB shards plus model.safetensors.index.json."""
    out_dir = Path(out_dir)
    tensors, seen = {}, set()
    for k, t in state_dict.items():
        t = t.detach()
        # safetensors refuses tensors that share storage (tied embeddings): give each its own copy.
        key = (t.untyped_storage().data_ptr(), t.storage_offset(), t.shape)
        tensors[k] = t.clone().contiguous() if key in seen else t.contiguous()
        seen.add(key)
    shards, cur, cur_bytes = [], {}, 0
    for k in sorted(tensors):
        n = tensors[k].numel() * tensors[k].element_size()
        if cur and cur_bytes + n > SHARD_BYTES:
            shards.append(cur)
            cur, cur_bytes = {}, 0
        cur[k] = tensors[k].cpu()
        cur_bytes += n
    shards.append(cur)
    meta = {"format": "pt", **(metadata or {})}
    if len(shards) == 1:
        save_file(shards[0], str(out_dir / "model.safetensors"), metadata=meta)
        return
    weight_map, total = {}, 0
    for i, shard in enumerate(shards):
        name = f"model-{i + 1:05d}-of-{len(shards):05d}.safetensors"
        save_file(shard, str(out_dir / name), metadata=meta)
        for k, t in shard.items():
            weight_map[k] = name
            total += t.numel() * t.element_size()
    write_json(out_dir / "model.safetensors.index.json", {"metadata": {"total_size": total}, "weight_map": weight_map})


def load_tensors(model_dir, device="cpu"):
    """Read model.safetensors or the shards named by model.safetensors.index.json."""
    model_dir = Path(model_dir)
    index = model_dir / "model.safetensors.index.json"
    if index.is_file():
        files = sorted(set(read_json(index)["weight_map"].values()))
    elif (model_dir / "model.safetensors").is_file():
        files = ["model.safetensors"]
    else:
        raise FileNotFoundError(f"no model.safetensors or model.safetensors.index.json in {model_dir}")
    out = {}
    for name in files:
        with safe_open(str(model_dir / name), framework="pt", device=str(device)) as f:
            for k in f.keys():
                out[k] = f.get_tensor(k)
    return out


def load_weights(model, model_dir, device="cpu"):
    """Copy saved weights into an existing model in place; tied lm_head may be absent on disk."""
    sd = load_tensors(model_dir, device)
    missing, unexpected = model.load_state_dict(sd, strict=False)
    missing = [k for k in missing if not _is_tied(model, k)]
    if missing or unexpected:
        raise ValueError(
            f"weights in {model_dir} do not fit the model: missing {missing[:5]}, unexpected {unexpected[:5]}"
        )


def _is_tied(model, key):
    # A key is harmless to miss when its parameter is the very same tensor as one that was loaded.
    if not key.endswith("lm_head.weight"):
        return False
    params = dict(model.named_parameters(remove_duplicate=False))
    emb = key[: -len("lm_head.weight")] + "model.embed_tokens.weight"
    return key in params and emb in params and params[key] is params[emb]


RNG_FORMAT = "wmss-rng/2"


def save_rng(path):
    """The RNG states of Python, NumPy and torch, in plain containers of ints, floats and tensors,
    so that load_rng can read them with torch.load(weights_only=True): a checkpoint is data, and
    a file planted in a run dir must not run code when training resumes from it."""
    import random

    import numpy as np

    name, keys, pos, has_gauss, cached = np.random.get_state()
    state = {
        "format": RNG_FORMAT,
        "python": random.getstate(),
        "numpy": (str(name), [int(k) for k in keys], int(pos), int(has_gauss), float(cached)),
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    torch.save(state, path)


def load_rng(path):
    import logging
    import pickle
    import random

    import numpy as np

    try:
        state = torch.load(path, weights_only=True)
    except pickle.UnpicklingError as e:
        # an RNG file of an older version (pickled NumPy objects) or a hostile one: not unpickled
        logging.getLogger(__name__).warning(
            "not restoring the RNG state of %s: it is not in format %s (%s)",
            path,
            RNG_FORMAT,
            str(e).splitlines()[0] if str(e) else type(e).__name__,
        )
        return
    if not isinstance(state, dict) or state.get("format") != RNG_FORMAT:
        logging.getLogger(__name__).warning("not restoring the RNG state of %s: not in format %s", path, RNG_FORMAT)
        return
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    name, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((name, np.array(keys, dtype=np.uint32), pos, has_gauss, cached))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        # saved by a process that saw more (or fewer) GPUs than this one: the common ones
        for i, s in enumerate(state["cuda"][: torch.cuda.device_count()]):
            torch.cuda.set_rng_state(s, i)


DIVERGED_DIR = ".diverged"


def set_aside_diverged(output_dir, report):
    """Move every checkpoint of a diverged run into `<output_dir>/.diverged/` with a DIVERGED.json
    report, and return that dir (None when there was nothing to move). They stay for inspection,
    but nothing at the top level claims to be resumable any more, so the same output_dir can start
    over with corrected settings. A dot-dir: the artifact store neither records nor verifies it.
    An earlier diverged run's leftovers are replaced."""
    root = Path(output_dir)
    found = [p for _, p in list_checkpoints(root, complete_only=False)]
    aside = root / DIVERGED_DIR
    shutil.rmtree(aside, ignore_errors=True)
    aside.mkdir(parents=True, exist_ok=True)
    for p in found:
        os.replace(p, aside / p.name)
    write_json(aside / "DIVERGED.json", report)
    _fsync_path(root)
    return aside if found else None
