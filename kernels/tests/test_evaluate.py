import csv
import hashlib
import json
from pathlib import Path

import pytest
from conftest import run_kernel
from wmss_kernels.eval_data import check_datasets, load_rows
from wmss_kernels.eval_results import DETAIL_COLUMNS
from wmss_kernels.protocol import InvalidInput

REPO = Path(__file__).resolve().parents[2]
PROTOCOL = json.loads((REPO / "data" / "eval" / "paper-protocol.json").read_text())

# The keys of the original's eval_summary.json (docs/evaluation.md, "Outputs").
ORIGINAL_SUMMARY_KEYS = {
    "n_prompts",
    "n_generations",
    "n_samples",
    "correct_generations",
    "first_sample_correct",
    "first_sample_accuracy",
    "passed_prompts",
    "mean_accuracy",
    "mean_at_1",
    "pass_at_1",
    "observed_pass_at_k",
    "acc",
    "correct",
    "total",
    "repeat",
    "pass_at_k",
    "pass_success",
    "orig_total",
    "truncated_generations",
    "truncation_rate",
    "grader_errors",
    "dataset_path",
    "dataset_sha256",
    "expected_dataset_sha256",
    "dataset_name",
    "expected_rows",
    "model_path",
    "protocol",
    "prompt",
    "decoding",
    "runtime",
    "scorer",
    "timestamp_utc",
    "csv_file",
    "seed",
}
ORIGINAL_DECODING_KEYS = {
    "mode",
    "temperature",
    "top_p",
    "n_samples",
    "seed",
    "max_input_tokens",
    "max_new_tokens",
    "max_model_len",
    "stop_token_ids",
    "top_k",
    "repetition_penalty",
    "skip_special_tokens",
    "trust_remote_code",
}


def dataset(path, fmt, **extra):
    return check_datasets([{"name": "d", "path": str(path), "format": fmt, **extra}], "job.json")[0]


def bundled(name, **extra):
    s = PROTOCOL["sets"][name]
    return dataset(REPO / "data" / "eval" / s["file"], "json", expected_rows=s["rows"], sha256=s["sha256"], **extra)


@pytest.mark.parametrize("name", list(PROTOCOL["sets"]))
def test_every_bundled_set_loads_with_its_count(name):
    s = PROTOCOL["sets"][name]
    assert hashlib.sha256((REPO / "data" / "eval" / s["file"]).read_bytes()).hexdigest() == s["sha256"]
    rows = load_rows(bundled(name))
    assert (
        len(rows)
        == s["rows"]
        == {"aime2025": 30, "math500": 500, "amc23": 40, "aqua": 254, "gsm8k": 1319, "mawps": 238, "svamp": 1000}[name]
    )
    assert all(r["question"] and r["gold"] for r in rows)
    assert [r["position"] for r in rows] == list(range(len(rows)))
    if name == "aqua":
        assert {r["gold"] for r in rows} <= set("ABCDE")
    # the budgets of the original: 8192 new tokens for the two competition sets, else 4096
    assert (s["maxInputTokens"], s["maxNewTokens"]) == (4096, 8192 if name in ("aime2025", "amc23") else 4096)


def test_seven_sets_in_table_order():
    assert list(PROTOCOL["sets"]) == ["aime2025", "math500", "amc23", "aqua", "gsm8k", "mawps", "svamp"]


def test_field_lookup_order_and_gold(tmp_path):
    p = tmp_path / "d.json"
    p.write_text(
        json.dumps(
            [
                {"instruction": "I?", "problem": "P?", "target": 5, "solution": "no"},
                {"question": "Q?", "answer": "x\n#### 1,000"},
                {"question": "  ", "instruction": "blank question skipped", "answer": "", "ans": 0},
                {
                    "prompt": [{"role": "user", "content": "2+2?"}],
                    "reward_model": {"ground_truth": "4"},
                    "answer": "no",
                },
            ]
        )
    )
    rows = load_rows(dataset(p, "json"))
    assert [(r["question"], r["gold"]) for r in rows] == [
        ("I?", "5"),
        ("Q?", "1000"),
        ("blank question skipped", "0"),
        ("2+2?", "4"),
    ]


