"""Evaluation throughput: batched generation in the worker against one-by-one ``generate``.

Both sides answer the same prompts with the same per-prompt ``max_new_tokens``
(greedy, stop at EOS), in one run:

* **env**: ``ModelWorker.generate`` (the persistent worker running
  :func:`ftdojo_gym.model_process.generation.generate`: length-sorted left-padded
  batches, finished rows dropped from the batch); prompts/s = prompts / the
  worker's generation seconds (model load excluded by a warm-up call).
* **one-by-one**: ``model.generate`` on each prompt alone in this process, the
  way a naive evaluation loop does it.

The prompts are TableBench validation items (table + question, ~110 tokens with
the chat template; 16-80 new tokens by subset), as the env evaluates them.
Also reports how many outputs are identical on both sides.

Run::

    python -m ftdojo_benchmarks.perf.eval_throughput            # SmolLM2-135M
    python -m ftdojo_benchmarks.perf.eval_throughput --model tiny
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:  # run as a script from anywhere
    sys.path.insert(0, str(ROOT))

from ftdojo_gym.model_process.client import ModelWorker  # noqa: E402
from ftdojo_gym.models import resolve_model  # noqa: E402


def tablebench_prompts(n: int, seed: int = 0) -> tuple[list[str], list[int]]:
    """The first ``n`` (at most 100) TableBench validation prompts, with their token limits.

    The items cycle through the four subsets, so any prefix mixes them.
    """
    from ftdojo_gym.tasks.tablebench import TableBenchTask

    task = TableBenchTask()
    items = task.eval_items(seed)
    picked = task.split(items, n)[0]  # the env's validation split
    return [it.prompt for it in picked], [task.max_new_tokens_for(it) for it in picked]


def generate_each(model, tokenizer, prompts: list[str], max_new: list[int]) -> list[str]:
    """Greedy ``model.generate`` on each chat-formatted prompt alone, with its own token limit
    (the generation tests compare the env's batched paths against this too)."""
    import torch

    outs = []
    with torch.inference_mode():
        for p, m in zip(prompts, max_new, strict=True):
            enc = tokenizer.apply_chat_template([{"role": "user", "content": p}], add_generation_prompt=True,
                                                return_tensors="pt", return_dict=True)
            out = model.generate(**enc, max_new_tokens=m, do_sample=False, pad_token_id=tokenizer.pad_token_id)
            outs.append(tokenizer.decode(out[0, enc["input_ids"].shape[1]:], skip_special_tokens=True))
    return outs


def one_by_one(model_path: str, prompts: list[str], max_new: list[int]) -> tuple[list[str], float]:
    """The reference: a plain loop of ``model.generate`` calls, one prompt each, and its seconds."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(model_path)
    model = AutoModelForCausalLM.from_pretrained(model_path, dtype=torch.float32).eval()
    t0 = time.perf_counter()
    outs = generate_each(model, tok, prompts, max_new)
    return outs, time.perf_counter() - t0


def breakdown(stats: dict[str, float], seconds: float) -> dict[str, float]:
    """Shares of the generation time: prefill, decode, the rest (tokenizing, Python between batches)."""
    prefill, decode = stats.get("prefill_s", 0.0), stats.get("decode_s", 0.0)
    steps = max(1.0, stats.get("decode_steps", 0.0))
    tokens = stats.get("prompt_tokens", 0.0) + stats.get("padded_tokens", 0.0)
    return {
        "prefill_share": prefill / seconds, "decode_share": decode / seconds,
        "other_share": max(0.0, 1 - (prefill + decode) / seconds),
        "padding_share": stats.get("padded_tokens", 0.0) / max(1.0, tokens),
        "decode_step_ms": 1000 * decode / steps,
        "rows_per_step": stats.get("decode_rows", 0.0) / steps,
        "prefill_tokens_per_s": tokens / max(1e-9, prefill),
    }


def step_overhead_ms(model_path: str, reps: int = 20) -> dict[str, float]:
    """One decode step at batch 1 and batch 16 with a short cache: what a step costs regardless
    of the batch (weights read, Python and kernel launches per layer) vs per row."""
    import torch
    from transformers import AutoModelForCausalLM, DynamicCache

    model = AutoModelForCausalLM.from_pretrained(model_path, dtype=torch.float32).eval()
    out = {}
    with torch.inference_mode():
        for b in (1, 16):
            ids = torch.randint(10, 1000, (b, 32))
            cache = DynamicCache(config=model.config)
            model(input_ids=ids, past_key_values=cache, use_cache=True, logits_to_keep=1)
            tok = ids[:, -1:]
            t0 = time.perf_counter()
            for _ in range(reps):
                model(input_ids=tok, past_key_values=cache, use_cache=True)
            out[f"step_ms_batch{b}"] = 1000 * (time.perf_counter() - t0) / reps
    return out


def main(argv: list[str] | None = None) -> dict[str, float]:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="smollm2-135m", help="model name for resolve_model (or 'tiny')")
    ap.add_argument("--prompts", type=int, default=64)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--threads", type=int, default=None, help="worker threads (default: all cores given)")
    ap.add_argument("--skip-one-by-one", action="store_true", help="only the env path and its breakdown")
    ap.add_argument("--skip-static", action="store_true", help="do not also run the static-batch path "
                    "(the path before continuous batching)")
    args = ap.parse_args(argv)

    model_path = str(resolve_model(args.model))
    prompts, max_new = tablebench_prompts(args.prompts)
    with ModelWorker(threads=args.threads) as worker:
        warm = worker.generate(model_path, None, prompts[:2], 2)  # imports + model load
        if warm.status != "ok":
            raise RuntimeError(f"{warm.error_class}: {warm.error}\n{warm.traceback}")
        res = worker.generate(model_path, None, prompts, max_new, batch_size=args.batch_size)
        if res.status != "ok":
            raise RuntimeError(f"{res.error_class}: {res.error}\n{res.traceback}")
    static = None
    if not args.skip_static:  # the path before continuous batching, same worker code otherwise
        with ModelWorker(threads=args.threads, env_vars={"FTDOJO_GENERATION_REFILL": "0"}) as worker:
            worker.generate(model_path, None, prompts[:2], 2)
            static = worker.generate(model_path, None, prompts, max_new, batch_size=args.batch_size)
        if static.status != "ok":
            raise RuntimeError(f"{static.error_class}: {static.error}\n{static.traceback}")
    env_rate = len(prompts) / res.seconds
    parts = breakdown(res.stats, res.seconds)
    print(f"eval throughput: {args.model}, {len(prompts)} TableBench prompts, "
          f"max_new_tokens {min(max_new)}-{max(max_new)}, greedy")
    print(f"{'path':<36}{'seconds':>10}{'prompts/s':>11}")
    print(f"{f'env (worker, batch {args.batch_size})':<36}{res.seconds:>10.1f}{env_rate:>11.2f}")
    print(f"  time: prefill {parts['prefill_share']:.0%}, decode {parts['decode_share']:.0%}, other "
          f"{parts['other_share']:.0%}; padding {parts['padding_share']:.0%} of prefill positions; "
          f"{parts['decode_step_ms']:.0f} ms per decode step at {parts['rows_per_step']:.1f} live rows; "
          f"prefill {parts['prefill_tokens_per_s']:.0f} tokens/s")
    out: dict[str, float] = {"env_prompts_per_s": env_rate, "batch_size": args.batch_size,
                             "worker_peak_rss_gb": res.peak_rss_gb, **parts}
    if static is not None:
        static_rate = len(prompts) / static.seconds
        sparts = breakdown(static.stats, static.seconds)
        same_static = sum(a == b for a, b in zip(res.outputs, static.outputs, strict=True))
        print(f"{'static batches (path before)':<36}{static.seconds:>10.1f}{static_rate:>11.2f}")
        print(f"  time: prefill {sparts['prefill_share']:.0%}, decode {sparts['decode_share']:.0%}; "
              f"{sparts['decode_step_ms']:.0f} ms per decode step at {sparts['rows_per_step']:.1f} live rows; "
              f"ratio env/static {env_rate / static_rate:.2f}x (target >= 2x); identical outputs "
              f"{same_static}/{len(prompts)}")
        out.update(static_prompts_per_s=static_rate, ratio_vs_static=env_rate / static_rate,
                   static_rows_per_step=sparts["rows_per_step"], static_decode_step_ms=sparts["decode_step_ms"],
                   identical_vs_static=same_static)
    overhead = step_overhead_ms(model_path)
    print(f"  one decode step: {overhead['step_ms_batch1']:.0f} ms at batch 1, "
          f"{overhead['step_ms_batch16']:.0f} ms at batch 16 (per-step cost that batching shares)")
    out.update(overhead)
    if not args.skip_one_by_one:
        ref, ref_seconds = one_by_one(model_path, prompts, max_new)
        ref_rate = len(prompts) / ref_seconds
        same = sum(a == b for a, b in zip(res.outputs, ref, strict=True))
        print(f"{'one-by-one model.generate':<36}{ref_seconds:>10.1f}{ref_rate:>11.2f}")
        print(f"ratio env/one-by-one: {env_rate / ref_rate:.2f}x (target >= 6x); "
              f"identical outputs: {same}/{len(prompts)}")
        out.update(one_by_one_prompts_per_s=ref_rate, ratio=env_rate / ref_rate, identical=same)
    print("RESULT " + json.dumps({k: round(v, 4) if isinstance(v, float) else v for k, v in out.items()}))
    return out


if __name__ == "__main__":
    main()
