"""Examples, batches and data order of the training loop (train_loop.py).

Data order is a pure function of (seed, epoch): the sample stream is the concatenation of one
permutation per epoch and optimizer step s consumes stream[s·G : (s+1)·G] with
G = micro_batch · grad_accum, the global batch of the job.
"""

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .heads import linear_cross_entropy_sum

# Sequence lengths are padded to a multiple of this: tensor-core friendly shapes.
PAD_MULTIPLE = 16


def make_example(input_ids, n_masked):
    """Labels copy the ids with the first n_masked positions set to -100 (no loss there)."""
    ids = list(input_ids)
    labels = [-100] * min(n_masked, len(ids)) + ids[n_masked:]
    # targets are the tokens at positions 1.. (position t predicts t+1); counted once, here
    n_targets = sum(1 for t in labels[1:] if t != -100)
    return {"input_ids": ids, "labels": labels, "n_targets": n_targets}


def collate(examples, device, multiple=1):
    """Right-pad to the longest example (rounded up to `multiple`); pads are out of the loss, and
    under causal attention no real token sees them, so the training forward needs no mask."""
    width = -(-max(len(e["input_ids"]) for e in examples) // multiple) * multiple
    ids = torch.zeros(len(examples), width, dtype=torch.long)
    labels = torch.full((len(examples), width), -100, dtype=torch.long)
    mask = torch.zeros(len(examples), width, dtype=torch.long)
    for i, e in enumerate(examples):
        n = len(e["input_ids"])
        ids[i, :n] = torch.tensor(e["input_ids"])
        labels[i, :n] = torch.tensor(e["labels"])
        mask[i, :n] = 1
    return {"input_ids": ids.to(device), "labels": labels.to(device), "attention_mask": mask.to(device)}


def lm_loss_sum(logits, labels):
    """Summed next-token cross-entropy over positions whose label is not -100."""
    # Shift the labels rather than the logits: slicing the (B, T, V) logits would copy them.
    target = F.pad(labels[:, 1:], (0, 1), value=-100)
    return F.cross_entropy(logits.flatten(0, 1).float(), target.flatten(), ignore_index=-100, reduction="sum")


class CausalLMLoss(nn.Module):
    """The training forward of a plain HF causal LM: summed next-token cross-entropy straight from
    the final hidden states (heads.py), never the [B, T, vocab] logits. DistributedDataParallel
    wraps this module, so the output projection's gradient is averaged like every other."""

    def __init__(self, lm):
        super().__init__()
        self.lm = lm

    def forward(self, input_ids, labels):
        base = getattr(self.lm, self.lm.base_model_prefix)
        hidden = base(input_ids=input_ids, use_cache=False).last_hidden_state
        return linear_cross_entropy_sum(hidden, self.lm.get_output_embeddings().weight, labels)


def epoch_order(seed, epoch, n):
    return np.random.default_rng([seed, epoch]).permutation(n)


_orders = {}  # (seed, epoch, n) → permutation; only the current epoch is kept


def step_indices(step, n, global_batch, seed):
    """Example indices of one optimizer step (the whole global batch, all ranks)."""
    out = []
    for pos in range(step * global_batch, (step + 1) * global_batch):
        key = (seed, pos // n, n)
        if key not in _orders:
            _orders.clear()
            _orders[key] = epoch_order(seed, pos // n, n)
        out.append(int(_orders[key][pos % n]))
    return out
