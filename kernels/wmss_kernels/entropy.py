"""entropy (steps 0 and 2): mean token entropy of a model over each record's assistant turn.

Two definitions (docs/method.md#entropy-steps-0-and-2):
  shifted  paper Eq. 7: for each completion token t (positions n_prompt..L-1) the entropy of the
           distribution that predicts it, i.e. the logits row t-1.
  repo     the original code: the logits rows AT positions n_prompt..L-1 (no shift), which
           skips the prediction of the first assistant token and adds one past the end.
Entropy is in nats at temperature 1, computed in float32 from the final hidden states of the
scored positions only, a chunk of `vocab_chunk` positions at a time (heads.py), so no
[tokens, vocab] float32 tensor for a whole batch is ever built (Qwen's vocabulary is 151k wide).
"""

import contextlib
import json
import logging
import os
import time

import torch

from . import tracking
from .chat import entropy_texts, tokenize_pair
from .data import read_records
from .heads import row_entropies
from .modeling import check_model_dir, load_model, load_tokenizer, pick_device, pick_dtype
from .protocol import InvalidInput, Progress, Terminated, stop_requested

log = logging.getLogger(__name__)


def scored_rows(length: int, n_prompt: int, definition: str) -> range:
    """Positions of the logits rows that are averaged for one sequence."""
    if definition == "shifted":
        return range(max(n_prompt, 1) - 1, length - 1)
    return range(n_prompt, length)


def make_batches(lengths: list[int], batch_tokens: int) -> list[list[int]]:
    """Groups sample numbers by length so that (longest × count) stays within batch_tokens."""
    order = sorted(range(len(lengths)), key=lambda i: lengths[i])
    batches, current = [], []
    for i in order:
        # sorted ascending, so lengths[i] is the longest in the batch if i joins it
        if current and lengths[i] * (len(current) + 1) > batch_tokens:
            batches.append(current)
            current = []
        current.append(i)
    if current:
        batches.append(current)
    return batches


@torch.no_grad()
def batch_entropies(model, seqs, n_prompts, definition, vocab_chunk, pad_id):
    """Mean entropy per sequence (list of floats, 0.0 where no position is scored)."""
    device = next(model.parameters()).device
    longest = max(len(s) for s in seqs)
    ids = torch.full((len(seqs), longest), pad_id, dtype=torch.long)
    rows_b, rows_t = [], []
    for b, (s, n) in enumerate(zip(seqs, n_prompts)):
        ids[b, : len(s)] = torch.tensor(s)
        rows = scored_rows(len(s), n, definition)
        rows_b += [b] * len(rows)
        rows_t += list(rows)

    # Right padding under causal attention: no real token can see a pad, so no attention mask is
    # needed, and without one SDPA takes its fused causal (flash) kernel. Pad rows are never read.
    base = getattr(model, model.base_model_prefix)
    hidden = base(input_ids=ids.to(device), use_cache=False).last_hidden_state
    head = model.get_output_embeddings()

    rows_b = torch.tensor(rows_b, dtype=torch.long, device=device)
    rows_t = torch.tensor(rows_t, dtype=torch.long, device=device)
    ent = row_entropies(hidden[rows_b, rows_t], head.weight, vocab_chunk).double()
    sums = torch.zeros(len(seqs), dtype=torch.float64, device=device).index_add_(0, rows_b, ent)
    counts = torch.zeros(len(seqs), dtype=torch.float64, device=device).index_add_(0, rows_b, torch.ones_like(ent))
    means = torch.where(counts > 0, sums / counts.clamp(min=1), torch.zeros_like(sums))
    return means.tolist(), int(counts.sum().item())


