"""What a training run does, checked in this process on the tiny model (the worker runs the same
``run_sft``): the loss is the completion tokens' next-token cross-entropy, each config field
reaches the trainer, limits and budgets hold, and the data file is checked.

Written against mutation testing (``tools/mutation.sh ftdojo_gym/model_process/sft.py``; code run
in the worker subprocess is invisible to mutmut). Only the public behaviour of ``run_sft`` and
``load_pairs`` is used: what it reports (``TrainProgress``, log events) and what it saves."""

from __future__ import annotations

import contextlib
import json
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")

from ftdojo_gym.errors import ConfigError, DataError  # noqa: E402
from ftdojo_gym.model_process import sft  # noqa: E402
from ftdojo_gym.model_process.protocol import TrainRequest  # noqa: E402
from ftdojo_gym.model_process.resident import RESIDENT  # noqa: E402
from ftdojo_gym.training_config import TrainConfig  # noqa: E402

ROWS = [
    {"prompt": "What is 2 plus 2?", "completion": "Final Answer: 4"},
    {"prompt": "Read the table.\n| a | b |\n| 1 | 2 |\nWhat is b? Think step by step.", "completion": "2"},
    {"prompt": "Name a striped animal.", "completion": "A zebra is striped, and so is a tiger."},
    {"prompt": "x", "completion": "y y y y y y"},
]


@pytest.fixture(autouse=True)
def fresh_resident():
    RESIDENT.clear()
    yield
    RESIDENT.clear()


