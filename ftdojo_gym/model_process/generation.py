"""Batched greedy generation for evaluation.

:func:`generate` answers many prompts with a base model (optionally with a LoRA
adapter merged in) as fast as the CPU allows while giving the same strings as
calling ``model.generate`` on each prompt alone:

* each prompt is one user message rendered with the tokenizer's chat template
  (``add_generation_prompt=True``), exactly as :mod:`ftdojo_gym.model_process.sft` trains;
* prompts are sorted by ``max_new_tokens`` and then by length, so a batch
  holds prompts of similar length (little left padding) and each row stops at
  its own limit; outputs come back in input order;
* a start shared by a whole batch (the chat template's system turn, a task's
  fixed instruction) is prefilled once and its KV cache copied to every row
  (:func:`_prefill`);
* the base model is the worker's resident one (loaded once per episode), and a
  LoRA adapter is merged into new weight tensors next to the original ones
  (bit-identical to ``merge_and_unload``; :mod:`~ftdojo_gym.model_process.resident`),
  so decoding runs plain linear layers and the base weights stay clean;
* in bf16 where the hardware has it (``precision="auto"``; the published
  SmolLM2 weights are bf16): the resident fp32 weights are swapped for bf16
  copies for the call and put back after (training keeps fp32 masters);
* decoding is greedy, stops at EOS, under ``torch.inference_mode``, in a short
  loop over the model's forward (:func:`greedy_decode`) that drops a finished
  row from the batch and its KV cache at once; ``model.generate`` keeps
  computing every row until the last one stops. Continuous batching
  (:func:`refill_decode`, :data:`REFILL`) is the alternative.

Measured on the idle 2-core AVX512-BF16 CPU with SmolLM2-135M on 64 TableBench
prompts (16-80 new tokens), batch 32: ~3.8 prompts/s in fp32 and ~9.7 in bf16
(``benchmarks/perf/eval_throughput.py``); in fp32 the outputs are those of
``model.generate`` one prompt at a time.

The merged adapter is kept for the next call with the same adapter (the worker
evaluates the same run on several splits). Nothing is written to disk:
hidden-test prompts pass through here.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from ftdojo_gym.model_process.protocol import DEFAULT_EVAL_BATCH
from ftdojo_gym.model_process.resident import (
    RESIDENT,
    folder_stamp,
    mergeable,
    resolve_precision,
    swap_weights,
)

ProgressFn = Callable[[int, int], None]
#: Decode with continuous batching (:func:`refill_decode`); False (default): static
#: length-sorted batches (:func:`greedy_decode`). ``FTDOJO_GENERATION_REFILL=1`` in a
#: worker's environment turns it on there. Measured on an idle 2-core machine, 64
#: TableBench prompts, batch 16 (``benchmarks/perf/eval_throughput.py``): static 3.00 vs
#: refill 2.73 prompts/s in fp32, 7.9 vs 7.0 in bf16; refill only caught up at batch 24-32.
REFILL = os.environ.get("FTDOJO_GENERATION_REFILL", "0") == "1"

def load_for_generation(model_path: str | os.PathLike[str], adapter_path: str | os.PathLike[str] | None = None,
                        precision: str = "fp32") -> tuple[Any, Any]:
    """``(model, tokenizer)`` for inference, with the adapter merged if given.

    ``adapter_path`` may be a LoRA adapter folder (``adapter_config.json``) or a
    full fine-tuned model folder, which then replaces ``model_path``. The base
    model is the worker's resident one (:mod:`~ftdojo_gym.model_process.resident`):
    loaded once, a LoRA adapter merged into new weight tensors next to the
    originals (kept until another adapter or a training run needs the base).
    ``precision`` ``"bf16"`` (resolved, not ``"auto"``): bf16 weights (on a CPU,
    bf16 copies swapped into the resident fp32 model).
    """
    model_path = str(model_path)
    adapter = str(adapter_path) if adapter_path else None
    is_lora = adapter is not None and (Path(adapter) / "adapter_config.json").is_file()
    if adapter is not None and not is_lora and not (Path(adapter) / "config.json").is_file():
        raise FileNotFoundError(f"{adapter} holds neither a LoRA adapter nor a model (no "
                                "adapter_config.json or config.json)")
    bf16 = precision == "bf16"
    cuda = _device() == "cuda"
    dtype = _dtype(bf16 and cuda)
    half = bf16 and not cuda
    if adapter is None:
        return RESIDENT.with_adapter(model_path, None, dtype, half)
    if not is_lora:  # a full fine-tuned model: it becomes the held model (reloaded when it changes)
        return RESIDENT.with_adapter(adapter, None, dtype, half, stamp=folder_stamp(adapter))
    if mergeable(adapter):
        return RESIDENT.with_adapter(model_path, adapter, dtype, half)
    # An adapter that cannot be merged by weight addition (DoRA, saved modules): a private copy.
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    RESIDENT.clear()
    tokenizer = AutoTokenizer.from_pretrained(model_path)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    model = AutoModelForCausalLM.from_pretrained(model_path, dtype=dtype)
    model = PeftModel.from_pretrained(model, adapter).merge_and_unload()
    swap_weights(model, [], half, linears_only=False)
    return model.to(_device()).eval(), tokenizer


def _dtype(bf16_weights: bool) -> Any:
    import torch

    return torch.bfloat16 if bf16_weights else torch.float32


def _device() -> str:
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def clear_cache() -> None:
    """Drop the held model (frees its memory)."""
    RESIDENT.clear()


def render_prompts(tokenizer: Any, prompts: Sequence[str]) -> list[list[int]]:
    """Token ids of each prompt as a user turn followed by the assistant header."""
    ids = []
    for p in prompts:
        text = tokenizer.apply_chat_template([{"role": "user", "content": p}], tokenize=False,
                                             add_generation_prompt=True)
        ids.append(tokenizer(text, add_special_tokens=False)["input_ids"])
    return ids


def plan_batches(lengths: Sequence[int], max_new: Sequence[int], batch_size: int) -> list[list[int]]:
    """Indices sorted by ``max_new_tokens`` then by prompt length, cut into batches of ``batch_size``.

    A batch may mix token limits (each row stops at its own, see :func:`greedy_decode`):
    a task's subsets often have different limits, and batches split at every limit change
    ran part-empty (a decode step costs nearly the same for 4 rows as for 16). Sorting by
    limit keeps rows that may run as long together. Longest prompts first, so an
    out-of-memory error shows up on the first batch.
    """
    order = sorted(range(len(lengths)), key=lambda i: (max_new[i], lengths[i]), reverse=True)
    return [order[k:k + batch_size] for k in range(0, len(order), batch_size)]


def generate(model_path: str | os.PathLike[str], adapter_path: str | os.PathLike[str] | None,
             prompts: Sequence[str], max_new_tokens: int | Sequence[int], batch_size: int = DEFAULT_EVAL_BATCH,
             on_progress: ProgressFn | None = None, stats: dict[str, float] | None = None,
             precision: str = "auto") -> list[str]:
    """Greedy completions of ``prompts`` (each a user message), in input order.

    ``max_new_tokens`` is one limit for all prompts or one per prompt. Each
    output is the decoded new text without special tokens, stopped at EOS.
    ``on_progress(done, total)`` is called after each batch. ``stats``, if
    given, receives where the time went (see :func:`greedy_decode`) summed over
    the batches, plus ``load_s`` (model load or adapter merge) and ``bf16``
    (1.0 when it decoded in bf16). ``precision`` (see
    :func:`~ftdojo_gym.model_process.resident.resolve_precision`): ``"bf16"``
    decodes with bf16 weights, as the model is published (2-3x faster than fp32
    for SmolLM2-135M on an AVX512-BF16 CPU; a few greedy outputs differ from
    fp32's where two tokens are nearly tied), ``"fp32"`` in fp32.
    """
    import torch

    prompts = list(prompts)
    if isinstance(max_new_tokens, int):
        max_new = [max_new_tokens] * len(prompts)
    else:
        max_new = [int(m) for m in max_new_tokens]
        if len(max_new) != len(prompts):
            raise ValueError(f"max_new_tokens has {len(max_new)} entries for {len(prompts)} prompts")
    if any(m < 1 for m in max_new):
        raise ValueError("max_new_tokens must be >= 1")
    if batch_size < 1:
        raise ValueError("batch_size must be >= 1")
    if not prompts:
        return []

    bf16 = resolve_precision(precision) == "bf16"
    t0 = time.perf_counter()
    model, tokenizer = load_for_generation(model_path, adapter_path, "bf16" if bf16 else "fp32")
    if stats is not None:
        stats["load_s"] = stats.get("load_s", 0.0) + time.perf_counter() - t0
        stats["bf16"] = float(bf16)
    ids = render_prompts(tokenizer, prompts)
    eos = model.generation_config.eos_token_id
    if eos is None:
        eos = tokenizer.eos_token_id
    stops = {eos} if isinstance(eos, int) else set(eos)
    outputs: list[str] = [""] * len(prompts)
    done = 0
    if not REFILL:
        with torch.inference_mode():
            for batch in plan_batches([len(x) for x in ids], max_new, batch_size):
                new = greedy_decode(model, [ids[i] for i in batch], [max_new[i] for i in batch], stops,
                                    tokenizer.pad_token_id, stats)
                for row, i in enumerate(batch):
                    outputs[i] = tokenizer.decode(new[row], skip_special_tokens=True)
                done += len(batch)
                if on_progress is not None:
                    on_progress(done, len(prompts))
        return outputs

    def finished(i: int, tokens: list[int]) -> None:
        nonlocal done
        outputs[i] = tokenizer.decode(tokens, skip_special_tokens=True)
        done += 1
        if on_progress is not None and (done % batch_size == 0 or done == len(prompts)):
            on_progress(done, len(prompts))

    with torch.inference_mode():
        refill_decode(model, ids, max_new, batch_size, stops, tokenizer.pad_token_id, stats, finished)
    return outputs


def greedy_decode(model: Any, prompt_ids: Sequence[Sequence[int]], max_new_tokens: int | Sequence[int],
                  stops: set[int], pad_id: int, stats: dict[str, float] | None = None) -> list[list[int]]:
    """Greedy continuation of a batch of tokenized prompts, without the stop token.

    ``max_new_tokens`` is one limit for the batch or one per row.

    The same steps as ``model.generate(do_sample=False)`` on a left-padded batch
    (same masks and position ids; a shared prompt start prefilled once, see
    :func:`_prefill`), with one difference that matters on CPU: a row that
    emitted a stop token is dropped from the batch (and the KV cache) at once, so
    the remaining rows do not keep paying for finished ones (a row that reached its
    own limit is dropped the same way). ``generate`` computes every row until the
    last one stops.

    ``stats``, if given, gets these sums added: ``prefill_s`` and ``decode_s``
    (seconds), ``prompt_tokens`` and ``padded_tokens`` (real and padding
    positions of the prefill), ``decode_steps`` (forward calls after the
    prefill), ``decode_rows`` (row-steps: sum of the live batch over the steps),
    ``new_tokens`` and ``shared_prefix_tokens`` (prompt tokens not computed again
    thanks to a shared start).
    """
    import torch

    device = model.device
    n = len(prompt_ids)
    caps = [max_new_tokens] * n if isinstance(max_new_tokens, int) else [int(m) for m in max_new_tokens]
    if len(caps) != n:
        raise ValueError(f"max_new_tokens has {len(caps)} entries for {n} prompts")
    if any(c < 1 for c in caps):
        raise ValueError("max_new_tokens must be >= 1")
    t0 = time.perf_counter()
    logits, cache, mask, positions, padded, shared = _prefill(model, prompt_ids, pad_id)
    t_prefill = time.perf_counter()
    steps = row_steps = 0
    next_pos = positions + 1
    rows = list(range(n))  # original row of each live batch entry
    generated: list[list[int]] = [[] for _ in range(n)]
    while True:
        tokens = logits[:, -1].argmax(-1)
        keep = []
        for k, tok in enumerate(tokens.tolist()):
            if tok in stops:
                continue
            row = generated[rows[k]]
            row.append(tok)
            if len(row) < caps[rows[k]]:
                keep.append(k)
        if not keep:
            break
        if len(keep) < len(rows):
            index = torch.tensor(keep, device=device)
            cache.batch_select_indices(index)
            mask, next_pos, tokens = mask[index], next_pos[index], tokens[index]
            rows = [rows[k] for k in keep]
        mask = torch.cat([mask, mask.new_ones((len(rows), 1))], dim=1)
        logits = model(input_ids=tokens[:, None], attention_mask=mask, position_ids=next_pos,
                       cache=cache, use_cache=True).logits
        next_pos = next_pos + 1
        steps += 1
        row_steps += len(rows)
    if stats is not None:
        real = sum(len(p) for p in prompt_ids)
        for key, value in (("prefill_s", t_prefill - t0), ("decode_s", time.perf_counter() - t_prefill),
                           ("prompt_tokens", real), ("padded_tokens", padded), ("decode_steps", steps),
                           ("decode_rows", row_steps), ("new_tokens", sum(len(g) for g in generated)),
                           ("shared_prefix_tokens", shared)):
            stats[key] = stats.get(key, 0) + value
    return generated


#: A batch whose prompts all start with at least this many identical tokens prefills that
#: prefix once (see :func:`_prefill`); shorter common starts are not worth a second call.
MIN_SHARED_PREFIX = 16


def shared_prefix(prompt_ids: Sequence[Sequence[int]]) -> int:
    """How many leading tokens all prompts share, leaving every prompt at least one of its own."""
    if len(prompt_ids) < 2:
        return 0
    first, limit = prompt_ids[0], min(len(p) for p in prompt_ids) - 1
    k = 0
    while k < limit and all(p[k] == first[k] for p in prompt_ids):
        k += 1
    return k


def _prefill(model: Any, prompt_ids: Sequence[Sequence[int]], pad_id: int
             ) -> tuple[Any, Any, Any, Any, int, int]:
    """Run a batch's prompts through the model: ``(logits of the last position, cache, attention
    mask, position of each row's last token (n x 1), padding positions, prefix tokens saved)``.

    When the prompts share a start of :data:`MIN_SHARED_PREFIX` tokens or more (the chat
    template's system turn, a task's fixed instruction), that start is computed once and its
    KV cache copied to every row; the rest of each prompt follows, left-padded, so a row's
    cache reads ``[shared start][padding][its own tokens]`` with the padding masked and the
    positions those of the prompt alone. Same attention, same positions, so the same outputs
    as prefilling every row in full, up to float rounding (tested against one-by-one
    ``generate``). Models whose cache is not a plain growing one (sliding windows) prefill in
    full."""
    import torch
    from transformers import DynamicCache

    device = model.device
    n = len(prompt_ids)
    cache = DynamicCache(config=model.config)  # its layer types are known before any forward
    pre = shared_prefix(prompt_ids) if _can_refill(cache) else 0
    if pre < MIN_SHARED_PREFIX:
        pre = 0
    else:
        head = torch.tensor([list(prompt_ids[0][:pre])], dtype=torch.long, device=device)
        model(input_ids=head, attention_mask=torch.ones_like(head), position_ids=torch.arange(pre, device=device)[None],
              cache=cache, use_cache=True, logits_to_keep=1)
        for layer in cache.layers:
            layer.keys = layer.keys.expand(n, -1, -1, -1).contiguous()
            layer.values = layer.values.expand(n, -1, -1, -1).contiguous()
    ids, own_mask = _left_padded([p[pre:] for p in prompt_ids], pad_id, device)
    mask = torch.cat([own_mask.new_ones((n, pre)), own_mask], dim=1)
    # Like generate: positions count real tokens only (padding's are masked and do not matter).
    positions = ((mask.cumsum(-1) - 1).clamp(min=0))[:, pre:]
    logits = model(input_ids=ids, attention_mask=mask, position_ids=positions, cache=cache,
                   use_cache=True, logits_to_keep=1).logits
    padded = int(own_mask.numel() - own_mask.sum())
    return logits, cache, mask, positions[:, -1:], padded, pre * (n - 1)


def _left_padded(prompt_ids: Sequence[Sequence[int]], pad_id: int, device: Any) -> tuple[Any, Any]:
    """``(input_ids, attention_mask)`` of a left-padded batch: every row ends where decoding starts."""
    import torch

    width = max(len(p) for p in prompt_ids)
    input_ids = torch.full((len(prompt_ids), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(prompt_ids), width), dtype=torch.long)
    for row, p in enumerate(prompt_ids):
        input_ids[row, width - len(p):] = torch.tensor(list(p), dtype=torch.long)
        mask[row, width - len(p):] = 1
    return input_ids.to(device), mask.to(device)


def _can_refill(cache: Any) -> bool:
    """True when every cache layer is a plain growing KV layer (no sliding window, no extras)."""
    from transformers.cache_utils import DynamicLayer

    return all(type(layer) is DynamicLayer for layer in cache.layers)


def _merge_caches(cache: Any, mask: Any, new_cache: Any, new_mask: Any) -> Any:
    """Append ``new_cache``'s rows to ``cache`` (both left-padded: the shorter one gets more left
    padding) and return the merged attention mask."""
    import torch
    import torch.nn.functional as F

    width = max(mask.shape[1], new_mask.shape[1])

    def pad(t: Any, dim_from_end: int) -> Any:
        extra = width - t.shape[-dim_from_end]
        if extra == 0:
            return t
        spec = [0, 0] * (dim_from_end - 1) + [extra, 0]
        return F.pad(t, spec)

    for layer, new_layer in zip(cache.layers, new_cache.layers, strict=True):
        layer.keys = torch.cat([pad(layer.keys, 2), pad(new_layer.keys, 2)], dim=0)
        layer.values = torch.cat([pad(layer.values, 2), pad(new_layer.values, 2)], dim=0)
    return torch.cat([pad(mask, 1), pad(new_mask, 1)], dim=0)


def refill_decode(model: Any, prompt_ids: Sequence[Sequence[int]], max_new: Sequence[int], slots: int,
                  stops: set[int], pad_id: int, stats: dict[str, float] | None = None,
                  on_finished: Callable[[int, list[int]], None] | None = None) -> list[list[int]]:
    """Greedy continuations of all ``prompt_ids`` with at most ``slots`` rows decoding at once,
    a finished row's slot given to the next prompt at once (continuous batching).

    Static batches (:func:`greedy_decode`) run until their longest row stops, with
    fewer and fewer live rows: a decode step costs nearly the same for 2 rows as
    for 16 on a CPU (the weights are read once per step), so the tail of each batch
    is paid at full price. Here the waiting prompts are prefilled (as one
    left-padded batch) as soon as slots free up, their KV cache is left-padded to
    the running one's width and appended, and every step decodes a full batch
    until the queue runs dry. Each row keeps its own ``max_new`` limit, mask and
    positions (padding sits at position 0, as in ``generate``), so each output is
    what the prompt gives alone, up to float rounding in padded matmuls.

    Prompts are taken longest first (little extra padding between neighbours).
    ``on_finished(index, tokens)`` is called as each prompt finishes. ``stats`` as
    in :func:`greedy_decode`, plus ``prefill_calls``. Returns the generated token
    ids (without the stop token) in ``prompt_ids`` order.
    """
    import torch

    device = model.device
    queue = sorted(range(len(prompt_ids)), key=lambda i: -len(prompt_ids[i]))
    generated: list[list[int]] = [[] for _ in prompt_ids]
    rows: list[int] = []  # prompt index of each live row of the cache
    cache = mask = positions = tokens = None
    t_prefill = t_decode = 0.0
    steps = row_steps = prefills = padded = shared = 0

    def finish(i: int) -> None:
        if on_finished is not None:
            on_finished(i, generated[i])

    def take(i: int, tok: int) -> bool:
        """Record ``tok`` for prompt ``i``; True while the row goes on decoding."""
        if tok in stops:
            finish(i)
            return False
        generated[i].append(tok)
        if len(generated[i]) >= max_new[i]:
            finish(i)
            return False
        return True

    splice = True  # whether new rows can join the running cache (known after the first prefill)
    while queue or rows:
        if queue and len(rows) < slots and (splice or not rows):
            t0 = time.perf_counter()
            admitted = queue[: slots - len(rows)]
            del queue[: len(admitted)]
            logits, new_cache, new_mask, new_pos, pad, saved = _prefill(model, [prompt_ids[i] for i in admitted],
                                                                        pad_id)
            padded += pad
            shared += saved
            prefills += 1
            first = logits[:, -1].argmax(-1)
            keep = [k for k, tok in enumerate(first.tolist()) if take(admitted[k], tok)]
            if keep:
                if len(keep) < len(admitted):
                    index = torch.tensor(keep, device=device)
                    new_cache.batch_select_indices(index)
                    new_mask, new_pos, first = new_mask[index], new_pos[index], first[index]
                if not rows:
                    cache, mask, positions, tokens = new_cache, new_mask, new_pos + 1, first
                    # A cache we cannot splice (sliding windows, ...): static batches instead.
                    splice = _can_refill(cache)
                else:
                    mask = _merge_caches(cache, mask, new_cache, new_mask)
                    positions = torch.cat([positions, new_pos + 1])
                    tokens = torch.cat([tokens, first])
                rows += [admitted[k] for k in keep]
            t_prefill += time.perf_counter() - t0
            if not rows:
                continue
        t0 = time.perf_counter()
        mask = torch.cat([mask, mask.new_ones((len(rows), 1))], dim=1)
        logits = model(input_ids=tokens[:, None], attention_mask=mask, position_ids=positions,
                       cache=cache, use_cache=True).logits
        steps += 1
        row_steps += len(rows)
        nxt = logits[:, -1].argmax(-1)
        keep = [k for k, tok in enumerate(nxt.tolist()) if take(rows[k], tok)]
        if len(keep) < len(rows):
            index = torch.tensor(keep, device=device, dtype=torch.long)
            cache.batch_select_indices(index)
            mask, positions, nxt = mask[index], positions[index], nxt[index]
            rows = [rows[k] for k in keep]
            # Columns that are padding in every remaining row can go.
            if rows:
                lead = int((mask.sum(0) == 0).long().cumprod(0).sum())
                if lead:
                    mask = mask[:, lead:]
                    for layer in cache.layers:
                        layer.keys, layer.values = layer.keys[:, :, lead:], layer.values[:, :, lead:]
        tokens = nxt
        positions = positions + 1
        t_decode += time.perf_counter() - t0
    if stats is not None:
        real = sum(len(p) for p in prompt_ids)
        for key, value in (("prefill_s", t_prefill), ("decode_s", t_decode), ("prompt_tokens", real),
                           ("padded_tokens", padded), ("decode_steps", steps), ("decode_rows", row_steps),
                           ("new_tokens", sum(len(g) for g in generated)), ("prefill_calls", prefills),
                           ("shared_prefix_tokens", shared)):
            stats[key] = stats.get(key, 0) + value
    return generated
