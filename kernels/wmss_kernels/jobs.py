"""Job files: one JSON object per run, validated against the verb's FIELDS plus COMMON.

Mirrors the zod schemas on the TypeScript side: unknown keys, missing required keys, wrong types
and values outside `choices` are all InvalidInput naming the job file and the key.
"""

import copy
import json
import types

from .protocol import InvalidInput

REQUIRED = object()


class Field:
    """`type` is a type or a tuple of types (NoneType allowed); float fields also take ints."""

    def __init__(self, type, default=REQUIRED, choices=None):
        self.types = type if isinstance(type, tuple) else (type,)
        self.default = default
        self.choices = choices

    @property
    def required(self) -> bool:
        return self.default is REQUIRED

    def check(self, value):
        """Returns the (possibly converted) value, or raises ValueError saying what was expected."""
        if value is None and (type(None) in self.types or self.default is None):
            return None
        ok = False
        for t in self.types:
            if t is type(None):
                continue
            # bool is a subclass of int in Python but not an integer in JSON schemas
            if isinstance(value, bool) and t is not bool:
                continue
            if t is float and isinstance(value, int):
                value, ok = float(value), True
                break
            if isinstance(value, t):
                ok = True
                break
        if not ok:
            names = " or ".join(_type_name(t) for t in self.types)
            raise ValueError(f"expected {names}, got {_type_name(type(value))} {json.dumps(value)[:60]}")
        if self.choices is not None and value not in self.choices:
            raise ValueError(f"expected one of {list(self.choices)}, got {json.dumps(value)}")
        return value


def _type_name(t) -> str:
    return {str: "string", int: "integer", float: "number", bool: "boolean", dict: "object",
            list: "array", type(None): "null"}.get(t, t.__name__)


COMMON = {
    "log_file": Field(str),
    "device": Field(str, "auto", choices=("auto", "cpu", "cuda")),
    "seed": Field(int, 42),
    "threads": Field((int, type(None)), None),
}


def load_job(path: str, fields: dict) -> types.SimpleNamespace:
    try:
        with open(path, "rb") as f:
            raw = json.loads(f.read().decode("utf-8"))
    except OSError as e:
        raise InvalidInput(f"cannot read job file: {e.strerror or e}", file=path)
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise InvalidInput(f"job file is not valid JSON: {e}", file=path)
    if not isinstance(raw, dict):
        raise InvalidInput("job file must hold a JSON object", file=path)

    spec = {**COMMON, **fields}
    for key in raw:
        if key not in spec:
            raise InvalidInput("unknown key", file=path, field=key)
    values = {}
    for key, field in spec.items():
        if key not in raw:
            if field.required:
                raise InvalidInput("missing required key", file=path, field=key)
            values[key] = copy.deepcopy(field.default)
            continue
        try:
            values[key] = field.check(raw[key])
        except ValueError as e:
            raise InvalidInput(str(e), file=path, field=key)
    job = types.SimpleNamespace(**values)
    job._path = path  # lets verbs name the job file in their own validation errors
    return job
