"""Supervised fine-tuning of a base model on prompt/completion pairs, with ``trl``.

:func:`run_sft` is what the training worker runs for a ``train`` request. It
builds a conversational prompt-completion dataset (the prompt is one user
message, the completion one assistant message), so that ``trl`` puts the loss
on the completion only and the chat template is exactly the one
:func:`ftdojo_gym.model_process.generation.generate` uses at inference.

The trainer set-up follows what was measured on the CPU machines (see
``DESIGN.md``, "trl on this CPU"): fp32 unless a bf16-capable GPU is present or
the CPU's bf16 matrix products are measured faster than fp32
(:mod:`ftdojo_gym.model_process.cpu_bf16`; listing ``avx512_bf16`` is not enough),
bf16 autocast then, no gradient checkpointing,
length-grouped batches, a completion-only cross-entropy instead of trl's fused
LM-head loss (see :data:`LOSS_MODE`), no checkpoints, no dataloader workers, no
reporting. Measured here (2-core AVX2 CPU, SmolLM2-135M, LoRA r16, batch 8): the
model's own loss 130 tokens/s vs trl's fused loss 92; with the completion-only
loss the env path runs ~1.8x a plain padded peft loop
(``benchmarks/perf/train_throughput.py``).

Errors are raised with precise types: :class:`~ftdojo_gym.errors.ConfigError`
(and its :class:`TrainingDiverged`) and :class:`~ftdojo_gym.errors.DataError`
for problems the caller can fix; anything else propagates unchanged (the worker
classifies it). Progress is recorded in a :class:`TrainProgress` owned by the
caller, so a crash mid-run still reports the steps, tokens and losses so far.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from pydantic import ValidationError

from ftdojo_gym.errors import ConfigError, DataError
from ftdojo_gym.model_process import attention
from ftdojo_gym.model_process.protocol import LogEvent, TrainRequest
from ftdojo_gym.model_process.resident import (
    RESIDENT,
    cpu_has_fast_bf16,
    put_back,
    swap_weights,
)
from ftdojo_gym.rules import MAX_TRAIN_SAMPLES
from ftdojo_gym.training_config import TrainConfig

#: Samples used by a fail-fast debug run, and its step cap.
DEBUG_SAMPLES = 100
DEBUG_MAX_STEPS = 4

#: How the training loss is computed (same value, different cost; see ``_trainer_classes``):
#: "completion" (LM head on the labelled positions only, falls back to "model" for
#: architectures with logit scaling), "model" (the model's own loss), "trl" (trl's fused head).
LOSS_MODE: Literal["completion", "model", "trl"] = "completion"

#: A batch whose padded size (rows x longest row) exceeds this many tokens is run as
#: several forward/backward passes over row chunks, each cut to its own longest row,
#: with the gradients summed: the same loss and update as one pass (the loss is
#: normalised by the whole batch's labelled tokens), at a fraction of the activation
#: memory. ``FTDOJO_TRAIN_CHUNK_TOKENS`` in the worker's environment overrides it
#: (0: never split). Measured here (SmolLM2-135M, LoRA r16, batches of 8 TableBench-like
#: pairs, ~1,800 padded tokens, 4 steps on one core, in-process): peak RSS 4.85 GB unsplit,
#: 2.94 GB at 1024, 2.31 GB at 512, 2.10 GB at 256 (activations of a 135M model are
#: ~1.6 MB a token in fp32). In the worker with 2 threads (``train_throughput``, idle):
#: 4.74 GB unsplit, 3.42 GB at 1024, 3.05 GB at 512; the split costs some speed there
#: (515 vs 545 tokens/s unsplit vs 512, within the run-to-run noise of about 10 %).
CHUNK_TOKENS = int(os.environ.get("FTDOJO_TRAIN_CHUNK_TOKENS", "512"))

#: Batches are padded to a multiple of this many columns (trl's ``pad_to_multiple_of``), and
#: so are the row chunks of :data:`CHUNK_TOKENS`, so that the same few tensor shapes come back
#: step after step (``FTDOJO_TRAIN_PAD_MULTIPLE``; 0 or 1: pad to the longest row only). On a
#: CPU every new shape makes oneDNN build and cache new matmul primitives, and with a new
#: width at nearly every step that cache grew by ~40 MB a step. Measured in-process
#: (SmolLM2-135M, LoRA r16, 16 steps of ``benchmarks/perf/train_throughput``'s pairs, 512-token
#: chunks, 2 threads): peak RSS 3.20 GB unpadded, 2.46 GB at 32, 2.42 GB at 64, at the same speed
#: (473, 485, 488 tokens/s; the padding is masked and unlabelled, so the loss is unchanged).
PAD_MULTIPLE = int(os.environ.get("FTDOJO_TRAIN_PAD_MULTIPLE", "32"))

#: On a CPU, a training chunk (see :data:`CHUNK_TOKENS`) whose rows are at most this many
#: tokens wide runs the model's "eager" attention (matmul, softmax, matmul); wider chunks
#: run the model's own implementation (sdpa). PyTorch's CPU flash-attention kernel is slow
#: for short rows, above all its backward pass (a quarter of a SmolLM2 training step went
#: there), while eager attention keeps ``rows x heads x width^2`` probabilities for the
#: backward pass, which grows fast with the width (``FTDOJO_TRAIN_EAGER_MAX_LEN``; 0: never).
#: Both compute the same attention; in bf16 the results differ by rounding. Measured
#: (forward and backward, 9 query and 3 key/value heads of 64, bf16, 2 threads): 4 rows x
#: 128 tokens 2.6 vs 8.0 ms, 2 x 256 5.8 vs 7.7 ms, 1 x 512 15.3 vs 13.2 ms, 1 x 1024 69 vs
#: 30 ms. In the worker's training run (SmolLM2-135M, LoRA r16, 8 steps of
#: ``benchmarks/perf/train_throughput``'s pairs, three rounds in one process, medians):
#: 485 tokens/s with sdpa only, 545 with eager up to 256, 613 up to 384; peak RSS +0.17 GB.
EAGER_ATTENTION_MAX_LEN = int(os.environ.get("FTDOJO_TRAIN_EAGER_MAX_LEN", "384"))

#: Narrow chunks (see :data:`EAGER_ATTENTION_MAX_LEN`) run
#: :func:`~ftdojo_gym.model_process.attention.matmul_attention` rather than transformers' "eager"
#: attention: the same products with one pass over the score matrix for scale and mask, a
#: softmax in the products' precision, and no key/value head copied per query head
#: (``FTDOJO_TRAIN_MATMUL_ATTENTION=0``: "eager"). In fp32 the results are identical to
#: "eager"; under bf16 autocast the outputs too, the gradients equal up to bf16 rounding.
MATMUL_ATTENTION = os.environ.get("FTDOJO_TRAIN_MATMUL_ATTENTION", "1") != "0"

#: On a CPU bf16-autocast LoRA run, give the frozen linear layers bf16 copies of their
#: weights for the run (see :func:`_frozen_linears_to_bf16`); False: autocast casts them
#: at every forward of every chunk (``FTDOJO_TRAIN_PRECAST_BF16=0``). The losses are
#: bit-identical either way; measured on an idle 2-core AVX512-BF16 machine
#: (``benchmarks/perf/train_throughput.py``, 16 steps): 557 vs 508 tokens/s.
PRECAST_BF16 = os.environ.get("FTDOJO_TRAIN_PRECAST_BF16", "1") != "0"

#: On a CPU bf16-autocast LoRA run, an fp32 activation that several LoRA layers read (a
#: norm's output, read by q/k/v or gate/up) is cast to bf16 once and that copy shared by all
#: of them, and peft's cast of a LoRA layer's input to its fp32 adapter weights is turned off
#: (see :func:`lora_inputs_cast_once`; ``FTDOJO_TRAIN_SHARED_CAST=0``: off). Before, autocast
#: cast one normed activation six times for q/k/v (each base layer and each LoRA A), and peft
#: sent the bf16 inputs of o/down through fp32 and back. The forward values are the same; the
#: gradients of a shared copy are summed in bf16 before the cast back to fp32 (each cast's
#: were summed in fp32), so the losses are equal up to bf16 rounding. Measured (SmolLM2-135M,
#: LoRA r16, 8 steps of ``benchmarks/perf/train_throughput``'s pairs, three rounds in one
#: process, medians; four such sessions): 637 -> 650, 570 -> 640, 595 -> 617 and
#: 652 -> 702 tokens/s; the same peak RSS.
SHARED_INPUT_CAST = os.environ.get("FTDOJO_TRAIN_SHARED_CAST", "1") != "0"

#: In a LoRA run, each plain LoRA layer scales its rank-r intermediate rather than its output:
#: ``base(x) + B(A(x) * scaling)`` instead of peft's ``base(x) + B(A(x)) * scaling`` (see
#: :func:`lora_scaled_on_rank`; ``FTDOJO_TRAIN_SCALE_ON_RANK=0``: off). The same product; the
#: multiplication touches ``tokens x r`` numbers instead of ``tokens x out`` (r = 16 against
#: 576-1536 for SmolLM2), in the forward pass and in the backward pass. With the default
#: ``lora_alpha / r`` = 2 (a power of two) the results are bit-identical. Measured in fp32 on
#: the Intel Xeon VM (SmolLM2-135M, LoRA r16, 6 steps of ``train_throughput``'s pairs, two
#: rounds in one process): 299 / 302 -> 313 / 312 and 294 / 289 -> 307 / 305 tokens/s.
SCALE_ON_RANK = os.environ.get("FTDOJO_TRAIN_SCALE_ON_RANK", "1") != "0"

#: Bump when a change to the training path changes a run's result (not only its speed): it
#: is part of every outcome-cache key (:func:`ftdojo_gym.outcome_cache.run_key`), so outcomes
#: cached by an older path are not served as this one's. 2: eager attention for narrow chunks
#: and batches padded to :data:`PAD_MULTIPLE` (same losses up to bf16 rounding). 3: one bf16
#: cast of an activation shared by the LoRA layers that read it (:data:`SHARED_INPUT_CAST`).
#: 4: LoRA's scaling applied to the rank-r intermediate (:data:`SCALE_ON_RANK`; the same
#: results up to rounding, bit-identical for power-of-two scalings). 5: narrow CPU chunks
#: run :data:`MATMUL_ATTENTION` (the same results in fp32, up to bf16 rounding in bf16).
TRAIN_PATH_REVISION = 5

Emit = Callable[[LogEvent], None]


class TrainingDiverged(ConfigError):
    """The loss became NaN or infinite: the run stopped (a CONFIG error: lower the learning rate)."""


@dataclass
class TrainProgress:
    """What a run has done so far; filled in while training, read on success or failure."""

    steps: int = 0
    #: training samples after loading, truncation and dropping unusable ones
    samples: int = 0
    train_tokens: int = 0
    losses: list[tuple[int, float]] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    #: wall-clock seconds of the training loop proper (model load and data prep excluded)
    train_seconds: float = 0.0
    #: wall-clock seconds of the whole request
    seconds: float = 0.0
    stopped_budget: bool = False
    #: Step at which the loss became NaN/inf (the run stops there), else None.
    diverged_step: int | None = None
    model_dir: str | None = None


def load_pairs(path: str | os.PathLike[str], max_samples: int) -> tuple[list[dict[str, str]], list[str]]:
    """Read ``{"prompt", "completion"}`` rows from a JSONL file.

    Returns the usable rows (both fields non-empty strings, at most
    ``max_samples``, file order) and warnings about what was skipped or cut.
    Raises :class:`DataError` when the file is missing or empty, a line is not a
    JSON object, a row lacks a field or has a non-string one, or no row is usable.
    """
    p = Path(path)
    if not p.is_file():
        raise DataError(f"training data file not found: {p}")
    rows: list[dict[str, str]] = []
    notes: list[str] = []
    n_lines = n_empty = 0
    with p.open(encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, 1):
            if not line.strip():
                continue
            n_lines += 1
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                raise DataError(f"{p.name} line {lineno}: not valid JSON ({exc.msg})") from None
            if not isinstance(row, dict):
                raise DataError(f"{p.name} line {lineno}: expected a JSON object, got {type(row).__name__}")
            missing = [k for k in ("prompt", "completion") if k not in row]
            if missing:
                raise DataError(
                    f"{p.name} line {lineno}: missing field(s) {missing}; every row needs "
                    f"'prompt' and 'completion' (found {sorted(row)[:8]})")
            prompt, completion = row["prompt"], row["completion"]
            if not isinstance(prompt, str) or not isinstance(completion, str):
                raise DataError(f"{p.name} line {lineno}: 'prompt' and 'completion' must be strings")
            if not prompt.strip() or not completion.strip():
                n_empty += 1
                continue
            rows.append({"prompt": prompt, "completion": completion})
    if n_lines == 0:
        raise DataError(f"training data file is empty: {p}")
    if n_empty:
        notes.append(f"skipped {n_empty} of {n_lines} rows with an empty prompt or completion")
    if not rows:
        raise DataError(f"no usable sample in {p.name}: all {n_lines} rows have an empty prompt or completion")
    if len(rows) > max_samples:
        notes.append(f"using the first {max_samples} of {len(rows)} samples (limit {max_samples})")
        rows = rows[:max_samples]
    return rows, notes


def parse_config(config: Mapping[str, Any] | TrainConfig) -> TrainConfig:
    """Validate a config mapping; raises :class:`ConfigError` with pydantic's message."""
    if isinstance(config, TrainConfig):
        return config
    try:
        return TrainConfig(**dict(config))
    except ValidationError as exc:
        raise ConfigError(f"invalid training config: {exc}") from None
    except TypeError as exc:
        raise ConfigError(f"invalid training config: {exc}") from None


