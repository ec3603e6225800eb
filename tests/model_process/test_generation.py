"""Batched greedy generation gives the same strings as one-by-one ``model.generate``."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

from ftdojo_gym.model_process import generation  # noqa: E402

from .reference import one_by_one  # noqa: E402

PROMPTS = [
    "Hi",
    "What is the capital of France? Answer in one word.",
    "Read the table.\n| a | b |\n| 1 | 2 |\nWhat is b?",
    "x",
    "A much longer prompt that goes on and on about tables, numbers and answers " * 3,
    "Final Answer:",
    "Count to five.",
]


@pytest.fixture(autouse=True)
def fresh_cache():
    generation.clear_cache()
    yield
    generation.clear_cache()


def test_batched_equals_one_by_one_in_input_order(tiny_model):
    max_new = [12, 5, 12, 3, 12, 5, 8]
    progress = []
    got = generation.generate(tiny_model, None, PROMPTS, max_new, batch_size=3,
                              on_progress=lambda d, t: progress.append((d, t)))
    model, tok = generation.load_for_generation(tiny_model)
    assert got == one_by_one(model, tok, PROMPTS, max_new)
    assert len(set(got)) > 1  # not a degenerate constant output
    assert progress[-1] == (len(PROMPTS), len(PROMPTS))
    assert [d for d, _ in progress] == sorted(d for d, _ in progress)


def test_single_limit_and_batch_size_do_not_change_outputs(tiny_model):
    a = generation.generate(tiny_model, None, PROMPTS, 6, batch_size=1)
    b = generation.generate(tiny_model, None, PROMPTS, 6, batch_size=16)
    assert a == b


def test_output_stops_at_eos(tiny_model):
    model, tok = generation.load_for_generation(tiny_model)
    ids = generation.render_prompts(tok, ["Hi"])
    # Force the first greedy token to be EOS by making EOS the only stop and checking it is cut
    eos = tok.eos_token_id
    first = generation.greedy_decode(model, ids, 1, set(), tok.pad_token_id)[0][0]
    assert generation.greedy_decode(model, ids, 5, {first}, tok.pad_token_id) == [[]]
    assert all(t != eos for t in generation.greedy_decode(model, ids, 5, {eos}, tok.pad_token_id)[0])


def test_plan_batches_sorts_by_limit_and_length_and_fills_batches():
    """Catches: batches cut at every change of limit (part-empty batches), a batch over the
    size, an index lost or doubled, or the order (largest limit, then longest prompt, first)."""
    lengths = [5, 50, 7, 48, 6]
    max_new = [8, 8, 16, 8, 16]
    batches = generation.plan_batches(lengths, max_new, batch_size=2)
    assert batches == [[2, 4], [1, 3], [0]]
    batches = generation.plan_batches(lengths, max_new, batch_size=3)
    assert batches == [[2, 4, 1], [3, 0]]  # limits mixed in a batch


def test_each_row_stops_at_its_own_limit(tiny_model):
    """Catches: one limit applied to a whole batch (the first row's, or the largest), or a row
    cut one token early or late."""
    model, tok = generation.load_for_generation(tiny_model, precision="fp32")
    ids = generation.render_prompts(tok, PROMPTS[:3])
    caps = [2, 6, 4]
    got = generation.greedy_decode(model, ids, caps, set(), tok.pad_token_id)
    assert [len(g) for g in got] == caps
    alone = [generation.greedy_decode(model, [p], c, set(), tok.pad_token_id)[0] for p, c in zip(ids, caps, strict=True)]
    assert got == alone
    with pytest.raises(ValueError):
        generation.greedy_decode(model, ids, [2, 3], set(), tok.pad_token_id)
    with pytest.raises(ValueError):  # a row may not get a token it was not allowed
        generation.greedy_decode(model, ids, [2, 0, 3], set(), tok.pad_token_id)


def test_empty_and_invalid_requests(tiny_model):
    assert generation.generate(tiny_model, None, [], 4) == []
    with pytest.raises(ValueError):
        generation.generate(tiny_model, None, ["a", "b"], [4])
    with pytest.raises(ValueError):
        generation.generate(tiny_model, None, ["a"], 0)


def test_lora_adapter_is_merged_and_matches_the_merged_model(tiny_model, tmp_path):
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(0)
    base = AutoModelForCausalLM.from_pretrained(tiny_model, dtype=torch.float32)
    # init_lora_weights=False: random B, so the adapter really changes the outputs
    peft_model = get_peft_model(base, LoraConfig(r=8, lora_alpha=64, target_modules="all-linear",
                                                 init_lora_weights=False, task_type="CAUSAL_LM"))
    peft_model.save_pretrained(tmp_path / "adapter")

    got = generation.generate(tiny_model, str(tmp_path / "adapter"), PROMPTS, 8, batch_size=4)
    merged = peft_model.merge_and_unload().eval()
    _, tok = generation.load_for_generation(tiny_model, str(tmp_path / "adapter"))
    assert got == one_by_one(merged, tok, PROMPTS, [8] * len(PROMPTS))
    assert got != generation.generate(tiny_model, None, PROMPTS, 8, batch_size=4)


def test_missing_adapter_is_an_error(tiny_model, tmp_path):
    with pytest.raises(FileNotFoundError, match=r"no adapter_config\.json or config\.json"):
        generation.generate(tiny_model, str(tmp_path), ["a"], 2)
