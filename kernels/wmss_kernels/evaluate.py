"""evaluate (step 7): greedy pass@1 on math datasets.

Per dataset: [system, user] prompts through the chat template, generation by continuous batching
(decode_engine: batch_size slots, a finished row's slot refilled at once; engine "batches": fixed
batches through transformers generate, a static KV cache and compiled decoding on CUDA), grading
by grading.grade.
Writes <output_dir>/<name>.jsonl (one line per question) and <output_dir>/summary.json.
"""

import json
import logging
import os
import re
import time
from pathlib import Path

import torch

from .chat import DEFAULT_EVAL_SYSTEM_PROMPT, eval_prompt
from .data import gsm8k_final, iter_json_lines, read_json_list
from .decode_engine import DecodeEngine, fitting_slots
from .entropy import check_shard, write_jsonl_atomic
from .grading import grade
from .jobs import Field
from .modeling import check_model_dir, load_model, load_tokenizer, pick_device, pick_dtype
from .protocol import InvalidInput, Progress, Terminated, stop_requested

FIELDS = {
    "model_path": Field(str),
    "label": Field(str),
    "output_dir": Field(str),
    "datasets": Field(list),
    "batch_size": Field(int, 16),
    "system_prompt": Field((str, type(None)), None),
    "enable_thinking": Field(bool, True),
    "shard": Field(dict, None),
    # None: on for CUDA devices (see generate); engine "batches" only
    "static_cache": Field((bool, type(None)), None),
    # continuous: decode_engine, batch_size = slots; batches: generate() below, one batch at a time
    "engine": Field(str, "continuous", choices=("continuous", "batches")),
}

DATASET_FIELDS = {
    "name": Field(str),
    "path": Field(str),
    "format": Field(str, choices=("gsm8k", "json", "jsonl")),
    "expected_rows": Field((int, type(None)), None),
    "max_input_tokens": Field(int, 4096),
    "max_new_tokens": Field(int, 4096),
    "limit": Field((int, type(None)), None),
}

QUESTION_KEYS = ("question", "instruction", "problem", "input", "original_text", "prompt")
ANSWER_KEYS = ("answer", "target", "label", "solution", "output", "ans")

BUNDLED = {"bundled:gsm8k": Path(__file__).resolve().parents[2] / "data" / "gsm8k" / "test.jsonl"}

log = logging.getLogger(__name__)


def check_datasets(raw, job_path):
    """The `datasets` entries, validated like job fields (field names like datasets[1].path)."""
    out = []
    for i, entry in enumerate(raw):
        where = f"datasets[{i}]"
        if not isinstance(entry, dict):
            raise InvalidInput("expected an object", file=job_path, field=where)
        for key in entry:
            if key not in DATASET_FIELDS:
                raise InvalidInput("unknown key", file=job_path, field=f"{where}.{key}")
        values = {}
        for key, spec in DATASET_FIELDS.items():
            if key not in entry:
                if spec.required:
                    raise InvalidInput("missing required key", file=job_path, field=f"{where}.{key}")
                values[key] = spec.default
                continue
            try:
                values[key] = spec.check(entry[key])
            except ValueError as e:
                raise InvalidInput(str(e), file=job_path, field=f"{where}.{key}")
        if not re.fullmatch(r"[A-Za-z0-9_.-]+", values["name"]) or values["name"] in (".", "..", "summary"):
            raise InvalidInput("must be a plain file name ([A-Za-z0-9_.-], not 'summary')",
                               file=job_path, field=f"{where}.name")
        if values["name"] in {d["name"] for d in out}:
            raise InvalidInput("duplicate dataset name", file=job_path, field=f"{where}.name")
        for key in ("max_input_tokens", "max_new_tokens", "limit", "expected_rows"):
            if values[key] is not None and values[key] < 1:
                raise InvalidInput("must be a positive integer", file=job_path, field=f"{where}.{key}")
        values["path"] = str(BUNDLED.get(values["path"], values["path"]))
        out.append(values)
    return out


