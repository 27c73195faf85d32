"""Reference values from the Python side for test/integration/onnx.test.ts.

Reads one JSON request on stdin and prints one JSON answer: chat texts and token ids as the
kernels make them (wmss_kernels.chat), greedy generations of wmss_kernels.eval_generate.generate,
and grades of wmss_kernels.grading.grade.
"""

import json
import sys


def main():
    req = json.load(sys.stdin)
    out = {}
    if "grade" in req:
        from wmss_kernels.grading import grade

        out["grade"] = [list(grade(r, g, q)) for r, g, q in req["grade"]]
    if "model_dir" in req:
        import torch
        from wmss_kernels.chat import entropy_texts, eval_prompt, tokenize_pair
        from wmss_kernels.data import Record
        from wmss_kernels.modeling import load_model, load_tokenizer

        torch.set_num_threads(1)
        tok = load_tokenizer(req["model_dir"])
        chat = []
        for item in req.get("chat", []):
            if item["kind"] == "entropy":
                prompt, full = entropy_texts(tok, Record(0, item["prompt"], item["completion"], 1))
                ids, n_prompt = tokenize_pair(tok, prompt, full, item["max_length"])
                chat.append({"text": full, "ids": ids, "n_prompt": n_prompt})
            else:
                text = eval_prompt(tok, item["question"], item["system"], item["enable_thinking"])
                ids = tok(text, add_special_tokens=False)["input_ids"]
                chat.append({"text": text, "ids": ids, "decoded": tok.decode(ids, skip_special_tokens=True)})
        out["chat"] = chat
        if "generate" in req:
            from wmss_kernels.eval_generate import eos_token_ids, generate

            g = req["generate"]
            model = load_model(req["model_dir"], torch.device("cpu"), torch.float32)
            eos = eos_token_ids(model, tok)
            prompts = g["prompts"]

            def run_all(eos_ids):
                results = []
                for b in range(0, len(prompts), g["batch_size"]):
                    for ids, truncated in generate(
                        model, tok, prompts[b : b + g["batch_size"]], g["max_new_tokens"], eos_ids
                    ):
                        results.append(
                            {"ids": ids, "truncated": truncated, "text": tok.decode(ids, skip_special_tokens=True)}
                        )
                return results

            out["generate"] = run_all(eos)
            if g.get("extra_eos") is not None:
                out["generate_extra"] = run_all(eos + [g["extra_eos"]])
            out["eos"] = eos
    json.dump(out, sys.stdout)


if __name__ == "__main__":
    main()
