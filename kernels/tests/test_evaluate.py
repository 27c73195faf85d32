import json

import pytest

from wmss_kernels.evaluate import BUNDLED, check_datasets, load_rows
from wmss_kernels.protocol import InvalidInput
from conftest import run_kernel


def dataset(path, fmt, **extra):
    return check_datasets([{"name": "d", "path": str(path), "format": fmt, **extra}], "job.json")[0]


def test_field_lookup_order_and_gold(tmp_path):
    p = tmp_path / "d.json"
    p.write_text(json.dumps([{"instruction": "I?", "problem": "P?", "target": 5, "solution": "no"},
                             {"question": "Q?", "answer": "x\n#### 1,000"}]))
    rows = load_rows(dataset(p, "json"))
    assert [(r["question"], r["gold"]) for r in rows] == [("I?", "5"), ("Q?", "1000")]


def test_row_missing_a_field_is_an_error(tmp_path):
    p = tmp_path / "d.jsonl"
    p.write_text('{"question": "a", "answer": "1"}\n\n{"question": "b"}\n')
    with pytest.raises(InvalidInput) as e:
        load_rows(dataset(p, "jsonl"))
    assert e.value.exit_code == 2 and e.value.line == 3 and "d.jsonl line 3" in str(e.value)
    assert "answer" in str(e.value)


def test_expected_rows_and_bundled_gsm8k(tmp_path):
    rows = load_rows(dataset("bundled:gsm8k", "gsm8k", expected_rows=1319, limit=2))
    assert len(rows) == 2 and rows[0]["gold"] == "18"
    assert BUNDLED["bundled:gsm8k"].is_file()
    with pytest.raises(InvalidInput, match="1319 rows, expected 1000"):
        load_rows(dataset("bundled:gsm8k", "gsm8k", expected_rows=1000))


def test_dataset_entries_are_validated():
    with pytest.raises(InvalidInput, match=r"datasets\[0\]\.oops"):
        check_datasets([{"name": "d", "path": "p", "format": "json", "oops": 1}], "job.json")
    with pytest.raises(InvalidInput, match=r"datasets\[0\]\.format"):
        check_datasets([{"name": "d", "path": "p", "format": "csv"}], "job.json")


@pytest.mark.parametrize("engine", ["continuous", "batches"])
def test_evaluate_end_to_end(tiny_model, tmp_path, engine):
    extra = tmp_path / "extra.json"
    extra.write_text(json.dumps([{"instruction": "What is 2 + 2?", "target": "4"},
                                 {"question": "What is 9 - 3?", "answer": 6}]))
    out = tmp_path / "results"
    rc, events = run_kernel("evaluate", {
        "model_path": tiny_model.model_dir, "label": "tiny", "output_dir": str(out),
        "datasets": [
            {"name": "tiny_gsm8k", "path": tiny_model.test_file, "format": "gsm8k",
             "max_input_tokens": 256, "max_new_tokens": 8, "limit": 3},
            {"name": "extra", "path": str(extra), "format": "json", "expected_rows": 2,
             "max_input_tokens": 256, "max_new_tokens": 8},
        ],
        "batch_size": 2, "enable_thinking": True, "engine": engine}, tmp_path)
    assert rc == 0, events
    assert {e["type"] for e in events} == {"progress", "result"}
    last = [e for e in events if e["type"] == "progress"][-1]
    assert (last["done"], last["total"]) == (5, 5)
    assert last["detail"].startswith("extra: 2/2 rows · ") and " tokens" in last["detail"]
    result = events[-1]
    assert set(result["outputs"]) == {"tiny_gsm8k", "extra", "summary"}
    assert 0.0 <= result["metrics"]["pass_at_1/tiny_gsm8k"] <= 1.0
    rows = [json.loads(line) for line in (out / "tiny_gsm8k.jsonl").read_text().splitlines()]
    assert len(rows) == 3
    for row in rows:
        assert set(row) == {"id", "question", "ground_truth", "response", "extracted", "correct",
                            "output_tokens", "truncated"}
        assert 1 <= row["output_tokens"] <= 8
    assert [r["ground_truth"] for r in
            map(json.loads, (out / "extra.jsonl").read_text().splitlines())] == ["4", "6"]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["label"] == "tiny" and summary["datasets"]["extra"]["n"] == 2
    assert set(summary["datasets"]["tiny_gsm8k"]) == {"n", "correct", "pass_at_1", "truncated"}


def test_static_cache_generation_equals_dynamic(tiny_model):
    """The static-cache path (fixed rows × width, padding rows) generates the same greedy tokens."""
    import torch

    from wmss_kernels.evaluate import eos_token_ids, generate
    from wmss_kernels.modeling import load_model, load_tokenizer

    tok = load_tokenizer(tiny_model.model_dir)
    model = load_model(tiny_model.model_dir, torch.device("cpu"), torch.float32)
    # sharpen the head so greedy choices are not near-ties that float noise could flip
    with torch.no_grad():
        model.get_output_embeddings().weight.mul_(8)
    prompts = [tok(q)["input_ids"] for q in ("1+2=", "31 + 45 =", "what is 7+8?", "2")]
    eos = eos_token_ids(model, tok)
    dynamic = generate(model, tok, prompts, 12, eos)
    static = generate(model, tok, prompts, 12, eos, static_shape=(6, 64))
    assert [ids for ids, _ in static] == [ids for ids, _ in dynamic]
    assert all(len(ids) > 0 for ids, _ in static)
