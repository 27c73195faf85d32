"""The eval sets of step 7: job entries validated, rows read with the original's field rules.

A row's question is the first present, non-blank field of QUESTION_KEYS, its answer the first of
ANSWER_KEYS (a `reward_model.ground_truth` with a `prompt` wins, as in the original's OPD rows); a
chat-style prompt contributes its single user turn. A row without either is an error naming the
file, the row and the field: rows are never dropped from the denominator. docs/evaluation.md.
"""

import hashlib
import json
import re

from .data import gsm8k_final, iter_json_lines, open_input, read_json_list
from .jobs import Mismatch, check, job_schema
from .protocol import InvalidInput

QUESTION_KEYS = ("question", "instruction", "problem", "input", "original_text", "prompt")
ANSWER_KEYS = ("answer", "target", "label", "solution", "output", "ans")


def check_datasets(raw, job_path):
    """The `datasets` entries checked against the job schema's (field names like datasets[1].path),
    then what a schema cannot say: plain, unique set names."""
    if not isinstance(raw, list) or not raw:
        raise InvalidInput("expected a non-empty list", file=job_path, field="datasets")
    item = job_schema("evaluate")["properties"]["datasets"]["items"]
    out = []
    for i, entry in enumerate(raw):
        where = f"datasets[{i}]"
        try:
            values = check(entry, item, where)
        except Mismatch as e:
            raise InvalidInput(e.message, file=job_path, field=e.field)
        # each set's results go to <output_dir>/<name>/: a plain, unique directory name
        if not re.fullmatch(r"[A-Za-z0-9_.-]+", values["name"]) or values["name"] in (".", "..", "summary.json"):
            raise InvalidInput("must be a plain file name ([A-Za-z0-9_.-])", file=job_path, field=f"{where}.name")
        if values["name"] in {d["name"] for d in out}:
            raise InvalidInput("duplicate dataset name", file=job_path, field=f"{where}.name")
        out.append(values)
    return out


def file_sha256(path: str) -> str:
    digest = hashlib.sha256()
    with open_input(path, "dataset", "json") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _present(row, keys):
    """(key, value) of the first key whose value is not null and not a blank string."""
    for key in keys:
        value = row.get(key)
        if value is not None and not (isinstance(value, str) and not value.strip()):
            return key, value
    return None, None


def _json_type(value) -> str:
    return {dict: "an object", list: "a list", bool: "a boolean"}.get(type(value), type(value).__name__)


def _user_turn(prompt, where):
    """A chat-style prompt (list of {role, content}): its one user turn."""
    users = [m.get("content") for m in prompt if isinstance(m, dict) and m.get("role", "user") == "user"]
    if len(users) != 1 or not isinstance(users[0], str):
        raise InvalidInput(
            f"no question: the chat prompt needs exactly one user turn with text, has {len(users)}",
            field="prompt",
            **where,
        )
    return users[0]


def _question_and_answer(row, fmt, where):
    if fmt == "gsm8k":  # GSM8K's own JSONL: question, and the answer after "####"
        for key in ("question", "answer"):
            if not isinstance(row.get(key), str):
                raise InvalidInput(
                    f"no {key} (looked for {key}{', not a string' if key in row else ''})", field=key, **where
                )
        if "####" not in row["answer"]:
            raise InvalidInput("expected a final '#### <answer>' line", field="answer", **where)
        return row["question"], gsm8k_final(row["answer"])
    reward = row.get("reward_model")
    if isinstance(reward, str):
        try:
            reward = json.loads(reward)
        except json.JSONDecodeError:
            reward = None
    reward = reward if isinstance(reward, dict) else None
    if reward is not None and row.get("prompt") is not None:
        q_key, question = "prompt", row["prompt"]
    else:
        q_key, question = _present(row, QUESTION_KEYS)
    a_key, answer = ("reward_model.ground_truth", reward.get("ground_truth")) if reward else (None, None)
    if answer is None:
        a_key, answer = _present(row, ANSWER_KEYS)
    if question is None:
        raise InvalidInput(f"no question (looked for {', '.join(QUESTION_KEYS)})", field="question", **where)
    if answer is None:
        raise InvalidInput(f"no answer (looked for {', '.join(ANSWER_KEYS)})", field="answer", **where)
    if isinstance(question, list):
        question = _user_turn(question, where)
    if not isinstance(question, str):
        raise InvalidInput(f"no question: expected a string, got {_json_type(question)}", field=q_key, **where)
    if isinstance(answer, (dict, list)):
        raise InvalidInput(f"no answer: expected a string or number, got {_json_type(answer)}", field=a_key, **where)
    answer = str(answer)
    if "####" in answer:  # a GSM8K-style solution in a json/jsonl set: its final answer
        answer = gsm8k_final(answer)
    return question, answer


def _checked_row(row, fmt, where):
    if not isinstance(row, dict):
        raise InvalidInput("expected an object", **where)
    question, answer = _question_and_answer(row, fmt, where)
    question, answer = question.strip(), answer.strip()
    for what, text in (("question", question), ("answer", answer)):
        if not text:
            raise InvalidInput(f"empty {what}", field=what, **where)
    return question, answer


def load_rows(ds) -> list[dict]:
    """[{id, position, line, question, gold}] in file order (the first `limit` rows)."""
    path, fmt = ds["path"], ds["format"]
    if ds.get("sha256"):
        actual = file_sha256(path)
        if actual != ds["sha256"]:
            raise InvalidInput(
                f"dataset '{ds['name']}' has SHA-256 {actual}, the bundled set is {ds['sha256']}: the file was changed",
                file=path,
                field="sha256",
            )
    if fmt == "json":  # rows numbered from 1, reported as "line"
        raw = read_json_list(path)
        entries = [(i + 1, row) for i, row in enumerate(raw)]
    else:
        entries = list(iter_json_lines(path))
    rows = []
    for n, row in entries:
        try:
            question, answer = _checked_row(row, fmt, dict(file=path, line=n))
        except InvalidInput as e:
            if fmt != "json":
                raise
            # "line" of a JSON list is the row's number: say so
            raise InvalidInput(f"{e.reason} (row {n} of the JSON list)", file=path, line=n, field=e.field)
        position = len(rows)
        row_id = row.get("unique_id", row.get("id", position))
        rows.append({"id": str(row_id), "position": position, "line": n, "question": question, "gold": answer})
    if not rows:
        raise InvalidInput(f"dataset '{ds['name']}' has no rows", file=path)
    if ds["expected_rows"] is not None and len(rows) != ds["expected_rows"]:
        raise InvalidInput(
            f"dataset '{ds['name']}' has {len(rows)} rows, expected {ds['expected_rows']}",
            file=path,
            field="expected_rows",
        )
    return rows if ds["limit"] is None else rows[: ds["limit"]]
