"""The worker's resident base model: loaded once, lent to LoRA runs and evaluations, never dirtied.

These run the training and generation code in this process (as the worker does),
on the tiny model, and compare against a freshly loaded model.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")

from ftdojo_gym.model_process import generation, sft  # noqa: E402
from ftdojo_gym.model_process.protocol import TrainRequest  # noqa: E402
from ftdojo_gym.model_process.resident import RESIDENT  # noqa: E402

PROMPTS = ["What is 3 plus 4?", "Read the table.\n| a | b |\n| 1 | 2 |\nWhat is b?", "Hi", "x " * 30]


def rows(n: int) -> list[dict]:
    return [{"prompt": f"What is {i} plus {i % 7}?" + " Think." * (i % 5),
             "completion": f"Final Answer: {i + i % 7}" + " ok" * (i % 3)} for i in range(n)]


@pytest.fixture
def data(tmp_path) -> Path:
    path = tmp_path / "train.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows(24)))
    return path


@pytest.fixture(autouse=True)
def fresh_resident():
    RESIDENT.clear()
    RESIDENT.loads = 0
    yield
    RESIDENT.clear()


def train(tiny: str, data: Path, out: Path, seed: int, lr: float = 5e-2, steps: int = 3) -> sft.TrainProgress:
    config = {"method": "lora", "batch_size": 4, "max_steps": steps, "learning_rate": lr, "max_len": 128,
              "lr_scheduler": "constant", "seed": seed}
    req = TrainRequest(base_model=tiny, data_path=str(data), output_dir=str(out), config=config)
    return sft.run_sft(req, lambda event: None)


def base_state(model) -> dict:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def assert_same_weights(model, reference: dict) -> None:
    state = model.state_dict()
    assert sorted(state) == sorted(reference), "modules were added to or removed from the base model"
    for k, v in reference.items():
        assert torch.equal(state[k], v), f"base weight {k} changed"


def test_a_second_lora_run_starts_from_clean_base_weights_without_reloading(tiny_model, data, tmp_path):
    """Catches: the first run's adapter left in the base model (merged or still attached), or
    the base model reloaded for every run. Run B after run A (and an evaluation of A) in one
    process must give exactly the losses of run B in a fresh process."""
    model, _ = RESIDENT.base(tiny_model)
    reference = base_state(model)
    train(tiny_model, data, tmp_path / "a", seed=1)
    from safetensors.torch import load_file

    trained = load_file(tmp_path / "a" / "adapter_model.safetensors")
    assert any(k.endswith("lora_B.weight") and v.abs().max() > 1e-3 for k, v in trained.items())  # a leak would show
    assert RESIDENT.loads == 1 and RESIDENT.model is model
    assert_same_weights(model, reference)
    assert not any("lora" in name for name, _ in model.named_modules())
    assert model.config.use_cache is True
    generation.generate(tiny_model, str(tmp_path / "a"), PROMPTS, 4)  # A merged for an evaluation
    b_after_a = train(tiny_model, data, tmp_path / "b1", seed=2)
    assert RESIDENT.loads == 1, "the base model was reloaded between runs of one episode"
    assert_same_weights(model, reference)

    RESIDENT.clear()
    b_fresh = train(tiny_model, data, tmp_path / "b2", seed=2)
    assert RESIDENT.loads == 2
    assert [loss for _, loss in b_after_a.losses] == [loss for _, loss in b_fresh.losses]


def test_evaluating_an_adapter_merges_it_and_leaves_the_base_clean(tiny_model, data, tmp_path):
    """Catches: an adapter merged into the base weights in place (the base's outputs would change
    after an evaluation), a merge that differs from peft's ``merge_and_unload``, and a reload per call."""
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    train(tiny_model, data, tmp_path / "a", seed=1)
    probe = torch.tensor([[1, 2, 3, 4, 5, 6, 7, 8]])

    def base_logits():
        with torch.no_grad():
            return generation.load_for_generation(tiny_model)[0](probe).logits

    logits_before = base_logits()
    base_before = generation.generate(tiny_model, None, PROMPTS, 8)
    tuned = generation.generate(tiny_model, str(tmp_path / "a"), PROMPTS, 8)
    tuned_again = generation.generate(tiny_model, str(tmp_path / "a"), PROMPTS, 8)
    base_after = generation.generate(tiny_model, None, PROMPTS, 8)
    assert base_after == base_before
    assert torch.equal(base_logits(), logits_before)
    assert tuned_again == tuned
    assert RESIDENT.loads == 1

    # Reference: peft's own merge on a fresh copy, decoded by the same loop.
    fresh = AutoModelForCausalLM.from_pretrained(tiny_model, dtype=torch.float32)
    merged = PeftModel.from_pretrained(fresh, str(tmp_path / "a")).merge_and_unload().eval()
    ours, tok = generation.load_for_generation(tiny_model, str(tmp_path / "a"))
    for (name, p), (_, q) in zip(ours.state_dict().items(), merged.state_dict().items(), strict=True):
        assert torch.equal(p, q), name
    with torch.no_grad():
        assert not torch.allclose(ours(probe).logits, logits_before), "the adapter changed nothing"


