"""export-onnx: an HF causal LM directory → two ONNX graphs + manifest, for the onnx backend.

  model.onnx             input_ids, attention_mask [batch, seq] → logits [batch, seq, vocab]
                         (no KV cache; entropy scoring, steps 0 and 2)
  model_with_past.onnx   input_ids, attention_mask [batch, past+seq], position_ids [batch, seq],
                         past.<i>.key / past.<i>.value [batch, kv_heads, past, head_dim]
                         → logits, present.<i>.key / present.<i>.value (greedy generation, step 7;
                         the first step feeds a past of length 0)
  manifest.json          names, dtypes and shapes of every input and output, opset, sha256 and
                         size of each graph file, the source model's digest, the validation result
  tokenizer files        tokenizer.json, tokenizer_config.json, generation_config.json (and the
                         chat template) copied beside the graphs: an onnx worker needs nothing else

Both graphs are exported with the TorchScript exporter (dynamo=False), batch and sequence axes
dynamic, in float32, with eager attention and an explicit additive 4D mask (so no mask-building
code of transformers is traced). Before publishing, the graphs are run with onnxruntime (Python)
on a padded batch and compared with the PyTorch logits; a mismatch fails the export. Everything
is written into a temporary sibling directory and renamed into place at the end.
"""

import hashlib
import json
import logging
import os
import shutil
import time

import torch

from .modeling import check_model_dir, load_tokenizer
from .protocol import InvalidInput, KernelError, Progress

FORMAT = "wmss-onnx/1"
NO_CACHE_FILE = "model.onnx"
WITH_PAST_FILE = "model_with_past.onnx"
COPIED_FILES = (
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "generation_config.json",
    "chat_template.jinja",
    "config.json",
)

log = logging.getLogger(__name__)


class ExportValidationFailed(KernelError):
    def __init__(self, message, **where):
        # deterministic: a retry exports the same graph, so it is reported like bad input
        super().__init__("InvalidInput", message, exit_code=2, **where)


def sha256_file(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def model_digest(model_dir: str) -> str:
    """sha256 of the sorted (relative path, file sha256) list of the model directory."""
    entries = []
    for root, dirs, files in os.walk(model_dir):
        dirs.sort()
        for name in sorted(files):
            full = os.path.join(root, name)
            entries.append([os.path.relpath(full, model_dir).replace(os.sep, "/"), sha256_file(full)])
    entries.sort()
    return hashlib.sha256(json.dumps(entries, separators=(",", ":")).encode()).hexdigest()


def additive_mask(attention_mask: torch.Tensor, query_length: int, dtype) -> torch.Tensor:
    """[batch, 1, query, past+query]: 0 where key k is visible to query q, dtype-min elsewhere.

    Query q sits at absolute column past+q; it sees keys k <= past+q whose attention_mask is 1."""
    total = attention_mask.shape[1]
    past = total - query_length
    q = torch.arange(query_length, device=attention_mask.device).unsqueeze(1) + past
    k = torch.arange(total, device=attention_mask.device).unsqueeze(0)
    visible = (k <= q).unsqueeze(0) & attention_mask.bool().unsqueeze(1)  # [batch, query, total]
    zero = torch.zeros((), dtype=dtype)
    low = torch.full((), torch.finfo(dtype).min, dtype=dtype)
    return torch.where(visible, zero, low).unsqueeze(1)


class NoCacheGraph(torch.nn.Module):
    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, input_ids, attention_mask):
        seq = input_ids.shape[1]
        position_ids = torch.arange(seq, device=input_ids.device).unsqueeze(0).expand_as(input_ids)
        mask = additive_mask(attention_mask, seq, torch.float32)
        out = self.model(
            input_ids=input_ids, attention_mask={"full_attention": mask}, position_ids=position_ids, use_cache=False
        )
        return out.logits


