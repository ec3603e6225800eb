"""Matmul attention for short CPU training chunks, with fewer passes over the score matrix.

transformers' "eager" attention makes, per layer, a scaled score matrix (a product, then a
multiplication by the scale), adds the mask (which promotes the bf16 scores to fp32 under
CPU autocast), takes an fp32 softmax and casts it back for the second product, after copying
every key/value head once per query head that reads it (``repeat_kv``). Each of those is a
pass over a ``rows x heads x width x width`` tensor, forward and backward, and on a CPU
whose bf16 products are fast they were a fifth of a training step.

:func:`matmul_attention` computes the same attention with one ``baddbmm`` (product, scale
and mask in one pass), a softmax in the products' precision (computed in fp32 inside the
kernel, like the fp32 softmax followed by a cast) and one ``bmm``; the query heads that share
a key/value head are stacked along the rows, so keys and values are never copied per head.
The mask, cast once per forward pass (all layers share it), uses the precision's own
minimum, so a fully masked row stays finite as it does in "eager".

It is registered with transformers as :data:`NAME` (:func:`register`), for attention and
for mask creation (the "eager" float mask); anything it does not cover (dropout in
training, soft-capping, attention sinks, a score bias) goes to transformers' sdpa.
"""

from __future__ import annotations

from typing import Any

#: The attention implementation's name in transformers' registries.
NAME = "ftdojo_matmul"

_registered = False
_mask_cache: dict[str, Any] = {}


def register() -> str:
    """Register :func:`matmul_attention` (and the eager mask for it) with transformers; returns :data:`NAME`."""
    global _registered
    if not _registered:
        from transformers import AttentionInterface
        from transformers.masking_utils import AttentionMaskInterface, eager_mask

        AttentionInterface.register(NAME, matmul_attention)
        AttentionMaskInterface.register(NAME, eager_mask)
        _registered = True
    return NAME


def _bias(mask: Any, dtype: Any, groups: int, rep: int) -> Any:
    """The additive mask ``(batch, 1, q, k)`` as a ``dtype`` bias of shape
    ``(batch * groups, rep * q, k)``, made once per mask tensor (every layer of a forward
    pass gets the same one)."""
    import torch

    key = (mask, mask._version, dtype, groups, rep)
    cached = _mask_cache.get("key")
    if cached is not None and cached[0] is mask and cached[1:] == key[1:]:
        return _mask_cache["bias"]
    b, _, q, k = mask.shape
    low = torch.finfo(dtype).min
    bias = torch.where(mask < 0, low, 0.0).to(dtype)  # -inf / finfo(fp32).min would overflow bf16 to -inf
    bias = bias[:, :, None].expand(b, groups, rep, q, k).reshape(b * groups, rep * q, k)
    _mask_cache.update(key=key, bias=bias)
    return bias


def clear_cache() -> None:
    """Drop the cached mask (call when a training run ends)."""
    _mask_cache.clear()


def matmul_attention(module: Any, query: Any, key: Any, value: Any, attention_mask: Any, scaling: float | None = None,
                     dropout: float = 0.0, **kwargs: Any) -> tuple[Any, None]:
    """Attention of ``query (batch, heads, q, dim)`` over ``key``/``value (batch, kv heads,
    k, dim)``; returns ``(output (batch, q, heads, dim), None)`` like transformers' functions."""
    import torch
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    unsupported = ((dropout and module.training) or kwargs.get("softcap") is not None
                   or kwargs.get("s_aux") is not None or kwargs.get("position_bias") is not None
                   or (attention_mask is not None and (attention_mask.dim() != 4 or attention_mask.shape[1] != 1
                                                       or attention_mask.dtype == torch.bool))
                   or query.shape[1] % key.shape[1])
    if unsupported:
        return sdpa_attention_forward(module, query, key, value, attention_mask, dropout=dropout,
                                      scaling=scaling, **kwargs)
    device = query.device.type
    dtype = torch.get_autocast_dtype(device) if torch.is_autocast_enabled(device) else query.dtype
    b, heads, q_len, dim = query.shape
    groups, k_len = key.shape[1], key.shape[2]
    rep = heads // groups
    scaling = dim ** -0.5 if scaling is None else scaling
    # Query heads h = g * rep + r read key/value head g (as repeat_kv): stack them along the rows.
    q = query.to(dtype).reshape(b * groups, rep * q_len, dim)
    k = key.to(dtype).reshape(b * groups, k_len, dim)
    v = value.to(dtype).reshape(b * groups, k_len, dim)
    if attention_mask is None:
        scores = torch.bmm(q, k.transpose(1, 2)) * scaling
    else:
        mask = attention_mask[..., :k_len] if attention_mask.shape[-1] != k_len else attention_mask
        scores = torch.baddbmm(_bias(mask, dtype, groups, rep), q, k.transpose(1, 2), alpha=scaling)
    probs = torch.softmax(scores, dim=-1)
    out = torch.bmm(probs, v).view(b, heads, q_len, dim).transpose(1, 2).contiguous()
    return out, None
