"""compile_layers (on by default for CUDA training) must leave the loss and the gradients as the
eager model computes them. Runs torch.compile's CPU backend, with gradient checkpointing on as
in the pipeline's default configuration."""

import torch
from wmss_kernels.modeling import load_model
from wmss_kernels.train_batches import CausalLMLoss, collate, make_example
from wmss_kernels.train_step import compile_layers


def test_compiled_layers_give_the_eager_loss_and_gradients(tiny_model):
    torch.manual_seed(0)
    examples = [make_example(torch.randint(5, 300, (n,)).tolist(), n // 3) for n in (17, 40, 33)]
    batch = collate(examples, torch.device("cpu"))
    results = []
    for compiled in (False, True):
        model = load_model(tiny_model.model_dir, torch.device("cpu"), torch.float32)
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        model.train()
        if compiled:
            assert compile_layers(model) == model.config.num_hidden_layers
        loss = CausalLMLoss(model)(batch["input_ids"], batch["labels"])
        loss.backward()
        results.append((loss.detach(), torch.cat([p.grad.flatten() for p in model.parameters()])))
    (eager_loss, eager_grad), (loss, grad) = results
    torch.testing.assert_close(loss, eager_loss, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(grad, eager_grad, rtol=1e-4, atol=1e-5)
