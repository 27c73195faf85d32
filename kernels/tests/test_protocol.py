"""Job and data validation: every invalid input is exit code 2 with an error naming file, line, field."""

import json
import subprocess
import sys

import pytest
from conftest import KERNELS_DIR, run_kernel
from wmss_kernels.__main__ import main
from wmss_kernels.data import line_positions, read_records
from wmss_kernels.jobs import job_schema, load_job
from wmss_kernels.modeling import check_model_dir, load_tokenizer
from wmss_kernels.protocol import InvalidInput, OutOfMemory, Progress, Terminated, emit

GOOD_JOB = {
    "log_file": "k.log",
    "model_path": "m",
    "data_file": "d.jsonl",
    "data_format": "messages",
    "output_path": "o.jsonl",
    "field": "entropy_0",
}


def error_lines(capsys):
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert len(lines) == 1 and lines[0]["type"] == "error"
    return lines[0]


@pytest.mark.parametrize(
    "change, field, words",
    [
        ({"oops": 1}, "oops", "unknown key"),
        ({"batch_tokens": True}, "batch_tokens", "expected integer"),  # bool is not an int
        ({"batch_tokens": "8"}, "batch_tokens", "expected integer"),
        ({"limit": 1.5}, "limit", "expected integer or null"),
        ({"definition": "other"}, "definition", "expected one of"),
        ({"model_path": None}, "model_path", "expected string"),
        ({"seed": 1.0}, "seed", "expected integer"),
        ({"device": "tpu"}, "device", "expected one of"),
    ],
)
def test_invalid_job(tmp_path, capsys, change, field, words):
    path = tmp_path / "job.json"
    path.write_text(json.dumps({**GOOD_JOB, **change}))
    assert main(["entropy", "--job", str(path)]) == 2
    err = error_lines(capsys)
    assert err["error_type"] == "InvalidInput" and err["field"] == field and err["file"] == str(path)
    assert str(path) in err["message"] and f"'{field}'" in err["message"] and words in err["message"]


@pytest.mark.parametrize("missing", ["log_file", "model_path", "field"])
def test_missing_job_field(tmp_path, capsys, missing):
    path = tmp_path / "job.json"
    path.write_text(json.dumps({k: v for k, v in GOOD_JOB.items() if k != missing}))
    assert main(["entropy", "--job", str(path)]) == 2
    err = error_lines(capsys)
    assert err["field"] == missing and "missing" in err["message"] and str(path) in err["message"]


def test_unreadable_or_bad_job_file(tmp_path, capsys):
    assert main(["entropy", "--job", str(tmp_path / "nope.json")]) == 2
    assert "nope.json" in error_lines(capsys)["message"]
    (tmp_path / "bad.json").write_text("{not json")
    assert main(["entropy", "--job", str(tmp_path / "bad.json")]) == 2
    assert "bad.json" in error_lines(capsys)["message"]


def test_job_defaults_and_types(tmp_path):
    path = tmp_path / "job.json"
    path.write_text(json.dumps({"log_file": "x", "lr": 1, "extra": {"a": 1}, "n": None}))
    schema = {
        "type": "object",
        "additionalProperties": False,
        "required": ["log_file", "lr"],
        "properties": {
            "log_file": {"type": "string"},
            "lr": {"type": "number"},
            "extra": {"anyOf": [{"type": "object", "properties": {"a": {"type": "integer"}}}, {"type": "null"}]},
            "n": {"anyOf": [{"type": "integer"}, {"type": "null"}]},
            "k": {"type": "array", "items": {"type": "integer"}, "default": []},
            "device": {"type": "string", "enum": ["auto", "cpu"], "default": "auto"},
        },
    }
    job = load_job(str(path), schema)
    assert job.lr == 1.0 and isinstance(job.lr, float) and job.extra == {"a": 1} and job.n is None
    assert job.k == [] and job.device == "auto"


def write_lines(tmp_path, lines, raw=None):
    path = tmp_path / "data.jsonl"
    if raw is not None:
        path.write_bytes(raw)
    else:
        path.write_text("\n".join(line if isinstance(line, str) else json.dumps(line) for line in lines) + "\n")
    return path


def rec(idx, user="q", assistant="a"):
    msgs = [{"role": "user", "content": user}] if user is not None else []
    msgs += [{"role": "assistant", "content": assistant}] if assistant is not None else []
    return {"idx": idx, "messages": msgs}


