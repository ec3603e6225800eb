"""The training path's matmul attention (``model_process.attention``) against transformers' "eager"
attention: the same outputs and gradients in fp32, the same up to bf16 rounding under autocast, a
finite result for fully masked rows, the key/value head that each query head reads (GQA), sdpa for
what it does not cover, and its mask cache."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

from ftdojo_gym.model_process import attention  # noqa: E402


class Module(torch.nn.Module):
    """What the attention functions read from a layer: ``training``, ``num_key_value_groups``, ``is_causal``."""

    def __init__(self, heads: int, kv_heads: int) -> None:
        super().__init__()
        self.num_key_value_groups = heads // kv_heads
        self.is_causal = True


def inputs(b=2, heads=4, kv_heads=2, q=7, dim=8, seed=0, pad=(0, 3)):
    """Query/key/value and an eager-style float mask (causal, ``pad[i]`` left-padded keys in row i)."""
    gen = torch.Generator().manual_seed(seed)
    query = torch.randn(b, heads, q, dim, generator=gen, requires_grad=True)
    key = torch.randn(b, kv_heads, q, dim, generator=gen, requires_grad=True)
    value = torch.randn(b, kv_heads, q, dim, generator=gen, requires_grad=True)
    allowed = torch.ones(q, q, dtype=torch.bool).tril().expand(b, 1, q, q).clone()
    for i, n in enumerate(pad[:b]):
        allowed[i, :, :, :n] = False
    mask = torch.zeros(b, 1, q, q).masked_fill(~allowed, torch.finfo(torch.float32).min)
    return query, key, value, mask


def eager(module, query, key, value, mask, scaling):
    from transformers.models.llama.modeling_llama import eager_attention_forward

    return eager_attention_forward(module, query, key, value, mask, scaling)[0]


def grads(out, *tensors, seed=1):
    weight = torch.randn(out.shape, generator=torch.Generator().manual_seed(seed))
    return torch.autograd.grad((out.float() * weight).sum(), tensors)


@pytest.fixture(autouse=True)
def no_cached_mask():
    attention.clear_cache()
    yield
    attention.clear_cache()


@pytest.mark.parametrize(("heads", "kv_heads"), [(4, 2), (4, 4), (6, 1)])
def test_fp32_outputs_and_gradients_equal_eager(heads, kv_heads):
    """Catches: a query head reading the wrong key/value head (rows stacked in another order than
    ``repeat_kv``), the scale or the mask dropped or applied twice, the output's layout."""
    module = Module(heads, kv_heads)
    query, key, value, mask = inputs(heads=heads, kv_heads=kv_heads)
    ours, _ = attention.matmul_attention(module, query, key, value, mask, scaling=0.3)
    ref = eager(module, query, key, value, mask, 0.3)
    assert ours.shape == ref.shape == (2, 7, heads, 8)
    torch.testing.assert_close(ours, ref, rtol=1e-5, atol=1e-6)
    for g_ours, g_ref in zip(grads(ours, query, key, value), grads(ref, query, key, value), strict=True):
        torch.testing.assert_close(g_ours, g_ref, rtol=1e-5, atol=1e-6)


def test_default_scaling_is_one_over_sqrt_dim():
    module = Module(4, 2)
    query, key, value, mask = inputs()
    ours, _ = attention.matmul_attention(module, query, key, value, mask)
    torch.testing.assert_close(ours, eager(module, query, key, value, mask, 8 ** -0.5), rtol=1e-5, atol=1e-6)


def test_bf16_autocast_matches_eager_up_to_rounding_and_fully_masked_rows_stay_finite():
    """Catches: the mask cast to bf16 as fp32's minimum (it overflows to -inf: a fully masked row,
    the queries of a left-padded row, would become NaN), the products left in fp32 under autocast."""
    module = Module(4, 2)
    query, key, value, mask = inputs(pad=(0, 3))  # row 1's first 3 queries see no key at all
    with torch.autocast("cpu", dtype=torch.bfloat16):
        ours, _ = attention.matmul_attention(module, query, key, value, mask, scaling=0.35)
        ref = eager(module, query, key, value, mask, 0.35)
    assert ours.dtype == torch.bfloat16
    assert torch.isfinite(ours).all()
    torch.testing.assert_close(ours.float(), ref.float(), rtol=2e-2, atol=2e-2)
    for g_ours, g_ref in zip(grads(ours, query, key, value), grads(ref, query, key, value), strict=True):
        assert torch.isfinite(g_ours).all()
        assert (g_ours - g_ref).norm() <= 2e-2 * g_ref.norm()