def _first(row, keys):
    for key in keys:
        if key in row and row[key] is not None:
            return key, row[key]
    return None, None


def load_rows(ds) -> list[dict]:
    """[{id, line, question, gold}] in file order; a row missing a field is an error, not skipped."""
    path, fmt = ds["path"], ds["format"]
    if fmt == "json":
        entries = [(i + 1, row) for i, row in enumerate(read_json_list(path))]  # "line" = 1-based row number
    else:
        entries = list(iter_json_lines(path))

    rows = []
    for n, row in entries:
        where = dict(file=path, line=n)
        if not isinstance(row, dict):
            raise InvalidInput("expected an object", **where)
        if fmt == "gsm8k":
            q_key, question = "question", row.get("question")
            a_key, answer = "answer", row.get("answer")
        else:
            q_key, question = _first(row, QUESTION_KEYS)
            a_key, answer = _first(row, ANSWER_KEYS)
            if answer is None and isinstance(row.get("reward_model"), dict):  # OPD-style rows
                a_key, answer = "reward_model.ground_truth", row["reward_model"].get("ground_truth")
            if isinstance(question, list):  # chat-style prompt: the first user turn
                question = next((m.get("content") for m in question
                                 if isinstance(m, dict) and m.get("role") == "user"), None)
        if not isinstance(question, str):
            raise InvalidInput("no question (looked for " + ", ".join(QUESTION_KEYS[:1] if fmt == "gsm8k"
                               else QUESTION_KEYS) + ")", field=q_key or "question", **where)
        if answer is None or isinstance(answer, (dict, list)):
            raise InvalidInput("no answer (looked for " + ", ".join(ANSWER_KEYS[:1] if fmt == "gsm8k"
                               else ANSWER_KEYS) + ")", field=a_key or "answer", **where)
        answer = str(answer)
        if fmt == "gsm8k" or "####" in answer:
            if "####" not in answer:
                raise InvalidInput("expected a final '#### <answer>' line", field="answer", **where)
            answer = gsm8k_final(answer)
        rows.append({"id": len(rows), "line": n, "question": question, "gold": answer.strip()})

    if ds["expected_rows"] is not None and len(rows) != ds["expected_rows"]:
        raise InvalidInput(f"dataset '{ds['name']}' has {len(rows)} rows, expected {ds['expected_rows']}",
                           file=path, field="expected_rows")
    if not rows:
        raise InvalidInput(f"dataset '{ds['name']}' has no rows", file=path)
    return rows if ds["limit"] is None else rows[:ds["limit"]]


@torch.no_grad()
def generate(model, tok, prompt_ids, max_new_tokens, eos_ids, static_shape=None):
    """Greedy continuation of each prompt: (new token ids without padding, truncated flag).

    static_shape (rows, width): generate with a static KV cache, every batch padded to `rows`
    prompts of `width` tokens, so that all batches share one shape and transformers compiles the
    decoding step once (on CUDA: CUDA graphs, no per-token Python and launch overhead). Padding
    rows repeat the first prompt and are dropped from the result."""
    device = next(model.parameters()).device
    n = len(prompt_ids)
    rows, width = static_shape or (n, max(len(p) for p in prompt_ids))
    prompts = list(prompt_ids) + [prompt_ids[0]] * (rows - n)
    ids = torch.full((rows, width), tok.pad_token_id, dtype=torch.long)
    mask = torch.zeros_like(ids)
    for b, p in enumerate(prompts):  # left padding: every prompt ends where generation starts
        ids[b, width - len(p):] = torch.tensor(p)
        mask[b, width - len(p):] = 1
    extra = {"cache_implementation": "static"} if static_shape else {}
    out = model.generate(input_ids=ids.to(device), attention_mask=mask.to(device), do_sample=False,
                         max_new_tokens=max_new_tokens, eos_token_id=eos_ids,
                         pad_token_id=tok.pad_token_id, use_cache=True,
                         temperature=None, top_p=None, top_k=None, **extra)
    results = []
    for row in out[:n, width:].tolist():
        stop = next((i for i, t in enumerate(row) if t in eos_ids), None)
        if stop is None:
            results.append((row, True))  # ran into max_new_tokens without an eos
        else:
            results.append((row[:stop + 1], False))
    return results


