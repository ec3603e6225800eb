"""Training throughput: the env's train path against a plain peft + torch loop.

Both sides train the same LoRA (r=16, all linear layers) on the same
TableBench-like prompt/completion pairs, with the same batch size, learning rate
and number of steps, loss on the completion tokens only, in one run:

* **env**: ``ModelWorker.train`` (the persistent worker running trl's
  ``SFTTrainer`` with the CPU recipe); tokens/s = ``train_tokens /
  train_seconds`` as reported by the worker (the training loop, model load and
  data preparation excluded). The same worker then evaluates the adapter on
  TableBench prompts, and its peak resident memory over the run and the
  evaluation (``getrusage`` in the child) is reported.
* **plain**: the best plain loop in ~50 lines (:func:`plain_loop`): peft LoRA,
  fp32 master weights under bf16 autocast (when the env trains in bf16: where this
  CPU's bf16 matrix products are measured faster than fp32),
  length-bucketed batches (sorted within mega-batches of 50 batches, as
  ``group_by_length`` does), the model's own loss on completion labels,
  ``torch.optim.AdamW``, linear decay, gradient clipping at 1.0 (like
  ``Trainer``); tokens/s = non-padding tokens / loop seconds.
* **concurrency**: the aggregate tokens/s of one worker with all the cores
  against two workers training at once with ``threads = cores // 2`` each.

``bf16_limit_share`` is env tokens/s over :data:`BF16_LIMIT_TOKENS_PER_S`, the
fixed limit of this 2-core AVX512-BF16 machine for LoRA on SmolLM2-135M
(~400 GFLOPS bf16 GEMM peak / ~4N FLOPs a token): work the env avoids (prompt
logits, padding) shows up as speed above what the limit would allow.
The last line printed is ``RESULT {json}``.

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
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:  # run as a script from anywhere
    sys.path.insert(0, str(ROOT))

from ftdojo_gym.model_process import cpu_bf16  # noqa: E402
from ftdojo_gym.model_process.client import ModelWorker, available_cores  # noqa: E402
from ftdojo_gym.model_process.protocol import TrainRequest  # noqa: E402
from ftdojo_gym.model_process.resident import cpu_has_fast_bf16  # noqa: E402
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


#: Tokens/s limit of LoRA on SmolLM2-135M on the 2-core AVX512-BF16 machine (4N FLOPs a token at
#: ~400 GFLOPS bf16); fixed so that work avoided shows up as a higher share.
BF16_LIMIT_TOKENS_PER_S = 750.0


def tokenize_pairs(tok, pairs: list[dict[str, str]]) -> list[tuple[list[int], list[int]]]:
    """(input ids, labels) of each pair in the chat template, labels -100 on the prompt (as trl masks)."""
    examples = []
    for p in pairs:
        msgs = [{"role": "user", "content": p["prompt"]}]
        prompt_ids = tok.apply_chat_template(msgs, add_generation_prompt=True, tokenize=True,
                                             return_dict=True)["input_ids"]
        full_ids = tok.apply_chat_template(msgs + [{"role": "assistant", "content": p["completion"]}],
                                           tokenize=True, return_dict=True)["input_ids"]
        examples.append((full_ids, [-100] * len(prompt_ids) + full_ids[len(prompt_ids):]))
    return examples


def bucketed_batches(lengths: list[int], batch_size: int, steps: int, seed: int) -> list[list[int]]:
    """``steps`` batches of indices: shuffled, then sorted by length within mega-batches of 50 batches."""
    rng = random.Random(seed)
    batches: list[list[int]] = []
    while len(batches) < steps:
        order = rng.sample(range(len(lengths)), len(lengths))
        for m in range(0, len(order), 50 * batch_size):
            mega = sorted(order[m:m + 50 * batch_size], key=lambda i: -lengths[i])
            batches += [mega[i:i + batch_size] for i in range(0, len(mega) - batch_size + 1, batch_size)]
    return batches[:steps]


def plain_loop(model_path: str, pairs: list[dict[str, str]], steps: int, batch_size: int,
               lr: float, seed: int, bf16: bool | None = None) -> dict[str, float]:
    """The fair reference: the best plain peft loop in ~50 lines (bf16 autocast, length buckets)."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    bf16 = cpu_has_fast_bf16() if bf16 is None else bf16
    torch.manual_seed(seed)
    tok = AutoTokenizer.from_pretrained(model_path)
    model = AutoModelForCausalLM.from_pretrained(model_path, dtype=torch.float32)
    model.config.use_cache = False
    model = get_peft_model(model, LoraConfig(r=16, lora_alpha=32, lora_dropout=0.0,
                                             target_modules="all-linear", task_type="CAUSAL_LM"))
    model.train()
    examples = tokenize_pairs(tok, pairs)
    params = [q for q in model.parameters() if q.requires_grad]
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=0.0)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: max(0.0, 1 - s / steps))
    tokens = 0
    t0 = time.perf_counter()
    for batch_idx in bucketed_batches([len(e[0]) for e in examples], batch_size, steps, seed):
        batch = [examples[i] for i in batch_idx]
        width = max(len(ids) for ids, _ in batch)
        input_ids = torch.full((len(batch), width), tok.pad_token_id)
        labels = torch.full((len(batch), width), -100)
        mask = torch.zeros((len(batch), width), dtype=torch.long)
        for i, (ids, lab) in enumerate(batch):
            input_ids[i, : len(ids)] = torch.tensor(ids)
            labels[i, : len(lab)] = torch.tensor(lab)
            mask[i, : len(ids)] = 1
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            loss = model(input_ids=input_ids, attention_mask=mask, labels=labels).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        sched.step()
        opt.zero_grad(set_to_none=True)
        tokens += int(mask.sum())
    seconds = time.perf_counter() - t0
    return {"tokens": tokens, "seconds": seconds, "tokens_per_s": tokens / seconds,
            "final_loss": float(loss.detach())}


