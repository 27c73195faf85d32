import json

import torch
from wmss_kernels import tiny
from wmss_kernels.chat import DEFAULT_SFT_SYSTEM_PROMPT, eval_prompt, sft_texts
from wmss_kernels.data import read_records
from wmss_kernels.modeling import load_model, load_tokenizer


def test_tiny_model_files_and_data(tiny_model):
    tok = load_tokenizer(tiny_model.model_dir)
    config = json.load(open(f"{tiny_model.model_dir}/config.json"))
    assert config["model_type"] == "qwen3" and config["vocab_size"] >= len(tok)
    assert "<|im_start|>" in json.load(open(f"{tiny_model.model_dir}/tokenizer_config.json"))["chat_template"]
    assert tok.eos_token == tok.pad_token == "<|endoftext|>"
    assert tok.tokenize("123") == ["1", "2", "3"]  # digits one by one
    # think tags survive skip_special_tokens, as with Qwen3
    ids = tok("<think>1</think><|endoftext|>", add_special_tokens=False)["input_ids"]
    assert tok.decode(ids, skip_special_tokens=True) == "<think>1</think>"

    train = read_records(tiny_model.train_file, "messages")
    test = [json.loads(line) for line in open(tiny_model.test_file)]
    assert len(train) == 256 and len(test) == 32 and [r.idx for r in train] == list(range(256))
    assert not {r.prompt for r in train} & {t["question"] for t in test}
    r = train[0]
    assert r.completion.startswith("<think>") and r.completion.endswith("}</answer>")
    assert all(t["answer"].split("#### ")[1] in t["answer"].split("\n")[0] for t in test)
    longest = max(
        len(tok(t, add_special_tokens=False)["input_ids"]) for rec in train for t in [rec.prompt + rec.completion]
    )
    assert longest < 64
    prompt, completion = sft_texts(tok, train[0], DEFAULT_SFT_SYSTEM_PROMPT)
    assert len(tok(prompt + completion)["input_ids"]) < 128
    assert eval_prompt(tok, "q", "s", False).endswith("<|im_start|>assistant\n<think>\n\n</think>\n\n")
    model = load_model(tiny_model.model_dir, "cpu", torch.float32)
    assert model.generation_config.pad_token_id == tok.pad_token_id


def test_problems_are_deterministic_and_correct():
    t1, s1 = tiny.make_problems(50, 10, 2, seed=3)
    t2, s2 = tiny.make_problems(50, 10, 2, seed=3)
    assert (t1, s1) == (t2, s2) and t1 != tiny.make_problems(50, 10, 2, seed=4)[0]
    for q, a, op, b, r in t1 + s1:
        assert r == (a + b if op == "+" else a - b) and r >= 0 and max(a, b) < 100
        assert str(a) in q and str(b) in q


def test_pretraining_is_deterministic_and_keeps_the_test_set_out(tiny_model, tmp_path):
    from wmss_kernels.pretrain import easy_corpus, pretrain

    tok = load_tokenizer(tiny_model.model_dir)
    held_out = {(3, "+", 4), (7, "-", 2)}
    corpus = easy_corpus(held_out, 2, __import__("random").Random(0))
    questions = {q for q, _ in corpus}
    assert not {"What is 3 + 4?", "Compute 7 - 2.", "Subtract 2 from 7."} & questions
    assert {"What is 4 + 3?", "Compute 40 + 7.", "Repeat 55."} <= questions

    runs = []
    for name in ("a", "b"):
        model = load_model(tiny_model.model_dir, "cpu", torch.float32)
        summary = pretrain(
            model, tok, held_out, steps=6, lr=3e-3, batch_size=4, max_digits=2, seed=1, curve_file=tmp_path / name
        )
        runs.append((model.state_dict(), (tmp_path / name).read_text()))
    (a, curve_a), (b, curve_b) = runs
    assert curve_a == curve_b and len(curve_a.splitlines()) == 6
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert summary["pretrain_steps"] == 6 and summary["pretrain_final_loss"] < summary["pretrain_first_loss"]
