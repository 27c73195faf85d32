"""make-tiny: a tiny Qwen3-style model, its tokenizer and a synthetic arithmetic task.

Used by tests and the CPU demo. With pretrain_steps 0 the base model is random and solves ~0% of the
problems; with pre-training (pretrain.py, as the demo builds it) it solves a few. A minute of SFT
on CPU is enough to learn the format and many sums, so every pipeline step has something real to
measure.
"""

import json
import os
import random

import torch

from .chat import DEFAULT_EVAL_SYSTEM_PROMPT, DEFAULT_SFT_SYSTEM_PROMPT
from .pretrain import pretrain

# The loss per step of the pre-training phase, one JSON line per step, in the model directory.
PRETRAIN_CURVE = "pretrain_curve.jsonl"

EOS = "<|endoftext|>"
SPECIAL = [EOS, "<|im_start|>", "<|im_end|>"]
THINK = ["<think>", "</think>"]

# Qwen-style ChatML. Like Qwen3, enable_thinking=false pre-fills an empty think block.
CHAT_TEMPLATE = (
    "{%- for message in messages %}"
    "{{- '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>\\n' }}"
    "{%- endfor %}"
    "{%- if add_generation_prompt %}"
    "{{- '<|im_start|>assistant\\n' }}"
    "{%- if enable_thinking is defined and enable_thinking is false %}"
    "{{- '<think>\\n\\n</think>\\n\\n' }}"
    "{%- endif %}"
    "{%- endif %}"
)

_QUESTIONS = {
    "+": ["What is {a} + {b}?", "Compute {a} + {b}.", "Add {a} and {b}."],
    "-": ["What is {a} - {b}?", "Compute {a} - {b}.", "Subtract {b} from {a}."],
}


def make_problems(n_train, n_test, max_digits, seed):
    """Distinct (question, a, op, b, result) tuples; the test set shares no question with train."""
    rng = random.Random(seed)
    top = 10**max_digits - 1
    n_possible = 2 * (top + 1) * (top + 2) // 2 * 3  # ops × unordered-ish pairs × phrasings, roughly
    if n_train + n_test > n_possible:
        raise ValueError(f"only about {n_possible} distinct problems with {max_digits} digits")
    seen, out = set(), []
    while len(out) < n_train + n_test:
        op = rng.choice("+-")
        # draw each operand's digit count first: short problems are common enough that a tiny
        # model learns them within a minute, so accuracy after SFT is clearly above zero
        a, b = (rng.randint(0, 10 ** rng.randint(1, max_digits) - 1) for _ in range(2))
        if op == "-" and b > a:
            a, b = b, a  # keep results non-negative
        question = rng.choice(_QUESTIONS[op]).format(a=a, b=b)
        if question in seen:
            continue
        seen.add(question)
        out.append((question, a, op, b, a + b if op == "+" else a - b))
    return out[:n_train], out[n_train:]


def completion(a, op, b, result) -> str:
    return f"<think>{a} {op} {b} = {result}</think> <answer>\\boxed{{{result}}}</answer>"


def train_tokenizer(corpus, vocab_size, model_max_length=512):
    """Byte-level BPE with single-digit pre-tokenisation (as Qwen does), wrapped for transformers."""
    from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [
            # every digit on its own, words with their leading space, runs of punctuation, spaces
            pre_tokenizers.Split(Regex(r"\p{N}| ?\p{L}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"), "isolated"),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )
    tok.decoder = decoders.ByteLevel()
    n_added = len(SPECIAL) + len(THINK)
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size - len(THINK),
        special_tokens=SPECIAL,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(corpus, trainer)
    # <think> tags are ordinary added tokens (not special), so decoding with
    # skip_special_tokens keeps them, as with the Qwen3 tokenizer
    tok.add_tokens([AddedToken(t, special=False, normalized=False) for t in THINK])
    assert tok.get_vocab_size() <= vocab_size + n_added
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        eos_token=EOS,
        pad_token=EOS,
        additional_special_tokens=SPECIAL[1:],
        chat_template=CHAT_TEMPLATE,
        model_max_length=model_max_length,
        padding_side="right",
        clean_up_tokenization_spaces=False,
    )


