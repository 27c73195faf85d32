"""The output projection (LM head) on selected rows of hidden states, chunked, so that neither
entropy nor training ever holds a float32 [tokens, vocab] tensor for a whole batch (Qwen's
vocabulary is 151k wide: 4k tokens of float32 logits are 2.5 GB).

Logits come from a bf16 tensor-core matmul that writes float32 on CUDA (`torch.mm(out_dtype=)`),
so softmax, log-sum-exp and the loss are float32 while the matmul runs at bf16 speed. On the
CPU (float32 models) it is a plain float32 matmul.
"""

import torch


def mm_fp32(a, b):
    """a @ b with a float32 result (bf16/fp16 tensor cores on CUDA, float32 elsewhere)."""
    if a.is_cuda and a.dtype in (torch.bfloat16, torch.float16) and b.dtype == a.dtype:
        return torch.mm(a, b, out_dtype=torch.float32)
    return torch.mm(a.float(), b.float())


def logits_fp32(hidden, weight):
    """hidden [N, d] @ weight[V, d]ᵀ → float32 [N, V]."""
    return mm_fp32(hidden, weight.t())


def _entropy_of_logits(z):
    logp = z - torch.logsumexp(z, dim=-1, keepdim=True)
    # −Σ p·log p rather than lse − Σ p·z: the latter cancels badly for peaked distributions
    return -(logp.exp() * logp).sum(-1)


_compiled_entropy = None


def entropy_of_logits(z):
    """Row entropies of float32 logits. On CUDA a compiled version fuses the passes over the
    [rows, vocab] block into two reductions instead of five element-wise sweeps."""
    global _compiled_entropy
    if not z.is_cuda:
        return _entropy_of_logits(z)
    if _compiled_entropy is None:
        _compiled_entropy = torch.compile(_entropy_of_logits, dynamic=True)
    return _compiled_entropy(z)


@torch.no_grad()
def row_entropies(hidden, weight, chunk):
    """Entropy in nats (temperature 1) of softmax(hidden @ weightᵀ) for each row of hidden, float32."""
    out = torch.empty(hidden.shape[0], dtype=torch.float32, device=hidden.device)
    for s in range(0, hidden.shape[0], chunk):
        out[s : s + chunk] = entropy_of_logits(logits_fp32(hidden[s : s + chunk], weight))
    return out


class LinearCrossEntropy(torch.autograd.Function):
    """Summed cross-entropy of softmax(hidden @ weightᵀ) against targets, with the gradients for
    hidden and weight computed chunk by chunk during the forward (the loss is the graph's last
    node, so its upstream gradient is a scalar that backward only has to multiply in). Peak extra
    memory: one [chunk, V] float32 block plus a float32 gradient for the weight."""

    @staticmethod
    def forward(ctx, hidden, weight, targets, chunk):
        grad_h = torch.empty_like(hidden)
        grad_w = (
            torch.zeros(weight.shape, dtype=torch.float32, device=weight.device) if ctx.needs_input_grad[1] else None
        )
        loss = torch.zeros((), dtype=torch.float32, device=hidden.device)
        for s in range(0, hidden.shape[0], chunk):
            h, t = hidden[s : s + chunk], targets[s : s + chunk]
            z = logits_fp32(h, weight)
            lse = torch.logsumexp(z, dim=-1)
            loss += (lse - z.gather(1, t[:, None]).squeeze(1)).sum()
            # d(loss)/dz = softmax(z) − one_hot(t), built in place of z
            g = z.sub_(lse[:, None]).exp_()
            g[torch.arange(t.shape[0], device=t.device), t] -= 1.0
            g = g.to(hidden.dtype)
            grad_h[s : s + chunk] = g @ weight
            if grad_w is not None:
                grad_w += mm_fp32(g.t(), h)
        ctx.save_for_backward(grad_h, grad_w if grad_w is not None else torch.empty(0))
        ctx.weight_dtype, ctx.has_grad_w = weight.dtype, grad_w is not None
        return loss

    @staticmethod
    def backward(ctx, grad_loss):
        grad_h, grad_w = ctx.saved_tensors
        gh = grad_h * grad_loss.to(grad_h.dtype)
        gw = (grad_w * grad_loss).to(ctx.weight_dtype) if ctx.has_grad_w else None
        return gh, gw, None, None


def linear_cross_entropy_sum(hidden, weight, labels, chunk=4096):
    """Summed next-token cross-entropy of a causal LM from its final hidden states [B, T, d] and
    output projection weight [V, d]; labels [B, T] with -100 where there is no loss. Position t
    predicts labels[t + 1]."""
    target = labels[:, 1:]
    keep = target != -100
    rows = hidden[:, :-1][keep]  # only the rows that have a target reach the head
    if rows.shape[0] == 0:
        return hidden.sum() * 0.0
    return LinearCrossEntropy.apply(rows, weight, target[keep], chunk)
