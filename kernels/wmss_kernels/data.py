"""Training records: the `messages` format of the original pipeline and GSM8K question/answer.

A record's *position* (the 0-based index into the list `read_records` returns, i.e. the rank of
its non-empty line) is what index files such as the resampled training set refer to.
"""

import json
import os
import re
import stat
from dataclasses import dataclass

from .protocol import InvalidInput


@dataclass
class Record:
    idx: int
    prompt: str
    completion: str
    line: int  # 1-based line number in the file, for error messages


# The input limits, with the same defaults and environment variables as the TypeScript readers
# (activities/store/inputFiles.ts; a unit test keeps MAX_LINE_BYTES equal, docs/input-limits.md
# says why these values). The kernel inherits the worker's environment, so one setting moves both.
# A 50 MB line cost 16 GB of memory once tokenized: the line limit is what stops that.
MAX_LINE_BYTES = 1 << 20
MAX_TEXT_FILE_BYTES = 16 << 30
MAX_JSON_FILE_BYTES = 256 << 20
MAX_RECORDS = 10_000_000
LIMIT_ENV = {
    "line": ("WMSS_MAX_LINE_BYTES", MAX_LINE_BYTES),
    "text": ("WMSS_MAX_TEXT_FILE_BYTES", MAX_TEXT_FILE_BYTES),
    "json": ("WMSS_MAX_JSON_FILE_BYTES", MAX_JSON_FILE_BYTES),
    "records": ("WMSS_MAX_RECORDS", MAX_RECORDS),
}

_UTF8_BOM = b"\xef\xbb\xbf"
# A blank line holds only JSON whitespace other than the newline (jsonl.ts skips the same lines).
_BLANK = b" \t\r"


def _no_constant(name):
    raise ValueError(f"{name} is not valid JSON (NaN and Infinity are not JSON numbers)")


def loads_strict(text: str):
    """json.loads without Python's NaN/Infinity extension, so that Python and JSON.parse (the
    TypeScript readers) accept exactly the same texts."""
    return json.loads(text, parse_constant=_no_constant)


def limit(kind: str) -> tuple[int, str]:
    """The limit in force and its variable: the environment's value when set, else the default."""
    name, default = LIMIT_ENV[kind]
    raw = os.environ.get(name, "")
    if raw == "":
        return default, name
    try:
        value = int(raw)
    except ValueError:
        value = 0
    if value <= 0:
        raise InvalidInput(f"{name}={raw!r}: expected a positive integer", field=name)
    return value, name


def _kind_of(mode: int) -> str:
    for test, words in (
        (stat.S_ISDIR, "a directory"),
        (stat.S_ISCHR, "a character device"),
        (stat.S_ISBLK, "a block device"),
        (stat.S_ISFIFO, "a FIFO (named pipe)"),
        (stat.S_ISSOCK, "a socket"),
    ):
        if test(mode):
            return words
    return "not a regular file"


def open_input(path: str, what: str, size_kind: str):
    """Open an input for binary reading after checking, on the open descriptor, that it is a regular
    file within the size limit of its kind: /dev/zero or a FIFO would never end, a sparse 1 TB file
    would take hours. O_NONBLOCK: opening a FIFO must not wait for a writer."""
    refused = "not a regular file: refused before reading (an input must be a file of finite size)"
    try:
        # stat first, so a device is not even opened; fstat below closes the race with a swap
        mode = os.stat(path).st_mode
        if not stat.S_ISREG(mode):
            raise InvalidInput(f"is {_kind_of(mode)}, {refused}", file=path)
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    except OSError as e:
        raise InvalidInput(f"cannot read {what}: {e.strerror or e}", file=path)
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise InvalidInput(f"is {_kind_of(st.st_mode)}, {refused}", file=path)
        max_bytes, name = limit(size_kind)
        if st.st_size > max_bytes:
            raise InvalidInput(f"is {st.st_size} bytes, over the limit of {max_bytes} bytes ({name})", file=path)
        os.set_blocking(fd, True)
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


def _read_bytes(path: str, what: str) -> bytes:
    with open_input(path, what, "json") as f:
        data = f.read()
    # a UTF-8 byte-order mark at the start of the file is not part of line 1
    return data[len(_UTF8_BOM) :] if data.startswith(_UTF8_BOM) else data


def raw_lines(path: str, what: str = "data file"):
    """Yields (line_number, bytes without the newline) of a JSONL input, never holding more than one
    line of at most the line limit: a longer line is InvalidInput naming it, found after reading at
    most limit + 4 of its bytes. Like bytes.split(b"\n"): a file ending in a newline ends in an
    empty line."""
    max_line, name = limit("line")
    with open_input(path, what, "text") as f:
        n = 0
        while True:
            n += 1
            # +4: room for the newline and a byte-order mark, so a short read without a newline is the end
            raw = f.readline(max_line + 4)
            if n == 1 and raw.startswith(_UTF8_BOM):
                raw = raw[len(_UTF8_BOM) :]
            ended = raw.endswith(b"\n")
            if ended:
                raw = raw[:-1]
            if len(raw) > max_line:
                raise InvalidInput(f"line longer than {max_line} bytes ({name})", file=path, line=n)
            yield n, raw
            if not ended:
                return


def iter_json_lines(path: str):
    """Yields (line_number, object) for every non-blank line; bad UTF-8/JSON, an over-long line,
    too many records or a line that is not an object → InvalidInput naming the line."""
    max_records, records_name = limit("records")
    records = 0
    for n, raw in raw_lines(path):
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as e:
            hint = ""
            if n == 1 and raw[:2] in (b"\xff\xfe", b"\xfe\xff"):
                hint = ": the file starts with a UTF-16 byte-order mark; convert it to UTF-8"
            raise InvalidInput(f"invalid UTF-8 at byte {e.start}{hint}", file=path, line=n)
        if not raw.strip(_BLANK):
            continue
        records += 1
        if records > max_records:
            raise InvalidInput(f"more than {max_records} records ({records_name})", file=path, line=n)
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
    return [n for n, raw in raw_lines(path) if raw.strip(_BLANK)]


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
            raise InvalidInput("expected a list" if "messages" in obj else "missing", field="messages", **where)
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
