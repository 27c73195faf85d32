"""evaluate (step 7): math benchmarks under the paper or the lenient protocol (docs/evaluation.md).

Per set: [system, user] prompts through the chat template (a prompt over the set's input budget is
refused), generation by eval_generate.generate_completions (continuous batching, or fixed batches;
greedy, or sampling with n per prompt), grading by
grading.paper_verify or grading.grade, then eval_detail.csv and eval_summary.json per set
(eval_results.py) and one summary.json. With `merge_shards` no model is loaded: the per-set files
of the shard dirs are merged into output_dir, as if one device had done the work.
"""

import json
import logging
import os
import time

from . import tracking
from .chat import DEFAULT_EVAL_SYSTEM_PROMPT, eval_prompt, paper_eval_system_prompt
from .entropy import check_shard
from .eval_data import check_datasets, file_sha256, load_rows
from .eval_generate import continuous_engine, eos_token_ids, generate_completions, set_progress
from .eval_results import check_writable, decoding_mode, read_detail, write_overview, write_set
from .grading import grade, paper_verify
from .modeling import check_model_dir, load_model, load_tokenizer, pick_device, pick_dtype
from .protocol import InvalidInput, Progress, Terminated, stop_requested

log = logging.getLogger(__name__)


def _check_job(job):
    """What the job schema (job_schema.json) cannot say on its own: the fields that depend on
    each other."""
    datasets = check_datasets(job.datasets, job._path)
    if job.temperature == 0 and job.n_samples != 1:
        raise InvalidInput(
            "greedy decoding (temperature 0) gives n identical samples: use n_samples 1",
            file=job._path,
            field="n_samples",
        )
    if job.protocol == "paper" and (job.system_prompt is not None or not job.enable_thinking):
        raise InvalidInput(
            "the paper protocol uses the original's system prompt with thinking on",
            file=job._path,
            field="system_prompt" if job.system_prompt is not None else "enable_thinking",
        )
    if job.shard is not None:
        check_shard(job.shard, job._path)
    return datasets


def _meta(job, ds, system_prompt, device, dtype, engine):
    """The eval_summary.json keys that describe the run rather than its results."""
    return {
        "dataset_path": os.path.abspath(ds["path"]),
        "dataset_sha256": file_sha256(ds["path"]),
        "expected_dataset_sha256": ds["sha256"],
        "dataset_name": ds["name"],
        "expected_rows": ds["expected_rows"],
        "limit": ds["limit"],
        "model_path": job.model_path,
        "label": job.label,
        "protocol": job.protocol,
        "prompt": {"thinking": job.enable_thinking, "system_prompt": system_prompt},
        "decoding": {
            "mode": decoding_mode(job.temperature, job.n_samples),
            "temperature": job.temperature,
            "top_p": job.top_p,
            "n_samples": job.n_samples,
            "seed": job.seed,
            "max_input_tokens": ds["max_input_tokens"],
            "max_new_tokens": ds["max_new_tokens"],
            "max_model_len": ds["max_input_tokens"] + ds["max_new_tokens"],
            "stop_token_ids": None,
            "top_k": -1,
            "repetition_penalty": 1.0,
            "skip_special_tokens": True,
            "trust_remote_code": False,
        },
        "runtime": {
            "engine": "transformers generate, static batches"
            if engine is None
            else f"continuous batching (decode_engine), {engine.slots} slots",
            "tensor_parallel_size": 1,
            "dtype": str(dtype).replace("torch.", ""),
            "device": device.type,
            "batch_size": job.batch_size,
            "shard": job.shard,
        },
        "scorer": {
            "name": "verify_with_latex" if job.protocol == "paper" else "lenient",
            "path": None,
            "sha256": None,
            "expected_sha256": None,
        },
    }


def _detail_rows(tok, row, prompt_tokens, completions, max_new_tokens, protocol):
    out = []
    for k, c in enumerate(completions):
        text = tok.decode(c["token_ids"], skip_special_tokens=True)
        if protocol == "paper":
            verified, error = paper_verify(text, row["gold"], row["question"])
        else:
            verified, error = bool(grade(text, row["gold"], row["question"])[0]), None
        stopped_on = c["token_ids"][-1] if c["finish_reason"] == "stop" else None
        out.append(
            {
                "id": row["id"],
                "orig_id": row["id"],
                "position": row["position"],
                "sample_index": k,
                "question": row["question"],
                "ground_truth": row["gold"],
                "response": text.strip(),
                "token_ids": c["token_ids"],
                "output_tokens": len(c["token_ids"]),
                "finish_reason": c["finish_reason"],
                # as vLLM reports it: None for the tokenizer's own eos, else the stop token's id
                "stop_reason": None if stopped_on in (None, tok.eos_token_id) else stopped_on,
                "normal_stop": c["finish_reason"] == "stop",
                "truncated": c["finish_reason"] == "length" or len(c["token_ids"]) >= max_new_tokens,
                "verified": verified,
                "correct": int(verified is True),
                "grader_error": error,
                "prompt_tokens": prompt_tokens,
                "latency_s_per_prompt": round(c["latency_s_per_prompt"], 6),
            }
        )
    return out


