"""Job files: one JSON object per run, validated against the verb's JSON Schema.

The schemas are in job_schema.json, generated from the zod job schemas of the TypeScript side
(pipeline/kernelJobs.ts, `npm run readme`), so both languages check the same fields. Unknown keys,
missing required keys, wrong types and values outside their range or choices are InvalidInput
naming the job file and the key. An absent field takes the schema's default, else None: the
kernels hold no defaults of their own.

Only the part of JSON Schema that the zod schemas produce is understood (KEYWORDS); a schema
using any other keyword is refused rather than half-checked.
"""

import copy
import functools
import json
import math
import types
from pathlib import Path

from .protocol import InvalidInput

CONTRACT_FILE = Path(__file__).with_name("job_schema.json")

KEYWORDS = {
    "$schema",
    "type",
    "properties",
    "required",
    "additionalProperties",
    "items",
    "anyOf",
    "enum",
    "default",
    "description",
    "minimum",
    "maximum",
    "exclusiveMinimum",
    "exclusiveMaximum",
}

_TYPE_NAMES = {
    str: "string",
    int: "integer",
    float: "number",
    bool: "boolean",
    dict: "object",
    list: "array",
    type(None): "null",
}


@functools.cache
def contract() -> dict:
    """job_schema.json: {"kernelVersion", "architectureKeys", "jobs": {verb: JSON Schema}}."""
    return json.loads(CONTRACT_FILE.read_text(encoding="utf-8"))


def job_schema(verb: str) -> dict:
    return contract()["jobs"][verb]


class Mismatch(ValueError):
    """A value that does not match its schema; `field` is where (`datasets[1].name`), or None."""

    def __init__(self, message, field=None):
        super().__init__(message)
        self.message, self.field = message, field


def _name(value) -> str:
    return _TYPE_NAMES.get(type(value), type(value).__name__)


def _is(value, type_name) -> bool:
    if type_name == "null":
        return value is None
    if isinstance(value, bool):  # a subclass of int in Python, not a number in JSON Schema
        return type_name == "boolean"
    if type_name == "integer":
        return isinstance(value, int)
    if type_name == "number":
        return isinstance(value, (int, float)) and math.isfinite(value)
    return isinstance(value, {"string": str, "boolean": bool, "object": dict, "array": list}[type_name])


def _types(schema) -> list:
    t = schema.get("type")
    return t if isinstance(t, list) else [t] if t else []


def check(value, schema, field=None):
    """`value` as the kernel uses it (numbers as float), or Mismatch saying what was expected."""
    unknown = set(schema) - KEYWORDS
    if unknown:
        raise ValueError(f"job schema of {field or 'the job'} uses unsupported keywords {sorted(unknown)}")
    if "anyOf" in schema:
        for branch in schema["anyOf"]:
            if any(_is(value, t) for t in _types(branch)):
                return check(value, branch, field)
        names = " or ".join(t for branch in schema["anyOf"] for t in _types(branch))
        raise Mismatch(f"expected {names}, got {_name(value)} {json.dumps(value)[:60]}", field)
    kinds = _types(schema)
    if kinds and not any(_is(value, t) for t in kinds):
        raise Mismatch(f"expected {' or '.join(kinds)}, got {_name(value)} {json.dumps(value)[:60]}", field)
    if value is None:
        return None
    if "enum" in schema and value not in schema["enum"]:
        raise Mismatch(f"expected one of {schema['enum']}, got {json.dumps(value)}", field)
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        _check_range(value, schema, field)
        if "number" in kinds:
            value = float(value)
    if isinstance(value, dict) and "properties" in schema:
        return _check_object(value, schema, field)
    if isinstance(value, list) and "items" in schema:
        return [check(v, schema["items"], f"{field or ''}[{i}]") for i, v in enumerate(value)]
    return value


def _check_range(value, schema, field):
    for key, ok, words in (
        ("minimum", lambda b: value >= b, ">="),
        ("maximum", lambda b: value <= b, "<="),
        ("exclusiveMinimum", lambda b: value > b, ">"),
        ("exclusiveMaximum", lambda b: value < b, "<"),
    ):
        if key in schema and not ok(schema[key]):
            raise Mismatch(f"must be {words} {schema[key]}, got {json.dumps(value)}", field)


def _check_object(raw, schema, field=None) -> dict:
    """Every property of `schema`: the given value checked, else its default, else None."""
    props = schema["properties"]
    where = (lambda key: f"{field}.{key}") if field else (lambda key: key)
    if schema.get("additionalProperties") is False:
        for key in raw:
            if key not in props:
                raise Mismatch("unknown key", where(key))
    out = {}
    for key, prop in props.items():
        if key in raw:
            out[key] = check(raw[key], prop, where(key))
        elif key in schema.get("required", ()):
            raise Mismatch("missing required key", where(key))
        else:
            out[key] = check(copy.deepcopy(prop["default"]), prop, where(key)) if "default" in prop else None
    return out


def load_job(path: str, schema: dict) -> types.SimpleNamespace:
    """The job file at `path` checked against `schema` (job_schema(verb)), as attributes."""
    try:
        with open(path, "rb") as f:
            raw = json.loads(f.read().decode("utf-8"))
    except OSError as e:
        raise InvalidInput(f"cannot read job file: {e.strerror or e}", file=path)
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise InvalidInput(f"job file is not valid JSON: {e}", file=path)
    if not isinstance(raw, dict):
        raise InvalidInput("job file must hold a JSON object", file=path)
    try:
        values = _check_object(raw, schema)
    except Mismatch as e:
        raise InvalidInput(e.message, file=path, field=e.field)
    job = types.SimpleNamespace(**values)
    job._path = path  # lets verbs name the job file in their own validation errors
    return job