def test_the_base_model_requires_grad_again_after_a_run_and_a_merge(tiny_model, data, tmp_path):
    """Catches: the base parameters left frozen by peft after a training run or an adapter merge.
    A frozen weight makes torch's matmul expand the LM head once per prompt in the prefill
    (a 49k x 576 copy per row for SmolLM2: +1.1 GB at 32 prompts in bf16, measured)."""
    model, _ = RESIDENT.base(tiny_model)
    assert all(p.requires_grad for p in model.parameters())
    train(tiny_model, data, tmp_path / "a", seed=1)
    assert all(p.requires_grad for p in model.parameters()), "a training run left the base frozen"
    for precision in ("fp32", "bf16"):
        ours, _ = generation.load_for_generation(tiny_model, str(tmp_path / "a"), precision=precision)
        assert ours is model
        assert all(p.requires_grad for p in ours.parameters()), f"a merge ({precision}) left weights frozen"


def test_a_failed_lora_setup_does_not_leave_layers_in_the_base(tiny_model, data, tmp_path, monkeypatch):
    """Catches: peft layers injected before an error staying in the held model."""
    from ftdojo_gym.errors import ConfigError

    model, _ = RESIDENT.base(tiny_model)
    reference = base_state(model)
    real_wrap = sft._wrap_lora

    def wrap_then_fail(m, cfg):
        real_wrap(m, cfg)  # layers injected into m, then the set-up fails
        raise ConfigError("LoRA set-up failed: half-way")

    monkeypatch.setattr(sft, "_wrap_lora", wrap_then_fail)
    with pytest.raises(ConfigError):
        train(tiny_model, data, tmp_path / "x", seed=1)
    monkeypatch.setattr(sft, "_wrap_lora", real_wrap)
    held, _ = RESIDENT.base(tiny_model)
    assert not any("lora" in name for name, _ in held.named_modules())
    assert_same_weights(held, reference)


@pytest.mark.parametrize("mode", ["model", "trl"])
def test_completion_only_head_gives_the_same_losses_as_the_full_head(tiny_model, data, tmp_path, monkeypatch, mode):
    """Catches: the completion-only LM head (the speed-up) computing another loss than the
    model's own / trl's (shifted targets, prompt positions counted, another reduction)."""
    monkeypatch.setattr(sft, "LOSS_MODE", "completion")
    fast = train(tiny_model, data, tmp_path / "fast", seed=3, lr=1e-2, steps=4)
    monkeypatch.setattr(sft, "LOSS_MODE", mode)
    slow = train(tiny_model, data, tmp_path / "slow", seed=3, lr=1e-2, steps=4)
    assert [s for s, _ in fast.losses] == [s for s, _ in slow.losses] == [1, 2, 3, 4]
    for (_, a), (_, b) in zip(fast.losses, slow.losses, strict=True):
        assert a == pytest.approx(b, rel=2e-2)
    assert fast.train_tokens == slow.train_tokens