def run_sft(req: TrainRequest, emit: Emit, progress: TrainProgress | None = None) -> TrainProgress:
    """Fine-tune ``req.base_model`` on ``req.data_path`` and save to ``req.output_dir``.

    ``req.base_model`` is something ``from_pretrained`` loads (a folder or hub
    id). Streams a :class:`~ftdojo_gym.model_process.protocol.LogEvent` through
    ``emit`` after every optimizer step. Uses at most ``req.max_samples`` and
    never more than :data:`~ftdojo_gym.rules.MAX_TRAIN_SAMPLES` samples. Stops early, with
    ``progress.stopped_budget = True``, once the non-padding tokens processed
    reach ``max_tokens`` (the step that crosses the budget completes, so the
    overshoot is below one batch). With ``debug=True`` the same code path runs on
    the first :data:`DEBUG_SAMPLES` samples for at most :data:`DEBUG_MAX_STEPS`
    steps. Saves the LoRA adapter (method ``lora``) or the full model and its
    tokenizer into ``output_dir`` and sets ``progress.model_dir``.

    ``progress`` (created if not given) is updated in place, so the caller can
    report partial progress when this raises. Raises :class:`ConfigError`,
    :class:`DataError`, or whatever torch/trl raise (OOM, I/O, ...).
    """
    t_start = time.monotonic()
    progress = progress if progress is not None else TrainProgress()
    cfg = parse_config(req.config)
    if req.max_tokens is not None and req.max_tokens < 1:
        raise ConfigError("max_tokens must be positive (or null for no budget)")
    limit = min(max(1, req.max_samples), MAX_TRAIN_SAMPLES)
    if req.debug:
        limit = min(limit, DEBUG_SAMPLES)
    rows, notes = load_pairs(req.data_path, limit)
    progress.warnings.extend(notes)

    # Heavy imports only here: the env process imports this module's types cheaply.
    import torch
    from datasets.utils.logging import disable_progress_bar
    from transformers import AutoModelForCausalLM, AutoTokenizer, set_seed

    disable_progress_bar()
    set_seed(cfg.seed)  # before the LoRA init, which draws random A matrices

    use_cuda = torch.cuda.is_available()
    bf16 = (use_cuda and torch.cuda.is_bf16_supported()) or (not use_cuda and cpu_has_fast_bf16())
    # fp32 master weights on CPU (autocast does the bf16 part when it pays off);
    # bf16 weights on a bf16 GPU for LoRA, like the paper's set-up.
    dtype = torch.bfloat16 if (use_cuda and bf16 and cfg.method == "lora") else torch.float32
    if cfg.method == "lora":
        # The worker's resident base model: loaded once per episode, LoRA layers added
        # now and taken out again in the ``finally`` below (the base weights are frozen).
        model, tokenizer = RESIDENT.base(req.base_model, dtype)
    else:  # full fine-tuning writes every weight: its own copy, the resident one dropped first
        RESIDENT.clear()
        tokenizer = AutoTokenizer.from_pretrained(req.base_model)
        if tokenizer.pad_token is None:
            tokenizer.pad_token = tokenizer.eos_token
        model = None
    if tokenizer.chat_template is None:
        raise ConfigError(f"base model {req.base_model} has no chat template; SFT here needs one")
    if model is None:
        model = AutoModelForCausalLM.from_pretrained(req.base_model, dtype=dtype)
    model.config.use_cache = False
    if cfg.method == "lora":
        set_seed(cfg.seed)  # again: the LoRA init must not depend on whether the base was just loaded
        try:
            model = _wrap_lora(model, cfg)
        except BaseException:
            RESIDENT.clear()  # peft may have added some layers before it gave up
            raise
        swapped = _frozen_linears_to_bf16(model) if (bf16 and not use_cuda and PRECAST_BF16) else []
        try:
            return _train_and_save(req, cfg, model, tokenizer, rows, bf16, use_cuda, emit, progress, t_start)
        finally:
            put_back(swapped)
            RESIDENT.release_peft(model)
    return _train_and_save(req, cfg, model, tokenizer, rows, bf16, use_cuda, emit, progress, t_start)


