"""Step 7's outputs per set, in the original's format (docs/evaluation.md, "Outputs").

  <output_dir>/<set>/eval_detail.csv    one row per generation, DETAIL_COLUMNS
  <output_dir>/<set>/eval_summary.json  the original's keys (summary_keys) plus our additions
  <output_dir>/summary.json             every set's headline figures, for the report and workflow

Files are written under a temporary name and renamed, so a crash never leaves a complete-looking
file; existing per-set results are refused unless the job says overwrite.
"""

import csv
import datetime as dt
import json
import math
import os

from .protocol import InvalidInput

DETAIL_COLUMNS = (
    "id",
    "orig_id",
    "position",
    "sample_index",
    "question",
    "ground_truth",
    "response",
    "token_ids",
    "output_tokens",
    "finish_reason",
    "stop_reason",
    "normal_stop",
    "truncated",
    "verified",
    "correct",
    "grader_error",
    "prompt_tokens",
    "latency_s_per_prompt",
)
RESULT_FILES = ("eval_detail.csv", "eval_summary.json")


def unbiased_pass_at_k(n: int, c: int, k: int) -> float:
    """P(at least one of k draws without replacement from n generations, c correct, is correct):
    1 - C(n-c, k) / C(n, k), as a product so large n does not overflow."""
    if not 0 <= c <= n or not 1 <= k <= n:
        raise ValueError(f"need 0 <= c <= n and 1 <= k <= n, got n={n} c={c} k={k}")
    if n - c < k:
        return 1.0
    return 1.0 - math.prod(1.0 - k / i for i in range(n - c + 1, n + 1))


def reported_ks(n: int) -> list[int]:
    """k of the unbiased pass@k estimates in a summary: 1, 2, 4, ... below n, and n."""
    ks, k = [], 1
    while k < n:
        ks.append(k)
        k *= 2
    return ks + [n]


def decoding_mode(temperature: float, n: int) -> str:
    return "greedy" if temperature == 0 else ("pass1" if n == 1 else "passk")


def metrics_of(rows, n_samples: int) -> dict:
    """The original's metric keys for the generations of one set (n_samples per prompt)."""
    prompts = {}
    for row in rows:
        prompts.setdefault(int(row["position"]), []).append(row)
    if not prompts:
        raise ValueError("no evaluation rows to summarize")
    for position, group in prompts.items():
        group.sort(key=lambda r: int(r["sample_index"]))
        if [int(r["sample_index"]) for r in group] != list(range(n_samples)):
            raise ValueError(f"position {position}: expected sample indices 0..{n_samples - 1}")
    n_prompts, n_gen = len(prompts), len(rows)
    correct = sum(int(r["correct"]) for r in rows)
    first = sum(int(group[0]["correct"]) for group in prompts.values())
    passed = sum(any(int(r["correct"]) for r in group) for group in prompts.values())
    truncated = sum(bool(r["truncated"]) for r in rows)
    mean = correct / n_gen
    out = {
        "n_prompts": n_prompts,
        "n_generations": n_gen,
        "n_samples": n_samples,
        "correct_generations": correct,
        "first_sample_correct": first,
        "first_sample_accuracy": first / n_prompts,
        "passed_prompts": passed,
        "mean_accuracy": mean,
        f"mean_at_{n_samples}": mean,
        # pass@1 is only meaningful from an n = 1 run; with n > 1 see unbiased_pass_at_k
        "pass_at_1": first / n_prompts if n_samples == 1 else None,
        f"pass_at_{n_samples}": passed / n_prompts,
        "observed_pass_at_k": passed / n_prompts,
        # the names of the original's earlier script, kept by it for compatibility
        "acc": mean,
        "correct": correct,
        "total": n_gen,
        "repeat": n_samples,
        "pass_at_k": passed / n_prompts,
        "pass_success": passed,
        "orig_total": n_prompts,
        "truncated_generations": truncated,
        "truncation_rate": truncated / n_gen,
        "grader_errors": sum(r["grader_error"] not in (None, "") for r in rows),
    }
    # ours: the unbiased estimator for every reported k, and the generation lengths
    out["unbiased_pass_at_k"] = {
        str(k): sum(unbiased_pass_at_k(n_samples, sum(int(r["correct"]) for r in g), k) for g in prompts.values())
        / n_prompts
        for k in reported_ks(n_samples)
    }
    out["mean_output_tokens"] = sum(int(r["output_tokens"]) for r in rows) / n_gen
    return out