@pytest.mark.parametrize(
    "fmt, text, line, field, what",
    [
        ("jsonl", '{"question": "a", "answer": "1"}\n\n{"question": "b"}\n', 3, "answer", "no answer"),
        ("json", '[{"question": "a", "answer": "1"}, {"answer": "2"}]', 2, "question", "row 2 of the JSON list"),
        ("json", '[{"question": "a", "answer": "   "}]', 1, "answer", "no answer"),
        ("json", '[{"question": "a", "answer": "1"}, 7]', 2, None, "expected an object"),
    ],
)
def test_row_missing_a_field_is_an_error_naming_file_row_and_field(tmp_path, fmt, text, line, field, what):
    p = tmp_path / f"d.{fmt}"
    p.write_text(text)
    with pytest.raises(InvalidInput) as e:
        load_rows(dataset(p, fmt))
    assert e.value.exit_code == 2 and e.value.file == str(p) and e.value.line == line
    assert e.value.field == field and what in str(e.value)


def test_row_count_is_checked_unless_overridden(tmp_path):
    with pytest.raises(InvalidInput, match="has 30 rows, expected 31") as e:
        load_rows(bundled("aime2025") | {"expected_rows": 31})
    assert e.value.field == "expected_rows" and e.value.file.endswith("aime2025/test.json")
    assert len(load_rows(bundled("aime2025") | {"expected_rows": None, "limit": 3})) == 3


@pytest.mark.parametrize("fmt, text", [("json", "[]"), ("jsonl", ""), ("jsonl", "\n\n")])
def test_empty_file_is_refused(tmp_path, fmt, text):
    p = tmp_path / f"empty.{fmt}"
    p.write_text(text)
    with pytest.raises(InvalidInput, match="has no rows") as e:
        load_rows(dataset(p, fmt))
    assert e.value.file == str(p)


def test_a_changed_bundled_file_is_refused(tmp_path):
    p = tmp_path / "aime.json"
    rows = json.loads((REPO / "data" / "eval" / "aime2025" / "test.json").read_text())
    rows[0]["answer"] = "71"
    p.write_text(json.dumps(rows))
    with pytest.raises(InvalidInput, match="SHA-256") as e:
        load_rows(dataset(p, "json", sha256=PROTOCOL["sets"]["aime2025"]["sha256"]))
    assert e.value.field == "sha256"


def test_dataset_entries_are_validated():
    with pytest.raises(InvalidInput, match=r"datasets\[0\]\.oops"):
        check_datasets([{"name": "d", "path": "p", "format": "json", "oops": 1}], "job.json")
    with pytest.raises(InvalidInput, match=r"datasets\[0\]\.format"):
        check_datasets([{"name": "d", "path": "p", "format": "csv"}], "job.json")
    with pytest.raises(InvalidInput, match=r"datasets\[1\]\.name.*duplicate"):
        check_datasets([{"name": "d", "path": "p", "format": "json"}] * 2, "job.json")


def _job(tiny_model, out, **extra):
    return {
        "model_path": tiny_model.model_dir,
        "label": "tiny",
        "output_dir": str(out),
        "batch_size": 2,
        "datasets": [
            {
                "name": "arith",
                "path": tiny_model.test_file,
                "format": "gsm8k",
                "max_input_tokens": 256,
                "max_new_tokens": 8,
                "limit": 3,
            },
            {
                "name": "aqua",
                "path": str(REPO / "data/eval/aqua/test.json"),
                "format": "json",
                "expected_rows": 254,
                "sha256": PROTOCOL["sets"]["aqua"]["sha256"],
                "max_new_tokens": 6,
                "limit": 2,
            },
        ],
        **extra,
    }


