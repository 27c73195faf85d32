import json

import pytest
import torch
from conftest import run_kernel
from wmss_kernels import entropy
from wmss_kernels.chat import entropy_texts, tokenize_pair
from wmss_kernels.data import read_records
from wmss_kernels.jobs import job_schema, load_job
from wmss_kernels.modeling import load_model, load_tokenizer

LIMIT = 24


@pytest.fixture(scope="module")
def sharp(tiny_model, tmp_path_factory):
    """The tiny model with a 40x larger output projection. Freshly initialised logits are nearly
    uniform, so every position would have entropy ~ln(V) and an off-by-one in the positions
    would go unnoticed; sharpened, entropies vary from position to position."""
    out = tmp_path_factory.mktemp("sharp")
    model = load_model(tiny_model.model_dir, "cpu", torch.float32)
    with torch.no_grad():
        model.lm_head.weight.mul_(40.0)
    model.save_pretrained(out)
    load_tokenizer(tiny_model.model_dir).save_pretrained(out)
    return tiny_model._replace(model_dir=str(out))


def run_entropy(tiny, tmp_path, name, **overrides):
    """entropy.run in-process (the CLI path is covered once below); returns {idx: entropy}."""
    out = tmp_path / f"{name}.jsonl"
    job = {
        "log_file": str(tmp_path / "log"),
        "model_path": tiny.model_dir,
        "data_file": tiny.train_file,
        "data_format": "messages",
        "output_path": str(out),
        "field": "entropy_0",
        "limit": LIMIT,
        **overrides,
    }
    (tmp_path / f"{name}.json").write_text(json.dumps(job))
    entropy.run(load_job(str(tmp_path / f"{name}.json"), job_schema("entropy")))
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["idx"] for r in rows] == sorted(r["idx"] for r in rows)
    return {r["idx"]: r[job["field"]] for r in rows}


def naive(tiny, definition):
    """The textbook formula: full float32 softmax over model(input_ids).logits, one sample at a time."""
    tok = load_tokenizer(tiny.model_dir)
    model = load_model(tiny.model_dir, "cpu", torch.float32)
    out = {}
    for rec in read_records(tiny.train_file, "messages")[:LIMIT]:
        ids, n = tokenize_pair(tok, *entropy_texts(tok, rec), 8192)
        with torch.no_grad():
            logits = model(torch.tensor([ids])).logits[0].float()
        rows = range(n - 1, len(ids) - 1) if definition == "shifted" else range(n, len(ids))
        p = torch.softmax(logits[list(rows)], dim=-1)
        out[rec.idx] = (-(p * torch.log(p)).sum(-1)).mean().item()
    return out


@pytest.mark.parametrize("definition", ["shifted", "repo"])
def test_matches_naive_formula(sharp, tmp_path, definition):
    got = run_entropy(sharp, tmp_path, definition, definition=definition)
    want = naive(sharp, definition)
    assert got.keys() == want.keys()
    for idx in want:
        assert got[idx] == pytest.approx(want[idx], abs=1e-5)
    other = naive(sharp, "repo" if definition == "shifted" else "shifted")
    assert sum(abs(got[i] - other[i]) for i in got) / len(got) > 1e-2  # the definitions differ


def test_random_model_is_near_uniform(tiny_model, tmp_path):
    got = run_entropy(tiny_model, tmp_path, "base")
    # a freshly initialised model over a 512-row vocabulary: entropy close to ln(512) = 6.24
    assert all(6.0 < v < 6.25 for v in got.values())


def test_chunking_and_batching_do_not_change_results(sharp, tmp_path):
    tiny_model = sharp
    base = run_entropy(tiny_model, tmp_path, "base", vocab_chunk=100000, batch_tokens=100000)
    chunked = run_entropy(tiny_model, tmp_path, "chunked", vocab_chunk=3)
    single = run_entropy(tiny_model, tmp_path, "single", batch_tokens=1)  # one sample per batch
    padded = run_entropy(tiny_model, tmp_path, "padded", batch_tokens=400)
    for other in (chunked, single, padded):
        assert other.keys() == base.keys()
        for idx in base:
            assert other[idx] == pytest.approx(base[idx], abs=1e-5)


def test_shards_merge_to_the_whole(sharp, tmp_path):
    tiny_model = sharp
    whole = run_entropy(tiny_model, tmp_path, "whole")
    s0 = run_entropy(tiny_model, tmp_path, "s0", shard={"index": 0, "count": 2})
    s1 = run_entropy(tiny_model, tmp_path, "s1", shard={"index": 1, "count": 2}, field="entropy_1")
    assert len(s0) == len(s1) == LIMIT // 2 and not s0.keys() & s1.keys()
    merged = {**s0, **s1}
    assert merged.keys() == whole.keys()
    for idx in whole:
        assert merged[idx] == pytest.approx(whole[idx], abs=1e-5)


def test_cli_end_to_end(tiny_model, tmp_path):
    out = tmp_path / "e.jsonl"
    rc, events = run_kernel(
        "entropy",
        {
            "model_path": tiny_model.model_dir,
            "data_file": tiny_model.test_file,
            "data_format": "gsm8k",
            "output_path": str(out),
            "field": "entropy_1",
            "definition": "repo",
            "limit": 5,
        },
        tmp_path,
    )
    assert rc == 0, events
    assert events[0]["type"] == "progress" and events[0]["done"] == 0 and events[0]["unit"] == "samples"
    result = events[-1]
    assert result["type"] == "result" and result["outputs"]["entropy"] == str(out)
    assert result["metrics"]["samples"] == 5 and result["metrics"]["tokens"] > 0
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["idx"] for r in rows] == [0, 1, 2, 3, 4] and all(set(r) == {"idx", "entropy_1"} for r in rows)
    assert not list(tmp_path.glob("*.tmp*"))
