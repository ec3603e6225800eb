"""The base model the worker keeps loaded between training runs and evaluations.

An episode trains and evaluates the same base model many times. Loading it is
cheap for SmolLM2-135M (under a second) but not for a 7B model, and two copies
(one for training, one for generation) double the worker's memory. So the
worker holds one :class:`Resident` base model and lends it out:

* a LoRA training run wraps it with fresh adapters (``get_peft_model``) and
  removes them afterwards (``unload``, no merge): the base weights are never
  written, so the next run starts from exactly the same weights;
* an evaluation with a LoRA adapter computes each adapted layer's delta
  ``B @ A * scaling`` once and points the layer at a *new* tensor ``W + delta``,
  keeping the original ``W`` aside; :meth:`Resident.restore` points it back.
  The result is bit-identical to ``merge_and_unload`` (same single addition),
  decoding runs plain linear layers (no extra LoRA matmuls per token), and
  nothing is reloaded. The merge costs ~0.1 s for SmolLM2 and is kept for the
  next evaluation of the same adapter (validation then hidden test);
* full fine-tuning writes every weight, so it loads its own copy from disk
  (the resident one is dropped first to bound memory), and a full fine-tuned
  model folder is evaluated from a fresh load as well.

Everything here runs in the worker process (torch is imported lazily).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any


def default_dtype() -> Any:
    """bf16 weights on a bf16-capable GPU (the paper's set-up), fp32 on CPU (autocast does bf16 there)."""
    import torch

    if torch.cuda.is_available() and torch.cuda.is_bf16_supported():
        return torch.bfloat16
    return torch.float32


def folder_stamp(path: str | os.PathLike[str]) -> float:
    """Newest modification time of the files in ``path`` (0.0 if unreadable): a changed folder reloads."""
    p = Path(path)
    try:
        return max((f.stat().st_mtime for f in p.iterdir()), default=p.stat().st_mtime)
    except OSError:
        return 0.0


class Resident:
    """One base model (and its tokenizer) kept loaded, lent to training and generation.

    ``loads`` counts loads from disk (the tests read it to prove that nothing is reloaded).
    """

    def __init__(self) -> None:
        self.key: tuple[str, str, float] | None = None
        self.model: Any = None
        self.tokenizer: Any = None
        self.adapter_key: str | None = None
        self._swapped: list[tuple[Any, Any]] = []  # (linear module, its original weight Parameter)
        self.loads = 0

    # -- the base model ----------------------------------------------------------
    def base(self, path: str | os.PathLike[str], dtype: Any = None, stamp: float = 0.0) -> tuple[Any, Any]:
        """``(model, tokenizer)`` of ``path`` with its original weights, loaded only if not held yet."""
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        dtype = dtype if dtype is not None else default_dtype()
        key = (str(path), str(dtype), stamp)
        self.restore()
        if self.key == key and self.model is not None:
            return self.model, self.tokenizer
        self.clear()
        tokenizer = AutoTokenizer.from_pretrained(str(path))
        if tokenizer.pad_token is None:
            tokenizer.pad_token = tokenizer.eos_token
        model = AutoModelForCausalLM.from_pretrained(str(path), dtype=dtype)
        if torch.cuda.is_available():
            model = model.to("cuda")
        model.eval()
        self.key, self.model, self.tokenizer = key, model, tokenizer
        self.loads += 1
        return model, tokenizer

    def clear(self) -> None:
        """Drop the held model (frees its memory; the next call loads again)."""
        self.restore()
        self.key = self.model = self.tokenizer = None

    # -- LoRA training -------------------------------------------------------------
    def release_peft(self, peft_model: Any) -> None:
        """Take the LoRA layers out of the held model after a training run (no merge).

        If that fails for any reason the held model is dropped, so that no
        trained weight can leak into the next run.
        """
        try:
            base = peft_model.unload() if hasattr(peft_model, "unload") else None
            if base is not self.model or _has_tuner_layers(base):
                self.clear()
                return
            base.config.use_cache = True
            base.eval()
        except Exception:  # noqa: BLE001 - dropping the model is always safe
            self.clear()

    # -- generation with a LoRA adapter --------------------------------------------------
    def with_adapter(self, path: str | os.PathLike[str], adapter: str | os.PathLike[str], dtype: Any = None
                     ) -> tuple[Any, Any]:
        """The held base model with the LoRA adapter in ``adapter`` merged (kept until :meth:`restore`)."""
        adapter_key = f"{Path(adapter).resolve()}|{folder_stamp(adapter)}"
        dtype = dtype if dtype is not None else default_dtype()
        if (self.adapter_key == adapter_key and self.model is not None
                and self.key is not None and self.key[:2] == (str(path), str(dtype))):
            return self.model, self.tokenizer
        model, tokenizer = self.base(path, dtype)
        if not mergeable(adapter):
            raise ValueError(f"adapter {adapter} is not a plain LoRA adapter of linear layers")
        deltas = _lora_deltas(model, adapter)
        import torch

        with torch.no_grad():
            for module, delta in deltas:
                original = module.weight
                merged = torch.nn.Parameter(original.data + delta.to(original.dtype), requires_grad=False)
                self._swapped.append((module, original))
                module.weight = merged
        self.adapter_key = adapter_key
        return model, tokenizer

    def restore(self) -> None:
        """Put the original weights back (undo :meth:`with_adapter`)."""
        while self._swapped:
            module, original = self._swapped.pop()
            module.weight = original
        self.adapter_key = None


def mergeable(adapter: str | os.PathLike[str]) -> bool:
    """True when ``adapter`` is a plain LoRA adapter (no DoRA, no saved full modules) that
    :meth:`Resident.with_adapter` can merge by adding ``B @ A * scaling`` to linear weights."""
    try:
        cfg = json.loads((Path(adapter) / "adapter_config.json").read_text())
    except (OSError, ValueError):
        return False
    return (cfg.get("peft_type") == "LORA" and not cfg.get("use_dora") and not cfg.get("modules_to_save")
            and not cfg.get("trainable_token_indices"))


def _has_tuner_layers(model: Any) -> bool:
    from peft.tuners.tuners_utils import BaseTunerLayer

    return any(isinstance(m, BaseTunerLayer) for m in model.modules())


def _lora_deltas(model: Any, adapter: str | os.PathLike[str]) -> list[tuple[Any, Any]]:
    """``(base linear module, delta weight)`` for each layer the adapter adapts, the model left unchanged.

    Loads the adapter with peft into ``model``, asks each LoRA layer for its
    ``get_delta_weight`` (what ``merge`` adds) and takes the LoRA layers out again.
    """
    import torch
    from peft import PeftModel

    peft_model = PeftModel.from_pretrained(model, str(adapter))
    deltas = []
    try:
        with torch.no_grad():
            for module in peft_model.base_model.model.modules():
                if hasattr(module, "get_delta_weight") and hasattr(module, "base_layer"):
                    base_layer = module.get_base_layer()
                    if not isinstance(base_layer, torch.nn.Linear):
                        raise ValueError(f"cannot merge a LoRA adapter on {type(base_layer).__name__}")
                    for name in module.active_adapters:
                        deltas.append((base_layer, module.get_delta_weight(name).detach()))
    finally:
        unloaded = peft_model.unload()
    if unloaded is not model:
        raise RuntimeError("peft returned another model object when unloading")
    return deltas


#: The worker's one resident base model.
RESIDENT = Resident()