def _detail(path):
    with open(path, newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        return reader.fieldnames, list(reader)


@pytest.mark.parametrize("engine", ["continuous", "batches"])
def test_paper_protocol_writes_the_original_outputs(tiny_model, tmp_path, engine):
    out = tmp_path / "results"
    rc, events = run_kernel("evaluate", _job(tiny_model, out, protocol="paper", engine=engine), tmp_path)
    assert rc == 0, events
    assert {e["type"] for e in events} == {"progress", "result"}
    last = [e for e in events if e["type"] == "progress"][-1]
    assert (last["done"], last["total"]) == (5, 5)
    assert last["detail"].startswith("aqua: 2/2 prompts · ") and " tokens" in last["detail"]
    result = events[-1]
    assert set(result["outputs"]) == {"arith", "aqua", "summary"}
    for name, n in (("arith", 3), ("aqua", 2)):
        columns, rows = _detail(out / name / "eval_detail.csv")
        assert tuple(columns) == DETAIL_COLUMNS and len(rows) == n
        assert all(1 <= int(r["output_tokens"]) <= (8 if name == "arith" else 6) for r in rows)
        summary = json.loads((out / name / "eval_summary.json").read_text())
        assert ORIGINAL_SUMMARY_KEYS <= set(summary)
        assert ORIGINAL_DECODING_KEYS <= set(summary["decoding"])
        assert summary["protocol"] == "paper" and summary["scorer"]["name"] == "verify_with_latex"
        assert summary["prompt"] == {"thinking": True, "system_prompt": PROTOCOL["systemPrompt"]}
        assert summary["decoding"]["mode"] == "greedy" and summary["seed"] == 42
        assert summary["n_prompts"] == n and summary["truncation_rate"] == summary["truncated_generations"] / n
        assert result["metrics"][f"pass_at_1/{name}"] == summary["pass_at_1"]
    assert (
        json.loads((out / "aqua" / "eval_summary.json").read_text())["dataset_sha256"]
        == PROTOCOL["sets"]["aqua"]["sha256"]
    )
    overview = json.loads((out / "summary.json").read_text())
    assert overview["protocol"] == "paper" and overview["datasets"]["aqua"]["n"] == 2

    # existing results are not overwritten unless asked
    before = (out / "arith" / "eval_summary.json").read_text()
    rc, events = run_kernel("evaluate", _job(tiny_model, out, protocol="paper"), tmp_path)
    assert rc == 2 and events[-1]["field"] == "overwrite"
    assert (out / "arith" / "eval_summary.json").read_text() == before
    rc, events = run_kernel("evaluate", _job(tiny_model, out, protocol="paper", overwrite=True), tmp_path)
    assert rc == 0, events


def test_shards_merged_equal_one_run(tiny_model, tmp_path):
    one = tmp_path / "one"
    assert run_kernel("evaluate", _job(tiny_model, one, protocol="lenient"), tmp_path)[0] == 0
    shards = [tmp_path / f"shard{i}" for i in range(2)]
    for i, d in enumerate(shards):
        rc, events = run_kernel(
            "evaluate", _job(tiny_model, d, protocol="lenient", shard={"index": i, "count": 2}), tmp_path
        )
        assert rc == 0, events
    merged = tmp_path / "merged"
    rc, events = run_kernel(
        "evaluate", _job(tiny_model, merged, protocol="lenient", merge_shards=[str(d) for d in shards]), tmp_path
    )
    assert rc == 0, events

    def strip(rows):
        return [{k: v for k, v in r.items() if k != "latency_s_per_prompt"} for r in rows]

    for name in ("arith", "aqua"):
        assert strip(_detail(merged / name / "eval_detail.csv")[1]) == strip(_detail(one / name / "eval_detail.csv")[1])
        a, b = (json.loads((d / name / "eval_summary.json").read_text()) for d in (one, merged))
        assert {k: a[k] for k in ORIGINAL_SUMMARY_KEYS if k not in ("timestamp_utc", "csv_file", "runtime")} == {
            k: b[k] for k in ORIGINAL_SUMMARY_KEYS if k not in ("timestamp_utc", "csv_file", "runtime")
        }
        assert b["runtime"]["shards"] == 2


@pytest.mark.parametrize("engine", ["continuous", "batches"])
def test_sampling_writes_n_generations_per_prompt(tiny_model, tmp_path, engine):
    out = tmp_path / "sampled"
    job = _job(tiny_model, out, temperature=0.8, top_p=0.95, n_samples=3, engine=engine)
    rc, events = run_kernel("evaluate", job, tmp_path)
    assert rc == 0, events
    _, rows = _detail(out / "arith" / "eval_detail.csv")
    assert [(r["position"], r["sample_index"]) for r in rows] == [(str(p), str(k)) for p in range(3) for k in range(3)]
    assert all(1 <= int(r["output_tokens"]) <= 8 for r in rows)
    summary = json.loads((out / "arith" / "eval_summary.json").read_text())
    assert summary["pass_at_1"] is None and summary["decoding"]["mode"] == "passk"
    assert set(summary["unbiased_pass_at_k"]) == {"1", "2", "3"} and "mean_at_3" in summary
    assert summary["runtime"]["engine"].startswith("continuous" if engine == "continuous" else "transformers")
    if engine == "continuous":
        # a draw depends on the seed, the prompt's position and the sample index only: another slot
        # count on one shard of the prompts generates the same tokens; another seed does not
        for name, extra in (("shard", {"batch_size": 5, "shard": {"index": 1, "count": 2}}), ("seed", {"seed": 7})):
            rc, events = run_kernel("evaluate", {**job, "output_dir": str(tmp_path / name), **extra}, tmp_path)
            assert rc == 0, events
        mine = [r["token_ids"] for r in rows if r["position"] == "1"]
        assert [r["token_ids"] for r in _detail(tmp_path / "shard" / "arith" / "eval_detail.csv")[1]] == mine
        assert [r["token_ids"] for r in _detail(tmp_path / "seed" / "arith" / "eval_detail.csv")[1]] != [
            r["token_ids"] for r in rows
        ]


@pytest.mark.parametrize(
    "extra, field",
    [
        ({"temperature": 0.0, "n_samples": 4}, "n_samples"),
        ({"protocol": "paper", "system_prompt": "mine"}, "system_prompt"),
        ({"protocol": "paper", "enable_thinking": False}, "enable_thinking"),
        ({"top_p": 0.0, "temperature": 1.0}, "top_p"),
    ],
)
def test_bad_decoding_settings_are_refused(tiny_model, tmp_path, extra, field):
    rc, events = run_kernel("evaluate", _job(tiny_model, tmp_path / "r", **extra), tmp_path)
    assert rc == 2 and events[-1]["field"] == field


def test_prompt_over_the_input_budget_is_refused(tiny_model, tmp_path):
    job = _job(tiny_model, tmp_path / "r")
    job["datasets"][1]["max_input_tokens"] = 50
    rc, events = run_kernel("evaluate", job, tmp_path)
    assert rc == 2 and "more than max_input_tokens 50" in events[-1]["message"]
    assert events[-1]["field"] == "question" and events[-1]["line"] == 1


def test_static_cache_generation_equals_dynamic(tiny_model):
    """The static-cache path (fixed rows × width, padding rows) generates the same greedy tokens."""
    import torch
    from wmss_kernels.eval_generate import eos_token_ids, generate
    from wmss_kernels.modeling import load_model, load_tokenizer

    tok = load_tokenizer(tiny_model.model_dir)
    model = load_model(tiny_model.model_dir, torch.device("cpu"), torch.float32)
    # sharpen the head so greedy choices are not near-ties that float noise could flip
    with torch.no_grad():
        model.get_output_embeddings().weight.mul_(8)
    prompts = [tok(q)["input_ids"] for q in ("1+2=", "31 + 45 =", "what is 7+8?", "2")]
    eos = eos_token_ids(model, tok)
    dynamic = generate(model, tok, prompts, 12, eos)
    static = generate(model, tok, prompts, 12, eos, static_shape=(6, 64))
    assert [ids for ids, _ in static] == [ids for ids, _ in dynamic]
    assert all(len(ids) > 0 for ids, _ in static)


def test_the_original_system_prompts():
    from wmss_kernels.chat import DEFAULT_SFT_SYSTEM_PROMPT, paper_eval_system_prompt

    paper = paper_eval_system_prompt()
    assert paper == PROTOCOL["systemPrompt"] and paper.startswith("You are a helpful assistant.")
    assert "\u2019" in paper and "<think>" in paper and "<answer>" in paper
    # Stage 1 trains with the same words, a leading space and an ASCII apostrophe
    assert DEFAULT_SFT_SYSTEM_PROMPT == " " + paper.replace("\u2019", "'")


def test_a_template_less_tokenizer_gets_the_originals_fallback():
    from wmss_kernels.chat import eval_prompt

    class Bare:
        chat_template = None

    assert eval_prompt(Bare(), "q", "s", True, paper=True) == "system: s\n\nuser: q\n\nassistant:"
    assert eval_prompt(Bare(), "q", "s", True) == "system: s\nuser: q\nassistant:"
