"""What the GPU benchmarks share: Qwen3-shaped random models, synthetic token data of GSM8K and
long-context lengths, the GPU's own bf16 matmul peak, timing and result output.

Random weights and random token ids: throughput and memory depend on shapes, not on values, and
no pretrained model can be downloaded on the GPU machine.
"""

import json
import os
import sys
import time

import torch

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(REPO, "kernels"))

# Published shapes of the Qwen3 base models (config.json of Qwen/Qwen3-*-Base).
SHAPES = {
    "0.6B": dict(
        hidden_size=1024,
        num_hidden_layers=28,
        num_attention_heads=16,
        num_key_value_heads=8,
        intermediate_size=3072,
        tie_word_embeddings=True,
    ),
    "1.7B": dict(
        hidden_size=2048,
        num_hidden_layers=28,
        num_attention_heads=16,
        num_key_value_heads=8,
        intermediate_size=6144,
        tie_word_embeddings=True,
    ),
    "4B": dict(
        hidden_size=2560,
        num_hidden_layers=36,
        num_attention_heads=32,
        num_key_value_heads=8,
        intermediate_size=9728,
        tie_word_embeddings=True,
    ),
    "8B": dict(
        hidden_size=4096,
        num_hidden_layers=36,
        num_attention_heads=32,
        num_key_value_heads=8,
        intermediate_size=12288,
        tie_word_embeddings=False,
    ),
}
# WMSS_BENCH_DEVICE=cpu with --sizes tiny checks the scripts on a machine without a GPU
DEVICE = os.environ.get("WMSS_BENCH_DEVICE", "cuda")
VOCAB = 151936 if DEVICE == "cuda" else 512
SHAPES["tiny"] = dict(
    hidden_size=64,
    num_hidden_layers=2,
    num_attention_heads=4,
    num_key_value_heads=2,
    intermediate_size=128,
    tie_word_embeddings=True,
)


def build_model(shape="0.6B", device=DEVICE, dtype=None, seed=0):
    from transformers import AutoModelForCausalLM, Qwen3Config

    dtype = dtype or (torch.bfloat16 if device == "cuda" else torch.float32)
    torch.manual_seed(seed)
    cfg = Qwen3Config(
        vocab_size=VOCAB,
        head_dim=128 if shape != "tiny" else 16,
        max_position_embeddings=40960,
        rope_theta=1000000.0,
        rms_norm_eps=1e-6,
        attn_implementation="sdpa",
        **SHAPES[shape],
    )
    with torch.device(device):
        model = AutoModelForCausalLM.from_config(cfg, dtype=dtype)
    return model.eval()


def sharpen_head(model, factor):
    """Scale the output projection so a random model's next-token distribution has clear winners
    (otherwise greedy choices are near-ties that any change in summation order flips)."""
    with torch.no_grad():
        model.get_output_embeddings().weight.mul_(factor)


def synthetic_samples(n, lo, hi, prompt_frac=0.4, seed=0):
    """n samples [(ids, n_prompt)] with lengths uniform in [lo, hi]."""
    g = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(n):
        length = int(torch.randint(lo, hi + 1, (1,), generator=g))
        ids = torch.randint(10, VOCAB - 10, (length,), generator=g).tolist()
        out.append((ids, max(1, int(length * prompt_frac))))
    return out


# GSM8K with Qwen's tokenizer: question + chat template ≈ 100–250 tokens, answer ≈ 60–250.
GSM8K_LENGTHS = (160, 500)
LONG_LENGTHS = (2048, 4096)


def sync():
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def timed(fn, *args, **kwargs):
    sync()
    t = time.perf_counter()
    out = fn(*args, **kwargs)
    sync()
    return out, time.perf_counter() - t


def peak_reset():
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()


def peak_gib():
    return torch.cuda.max_memory_allocated() / 2**30 if torch.cuda.is_available() else 0.0


def matmul_peak_tflops(n=8192, iters=30):
    """The GPU's own dense bf16 matmul throughput, measured now (the MFU denominator)."""
    if DEVICE != "cuda":
        n, iters = 256, 3
    a = torch.randn(n, n, device=DEVICE, dtype=torch.bfloat16)
    b = torch.randn(n, n, device=DEVICE, dtype=torch.bfloat16)
    for _ in range(5):
        a @ b
    _, s = timed(lambda: [a @ b for _ in range(iters)])
    return 2 * n**3 * iters / s / 1e12


def train_flops_per_token(model, mean_seq):
    """6·N + 12·L·H·Q·T (PaLM appendix B): N = parameters that take part in matmuls (a tied
    embedding counts once, as the output projection), L layers, H heads of size Q, T the mean
    sequence length (tokens-weighted). The attention term is not halved for causality."""
    cfg = model.config
    n_params = sum(p.numel() for p in model.parameters())
    if not cfg.tie_word_embeddings:
        n_params -= model.get_input_embeddings().weight.numel()  # a lookup, not a matmul
    return 6 * n_params + 12 * cfg.num_hidden_layers * cfg.num_attention_heads * cfg.head_dim * mean_seq


def device_name():
    return torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu"


class Report:
    """Prints one line per figure and writes all figures as JSON at the end."""

    def __init__(self, name, out_dir):
        self.name, self.out_dir = name, out_dir
        self.figures = {"benchmark": name, "device": device_name(), "torch": torch.__version__}

    def add(self, key, value, unit="", note=""):
        self.figures[key] = value
        shown = f"{value:.4g}" if isinstance(value, float) else value
        print(f"{self.name}: {key} = {shown} {unit}{('  # ' + note) if note else ''}".rstrip(), flush=True)
        self.save(quiet=True)  # after every figure, so a run cut short keeps what it measured

    def ratio(self, key, value, goal):
        self.figures[key] = value
        print(f"{self.name}: RATIO {key} = {value:.3f} (goal {goal})", flush=True)
        self.save(quiet=True)

    def save(self, quiet=False):
        os.makedirs(self.out_dir, exist_ok=True)
        path = os.path.join(self.out_dir, f"{self.name}.json")
        with open(path, "w") as f:
            json.dump(self.figures, f, indent=2)
        if not quiet:
            print(f"{self.name}: wrote {path}", flush=True)
