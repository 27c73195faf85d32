"""Loading models and tokenizers from local directories, device and dtype choice."""

import os

import torch

from .protocol import InvalidInput

_WEIGHTS = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin",
            "pytorch_model.bin.index.json")


def pick_device(job) -> torch.device:
    if job.device == "cuda" or (job.device == "auto" and torch.cuda.is_available()):
        if not torch.cuda.is_available():
            raise InvalidInput("device 'cuda' requested but no CUDA device is visible",
                               file=getattr(job, "_path", None), field="device")
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


def load_model(path, device, dtype):
    from transformers import AutoModelForCausalLM

    check_model_dir(path)
    model = AutoModelForCausalLM.from_pretrained(path, dtype=dtype, local_files_only=True)
    return model.to(device).eval()


def load_tokenizer(path):
    if not os.path.isdir(path):
        raise InvalidInput("tokenizer directory does not exist", file=path)
    if not any(os.path.isfile(os.path.join(path, f)) for f in ("tokenizer.json", "tokenizer_config.json")):
        raise InvalidInput("directory has no tokenizer (tokenizer.json / tokenizer_config.json)", file=path)
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(path, local_files_only=True)
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    return tok


def is_oom(exc) -> bool:
    if isinstance(exc, torch.cuda.OutOfMemoryError):
        return True
    return isinstance(exc, RuntimeError) and "out of memory" in str(exc).lower()
