"""The job contract shared with TypeScript (job_schema.json): defaults, types, λ one way."""

import json

import pytest
from wmss_kernels import __version__, joint
from wmss_kernels.__main__ import VERBS
from wmss_kernels.chat import DEFAULT_SFT_SYSTEM_PROMPT
from wmss_kernels.fused import ARCH_KEYS, read_fusion_lambda
from wmss_kernels.jobs import KEYWORDS, contract, job_schema, load_job
from wmss_kernels.protocol import InvalidInput


def keywords(schema):
    out = set(schema)
    for sub in schema.get("properties", {}).values():
        out |= keywords(sub)
    for sub in schema.get("anyOf", []):
        out |= keywords(sub)
    if "items" in schema:
        out |= keywords(schema["items"])
    return out


def test_every_verb_has_a_schema_in_the_understood_subset():
    assert set(contract()["jobs"]) == set(VERBS)
    for verb in VERBS:
        assert keywords(job_schema(verb)) <= KEYWORDS, verb
    assert __version__ == contract()["kernelVersion"]
    assert ARCH_KEYS == tuple(contract()["architectureKeys"]) and "rms_norm_eps" in ARCH_KEYS


def test_an_unsupported_keyword_is_refused_not_ignored(tmp_path):
    path = tmp_path / "job.json"
    path.write_text(json.dumps({"name": "x"}))
    with pytest.raises(ValueError, match="unsupported keywords"):
        load_job(str(path), {"type": "object", "properties": {"name": {"type": "string", "pattern": "^y"}}})


def write(tmp_path, job, name="job.json"):
    path = tmp_path / name
    path.write_text(json.dumps(job))
    return str(path)


def test_absent_training_fields_take_the_run_configs_defaults(tmp_path):
    job = load_job(
        write(tmp_path, {"log_file": "l", "data_file": "d", "output_dir": "o", "model_path": "m"}), job_schema("sft")
    )
    # the pipeline always sends these; a job written by hand now runs like one it wrote
    assert (job.grad_accum, job.save_every, job.gradient_checkpointing, job.parallelism) == (256, 50, True, "auto")
    assert job.system_prompt == DEFAULT_SFT_SYSTEM_PROMPT  # tiny.py trains its tokenizer on chat.py's copy
    assert job.max_steps is None and job.compile_layers is None and job.data_format == "messages"
    # numbers are floats, as trainer_state.json has always recorded them
    assert isinstance(job.epochs, float) and isinstance(job.weight_decay, float) and isinstance(job.lr, float)


def test_ranges_and_nested_fields_name_the_key(tmp_path):
    base = {"log_file": "l", "data_file": "d", "output_dir": "o", "model_path": "m"}
    with pytest.raises(InvalidInput, match="must be > 0") as e:
        load_job(write(tmp_path, {**base, "micro_batch": 0}), job_schema("sft"))
    assert e.value.field == "micro_batch"
    ds = {"name": "a", "path": "p", "format": "csv"}
    with pytest.raises(InvalidInput, match="expected one of") as e:
        load_job(
            write(tmp_path, {"log_file": "l", "model_path": "m", "label": "x", "output_dir": "o", "datasets": [ds]}),
            job_schema("evaluate"),
        )
    assert e.value.field == "datasets[0].format"


def joint_job(tmp_path, **over):
    job = {"log_file": "l", "data_file": "d", "output_dir": str(tmp_path / "out"), "indices_file": "i", **over}
    return load_job(write(tmp_path, job), job_schema("joint"))


def test_lambda_comes_from_the_fused_dir_or_the_job_never_both(tmp_path):
    fused = tmp_path / "fused"
    fused.mkdir()
    (fused / "config.json").write_text(json.dumps({"fusion_lambda": 0.42}))
    assert joint.fusion_lambda(joint_job(tmp_path, fused_dir=str(fused))) == 0.42
    with pytest.raises(InvalidInput, match="leave fusion_lambda out") as e:
        joint.run(joint_job(tmp_path, fused_dir=str(fused), fusion_lambda=0.42))
    assert e.value.field == "fusion_lambda"
    with pytest.raises(InvalidInput, match="required with weak_path") as e:
        joint.run(joint_job(tmp_path, weak_path="w", strong_path="s"))
    assert e.value.field == "fusion_lambda"
    assert joint.fusion_lambda(joint_job(tmp_path, weak_path="w", strong_path="s", fusion_lambda=1)) == 1.0


@pytest.mark.parametrize(
    "config, words",
    [({"fusion_lambda": 1.5}, "must be <= 1"), ({}, "missing"), ({"fusion_lambda": "0.5"}, "expected number")],
)
def test_a_fused_configs_lambda_is_checked_against_the_same_range(tmp_path, config, words):
    (tmp_path / "config.json").write_text(json.dumps(config))
    with pytest.raises(InvalidInput, match=words) as e:
        read_fusion_lambda(tmp_path)
    assert e.value.field == "fusion_lambda" and e.value.file == str(tmp_path / "config.json")
