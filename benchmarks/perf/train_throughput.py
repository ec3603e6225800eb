"""Training throughput: the env's train path against a plain peft + torch loop.

Both sides train the same LoRA (r=16, all linear layers) on the same
TableBench-like prompt/completion pairs, with the same batch size, learning rate
and number of steps, loss on the completion tokens only, in one run:

* **env**: ``ModelWorker.train`` (the persistent worker running trl's
  ``SFTTrainer`` with the CPU recipe); tokens/s = ``train_tokens /
  train_seconds`` as reported by the worker (the training loop, model load and
  data preparation excluded).
* **plain**: a hand-written loop in this process: right-padded random batches,
  fp32, ``torch.optim.AdamW``, linear decay, gradient clipping at 1.0 (like
  ``Trainer``); tokens/s = non-padding tokens / loop seconds.

Run::

    python -m ftdojo_benchmarks.perf.train_throughput            # SmolLM2-135M
    python -m ftdojo_benchmarks.perf.train_throughput --model tiny --steps 8
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:  # run as a script from anywhere
    sys.path.insert(0, str(ROOT))

from ftdojo_gym.model_process.client import ModelWorker  # noqa: E402
from ftdojo_gym.model_process.protocol import TrainRequest  # noqa: E402
from ftdojo_gym.models import resolve_model  # noqa: E402

COLUMNS = ["Team", "Wins", "Losses", "Points", "Goals", "Score"]
NAMES = ["Lions", "Tigers", "Bears", "Wolves", "Eagles", "Sharks", "Hawks", "Bulls", "Rams",
         "Foxes", "Owls", "Cobras"]


def make_pairs(n: int, seed: int = 0) -> list[dict[str, str]]:
    """``n`` TableBench-like prompt/completion pairs of mixed length (~60-200 tokens)."""
    rng = random.Random(seed)
    pairs = []
    for _ in range(n):
        n_rows = rng.randint(2, 9)
        n_cols = rng.randint(3, len(COLUMNS))
        cols = COLUMNS[:n_cols]
        names = rng.sample(NAMES, n_rows)
        rows = [[name] + [str(rng.randint(0, 99)) for _ in cols[1:]] for name in names]
        table = "| " + " | ".join(cols) + " |\n" + "\n".join("| " + " | ".join(r) + " |" for r in rows)
        target = rng.randrange(n_rows)
        col = rng.randrange(1, n_cols)
        prompt = (f"Read the table and answer the question.\n\n{table}\n\n"
                  f"Question: What is the {cols[col]} of the {names[target]}?")
        if rng.random() < 0.5:  # some answers reason first, so completions vary in length too
            completion = (f"The row of the {names[target]} has {cols[col]} = {rows[target][col]}.\n"
                          f"Final Answer: {rows[target][col]}")
        else:
            completion = f"Final Answer: {rows[target][col]}"
        pairs.append({"prompt": prompt, "completion": completion})
    return pairs


def plain_loop(model_path: str, pairs: list[dict[str, str]], steps: int, batch_size: int,
               lr: float, seed: int) -> dict[str, float]:
    """The reference: a plain fp32 peft loop with padded random batches."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    torch.manual_seed(seed)
    tok = AutoTokenizer.from_pretrained(model_path)
    model = AutoModelForCausalLM.from_pretrained(model_path, dtype=torch.float32)
    model = get_peft_model(model, LoraConfig(r=16, lora_alpha=32, lora_dropout=0.0,
                                             target_modules="all-linear", task_type="CAUSAL_LM"))
    model.train()
    examples = []
    for p in pairs:  # same masking as trl: loss on the assistant turn only
        msgs = [{"role": "user", "content": p["prompt"]}]
        prompt_ids = tok.apply_chat_template(msgs, add_generation_prompt=True, tokenize=True,
                                             return_dict=True)["input_ids"]
        full_ids = tok.apply_chat_template(msgs + [{"role": "assistant", "content": p["completion"]}],
                                           tokenize=True, return_dict=True)["input_ids"]
        examples.append((full_ids, [-100] * len(prompt_ids) + full_ids[len(prompt_ids):]))
    opt = torch.optim.AdamW([q for q in model.parameters() if q.requires_grad], lr=lr, weight_decay=0.0)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: max(0.0, 1 - s / steps))
    rng = random.Random(seed)
    order: list[int] = []
    tokens = 0
    t0 = time.perf_counter()
    for _ in range(steps):
        if len(order) < batch_size:
            order += rng.sample(range(len(examples)), len(examples))
        batch = [examples[order.pop()] for _ in range(batch_size)]
        width = max(len(ids) for ids, _ in batch)
        input_ids = torch.full((batch_size, width), tok.pad_token_id)
        labels = torch.full((batch_size, width), -100)
        mask = torch.zeros((batch_size, width), dtype=torch.long)
        for i, (ids, lab) in enumerate(batch):
            input_ids[i, : len(ids)] = torch.tensor(ids)
            labels[i, : len(lab)] = torch.tensor(lab)
            mask[i, : len(ids)] = 1
        loss = model(input_ids=input_ids, attention_mask=mask, labels=labels).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        opt.zero_grad(set_to_none=True)
        tokens += int(mask.sum())
    seconds = time.perf_counter() - t0
    return {"tokens": tokens, "seconds": seconds, "tokens_per_s": tokens / seconds,
            "final_loss": float(loss.detach())}


