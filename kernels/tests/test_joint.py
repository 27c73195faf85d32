"""joint kernel and the fused model: the mix, freezing, the fused layout, resume, bad indices."""

import json
from pathlib import Path

import pytest
import torch
from conftest import run_kernel
from safetensors import safe_open
from safetensors.torch import load_file, save_file
from wmss_kernels import joint
from wmss_kernels.fused import load_fused
from wmss_kernels.jobs import job_schema, load_job
from wmss_kernels.modeling import load_model
from wmss_kernels.protocol import InvalidInput, Terminated
from wmss_kernels.train_batches import collate, lm_loss_sum, make_example

CPU = torch.device("cpu")
BASE = {
    "lr": 3e-3,
    "micro_batch": 2,
    "grad_accum": 2,
    "max_steps": 8,
    "max_length": 128,
    "threads": 1,
    "device": "cpu",
    "gradient_checkpointing": False,
    "save_every": 0,
}


def write_fused_dir(weak_dir, strong_dir, out_dir, lam, drop_lm_head=False):
    """What step 5a does in TypeScript: prefix the keys of both safetensors files, no model load."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    tensors, cfgs = {}, []
    for i, d in enumerate((weak_dir, strong_dir)):
        with safe_open(str(Path(d) / "model.safetensors"), framework="pt") as f:
            for k in f.keys():
                if not (drop_lm_head and k == "lm_head.weight"):
                    tensors[f"sub_models.{i}.{k}"] = f.get_tensor(k)
        cfgs.append(json.loads((Path(d) / "config.json").read_text()))
    save_file(tensors, str(out / "model.safetensors"))
    cfg = {
        **cfgs[0],
        "num_sub_models": 2,
        "architectures": ["QwenBoostForCausalLM"],
        "is_llmboost": False,
        "sub_model_cfgs": cfgs,
        "fusion_lambda": lam,
    }
    (out / "config.json").write_text(json.dumps(cfg))
    for f in Path(weak_dir).glob("tokenizer*"):
        (out / f.name).write_bytes(f.read_bytes())
    for f in Path(weak_dir).glob("*.jinja"):
        (out / f.name).write_bytes(f.read_bytes())
    return out


@pytest.fixture(scope="module")
def pair(tiny_model, tmp_path_factory):
    """(weak_dir, strong_dir, fused_dir): strong = the tiny model with perturbed weights."""
    root = tmp_path_factory.mktemp("pair")
    strong = load_model(str(tiny_model.model_dir), CPU, torch.float32)
    torch.manual_seed(0)
    with torch.no_grad():
        for p in strong.parameters():
            p.add_(0.05 * torch.randn_like(p))
    strong.save_pretrained(root / "strong")
    fused = write_fused_dir(tiny_model.model_dir, root / "strong", root / "fused", 0.5)
    return Path(tiny_model.model_dir), root / "strong", fused


def batch():
    ex = [make_example(list(range(3, 30)), 5), make_example(list(range(7, 20)), 0)]
    return collate(ex, CPU)


def test_lambda_one_frozen_equals_strong(pair):
    weak, strong_dir, fused_dir = pair
    fused = load_fused(write_fused_dir(weak, strong_dir, fused_dir.parent / "lambda-1", 1.0), CPU, torch.float32)
    assert fused.fusion_lambda == 1.0
    fused.sub_models[0].requires_grad_(False)
    strong = load_model(str(strong_dir), CPU, torch.float32)
    b = batch()
    mixed = lm_loss_sum(fused(b["input_ids"], b["attention_mask"]), b["labels"])
    own = lm_loss_sum(strong(input_ids=b["input_ids"], attention_mask=b["attention_mask"]).logits, b["labels"])
    assert torch.allclose(mixed, own, rtol=1e-6, atol=1e-5)


def test_both_branches_get_gradients(pair):
    fused = load_fused(pair[2], CPU, torch.float32)
    assert fused.fusion_lambda == 0.5
    b = batch()
    lm_loss_sum(fused(b["input_ids"], b["attention_mask"]), b["labels"]).backward()
    for sub in fused.sub_models:
        assert all(p.grad is not None for p in sub.parameters())
        assert sum(p.grad.abs().sum() for p in sub.parameters()) > 0
    # the in-place mix gives the same gradients as the plain formula
    got = [p.grad.clone() for p in fused.parameters()]
    fused.zero_grad()
    z = [m(input_ids=b["input_ids"], attention_mask=b["attention_mask"]).logits for m in fused.sub_models]
    lm_loss_sum(0.5 * z[0] + 0.5 * z[1], b["labels"]).backward()
    assert all(torch.allclose(g, p.grad, atol=1e-6) for g, p in zip(got, fused.parameters()))


def test_tied_embeddings_and_architecture_check(pair, tmp_path):
    weak, strong_dir, _ = pair
    tied = []
    for name, src in (("w", weak), ("s", strong_dir)):
        d = tmp_path / name
        d.mkdir()
        cfg = json.loads((src / "config.json").read_text())
        (d / "config.json").write_text(json.dumps({**cfg, "tie_word_embeddings": True}))
        sd = load_file(str(src / "model.safetensors"))
        sd.pop("lm_head.weight")
        save_file(sd, str(d / "model.safetensors"))
        tied.append(d)
    fused = load_fused(write_fused_dir(*tied, tmp_path / "f", 0.5), CPU, torch.float32)
    for sub in fused.sub_models:
        assert sub.lm_head.weight is sub.model.embed_tokens.weight

    other = tmp_path / "other"
    other.mkdir()
    cfg = json.loads((strong_dir / "config.json").read_text())
    (other / "config.json").write_text(json.dumps({**cfg, "num_hidden_layers": cfg["num_hidden_layers"] + 1}))
    (other / "model.safetensors").write_bytes((strong_dir / "model.safetensors").read_bytes())
    with pytest.raises(InvalidInput, match="num_hidden_layers"):
        load_fused(write_fused_dir(weak, other, tmp_path / "bad", 0.5), CPU, torch.float32)


def joint_job(tiny, tmp_path, name, **over):
    return {
        "data_file": str(tiny.train_file),
        "output_dir": str(tmp_path / name),
        "log_file": str(tmp_path / f"{name}.log"),
        "indices_file": str(tmp_path / "indices.txt"),
        **BASE,
        **over,
    }


def of_type(events, t):
    return [e for e in events if e.get("type") == t]


def tensors(d):
    return load_file(str(Path(d) / "model.safetensors"))


def run_inproc(job, tmp_path):
    """Run the verb in this process (no interpreter + transformers start-up per run)."""
    path = tmp_path / f"job-{Path(job['output_dir']).name}.json"
    path.write_text(json.dumps(job))
    return joint.run(load_job(str(path), job_schema("joint")))


@pytest.fixture
def one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def test_joint_frozen_layout_and_resume(tiny_model, pair, tmp_path, one_thread):
    weak, strong_dir, fused_dir = pair
    (tmp_path / "indices.txt").write_text("\n".join(["0", "3", "3", "5", "1", "1", "2", "7"] * 3) + "\n")

    # frozen weak branch, built from the two model dirs (no fused dir)
    job = joint_job(
        tiny_model,
        tmp_path,
        "frozen",
        freeze_weak=True,
        weak_path=str(weak),
        strong_path=str(strong_dir),
        fusion_lambda=0.5,
        max_steps=4,
    )
    ckpt = Path(run_inproc(job, tmp_path)["outputs"]["checkpoint"])
    saved, init = tensors(ckpt), tensors(fused_dir)
    assert {k.split(".")[1] for k in saved} == {"0", "1"}
    assert "sub_models.0.lm_head.weight" in saved and "sub_models.1.lm_head.weight" in saved
    assert all(torch.equal(saved[k], init[k]) for k in init if k.startswith("sub_models.0."))
    assert any(not torch.equal(saved[k], init[k]) for k in init if k.startswith("sub_models.1."))
    cfg = json.loads((ckpt / "config.json").read_text())
    assert cfg["architectures"] == ["QwenBoostForCausalLM"] and cfg["num_sub_models"] == 2
    assert cfg["is_llmboost"] is False and cfg["fusion_lambda"] == 0.5 and len(cfg["sub_model_cfgs"]) == 2
    assert (ckpt / "tokenizer.json").is_file()
    load_fused(ckpt, CPU, torch.float32)  # our own output reads back

    # both trainable: straight vs stopped-and-resumed give the same weights
    straight = Path(
        run_inproc(joint_job(tiny_model, tmp_path, "straight", fused_dir=str(fused_dir)), tmp_path)["outputs"][
            "checkpoint"
        ]
    )
    assert not torch.equal(tensors(straight)["sub_models.0.lm_head.weight"], init["sub_models.0.lm_head.weight"])
    with pytest.raises(Terminated):
        run_inproc(joint_job(tiny_model, tmp_path, "split", fused_dir=str(fused_dir), stop_after_steps=3), tmp_path)
    assert (tmp_path / "split" / "checkpoint-3" / "COMPLETE").is_file()
    res = run_inproc(joint_job(tiny_model, tmp_path, "split", fused_dir=str(fused_dir)), tmp_path)
    assert res["metrics"]["resumed_from_step"] == 3 and res["metrics"]["steps"] == 8
    a, b = tensors(straight), tensors(res["outputs"]["checkpoint"])
    assert max((a[k] - b[k]).abs().max().item() for k in a) <= 1e-6


def test_out_of_range_index(tiny_model, pair, tmp_path):
    (tmp_path / "indices.txt").write_text("0\n1\n\n999999\n")
    rc, ev = run_kernel("joint", joint_job(tiny_model, tmp_path, "bad", fused_dir=str(pair[2])), tmp_path)
    err = of_type(ev, "error")[0]
    assert rc == 2 and err["line"] == 4 and err["file"].endswith("indices.txt"), ev


def test_continued_sft_trains_as_the_strong_branch(tiny_model, pair, tmp_path, one_thread):
    """Step 5c: model_path instead of a fused model trains the same examples, steps and tokens; with
    λ = 1 and the weak branch frozen the fused model's strong branch is the plain model, so both
    runs end with the same weights."""
    weak, strong_dir, fused_dir = pair
    (tmp_path / "indices.txt").write_text("\n".join(["0", "3", "3", "5", "1", "1", "2", "7"] * 3) + "\n")
    lam1 = write_fused_dir(weak, strong_dir, tmp_path / "lambda-1", 1.0)
    m1 = tmp_path / "m1"  # the strong model as a model directory of its own, tokenizer included
    m1.mkdir()
    for f in [*Path(strong_dir).glob("*"), *Path(weak).glob("tokenizer*")]:
        (m1 / f.name).write_bytes(f.read_bytes())
    fused = run_inproc(joint_job(tiny_model, tmp_path, "fused", fused_dir=str(lam1), freeze_weak=True), tmp_path)
    plain = run_inproc(joint_job(tiny_model, tmp_path, "plain", model_path=str(m1)), tmp_path)
    for key in ("steps", "trained_tokens", "target_tokens", "train_samples"):
        assert plain["metrics"][key] == fused["metrics"][key], key
    assert plain["metrics"]["steps"] == 8 and plain["metrics"]["trained_tokens"] > 0
    got = tensors(plain["outputs"]["checkpoint"])
    strong = {
        k[len("sub_models.1.") :]: v
        for k, v in tensors(fused["outputs"]["checkpoint"]).items()
        if k.startswith("sub_models.1.")
    }
    assert set(got) == set(strong)
    assert max((got[k] - strong[k]).abs().max().item() for k in got) <= 1e-4
    assert any(not torch.equal(got[k], v) for k, v in tensors(strong_dir).items())
    load_model(plain["outputs"]["checkpoint"], CPU, torch.float32)  # a plain HF model

    with pytest.raises(InvalidInput, match="exactly one"):
        run_inproc(joint_job(tiny_model, tmp_path, "both", model_path=str(m1), fused_dir=str(fused_dir)), tmp_path)


def test_the_stage1_prompt_format_trains_on_exactly_the_stage1_sft_examples(tiny_model):
    """joint.promptFormat stage1: 5b and 5c see each record as Stage-1 SFT saw it (system prompt,
    answer, eos; the answer carries the loss with loss_on completion); conversation: no system
    prompt, the chat template's end of turn."""
    from wmss_kernels import sft
    from wmss_kernels.data import read_records
    from wmss_kernels.modeling import load_tokenizer

    tok = load_tokenizer(tiny_model.model_dir)
    records = read_records(tiny_model.train_file, "messages")[:6]
    positions = [3, 0, 5, 3]
    system = " You are a helpful assistant."
    stage1 = joint.build_examples(tok, records, positions, 256, "completion", system)
    reference = sft.build_examples(tok, records, system, 256)
    assert [e["input_ids"] for e in stage1] == [reference[p]["input_ids"] for p in positions]
    assert [e["n_targets"] for e in stage1] == [reference[p]["n_targets"] for p in positions]
    conversation = joint.build_examples(tok, records, positions, 256, "completion")
    assert conversation[0]["input_ids"] != stage1[0]["input_ids"]
    assert tok.decode(stage1[0]["input_ids"]).count(system.strip()) == 1
    assert system.strip() not in tok.decode(conversation[0]["input_ids"])
