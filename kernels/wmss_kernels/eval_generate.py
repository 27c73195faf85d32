"""Generation for evaluate (step 7): the completions of one set's prompts, greedy or sampled.

Two engines (the job's `engine`):
- continuous (default): decode_engine.DecodeEngine, `batch_size` slots over one KV cache; a
  finished row's slot takes the next waiting prompt at once. Sampling noise is a hash of the
  seed, the prompt's position in its set and the sample index, so sampled generations do not
  depend on the slot count, the order of the rows or the sharding over devices.
- batches: fixed batches of `batch_size` prompts through transformers `generate` (static KV
  cache and compiled decoding on CUDA), the generator before the engine; sampling there draws
  from torch's generator seeded per set, so its draws depend on the batch layout.
"""

import logging
import time

import torch

from .decode_engine import DecodeEngine, fitting_slots

log = logging.getLogger(__name__)


@torch.no_grad()
def generate(model, tok, prompt_ids, max_new_tokens, eos_ids, static_shape=None, sampling=None):
    """Continuations of each prompt: (new token ids without padding, truncated flag); the ids of a
    row that stopped end with its eos token. sampling: {temperature, top_p, n}, n rows per prompt
    (prompt-major); None or temperature 0 is greedy, one row per prompt.
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
        ids[b, width - len(p) :] = torch.tensor(p)
        mask[b, width - len(p) :] = 1
    extra = {"cache_implementation": "static"} if static_shape else {}
    samples = 1
    if sampling and sampling["temperature"] > 0:
        samples = sampling["n"]
        # explicit values, so a model's generation_config (top_k 20, ...) does not change them
        extra.update(
            do_sample=True,
            temperature=sampling["temperature"],
            top_p=sampling["top_p"],
            top_k=0,
            num_return_sequences=samples,
        )
    else:
        extra.update(do_sample=False, temperature=None, top_p=None, top_k=None)
    out = model.generate(
        input_ids=ids.to(device),
        attention_mask=mask.to(device),
        max_new_tokens=max_new_tokens,
        eos_token_id=eos_ids,
        pad_token_id=tok.pad_token_id,
        use_cache=True,
        repetition_penalty=1.0,
        **extra,
    )
    results = []
    for row in out[: n * samples, width:].tolist():
        stop = next((i for i, t in enumerate(row) if t in eos_ids), None)
        if stop is None:
            results.append((row, True))  # ran into max_new_tokens without an eos
        else:
            results.append((row[: stop + 1], False))
    return results


def static_batch_shape(job, device, prompt_ids):
    """(batch rows, prompt width) for static-cache generation of a set, or None (dynamic)."""
    use = device.type == "cuda" if job.static_cache is None else job.static_cache
    if not use or not prompt_ids:
        return None
    longest = max(len(p) for p in prompt_ids)
    return min(job.batch_size, len(prompt_ids)), -(-longest // 64) * 64


def eos_token_ids(model, tok) -> list[int]:
    eos = model.generation_config.eos_token_id
    eos = [] if eos is None else ([eos] if isinstance(eos, int) else list(eos))
    if tok.eos_token_id is not None and tok.eos_token_id not in eos:
        eos.append(tok.eos_token_id)
    return eos


def continuous_engine(job, model, work, eos_ids):
    """The engine for all sets of the job, or None for engine "batches". One compiled step serves
    every set: its cache holds the longest prompt plus the largest budget of any set, and each
    row stops at its own set's budget."""
    if job.engine != "continuous":
        return None
    capacity = max((len(r["prompt_ids"]) + ds["max_new_tokens"] for ds, rows in work for r in rows), default=1)
    # no more slots than a set has generations
    wanted = min(job.batch_size, max((len(rows) for _, rows in work), default=1) * job.n_samples) or 1
    slots = fitting_slots(model, wanted, capacity)
    if slots < wanted:
        log.warning(
            "evaluate: %d slots instead of %d: the KV cache of %d tokens a slot must fit in the device's free memory",
            slots,
            wanted,
            capacity,
        )
    return DecodeEngine(
        model,
        slots=slots,
        capacity=capacity,
        eos_ids=eos_ids,
        temperature=job.temperature,
        top_p=job.top_p,
        seed=job.seed,
    )


def _completion(ids, truncated, latency):
    return {"token_ids": ids, "finish_reason": "length" if truncated else "stop", "latency_s_per_prompt": latency}


def generate_completions(model, tok, job, device, engine, rows, max_new_tokens, eos_ids, on_progress):
    """The one entry point of generation for a set: per row (its `prompt_ids` and `position`),
    job.n_samples dicts {token_ids, finish_reason, latency_s_per_prompt}. on_progress(prompts
    done, tokens generated), counted within the set, runs between steps; it may raise to stop."""
    prompt_ids = [r["prompt_ids"] for r in rows]
    if engine is not None:
        started = time.monotonic()
        out = engine.generate(
            prompt_ids,
            max_new_tokens,
            samples=job.n_samples,
            keys=[r["position"] for r in rows],
            on_progress=on_progress,
        )
        # rows share the slots for the whole set: the set's time over its prompts, as vLLM reports it
        latency = (time.monotonic() - started) / max(len(rows), 1)
        return [[_completion(ids, truncated, latency) for ids, truncated in samples] for samples in out]

    sampling = {"temperature": job.temperature, "top_p": job.top_p, "n": job.n_samples}
    torch.manual_seed(job.seed)  # sampled sets are reproducible for the same batches
    # similar prompt lengths per batch waste less compute on padding
    order = sorted(range(len(prompt_ids)), key=lambda i: len(prompt_ids[i]))
    shape = static_batch_shape(job, device, prompt_ids)
    results, done, tokens = [None] * len(prompt_ids), 0, 0
    for b in range(0, len(order), job.batch_size):
        on_progress(done, tokens)
        batch = order[b : b + job.batch_size]
        started = time.monotonic()
        generated = generate(model, tok, [prompt_ids[i] for i in batch], max_new_tokens, eos_ids, shape, sampling)
        latency = (time.monotonic() - started) / len(batch)
        n = len(generated) // len(batch)
        for j, i in enumerate(batch):
            results[i] = [_completion(ids, truncated, latency) for ids, truncated in generated[j * n : (j + 1) * n]]
        done += len(batch)
        tokens += sum(len(ids) for ids, _ in generated)
    on_progress(done, tokens)
    return results


def set_progress(name, prompts_done, prompts, tokens, elapsed_s):
    """The progress line's detail for one set: prompts, tokens and an ETA from the prompt rate
    (short answers end first, so early on it is optimistic)."""
    text = f"{name}: {prompts_done}/{prompts} prompts · {tokens} tokens"
    if prompts_done:
        left = round(elapsed_s / prompts_done * (prompts - prompts_done))
        text += f" · ETA {left // 60}m{left % 60:02d}s"
    return text