def env_path(model_path: str, data_path: Path, out_dir: Path, steps: int, batch_size: int,
             lr: float, seed: int) -> dict[str, float]:
    """The env's path: the persistent training worker running trl's SFTTrainer."""
    worker = ModelWorker()
    try:
        worker.ping()  # start-up (imports) is not what we measure
        config = {"method": "lora", "lora_r": 16, "lora_alpha": 32, "lora_targets": "all-linear",
                  "batch_size": batch_size, "learning_rate": lr, "lr_scheduler": "linear",
                  "max_steps": steps, "max_len": 1024, "seed": seed}
        res = worker.train(TrainRequest(base_model=model_path, data_path=str(data_path),
                                        output_dir=str(out_dir), config=config))
    finally:
        worker.close()
    if res.status != "ok":
        raise RuntimeError(f"env train failed: {res.error_class}: {res.error}\n{res.traceback}")
    return {"tokens": res.train_tokens, "seconds": res.train_seconds,
            "tokens_per_s": res.train_tokens / res.train_seconds, "final_loss": res.final_loss or 0.0}


def main(argv: list[str] | None = None) -> dict[str, float]:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="smollm2-135m", help="model name for resolve_model (or 'tiny')")
    ap.add_argument("--samples", type=int, default=256)
    ap.add_argument("--steps", type=int, default=24)
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)

    model_path = str(resolve_model(args.model))
    pairs = make_pairs(args.samples, args.seed)
    with tempfile.TemporaryDirectory(prefix="ftdojo-perf-") as tmp:
        data = Path(tmp) / "train.jsonl"
        data.write_text("".join(json.dumps(p) + "\n" for p in pairs))
        env = env_path(model_path, data, Path(tmp) / "adapter", args.steps, args.batch_size,
                       args.lr, args.seed)
        plain = plain_loop(model_path, pairs, args.steps, args.batch_size, args.lr, args.seed)
    ratio = env["tokens_per_s"] / plain["tokens_per_s"]
    print(f"train throughput: {args.model}, LoRA r16 all-linear, batch {args.batch_size}, "
          f"{args.steps} steps, {args.samples} pairs")
    print(f"{'path':<28}{'tokens':>8}{'seconds':>10}{'tokens/s':>10}{'final loss':>12}")
    for name, r in (("env (ModelWorker/trl)", env), ("plain peft+torch loop", plain)):
        print(f"{name:<28}{r['tokens']:>8}{r['seconds']:>10.1f}{r['tokens_per_s']:>10.1f}"
              f"{r['final_loss']:>12.3f}")
    print(f"ratio env/plain: {ratio:.2f}x (target >= 0.95)")
    return {"env_tokens_per_s": env["tokens_per_s"], "plain_tokens_per_s": plain["tokens_per_s"],
            "ratio": ratio}


if __name__ == "__main__":
    main()
