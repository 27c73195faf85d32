"""evaluate (step 7): greedy pass@1 on math datasets with transformers generate.

Per dataset: [system, user] prompts through the chat template, batched generation with left
padding and the KV cache (a static one, decoding compiled, on CUDA), grading by grading.grade.
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
from .entropy import check_shard, write_jsonl_atomic
from .grading import grade
from .jobs import Mismatch, check, job_schema
from .modeling import check_model_dir, load_model, load_tokenizer, pick_device, pick_dtype
from .protocol import InvalidInput, Progress, Terminated, stop_requested

QUESTION_KEYS = ("question", "instruction", "problem", "input", "original_text", "prompt")
ANSWER_KEYS = ("answer", "target", "label", "solution", "output", "ans")

BUNDLED = {"bundled:gsm8k": Path(__file__).resolve().parents[2] / "data" / "gsm8k" / "test.jsonl"}

log = logging.getLogger(__name__)


def check_datasets(raw, job_path):
    """The `datasets` entries, checked against the job schema's (field names like datasets[1].path)."""
    item = job_schema("evaluate")["properties"]["datasets"]["items"]
    out = []
    for i, entry in enumerate(raw):
        where = f"datasets[{i}]"
        try:
            values = check(entry, item, where)
        except Mismatch as e:
            raise InvalidInput(e.message, file=job_path, field=e.field)
        if not re.fullmatch(r"[A-Za-z0-9_.-]+", values["name"]) or values["name"] in (".", "..", "summary"):
            raise InvalidInput("must be a plain file name ([A-Za-z0-9_.-], not 'summary')",
                               file=job_path, field=f"{where}.name")
        if values["name"] in {d["name"] for d in out}:
            raise InvalidInput("duplicate dataset name", file=job_path, field=f"{where}.name")
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
    for ds, rows in work:
        # similar prompt lengths per batch waste less compute on padding
        order = sorted(range(len(rows)), key=lambda i: len(rows[i]["prompt_ids"]))
        shape = static_batch_shape(job, device, rows)
        for b in range(0, len(order), job.batch_size):
            if stop_requested():
                raise Terminated(f"stopped by SIGTERM after {done} samples")
            batch = [rows[i] for i in order[b:b + job.batch_size]]
            generated = generate(model, tok, [r["prompt_ids"] for r in batch], ds["max_new_tokens"], eos_ids, shape)
            for row, (ids, truncated) in zip(batch, generated):
                row["response"] = tok.decode(ids, skip_special_tokens=True)
                row["correct"], row["extracted"] = grade(row["response"], row["gold"], row["question"])
                row["output_tokens"], row["truncated"] = len(ids), truncated
                new_tokens += len(ids)
            done += len(batch)
            progress.update(done, tokens_per_s=round(new_tokens / max(time.monotonic() - start, 1e-9), 1))

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
