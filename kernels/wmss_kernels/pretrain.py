"""Pre-training of the tiny model (make-tiny, tiny.py): a weak base that knows something.

The demo's base would otherwise be random, so the weak branch of joint training (step 5b) would
carry no knowledge at all. A short causal-LM phase on an easier, related corpus, in the Stage-1
chat format: sums and differences of one-digit numbers, and copying (numbers on their own, n + 0,
n - 0, 0 + n, tens plus a digit). It teaches the model the answer format and a few facts; it then
solves a small share of the held-out task (sums and differences of up to max_digits digits) and
stays well below m1. No problem of the held-out test set (same operands and operator) is in the
corpus.

Plain PyTorch on purpose: one process, fixed seed, fixed order, so the same job gives the same
weights on the same machine; the loss curve is written next to the model.
"""

import json
import math
import random
import time

import torch
import torch.nn.functional as F

from .chat import DEFAULT_SFT_SYSTEM_PROMPT

_COPY_QUESTIONS = ["Repeat {n}.", "Write the number {n}.", "Copy {n}."]
_QUESTIONS = {
    "+": ["What is {a} + {b}?", "Compute {a} + {b}.", "Add {a} and {b}."],
    "-": ["What is {a} - {b}?", "Compute {a} - {b}.", "Subtract {b} from {a}."],
}


def _copy_completion(n: int) -> str:
    return f"<think>{n}</think> <answer>\\boxed{{{n}}}</answer>"


def easy_corpus(held_out, max_digits, rng):
    """(question, completion) pairs: every sum and difference of one-digit numbers not in held_out
    (by operands), and copies of numbers of up to max_digits digits, each with every phrasing.
    held_out: (a, op, b) triples."""
    from .tiny import completion  # tiny.py imports this module: import here, not at the top

    pairs = []
    for a in range(10):
        for b in range(10):
            for op, result in (("+", a + b), ("-", a - b)):
                if (a, op, b) in held_out or result < 0:
                    continue
                pairs += [(q.format(a=a, b=b), completion(a, op, b, result)) for q in _QUESTIONS[op]]
    # copying inside the task's own format: adding or taking away nothing, and a multiple of ten
    # plus one digit (the digits side by side)
    copies = [(n, "+", 0) for n in range(10**max_digits)] + [(n, "-", 0) for n in range(10**max_digits)]
    copies += [(0, "+", n) for n in range(10**max_digits)]
    copies += [(t, "+", d) for t in range(10, 10**max_digits, 10) for d in range(1, 10)]
    for a, op, b in copies:
        if (a, op, b) in held_out or (a < 10 and b < 10):  # one-digit problems are above already
            continue
        result = a + b if op == "+" else a - b
        pairs += [(q.format(a=a, b=b), completion(a, op, b, result)) for q in _QUESTIONS[op]]
    for n in range(10**max_digits):
        pairs += [(q.format(n=n), _copy_completion(n)) for q in _COPY_QUESTIONS]
    rng.shuffle(pairs)
    return pairs


def _encode(tok, pairs):
    """Whole Stage-1 conversations (system prompt, question, completion, eos) as token ids; the loss
    covers every token, as in pre-training."""
    out = []
    for question, answer in pairs:
        # with the system prompt: measured, the base then answers under the evaluation's prompt
        # (8 % of the held-out sums after 400 steps), without it hardly at all (2 %)
        messages = [{"role": "system", "content": DEFAULT_SFT_SYSTEM_PROMPT}, {"role": "user", "content": question}]
        prompt = tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        out.append(tok(prompt + answer + tok.eos_token, add_special_tokens=False)["input_ids"])
    return out


def _batch(seqs, pad_id):
    width = max(len(s) for s in seqs)
    ids = torch.full((len(seqs), width), pad_id, dtype=torch.long)
    labels = torch.full((len(seqs), width), -100, dtype=torch.long)
    for i, s in enumerate(seqs):
        ids[i, : len(s)] = torch.tensor(s)
        labels[i, : len(s)] = torch.tensor(s)
    return ids, labels


def _lr_at(step, steps, peak, warmup):
    """Linear warm-up, then cosine decay to a tenth of the peak."""
    if step < warmup:
        return peak * (step + 1) / warmup
    t = (step - warmup) / max(1, steps - warmup)
    return peak * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * t)))


def pretrain(model, tok, held_out, *, steps, lr, batch_size, max_digits, seed, curve_file):
    """Trains `model` in place for `steps` AdamW steps; writes one {"step", "loss", "lr"} line per
    step to curve_file and returns a summary for make-tiny's metrics."""
    rng = random.Random(seed + 1)
    pairs = easy_corpus(held_out, max_digits, rng)
    seqs = _encode(tok, pairs)
    torch.manual_seed(seed + 1)
    # one thread: the same weights on any machine with this torch (and no fight for shared cores)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.0)
    warmup = max(1, steps // 20)
    order, cursor = list(range(len(seqs))), len(seqs)
    model.train()
    losses, started = [], time.monotonic()
    with open(curve_file, "w", encoding="utf-8") as curve:
        for step in range(steps):
            if cursor + batch_size > len(order):  # a fresh permutation per pass over the corpus
                rng.shuffle(order)
                cursor = 0
            ids, labels = _batch([seqs[i] for i in order[cursor : cursor + batch_size]], tok.pad_token_id)
            cursor += batch_size
            for group in opt.param_groups:
                group["lr"] = _lr_at(step, steps, lr, warmup)
            logits = model(input_ids=ids).logits
            loss = F.cross_entropy(logits[:, :-1].flatten(0, 1), labels[:, 1:].flatten(), ignore_index=-100)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            losses.append(loss.item())
            curve.write(json.dumps({"step": step + 1, "loss": round(losses[-1], 5), "lr": opt.param_groups[0]["lr"]}))
            curve.write("\n")
    model.eval()
    torch.set_num_threads(threads)
    return {
        "pretrain_steps": steps,
        "pretrain_samples": len(seqs),
        "pretrain_first_loss": losses[0] if losses else None,
        "pretrain_final_loss": sum(losses[-10:]) / len(losses[-10:]) if losses else None,
        "pretrain_seconds": round(time.monotonic() - started, 1),
    }