@pytest.mark.parametrize(
    "bad, field",
    [
        ("{not json", None),
        ("[1, 2]", None),
        ({"idx": 5}, "messages"),
        ({"idx": 5, "messages": "hi"}, "messages"),
        ({"messages": rec(0)["messages"]}, "idx"),
        ({"idx": "5", "messages": rec(0)["messages"]}, "idx"),
        (rec(0), "idx"),  # duplicate of line 1
        (rec(5, assistant=None), "messages"),  # no assistant turn
        (rec(5, user=None), "messages"),  # no user turn
        ({"idx": 5, "messages": [{"role": "user", "content": ["x"]}]}, "messages[0].content"),
    ],
)
def test_invalid_messages_file(tmp_path, bad, field):
    # the bad record sits on line 3, after an empty line 2 (empty lines still count)
    path = write_lines(tmp_path, [rec(0), "", bad, rec(9)])
    with pytest.raises(InvalidInput) as e:
        read_records(str(path), "messages")
    err = e.value
    assert err.exit_code == 2 and err.file == str(path) and err.line == 3 and err.field == field
    assert f"{path} line 3" in err.message
    if field:
        assert f"'{field}'" in err.message


def test_invalid_utf8_and_gsm8k(tmp_path):
    path = write_lines(tmp_path, None, raw=json.dumps(rec(0)).encode() + b'\n{"idx": "\xff"}\n')
    with pytest.raises(InvalidInput, match="line 2: invalid UTF-8"):
        read_records(str(path), "messages")
    path = write_lines(tmp_path, [{"question": "q", "answer": "4\n#### 4"}, {"question": "q"}])
    with pytest.raises(InvalidInput, match="line 2: field 'answer': missing"):
        read_records(str(path), "gsm8k")


def test_records_and_positions(tmp_path):
    path = write_lines(tmp_path, [rec(7, " hi ", " yes "), "", rec(3)])
    records = read_records(str(path), "messages")
    assert [(r.idx, r.prompt, r.completion, r.line) for r in records] == [(7, "hi", "yes", 1), (3, "q", "a", 3)]
    assert line_positions(str(path)) == [1, 3]
    path = write_lines(tmp_path, [{"question": "Q ", "answer": "He has 2+3=<<2+3=5>>5 cats.\n#### 1,005"}])
    (r,) = read_records(str(path), "gsm8k")
    assert (r.idx, r.prompt) == (0, "Q")
    assert r.completion == "<think>He has 2+3=5 cats.</think> <answer>\\boxed{1005}</answer>"


def test_progress_throttles(capsys):
    p = Progress(10, "steps", every_s=3600)
    for done in range(11):
        p.update(done, loss=0.5)
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [e["done"] for e in lines] == [0, 10] and lines[0] == {
        "type": "progress",
        "done": 0,
        "total": 10,
        "unit": "steps",
        "loss": 0.5,
    }
    emit("progress", done=1, total=2, unit="steps", loss=float("nan"))
    assert json.loads(capsys.readouterr().out)["loss"] is None  # NaN is not JSON


def test_cli_usage_errors(tmp_path):
    env_cmd = [sys.executable, "-m", "wmss_kernels"]
    for args in (["frobnicate", "--job", "x.json"], ["entropy"], []):
        proc = subprocess.run(
            env_cmd + args,
            cwd=tmp_path,
            capture_output=True,
            text=True,
            env={"PYTHONPATH": str(KERNELS_DIR), "PATH": "/usr/bin:/bin"},
        )
        assert proc.returncode == 2
        (line,) = proc.stdout.splitlines()
        assert json.loads(line)["error_type"] == "InvalidInput"


def test_cli_invalid_job(tmp_path):
    rc, events = run_kernel("entropy", {**GOOD_JOB, "batch_tokens": False}, tmp_path)
    assert rc == 2 and [e["type"] for e in events] == ["error"] and events[0]["field"] == "batch_tokens"


def test_invalid_data_file_through_main(tmp_path, capsys, monkeypatch):
    from wmss_kernels import __main__ as entry

    monkeypatch.setattr(entry, "_setup_logging", lambda log_file: None)  # keep pytest's stdout
    data = write_lines(tmp_path, [rec(0), rec(1), rec(1)])
    job = tmp_path / "job.json"
    job.write_text(json.dumps({**GOOD_JOB, "data_file": str(data)}))
    assert main(["entropy", "--job", str(job)]) == 2
    err = error_lines(capsys)
    assert (err["file"], err["line"], err["field"]) == (str(data), 3, "idx")
    assert f"{data} line 3: field 'idx': duplicate idx 1 (first on line 2)" == err["message"]


