"""The prompt formats of the pipeline (docs/method.md#prompt-formats; evaluation: docs/evaluation.md) and
tokenisation of prompt/full pairs.

  entropy : [user] / [user, assistant] through the template, no system prompt
  sft     : [system, user] + generation prompt, then the raw completion + eos (no <|im_end|>)
  joint   : [user, assistant] through the template (the whole conversation)
  eval    : [system, user] + generation prompt, enable_thinking passed to the template
"""

import json
from pathlib import Path

PAPER_PROTOCOL_FILE = Path(__file__).resolve().parents[2] / "data" / "eval" / "paper-protocol.json"


def _protocol_text(key: str) -> str:
    with open(PAPER_PROTOCOL_FILE, encoding="utf-8") as f:
        return json.load(f)[key]


# The original's system prompts (think/answer tags), kept as data with their licence. The Stage-1
# one starts with a space and has an ASCII apostrophe; the evaluation one has neither and a curly
# apostrophe (U+2019): the typography changes the tokens, so both are kept exactly.
DEFAULT_SFT_SYSTEM_PROMPT = _protocol_text("sftSystemPrompt")


def paper_eval_system_prompt() -> str:
    """The original's evaluation system prompt, exactly (the paper protocol's)."""
    return _protocol_text("systemPrompt")


# The lenient protocol's evaluation prompt: our own shorter wording of the same instruction.
DEFAULT_EVAL_SYSTEM_PROMPT = (
    "You are a helpful assistant. First think about the reasoning process, then give the answer."
    " Put the reasoning inside <think> </think> tags and the answer inside <answer> </answer> tags."
    " Let\u2019s think step by step."
)


def _render(tok, messages, add_generation_prompt, **kwargs) -> str:
    return tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=add_generation_prompt, **kwargs)


def entropy_texts(tok, rec):
    user = [{"role": "user", "content": rec.prompt}]
    full = user + [{"role": "assistant", "content": rec.completion}]
    return _render(tok, user, False), _render(tok, full, False)


def sft_texts(tok, rec, system_prompt):
    messages = [{"role": "system", "content": system_prompt}, {"role": "user", "content": rec.prompt}]
    return _render(tok, messages, True), rec.completion + tok.eos_token


def conversation_text(tok, rec):
    user = [{"role": "user", "content": rec.prompt}]
    full = user + [{"role": "assistant", "content": rec.completion}]
    return _render(tok, user, True), _render(tok, full, False)


def eval_prompt(tok, question, system_prompt, enable_thinking, paper=False) -> str:
    messages = [{"role": "system", "content": system_prompt}, {"role": "user", "content": question}]
    if not getattr(tok, "chat_template", None):
        # A tokenizer without a template: "role: content" lines and an "assistant:" cue. The
        # original separates them by blank lines; the lenient protocol keeps the single newline
        # that the onnx backend's tokenizer (activities/onnx/tokenizer.ts) also uses.
        lines = [f"{m['role']}: {m['content']}" for m in messages] + ["assistant:"]
        return ("\n\n" if paper else "\n").join(lines)
    return _render(tok, messages, True, enable_thinking=enable_thinking)


def tokenize_pair(tok, prompt_text, full_text, max_length):
    """Token ids of full_text (truncated, keeping the start) and how many of them are the prompt."""
    ids = tok(full_text, add_special_tokens=False, truncation=True, max_length=max_length)["input_ids"]
    n_prompt = len(tok(prompt_text, add_special_tokens=False)["input_ids"])
    return list(ids), min(n_prompt, len(ids))
