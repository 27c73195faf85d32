"""The kernel side of the malformed-input corpus (test/fixtures/bad/cases.json): every training
data case through data.read_records (what entropy, sft and joint read before loading a model) and
every eval set case through evaluate.load_rows. Each must raise one InvalidInput (exit code 2 →
a non-retryable InvalidInput activity failure) naming the same file, line and field as the
TypeScript readers do for the same bytes (test/unit/badInputs.test.ts)."""

import json
import os
from pathlib import Path

import pytest
from wmss_kernels.data import MAX_LINE_BYTES, MAX_TEXT_FILE_BYTES, read_records
from wmss_kernels.evaluate import load_rows
from wmss_kernels.protocol import InvalidInput

ROOT = Path(__file__).resolve().parents[2] / "test" / "fixtures" / "bad"
CASES = json.loads((ROOT / "cases.json").read_text(encoding="utf-8"))["cases"]


def by_kind(kind):
    return [pytest.param(c, id=c["id"]) for c in CASES if c["kind"] == kind]


def input_path(case, tmp_path) -> Path:
    gen = case.get("generate")
    if gen:
        # made here: too big for git, or not a file git can hold (badInputs.test.ts does the same)
        path = tmp_path / "case"
        if gen["kind"] == "huge-line":
            assert gen["bytes"] == MAX_LINE_BYTES + 1
            first = (ROOT / "shared" / "data.jsonl").read_bytes().split(b"\n")[0]
            path.write_bytes(first + b"\n" + b"x" * gen["bytes"] + b"\n")
        elif gen["kind"] == "dev-zero":
            path.symlink_to("/dev/zero")
        elif gen["kind"] == "fifo":
            os.mkfifo(path)
        else:
            assert gen["kind"] == "sparse"
            with open(path, "wb") as f:
                f.truncate(MAX_TEXT_FILE_BYTES + 1)
        return path
    path = ROOT / case["input"]
    assert path.exists() != bool(case.get("missing")), case["id"]
    return path


def check(err: InvalidInput, case, path: Path):
    expect = case["expect"]
    assert err.exit_code == 2 and err.error_type == "InvalidInput"
    file = None if expect["file"] is None else str(path / expect["file"]) if expect["file"] else str(path)
    assert (err.file, err.line, err.field) == (file, expect["line"], expect["field"])
    if file is not None:
        assert err.message.startswith(file + (f" line {expect['line']}" if expect["line"] is not None else ""))
    if expect["field"] is not None:
        assert f"field '{expect['field']}'" in err.message
    for fragment in expect["message"]:
        assert fragment in err.message


def test_the_corpus_has_kernel_cases():
    assert len([c for c in CASES if c["kind"] == "data"]) >= 20
    assert len([c for c in CASES if c["kind"] == "eval"]) >= 10


@pytest.mark.parametrize("case", by_kind("data"))
def test_training_data(case, tmp_path):
    path = input_path(case, tmp_path)
    with pytest.raises(InvalidInput) as e:
        read_records(str(path), case["format"])
    check(e.value, case, path)


@pytest.mark.parametrize("case", by_kind("eval"))
def test_eval_set(case, tmp_path):
    path = input_path(case, tmp_path)
    ds = {
        "name": "bad",
        "path": str(path),
        "format": case["dataset"]["format"],
        "expected_rows": case["dataset"].get("expectedRows"),
        "limit": None,
    }
    with pytest.raises(InvalidInput) as e:
        load_rows(ds)
    check(e.value, case, path)


def test_a_byte_order_mark_at_the_start_is_not_part_of_line_1(tmp_path):
    path = tmp_path / "bom.jsonl"
    path.write_bytes(b"\xef\xbb\xbf" + (ROOT / "shared" / "data.jsonl").read_bytes())
    assert [r.line for r in read_records(str(path), "messages")] == [1, 2, 3, 4]
    data = tmp_path / "bom.json"
    data.write_bytes(b"\xef\xbb\xbf" + json.dumps([{"question": "q", "answer": "1"}]).encode())
    assert (
        load_rows({"name": "b", "path": str(data), "format": "json", "expected_rows": None, "limit": None})[0]["gold"]
        == "1"
    )