class WithPastGraph(torch.nn.Module):
    def __init__(self, model, num_layers):
        super().__init__()
        self.model = model
        self.num_layers = num_layers

    def forward(self, input_ids, attention_mask, position_ids, *past):
        from transformers import DynamicCache

        cache = DynamicCache(config=self.model.config)
        for i, layer in enumerate(cache.layers[: self.num_layers]):
            # set the past directly: update() would concatenate it to an empty 1-D constant,
            # which the traced graph keeps and ONNX's Concat rejects (ranks differ)
            layer.dtype, layer.device, layer.is_initialized = past[2 * i].dtype, past[2 * i].device, True
            layer.keys, layer.values = past[2 * i], past[2 * i + 1]
        mask = additive_mask(attention_mask, input_ids.shape[1], torch.float32)
        out = self.model(
            input_ids=input_ids,
            attention_mask={"full_attention": mask},
            position_ids=position_ids,
            past_key_values=cache,
            use_cache=True,
        )
        presents = []
        for layer in out.past_key_values.layers:
            presents += [layer.keys, layer.values]
        return (out.logits, *presents)


def _io(names, dtypes, shapes):
    return [{"name": n, "dtype": d, "shape": s} for n, d, s in zip(names, dtypes, shapes)]


def export(model_path, output_dir, opset, tolerance, progress=None) -> dict:
    from transformers import AutoModelForCausalLM

    check_model_dir(model_path)
    tok = load_tokenizer(model_path)
    model = AutoModelForCausalLM.from_pretrained(
        model_path, dtype=torch.float32, local_files_only=True, attn_implementation="eager"
    ).eval()
    cfg = model.config.get_text_config(decoder=True)
    if any(t != "full_attention" for t in (getattr(cfg, "layer_types", None) or ["full_attention"])):
        raise InvalidInput(
            "sliding-window attention layers are not supported by the onnx export",
            file=os.path.join(model_path, "config.json"),
            field="layer_types",
        )
    n_layers = cfg.num_hidden_layers
    kv_heads = cfg.num_key_value_heads
    head_dim = getattr(cfg, "head_dim", None) or cfg.hidden_size // cfg.num_attention_heads
    vocab = model.get_output_embeddings().weight.shape[0]

    out_abs = os.path.abspath(output_dir)
    tmp = f"{out_abs}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    os.makedirs(tmp)
    try:
        pad = tok.pad_token_id if tok.pad_token_id is not None else 0
        gen = torch.Generator().manual_seed(0)
        ids = torch.randint(0, min(vocab, len(tok)), (2, 7), generator=gen)
        mask = torch.ones_like(ids)
        ids[1, 5:], mask[1, 5:] = pad, 0  # right padding, as entropy batches have

        no_cache_in = ["input_ids", "attention_mask"]
        with torch.no_grad():
            torch.onnx.export(
                NoCacheGraph(model),
                (ids, mask),
                os.path.join(tmp, NO_CACHE_FILE),
                dynamo=False,
                input_names=no_cache_in,
                output_names=["logits"],
                opset_version=opset,
                dynamic_axes={
                    "input_ids": {0: "batch", 1: "seq"},
                    "attention_mask": {0: "batch", 1: "seq"},
                    "logits": {0: "batch", 1: "seq"},
                },
            )
        if progress:
            progress.update(1)

        past_names = [f"past.{i}.{kv}" for i in range(n_layers) for kv in ("key", "value")]
        present_names = [f"present.{i}.{kv}" for i in range(n_layers) for kv in ("key", "value")]
        # traced with a non-empty past (3) and a query of 2, so no shape is specialised to 0 or 1
        past_len, q_len = 3, 2
        past = [torch.randn(2, kv_heads, past_len, head_dim, generator=gen) for _ in past_names]
        step_ids = ids[:, :q_len]
        step_mask = torch.ones(2, past_len + q_len, dtype=torch.long)
        step_pos = torch.arange(past_len, past_len + q_len).unsqueeze(0).expand(2, -1)
        axes = {
            "input_ids": {0: "batch", 1: "seq"},
            "attention_mask": {0: "batch", 1: "total"},
            "position_ids": {0: "batch", 1: "seq"},
            "logits": {0: "batch", 1: "seq"},
        }
        axes.update({n: {0: "batch", 2: "past"} for n in past_names})
        axes.update({n: {0: "batch", 2: "total"} for n in present_names})
        with torch.no_grad():
            torch.onnx.export(
                WithPastGraph(model, n_layers),
                (step_ids, step_mask, step_pos, *past),
                os.path.join(tmp, WITH_PAST_FILE),
                dynamo=False,
                input_names=["input_ids", "attention_mask", "position_ids", *past_names],
                output_names=["logits", *present_names],
                opset_version=opset,
                dynamic_axes=axes,
            )
        if progress:
            progress.update(2)

        validation = validate(model, tmp, n_layers, kv_heads, head_dim, pad, tolerance)
        if progress:
            progress.update(3)

        for name in COPIED_FILES:
            src = os.path.join(model_path, name)
            if os.path.isfile(src):
                shutil.copyfile(src, os.path.join(tmp, name))
        kv_shape = ["batch", kv_heads, "past", head_dim]
        graphs = {
            "no_cache": {
                "file": NO_CACHE_FILE,
                "inputs": _io(no_cache_in, ["int64", "int64"], [["batch", "seq"], ["batch", "seq"]]),
                "outputs": _io(["logits"], ["float32"], [["batch", "seq", vocab]]),
            },
            "with_past": {
                "file": WITH_PAST_FILE,
                "inputs": _io(
                    ["input_ids", "attention_mask", "position_ids"],
                    ["int64"] * 3,
                    [["batch", "seq"], ["batch", "past+seq"], ["batch", "seq"]],
                )
                + _io(past_names, ["float32"] * len(past_names), [kv_shape] * len(past_names)),
                "outputs": _io(["logits"], ["float32"], [["batch", "seq", vocab]])
                + _io(
                    present_names,
                    ["float32"] * len(present_names),
                    [["batch", kv_heads, "past+seq", head_dim]] * len(present_names),
                ),
            },
        }
        for g in graphs.values():
            path = os.path.join(tmp, g["file"])
            g["sha256"], g["size"] = sha256_file(path), os.path.getsize(path)
        manifest = {
            "format": FORMAT,
            "opset": opset,
            "dtype": "float32",
            "source": {
                "model_path": os.path.abspath(model_path),
                "sha256": model_digest(model_path),
                "architecture": (model.config.architectures or [type(model).__name__])[0],
            },
            "model": {"num_layers": n_layers, "num_kv_heads": kv_heads, "head_dim": head_dim, "vocab_size": vocab},
            "graphs": graphs,
            "validation": validation,
            "exporter": {"torch": torch.__version__, "dynamo": False},
        }
        with open(os.path.join(tmp, "manifest.json"), "w", encoding="utf-8") as f:
            json.dump(manifest, f, indent=2)
        for name in os.listdir(tmp):
            with open(os.path.join(tmp, name), "rb") as f:
                os.fsync(f.fileno())
        if os.path.isdir(out_abs):
            shutil.rmtree(out_abs)
        os.replace(tmp, out_abs)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return manifest


