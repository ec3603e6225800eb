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
  model folder is evaluated from a fresh load as well;
* generation in bf16 on a CPU (:func:`resolve_precision`) points every
  parameter at a bf16 copy (a linear layer's adapter delta added first, in
  fp32), which makes the model the bf16 model SmolLM2 is published as;
  :meth:`Resident.restore` puts the fp32 weights back. The fp32 master weights
  are never written.

Everything here runs in the worker process (torch is imported lazily), except
:func:`resolve_precision` and :func:`cpu_has_fast_bf16`, which the environment
calls too (they do not import torch).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from ftdojo_gym.model_process.protocol import PRECISIONS


def cpu_has_fast_bf16() -> bool:
    """True when bf16 matrix products are clearly faster than fp32 on this CPU: it has bf16
    instructions (``avx512_bf16`` or AMX) and a timing of both, made once per machine and
    cached, says so (:func:`ftdojo_gym.model_process.cpu_bf16.fast_bf16`;
    ``FTDOJO_CPU_BF16=1/0`` forces it). Having the instructions is not enough: on some CPUs
    bf16 products run at half the fp32 rate."""
    from ftdojo_gym.model_process.cpu_bf16 import fast_bf16

    return fast_bf16()


def _gpu_visible() -> bool:
    """Whether an NVIDIA GPU is visible to this process, without importing torch."""
    import sys

    if "torch" in sys.modules:
        return bool(sys.modules["torch"].cuda.is_available())
    if os.environ.get("CUDA_VISIBLE_DEVICES", None) in ("", "-1"):
        return False
    gpus = Path("/proc/driver/nvidia/gpus")
    return gpus.is_dir() and any(gpus.iterdir())


def resolve_precision(requested: str = "auto") -> str:
    """``"bf16"`` or ``"fp32"``: the numerics generation runs with for ``requested``.

    ``"auto"`` is bf16 where the hardware has fast bf16 matrix products (a
    GPU, taken to be bf16-capable as in the paper's set-up, or a CPU where
    :func:`cpu_has_fast_bf16` measured them faster than fp32, where training
    runs under bf16 autocast too) and fp32 elsewhere. Pass ``"fp32"`` on a GPU
    without bf16. The env resolves it once and records the result in its cache
    keys and versions, so scores made with different numerics are never mixed."""
    if requested not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {requested!r}")
    if requested != "auto":
        return requested
    return "bf16" if _gpu_visible() or cpu_has_fast_bf16() else "fp32"


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
        self._swapped: list[tuple[Any, str, Any]] = []  # (module, parameter name, original Parameter)
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
            _as_loaded(base)
        except Exception:  # noqa: BLE001 - dropping the model is always safe
            self.clear()

    # -- generation with a LoRA adapter, in bf16 ---------------------------------------------
    def with_adapter(self, path: str | os.PathLike[str], adapter: str | os.PathLike[str] | None, dtype: Any = None,
                     bf16: bool = False, stamp: float = 0.0) -> tuple[Any, Any]:
        """The held model of ``path`` with the LoRA adapter in ``adapter`` merged (kept until :meth:`restore`).

        ``adapter`` None: the model's own weights. ``bf16``: every fp32 parameter is
        replaced by a bf16 copy (merged first where the adapter adapts it), which makes
        it a bf16 model for decoding. ``stamp`` as in :meth:`base`."""
        adapter_key = f"{Path(adapter).resolve()}|{folder_stamp(adapter)}" if adapter is not None else "base"
        adapter_key += "|bf16" if bf16 else ""
        dtype = dtype if dtype is not None else default_dtype()
        if (self.adapter_key == adapter_key and self.model is not None
                and self.key == (str(path), str(dtype), stamp)):
            return self.model, self.tokenizer
        model, tokenizer = self.base(path, dtype, stamp)
        if adapter is not None and not mergeable(adapter):
            raise ValueError(f"adapter {adapter} is not a plain LoRA adapter of linear layers")
        merged = _merged_weights(model, adapter, bf16) if adapter is not None else []
        self._swapped = swap_weights(model, merged, bf16, linears_only=False)
        self.adapter_key = adapter_key
        return model, tokenizer

    def restore(self) -> None:
        """Put the original weights back (undo :meth:`with_adapter`)."""
        put_back(self._swapped)
        self.adapter_key = None