def test_model_dir_checks(tmp_path):
    with pytest.raises(InvalidInput, match="config.json") as e:
        check_model_dir(str(tmp_path))
    assert e.value.file == str(tmp_path)
    (tmp_path / "config.json").write_text("{}")
    with pytest.raises(InvalidInput, match="no weights"):
        check_model_dir(str(tmp_path))
    with pytest.raises(InvalidInput, match="no tokenizer"):
        load_tokenizer(str(tmp_path))


def fake_schema(properties, required=()):
    """A verb's schema for a test verb: the fields every verb has, plus `properties`."""
    common = {
        k: v for k, v in job_schema("entropy")["properties"].items() if k in ("log_file", "device", "seed", "threads")
    }
    return {"type": "object", "properties": {**common, **properties}, "required": ["log_file", *required]}


@pytest.mark.parametrize(
    "exc, code, error_type",
    [
        (RuntimeError("boom"), 1, "KernelCrashed"),
        (RuntimeError("CUDA out of memory. Tried to allocate 2 GiB"), 3, "KernelOutOfMemory"),
        (Terminated(), 4, "KernelTerminated"),
        (OutOfMemory("simulated"), 3, "KernelOutOfMemory"),
    ],
)
def test_exceptions_map_to_exit_codes(tmp_path, capsys, monkeypatch, exc, code, error_type):
    import types

    from wmss_kernels import __main__ as entry

    def run(job):
        raise exc

    monkeypatch.setitem(sys.modules, "wmss_kernels._fake", types.SimpleNamespace(run=run))
    monkeypatch.setitem(entry.VERBS, "fake", "_fake")
    monkeypatch.setattr(entry, "job_schema", lambda verb: fake_schema({}))
    monkeypatch.setattr(entry, "_setup_logging", lambda log_file: None)  # keep pytest's stdout
    (tmp_path / "job.json").write_text(json.dumps({"log_file": str(tmp_path / "log")}))
    assert main(["fake", "--job", str(tmp_path / "job.json")]) == code
    assert error_lines(capsys)["error_type"] == error_type


def test_result_line(tmp_path, capsys, monkeypatch):
    import types

    from wmss_kernels import __main__ as entry

    module = types.SimpleNamespace(run=lambda job: {"outputs": {"x": "/a"}, "metrics": {"n": job.n}})
    monkeypatch.setitem(sys.modules, "wmss_kernels._fake", module)
    monkeypatch.setitem(entry.VERBS, "fake", "_fake")
    monkeypatch.setattr(entry, "job_schema", lambda verb: fake_schema({"n": {"type": "integer"}}, ["n"]))
    monkeypatch.setattr(entry, "_setup_logging", lambda log_file: None)
    (tmp_path / "job.json").write_text(json.dumps({"log_file": "l", "n": 3}))
    assert main(["fake", "--job", str(tmp_path / "job.json")]) == 0
    assert json.loads(capsys.readouterr().out) == {"type": "result", "outputs": {"x": "/a"}, "metrics": {"n": 3}}


def test_emit_after_the_worker_is_gone(tmp_path):
    """A worker killed alone closes the kernel's stdout: protocol lines then go to the log, and the
    kernel carries on (e.g. saving its checkpoint after the parent-death SIGTERM) instead of crashing."""
    log = tmp_path / "k.log"
    code = (
        "import sys, time\n"
        f"sys.path.insert(0, {str(KERNELS_DIR)!r})\n"
        "from wmss_kernels import protocol\n"
        f"log = open({str(log)!r}, 'w')\n"
        "protocol.take_stdout(log)\n"
        "time.sleep(0.3)\n"
        "protocol.emit('checkpoint', path='/x/checkpoint-11', step=11)\n"
        "protocol.emit('progress', done=11, total=40, unit='steps')\n"
        "print('went on', file=log, flush=True)\n"
        "sys.exit(4)\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    proc.stdout.close()  # the reader goes away
    err = proc.stderr.read().decode()
    assert proc.wait() == 4, err
    assert "BrokenPipe" not in err
    text = log.read_text()
    assert "[protocol line not delivered, the worker is gone]" in text and "checkpoint-11" in text
    assert "went on" in text