def write_rows(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def train(tiny: str, tmp_path: Path, rows=ROWS, name="run", events=None, **options):
    config = {"method": "lora", "batch_size": 4, "max_steps": 2, "learning_rate": 1e-2, "max_len": 128,
              "lr_scheduler": "constant", "seed": 0}
    config.update(options.pop("config", {}))
    data = write_rows(tmp_path / f"{name}.jsonl", rows)
    req = TrainRequest(base_model=tiny, data_path=str(data), output_dir=str(tmp_path / name), config=config, **options)
    return sft.run_sft(req, (events.append if events is not None else lambda event: None))


def completion_loss_sum(model_path: str, rows: list[dict]) -> tuple[float, int]:
    """Summed next-token cross-entropy of the base model over the completion tokens of each chat
    pair, and their count: computed here with transformers, independently of the training code."""
    import torch.nn.functional as F
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(model_path)
    model = AutoModelForCausalLM.from_pretrained(model_path, dtype=torch.float32).eval()
    total, count = 0.0, 0
    for r in rows:
        user = [{"role": "user", "content": r["prompt"]}]
        context = tok.apply_chat_template(user, tokenize=True, add_generation_prompt=True, return_dict=True)["input_ids"]
        full = tok.apply_chat_template(user + [{"role": "assistant", "content": r["completion"]}], tokenize=True,
                                       return_dict=True)["input_ids"]
        assert full[: len(context)] == context
        with torch.no_grad():
            logits = model(torch.tensor([full])).logits[0]
        n = len(context)
        total += float(F.cross_entropy(logits[n - 1: len(full) - 1], torch.tensor(full[n:]), reduction="sum"))
        count += len(full) - n
    return total, count


def adapter_weights(folder: Path) -> dict:
    from safetensors.torch import load_file

    return load_file(str(folder / "adapter_model.safetensors"))


def test_the_first_loss_is_the_base_models_loss_on_the_completion_tokens_of_a_padded_batch(tiny_model, tmp_path):
    """Catches: prompt or padding tokens in the loss, targets shifted by one, another reduction.

    One batch holds all four pairs (different lengths, so padded); the first loss is taken
    before any update (LoRA B starts at zero), so it is the base model's loss."""
    events = []
    progress = train(tiny_model, tmp_path, events=events, config={"max_steps": 1})
    total, count = completion_loss_sum(tiny_model, ROWS)
    assert progress.losses[0][1] == pytest.approx(total / count, abs=2e-3)
    assert [(e.step, e.max_steps) for e in events] == [(1, 1)] and events[0].loss == progress.losses[0][1]


def test_training_moves_the_lora_weights_and_lowers_the_loss(tiny_model, tmp_path):
    """Catches: training that updates no weight, or an adapter saved before (or without) training."""
    events = []
    # 5e-3: the loss falls at every step (10.66 -> 10.13); at 5e-2 it oscillated around 10.6 and
    # the last step landed within rounding of the threshold below.
    progress = train(tiny_model, tmp_path, events=events, config={"max_steps": 6, "learning_rate": 5e-3})
    losses = [loss for _, loss in progress.losses]
    assert [s for s, _ in progress.losses] == [1, 2, 3, 4, 5, 6] and progress.steps == 6
    assert losses[-1] < losses[0] - 0.1
    lora_b = {k: v for k, v in adapter_weights(tmp_path / "run").items() if "lora_B" in k}
    assert lora_b and all(float(v.abs().max()) > 0 for v in lora_b.values())
    assert progress.model_dir == str(tmp_path / "run") and (tmp_path / "run" / "tokenizer_config.json").exists()
    assert progress.samples == 4 and progress.warnings == []
    assert 0 < progress.train_seconds <= progress.seconds
    # tokens: every non-padding token of the 4 rows, once per step (one batch per step)
    assert progress.train_tokens == 6 * (progress.train_tokens // 6) and events[-1].tokens == progress.train_tokens
    assert [e.tokens for e in events] == [progress.train_tokens // 6 * k for k in range(1, 7)]


def test_config_fields_reach_the_trainer(tiny_model, tmp_path):
    """Catches: a config field dropped on its way to the trainer (rank, targets, schedule, warm-up,
    epochs, batch size, seed)."""
    events = []
    linear = train(tiny_model, tmp_path, name="linear", events=events,
                   config={"max_steps": 4, "batch_size": 1, "lr_scheduler": "linear", "warmup_ratio": 0.5,
                           "learning_rate": 1e-2, "lora_r": 2, "lora_alpha": 8, "lora_targets": ["q_proj", "v_proj"]})
    rates = [e.learning_rate for e in events]
    assert rates[0] < rates[1] < rates[2] == pytest.approx(1e-2) and rates[2] > rates[3] > 0  # warm-up, then decay
    config = json.loads((tmp_path / "linear" / "adapter_config.json").read_text())
    assert (config["r"], config["lora_alpha"], sorted(config["target_modules"])) == (2, 8, ["q_proj", "v_proj"])
    shapes = {k: tuple(v.shape) for k, v in adapter_weights(tmp_path / "linear").items()}
    assert shapes and all(2 in s for s in shapes.values())
    assert all("q_proj" in k or "v_proj" in k for k in shapes)
    assert linear.steps == 4
    # one token-count per row: batch size 1 gives four different step counts
    assert len({e.tokens - p for e, p in zip(events, [0] + [e.tokens for e in events], strict=False)}) > 1

    events.clear()
    epochs = train(tiny_model, tmp_path, name="epochs", events=events,
                   config={"max_steps": 0, "num_epochs": 2, "batch_size": 2, "lr_scheduler": "constant"})
    assert epochs.steps == 4 and [e.max_steps for e in events] == [4] * 4  # 2 epochs x 2 batches
    assert [e.learning_rate for e in events] == pytest.approx([1e-2] * 4)


def test_the_seed_makes_a_run_reproducible(tiny_model, tmp_path):
    a = train(tiny_model, tmp_path, name="a", config={"seed": 5, "batch_size": 2})
    b = train(tiny_model, tmp_path, name="b", config={"seed": 5, "batch_size": 2})
    c = train(tiny_model, tmp_path, name="c", config={"seed": 6, "batch_size": 2})
    wa, wb, wc = (adapter_weights(tmp_path / n) for n in "abc")
    assert a.losses == b.losses and all(torch.equal(wa[k], wb[k]) for k in wa)
    assert any(not torch.equal(wa[k], wc[k]) for k in wa)
    assert c.losses != a.losses or any(not torch.equal(wa[k], wc[k]) for k in wa)


def test_full_fine_tuning_changes_the_model_weights(tiny_model, tmp_path):
    from safetensors.torch import load_file

    progress = train(tiny_model, tmp_path, config={"method": "full", "max_steps": 1, "learning_rate": 1e-3})
    saved = load_file(str(tmp_path / "run" / "model.safetensors"))
    base = load_file(str(Path(tiny_model) / "model.safetensors"))
    assert (tmp_path / "run" / "config.json").exists() and not (tmp_path / "run" / "adapter_config.json").exists()
    assert any(not torch.equal(saved[k], base[k]) for k in base if k in saved)
    assert progress.model_dir == str(tmp_path / "run")


def test_sample_limits_debug_runs_and_the_token_budget(tiny_model, tmp_path):
    many = [{"prompt": f"Q{i}", "completion": f"A{i}"} for i in range(130)]
    capped = train(tiny_model, tmp_path, rows=many, name="capped", max_samples=3, config={"max_steps": 1})
    assert capped.samples == 3 and capped.warnings == ["using the first 3 of 130 samples (limit 3)"]
    debug = train(tiny_model, tmp_path, rows=many, name="debug", debug=True, config={"max_steps": 50, "batch_size": 8})
    assert debug.samples == sft.DEBUG_SAMPLES and debug.steps == sft.DEBUG_MAX_STEPS
    debug_epochs = train(tiny_model, tmp_path, rows=many[:8], name="debug2", debug=True,
                         config={"max_steps": 0, "num_epochs": 20, "batch_size": 8})
    assert debug_epochs.steps == sft.DEBUG_MAX_STEPS
    short_debug = train(tiny_model, tmp_path, rows=many, name="debug3", debug=True, config={"max_steps": 2})
    assert short_debug.steps == 2
    budget = train(tiny_model, tmp_path, name="budget", max_tokens=1, config={"max_steps": 5, "batch_size": 2})
    assert budget.stopped_budget and budget.steps == 1 and budget.model_dir is not None
    no_stop = train(tiny_model, tmp_path, name="nostop", max_tokens=10**6, config={"max_steps": 2})
    assert not no_stop.stopped_budget and no_stop.steps == 2
    with pytest.raises(ConfigError, match="max_tokens must be positive"):
        train(tiny_model, tmp_path, name="bad", max_tokens=0)


def test_prompts_that_fill_max_len_are_dropped_with_a_warning(tiny_model, tmp_path):
    rows = [{"prompt": "word " * 200, "completion": "long"}, ROWS[0], ROWS[3]]
    progress = train(tiny_model, tmp_path, rows=rows, config={"max_len": 48, "max_steps": 1})
    assert progress.samples == 2 and progress.warnings == ["dropped 1 of 3 samples whose prompt fills max_len=48"]
    with pytest.raises(DataError, match="zero usable samples: all 1 prompts fill max_len=48"):
        train(tiny_model, tmp_path, rows=rows[:1], name="none", config={"max_len": 48, "max_steps": 1})


def test_bad_configs_are_config_errors(tiny_model, tmp_path):
    assert sft.parse_config(TrainConfig(lora_r=4)) == TrainConfig(lora_r=4)
    assert sft.parse_config({"lora_r": 4}) == TrainConfig(lora_r=4)
    with pytest.raises(ConfigError, match="invalid training config"):
        sft.parse_config({"learning_rate": -1})
    with pytest.raises(ConfigError, match="invalid training config"):
        sft.parse_config({"no_such_field": 1})
    with pytest.raises(ConfigError, match="invalid training config"):
        sft.parse_config([1, 2])
    with pytest.raises(ConfigError, match="invalid training config"):
        train(tiny_model, tmp_path, config={"batch_size": 0})


def test_a_diverging_run_stops_and_saves_nothing(tiny_model, tmp_path, monkeypatch):
    """A NaN loss stops the run at once with a CONFIG error (the learning rate), and no model is saved."""
    real = torch.nn.functional.cross_entropy
    monkeypatch.setattr(torch.nn.functional, "cross_entropy", lambda *a, **k: real(*a, **k) * float("nan"))
    events = []
    with pytest.raises(sft.TrainingDiverged, match="non-finite at step 1 .*learning_rate=0.01"):
        train(tiny_model, tmp_path, events=events, config={"max_steps": 5})
    assert [e.loss for e in events] == [None] and not (tmp_path / "run" / "adapter_model.safetensors").exists()


@pytest.mark.parametrize(("text", "message"), [
    ("", "training data file is empty"),
    ("\n\n", "training data file is empty"),
    ("{not json\n", "line 1: not valid JSON"),
    ('[1, 2]\n', "line 1: expected a JSON object, got list"),
    ('{"prompt": "p"}\n', r"line 1: missing field\(s\) \['completion'\]"),
    ('{"prompt": "p", "completion": 3}\n', "line 1: 'prompt' and 'completion' must be strings"),
    ('{"prompt": 1, "completion": "c"}\n', "must be strings"),
    ('{"prompt": " ", "completion": "c"}\n{"prompt": "p", "completion": ""}\n', "no usable sample in d.jsonl: all 2 rows"),
])
def test_load_pairs_rejects_unusable_files(tmp_path, text, message):
    (tmp_path / "d.jsonl").write_text(text)
    with pytest.raises(DataError, match=message):
        sft.load_pairs(tmp_path / "d.jsonl", 10)


def test_load_pairs_keeps_usable_rows_in_order_and_says_what_it_skipped(tmp_path):
    lines = ['{"prompt": "a", "completion": "1", "extra": 0}', "", '{"prompt": "b", "completion": " "}',
             '{"prompt": "c", "completion": "3"}', '{"prompt": "d", "completion": "4"}']
    (tmp_path / "d.jsonl").write_text("\n".join(lines) + "\n")
    rows, notes = sft.load_pairs(tmp_path / "d.jsonl", 10)
    assert rows == [{"prompt": "a", "completion": "1"}, {"prompt": "c", "completion": "3"},
                    {"prompt": "d", "completion": "4"}]
    assert notes == ["skipped 1 of 4 rows with an empty prompt or completion"]
    rows, notes = sft.load_pairs(tmp_path / "d.jsonl", 2)
    assert [r["prompt"] for r in rows] == ["a", "c"] and notes[-1] == "using the first 2 of 3 samples (limit 2)"
    assert sft.load_pairs(tmp_path / "d.jsonl", 3)[1] == notes[:1]
    (tmp_path / "e.jsonl").write_text("\n".join([lines[2], lines[2], lines[3]]) + "\n")
    assert sft.load_pairs(tmp_path / "e.jsonl", 10)[1] == ["skipped 2 of 3 rows with an empty prompt or completion"]
    with pytest.raises(DataError, match="training data file not found"):
        sft.load_pairs(tmp_path / "missing.jsonl", 10)


def right_padded_batch(lengths: list[int], width: int) -> dict:
    """A training batch of rows of ``lengths`` real tokens, right-padded to ``width`` columns;
    token ids number the cells (row * width + column), labels are -100 on padding."""
    mask = torch.zeros(len(lengths), width, dtype=torch.long)
    for i, n in enumerate(lengths):
        mask[i, :n] = 1
    ids = torch.arange(len(lengths) * width).view(len(lengths), width)
    labels = torch.where(mask.bool(), ids, torch.full_like(ids, -100))
    return {"input_ids": ids, "attention_mask": mask, "labels": labels}


def test_split_batch_cuts_rows_into_chunks_within_the_token_limit():
    """Catches: chunks over the limit, rows lost, doubled or reordered, padding columns kept,
    real columns cut, non-batch values cut."""
    lengths = [9, 8, 8, 3, 2, 2]
    width = 10
    batch = {**right_padded_batch(lengths, width), "extra": 7}
    ids, labels = batch["input_ids"], batch["labels"]
    chunks = sft.split_batch(batch, 20)
    # Greedy in row order (the trainer's batches come sorted by length): 2x9, 2x8, 2x2.
    assert [tuple(c["input_ids"].shape) for c in chunks] == [(2, 9), (2, 8), (2, 2)]
    assert torch.equal(torch.cat([c["input_ids"][:, :2] for c in chunks]), ids[:, :2])
    for c in chunks:
        rows = [int(r) // width for r in c["input_ids"][:, 0]]
        assert torch.equal(c["labels"], labels[rows, : c["labels"].shape[1]])
        assert int(c["attention_mask"].sum()) == sum(lengths[r] for r in rows)
        assert c["extra"] == 7
    assert sft.split_batch(batch, 60) == [batch]  # fits: one chunk, the same tensors
    assert sft.split_batch(batch, 0) == [batch]  # 0: never split
    single = sft.split_batch(batch, 4)
    # A row over the limit is a chunk of its own.
    assert [tuple(c["input_ids"].shape) for c in single] == [(1, 9), (1, 8), (1, 8), (1, 3), (2, 2)]


def test_a_batch_run_in_chunks_gives_the_same_loss_and_update(tiny_model, tmp_path, monkeypatch):
    """Catches: chunk losses averaged instead of normalised by the whole batch, a chunk's
    gradient dropped or counted twice, the token count taken per chunk."""
    config = {"max_steps": 2, "learning_rate": 1e-3}
    monkeypatch.setattr(sft, "CHUNK_TOKENS", 0)
    whole = train(tiny_model, tmp_path, name="whole", config=config)
    monkeypatch.setattr(sft, "CHUNK_TOKENS", 40)  # the four rows of ROWS become several chunks
    split = train(tiny_model, tmp_path, name="split", config=config)
    assert [s for s, _ in split.losses] == [1, 2]
    assert split.losses[0][1] == pytest.approx(whole.losses[0][1], abs=1e-5)
    assert split.losses[1][1] == pytest.approx(whole.losses[1][1], abs=1e-3)
    assert split.train_tokens == whole.train_tokens
    a, b = adapter_weights(tmp_path / "whole"), adapter_weights(tmp_path / "split")
    assert a.keys() == b.keys()
    # Adam's first steps move each weight by about +-lr whatever the gradient's size, so float
    # noise flips a few near-zero gradients (well under 1 % of the weights here); a lost or
    # doubled chunk changes most of them.
    moved = torch.cat([(a[k] - b[k]).abs().flatten() for k in a])
    assert float((moved > 1e-4).float().mean()) < 0.02


def test_bf16_copies_of_the_frozen_layers_train_the_same_and_are_put_back(tiny_model, tmp_path, monkeypatch):
    """Catches: copies that round differently from autocast's casts (other losses), trainable
    LoRA weights copied (no update), the fp32 base weights not put back after the run (the
    next evaluation would run a bf16 model)."""
    monkeypatch.setattr(sft, "cpu_has_fast_bf16", lambda: True)
    config = {"max_steps": 2, "learning_rate": 1e-2}
    monkeypatch.setattr(sft, "PRECAST_BF16", False)
    plain = train(tiny_model, tmp_path, name="plain", config=config)
    base, _ = RESIDENT.base(tiny_model)
    before = {n: p.detach().clone() for n, p in base.named_parameters()}
    monkeypatch.setattr(sft, "PRECAST_BF16", True)
    seen = []
    real = sft._frozen_linears_to_bf16

    def spy(model):
        swapped = real(model)
        seen.extend((type(m).__name__, m.weight.dtype, m.weight.requires_grad) for m, _, _ in swapped)
        return swapped

    monkeypatch.setattr(sft, "_frozen_linears_to_bf16", spy)
    precast = train(tiny_model, tmp_path, name="precast", config=config)
    # every linear layer's frozen weight (7 per block and the LM head) ran as a bf16 copy
    assert len(seen) >= 8 and all(dtype == torch.bfloat16 and not grad for _, dtype, grad in seen)
    assert [loss for _, loss in precast.losses] == [loss for _, loss in plain.losses]
    a, b = adapter_weights(tmp_path / "plain"), adapter_weights(tmp_path / "precast")
    assert all(torch.equal(a[k], b[k]) for k in a) and any(float(v.abs().max()) > 0 for k, v in b.items()
                                                            if "lora_B" in k)
    model, _ = RESIDENT.base(tiny_model)
    assert model is base
    after = dict(model.named_parameters())
    assert after.keys() == before.keys()
    assert all(after[n].dtype == torch.float32 and torch.equal(after[n], before[n]) for n in before)
    assert model.get_output_embeddings().weight is model.get_input_embeddings().weight or not \
        model.config.tie_word_embeddings


def test_split_batch_rounds_chunk_widths_up_to_the_multiple():
    """Catches: widths not rounded (a new shape at nearly every step), rounded past the batch's
    width, or the token limit checked on the unrounded widths."""
    batch = right_padded_batch([9, 8, 8, 3, 2, 2], width=10)
    mask = batch["attention_mask"]
    chunks = sft.split_batch(batch, 20, multiple=4)
    # widths 9 -> 10 (the batch's width, not 12), 8 -> 8, 3 and 2 -> 4; 2 x 10 fills the limit
    assert [tuple(c["input_ids"].shape) for c in chunks] == [(2, 10), (2, 8), (2, 4)]
    assert [tuple(c["input_ids"].shape) for c in sft.split_batch(batch, 20, multiple=1)] == [(2, 9), (2, 8), (2, 2)]
    assert torch.equal(chunks[2]["attention_mask"], mask[4:, :4])  # the added columns are padding


def test_training_batches_are_padded_to_the_multiple_with_the_same_loss(tiny_model, tmp_path, monkeypatch):
    """Catches: the collator not padding to ``PAD_MULTIPLE`` (a new tensor shape at every
    step), the chunks not rounded, or the added padding changing the loss."""
    widths: list[int] = []
    real = sft.split_batch

    def spy(inputs, max_tokens, multiple=1):
        chunks = real(inputs, max_tokens, multiple)
        widths.extend(c["input_ids"].shape[-1] for c in chunks)
        return chunks

    monkeypatch.setattr(sft, "split_batch", spy)
    monkeypatch.setattr(sft, "CHUNK_TOKENS", 40)
    monkeypatch.setattr(sft, "PAD_MULTIPLE", 1)
    plain = train(tiny_model, tmp_path, name="plain")
    assert any(w % 16 for w in widths)  # unpadded, these rows give odd widths
    widths.clear()
    monkeypatch.setattr(sft, "PAD_MULTIPLE", 16)
    padded = train(tiny_model, tmp_path, name="padded")
    assert widths and all(w % 16 == 0 for w in widths)
    assert padded.train_tokens == plain.train_tokens  # padding is not counted as trained tokens
    for (_, a), (_, b) in zip(plain.losses, padded.losses, strict=True):
        assert b == pytest.approx(a, rel=1e-2)


def test_narrow_chunks_run_matmul_attention_and_sdpa_is_put_back(tiny_model, tmp_path, monkeypatch):
    """Catches: matmul attention for wide chunks or sdpa for narrow ones (the threshold inverted
    or ignored), the resident model left on the narrow chunks' attention after the run
    (generation would use it), its mask cache kept after the run, "eager" not used when matmul
    attention is off, or a different loss."""
    from transformers import AttentionInterface
    from transformers.models.llama import modeling_llama

    from ftdojo_gym.model_process import attention

    used: list[tuple[int, str]] = []
    real_eager = modeling_llama.eager_attention_forward
    real_matmul = attention.matmul_attention

    def eager(module, query, *args, **kwargs):
        used.append((query.shape[2], "eager"))
        return real_eager(module, query, *args, **kwargs)

    def matmul(module, query, *args, **kwargs):
        used.append((query.shape[2], "matmul"))
        return real_matmul(module, query, *args, **kwargs)

    monkeypatch.setattr(modeling_llama, "eager_attention_forward", eager)
    attention.register()
    monkeypatch.setitem(AttentionInterface._global_mapping, attention.NAME, matmul)
    monkeypatch.setattr(sft, "CHUNK_TOKENS", 0)
    monkeypatch.setattr(sft, "PAD_MULTIPLE", 1)
    monkeypatch.setattr(sft, "EAGER_ATTENTION_MAX_LEN", 0)
    sdpa_only = train(tiny_model, tmp_path, name="sdpa")
    assert used == []
    model, _ = RESIDENT.base(tiny_model)
    assert model.config._attn_implementation == "sdpa"

    widths: list[int] = []
    real_select = sft.AttentionByWidth.select

    def select(self, width):
        widths.append(width)
        real_select(self, width)

    monkeypatch.setattr(sft.AttentionByWidth, "select", select)
    rows = ROWS + [{"prompt": "long " * 60, "completion": "a long one"}]  # one batch far wider
    monkeypatch.setattr(sft, "EAGER_ATTENTION_MAX_LEN", 50)
    train(tiny_model, tmp_path, rows=rows, name="mixed", config={"batch_size": 2, "max_steps": 3})
    narrow = {w for w in widths if w <= 50}
    assert narrow and any(w > 50 for w in widths)
    assert {q for q, _ in used} == narrow  # matmul attention exactly for the narrow batches
    assert {kind for _, kind in used} == {"matmul"}
    assert RESIDENT.base(tiny_model)[0].config._attn_implementation == "sdpa"
    assert not attention._mask_cache  # the run's masks are not kept alive

    used.clear()
    monkeypatch.setattr(sft, "EAGER_ATTENTION_MAX_LEN", 1000)
    matmul_only = train(tiny_model, tmp_path, name="matmul")
    assert used and {kind for _, kind in used} == {"matmul"}
    used.clear()
    monkeypatch.setattr(sft, "MATMUL_ATTENTION", False)
    eager_only = train(tiny_model, tmp_path, name="eager")
    assert used and {kind for _, kind in used} == {"eager"}
    for (_, a), (_, b), (_, c) in zip(sdpa_only.losses, eager_only.losses, matmul_only.losses, strict=True):
        assert b == pytest.approx(a, rel=1e-2)
        assert c == pytest.approx(a, rel=1e-2)


def fail_a_run(tiny: str, tmp_path: Path) -> None:
    """A LoRA run that raises at its first log line, mid-training."""
    def boom(event):
        raise RuntimeError("stop here")

    data = write_rows(tmp_path / "rows.jsonl", ROWS)
    req = TrainRequest(base_model=tiny, data_path=str(data), output_dir=str(tmp_path / "x"),
                       config={"method": "lora", "batch_size": 4, "max_steps": 2, "max_len": 128})
    with pytest.raises(RuntimeError, match="stop here"):
        sft.run_sft(req, boom)


def test_eager_attention_is_put_back_when_a_run_fails(tiny_model, tmp_path, monkeypatch):
    """Catches: a run that raises mid-training leaving the resident model on eager attention."""
    monkeypatch.setattr(sft, "EAGER_ATTENTION_MAX_LEN", 1000)

    fail_a_run(tiny_model, tmp_path)
    model, _ = RESIDENT.base(tiny_model)
    assert model.config._attn_implementation == "sdpa"


def _casts(model, inputs) -> tuple[list[tuple], torch.Tensor]:
    """The casts between fp32 and bf16 a CPU autocast forward makes (``(to, shape)``), and its logits."""
    from torch.utils._python_dispatch import TorchDispatchMode

    shapes: list[tuple] = []

    class Casts(TorchDispatchMode):
        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            kwargs = kwargs or {}
            to = kwargs.get("dtype")
            if func is torch.ops.aten._to_copy.default and {args[0].dtype, to} == {torch.float32, torch.bfloat16}:
                shapes.append((to, tuple(args[0].shape)))
            return func(*args, **kwargs)

    with torch.autocast("cpu", dtype=torch.bfloat16), Casts():
        logits = model(**inputs).logits
    return shapes, logits


def lora_tiny(tiny: str):
    """The tiny model in fp32 with LoRA r4 on all linear layers, B drawn at random (so LoRA's
    inputs matter to the output): ``(base, peft model, its LoRA linear layers)``."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    base = AutoModelForCausalLM.from_pretrained(tiny, dtype=torch.float32)
    model = get_peft_model(base, LoraConfig(r=4, target_modules="all-linear", task_type="CAUSAL_LM"))
    torch.manual_seed(0)
    for name, param in model.named_parameters():
        if "lora_B" in name:
            torch.nn.init.normal_(param, std=0.1)
    lora_layers = [m for m in model.modules() if type(m).__name__ == "Linear" and hasattr(m, "lora_A")]
    return base, model, lora_layers


def test_lora_inputs_are_cast_once_per_activation_and_put_back(tiny_model):
    """Catches: a normed activation still cast once per layer that reads it (q, k, v: base
    layer and LoRA A each), peft's cast of bf16 inputs back to fp32 left on, other forward
    values, or the hooks and peft's casting not put back after the block."""
    base, model, lora_layers = lora_tiny(tiny_model)
    inputs = {"input_ids": torch.tensor([[1, 5, 9, 3, 7, 2]])}
    hidden = base.config.hidden_size
    layers = base.config.num_hidden_layers

    plain_casts, plain = _casts(model, inputs)
    with sft.lora_inputs_cast_once(model) as hooked:
        assert hooked == len(lora_layers) == 7 * layers
        assert all(m.cast_input_dtype_enabled is False for m in lora_layers)
        shared_casts, shared = _casts(model, inputs)
    assert torch.equal(plain, shared)
    down, up = (torch.bfloat16, (1, 6, hidden)), (torch.float32, (1, 6, hidden))
    # Plain autocast casts a normed activation for each of q, k, v, gate, up and their LoRA A
    # (10 a layer), peft sends o's bf16 input to fp32 and autocast back (1); the LM head's input 1.
    assert plain_casts.count(down) == 11 * layers + 1
    assert plain_casts.count(up) == layers
    # Shared: one cast for q/k/v and one for gate/up a layer; o's input stays bf16.
    assert shared_casts.count(down) == 2 * layers + 1
    assert shared_casts.count(up) == 0
    assert all(m.cast_input_dtype_enabled for m in lora_layers)
    assert all(not m._forward_pre_hooks for m in lora_layers)
    again, _ = _casts(model, inputs)
    assert again == plain_casts

    # A tensor written in place between two readers is cast again, not served from the first cast.
    q, k = lora_layers[0], lora_layers[1]
    x = torch.randn(1, 3, hidden)
    with sft.lora_inputs_cast_once(model), torch.autocast("cpu", dtype=torch.bfloat16), torch.no_grad():
        q(x)
        x.mul_(-1)
        got = k(x)
    with torch.autocast("cpu", dtype=torch.bfloat16), torch.no_grad():
        assert torch.equal(got, k(x))


def _lora_grads(model, inputs, shared: bool) -> dict[str, torch.Tensor]:
    model.zero_grad()
    with sft.lora_inputs_cast_once(model) if shared else contextlib.nullcontext(), \
            torch.autocast("cpu", dtype=torch.bfloat16):
        logits = model(**inputs).logits
    torch.nn.functional.cross_entropy(logits[0, :-1].float(), inputs["input_ids"][0, 1:]).backward()
    return {n: p.grad.clone() for n, p in model.named_parameters() if p.requires_grad}


def test_shared_casts_pass_gradients_through_and_keep_the_grad_mode(tiny_model):
    """Catches: a shared cast cut from the graph (no gradient reaches earlier layers' LoRA
    weights), one made under no_grad served to a layer that needs a gradient, or a crash on an
    inference-mode tensor (no version counter)."""
    base, model, lora_layers = lora_tiny(tiny_model)
    inputs = {"input_ids": torch.tensor([[1, 5, 9, 3, 7, 2, 8, 4]])}
    plain, shared = _lora_grads(model, inputs, False), _lora_grads(model, inputs, True)
    assert plain.keys() == shared.keys()
    for name in plain:  # equal up to bf16 rounding of the summed gradients
        scale = float(plain[name].norm())
        assert scale > 0, name
        assert float((shared[name] - plain[name]).norm()) < 0.05 * scale, name

    q, k = lora_layers[0], lora_layers[1]
    x = torch.randn(1, 3, base.config.hidden_size, requires_grad=True)
    with sft.lora_inputs_cast_once(model), torch.autocast("cpu", dtype=torch.bfloat16):
        with torch.no_grad():
            q(x)
        k(x).float().sum().backward()
        with torch.inference_mode():
            q(torch.randn(1, 3, base.config.hidden_size))
    assert x.grad is not None and float(x.grad.abs().sum()) > 0


def test_shared_input_casts_train_like_separate_ones_and_are_removed(tiny_model, tmp_path, monkeypatch):
    """Catches: the shared casts not used in a bf16 CPU run, a run whose losses move by more than
    bf16 rounding, or hooks left on the resident model's LoRA layers (also after a failed run)."""
    monkeypatch.setattr(sft, "cpu_has_fast_bf16", lambda: True)
    config = {"max_steps": 3, "learning_rate": 1e-2}
    monkeypatch.setattr(sft, "SHARED_INPUT_CAST", False)
    separate = train(tiny_model, tmp_path, name="separate", config=config)
    monkeypatch.setattr(sft, "SHARED_INPUT_CAST", True)
    hooked: list[int] = []
    real = sft.lora_inputs_cast_once

    @contextlib.contextmanager
    def spy(model):
        with real(model) as n:
            hooked.append(n)
            yield n

    monkeypatch.setattr(sft, "lora_inputs_cast_once", spy)
    shared = train(tiny_model, tmp_path, name="shared", config=config)
    assert hooked and hooked[0] > 0
    for (_, a), (_, b) in zip(separate.losses, shared.losses, strict=True):
        assert b == pytest.approx(a, rel=1e-2)
    model, _ = RESIDENT.base(tiny_model)
    assert all(not m._forward_pre_hooks for m in model.modules())

    fail_a_run(tiny_model, tmp_path)
    assert len(hooked) == 2
    assert all(not m._forward_pre_hooks for m in RESIDENT.base(tiny_model)[0].modules())


def _scalar_muls(model, inputs) -> tuple[list[tuple], torch.Tensor, dict[str, torch.Tensor]]:
    """Shapes of the products by a Python number in a forward and backward pass (LoRA's
    ``* scaling`` is one), the logits, and the LoRA gradients."""
    from torch.utils._python_dispatch import TorchDispatchMode

    shapes: list[tuple] = []

    class Muls(TorchDispatchMode):
        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            out = func(*args, **(kwargs or {}))
            if func is torch.ops.aten.mul.Tensor and isinstance(args[1], float):
                shapes.append(tuple(out.shape))
            return out

    model.zero_grad()
    with Muls():
        logits = model(**inputs).logits
        torch.nn.functional.cross_entropy(logits[0, :-1], inputs["input_ids"][0, 1:]).backward()
    return shapes, logits.detach(), {n: p.grad.clone() for n, p in model.named_parameters() if p.requires_grad}


def test_lora_scaling_on_the_rank_gives_the_same_outputs_and_gradients_and_is_put_back(tiny_model):
    """Catches: LoRA's scaling still applied to the layer-sized output (a tokens x out product in
    the forward and in the backward pass), other outputs or gradients, a scaling lost or applied
    twice, or the layers' own forward not put back (also when the block raises)."""
    base, model, lora_layers = lora_tiny(tiny_model)
    for layer in lora_layers:
        layer.scaling["default"] = 1.5  # not a power of two: rounding may differ, values may not
    inputs = {"input_ids": torch.tensor([[1, 5, 9, 3, 7, 2, 8]])}
    rank = lora_layers[0].r["default"]
    plain_muls, plain, plain_grads = _scalar_muls(model, inputs)
    with sft.lora_scaled_on_rank(model) as changed:
        assert changed == len(lora_layers)
        muls, logits, grads = _scalar_muls(model, inputs)
    torch.testing.assert_close(logits, plain, rtol=1e-5, atol=1e-5)
    assert grads.keys() == plain_grads.keys()
    for name in grads:
        assert float(plain_grads[name].norm()) > 0, name
        torch.testing.assert_close(grads[name], plain_grads[name], rtol=1e-4, atol=1e-6)
    on_rank = [s for s in muls if s[-1] == rank]
    assert len(on_rank) == 2 * len(lora_layers)  # forward and backward, each on the rank-r intermediate
    assert not [s for s in plain_muls if s[-1] == rank]
    assert len(plain_muls) - len(muls) == 0  # as many products, each tokens x r instead of tokens x out
    assert sorted(s for s in plain_muls if s[-1] != rank) != sorted(s for s in muls if s[-1] != rank)
    assert all("forward" not in m.__dict__ for m in lora_layers)
    with pytest.raises(RuntimeError, match="inside"), sft.lora_scaled_on_rank(model):
        raise RuntimeError("inside")
    assert all("forward" not in m.__dict__ for m in lora_layers)

    # Under CPU bf16 autocast (and with the shared casts): peft's values up to bf16 rounding.
    with torch.autocast("cpu", dtype=torch.bfloat16), torch.no_grad():
        want = model(**inputs).logits
        with sft.lora_inputs_cast_once(model), sft.lora_scaled_on_rank(model):
            got = model(**inputs).logits
    assert got.dtype == want.dtype
    torch.testing.assert_close(got.float(), want.float(), rtol=0.02, atol=0.02)

    # A layer whose forward is already replaced (accelerate's hooks) is left as it is.
    own = lora_layers[0].forward
    lora_layers[0].forward = own
    with sft.lora_scaled_on_rank(model) as changed:
        assert changed == len(lora_layers) - 1 and lora_layers[0].__dict__["forward"] is own
    assert lora_layers[0].__dict__.pop("forward") is own


def test_lora_scaling_on_the_rank_leaves_other_cases_to_peft(tiny_model):
    """Catches: disabled adapters still adding LoRA, or a LoRA variant (DoRA) or a bias on B
    (scaled with the output) computed by the plain formula."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    inputs = {"input_ids": torch.tensor([[1, 5, 9, 3, 7, 2]])}
    _, model, _ = lora_tiny(tiny_model)
    with torch.no_grad():
        with model.disable_adapter():
            base_out = model(**inputs).logits
        with sft.lora_scaled_on_rank(model), model.disable_adapter():
            off = model(**inputs).logits
    assert torch.equal(off, base_out)
    for extra in ({"use_dora": True}, {"lora_bias": True}):
        torch.manual_seed(0)
        other = get_peft_model(AutoModelForCausalLM.from_pretrained(tiny_model, dtype=torch.float32),
                               LoraConfig(r=4, target_modules="all-linear", task_type="CAUSAL_LM", **extra))
        for name, param in other.named_parameters():
            if "lora_B" in name:
                torch.nn.init.normal_(param, std=0.1)
        with torch.no_grad():
            peft_out = other(**inputs).logits
            with sft.lora_scaled_on_rank(other):
                ours = other(**inputs).logits
        assert torch.equal(ours, peft_out), extra


def test_training_runs_scale_lora_on_the_rank_and_put_the_layers_back(tiny_model, tmp_path, monkeypatch):
    """Catches: a LoRA run that does not use the rank-side scaling, losses that move, or layers
    left with the replaced forward (also after a failed run)."""
    config = {"max_steps": 3, "learning_rate": 1e-2}
    monkeypatch.setattr(sft, "SCALE_ON_RANK", False)
    peft_runs = train(tiny_model, tmp_path, name="peft", config=config)
    monkeypatch.setattr(sft, "SCALE_ON_RANK", True)
    layers: list = []
    real = sft.lora_scaled_on_rank

    @contextlib.contextmanager
    def spy(model):
        with real(model) as n:
            layers.extend(m for m in model.modules() if hasattr(m, "lora_A") and "forward" in m.__dict__)
            yield n

    monkeypatch.setattr(sft, "lora_scaled_on_rank", spy)
    ours = train(tiny_model, tmp_path, name="ours", config=config)
    assert layers
    for (_, a), (_, b) in zip(peft_runs.losses, ours.losses, strict=True):
        assert b == pytest.approx(a, rel=1e-4)
    assert all("forward" not in m.__dict__ for m in layers)
    count = len(layers)
    fail_a_run(tiny_model, tmp_path)
    assert len(layers) > count and all("forward" not in m.__dict__ for m in layers)
