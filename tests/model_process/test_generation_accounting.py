"""What ``generate`` does besides the tokens: how many rows decode at once, the time and token
accounting it reports, progress calls, argument checks, and the rarer model paths (a full
fine-tuned model as the adapter, an adapter that cannot be merged, a cache that cannot be spliced).

Outputs are checked against ``model.generate`` on each prompt alone; the counters are checked
against what the model's forward actually received (recorded by wrapping it) and against
counts worked out by hand. In-process on the tiny models (mutmut sees this code only here)."""

from __future__ import annotations

import os
import shutil
import time

import pytest

torch = pytest.importorskip("torch")

from ftdojo_gym.model_process import generation  # noqa: E402

from .reference import one_by_one  # noqa: E402

PROMPTS = [f"Item {i}: " + "rows and columns " * (i % 4) + "?" for i in range(7)]
LIMITS = [3, 6, 2, 5, 4, 1, 6]


@pytest.fixture(autouse=True)
def fresh(monkeypatch):
    """A fresh model per test; no shared-prefix prefill (these tests count the calls of whole-prompt
    prefills; ``test_generation_prefix.py`` tests the shared prefix)."""
    monkeypatch.setattr(generation, "MIN_SHARED_PREFIX", 10**9)
    generation.clear_cache()
    yield
    generation.clear_cache()


class Recorder:
    """Wraps a model's forward: records (batch rows, input width, mask width, padding) per call."""

    def __init__(self, model):
        self.model = model
        self.calls: list[tuple[int, int, int, int]] = []
        self._forward = model.forward

        def forward(*args, **kwargs):
            ids, mask = kwargs["input_ids"], kwargs["attention_mask"]
            self.calls.append((ids.shape[0], ids.shape[1], mask.shape[1], int((mask == 0).sum())))
            return self._forward(*args, **kwargs)

        model.forward = forward

    def restore(self):
        self.model.forward = self._forward

    @property
    def prefills(self):
        return [c for c in self.calls if c[1] > 1]

    @property
    def decodes(self):
        return [c for c in self.calls if c[1] == 1]


@pytest.fixture
def recorded(sharp_tiny_model):
    model, tok = generation.load_for_generation(sharp_tiny_model)
    rec = Recorder(model)
    yield sharp_tiny_model, model, tok, rec
    rec.restore()


@pytest.mark.parametrize("slots", [1, 2, 3])
def test_refill_never_decodes_more_rows_than_slots_and_fills_them(recorded, slots):
    """Catches: admitting more prompts than free slots, not refilling a freed slot, the
    counters of the continuous-batching path (steps, row-steps, prefills, padding, tokens)."""
    _, model, tok, rec = recorded
    ids = generation.render_prompts(tok, PROMPTS)
    stats: dict = {}
    finished: list[int] = []
    with torch.inference_mode():
        got = generation.refill_decode(model, ids, LIMITS, slots, set(), tok.pad_token_id, stats,
                                       lambda i, toks: finished.append(i))
    # Without stop tokens every prompt runs to its own limit.
    assert [len(g) for g in got] == LIMITS
    assert sorted(finished) == list(range(len(PROMPTS)))
    assert max(c[0] for c in rec.calls) == slots
    # While the queue is not empty every decode step is full: count the steps by hand.
    queue = sorted(range(len(ids)), key=lambda i: -len(ids[i]))
    left: dict[int, int] = {}
    steps = rows = prefills = 0
    while queue or left:
        if queue and len(left) < slots:
            admitted, queue = queue[: slots - len(left)], queue[slots - len(left):]
            prefills += 1
            left.update({i: LIMITS[i] - 1 for i in admitted if LIMITS[i] > 1})
            if not left:
                continue
        steps += 1
        rows += len(left)
        left = {i: n - 1 for i, n in left.items() if n > 1}
    assert stats["decode_steps"] == steps == len(rec.decodes)
    assert stats["decode_rows"] == rows == sum(c[0] for c in rec.decodes) == sum(n - 1 for n in LIMITS)
    assert stats["prefill_calls"] == prefills == len(rec.prefills)
    assert stats["new_tokens"] == sum(LIMITS)
    assert stats["prompt_tokens"] == sum(map(len, ids))
    assert stats["padded_tokens"] == sum(c[3] for c in rec.prefills)
    assert stats["prefill_s"] > 0 and stats["decode_s"] > 0
    # The decoded tokens are the ones each prompt gives alone.
    assert [tok.decode(g, skip_special_tokens=True) for g in got] == one_by_one(model, tok, PROMPTS, LIMITS)


def test_refill_drops_padding_columns_nobody_needs(recorded):
    """After the longest prompt finishes, the columns that were padding for every other row go."""
    _, model, tok, rec = recorded
    prompts = ["a " * 40, "b", "c"]
    ids = generation.render_prompts(tok, prompts)
    with torch.inference_mode():
        generation.refill_decode(model, ids, [2, 6, 6], 3, set(), tok.pad_token_id)
    widest = max(map(len, ids))
    short = max(len(ids[1]), len(ids[2]))
    assert rec.prefills[0][2] == widest
    assert rec.decodes[0][:3] == (3, 1, widest + 1)
    assert rec.decodes[1][:3] == (2, 1, short + 2)  # trimmed to the remaining rows' width
    assert rec.decodes[-1][:3] == (2, 1, short + 5)


