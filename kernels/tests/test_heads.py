"""The chunked LM-head paths (heads.py) against the plain formulas they replace: entropy rows,
the linear cross-entropy's loss and gradients, and the training forwards of sft and joint
(no attention mask, no [B, T, vocab] logits) against the masked full-logits loss."""

import pytest
import torch
import torch.nn.functional as F
from test_joint import pair  # noqa: F401  (fixture)
from wmss_kernels.fused import FusedLMLoss, load_fused
from wmss_kernels.heads import LinearCrossEntropy, linear_cross_entropy_sum, row_entropies
from wmss_kernels.modeling import load_model
from wmss_kernels.train_batches import CausalLMLoss, collate, lm_loss_sum, make_example

CPU = torch.device("cpu")


@pytest.mark.parametrize("chunk", [1, 7, 64])
def test_row_entropies_equal_the_formula(chunk):
    g = torch.Generator().manual_seed(0)
    hidden, weight = torch.randn(37, 16, generator=g), 3 * torch.randn(50, 16, generator=g)
    logp = torch.log_softmax(hidden.double() @ weight.double().T, -1)
    want = -(logp.exp() * logp).sum(-1)
    assert torch.allclose(row_entropies(hidden, weight, chunk).double(), want, atol=1e-5)


@pytest.mark.parametrize("chunk", [1, 5, 100])
def test_linear_cross_entropy_loss_and_gradients(chunk):
    g = torch.Generator().manual_seed(1)
    hidden = torch.randn(23, 16, generator=g, dtype=torch.float64, requires_grad=True)
    weight = torch.randn(40, 16, generator=g, dtype=torch.float64, requires_grad=True)
    targets = torch.randint(0, 40, (23,), generator=g)
    got = LinearCrossEntropy.apply(hidden, weight, targets, chunk)
    (2.5 * got).backward()  # a non-unit upstream gradient must be multiplied in
    got_h, got_w = hidden.grad.clone(), weight.grad.clone()
    hidden.grad = weight.grad = None
    want = F.cross_entropy(hidden @ weight.T, targets, reduction="sum")
    (2.5 * want).backward()
    assert torch.allclose(got.double(), want, rtol=1e-6)
    assert torch.allclose(got_h, hidden.grad, atol=1e-6)
    assert torch.allclose(got_w, weight.grad, atol=1e-6)


def padded_batch():
    # right padding, a prompt mask on the first example, a long and a short sequence
    ex = [
        make_example(list(range(3, 40)), 6),
        make_example(list(range(9, 21)), 0),
        make_example(list(range(5, 30)), 10),
    ]
    return collate(ex, CPU, multiple=16)


def grads(params):
    return [p.grad.clone() if p.grad is not None else None for p in params]


def test_sft_forward_equals_masked_full_logits(tiny_model):
    model = load_model(tiny_model.model_dir, CPU, torch.float32).train()
    b = padded_batch()
    assert b["input_ids"].shape[1] == 48  # rounded up to the multiple
    got = CausalLMLoss(model)(b["input_ids"], b["labels"])
    got.backward()
    got_grads = grads(model.parameters())
    model.zero_grad()
    want = lm_loss_sum(model(input_ids=b["input_ids"], attention_mask=b["attention_mask"]).logits, b["labels"])
    want.backward()
    assert torch.allclose(got, want, rtol=1e-5)
    for g, p in zip(got_grads, model.parameters()):
        assert torch.allclose(g, p.grad, atol=1e-5), "gradients differ"


def test_no_targets_gives_zero_loss_with_a_graph(tiny_model):
    model = load_model(tiny_model.model_dir, CPU, torch.float32)
    b = collate([make_example(list(range(3, 10)), 7)], CPU)
    loss = CausalLMLoss(model)(b["input_ids"], b["labels"])
    assert loss.item() == 0.0 and loss.requires_grad


@pytest.mark.parametrize("freeze_weak", [False, True])
def test_fused_forward_equals_mixed_logits(pair, freeze_weak):  # noqa: F811
    fused = load_fused(pair[2], CPU, torch.float32).train()
    fused.fusion_lambda = 0.3
    fused.sub_models[0].requires_grad_(not freeze_weak)
    b = padded_batch()
    got = FusedLMLoss(fused)(b["input_ids"], b["labels"])
    got.backward()
    got_grads = grads(fused.parameters())
    fused.zero_grad()
    want = lm_loss_sum(fused(b["input_ids"], b["attention_mask"]), b["labels"])
    want.backward()
    assert torch.allclose(got, want, rtol=1e-5)
    for g, p in zip(got_grads, fused.parameters()):
        if p.grad is None:
            assert g is None and freeze_weak
        else:
            assert torch.allclose(g, p.grad, atol=1e-5), "gradients differ"


def test_linear_cross_entropy_ignores_masked_targets():
    hidden = torch.randn(2, 5, 8, dtype=torch.float64)
    weight = torch.randn(11, 8, dtype=torch.float64)
    labels = torch.tensor([[1, 2, -100, 4, 5], [-100, -100, -100, 3, -100]])
    want = F.cross_entropy(
        (hidden @ weight.T)[:, :-1].flatten(0, 1), labels[:, 1:].flatten(), ignore_index=-100, reduction="sum"
    )
    assert torch.allclose(linear_cross_entropy_sum(hidden, weight, labels, chunk=2).double(), want)
