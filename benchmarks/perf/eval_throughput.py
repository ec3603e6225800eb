"""Evaluation throughput: batched generation in the worker against one-by-one ``generate``.

All paths answer the same prompts with the same per-prompt ``max_new_tokens``
(greedy, stop at EOS), in one run:

* **env**: ``ModelWorker.generate`` with the env's defaults (the persistent
  worker running :func:`ftdojo_gym.model_process.generation.generate`:
  length-sorted left-padded batches, finished rows dropped from the batch, bf16
  where the hardware has it); prompts/s = prompts / the worker's generation
  seconds (model load excluded by a warm-up call);
* **other decoding**: the same with continuous batching switched the other way
  (``FTDOJO_GENERATION_REFILL``);
* **fp32 batched**: the env's path in fp32, the batched path before bf16
  generation (the issue measured it at 1.66 prompts/s on this machine);
* **one-by-one**: ``model.generate`` on each prompt alone in this process, the
  way a naive evaluation loop does it, with the env's numerics (bf16 weights
  where the env runs bf16; identical outputs expected) and in fp32 (how many
  outputs bf16 changes).

The prompts are TableBench validation items (table + question, ~110 tokens with
the chat template; 16-80 new tokens by subset), as the env evaluates them.

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
from ftdojo_gym.model_process.protocol import DEFAULT_EVAL_BATCH, GenerateResult  # noqa: E402
from ftdojo_gym.model_process.resident import resolve_precision  # noqa: E402
from ftdojo_gym.models import resolve_model  # noqa: E402

#: The batched path's speed when the issue was filed (idle machine, fp32, static batches).
ISSUE_BATCHED_PROMPTS_PER_S = 1.66


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


def one_by_one(model_path: str, prompts: list[str], max_new: list[int], precision: str = "fp32"
               ) -> tuple[list[str], float]:
    """The reference: a plain loop of ``model.generate`` calls, one prompt each, and its seconds.

    ``precision="bf16"``: the weights cast to bf16 after loading (the buffers, such
    as RoPE's frequencies, stay fp32 as ``from_pretrained(dtype=bfloat16)`` keeps them)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(model_path)
    model = AutoModelForCausalLM.from_pretrained(model_path, dtype=torch.float32).eval()
    if precision == "bf16":
        with torch.no_grad():
            for p in model.parameters():
                p.data = p.data.to(torch.bfloat16)
    t0 = time.perf_counter()
    outs = generate_each(model, tok, prompts, max_new)
    return outs, time.perf_counter() - t0


def worker_generate(model_path: str, prompts: list[str], max_new: list[int], batch_size: int,
                    threads: int | None, precision: str, refill: bool | None = None) -> GenerateResult:
    """One timed ``ModelWorker.generate`` call after a warm-up call (imports, model load, kernels).

    ``refill`` None: the worker's default decoding; True/False: continuous batching on/off."""
    env_vars = {} if refill is None else {"FTDOJO_GENERATION_REFILL": "1" if refill else "0"}
    with ModelWorker(threads=threads, env_vars=env_vars) as worker:
        warm = worker.generate(model_path, None, prompts[:2], 2, precision=precision)
        if warm.status != "ok":
            raise RuntimeError(f"{warm.error_class}: {warm.error}\n{warm.traceback}")
        res = worker.generate(model_path, None, prompts, max_new, batch_size=batch_size, precision=precision)
    if res.status != "ok":
        raise RuntimeError(f"{res.error_class}: {res.error}\n{res.traceback}")
    return res


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


def step_overhead_ms(model_path: str, precision: str = "fp32", reps: int = 20) -> dict[str, float]:
    """One decode step at batch 1 and batch 16 with a short cache: what a step costs regardless
    of the batch (weights read, Python and kernel launches per layer) vs per row."""
    import torch
    from transformers import AutoModelForCausalLM, DynamicCache

    dtype = torch.bfloat16 if precision == "bf16" else torch.float32
    model = AutoModelForCausalLM.from_pretrained(model_path, dtype=dtype).eval()
    out = {}
    with torch.inference_mode():
        for b in (1, 16):
            ids = torch.randint(10, 1000, (b, 32))
            cache = DynamicCache(config=model.config)
            model(input_ids=ids, cache=cache, use_cache=True, logits_to_keep=1)
            tok = ids[:, -1:]
            t0 = time.perf_counter()
            for _ in range(reps):
                model(input_ids=tok, cache=cache, use_cache=True)
            out[f"step_ms_batch{b}"] = 1000 * (time.perf_counter() - t0) / reps
    return out


def _same(a: list[str], b: list[str]) -> int:
    return sum(x == y for x, y in zip(a, b, strict=True))


def main(argv: list[str] | None = None) -> dict[str, float]:
    from ftdojo_gym.model_process import generation

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="smollm2-135m", help="model name for resolve_model (or 'tiny')")
    ap.add_argument("--prompts", type=int, default=64)
    ap.add_argument("--batch-size", type=int, default=DEFAULT_EVAL_BATCH)
    ap.add_argument("--threads", type=int, default=None, help="worker threads (default: all cores given)")
    ap.add_argument("--precision", choices=("auto", "bf16", "fp32"), default="auto",
                    help="the env path's generation precision (default: the env's, auto)")
    ap.add_argument("--skip-one-by-one", action="store_true", help="no one-by-one references")
    ap.add_argument("--skip-others", action="store_true",
                    help="only the env path: not the other decoding nor the fp32 batched path")
    args = ap.parse_args(argv)

    model_path = str(resolve_model(args.model))
    prompts, max_new = tablebench_prompts(args.prompts)
    precision = resolve_precision(args.precision)
    n = len(prompts)
    res = worker_generate(model_path, prompts, max_new, args.batch_size, args.threads, precision)
    env_rate = n / res.seconds
    parts = breakdown(res.stats, res.seconds)
    decoding = "continuous batching" if generation.REFILL else "static batches"
    print(f"eval throughput: {args.model}, {n} TableBench prompts, max_new_tokens {min(max_new)}-{max(max_new)}, "
          f"greedy, batch {args.batch_size}")
    print(f"{'path':<44}{'seconds':>9}{'prompts/s':>11}")
    print(f"{f'env ({precision}, {decoding})':<44}{res.seconds:>9.1f}{env_rate:>11.2f}")
    print(f"  time: prefill {parts['prefill_share']:.0%}, decode {parts['decode_share']:.0%}, other "
          f"{parts['other_share']:.0%}; padding {parts['padding_share']:.0%} of prefill positions; "
          f"{parts['decode_step_ms']:.0f} ms per decode step at {parts['rows_per_step']:.1f} live rows; "
          f"prefill {parts['prefill_tokens_per_s']:.0f} tokens/s")
    out: dict[str, float | str | bool] = {
        "env_prompts_per_s": env_rate, "precision": precision, "refill": generation.REFILL,
        "batch_size": args.batch_size, "worker_peak_rss_gb": res.peak_rss_gb,
        "ratio_vs_issue_batched": env_rate / ISSUE_BATCHED_PROMPTS_PER_S, **parts}
    if not args.skip_others:
        alt = worker_generate(model_path, prompts, max_new, args.batch_size, args.threads, precision,
                              refill=not generation.REFILL)
        alt_rate = n / alt.seconds
        alt_parts = breakdown(alt.stats, alt.seconds)
        other = "static batches" if generation.REFILL else "continuous batching"
        print(f"{f'other decoding ({precision}, {other})':<44}{alt.seconds:>9.1f}{alt_rate:>11.2f}")
        print(f"  {alt_parts['decode_step_ms']:.0f} ms per decode step at {alt_parts['rows_per_step']:.1f} live rows;"
              f" identical outputs {_same(res.outputs, alt.outputs)}/{n}")
        out.update(alt_decoding_prompts_per_s=alt_rate, identical_vs_alt=_same(res.outputs, alt.outputs),
                   alt_rows_per_step=alt_parts["rows_per_step"], alt_decode_step_ms=alt_parts["decode_step_ms"])
        fp32 = res if precision == "fp32" else worker_generate(model_path, prompts, max_new, args.batch_size,
                                                              args.threads, "fp32")
        fp32_rate = n / fp32.seconds
        print(f"{'fp32 batched (the path before bf16)':<44}{fp32.seconds:>9.1f}{fp32_rate:>11.2f}")
        out.update(fp32_batched_prompts_per_s=fp32_rate, ratio_vs_fp32_batched=env_rate / fp32_rate)
    print(f"ratio env / the issue's batched path ({ISSUE_BATCHED_PROMPTS_PER_S} prompts/s): "
          f"{out['ratio_vs_issue_batched']:.2f}x (target >= 2x)")
    overhead = step_overhead_ms(model_path, precision)
    print(f"  one decode step ({precision}): {overhead['step_ms_batch1']:.0f} ms at batch 1, "
          f"{overhead['step_ms_batch16']:.0f} ms at batch 16 (per-step cost that batching shares)")
    out.update(overhead)
    if not args.skip_one_by_one:
        ref, ref_seconds = one_by_one(model_path, prompts, max_new, precision)
        ref_rate = n / ref_seconds
        print(f"{f'one-by-one model.generate ({precision})':<44}{ref_seconds:>9.1f}{ref_rate:>11.2f}")
        print(f"ratio env / one-by-one: {env_rate / ref_rate:.2f}x (target >= 6x); "
              f"identical outputs: {_same(res.outputs, ref)}/{n}")
        out.update(one_by_one_prompts_per_s=ref_rate, ratio=env_rate / ref_rate, identical=_same(res.outputs, ref))
        if precision != "fp32":
            ref32, ref32_seconds = one_by_one(model_path, prompts, max_new, "fp32")
            rate32 = n / ref32_seconds
            print(f"{'one-by-one model.generate (fp32)':<44}{ref32_seconds:>9.1f}{rate32:>11.2f}")
            print(f"ratio env / one-by-one fp32: {env_rate / rate32:.2f}x; outputs identical to fp32's: "
                  f"{_same(res.outputs, ref32)}/{n}")
            out.update(one_by_one_fp32_prompts_per_s=rate32, ratio_vs_fp32_one_by_one=env_rate / rate32,
                       identical_vs_fp32=_same(res.outputs, ref32))
    print("RESULT " + json.dumps({k: round(v, 4) if isinstance(v, float) else v for k, v in out.items()}))
    return out  # type: ignore[return-value]


if __name__ == "__main__":
    main()