def make_tiny(
    output_dir,
    data_dir,
    train_samples,
    test_samples,
    *,
    seed=42,
    vocab_size=512,
    hidden_size=64,
    num_layers=2,
    num_heads=4,
    num_kv_heads=2,
    intermediate_size=256,
    max_digits=2,
    head_dim=None,
    max_position_embeddings=512,
    tie_word_embeddings=False,
    pretrain_steps=0,
    pretrain_lr=3e-3,
    pretrain_batch=32,
) -> dict:
    from transformers import GenerationConfig, Qwen3Config, Qwen3ForCausalLM

    train, test = make_problems(train_samples, test_samples, max_digits, seed)
    os.makedirs(data_dir, exist_ok=True)
    train_file = os.path.join(data_dir, "train.jsonl")
    test_file = os.path.join(data_dir, "test.jsonl")
    with open(train_file, "w", encoding="utf-8") as f:
        for idx, (q, a, op, b, r) in enumerate(train):
            messages = [{"role": "user", "content": q}, {"role": "assistant", "content": completion(a, op, b, r)}]
            f.write(json.dumps({"idx": idx, "messages": messages}) + "\n")
    with open(test_file, "w", encoding="utf-8") as f:
        for q, a, op, b, r in test:
            f.write(json.dumps({"question": q, "answer": f"{a} {op} {b} = {r}\n#### {r}"}) + "\n")

    # The tokenizer also sees the system prompts (repeated so their words become single tokens):
    # SFT and eval prompts then stay short, which keeps CPU training fast.
    corpus = [q + "\n" + completion(a, op, b, r) for q, a, op, b, r in train + test]
    corpus += [DEFAULT_SFT_SYSTEM_PROMPT, DEFAULT_EVAL_SYSTEM_PROMPT, "system", "user", "assistant"] * 200
    tok = train_tokenizer(corpus, vocab_size, max_position_embeddings)

    eos_id = tok.convert_tokens_to_ids(EOS)
    im_end_id = tok.convert_tokens_to_ids("<|im_end|>")
    config = Qwen3Config(
        # like Qwen, the embedding may be larger than the tokenizer (rows never produced by it)
        vocab_size=max(vocab_size, len(tok)),
        hidden_size=hidden_size,
        num_hidden_layers=num_layers,
        num_attention_heads=num_heads,
        num_key_value_heads=num_kv_heads,
        intermediate_size=intermediate_size,
        head_dim=head_dim or hidden_size // num_heads,
        max_position_embeddings=max_position_embeddings,
        tie_word_embeddings=tie_word_embeddings,
        bos_token_id=eos_id,
        eos_token_id=eos_id,
        pad_token_id=eos_id,
    )
    torch.manual_seed(seed)
    model = Qwen3ForCausalLM(config)
    model.generation_config = GenerationConfig(
        bos_token_id=eos_id, eos_token_id=[eos_id, im_end_id], pad_token_id=eos_id, do_sample=False
    )
    os.makedirs(output_dir, exist_ok=True)
    pretrained = {}
    if pretrain_steps:
        # a weak base that knows something (pretrain.py); the curve stays beside the weights
        pretrained = pretrain(
            model,
            tok,
            {(a, op, b) for _, a, op, b, _ in test},
            steps=pretrain_steps,
            lr=pretrain_lr,
            batch_size=pretrain_batch,
            max_digits=max_digits,
            seed=seed,
            curve_file=os.path.join(output_dir, PRETRAIN_CURVE),
        )
    model.save_pretrained(output_dir)
    tok.save_pretrained(output_dir, save_jinja_files=False)  # template inside tokenizer_config.json

    lengths = [len(tok(q + completion(a, op, b, r))["input_ids"]) for q, a, op, b, r in train[:200]]
    return {
        "outputs": {
            "model_dir": os.path.abspath(output_dir),
            "train_file": os.path.abspath(train_file),
            "test_file": os.path.abspath(test_file),
        },
        "metrics": {
            "vocab_size": config.vocab_size,
            "tokenizer_size": len(tok),
            "parameters": sum(p.numel() for p in model.parameters()),
            "train_samples": len(train),
            "test_samples": len(test),
            "max_sample_tokens": max(lengths, default=0),
            **pretrained,
        },
    }


def run(job):
    return make_tiny(
        job.output_dir,
        job.data_dir,
        job.train_samples,
        job.test_samples,
        seed=job.seed,
        vocab_size=job.vocab_size,
        hidden_size=job.hidden_size,
        num_layers=job.num_layers,
        num_heads=job.num_heads,
        num_kv_heads=job.num_kv_heads,
        intermediate_size=job.intermediate_size,
        max_digits=job.max_digits,
        head_dim=job.head_dim,
        max_position_embeddings=job.max_position_embeddings,
        tie_word_embeddings=job.tie_word_embeddings,
        pretrain_steps=job.pretrain_steps,
        pretrain_lr=job.pretrain_lr,
        pretrain_batch=job.pretrain_batch,
    )