def train_config(steps: int, batch_size: int, lr: float, seed: int, max_len: int) -> dict:
    return {"method": "lora", "lora_r": 16, "lora_alpha": 32, "lora_targets": "all-linear",
            "batch_size": batch_size, "learning_rate": lr, "lr_scheduler": "linear",
            "max_steps": steps, "max_len": max_len, "seed": seed}


def env_path(model_path: str, data_path: Path, out_dir: Path, steps: int, batch_size: int,
             lr: float, seed: int, max_len: int = 1024, threads: int | None = None,
             eval_prompts: int = 32) -> dict[str, float]:
    """The env's path: the persistent worker running trl's SFTTrainer, then an evaluation of the adapter."""
    worker = ModelWorker(threads=threads)
    try:
        worker.ping()  # start-up (imports) is not what we measure
        res = worker.train(TrainRequest(base_model=model_path, data_path=str(data_path), output_dir=str(out_dir),
                                        config=train_config(steps, batch_size, lr, seed, max_len)))
        if not res.ok:
            raise RuntimeError(f"env train failed: {res.error_class}: {res.error}\n{res.traceback}")
        peak = res.peak_rss_gb
        eval_rate = 0.0
        if eval_prompts:
            from ftdojo_benchmarks.perf.eval_throughput import tablebench_prompts

            prompts, max_new = tablebench_prompts(eval_prompts)
            gen = worker.generate(model_path, str(out_dir), prompts, max_new)
            if gen.status != "ok":
                raise RuntimeError(f"env generate failed: {gen.error_class}: {gen.error}\n{gen.traceback}")
            peak = max(peak, gen.peak_rss_gb)
            eval_rate = len(prompts) / gen.seconds
    finally:
        worker.close()
    return {"tokens": res.train_tokens, "seconds": res.train_seconds,
            "tokens_per_s": res.train_tokens / res.train_seconds, "final_loss": res.final_loss or 0.0,
            "train_peak_rss_gb": res.peak_rss_gb, "peak_rss_gb": peak, "eval_prompts_per_s": eval_rate}


def concurrent(model_path: str, data_path: Path, out_dir: Path, n: int, steps: int, batch_size: int,
               lr: float, seed: int, max_len: int, threads: int | None) -> dict[str, float]:
    """``n`` workers training at once (``threads`` each): aggregate tokens/s over the common wall time."""
    workers = [ModelWorker(threads=threads) for _ in range(n)]
    results: list = [None] * n
    try:
        for w in workers:
            w.ping()

        def run(i: int) -> None:
            results[i] = workers[i].train(TrainRequest(
                base_model=model_path, data_path=str(data_path), output_dir=str(out_dir / f"w{i}"),
                config=train_config(steps, batch_size, lr, seed + i, max_len)))

        threads_ = [threading.Thread(target=run, args=(i,)) for i in range(n)]
        for t in threads_:
            t.start()
        for t in threads_:
            t.join()
    finally:
        for w in workers:
            w.close()
    for r in results:
        if r is None or not r.ok:
            raise RuntimeError(f"concurrent train failed: {r}")
    tokens = sum(r.train_tokens for r in results)
    wall = max(r.train_seconds for r in results)
    return {"workers": n, "threads_each": threads or 0, "tokens": tokens, "seconds": wall,
            "tokens_per_s": tokens / wall}