def test_no_mask():
    module = Module(4, 2)
    query, key, value, _ = inputs()
    ours, _ = attention.matmul_attention(module, query, key, value, None, scaling=0.3)
    torch.testing.assert_close(ours, eager(module, query, key, value, None, 0.3), rtol=1e-5, atol=1e-6)


def test_a_mask_wider_than_the_keys_is_cut_to_them():
    module = Module(4, 2)
    query, key, value, mask = inputs()
    wide = torch.cat([mask, torch.zeros(2, 1, 7, 5)], dim=-1)
    ours, _ = attention.matmul_attention(module, query, key, value, wide, scaling=0.3)
    torch.testing.assert_close(ours, eager(module, query, key, value, mask, 0.3), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("case", ["dropout", "softcap", "sinks", "bool_mask", "heads_not_divisible"])
def test_what_it_does_not_cover_goes_to_sdpa(case, monkeypatch):
    """Catches: dropout in training, soft-capping, attention sinks, a boolean mask or heads that do
    not divide into the key/value heads silently computed as plain attention."""
    from transformers.integrations import sdpa_attention

    calls = []

    def sdpa(*args, **kwargs):
        calls.append(kwargs)
        return "sdpa", None

    monkeypatch.setattr(sdpa_attention, "sdpa_attention_forward", sdpa)
    module = Module(4, 2)
    query, key, value, mask = inputs()
    kwargs = {}
    if case == "dropout":
        module.train()
        kwargs["dropout"] = 0.1
    elif case == "softcap":
        kwargs["softcap"] = 30.0
    elif case == "sinks":
        kwargs["s_aux"] = torch.zeros(4)
    elif case == "bool_mask":
        mask = mask == 0
    else:
        key, value = key[:, :1].expand(2, 3, 7, 8), value[:, :1].expand(2, 3, 7, 8)
    out, _ = attention.matmul_attention(module, query, key, value, mask, scaling=0.3, **kwargs)
    assert out == "sdpa" and len(calls) == 1

    module.eval()  # dropout outside training is no dropout: ours
    if case == "dropout":
        calls.clear()
        out, _ = attention.matmul_attention(module, query, key, value, mask, scaling=0.3, dropout=0.1)
        assert not calls and isinstance(out, torch.Tensor)


def test_the_bias_is_made_once_per_mask_and_remade_when_the_mask_changes():
    """Catches: a cached bias served for another mask, or for the same tensor written in place
    (a stale mask would let tokens see padding or the future), or a cache never dropped."""
    module = Module(4, 2)
    query, key, value, mask = inputs()
    made = []
    real_where = torch.where

    def counting_where(*args, **kwargs):
        made.append(1)
        return real_where(*args, **kwargs)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(torch, "where", counting_where)
        for _ in range(3):  # three layers of one forward pass
            attention.matmul_attention(module, query, key, value, mask, scaling=0.3)
        assert len(made) == 1
        other = mask.clone()
        attention.matmul_attention(module, query, key, value, other, scaling=0.3)
        assert len(made) == 2
        other[0] = 0.0  # in place: every key visible in row 0
        ours, _ = attention.matmul_attention(module, query, key, value, other, scaling=0.3)
        assert len(made) == 3
    torch.testing.assert_close(ours, eager(module, query, key, value, other, 0.3), rtol=1e-5, atol=1e-6)
    attention.clear_cache()
    assert not attention._mask_cache


def test_registered_for_models_and_a_model_forward_equals_eager(tiny_model):
    """Catches: the name missing from transformers' attention or mask registries (a model set to
    it would fail, or get no mask: padding and the future visible)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    name = attention.register()
    assert name == attention.NAME
    tok = AutoTokenizer.from_pretrained(tiny_model)
    tok.pad_token = tok.pad_token or tok.eos_token
    tok.padding_side = "left"
    batch = tok(["a much longer first prompt with many words", "short"], return_tensors="pt", padding=True)
    model = AutoModelForCausalLM.from_pretrained(tiny_model, dtype=torch.float32, attn_implementation="eager")
    with torch.no_grad():
        ref = model(**batch).logits
        model.config._attn_implementation = name
        ours = model(**batch).logits
    keep = batch["attention_mask"].bool()
    torch.testing.assert_close(ours[keep], ref[keep], rtol=1e-4, atol=1e-5)