def static_batch_shape(job, device, rows):
    """(batch rows, prompt width) for static-cache generation of a dataset, or None (dynamic)."""
    use = device.type == "cuda" if job.static_cache is None else job.static_cache
    if not use or not rows:
        return None
    longest = max(len(r["prompt_ids"]) for r in rows)
    return min(job.batch_size, len(rows)), -(-longest // 64) * 64


def generate_rows(job, model, tok, device, engine, ds, rows, eos_ids, report):
    """(generated ids, truncated) for each row of one dataset, by the continuous engine or in
    fixed batches; report(rows done, tokens generated) runs between steps (it may raise)."""
    if engine is not None:
        out = engine.generate([r["prompt_ids"] for r in rows], ds["max_new_tokens"], keys=[r["id"] for r in rows],
                              on_progress=report)
        return [samples[0] for samples in out]
    # similar prompt lengths per batch waste less compute on padding
    order = sorted(range(len(rows)), key=lambda i: len(rows[i]["prompt_ids"]))
    shape = static_batch_shape(job, device, rows)
    results, done, tokens = [None] * len(rows), 0, 0
    for b in range(0, len(order), job.batch_size):
        report(done, tokens)
        batch = order[b:b + job.batch_size]
        out = generate(model, tok, [rows[i]["prompt_ids"] for i in batch], ds["max_new_tokens"], eos_ids, shape)
        for i, result in zip(batch, out):
            results[i] = result
        done, tokens = done + len(batch), tokens + sum(len(ids) for ids, _ in out)
    report(done, tokens)
    return results


def continuous_engine(job, model, work, eos_ids):
    """The continuous-batching engine for all datasets of the job (one compiled step: its cache
    holds the longest prompt plus the largest budget), or None for engine "batches"."""
    if job.engine != "continuous":
        return None
    capacity = max((len(r["prompt_ids"]) + ds["max_new_tokens"] for ds, rows in work for r in rows), default=1)
    wanted = min(job.batch_size, max(len(rows) for _, rows in work) or 1)  # no more slots than a set has rows
    slots = fitting_slots(model, wanted, capacity)
    if slots < wanted:
        log.warning("evaluate: %d slots instead of batch_size %d: the KV cache of %d tokens a slot must fit in "
                    "the device's free memory", slots, wanted, capacity)
    return DecodeEngine(model, slots=slots, capacity=capacity, eos_ids=eos_ids)


def set_progress(name, rows_done, rows, tokens, elapsed_s):
    """The progress line's detail for one dataset: rows, tokens and its ETA from the row rate (short
    answers end first, so early on it is optimistic)."""
    text = f"{name}: {rows_done}/{rows} rows · {tokens} tokens"
    if rows_done:
        left = round(elapsed_s / rows_done * (rows - rows_done))
        text += f" · ETA {left // 60}m{left % 60:02d}s"
    return text


def eos_token_ids(model, tok) -> list[int]:
    eos = model.generation_config.eos_token_id
    eos = [] if eos is None else ([eos] if isinstance(eos, int) else list(eos))
    if tok.eos_token_id is not None and tok.eos_token_id not in eos:
        eos.append(tok.eos_token_id)
    return eos


def run(job):
    if not isinstance(job.datasets, list) or not job.datasets:
        raise InvalidInput("expected a non-empty list", file=job._path, field="datasets")
    if job.batch_size < 1:
        raise InvalidInput("must be a positive integer", file=job._path, field="batch_size")
    datasets = check_datasets(job.datasets, job._path)
    if job.shard is not None:
        check_shard(job.shard, job._path)
    system_prompt = DEFAULT_EVAL_SYSTEM_PROMPT if job.system_prompt is None else job.system_prompt

    device = pick_device(job)
    check_model_dir(job.model_path)
    tok = load_tokenizer(job.model_path)
    model = load_model(job.model_path, device, pick_dtype("auto", device))
    eos_ids = eos_token_ids(model, tok)

    # read and tokenize everything first: a bad row fails the job before any GPU time is spent
    work = []
    for ds in datasets:
        rows = load_rows(ds)
        if job.shard is not None:  # one of N devices: questions whose id mod N is its index
            rows = [r for r in rows if r["id"] % job.shard["count"] == job.shard["index"]]
        for row in rows:
            text = eval_prompt(tok, row["question"], system_prompt, job.enable_thinking)
            row["prompt_ids"] = tok(text, add_special_tokens=False)["input_ids"]
            if len(row["prompt_ids"]) > ds["max_input_tokens"]:
                raise InvalidInput(f"prompt of dataset '{ds['name']}' row {row['id']} has "
                                   f"{len(row['prompt_ids'])} tokens, more than max_input_tokens "
                                   f"{ds['max_input_tokens']}", file=ds["path"], line=row["line"],
                                   field="question")
        work.append((ds, rows))

    os.makedirs(job.output_dir, exist_ok=True)
    progress = Progress(sum(len(rows) for _, rows in work), "samples")
    progress.update(0)
    done, new_tokens, start = 0, 0, time.monotonic()
    summary = {"model_path": job.model_path, "label": job.label, "datasets": {}}
    outputs, metrics = {}, {}
    engine = continuous_engine(job, model, work, eos_ids)
    for ds, rows in work:
        set_start = time.monotonic()

        def report(rows_done, tokens, ds=ds, rows=rows, set_start=set_start):
            if stop_requested():
                raise Terminated(f"stopped by SIGTERM after {done + rows_done} samples")
            now = time.monotonic()
            progress.update(done + rows_done, tokens_per_s=round((new_tokens + tokens) / max(now - start, 1e-9), 1),
                            detail=set_progress(ds["name"], rows_done, len(rows), tokens, now - set_start))
        for row, (ids, truncated) in zip(rows, generate_rows(job, model, tok, device, engine, ds, rows, eos_ids, report)):
            row["response"] = tok.decode(ids, skip_special_tokens=True)
            row["correct"], row["extracted"] = grade(row["response"], row["gold"], row["question"])
            row["output_tokens"], row["truncated"] = len(ids), truncated
            new_tokens += len(ids)
        done += len(rows)

        out_path = os.path.join(job.output_dir, f"{ds['name']}.jsonl")
        write_jsonl_atomic(out_path, [
            {"id": r["id"], "question": r["question"], "ground_truth": r["gold"], "response": r["response"],
             "extracted": r["extracted"], "correct": bool(r["correct"]), "output_tokens": r["output_tokens"],
             "truncated": r["truncated"]} for r in rows])
        n, correct = len(rows), sum(bool(r["correct"]) for r in rows)
        summary["datasets"][ds["name"]] = {
            "n": n, "correct": correct, "pass_at_1": correct / n if n else 0.0,
            "truncated": sum(r["truncated"] for r in rows)}
        outputs[ds["name"]] = os.path.abspath(out_path)
        metrics[f"pass_at_1/{ds['name']}"] = summary["datasets"][ds["name"]]["pass_at_1"]
        log.info("%s: %d/%d correct", ds["name"], correct, n)

    summary_path = os.path.join(job.output_dir, "summary.json")
    tmp = summary_path + ".tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(summary, f, indent=2)
    os.replace(tmp, summary_path)
    outputs["summary"] = os.path.abspath(summary_path)
    metrics["tokens_per_s"] = round(new_tokens / max(time.monotonic() - start, 1e-9), 1)
    return {"outputs": outputs, "metrics": metrics}
