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


# The longest JSONL line accepted, in bytes: the same limit as the TypeScript reader
# (MAX_LINE_BYTES in activities/store/jsonl.ts; a unit test keeps the two equal).
MAX_LINE_BYTES = 64 << 20

_UTF8_BOM = b"\xef\xbb\xbf"
# A blank line holds only JSON whitespace other than the newline (jsonl.ts skips the same lines).
_BLANK = b" \t\r"


def _no_constant(name):
    raise ValueError(f"{name} is not valid JSON (NaN and Infinity are not JSON numbers)")


def loads_strict(text: str):
    """json.loads without Python's NaN/Infinity extension, so that Python and JSON.parse (the
    TypeScript readers) accept exactly the same texts."""
    return json.loads(text, parse_constant=_no_constant)


def _read_bytes(path: str, what: str) -> bytes:
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as e:
        raise InvalidInput(f"cannot read {what}: {e.strerror or e}", file=path)
    # a UTF-8 byte-order mark at the start of the file is not part of line 1
    return data[len(_UTF8_BOM):] if data.startswith(_UTF8_BOM) else data


def iter_json_lines(path: str):
    """Yields (line_number, object) for every non-blank line; bad UTF-8/JSON, an over-long line
    or a line that is not an object → InvalidInput naming the line."""
    data = _read_bytes(path, "data file")
    for n, raw in enumerate(data.split(b"\n"), start=1):
        if len(raw) > MAX_LINE_BYTES:
            raise InvalidInput(f"line longer than {MAX_LINE_BYTES} bytes", file=path, line=n)
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as e:
            hint = ""
            if n == 1 and raw[:2] in (b"\xff\xfe", b"\xfe\xff"):
                hint = ": the file starts with a UTF-16 byte-order mark; convert it to UTF-8"
            raise InvalidInput(f"invalid UTF-8 at byte {e.start}{hint}", file=path, line=n)
        if not raw.strip(_BLANK):
            continue
        try:
            obj = loads_strict(text)
        except json.JSONDecodeError as e:
            raise InvalidInput(f"invalid JSON: {e.msg} at column {e.colno}", file=path, line=n)
        except ValueError as e:  # NaN / Infinity
            raise InvalidInput(f"invalid JSON: {e}", file=path, line=n)
        if not isinstance(obj, dict):
            raise InvalidInput("expected a JSON object", file=path, line=n)
        yield n, obj


def read_json_list(path: str) -> list:
    """A `json` eval set: one JSON list (after an optional UTF-8 byte-order mark)."""
    data = _read_bytes(path, "dataset")
    try:
        value = loads_strict(data.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as e:  # JSONDecodeError is a ValueError
        raise InvalidInput(f"not a valid JSON file: {e}", file=path)
    if not isinstance(value, list):
        raise InvalidInput("expected a JSON list of objects", file=path)
    return value


def line_positions(path: str) -> list[int]:
    """1-based line numbers of the non-blank lines: position i of an index file is line_positions[i]."""
    with open(path, "rb") as f:
        return [n for n, raw in enumerate(f.read().split(b"\n"), start=1) if raw.strip(_BLANK)]


def read_records(path: str, fmt: str) -> list[Record]:
    if fmt == "messages":
        records = _read_messages(path)
    elif fmt == "gsm8k":
        records = _read_gsm8k(path)
    else:
        raise InvalidInput(f"unknown data format {fmt!r}", field="data_format")
    if not records:
        raise InvalidInput("the data file has no records", file=path)
    return records


# Step 3 (TypeScript) holds idx in float64 columns: beyond 2^53 two idx could compare equal.
MAX_IDX = 2**53 - 1


def _read_messages(path):
    records, seen = [], {}
    for n, obj in iter_json_lines(path):
        where = dict(file=path, line=n)
        idx = obj.get("idx")
        if idx is None:
            raise InvalidInput("missing (every record needs an integer idx)", field="idx", **where)
        if isinstance(idx, float) and idx.is_integer():
            idx = int(idx)  # 3.0: JSON.parse on the TypeScript side cannot tell it from 3 either
        if isinstance(idx, bool) or not isinstance(idx, int):
            raise InvalidInput(f"expected an integer, got {json.dumps(idx)[:40]}", field="idx", **where)
        if not 0 <= idx <= MAX_IDX:
            raise InvalidInput(f"expected an integer in 0..{MAX_IDX}, got {idx}", field="idx", **where)
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