def test_greedy_decode_counters(recorded):
    _, model, tok, rec = recorded
    ids = generation.render_prompts(tok, PROMPTS[:4])
    stats: dict = {}
    with torch.inference_mode():
        got = generation.greedy_decode(model, ids, 5, set(), tok.pad_token_id, stats)
        generation.greedy_decode(model, ids[:1], 2, set(), tok.pad_token_id, stats)  # adds to the sums
    width = max(map(len, ids))
    assert [len(g) for g in got] == [5] * 4
    assert stats["decode_steps"] == 4 + 1
    assert stats["decode_rows"] == 4 * 4 + 1
    assert stats["new_tokens"] == 4 * 5 + 2
    assert stats["prompt_tokens"] == sum(map(len, ids)) + len(ids[0])
    assert stats["padded_tokens"] == 4 * width - sum(map(len, ids))
    assert stats["prefill_s"] > 0 and stats["decode_s"] > 0
    assert [c[0] for c in rec.calls] == [4, 4, 4, 4, 4, 1, 1]


def test_greedy_decode_drops_a_finished_row_from_the_batch(recorded):
    _, model, tok, rec = recorded
    ids = generation.render_prompts(tok, PROMPTS[:3])
    with torch.inference_mode():
        alone = [generation.greedy_decode(model, [p], 4, set(), tok.pad_token_id)[0] for p in ids]
        rec.calls.clear()
        stop = alone[1][1]  # the second prompt stops after one token
        assert stop not in alone[1][:1]
        got = generation.greedy_decode(model, ids, 4, {stop}, tok.pad_token_id)
    assert got[1] == alone[1][:1]
    # The other rows go on (each up to its own first stop token).
    assert got == [row[: row.index(stop)] if stop in row else row for row in alone]
    assert any(len(row) == 4 for row in got)
    assert rec.calls[1][0] == 3 and rec.calls[2][0] < 3


def test_generate_reports_load_time_and_progress_per_batch(sharp_tiny_model, monkeypatch):
    """Continuous batching calls back every ``batch_size`` finished prompts and at the end; static
    batches once per batch (sizes 3, 3, 1): the same counts here."""
    for refill in (True, False):
        monkeypatch.setattr(generation, "REFILL", refill)
        generation.clear_cache()
        stats: dict = {}
        progress: list = []
        got = generation.generate(sharp_tiny_model, None, PROMPTS, 4, batch_size=3, stats=stats,
                                  on_progress=lambda d, t, seen=progress: seen.append((d, t)))
        assert len(got) == len(PROMPTS)
        assert stats["load_s"] > 0 and stats["prompt_tokens"] > 0 and stats["new_tokens"] > 0
        assert all(t == len(PROMPTS) for _, t in progress)
        assert [d for d, _ in progress] == [3, 6, 7]


def test_invalid_batch_size_and_limits(tiny_model):
    with pytest.raises(ValueError, match="batch_size"):
        generation.generate(tiny_model, None, ["a"], 2, batch_size=0)
    with pytest.raises(ValueError, match="max_new_tokens must be"):
        generation.generate(tiny_model, None, ["a", "b"], [2, 0])
    with pytest.raises(ValueError, match="2 entries for 1 prompts"):
        generation.generate(tiny_model, None, ["a"], [2, 3])
    assert len(generation.generate(tiny_model, None, ["a"], [1], batch_size=1)) == 1


def test_a_cache_that_cannot_be_spliced_falls_back_to_whole_batches(recorded, monkeypatch):
    """Sliding-window or other special caches: no prompt joins a running batch, outputs unchanged."""
    _, model, tok, rec = recorded
    monkeypatch.setattr(generation, "_can_refill", lambda cache: False)
    ids = generation.render_prompts(tok, PROMPTS)
    stats: dict = {}
    with torch.inference_mode():
        got = generation.refill_decode(model, ids, LIMITS, 3, set(), tok.pad_token_id, stats)
    calls, prefills = list(rec.calls), list(rec.prefills)
    assert [tok.decode(g, skip_special_tokens=True) for g in got] == one_by_one(model, tok, PROMPTS, LIMITS)
    # Each prefill waits until the running batch is empty: whole batches of 3, 3 and 1 prompts,
    # and between two prefills the live batch only shrinks.
    assert [c[0] for c in prefills] == [3, 3, 1]
    live = 0
    for rows, width, _, _ in calls:
        assert width > 1 or rows <= live
        live = rows
    assert stats["prefill_calls"] == len(prefills) == 3