def validate(model, out_dir, n_layers, kv_heads, head_dim, pad, tolerance) -> dict:
    """Both graphs against PyTorch on a padded batch (onnxruntime, CPU); raises on a mismatch."""
    import numpy as np
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = max(1, torch.get_num_threads())
    sessions = {}
    for name in (NO_CACHE_FILE, WITH_PAST_FILE):
        try:
            sessions[name] = ort.InferenceSession(os.path.join(out_dir, name), opts, providers=["CPUExecutionProvider"])
        except Exception as e:  # noqa: BLE001
            raise ExportValidationFailed(f"onnxruntime cannot load the exported graph: {e}", file=name)

    vocab = model.get_output_embeddings().weight.shape[0]
    gen = torch.Generator().manual_seed(1)
    lengths = [11, 6, 1]
    longest = max(lengths)
    ids = torch.full((len(lengths), longest), pad, dtype=torch.long)
    mask = torch.zeros_like(ids)
    for b, n in enumerate(lengths):
        ids[b, :n] = torch.randint(0, vocab, (n,), generator=gen)
        mask[b, :n] = 1
    with torch.no_grad():
        ref = model(input_ids=ids, attention_mask=mask, use_cache=False).logits.numpy()
    got = sessions[NO_CACHE_FILE].run(["logits"], {"input_ids": ids.numpy(), "attention_mask": mask.numpy()})[0]
    scale = max(1.0, float(np.abs(ref).max()))
    valid = mask.numpy().astype(bool)
    no_cache_diff = float(np.abs(got - ref)[valid].max()) / scale

    # generation: left padding, prefill with an empty past, then one token at a time
    left = torch.full_like(ids, pad)
    left_mask = torch.zeros_like(ids)
    for b, n in enumerate(lengths):
        left[b, longest - n :] = ids[b, :n]
        left_mask[b, longest - n :] = 1
    steps = 4
    past_names = [f"past.{i}.{kv}" for i in range(n_layers) for kv in ("key", "value")]
    feed_ids, feed_mask = left.numpy(), left_mask.numpy()
    pos = np.clip(np.cumsum(feed_mask, axis=1) - 1, 0, None)
    pos = np.where(feed_mask == 0, 1, pos)
    past = {n: np.zeros((len(lengths), kv_heads, 0, head_dim), dtype=np.float32) for n in past_names}
    tokens_onnx = []
    for _ in range(steps):
        outs = sessions[WITH_PAST_FILE].run(
            None, {"input_ids": feed_ids, "attention_mask": feed_mask, "position_ids": pos, **past}
        )
        nxt = outs[0][:, -1, :].argmax(-1)
        tokens_onnx.append(nxt)
        past = {n: outs[1 + i] for i, n in enumerate(past_names)}
        feed_ids = nxt[:, None].astype(np.int64)
        pos = pos[:, -1:] + 1
        feed_mask = np.concatenate([feed_mask, np.ones((len(lengths), 1), dtype=np.int64)], axis=1)
    with torch.no_grad():
        ref_gen = model.generate(
            input_ids=left,
            attention_mask=left_mask,
            do_sample=False,
            max_new_tokens=steps,
            min_new_tokens=steps,
            pad_token_id=pad,
            eos_token_id=None,
            temperature=None,
            top_p=None,
            top_k=None,
        )[:, longest:].numpy()
        # logits of the last step from a full forward over prompt + generated tokens, as reference
        full_ids = torch.cat([left, torch.from_numpy(np.stack(tokens_onnx, 1))], 1)
        full_mask = torch.cat([left_mask, torch.ones(len(lengths), steps, dtype=torch.long)], 1)
        full_pos = (full_mask.cumsum(-1) - 1).clamp(min=0).masked_fill(full_mask == 0, 1)
        ref_last = (
            model(
                input_ids=full_ids[:, :-1],
                attention_mask=full_mask[:, :-1],
                position_ids=full_pos[:, :-1],
                use_cache=False,
            )
            .logits[:, -1]
            .numpy()
        )
    with_past_diff = float(np.abs(outs[0][:, -1, :] - ref_last).max()) / max(1.0, float(np.abs(ref_last).max()))
    same_tokens = bool((np.stack(tokens_onnx, 1) == ref_gen).all())
    result = {
        "no_cache_max_rel_diff": no_cache_diff,
        "with_past_max_rel_diff": with_past_diff,
        "greedy_tokens_match": same_tokens,
        "tolerance": tolerance,
    }
    log.info("validation: %s", result)
    if no_cache_diff > tolerance or with_past_diff > tolerance or not same_tokens:
        raise ExportValidationFailed(f"exported graphs disagree with PyTorch: {result}")
    return result


def run(job):
    progress = Progress(3, "stages")
    progress.update(0)
    start = time.monotonic()
    manifest = export(job.model_path, job.output_dir, job.opset, job.tolerance, progress)
    v = manifest["validation"]
    return {
        "outputs": {"onnx_dir": os.path.abspath(job.output_dir)},
        "metrics": {
            "seconds": round(time.monotonic() - start, 2),
            "no_cache_max_rel_diff": v["no_cache_max_rel_diff"],
            "with_past_max_rel_diff": v["with_past_max_rel_diff"],
            "bytes": sum(g["size"] for g in manifest["graphs"].values()),
        },
    }
