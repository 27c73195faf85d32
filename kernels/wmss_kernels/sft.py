"""sft (step 1): Stage-1 supervised fine-tuning of the base model → m1 (docs/method.md#stage-1-sft-step-1).

Prompt = chat template of [system, user] with the generation prompt; completion = the raw
assistant text + eos. Loss on completion tokens only.
"""

import logging

from . import checkpoints
from .chat import sft_texts, tokenize_pair
from .data import read_records
from .modeling import check_model_dir, load_model, load_tokenizer, pick_device, pick_dtype
from .protocol import InvalidInput
from .train_batches import make_example
from .train_loop import train
from .train_plan import check_train_job, finished, plan

log = logging.getLogger("wmss_kernels.sft")


def build_examples(tok, records, system_prompt, max_length):
    out = []
    for rec in records:
        prompt, completion = sft_texts(tok, rec, system_prompt)
        ids, n_prompt = tokenize_pair(tok, prompt, prompt + completion, max_length)
        out.append(make_example(ids, n_prompt))
    return out


def run(job):
    check_train_job(job)
    check_model_dir(job.model_path)
    device = pick_device(job)
    dtype = pick_dtype(job.dtype, device)

    tok = load_tokenizer(job.model_path)
    records = read_records(job.data_file, job.data_format)
    if not records:
        raise InvalidInput("no training records", file=job.data_file)
    examples = build_examples(tok, records, job.system_prompt, job.max_length)
    if sum(e["n_targets"] for e in examples) == 0:
        # every prompt (system prompt + chat template + question) fills max_length on its own:
        # say how far to raise it, measured, so the first correction is the right one
        prompts = [
            len(tok(sft_texts(tok, r, job.system_prompt)[0], add_special_tokens=False)["input_ids"]) for r in records
        ]
        raise InvalidInput(
            f"{job.max_length} tokens leave no completion tokens to train on: every prompt (system prompt, "
            f"chat template and question) is at least {min(prompts)} tokens long, the longest {max(prompts)}; "
            f"raise it to at least {min(prompts) + 1} (above {max(prompts)} to train on every sample)",
            field="max_length",
            file=job._path,
        )
    hp = plan(job, len(examples), {"verb": "sft", "system_prompt": job.system_prompt, "data_format": job.data_format})
    done = finished(job, hp)
    if done is not None:
        log.info("final checkpoint already complete: %s", done["outputs"]["checkpoint"])
        return done

    return train_causal_lm(job, tok, examples, hp, device, dtype, "sft")


def train_causal_lm(job, tok, examples, hp, device, dtype, what):
    """Train the plain model at job.model_path (steps 1 and 5c) and save it with its tokenizer."""
    model = load_model(job.model_path, device, dtype)
    log.info("%s: %d samples, %d steps, %s %s", what, len(examples), hp["max_steps"], device, dtype)

    def save_model(m, path, state_dict=None):
        # state_dict: the full weights gathered from the shards (FSDP); else the model's own
        m.save_pretrained(path, state_dict=state_dict)
        tok.save_pretrained(path)

    return train(
        job,
        model,
        examples,
        hp,
        save_model=save_model,
        device=device,
        load_weights=lambda m, path: checkpoints.load_weights(m, path, device),
    )