def main(argv: list[str] | None = None) -> dict[str, float]:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="smollm2-135m", help="model name for resolve_model (or 'tiny')")
    ap.add_argument("--samples", type=int, default=256)
    ap.add_argument("--steps", type=int, default=24)
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--max-len", type=int, default=1024)
    ap.add_argument("--eval-prompts", type=int, default=32, help="prompts the worker evaluates after training "
                    "(peak memory covers a run and an evaluation); 0 skips")
    ap.add_argument("--concurrent-steps", type=int, default=12, help="steps of each worker in the 1-vs-2 "
                    "workers comparison; 0 skips it")
    ap.add_argument("--skip-plain", action="store_true")
    args = ap.parse_args(argv)

    model_path = str(resolve_model(args.model))
    pairs = make_pairs(args.samples, args.seed)
    cores = available_cores()
    # Both paths train under bf16 autocast where this CPU's bf16 products are measured faster
    # than fp32 (model_process.cpu_bf16; FTDOJO_CPU_BF16=1/0 forces it), else in fp32.
    bf16 = cpu_has_fast_bf16()
    probe = cpu_bf16.probe() if cpu_bf16.has_bf16_instructions() else None
    out: dict[str, float | str] = {"precision": "bf16" if bf16 else "fp32"}
    if probe is not None:
        out.update(gemm_fp32_gflops=probe["fp32_gflops"], gemm_bf16_gflops=probe["bf16_gflops"])
    with tempfile.TemporaryDirectory(prefix="ftdojo-perf-") as tmp:
        data = Path(tmp) / "train.jsonl"
        data.write_text("".join(json.dumps(p) + "\n" for p in pairs))
        env = env_path(model_path, data, Path(tmp) / "adapter", args.steps, args.batch_size,
                       args.lr, args.seed, args.max_len, eval_prompts=args.eval_prompts)
        rows = [("env (ModelWorker/trl)", env)]
        out.update(env_tokens_per_s=env["tokens_per_s"], bf16_limit_share=env["tokens_per_s"] / BF16_LIMIT_TOKENS_PER_S,
                   worker_peak_rss_gb=env["peak_rss_gb"], worker_train_peak_rss_gb=env["train_peak_rss_gb"],
                   env_final_loss=env["final_loss"])
        if not args.skip_plain:
            plain = plain_loop(model_path, pairs, args.steps, args.batch_size, args.lr, args.seed, bf16=bf16)
            rows.append((f"plain loop ({out['precision']}, buckets)", plain))
            out.update(plain_tokens_per_s=plain["tokens_per_s"], ratio=env["tokens_per_s"] / plain["tokens_per_s"],
                       plain_final_loss=plain["final_loss"])
        if args.concurrent_steps and cores >= 2:
            kw = dict(steps=args.concurrent_steps, batch_size=args.batch_size, lr=args.lr, seed=args.seed,
                      max_len=args.max_len)
            one = concurrent(model_path, data, Path(tmp) / "c1", 1, threads=cores, **kw)
            two = concurrent(model_path, data, Path(tmp) / "c2", 2, threads=cores // 2, **kw)
            out.update(one_worker_tokens_per_s=one["tokens_per_s"], two_workers_tokens_per_s=two["tokens_per_s"])
    print(f"train throughput: {args.model}, LoRA r16 all-linear, batch {args.batch_size}, "
          f"{args.steps} steps, {args.samples} pairs, max_len {args.max_len}, {cores} cores, "
          f"{out['precision']}" + (f" (GEMM fp32 {probe['fp32_gflops']:.0f}, bf16 {probe['bf16_gflops']:.0f} GFLOPS)"
                                   if probe else ""))
    print(f"{'path':<30}{'tokens':>8}{'seconds':>10}{'tokens/s':>10}{'final loss':>12}")
    for name, r in rows:
        print(f"{name:<30}{r['tokens']:>8}{r['seconds']:>10.1f}{r['tokens_per_s']:>10.1f}{r['final_loss']:>12.3f}")
    print(f"env: {out['bf16_limit_share']:.0%} of the bf16 limit ({BF16_LIMIT_TOKENS_PER_S:.0f} tokens/s; target "
          f">= 80%); worker peak RSS {out['worker_peak_rss_gb']:.2f} GB over the run and an evaluation "
          f"(target <= 3 GB)")
    if "ratio" in out:
        print(f"ratio env/plain: {out['ratio']:.2f}x (target >= 1.5x)")
    if "two_workers_tokens_per_s" in out:
        print(f"aggregate: 1 worker x {cores} threads {out['one_worker_tokens_per_s']:.0f} tokens/s, "
              f"2 workers x {cores // 2} threads {out['two_workers_tokens_per_s']:.0f} tokens/s")
    print("RESULT " + json.dumps({k: round(v, 4) if isinstance(v, float) else v for k, v in out.items()}))
    return out


if __name__ == "__main__":
    main()
