"""The fused weak+strong model of step 5 (docs/method.md#the-fused-model-steps-5a-and-5b) and its on-disk layout.

    z_mix = (1 − λ)·z_weak + λ·z_strong,   weak = sub_models.0, strong = sub_models.1

The mix is in logit space, followed by one softmax (in the loss). Layout of a fused directory
(docs/kernel-protocol.md): config.json = the weak config plus num_sub_models, architectures
["QwenBoostForCausalLM"], is_llmboost, sub_model_cfgs [weak, strong], fusion_lambda; weights
with keys sub_models.{i}.<key> in model.safetensors or shards + index; the weak tokenizer.
"""

import copy
import json
from pathlib import Path

import torch
from safetensors import safe_open
from torch import nn

from . import checkpoints
from .heads import linear_cross_entropy_sum
from .jobs import Mismatch, check, contract
from .modeling import check_model_dir, load_model
from .protocol import InvalidInput

# Config keys that change the parameter shapes or the computation: two branches fed the same
# tokens must agree on all of them (the original even built both from the weak config). The list
# is pipeline/kernelJobs.ts's, which step 5a checks too, generated into job_schema.json.
ARCH_KEYS = tuple(contract()["architectureKeys"])


def check_same_architecture(weak_cfg, strong_cfg, where=None):
    diff = [k for k in ARCH_KEYS if weak_cfg.get(k) != strong_cfg.get(k)]
    if diff:
        detail = ", ".join(f"{k} ({weak_cfg.get(k)!r} vs {strong_cfg.get(k)!r})" for k in diff)
        raise InvalidInput(f"weak and strong models differ in architecture: {detail}", file=where)


class FusedCausalLM(nn.Module):
    def __init__(self, weak, strong, fusion_lambda, sub_model_cfgs=None):
        super().__init__()
        self.sub_model_cfgs = sub_model_cfgs or [weak.config.to_dict(), strong.config.to_dict()]
        check_same_architecture(*self.sub_model_cfgs)
        self.sub_models = nn.ModuleList([weak, strong])
        self.fusion_lambda = float(fusion_lambda)

    def gradient_checkpointing_enable(self, **kwargs):
        for m in self.sub_models:
            m.gradient_checkpointing_enable(**kwargs)

    def _logits(self, sub, input_ids, attention_mask):
        with _grad_unless_frozen(sub):
            return sub(input_ids=input_ids, attention_mask=attention_mask, use_cache=False).logits

    def forward(self, input_ids, attention_mask=None):
        lam = self.fusion_lambda
        z = self._logits(self.sub_models[0], input_ids, attention_mask)
        z_strong = self._logits(self.sub_models[1], input_ids, attention_mask)
        # In place: (B, T, vocab) logits are the biggest activations here; a fresh z_mix would be a third copy.
        # Safe for autograd because the lm_head matmul does not keep its output for backward.
        return z.mul_(1.0 - lam).add_(z_strong, alpha=lam)


def _grad_unless_frozen(sub):
    # A frozen branch needs no autograd graph: skip storing its activations entirely.
    frozen = not any(p.requires_grad for p in sub.parameters())
    return torch.set_grad_enabled(torch.is_grad_enabled() and not frozen)


class FusedLMLoss(nn.Module):
    """The training forward of the fused model: summed next-token cross-entropy of z_mix.

    (1 − λ)·h_weak·W_weakᵀ + λ·h_strong·W_strongᵀ = [(1 − λ)·h_weak, λ·h_strong]·[W_weak, W_strong]ᵀ,
    so the mixed logits are one matmul over the concatenated hidden states and heads, which
    heads.linear_cross_entropy_sum takes chunk by chunk: no [B, T, vocab] tensor, for either branch.
    """

    def __init__(self, fused):
        super().__init__()
        self.fused = fused
        # summed CE of each branch on its own (weak, strong), since tracking.branch_sums last read
        # them: logged beside the mixed loss. The extra cost is one forward of each head per
        # micro-batch, so only a tracked job turns it on, on every 20th step (tracking.log_branch_losses).
        self.track_branches = False
        self.branch_loss_sums = None

    def forward(self, input_ids, labels):
        lam, subs = self.fused.fusion_lambda, self.fused.sub_models
        hidden = []
        for sub in subs:
            with _grad_unless_frozen(sub):
                # right padding under causal attention: no mask needed (see train_loop.collate)
                hidden.append(
                    getattr(sub, sub.base_model_prefix)(input_ids=input_ids, use_cache=False).last_hidden_state
                )
        heads = [sub.get_output_embeddings().weight for sub in subs]
        if self.track_branches:
            with torch.no_grad():
                sums = torch.stack(
                    [linear_cross_entropy_sum(h.detach(), w.detach(), labels) for h, w in zip(hidden, heads)]
                )
                self.branch_loss_sums = sums if self.branch_loss_sums is None else self.branch_loss_sums + sums
        mixed = torch.cat([(1.0 - lam) * hidden[0], lam * hidden[1]], dim=-1)
        return linear_cross_entropy_sum(mixed, torch.cat(heads, dim=1), labels)


def fused_config(model, dtype):
    """config.json of the fused layout for `model` saved in `dtype`."""
    name = str(dtype).removeprefix("torch.")
    subs = [copy.deepcopy(c) for c in model.sub_model_cfgs]
    for c in subs:
        c["dtype"] = name
        c.pop("torch_dtype", None)
    cfg = copy.deepcopy(subs[0])
    cfg.update(
        {
            "num_sub_models": 2,
            "architectures": ["QwenBoostForCausalLM"],
            "is_llmboost": False,
            "sub_model_cfgs": subs,
            "fusion_lambda": model.fusion_lambda,
        }
    )
    return cfg


