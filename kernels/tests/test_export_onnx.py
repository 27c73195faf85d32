"""export-onnx: graphs, manifest and validation on the tiny model; atomic output; bad input."""

import json
import os

from conftest import run_kernel


def test_export_writes_validated_graphs_and_manifest(tiny_model, tmp_path):
    out = tmp_path / "onnx"
    code, events = run_kernel(
        "export-onnx", {"model_path": tiny_model.model_dir, "output_dir": str(out), "threads": 1}, tmp_path
    )
    assert code == 0, events
    result = events[-1]
    assert result["type"] == "result" and result["outputs"]["onnx_dir"] == str(out)
    assert result["metrics"]["no_cache_max_rel_diff"] < 1e-4
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["format"] == "wmss-onnx/1" and manifest["opset"] == 17
    assert [i["name"] for i in manifest["graphs"]["no_cache"]["inputs"]] == ["input_ids", "attention_mask"]
    names = [i["name"] for i in manifest["graphs"]["with_past"]["inputs"]]
    assert names[:3] == ["input_ids", "attention_mask", "position_ids"] and "past.1.value" in names
    assert manifest["validation"]["greedy_tokens_match"] is True
    for f in (
        "model.onnx",
        "model_with_past.onnx",
        "tokenizer.json",
        "tokenizer_config.json",
        "generation_config.json",
    ):
        assert (out / f).is_file(), f
    # nothing left behind by the temporary directory
    assert sorted(os.listdir(tmp_path)) == sorted(p for p in os.listdir(tmp_path) if ".tmp-" not in p)


def test_missing_model_is_invalid_input(tmp_path):
    code, events = run_kernel(
        "export-onnx", {"model_path": str(tmp_path / "nope"), "output_dir": str(tmp_path / "o")}, tmp_path
    )
    assert code == 2
    assert events[-1]["error_type"] == "InvalidInput" and "nope" in events[-1]["message"]
    assert not (tmp_path / "o").exists()
