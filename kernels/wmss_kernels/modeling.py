"""Loading models and tokenizers from local directories, device and dtype choice.

A model dir is read before any GPU work, and what is wrong with it is InvalidInput naming the
file (and for JSON the line and column): transformers' own errors name neither, and a generic
exception would be taken for a crash and retried although the same bytes fail the same way.
"""

import contextlib
import json
import os

import torch

from .protocol import InvalidInput

_WEIGHTS = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin", "pytorch_model.bin.index.json")


def pick_device(job) -> torch.device:
    if job.device == "cuda" or (job.device == "auto" and torch.cuda.is_available()):
        if not torch.cuda.is_available():
            raise InvalidInput(
                "device 'cuda' requested but no CUDA device is visible",
                file=getattr(job, "_path", None),
                field="device",
            )
        return torch.device("cuda")
    return torch.device("cpu")


def pick_dtype(job_dtype: str, device) -> torch.dtype:
    if job_dtype == "auto":
        return torch.bfloat16 if torch.device(device).type == "cuda" else torch.float32
    return {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}[job_dtype]


def check_model_dir(path: str):
    if not os.path.isdir(path):
        raise InvalidInput("model directory does not exist", file=path)
    if not os.path.isfile(os.path.join(path, "config.json")):
        raise InvalidInput("model directory has no config.json", file=path)
    if not any(os.path.isfile(os.path.join(path, w)) for w in _WEIGHTS):
        raise InvalidInput(f"model directory has no weights (looked for {', '.join(_WEIGHTS)})", file=path)
    for name in sorted(os.listdir(path)):
        if name.endswith(".json"):
            read_json_file(os.path.join(path, name))
    _check_safetensors(path)


def read_json_file(file):
    """A JSON file of a model dir; invalid JSON is InvalidInput naming the file, line and column."""
    try:
        with open(file, "rb") as f:
            return json.loads(f.read().decode("utf-8"))
    except json.JSONDecodeError as e:
        raise InvalidInput(f"invalid JSON: {e.msg} at column {e.colno}", file=file, line=e.lineno)
    except UnicodeDecodeError as e:
        raise InvalidInput(f"not UTF-8 (byte {e.start})", file=file)
    except OSError as e:
        raise InvalidInput(f"cannot read: {e.strerror or e}", file=file)


def _check_safetensors(path):
    """Open every safetensors file of the dir (header only): a truncated or corrupt one fails
    here naming it, not later inside from_pretrained."""
    from safetensors import safe_open

    index = os.path.join(path, "model.safetensors.index.json")
    if os.path.isfile(index):
        weight_map = read_json_file(index).get("weight_map")
        if not isinstance(weight_map, dict):
            raise InvalidInput("expected an object", file=index, field="weight_map")
        files = sorted(set(weight_map.values()))
    else:
        files = [f for f in ("model.safetensors",) if os.path.isfile(os.path.join(path, f))]
    for name in files:
        file = os.path.join(path, str(name))
        if not os.path.isfile(file):
            raise InvalidInput("missing: the index names this shard", file=file)
        try:
            with safe_open(file, framework="pt") as f:
                f.keys()
        except Exception as e:  # noqa: BLE001 - SafetensorError is not importable by name in every version
            raise InvalidInput(f"not a valid safetensors file: {e}", file=file)


@contextlib.contextmanager
def _loading(path, what):
    """Errors of transformers' loaders that a retry cannot fix become InvalidInput naming the dir;
    out-of-memory and other errors pass through (KernelOutOfMemory, KernelCrashed)."""
    try:
        yield
    except InvalidInput:
        raise
    except json.JSONDecodeError as e:
        raise InvalidInput(f"cannot load the {what}: a JSON file is invalid: {e}", file=path)
    except (ValueError, KeyError, TypeError, OSError) as e:
        if isinstance(e, OSError) and e.errno is not None:
            raise  # a real I/O error (EIO, ENOSPC, ...): __main__ classifies it
        raise InvalidInput(f"cannot load the {what}: {type(e).__name__}: {e}"[:2000], file=path)


def load_model(path, device, dtype):
    from transformers import AutoModelForCausalLM

    check_model_dir(path)
    with _loading(path, "model"):
        model = AutoModelForCausalLM.from_pretrained(path, dtype=dtype, local_files_only=True)
    return model.to(device).eval()


def load_tokenizer(path):
    if not os.path.isdir(path):
        raise InvalidInput("tokenizer directory does not exist", file=path)
    if not any(os.path.isfile(os.path.join(path, f)) for f in ("tokenizer.json", "tokenizer_config.json")):
        raise InvalidInput("directory has no tokenizer (tokenizer.json / tokenizer_config.json)", file=path)
    from transformers import AutoTokenizer

    for name in ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"):
        if os.path.isfile(os.path.join(path, name)):
            read_json_file(os.path.join(path, name))
    with _loading(path, "tokenizer"):
        tok = AutoTokenizer.from_pretrained(path, local_files_only=True)
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    return tok


def is_oom(exc) -> bool:
    if isinstance(exc, torch.cuda.OutOfMemoryError):
        return True
    return isinstance(exc, RuntimeError) and "out of memory" in str(exc).lower()