def _merge(job, datasets):
    """Per set: the generations of every shard dir, summarised again as one run."""
    summaries = {}
    for ds in datasets:
        rows, meta = [], None
        for shard_dir in job.merge_shards:
            detail = os.path.join(shard_dir, ds["name"], "eval_detail.csv")
            if not os.path.exists(detail):  # a shard that got no prompt of this set
                continue
            rows += read_detail(detail)
            if meta is None:
                with open(os.path.join(shard_dir, ds["name"], "eval_summary.json"), encoding="utf-8") as f:
                    first = json.load(f)
                meta = {
                    k: first[k]
                    for k in (
                        "dataset_path",
                        "dataset_sha256",
                        "expected_dataset_sha256",
                        "dataset_name",
                        "expected_rows",
                        "limit",
                        "model_path",
                        "label",
                        "protocol",
                        "prompt",
                        "decoding",
                        "runtime",
                        "scorer",
                    )
                }
        meta["runtime"] = {**meta["runtime"], "shard": None, "shards": len(job.merge_shards)}
        summaries[ds["name"]] = write_set(job.output_dir, ds["name"], rows, meta)
    return summaries


def run(job):
    datasets = _check_job(job)
    os.makedirs(job.output_dir, exist_ok=True)
    check_writable(job.output_dir, [d["name"] for d in datasets], job.overwrite)
    if job.merge_shards:
        summaries = _merge(job, datasets)
        return _result(job, summaries, tokens_per_s=None)

    if job.system_prompt is not None:
        system_prompt = job.system_prompt
    else:
        system_prompt = paper_eval_system_prompt() if job.protocol == "paper" else DEFAULT_EVAL_SYSTEM_PROMPT
    device = pick_device(job)
    check_model_dir(job.model_path)
    tok = load_tokenizer(job.model_path)
    dtype = pick_dtype("auto", device)
    model = load_model(job.model_path, device, dtype)
    eos_ids = eos_token_ids(model, tok)

    # read and tokenize everything first: a bad row fails the job before any GPU time is spent
    work = []
    for ds in datasets:
        rows = load_rows(ds)
        if job.shard is not None:  # one of N devices: the prompts whose position mod N is its index
            rows = [r for r in rows if r["position"] % job.shard["count"] == job.shard["index"]]
        for row in rows:
            text = eval_prompt(tok, row["question"], system_prompt, job.enable_thinking, paper=job.protocol == "paper")
            row["prompt_ids"] = tok(text, add_special_tokens=False)["input_ids"]
            if len(row["prompt_ids"]) > ds["max_input_tokens"]:
                raise InvalidInput(
                    f"prompt of dataset '{ds['name']}' row {row['position'] + 1} has "
                    f"{len(row['prompt_ids'])} tokens, more than max_input_tokens "
                    f"{ds['max_input_tokens']}",
                    file=ds["path"],
                    line=row["line"],
                    field="question",
                )
        work.append((ds, rows))

    progress = Progress(sum(len(rows) for _, rows in work), "samples")
    progress.update(0)
    engine = continuous_engine(job, model, work, eos_ids)
    state = {"done": 0, "tokens": 0, "start": time.monotonic()}
    summaries = {}
    for ds, rows in work:
        set_start = time.monotonic()

        def report(prompts_done, tokens, ds=ds, rows=rows, set_start=set_start):
            if stop_requested():
                raise Terminated(f"stopped by SIGTERM after {state['done'] + prompts_done} samples")
            now = time.monotonic()
            progress.update(
                state["done"] + prompts_done,
                tokens_per_s=round((state["tokens"] + tokens) / max(now - state["start"], 1e-9), 1),
                detail=set_progress(ds["name"], prompts_done, len(rows), tokens, now - set_start),
            )

        completions = (
            generate_completions(model, tok, job, device, engine, rows, ds["max_new_tokens"], eos_ids, report)
            if rows
            else []
        )
        state["done"] += len(rows)
        state["tokens"] += sum(len(c["token_ids"]) for per_row in completions for c in per_row)
        detail = [
            d
            for row, c in zip(rows, completions)
            for d in _detail_rows(tok, row, len(row["prompt_ids"]), c, ds["max_new_tokens"], job.protocol)
        ]
        if not detail:  # a shard with no prompt of this set: nothing to write for it
            continue
        summaries[ds["name"]] = write_set(
            job.output_dir, ds["name"], detail, _meta(job, ds, system_prompt, device, dtype, engine)
        )
        log.info("%s: %d/%d correct", ds["name"], summaries[ds["name"]]["correct_generations"], len(detail))
    return _result(job, summaries, round(state["tokens"] / max(time.monotonic() - state["start"], 1e-9), 1))


def _result(job, summaries, tokens_per_s):
    overview = write_overview(job.output_dir, job.model_path, job.label, job.protocol, summaries)
    metrics = {f"pass_at_1/{name}": s["unbiased_pass_at_k"]["1"] for name, s in summaries.items()}
    metrics.update({f"truncation_rate/{name}": s["truncation_rate"] for name, s in summaries.items()})
    if tokens_per_s is not None:
        metrics["tokens_per_s"] = tokens_per_s
    if job.shard is None:  # a shard's sets are partial: the merge job summarises them
        tracking.summarize(job, {k: v for k, v in metrics.items() if k != "tokens_per_s"}, run=job.label)
    outputs = {name: os.path.abspath(os.path.join(job.output_dir, name)) for name in summaries}
    return {"outputs": {**outputs, "summary": overview}, "metrics": metrics}
