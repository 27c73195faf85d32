"""Training records: the `messages` format of the original pipeline and GSM8K question/answer.

A record's *position* (the 0-based index into the list `read_records` returns, i.e. the rank of
its non-empty line) is what index files such as the resampled training set refer to.
"""

import json
import re
from dataclasses import dataclass

from .protocol import InvalidInput


@dataclass
class Record:
    idx: int
    prompt: str
    completion: str
    line: int  # 1-based line number in the file, for error messages


def iter_json_lines(path: str):
    """Yields (line_number, object) for every non-empty line; bad UTF-8/JSON → InvalidInput."""
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as e:
        raise InvalidInput(f"cannot read data file: {e.strerror or e}", file=path)
    for n, raw in enumerate(data.split(b"\n"), start=1):
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as e:
            raise InvalidInput(f"invalid UTF-8 at byte {e.start}", file=path, line=n)
        if not text.strip():
            continue
        try:
            obj = json.loads(text)
        except json.JSONDecodeError as e:
            raise InvalidInput(f"invalid JSON: {e.msg} at column {e.colno}", file=path, line=n)
        if not isinstance(obj, dict):
            raise InvalidInput("expected a JSON object", file=path, line=n)
        yield n, obj


def line_positions(path: str) -> list[int]:
    """1-based line numbers of the non-empty lines: position i of an index file is line_positions[i]."""
    with open(path, "rb") as f:
        return [n for n, raw in enumerate(f.read().split(b"\n"), start=1) if raw.strip()]


def read_records(path: str, fmt: str) -> list[Record]:
    if fmt == "messages":
        return _read_messages(path)
    if fmt == "gsm8k":
        return _read_gsm8k(path)
    raise InvalidInput(f"unknown data format {fmt!r}", field="data_format")


def _read_messages(path):
    records, seen = [], {}
    for n, obj in iter_json_lines(path):
        where = dict(file=path, line=n)
        idx = obj.get("idx")
        if idx is None:
            raise InvalidInput("missing (every record needs an integer idx)", field="idx", **where)
        if isinstance(idx, bool) or not isinstance(idx, int):
            raise InvalidInput(f"expected an integer, got {json.dumps(idx)[:40]}", field="idx", **where)
        if idx in seen:
            raise InvalidInput(f"duplicate idx {idx} (first on line {seen[idx]})", field="idx", **where)
        seen[idx] = n
        messages = obj.get("messages")
        if not isinstance(messages, list):
            raise InvalidInput("expected a list" if "messages" in obj else "missing",
                               field="messages", **where)
        turns = {}
        for i, m in enumerate(messages):
            if not isinstance(m, dict) or not isinstance(m.get("role"), str):
                raise InvalidInput("expected an object with a string 'role'", field=f"messages[{i}]", **where)
            if m["role"] in ("user", "assistant") and m["role"] not in turns:
                if not isinstance(m.get("content"), str):
                    raise InvalidInput("expected a string", field=f"messages[{i}].content", **where)
                turns[m["role"]] = m["content"].strip()
        for role in ("user", "assistant"):
            if role not in turns:
                raise InvalidInput(f"no {role} turn", field="messages", **where)
        records.append(Record(idx, turns["user"], turns["assistant"], n))
    return records


_CALC = re.compile(r"<<[^>]*>>")


def gsm8k_final(answer: str) -> str:
    """The gold answer of a GSM8K solution: the text after '####', commas removed."""
    return answer.split("####")[-1].strip().replace(",", "")


def gsm8k_completion(answer: str) -> str:
    """A GSM8K solution as the think/answer text the SFT data uses."""
    reasoning = _CALC.sub("", answer.split("####")[0]).strip()
    return f"<think>{reasoning}</think> <answer>\\boxed{{{gsm8k_final(answer)}}}</answer>"


def _read_gsm8k(path):
    records = []
    for n, obj in iter_json_lines(path):
        where = dict(file=path, line=n)
        for key in ("question", "answer"):
            if not isinstance(obj.get(key), str):
                raise InvalidInput("expected a string" if key in obj else "missing", field=key, **where)
        if "####" not in obj["answer"]:
            raise InvalidInput("expected a final '#### <answer>' line", field="answer", **where)
        records.append(Record(len(records), obj["question"].strip(), gsm8k_completion(obj["answer"]), n))
    return records