def swap_weights(model: Any, merged: list[tuple[Any, Any]], bf16: bool, linears_only: bool = True
                        ) -> list[tuple[Any, str, Any]]:
    """Point modules at new weight tensors; returns ``(module, name, original Parameter)``
    triples to put back (:func:`put_back`). The original Parameters are never written.

    Each linear module in ``merged`` (``(module, weight)`` pairs, :func:`_merged_weights`)
    gets that weight. With ``bf16``, every frozen (``requires_grad``
    False) fp32 linear weight (the LM head included) becomes a bf16 copy, as a CPU
    autocast training run wants; with ``linears_only=False`` every fp32 parameter
    (embeddings and norms too, frozen or not), merged first where it has a delta,
    which makes the model a bf16 model for inference: the published SmolLM2 weights
    are bf16, so this gives them back exactly. Tied parameters stay tied (one copy)."""
    import torch

    merged_of = {id(module): weight for module, weight in merged}
    copies: dict[int, Any] = {}  # id(original) -> its replacement (tied weights share one)
    swapped = []
    with torch.no_grad():
        for module in model.modules():
            linear = isinstance(module, torch.nn.Linear)
            for name, param in list(module._parameters.items()):
                if param is None:
                    continue
                weight = merged_of.pop(id(module), None) if linear and name == "weight" else None
                half = bf16 and param.dtype == torch.float32 and (
                    not linears_only or (linear and not param.requires_grad))
                if weight is None and not half:
                    continue
                if weight is not None or id(param) not in copies:
                    new = weight if weight is not None else param.detach().to(torch.bfloat16)
                    # The original's requires_grad: torch's matmul folds a batched input into one
                    # mm only for a weight that requires grad; otherwise the LM head expanded its
                    # 49k x 576 weight per row (half the prefill time, measured).
                    new = torch.nn.Parameter(new, requires_grad=param.requires_grad)
                    if weight is None:
                        copies[id(param)] = new
                else:
                    new = copies[id(param)]
                swapped.append((module, name, param))
                setattr(module, name, new)
    if merged_of:
        raise ValueError(f"{len(merged_of)} adapted layers are not linear layers of the model")
    return swapped


def put_back(swapped: list[tuple[Any, str, Any]]) -> None:
    """Undo :func:`swap_weights` (last swap first)."""
    while swapped:
        module, name, original = swapped.pop()
        setattr(module, name, original)


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


def _merged_weights(model: Any, adapter: str | os.PathLike[str], bf16: bool) -> list[tuple[Any, Any]]:
    """``(base linear module, merged weight)`` for each layer the adapter adapts, the model left unchanged.

    Loads the adapter with peft into ``model``, asks each LoRA layer for its
    ``get_delta_weight`` (what ``merge`` adds), adds it to the layer's weight in the
    weight's dtype (bit-identical to ``merge_and_unload``), casts the sum to bf16
    when ``bf16`` and the weight is fp32, and takes the LoRA layers out again. One
    layer's delta is alive at a time (all of SmolLM2-135M's fp32 deltas together
    are ~0.4 GB).
    """
    import torch
    from peft import PeftModel

    peft_model = PeftModel.from_pretrained(model, str(adapter))
    merged = []
    try:
        with torch.no_grad():
            for module in peft_model.base_model.model.modules():
                if hasattr(module, "get_delta_weight") and hasattr(module, "base_layer"):
                    base_layer = module.get_base_layer()
                    if not isinstance(base_layer, torch.nn.Linear):
                        raise ValueError(f"cannot merge a LoRA adapter on {type(base_layer).__name__}")
                    weight = base_layer.weight.detach()
                    for name in module.active_adapters:
                        weight = weight + module.get_delta_weight(name).detach().to(weight.dtype)
                    if bf16 and weight.dtype == torch.float32:
                        weight = weight.to(torch.bfloat16)
                    merged.append((base_layer, weight))
    finally:
        unloaded = peft_model.unload()
        _as_loaded(model)
    if unloaded is not model:
        raise RuntimeError("peft returned another model object when unloading")
    return merged


def _as_loaded(model: Any) -> None:
    """Every parameter requires grad again, as ``from_pretrained`` left it (peft freezes the base
    model's parameters and ``unload`` does not unfreeze them).

    Not only tidiness: for a weight that does not require grad, torch's ``matmul`` does not
    fold a sliced 3-D input into one ``mm`` but expands the weight once per row, and the
    prefill's LM head takes the last position of each row (a slice). After a training run
    that expanded the 49k x 576 head for each of 32 prompts: the worker's peak grew from
    2.57 to 3.67 GB during an evaluation in bf16 (an fp32 head's copies are twice as large)."""
    for param in model.parameters():
        param.requires_grad_(True)


#: The worker's one resident base model.
RESIDENT = Resident()
