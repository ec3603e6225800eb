"""Both decoding paths of ``generate`` (continuous batching, ``REFILL``, and the static batches kept
for comparison) give exactly what ``model.generate`` gives on each prompt alone, in input order,
for mixed prompt lengths, per-prompt limits and batch sizes; an adapter changes the outputs.

In-process on the tiny model (the worker runs the same code, invisible to mutmut's coverage)."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

from ftdojo_gym.model_process import generation  # noqa: E402

from .reference import one_by_one  # noqa: E402

PROMPTS = ["Hi", "What is the capital of France? Answer in one word.", "x", "Count to five, slowly, please." * 3,
           "Read the table.\n| a | b |\n| 1 | 2 |\nWhat is b?", "ok"]
LIMITS = [9, 4, 9, 1, 6, 9]


@pytest.fixture(autouse=True)
def fresh_cache():
    generation.clear_cache()
    yield
    generation.clear_cache()


@pytest.mark.parametrize("model_fixture", ["tiny_model", "sharp_tiny_model"])
@pytest.mark.parametrize("refill", [True, False])
@pytest.mark.parametrize("batch_size", [1, 2, 4])
def test_every_path_gives_the_one_by_one_outputs(request, monkeypatch, refill, batch_size, model_fixture):
    """Catches: wrong positions or masks for left padding, a KV cache dropped or misaligned when a
    row finishes, stopping after the first token or one too late, outputs out of order (the sharp
    model's tokens depend on all of these; the tiny model's often do not)."""
    tiny_model = request.getfixturevalue(model_fixture)
    monkeypatch.setattr(generation, "REFILL", refill)
    done = []
    got = generation.generate(tiny_model, None, PROMPTS, LIMITS, batch_size=batch_size,
                              on_progress=lambda d, t: done.append((d, t)))
    model, tok = generation.load_for_generation(tiny_model)
    assert got == one_by_one(model, tok, PROMPTS, LIMITS)
    assert done[-1] == (len(PROMPTS), len(PROMPTS)) and [d for d, _ in done] == sorted(d for d, _ in done)
    lengths = [len(tok(o, add_special_tokens=False)["input_ids"]) for o in got]
    assert any(n > 1 for n in lengths)


def test_greedy_decode_matches_generate_on_a_padded_batch_and_stops_at_the_stop_tokens(tiny_model):
    model, tok = generation.load_for_generation(tiny_model)
    ids = generation.render_prompts(tok, PROMPTS[:4])
    eos = model.generation_config.eos_token_id
    stops = {eos} if isinstance(eos, int) else set(eos)
    with torch.inference_mode():
        batch = generation.greedy_decode(model, ids, 7, stops, tok.pad_token_id)
        alone = [generation.greedy_decode(model, [p], 7, stops, tok.pad_token_id)[0] for p in ids]
    assert batch == alone and all(len(row) <= 7 for row in batch) and any(len(row) == 7 for row in batch)
    assert [tok.decode(r, skip_special_tokens=True) for r in batch] == one_by_one(model, tok, PROMPTS[:4], [7] * 4)
    first = [row[0] for row in alone]
    with torch.inference_mode():
        cut = generation.greedy_decode(model, ids, 7, {first[0]}, tok.pad_token_id)
    assert cut[0] == [] and all(t != first[0] for row in cut for t in row)


def test_the_sharp_model_notices_a_missing_padding_mask(sharp_tiny_model):
    """The fixture's point: on the sharp model, a left-padded batch decoded without its attention
    mask gives other tokens than each prompt alone (so the path tests above catch such bugs)."""
    model, tok = generation.load_for_generation(sharp_tiny_model)
    ids = generation.render_prompts(tok, PROMPTS[:4])
    width = max(map(len, ids))
    batch = torch.tensor([[tok.pad_token_id] * (width - len(r)) + r for r in ids])
    with torch.inference_mode():
        unmasked = model.generate(input_ids=batch, attention_mask=torch.ones_like(batch), max_new_tokens=6,
                                  do_sample=False, pad_token_id=tok.pad_token_id)
    got = [tok.decode(row[width:], skip_special_tokens=True) for row in unmasked]
    assert got != one_by_one(model, tok, PROMPTS[:4], [6] * 4)
