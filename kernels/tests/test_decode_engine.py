"""The continuous-batching engine (decode_engine) on the tiny model, float32 on CPU (eager)."""

import pytest
import torch
from wmss_kernels.decode_engine import DecodeEngine, pick_tokens
from wmss_kernels.eval_generate import eos_token_ids, generate
from wmss_kernels.modeling import load_model, load_tokenizer


@pytest.fixture(scope="module")
def tiny(tiny_model):
    tok = load_tokenizer(tiny_model.model_dir)
    model = load_model(tiny_model.model_dir, torch.device("cpu"), torch.float32)
    # sharpen the head so greedy choices are not near-ties that float noise could flip
    with torch.no_grad():
        model.get_output_embeddings().weight.mul_(8)
    return model, tok


def random_prompts(n, seed, lo=3, hi=40):
    g = torch.Generator().manual_seed(seed)
    return [
        torch.randint(5, 400, (int(torch.randint(lo, hi, (1,), generator=g)),), generator=g).tolist() for _ in range(n)
    ]


def test_greedy_equals_generate_in_float32(tiny):
    """16 prompts × 64 tokens through 5 slots (so rows are refilled) = transformers generate."""
    model, tok = tiny
    eos = eos_token_ids(model, tok)
    prompts = random_prompts(16, seed=0)
    expected = generate(model, tok, prompts, 64, eos)
    engine = DecodeEngine(model, slots=5, capacity=128, eos_ids=eos)
    got = [samples[0] for samples in engine.generate(prompts, 64)]
    assert got == expected
    assert engine.stats["prefills"] > 1  # slots were refilled


def test_slot_refill_equals_one_prompt_at_a_time(tiny):
    """Prompts of different lengths and budgets, rows that end early on an eos, 3 slots: each row
    is what generating its prompt alone gives."""
    model, tok = tiny
    prompts = random_prompts(10, seed=1)
    budgets = [24, 8, 24, 17, 24, 3, 24, 24, 12, 24]
    never = [model.config.vocab_size + 7]  # an id the model cannot produce: rows run to their budget
    alone = [generate(model, tok, [p], 24, never)[0][0] for p in prompts]
    # an eos the rows do produce, early in some rows and not at all in others
    counts = {}
    for ids in alone:
        for t in set(ids[1:12]):
            counts[t] = counts.get(t, 0) + 1
    eos = max((t for t in counts if counts[t] < len(prompts) - 2), key=lambda t: counts[t])
    expected = []
    for ids, budget in zip(alone, budgets):
        ids = ids[:budget]
        stop = ids.index(eos) if eos in ids else None
        expected.append((ids, True) if stop is None else (ids[: stop + 1], False))
    assert sum(not truncated for _, truncated in expected) >= 2  # some rows end early on the eos
    assert sum(truncated for _, truncated in expected) >= 2  # and others run to their budget

    engine = DecodeEngine(model, slots=3, capacity=64, eos_ids=[eos], refill_at=1)
    got = [samples[0] for samples in engine.generate(prompts, budgets)]
    assert got == expected


def test_sampling_is_fixed_by_the_seed_not_by_the_slots(tiny):
    model, tok = tiny
    eos = eos_token_ids(model, tok)
    prompts = random_prompts(5, seed=2)

    def sample(slots, seed, samples=1):
        engine = DecodeEngine(model, slots=slots, capacity=96, eos_ids=eos, temperature=0.9, top_p=0.95, seed=seed)
        return engine.generate(prompts, 20, samples=samples)

    first = sample(3, seed=11)
    assert sample(3, seed=11) == first
    assert sample(1, seed=11) == first  # one row at a time: the same tokens
    assert sample(3, seed=12) != first
    greedy = DecodeEngine(model, slots=3, capacity=96, eos_ids=eos).generate(prompts, 20)
    assert first != greedy
    several = sample(4, seed=11, samples=3)
    assert all(len(s) == 3 for s in several)
    assert any(len({tuple(ids) for ids, _ in s}) > 1 for s in several)  # samples of a prompt differ


def test_top_p_keeps_the_smallest_set_holding_that_mass():
    probs = torch.tensor([0.5, 0.3, 0.15, 0.05])
    logits = probs.log().expand(4000, 4)
    keys, steps = torch.arange(4000), torch.zeros(4000, dtype=torch.long)
    nucleus = pick_tokens(logits, keys, steps, 1.0, 0.7, seed=3)
    assert set(nucleus.tolist()) == {0, 1}
    assert abs((nucleus == 0).float().mean().item() - 0.5 / 0.8) < 0.05
    full = pick_tokens(logits, keys, steps, 1.0, 1.0, seed=3)
    assert set(full.tolist()) == {0, 1, 2, 3}
    assert abs((full == 2).float().mean().item() - 0.15) < 0.03
    assert pick_tokens(logits[:2], keys[:2], steps[:2], 0.0, 1.0, seed=3).tolist() == [0, 0]


def test_requests_that_do_not_fit_are_refused(tiny):
    model, tok = tiny
    engine = DecodeEngine(model, slots=2, capacity=128, eos_ids=[0])
    with pytest.raises(ValueError, match="prompt 1: 100 tokens \\+ 40 new exceed the capacity 128"):
        engine.generate([[5] * 10, [5] * 100], 40)
    with pytest.raises(ValueError, match="prompt 0"):
        engine.generate([[]], 4)