def check_shard(shard, job_path):
    """A job's `shard` {"index": i, "count": n}: this process handles the items whose number mod n is i."""
    index, count = shard.get("index"), shard.get("count")
    if set(shard) != {"index", "count"} or not all(
        isinstance(v, int) and not isinstance(v, bool) for v in (index, count)
    ):
        raise InvalidInput('expected {"index": int, "count": int}', file=job_path, field="shard")
    if count < 1 or not 0 <= index < count:
        raise InvalidInput(f"need 0 <= index < count, got index {index}, count {count}", file=job_path, field="shard")


def select_positions(n_records: int, limit, shard, job_path) -> list[int]:
    positions = list(range(n_records if limit is None else min(limit, n_records)))
    if shard is None:
        return positions
    check_shard(shard, job_path)
    return [p for p in positions if p % shard["count"] == shard["index"]]


def write_jsonl_atomic(path: str, rows: list[dict]):
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    tmp = f"{path}.tmp-{os.getpid()}"
    try:
        with open(tmp, "w", encoding="utf-8") as f:
            for row in rows:
                f.write(json.dumps(row) + "\n")
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as e:
        # a full disk leaves no half-written file; __main__ reports it (InsufficientDisk) by this name
        with contextlib.suppress(OSError):
            os.remove(tmp)
        if e.filename is None:
            e.filename = tmp
        raise


def run(job):
    path = job._path
    for key in ("max_length", "batch_tokens", "vocab_chunk"):
        if getattr(job, key) < 1:
            raise InvalidInput("must be a positive integer", file=path, field=key)
    if job.limit is not None and job.limit < 1:
        raise InvalidInput("must be a positive integer", file=path, field="limit")

    records = read_records(job.data_file, job.data_format)
    positions = select_positions(len(records), job.limit, job.shard, path)
    device = pick_device(job)
    check_model_dir(job.model_path)
    tok = load_tokenizer(job.model_path)
    model = load_model(job.model_path, device, pick_dtype(job.dtype, device))
    if getattr(model.get_output_embeddings(), "bias", None) is not None:
        raise InvalidInput("output projection with a bias is not supported", file=job.model_path)

    seqs, n_prompts = [], []
    for p in positions:
        ids, n_prompt = tokenize_pair(tok, *entropy_texts(tok, records[p]), job.max_length)
        seqs.append(ids)
        n_prompts.append(n_prompt)
    log.info(
        "entropy (%s) of %s on %d of %d records from %s",
        job.definition,
        job.model_path,
        len(positions),
        len(records),
        job.data_file,
    )

    progress = Progress(len(positions), "samples")
    progress.update(0)
    results, done, tokens, scored, start = {}, 0, 0, 0, time.monotonic()
    for batch in make_batches([len(s) for s in seqs], job.batch_tokens):
        if stop_requested():
            raise Terminated(f"stopped by SIGTERM after {done} of {len(positions)} samples")
        means, n_scored = batch_entropies(
            model,
            [seqs[i] for i in batch],
            [n_prompts[i] for i in batch],
            job.definition,
            job.vocab_chunk,
            tok.pad_token_id,
        )
        for i, value in zip(batch, means):
            results[records[positions[i]].idx] = value
        done += len(batch)
        tokens += sum(len(seqs[i]) for i in batch)
        scored += n_scored
        elapsed = max(time.monotonic() - start, 1e-9)
        progress.update(done, tokens_per_s=round(tokens / elapsed, 1))

    write_jsonl_atomic(job.output_path, [{"idx": idx, job.field: results[idx]} for idx in sorted(results)])
    elapsed = max(time.monotonic() - start, 1e-9)
    values = list(results.values())
    tracking.summarize(
        job, {"mean_entropy": sum(values) / max(1, len(values)), "samples": len(values)}, {job.field: values}
    )
    return {
        "outputs": {"entropy": os.path.abspath(job.output_path)},
        "metrics": {
            "samples": len(values),
            "tokens": tokens,
            "scored_tokens": scored,
            "tokens_per_s": round(tokens / elapsed, 1),
            "mean_entropy": sum(values) / len(values) if values else 0.0,
        },
    }