def test_can_refill_knows_plain_and_sliding_window_caches():
    from transformers import DynamicCache
    from transformers.cache_utils import DynamicLayer, DynamicSlidingWindowLayer

    plain = DynamicCache()
    plain.layers = [DynamicLayer(), DynamicLayer()]
    sliding = DynamicCache()
    sliding.layers = [DynamicLayer(), DynamicSlidingWindowLayer(sliding_window=4)]
    assert generation._can_refill(plain)
    assert not generation._can_refill(sliding)


def test_a_full_fine_tuned_model_as_the_adapter_replaces_the_base(tiny_model, sharp_tiny_model):
    got = generation.generate(tiny_model, sharp_tiny_model, PROMPTS, LIMITS, batch_size=3)
    generation.clear_cache()
    model, tok = generation.load_for_generation(sharp_tiny_model)
    assert got == one_by_one(model, tok, PROMPTS, LIMITS)
    generation.clear_cache()
    assert got != generation.generate(tiny_model, None, PROMPTS, LIMITS, batch_size=3)


def test_a_dora_adapter_is_merged_into_a_private_copy(sharp_tiny_model, tmp_path):
    """DoRA cannot be merged by adding B @ A: generation uses peft's own merge on a copy, and the
    resident base model stays clean for the next call."""
    from peft import LoraConfig, PeftModel, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(0)
    base = AutoModelForCausalLM.from_pretrained(sharp_tiny_model, dtype=torch.float32)
    peft_model = get_peft_model(base, LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"],
                                                 use_dora=True, init_lora_weights=False, task_type="CAUSAL_LM"))
    peft_model.save_pretrained(tmp_path / "dora")
    got = generation.generate(sharp_tiny_model, str(tmp_path / "dora"), PROMPTS, 5, batch_size=3)
    fresh = AutoModelForCausalLM.from_pretrained(sharp_tiny_model, dtype=torch.float32)
    merged = PeftModel.from_pretrained(fresh, tmp_path / "dora").merge_and_unload().eval()
    model, tok = generation.load_for_generation(sharp_tiny_model)
    assert got == one_by_one(merged, tok, PROMPTS, [5] * len(PROMPTS))
    plain = generation.generate(sharp_tiny_model, None, PROMPTS, 5, batch_size=3)
    assert plain != got
    assert plain == one_by_one(model, tok, PROMPTS, [5] * len(PROMPTS))


class Clock:
    """A stand-in for ``time.perf_counter`` that moves one second per reading."""

    def __init__(self):
        self.now = 0.0

    def __call__(self):
        self.now += 1.0
        return self.now


def test_time_is_summed_per_phase_and_counters_add_up_over_calls(recorded, monkeypatch):
    """With a clock that ticks once per reading, each timed phase adds exactly one second:
    prefill seconds = prefill calls, decode seconds = decode steps, in both decoding paths,
    and a second call adds to the same sums. Catches a sum replaced by the last value, or
    sums that restart on every call."""
    _, model, tok, _ = recorded
    ids = generation.render_prompts(tok, PROMPTS)
    monkeypatch.setattr(generation.time, "perf_counter", Clock())
    refill: dict = {}
    with torch.inference_mode():
        generation.refill_decode(model, ids, LIMITS, 3, set(), tok.pad_token_id, refill)
        once = dict(refill)
        generation.refill_decode(model, ids, LIMITS, 3, set(), tok.pad_token_id, refill)
    assert once["decode_s"] == once["decode_steps"] and once["prefill_s"] == once["prefill_calls"]
    assert refill == {k: 2 * v for k, v in once.items()}
    static: dict = {}
    with torch.inference_mode():
        generation.greedy_decode(model, ids[:3], 4, set(), tok.pad_token_id, static)
    # greedy_decode reads the clock at the start, after the prefill and at the end
    assert static["prefill_s"] == 1 and static["decode_s"] == 1 and static["decode_steps"] == 3


def test_load_time_is_the_models_load_not_a_constant(sharp_tiny_model, monkeypatch):
    generation.load_for_generation(sharp_tiny_model)  # held now: the next load costs nothing
    monkeypatch.setattr(generation.time, "perf_counter", Clock())
    stats: dict = {}
    generation.generate(sharp_tiny_model, None, PROMPTS[:2], 2, stats=stats)
    assert stats["load_s"] == 1.0


def test_a_full_model_folder_that_changes_is_loaded_again(tiny_model, sharp_tiny_model, tmp_path):
    """Catches: the held model kept although its folder now holds another model."""
    folder = tmp_path / "full"
    shutil.copytree(tiny_model, folder)
    first = generation.generate(tiny_model, str(folder), PROMPTS, 5)
    shutil.rmtree(folder)
    shutil.copytree(sharp_tiny_model, folder)
    later = time.time() + 5  # a newer modification time, as a re-saved model has
    for f in folder.iterdir():
        os.utime(f, (later, later))
    second = generation.generate(tiny_model, str(folder), PROMPTS, 5)
    assert second != first
    generation.clear_cache()
    model, tok = generation.load_for_generation(sharp_tiny_model)
    assert second == one_by_one(model, tok, PROMPTS, [5] * len(PROMPTS))
