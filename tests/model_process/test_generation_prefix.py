"""A batch's shared prompt start is prefilled once and gives the outputs of one-by-one ``generate``."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

from ftdojo_gym.model_process import generation  # noqa: E402
from ftdojo_gym.model_process.generation import shared_prefix  # noqa: E402

from .reference import one_by_one  # noqa: E402

INSTRUCTION = "You are a table analyst. Answer the question about the table below in one line. "
PROMPTS = [INSTRUCTION + q for q in ("What is b?", "Count the rows.", "x", "Which column holds the largest "
                                     "number, and by how much does it beat the second one?", "Sum a.")]
LIMITS = [5, 3, 6, 4, 5]


@pytest.fixture(autouse=True)
def fresh():
    generation.clear_cache()
    yield
    generation.clear_cache()


def test_shared_prefix_leaves_every_prompt_a_token_of_its_own():
    assert shared_prefix([[1, 2, 3, 4], [1, 2, 3, 5]]) == 3
    assert shared_prefix([[1, 2, 3], [1, 2, 3]]) == 2
    assert shared_prefix([[1, 2, 3], [1, 2, 3, 4, 5]]) == 2
    assert shared_prefix([[1, 2], [3, 2]]) == 0
    assert shared_prefix([[1, 2, 3]]) == 0  # one prompt: nothing to share
    assert shared_prefix([[7], [7]]) == 0


class Recorder:
    """Wraps a model's forward: records (rows, input width) per call."""

    def __init__(self, model):
        self.model, self.calls, self._forward = model, [], model.forward

        def forward(*args, **kwargs):
            self.calls.append(tuple(kwargs["input_ids"].shape))
            return self._forward(*args, **kwargs)

        model.forward = forward

    def restore(self):
        self.model.forward = self._forward


@pytest.mark.parametrize("refill", [False, True], ids=["static", "refill"])
def test_the_shared_start_is_prefilled_once_and_outputs_equal_one_by_one(sharp_tiny_model, monkeypatch, refill):
    """Catches: the suffix's positions not offset by the prefix (RoPE at the wrong place), the
    prefix cache not copied to every row, padding between prefix and suffix left unmasked, the
    refill path's merge misaligning a prefixed cache. The sharp model turns any of these into
    other tokens."""
    monkeypatch.setattr(generation, "REFILL", refill)
    model, tok = generation.load_for_generation(sharp_tiny_model)
    ids = generation.render_prompts(tok, PROMPTS)
    pre = shared_prefix(ids)
    assert pre >= generation.MIN_SHARED_PREFIX
    rec = Recorder(model)
    stats: dict[str, float] = {}
    try:
        # one limit for all: the static path groups prompts by limit, and here they make one batch
        got = generation.generate(sharp_tiny_model, None, PROMPTS, 5, batch_size=5, stats=stats, precision="fp32")
    finally:
        rec.restore()
    assert got == one_by_one(model, tok, PROMPTS, [5] * len(PROMPTS))
    assert len(set(got)) > 1
    prefix_calls = [c for c in rec.calls if c == (1, pre)]
    assert prefix_calls, rec.calls  # the shared start ran alone ...
    assert stats["shared_prefix_tokens"] == pre * (len(PROMPTS) - 1)  # ... not once per row
    widest = max(c[1] for c in rec.calls if c[0] > 1)
    assert widest == max(len(x) for x in ids) - pre  # the rows' own tokens only


def test_prompts_without_a_long_shared_start_prefill_whole(sharp_tiny_model, monkeypatch):
    monkeypatch.setattr(generation, "MIN_SHARED_PREFIX", 10**6)
    stats: dict[str, float] = {}
    model, tok = generation.load_for_generation(sharp_tiny_model)
    got = generation.generate(sharp_tiny_model, None, PROMPTS, LIMITS, batch_size=5, stats=stats, precision="fp32")
    assert stats["shared_prefix_tokens"] == 0
    assert got == one_by_one(model, tok, PROMPTS, LIMITS)


def test_a_cache_that_cannot_take_a_copied_prefix_prefills_whole(sharp_tiny_model, monkeypatch):
    """A model with sliding-window or other special cache layers: the prefix is not copied."""
    monkeypatch.setattr(generation, "_can_refill", lambda cache: False)
    stats: dict[str, float] = {}
    model, tok = generation.load_for_generation(sharp_tiny_model)
    got = generation.generate(sharp_tiny_model, None, PROMPTS, LIMITS, batch_size=5, stats=stats, precision="fp32")
    assert stats["shared_prefix_tokens"] == 0
    assert got == one_by_one(model, tok, PROMPTS, LIMITS)