def _write_atomic(path: str, write):
    tmp = f"{path}.tmp-{os.getpid()}"
    try:
        with open(tmp, "w", encoding="utf-8", newline="") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


def check_writable(output_dir: str, names, overwrite: bool):
    """Refuses (before any generation) to replace existing per-set results unless overwrite."""
    for name in names:
        existing = [f for f in RESULT_FILES if os.path.exists(os.path.join(output_dir, name, f))]
        if existing and not overwrite:
            raise InvalidInput(
                f"evaluation results already exist ({', '.join(existing)}); move them away or set overwrite",
                file=os.path.join(output_dir, name),
                field="overwrite",
            )


def _csv_value(column, value):
    if column == "token_ids":
        return json.dumps(value)
    return "" if value is None else value


def write_set(output_dir: str, name: str, rows, meta: dict) -> dict:
    """eval_detail.csv and eval_summary.json of one set; returns the summary."""
    set_dir = os.path.join(output_dir, name)
    os.makedirs(set_dir, exist_ok=True)
    rows = sorted(rows, key=lambda r: (int(r["position"]), int(r["sample_index"])))
    csv_path = os.path.abspath(os.path.join(set_dir, "eval_detail.csv"))

    def detail(f):
        writer = csv.DictWriter(f, fieldnames=DETAIL_COLUMNS, extrasaction="ignore")
        writer.writeheader()
        for row in rows:
            writer.writerow({c: _csv_value(c, row[c]) for c in DETAIL_COLUMNS})

    _write_atomic(csv_path, detail)
    summary = {
        **metrics_of(rows, meta["decoding"]["n_samples"]),
        **meta,
        "timestamp_utc": dt.datetime.now(dt.UTC).isoformat(),
        # beside this file: the kernel writes into a staging dir that is renamed when published
        "csv_file": "eval_detail.csv",
        "seed": meta["decoding"]["seed"],
    }
    _write_atomic(
        os.path.join(set_dir, "eval_summary.json"), lambda f: json.dump(summary, f, indent=2, ensure_ascii=False)
    )
    return summary


def headline(summary: dict) -> dict:
    """The figures of one set that summary.json, the report and the workflow show."""
    n = summary["n_samples"]
    return {
        "n": summary["n_prompts"],
        "correct": summary["first_sample_correct"],
        "pass_at_1": summary["unbiased_pass_at_k"]["1"],
        f"mean_at_{n}": summary[f"mean_at_{n}"],
        "truncated": summary["truncated_generations"],
        "truncation_rate": summary["truncation_rate"],
        "mean_output_tokens": summary["mean_output_tokens"],
        "grader_errors": summary["grader_errors"],
    }


def write_overview(output_dir: str, model_path: str, label: str, protocol: str, summaries: dict):
    path = os.path.join(output_dir, "summary.json")
    overview = {
        "model_path": model_path,
        "label": label,
        "protocol": protocol,
        "datasets": {name: headline(s) for name, s in summaries.items()},
    }
    _write_atomic(path, lambda f: json.dump(overview, f, indent=2))
    return os.path.abspath(path)


_INT_COLUMNS = ("position", "sample_index", "output_tokens", "correct", "prompt_tokens")
_BOOL_COLUMNS = ("normal_stop", "truncated")


def read_detail(path: str) -> list[dict]:
    """The rows of an eval_detail.csv this module wrote, with their types back (shard merging)."""
    with open(path, encoding="utf-8", newline="") as f:
        rows = list(csv.DictReader(f))
    for row in rows:
        for c in _INT_COLUMNS:
            row[c] = int(row[c])
        for c in _BOOL_COLUMNS:
            row[c] = row[c] == "True"
        row["verified"] = {"True": True, "False": False}.get(row["verified"])
        row["grader_error"] = row["grader_error"] or None
        row["stop_reason"] = int(row["stop_reason"]) if row["stop_reason"] else None
        row["token_ids"] = json.loads(row["token_ids"])
        row["latency_s_per_prompt"] = float(row["latency_s_per_prompt"])
    return rows