def _train_and_save(req: TrainRequest, cfg: TrainConfig, model: Any, tokenizer: Any, rows: list[dict[str, str]],
                    bf16: bool, use_cuda: bool, emit: Emit, progress: TrainProgress, t_start: float
                    ) -> TrainProgress:
    """Build the trainer, train, save the adapter or model: the part of :func:`run_sft` after loading."""
    from datasets import Dataset
    from trl import SFTConfig

    max_steps = cfg.max_steps if cfg.max_steps > 0 else -1
    if req.debug:
        max_steps = min(max_steps, DEBUG_MAX_STEPS) if max_steps > 0 else DEBUG_MAX_STEPS
    try:
        args = SFTConfig(
            output_dir=req.output_dir,
            use_cpu=not use_cuda,
            bf16=bf16,
            fp16=False,
            activation_checkpointing=False,  # ~30 % slower and not needed for small models
            train_sampling_strategy="group_by_length",  # less padding: the biggest single win
            learning_rate=cfg.learning_rate,
            lr_scheduler_type=cfg.lr_scheduler,
            warmup_steps=float(cfg.warmup_ratio),  # a float in [0, 1) is a ratio in transformers 5
            num_train_epochs=cfg.num_epochs,
            max_steps=max_steps,
            per_device_train_batch_size=cfg.batch_size,
            gradient_accumulation_steps=1,
            weight_decay=cfg.weight_decay,
            max_length=cfg.max_len,
            seed=cfg.seed,
            data_seed=cfg.seed,
            completion_only_loss=True,
            packing=False,
            pad_to_multiple_of=PAD_MULTIPLE if PAD_MULTIPLE > 1 else None,
            save_strategy="no",
            eval_strategy="no",
            logging_strategy="steps",
            logging_steps=1,
            # Report a NaN/inf loss as it is (the default hides it behind a running mean),
            # so that a diverging run stops at once; see TrainingDiverged.
            logging_nan_inf_filter=False,
            report_to="none",
            disable_tqdm=True,
            dataloader_num_workers=0,
            dataloader_pin_memory=False,
            dataset_num_proc=None,
        )
    except (ValueError, TypeError) as exc:
        raise ConfigError(f"invalid trainer arguments: {exc}") from None

    dataset = Dataset.from_list([
        {"prompt": [{"role": "user", "content": r["prompt"]}],
         "completion": [{"role": "assistant", "content": r["completion"]}]}
        for r in rows
    ])
    trainer_cls, callback_cls = _trainer_classes()
    callback = callback_cls(progress, emit, req.max_tokens)
    try:
        trainer = trainer_cls(model=model, args=args, train_dataset=dataset,
                              processing_class=tokenizer, callbacks=[callback])
    except (KeyError, IndexError) as exc:
        raise DataError(f"could not prepare the training data: {exc!r}") from None
    except (ValueError, TypeError) as exc:  # trl/peft reject the combination of settings
        raise ConfigError(f"trainer set-up failed: {exc}") from None
    trainer.progress = progress
    trainer.attention = AttentionByWidth(model, 0 if use_cuda else EAGER_ATTENTION_MAX_LEN,
                                         narrow=attention.register() if MATMUL_ATTENTION else "eager")
    n_kept = progress.samples = len(trainer.train_dataset)
    if n_kept == 0:
        raise DataError(
            f"zero usable samples: all {len(rows)} prompts fill max_len={cfg.max_len} tokens, "
            "leaving no completion token to train on; raise max_len or shorten the prompts")
    if n_kept < len(rows):
        progress.warnings.append(
            f"dropped {len(rows) - n_kept} of {len(rows)} samples whose prompt fills max_len={cfg.max_len}")

    cast_once = (lora_inputs_cast_once(model) if (SHARED_INPUT_CAST and bf16 and not use_cuda)
                 else contextlib.nullcontext())
    scaled_on_rank = lora_scaled_on_rank(model) if SCALE_ON_RANK else contextlib.nullcontext()
    t_train = time.monotonic()
    try:
        with cast_once, scaled_on_rank:
            trainer.train()
    finally:
        trainer.attention.restore()  # the resident model is lent to generation next
        progress.train_seconds = time.monotonic() - t_train
        progress.steps = trainer.state.global_step
    if progress.diverged_step is not None:
        raise TrainingDiverged(
            f"training diverged: the loss became non-finite at step {progress.diverged_step} "
            f"(learning_rate={cfg.learning_rate}); no model was saved. Lower the learning rate "
            "or add warm-up.")
    out = Path(req.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    trainer.model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    progress.model_dir = str(out)
    progress.seconds = time.monotonic() - t_start
    return progress


class AttentionByWidth:
    """Switches a model between matmul attention (``narrow``: transformers' "eager" or
    :data:`~ftdojo_gym.model_process.attention.NAME`) for batches at most ``max_len`` tokens
    wide and its own implementation for wider ones, for a training run; see
    :data:`EAGER_ATTENTION_MAX_LEN` and :data:`MATMUL_ATTENTION`.

    Only a model loaded with sdpa whose attention goes through transformers'
    ``AttentionInterface`` is switched (``max_len`` 0: never). :meth:`restore` puts the
    original back (the resident model is lent to generation next)."""

    def __init__(self, model: Any, max_len: int, narrow: str = "eager") -> None:
        base = model.get_base_model() if hasattr(model, "get_base_model") else model
        self.config = base.config
        self.original = self.config._attn_implementation
        self.narrow = narrow
        can_switch = getattr(base, "_can_set_attn_implementation", lambda: False)()
        self.max_len = max_len if (max_len > 0 and self.original == "sdpa" and can_switch) else 0

    def select(self, width: int) -> None:
        """Use the narrow chunks' attention for the next forward pass if it is at most ``max_len`` tokens wide."""
        if self.max_len:
            want = self.narrow if width <= self.max_len else self.original
            if self.config._attn_implementation != want:
                self.config._attn_implementation = want

    def restore(self) -> None:
        if self.config._attn_implementation != self.original:
            self.config._attn_implementation = self.original
        attention.clear_cache()


@contextlib.contextmanager
def lora_inputs_cast_once(model: Any) -> Iterator[int]:
    """For the ``with`` block, each LoRA linear layer of ``model`` (peft) that gets an fp32
    input under autocast gets it in the autocast dtype instead, cast once for all the layers
    that read the same tensor (q, k and v read one normed activation), and peft's own cast of
    the input to the fp32 adapter weights is off (``peft.helpers.disable_input_dtype_casting``).
    Yields the number of layers hooked; everything is put back on exit. See
    :data:`SHARED_INPUT_CAST`.

    The cast is autocast's own (``Tensor.to`` the autocast dtype, tracked by autograd), made
    by a forward pre-hook; outside autocast, and for inputs already in a low precision, the
    hook does nothing."""
    import torch
    from peft.helpers import disable_input_dtype_casting
    from peft.tuners.lora import Linear as LoraLinear

    last: dict[str, Any] = {}  # the last fp32 input seen and its cast

    def cast_once(module: Any, args: tuple[Any, ...]) -> tuple[Any, ...] | None:
        x = args[0] if args else None
        if not isinstance(x, torch.Tensor) or x.dtype != torch.float32 or x.is_inference():
            return None  # inference tensors have no version counter: autocast casts them as before
        device = x.device.type
        if not torch.is_autocast_enabled(device):
            return None
        # The same tensor (a strong reference is held, so no id is reused), not written in place
        # since, and a cast made in the same grad mode (one made under no_grad carries no gradient).
        key = (x._version, torch.is_grad_enabled())
        if last.get("input") is not x or last["key"] != key:
            last.update(input=x, key=key, cast=x.to(torch.get_autocast_dtype(device)))
        return (last["cast"], *args[1:])

    handles = [m.register_forward_pre_hook(cast_once) for m in model.modules() if isinstance(m, LoraLinear)]
    try:
        with disable_input_dtype_casting(model):
            yield len(handles)
    finally:
        for handle in handles:
            handle.remove()
        last.clear()


@contextlib.contextmanager
def lora_scaled_on_rank(model: Any) -> Iterator[int]:
    """For the ``with`` block, each LoRA linear layer of ``model`` (peft) computes
    ``base(x) + B(A(dropout(x)) * scaling)``: the scaling multiplies the rank-r intermediate
    instead of the layer-sized output (see :data:`SCALE_ON_RANK`). Yields the number of
    layers changed; their own ``forward`` is back on exit.

    Anything but the plain case goes to peft's own forward: a call with extra arguments
    (``adapter_names``), disabled or merged adapters, a LoRA variant (DoRA and the like), a
    bias on B (``lora_bias``: scaled with the output)."""
    from peft.tuners.lora import Linear as LoraLinear

    def forward(self: Any, x: Any, *args: Any, **kwargs: Any) -> Any:
        active = [a for a in self.active_adapters if a in self.lora_A]
        if (args or kwargs or self.disable_adapters or self.merged
                or any(a in self.lora_variant or self.lora_B[a].bias is not None for a in active)):
            return type(self).forward(self, x, *args, **kwargs)
        result = self.base_layer(x)
        dtype = result.dtype
        for a in active:
            lora_a, lora_b = self.lora_A[a], self.lora_B[a]
            h = lora_a(self.lora_dropout[a](self._cast_input_dtype(x, lora_a.weight.dtype)))
            result = result + lora_b(h * self.scaling[a])
        return result.to(dtype)

    # A layer whose forward is already replaced (accelerate's hooks with a device map) is left alone.
    layers = [m for m in model.modules() if isinstance(m, LoraLinear) and "forward" not in m.__dict__]
    for layer in layers:
        layer.forward = forward.__get__(layer)
    try:
        yield len(layers)
    finally:
        for layer in layers:
            layer.__dict__.pop("forward", None)


def _frozen_linears_to_bf16(model: Any) -> list[tuple[Any, str, Any]]:
    """Point every frozen fp32 linear layer of ``model`` (the base layers under LoRA, the LM
    head) at a bf16 copy of its weight for a CPU bf16-autocast run; returns what
    :func:`~ftdojo_gym.model_process.resident.put_back` restores.

    Autocast casts a weight to bf16 at every use unless it requires grad (its cast cache
    holds trainable leaves only), so a frozen 135M-parameter base was cast again on every
    forward of every chunk. The copies hold exactly the values those casts gave, so the
    run is the same; the fp32 weights stay in place for generation.
    """
    return swap_weights(model, [], bf16=True)


def _wrap_lora(model: Any, cfg: TrainConfig) -> Any:
    """Add LoRA adapters; an unknown target module is a :class:`ConfigError`."""
    from peft import LoraConfig, get_peft_model

    targets = cfg.lora_targets if isinstance(cfg.lora_targets, str) else list(cfg.lora_targets)
    try:
        lora = LoraConfig(r=cfg.lora_r, lora_alpha=cfg.lora_alpha, lora_dropout=cfg.lora_dropout,
                          target_modules=targets, bias="none", task_type="CAUSAL_LM")
        return get_peft_model(model, lora)
    except (ValueError, TypeError, KeyError) as exc:
        raise ConfigError(f"LoRA set-up failed: {exc}") from None


_CLASSES: tuple[type, type] | None = None


def _trainer_classes() -> tuple[type, type]:
    """``SFTTrainer`` with a cheaper loss and a trained-token counter, and our callback.

    Built on first use so that importing this module does not import torch.

    The loss (see :data:`LOSS_MODE`): trl 1.16 always computes it with a
    chunked "fused" LM head that on CPU runs in plain PyTorch and also computes
    entropy and token accuracy at every step; the model's own loss
    (``Trainer.compute_loss``) was ~1.4x faster here, and projecting only the
    completion positions through the LM head (the same cross-entropy, the
    same reduction) is faster still, since most tokens of a prompt-completion
    sample are prompt. Measured with ``benchmarks/perf/train_throughput.py``.
    """
    global _CLASSES
    if _CLASSES is not None:
        return _CLASSES
    import torch
    from transformers import Trainer, TrainerCallback
    from trl import SFTTrainer

    class _FTDojoSFTTrainer(SFTTrainer):
        progress: TrainProgress | None = None
        attention: AttentionByWidth | None = None

        def training_step(self, model, inputs, num_items_in_batch=None):
            if self.progress is not None:
                mask = inputs.get("attention_mask")
                n = int(mask.sum()) if mask is not None else int(inputs["input_ids"].numel())
                self.progress.train_tokens += n
            chunks = split_batch(inputs, CHUNK_TOKENS, PAD_MULTIPLE) if LOSS_MODE == "completion" else [inputs]
            if len(chunks) == 1:
                return super().training_step(model, inputs, num_items_in_batch)
            if num_items_in_batch is None:  # normalise every chunk by the whole batch
                num_items_in_batch = (inputs["labels"][:, 1:] != -100).sum()
            return sum(super(_FTDojoSFTTrainer, self).training_step(model, chunk, num_items_in_batch)
                       for chunk in chunks)

        def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
            if self.attention is not None:  # each forward pass: the whole batch or one chunk of it
                self.attention.select(inputs["input_ids"].shape[-1])
            if LOSS_MODE == "trl" or return_outputs:
                return super().compute_loss(model, inputs, return_outputs, num_items_in_batch)
            if LOSS_MODE == "completion":
                parts = _backbone_and_head(self.accelerator.unwrap_model(model))
                if parts is not None:
                    return self._completion_loss(*parts, inputs, num_items_in_batch)
            inputs["use_cache"] = False
            return Trainer.compute_loss(self, model, inputs, num_items_in_batch=num_items_in_batch)

        def _completion_loss(self, backbone, head, inputs, num_items_in_batch):
            """Mean next-token cross-entropy over the labelled positions, as the model's loss.

            Only those positions go through the LM head (a vocab-sized matmul per token).
            """
            import torch.nn.functional as F

            labels = inputs["labels"]
            target = labels[:, 1:]
            keep = target != -100
            # Called below the model's forward, so apply accelerate's autocast (bf16) by hand.
            with self.accelerator.autocast():
                hidden = backbone(input_ids=inputs["input_ids"], attention_mask=inputs.get("attention_mask"),
                                  use_cache=False).last_hidden_state
                logits = head(hidden[:, :-1][keep])
            loss = F.cross_entropy(logits.float(), target[keep], reduction="sum")
            denom = keep.sum() if num_items_in_batch is None else num_items_in_batch
            return loss / torch.as_tensor(denom, device=loss.device).clamp(min=1)

    class _ProgressCallback(TrainerCallback):
        """Streams loss lines and enforces the token budget."""

        def __init__(self, progress: TrainProgress, emit: Emit, max_tokens: int | None) -> None:
            self.progress = progress
            self.emit = emit
            self.max_tokens = max_tokens

        def on_step_end(self, args, state, control, **kwargs):
            self.progress.steps = state.global_step
            if (self.max_tokens is not None and self.progress.train_tokens >= self.max_tokens
                    and state.global_step < state.max_steps):
                self.progress.stopped_budget = True
                control.should_training_stop = True
            return control

        def on_log(self, args, state, control, logs=None, **kwargs):
            logs = logs or {}
            if "loss" not in logs:  # the end-of-training summary carries train_loss instead
                return control
            loss = float(logs["loss"])
            if not math.isfinite(loss) and self.progress.diverged_step is None:
                # Nothing useful can come after a NaN/inf loss: stop now, not at max_steps.
                self.progress.diverged_step = state.global_step
                control.should_training_stop = True
            self.progress.losses.append((state.global_step, loss))
            self.emit(LogEvent(step=state.global_step, loss=loss if math.isfinite(loss) else None,
                               learning_rate=float(logs.get("learning_rate", 0.0)),
                               tokens=self.progress.train_tokens, max_steps=state.max_steps))
            return control

    _CLASSES = (_FTDojoSFTTrainer, _ProgressCallback)
    return _CLASSES


def split_batch(inputs: Mapping[str, Any], max_tokens: int, multiple: int = 1) -> list[dict[str, Any]]:
    """``inputs`` (a right-padded training batch) as consecutive row chunks of at most
    ``max_tokens`` padded tokens each, every chunk cut after its longest row, rounded up to
    a multiple of ``multiple`` columns (never past the batch's width); ``[inputs]`` when it
    fits.

    The columns a chunk drops are padding at the end of all its rows (attention mask 0,
    label -100), so each row's tokens, positions and labels are unchanged. A row longer than
    ``max_tokens`` is a chunk of its own. Tensors of shape ``(rows, columns)`` are cut;
    anything else is shared.
    """
    mask = inputs.get("attention_mask")
    ids = inputs["input_ids"]
    rows, width = ids.shape
    if max_tokens <= 0 or rows * width <= max_tokens or mask is None or rows == 1:
        return [dict(inputs)]
    # Where each row's last real token is (the positions come from the column index, so
    # leading columns are never cut).
    used = mask.bool()
    step = max(1, multiple)
    last = [min(width, -(-(int(r.nonzero()[-1]) + 1 if r.any() else 1) // step) * step) for r in used]
    groups: list[list[int]] = [[]]
    for i in range(rows):
        group = groups[-1] + [i]
        if groups[-1] and len(group) * max(last[j] for j in group) > max_tokens:
            groups.append([i])
        else:
            groups[-1] = group
    if len(groups) == 1:
        return [dict(inputs)]
    chunks = []
    for group in groups:
        hi = max(last[j] for j in group)
        chunk = {}
        for key, value in inputs.items():
            if getattr(value, "dim", lambda: 0)() == 2 and tuple(value.shape) == (rows, width):
                value = value[group[0]:group[-1] + 1, :hi]
            chunk[key] = value
        chunks.append(chunk)
    return chunks


#: Config attributes that change the logits after the LM head; with any of them set
#: the completion-only loss would be wrong, so the model's own loss is used instead.
_LOGIT_TRANSFORMS = ("final_logit_softcapping", "logit_scale", "output_multiplier",
                     "lm_head_multiplier", "logits_scaling")


def _backbone_and_head(model: Any) -> tuple[Any, Any] | None:
    """(decoder backbone, LM head) of a causal LM (PEFT-wrapped or not), or None if unsupported."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    backbone = getattr(base, getattr(base, "base_model_prefix", ""), None)
    head = base.get_output_embeddings() if hasattr(base, "get_output_embeddings") else None
    if backbone is None or head is None or backbone is base:
        return None
    text_config = base.config.get_text_config()
    if any(getattr(text_config, name, None) not in (None, 1, 1.0) for name in _LOGIT_TRANSFORMS):
        return None
    return backbone, head
