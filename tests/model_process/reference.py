"""The reference the generation tests compare against: ``model.generate`` on each prompt alone."""

from __future__ import annotations

import torch


def one_by_one(model, tokenizer, prompts, max_new):
    """Greedy ``model.generate`` on each chat-formatted prompt alone, with its own token limit."""
    outs = []
    with torch.inference_mode():
        for p, m in zip(prompts, max_new, strict=True):
            enc = tokenizer.apply_chat_template([{"role": "user", "content": p}], add_generation_prompt=True,
                                                return_tensors="pt", return_dict=True)
            out = model.generate(**enc, max_new_tokens=m, do_sample=False, pad_token_id=tokenizer.pad_token_id)
            outs.append(tokenizer.decode(out[0, enc["input_ids"].shape[1]:], skip_special_tokens=True))
    return outs