def test_an_integral_float_idx_is_the_integer(tmp_path):
    # JSON.parse on the TypeScript side (step 3) cannot tell 3.0 from 3: neither may the kernels
    path = tmp_path / "float-idx.jsonl"
    rec = json.loads((ROOT / "shared" / "data.jsonl").read_text().split("\n")[0])
    path.write_text(json.dumps({**rec, "idx": 3.0}) + "\n")
    (r,) = read_records(str(path), "messages")
    assert r.idx == 3 and isinstance(r.idx, int)


def _rows(n):
    return b"".join(b'{"question": "q%d", "answer": "#### %d"}\n' % (i, i) for i in range(n))


def test_the_limits_come_from_the_workers_environment(tmp_path, monkeypatch):
    path = tmp_path / "d.jsonl"
    row = _rows(1)
    path.write_bytes(row * 3)
    assert len(read_records(str(path), "gsm8k")) == 3
    # a line of exactly the limit passes, one byte more fails naming the line and the variable
    monkeypatch.setenv("WMSS_MAX_LINE_BYTES", str(len(row) - 1))
    assert len(read_records(str(path), "gsm8k")) == 3
    monkeypatch.setenv("WMSS_MAX_LINE_BYTES", str(len(row) - 2))
    with pytest.raises(InvalidInput) as e:
        read_records(str(path), "gsm8k")
    assert (e.value.file, e.value.line) == (str(path), 1) and "WMSS_MAX_LINE_BYTES" in e.value.message
    monkeypatch.delenv("WMSS_MAX_LINE_BYTES")
    monkeypatch.setenv("WMSS_MAX_RECORDS", "2")
    with pytest.raises(InvalidInput) as e:
        read_records(str(path), "gsm8k")
    assert (e.value.line, e.value.exit_code) == (3, 2) and "more than 2 records (WMSS_MAX_RECORDS)" in e.value.message
    monkeypatch.setenv("WMSS_MAX_RECORDS", "2")
    monkeypatch.setenv("WMSS_MAX_TEXT_FILE_BYTES", str(len(row) * 3 - 1))
    with pytest.raises(InvalidInput) as e:
        read_records(str(path), "gsm8k")
    assert e.value.line is None and "WMSS_MAX_TEXT_FILE_BYTES" in e.value.message
    monkeypatch.setenv("WMSS_MAX_RECORDS", "many")
    with pytest.raises(InvalidInput) as e:
        read_records(str(path), "gsm8k")
    assert e.value.field == "WMSS_MAX_RECORDS"


def test_an_over_long_line_is_refused_after_reading_only_the_limit(tmp_path, monkeypatch):
    """The 50 MB line that cost 16 GB: the reader holds at most limit + 4 bytes of it."""
    import tracemalloc

    path = tmp_path / "long.jsonl"
    with open(path, "wb") as f:
        f.write(_rows(1))
        f.write(b"x" * (64 << 20))  # no newline: one 64 MiB line
    tracemalloc.start()
    with pytest.raises(InvalidInput) as e:
        read_records(str(path), "gsm8k")
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert e.value.line == 2 and "line longer than 1048576 bytes" in e.value.message
    assert peak < 8 << 20, peak


def _load_model_dir(path):
    import torch
    from wmss_kernels.modeling import check_model_dir, load_model, load_tokenizer

    check_model_dir(path)
    load_tokenizer(path)
    load_model(path, "cpu", torch.float32)


@pytest.mark.parametrize("case", [c for c in by_kind("model") if c.values[0].get("step") == "snapshot"])
def test_model_dir_through_the_kernel_loaders(case, tmp_path):
    """The model-dir cases of step 4 through what entropy, sft and evaluate load: one InvalidInput
    (non-retryable) naming the dir or a file in it, never a bare exception (KernelCrashed, retried)."""
    path = input_path(case, tmp_path)
    with pytest.raises(InvalidInput) as e:
        _load_model_dir(str(path))
    assert e.value.file is not None and e.value.file.startswith(str(path))