def save_fused(model, out_dir, tokenizer=None, state=None):
    """Write the fused layout; lm_head is written for both branches even when tied. `state`: the
    full `sub_models.*` tensors gathered from a sharded model, instead of the model's own."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    if state is None:
        state = {}
        for i, sub in enumerate(model.sub_models):
            for k, v in sub.state_dict().items():
                state[f"sub_models.{i}.{k}"] = v
    dtype = next(iter(state.values())).dtype
    checkpoints.save_tensors(state, out_dir)
    checkpoints.write_json(out_dir / "config.json", fused_config(model, dtype))
    if tokenizer is not None:
        tokenizer.save_pretrained(out_dir)


def _weight_files(path):
    index = path / "model.safetensors.index.json"
    if index.is_file():
        return sorted(set(json.loads(index.read_text())["weight_map"].values()))
    if (path / "model.safetensors").is_file():
        return ["model.safetensors"]
    raise InvalidInput("fused directory has no model.safetensors or model.safetensors.index.json", file=path)


def load_fused_weights(model, path, device="cpu"):
    """Stream the tensors of a fused dir into `model` one at a time (peak memory = model + 1 tensor)."""
    path = Path(path)
    params = dict(model.named_parameters(remove_duplicate=False))
    params.update(dict(model.named_buffers(remove_duplicate=False)))
    loaded = set()
    with torch.no_grad():
        for name in _weight_files(path):
            with safe_open(str(path / name), framework="pt", device=str(device)) as f:
                for k in f.keys():
                    if k not in params:
                        raise InvalidInput(f"unexpected tensor {k!r} in {name}", file=path)
                    t = f.get_tensor(k)
                    if t.shape != params[k].shape:
                        raise InvalidInput(
                            f"tensor {k!r} has shape {tuple(t.shape)}, the config says {tuple(params[k].shape)}",
                            file=path,
                        )
                    params[k].copy_(t)
                    loaded.add(k)
    # A name may be missing when its tensor is shared with a loaded one (tied lm_head).
    loaded_ids = {id(params[k]) for k in loaded}
    missing = [
        k for k, p in model.named_parameters(remove_duplicate=False) if k not in loaded and id(p) not in loaded_ids
    ]
    if missing:
        raise InvalidInput(
            f"missing tensors: {', '.join(missing[:5])}"
            + (f" and {len(missing) - 5} more" if len(missing) > 5 else ""),
            file=path,
        )


def _build_sub(cfg, device, dtype):
    from transformers import AutoConfig, AutoModelForCausalLM
    from transformers.initialization import no_init_weights

    cfg = dict(cfg)
    config = AutoConfig.for_model(cfg.pop("model_type"), **cfg)
    # Weights come from disk right after; random init of an 8B model would only cost time.
    with no_init_weights(), torch.device(device):
        sub = AutoModelForCausalLM.from_config(config, dtype=dtype)
    if config.tie_word_embeddings:
        sub.tie_weights()
    return sub


def _read_config(path):
    if not (path / "config.json").is_file():
        raise InvalidInput("fused directory has no config.json", file=path)
    try:
        return json.loads((path / "config.json").read_text())
    except json.JSONDecodeError as e:
        raise InvalidInput(f"config.json is not valid JSON: {e}", file=path / "config.json")


def read_fusion_lambda(path):
    """λ of a fused dir: its config.json's fusion_lambda (step 5a writes joint.fusionLambda there),
    checked against the range the config has (job_schema.json's fusionLambda)."""
    cfg = _read_config(Path(path))
    if "fusion_lambda" not in cfg:
        raise InvalidInput("missing fusion_lambda", file=Path(path) / "config.json", field="fusion_lambda")
    try:
        return check(cfg["fusion_lambda"], contract()["fusionLambda"], "fusion_lambda")
    except Mismatch as e:
        raise InvalidInput(e.message, file=Path(path) / "config.json", field="fusion_lambda")


def load_fused(path, device, dtype):
    """A FusedCausalLM from a fused dir, with the λ of its config.json."""
    path = Path(path)
    cfg = _read_config(path)
    subs = cfg.get("sub_model_cfgs")
    if not (isinstance(subs, list) and len(subs) == 2 and all(isinstance(c, dict) for c in subs)):
        raise InvalidInput(
            "expected a list of 2 sub-model configs (weak, strong)", file=path / "config.json", field="sub_model_cfgs"
        )
    check_same_architecture(subs[0], subs[1], where=path / "config.json")
    lam = read_fusion_lambda(path)
    weak, strong = (_build_sub(c, device, dtype) for c in subs)
    model = FusedCausalLM(weak, strong, lam, subs)
    load_fused_weights(model, path, device)
    return model.eval()


def fuse_from_dirs(weak_path, strong_path, fusion_lambda, device, dtype):
    """Build the fused model straight from two HF model dirs (without step 5a)."""
    cfgs = []
    for p in (weak_path, strong_path):
        check_model_dir(p)
        cfgs.append(json.loads((Path(p) / "config.json").read_text()))
    check_same_architecture(cfgs[0], cfgs[1], where=strong_path)
    weak = load_model(weak_path, device, dtype)
    strong = load_model(strong_path, device, dtype)
    return FusedCausalLM(weak, strong, fusion_lambda, cfgs)
