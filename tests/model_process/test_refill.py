"""Continuous batching: a finished row's slot goes to the next prompt, outputs unchanged."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

from ftdojo_gym.model_process import generation  # noqa: E402

from .reference import one_by_one  # noqa: E402

PROMPTS = [f"Question {i}: " + "tell me about tables " * (i % 6) + "?" for i in range(14)]
MAX_NEW = [2 + (7 * i) % 13 for i in range(14)]


@pytest.fixture(autouse=True)
def fresh():
    generation.clear_cache()
    yield
    generation.clear_cache()


def test_refill_gives_one_by_one_outputs_and_fuller_steps(sharp_tiny_model, monkeypatch):
    """Catches: rows spliced into the cache with wrong padding, positions or masks (outputs would
    change), and refill not happening (steps as many as static batches, rows per step as few)."""
    static_stats: dict = {}
    monkeypatch.setattr(generation, "REFILL", False)
    tiny_model = sharp_tiny_model
    static = generation.generate(tiny_model, None, PROMPTS, MAX_NEW, batch_size=4, stats=static_stats)
    monkeypatch.setattr(generation, "REFILL", True)
    refill_stats: dict = {}
    progress: list = []
    refill = generation.generate(tiny_model, None, PROMPTS, MAX_NEW, batch_size=4, stats=refill_stats,
                                 on_progress=lambda d, t: progress.append(d))
    model, tok = generation.load_for_generation(tiny_model)
    assert refill == static == one_by_one(model, tok, PROMPTS, MAX_NEW)
    assert len({o.strip() for o in refill}) > len(PROMPTS) // 2  # varied words: a wrong token would show
    assert refill_stats["new_tokens"] == static_stats["new_tokens"]
    assert refill_stats["decode_steps"] < static_stats["decode_steps"]
    assert (refill_stats["decode_rows"] / refill_stats["decode_steps"]
            > static_stats["decode_rows"] / static_stats["decode_steps"])
    assert refill_stats["prefill_calls"] > 1  # prompts joined a running batch
    assert progress[-1] == len(PROMPTS) and progress == sorted(progress)


def test_merge_pads_the_narrower_cache_on_the_left():
    from transformers import DynamicCache
    from transformers.cache_utils import DynamicLayer

    def cache_of(batch, width, fill):
        c = DynamicCache()
        layer = DynamicLayer()
        layer.keys = torch.full((batch, 2, width, 3), fill)
        layer.values = torch.full((batch, 2, width, 3), -fill)
        c.layers = [layer]
        return c

    a, b = cache_of(2, 5, 1.0), cache_of(1, 8, 2.0)
    mask = generation._merge_caches(a, torch.ones(2, 5, dtype=torch.long), b, torch.ones(1, 8, dtype=torch.long))
    keys = a.layers[0].keys
    assert keys.shape == (3, 2, 8, 3) and mask.shape == (3, 8)
    assert mask[:2, :3].sum() == 0 and mask[:2, 3:].all() and mask[2].all()
    assert (keys[:2, :, :3] == 0).all() and (keys[:2, :, 3:] == 1).all() and (keys[2] == 2).all()
    assert (a.layers[0].values[:2, :, 3:] == -1).all()
