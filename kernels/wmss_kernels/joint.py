"""joint (step 5b): Stage-3 joint training of the fused weak+strong model (docs/method.md#the-fused-model-steps-5a-and-5b).

Cross-entropy on z_mix = (1 − λ)·z_weak + λ·z_strong. The training set is the resample of step 3:
`indices_file` lists record positions (duplicates kept, as in the repo). With model_path instead of
a fused model, the same training runs on a plain model: step 5c, continued SFT of m1. Texts are whole
conversations through the chat template, no system prompt; by default the loss covers every
token, prompt included, as TRL did for the repo.
"""

import hashlib
import logging
from pathlib import Path

from .chat import conversation_text, sft_texts, tokenize_pair
from .data import read_records
from .fused import FusedLMLoss, fuse_from_dirs, load_fused, load_fused_weights, read_fusion_lambda, save_fused
from .modeling import load_tokenizer, pick_device, pick_dtype
from .protocol import InvalidInput
from .sft import train_causal_lm
from .train_batches import make_example
from .train_loop import train
from .train_plan import check_train_job, finished, plan

log = logging.getLogger("wmss_kernels.joint")


def continued_sft(job, tok, examples, hp, device, dtype):
    """Step 5c, the baseline arm: the plain model_path (m1) trained on exactly the examples, order,
    steps and schedule the fused model gets in step 5b, with the plain causal-LM loss: what the
    same compute gives without the weak branch."""
    return train_causal_lm(job, tok, examples, hp, device, dtype, "continued sft")


def read_indices(path, n_records):
    """Record positions, one per non-empty line; each must be in [0, n_records)."""
    try:
        lines = Path(path).read_text(encoding="utf-8").split("\n")
    except (OSError, UnicodeDecodeError) as e:
        raise InvalidInput(f"cannot read indices file: {e}", file=path)
    out = []
    for n, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            pos = int(line.strip())
        except ValueError:
            raise InvalidInput(f"expected an integer record position, got {line.strip()[:40]!r}", file=path, line=n)
        if not 0 <= pos < n_records:
            raise InvalidInput(
                f"record position {pos} is out of range: the data file has {n_records} records "
                f"(positions 0..{n_records - 1})",
                file=path,
                line=n,
            )
        out.append(pos)
    if not out:
        raise InvalidInput("indices file lists no record positions", file=path)
    return out


def build_examples(tok, records, positions, max_length, loss_on, system_prompt=None):
    """The examples in `positions` order: the original's conversation format, or with a system
    prompt Stage-1 SFT's format (joint.promptFormat stage1, docs/method.md#prompt-formats)."""
    cache = {}  # the resample repeats records; tokenize each once
    for p in set(positions):
        if system_prompt is None:
            prompt, full = conversation_text(tok, records[p])
        else:
            prompt, completion = sft_texts(tok, records[p], system_prompt)
            full = prompt + completion
        ids, n_prompt = tokenize_pair(tok, prompt, full, max_length)
        cache[p] = make_example(ids, n_prompt if loss_on == "completion" else 0)
    return [cache[p] for p in positions]


def fusion_lambda(job):
    """λ comes one way: from the fused dir's config.json (step 5a writes joint.fusionLambda there),
    or from the job when this kernel fuses weak_path + strong_path itself; never from both."""
    if job.fused_dir is not None:
        if job.fusion_lambda is not None:
            raise InvalidInput(
                "a job with fused_dir takes λ from the fused directory's config.json; leave fusion_lambda out",
                file=job._path,
                field="fusion_lambda",
            )
        return read_fusion_lambda(job.fused_dir)
    if job.fusion_lambda is None:
        raise InvalidInput(
            "required with weak_path + strong_path: λ of the fusion this kernel builds",
            file=job._path,
            field="fusion_lambda",
        )
    return job.fusion_lambda


def check_sources(job):
    """Exactly one model source: fused_dir, weak_path + strong_path, or model_path (step 5c)."""
    pair = (job.weak_path, job.strong_path)
    whole_pair = None not in pair
    given = (job.fused_dir is not None) + whole_pair + (job.model_path is not None)
    if given != 1 or (pair != (None, None) and not whole_pair):
        raise InvalidInput(
            "give exactly one of fused_dir, both weak_path and strong_path, or model_path (not several ways)",
            file=job._path,
            field="fused_dir",
        )


def run(job):
    check_train_job(job)
    check_sources(job)
    plain = job.model_path is not None
    lam = None if plain else fusion_lambda(job)
    device = pick_device(job)
    dtype = pick_dtype(job.dtype, device)

    tok = load_tokenizer(job.model_path or job.fused_dir or job.weak_path)
    records = read_records(job.data_file, job.data_format)
    if not records:
        raise InvalidInput("no training records", file=job.data_file)
    positions = read_indices(job.indices_file, len(records))
    examples = build_examples(tok, records, positions, job.max_length, job.loss_on, job.system_prompt)
    if sum(e["n_targets"] for e in examples) == 0:
        raise InvalidInput(
            f"max_length {job.max_length} leaves no tokens to train on", field="max_length", file=job._path
        )
    digest = hashlib.sha256(" ".join(map(str, positions)).encode()).hexdigest()[:16]
    same = {"loss_on": job.loss_on, "data_format": job.data_format, "indices_sha256": digest}
    if job.system_prompt is not None:  # named only when set: checkpoints of conversation-format runs still resume
        same["prompt_format"] = "stage1"
        same["system_prompt_sha256"] = hashlib.sha256(job.system_prompt.encode()).hexdigest()[:16]
    if plain:
        hp = plan(job, len(examples), {"verb": "continued-sft", **same})
    else:
        hp = plan(job, len(examples), {"verb": "joint", "fusion_lambda": lam, "freeze_weak": job.freeze_weak, **same})
    done = finished(job, hp)
    if done is not None:
        log.info("final checkpoint already complete: %s", done["outputs"]["checkpoint"])
        return done
    if plain:
        return continued_sft(job, tok, examples, hp, device, dtype)

    if job.fused_dir:
        model = load_fused(job.fused_dir, device, dtype)
    else:
        model = fuse_from_dirs(job.weak_path, job.strong_path, lam, device, dtype)
    if job.freeze_weak:
        # requires_grad False also keeps the branch out of the optimizer (train() takes only
        # trainable parameters) and lets forward skip its autograd graph
        model.sub_models[0].requires_grad_(False)
    log.info(
        "joint: %d samples (%d distinct), %d steps, λ=%s, freeze_weak=%s, %s %s",
        len(examples),
        len(set(positions)),
        hp["max_steps"],
        model.fusion_lambda,
        job.freeze_weak,
        device,
        dtype,
    )

    return train(
        job,
        model,
        examples,
        hp,
        save_model=lambda m, path, state=None: save_fused(m, path, tok, state),
        load_weights=lambda m, path: load_fused_weights(m, path, device),
        loss_module=FusedLMLoss(model),
        device=device,
    )
