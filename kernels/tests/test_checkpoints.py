"""Checkpoint directory helpers: atomic save, newest complete, stale partials, tensor round-trip."""

import os

import torch
from wmss_kernels import checkpoints


def _write(tmp):
    (tmp / "a.txt").write_text("x")


def test_save_atomic_and_latest(tmp_path):
    p = checkpoints.save_atomic(tmp_path, 5, _write)
    assert p == tmp_path / "checkpoint-5" and (p / "COMPLETE").is_file() and (p / "a.txt").is_file()
    assert not (tmp_path / "checkpoint-5.partial").exists()
    # an incomplete newer checkpoint (crash before COMPLETE) and a partial are both ignored
    (tmp_path / "checkpoint-9").mkdir()
    (tmp_path / "checkpoint-12.partial").mkdir()
    assert checkpoints.latest_checkpoint(tmp_path) == (5, p)
    assert [s for s, _ in checkpoints.list_checkpoints(tmp_path, complete_only=False)] == [5, 9]
    assert checkpoints.remove_stale_partials(tmp_path) == ["checkpoint-12.partial"]
    # saving over an incomplete leftover of the same step replaces it
    p9 = checkpoints.save_atomic(tmp_path, 9, _write)
    assert checkpoints.latest_checkpoint(tmp_path) == (9, p9)
    assert checkpoints.latest_checkpoint(tmp_path / "nothing") is None


def test_tensors_roundtrip_shared_and_sharded(tmp_path, monkeypatch):
    emb = torch.randn(10, 4)
    sd = {"model.embed_tokens.weight": emb, "lm_head.weight": emb, "norm.weight": torch.ones(4)}
    checkpoints.save_tensors(sd, tmp_path)  # shared storage must not trip safetensors
    back = checkpoints.load_tensors(tmp_path)
    assert set(back) == set(sd) and torch.equal(back["lm_head.weight"], emb)

    monkeypatch.setattr(checkpoints, "SHARD_BYTES", 100)
    out = tmp_path / "sharded"
    out.mkdir()
    checkpoints.save_tensors(sd, out)
    assert (out / "model.safetensors.index.json").is_file() and not (out / "model.safetensors").exists()
    back = checkpoints.load_tensors(out)
    assert all(torch.equal(back[k], v) for k, v in sd.items())


def test_rng_roundtrip(tmp_path):
    torch.manual_seed(3)
    checkpoints.save_rng(tmp_path / "rng.pt")
    a = torch.rand(3)
    torch.rand(5)
    checkpoints.load_rng(tmp_path / "rng.pt")
    assert torch.equal(torch.rand(3), a)


def test_rng_roundtrip_python_and_numpy(tmp_path):
    import random

    import numpy as np

    random.seed(5)
    np.random.seed(5)
    checkpoints.save_rng(tmp_path / "rng.pt")
    a, b = random.random(), np.random.rand(3)
    random.random(), np.random.rand(7)
    checkpoints.load_rng(tmp_path / "rng.pt")
    assert random.random() == a and np.array_equal(np.random.rand(3), b)


class _Boom:
    def __reduce__(self):
        return (os.system, ("touch " + str(_Boom.marker),))


def test_rng_file_is_not_unpickled(tmp_path):
    """A planted rng.pt (any pickle) must not run code at resume; it is skipped with a warning."""
    _Boom.marker = tmp_path / "pwned"
    torch.save({"python": _Boom()}, tmp_path / "rng.pt")
    torch.manual_seed(1)
    a = torch.rand(2)
    torch.manual_seed(1)
    checkpoints.load_rng(tmp_path / "rng.pt")
    assert not _Boom.marker.exists()
    assert torch.equal(torch.rand(2), a)  # state untouched
