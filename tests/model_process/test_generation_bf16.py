"""Generation in bf16: the resident fp32 model runs as the bf16 model, and gives it back intact."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

from ftdojo_gym.errors import ConfigError  # noqa: E402
from ftdojo_gym.model_process import generation, resident  # noqa: E402
from ftdojo_gym.model_process.protocol import GenerateRequest  # noqa: E402
from ftdojo_gym.model_process.resident import RESIDENT, resolve_precision, swap_weights  # noqa: E402

from .reference import one_by_one  # noqa: E402

PROMPTS = ["Hi", "What is the capital of France?", "Read the table.\n| a | b |\n| 1 | 2 |\nWhat is b?",
           "Count to five."]


@pytest.fixture(autouse=True)
def fresh_cache():
    generation.clear_cache()
    yield
    generation.clear_cache()


def bf16_model(path: str, adapter: str | None = None):
    """The reference bf16 model: loaded in fp32, the adapter merged by peft, then its parameters
    cast (not its buffers: ``from_pretrained(dtype=bfloat16)`` keeps RoPE's ``inv_freq`` in fp32,
    where ``model.to(bfloat16)`` would round it)."""
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32)
    if adapter is not None:
        from peft import PeftModel

        model = PeftModel.from_pretrained(model, adapter).merge_and_unload()
    with torch.no_grad():
        for p in model.parameters():
            p.data = p.data.to(torch.bfloat16)
    return model.eval()


def lora_adapter(path: str, out) -> str:
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(0)
    base = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32)
    peft_model = get_peft_model(base, LoraConfig(r=8, lora_alpha=64, target_modules="all-linear",
                                                 init_lora_weights=False, task_type="CAUSAL_LM"))
    peft_model.save_pretrained(out)
    return str(out)


@pytest.mark.parametrize("adapter", [False, True], ids=["base", "lora"])
def test_bf16_generation_is_the_bf16_models_one_by_one_output(sharp_tiny_model, tmp_path, adapter):
    """Catches: weights left in fp32 (fp32 outputs), the adapter's delta added after the cast
    or not at all, the tokenizer or limits mixed up on the bf16 path."""
    path = lora_adapter(sharp_tiny_model, tmp_path / "adapter") if adapter else None
    stats: dict[str, float] = {}
    got = generation.generate(sharp_tiny_model, path, PROMPTS, 6, batch_size=1, stats=stats, precision="bf16")
    _, tok = generation.load_for_generation(sharp_tiny_model)
    assert got == one_by_one(bf16_model(sharp_tiny_model, path), tok, PROMPTS, [6] * len(PROMPTS))
    assert stats["bf16"] == 1.0
    fp32 = generation.generate(sharp_tiny_model, path, PROMPTS, 6, batch_size=1, precision="fp32")
    assert fp32 != got, "the sharp model's bf16 and fp32 outputs should differ somewhere"


def test_bf16_generation_gives_the_fp32_weights_back(sharp_tiny_model):
    """Catches: bf16 copies written into the resident model's own Parameters (training and fp32
    evaluations after it would run on rounded weights), tied weights untied."""
    model, tok = RESIDENT.base(sharp_tiny_model)
    loads = RESIDENT.loads
    before = {n: (p, p.detach().clone()) for n, p in model.named_parameters()}
    reference = generation.generate(sharp_tiny_model, None, PROMPTS, 6, batch_size=2, precision="fp32")
    half, _ = generation.load_for_generation(sharp_tiny_model, None, "bf16")
    assert half is model and all(p.dtype == torch.bfloat16 for p in half.parameters())
    if model.config.tie_word_embeddings:
        assert half.get_output_embeddings().weight is half.get_input_embeddings().weight
    generation.generate(sharp_tiny_model, None, PROMPTS, 6, batch_size=2, precision="bf16")
    base, _ = RESIDENT.base(sharp_tiny_model)
    assert base is model and RESIDENT.loads == loads
    for name, p in base.named_parameters():
        original, values = before[name]
        assert p is original and p.dtype == torch.float32 and torch.equal(p, values)
    assert generation.generate(sharp_tiny_model, None, PROMPTS, 6, batch_size=2, precision="fp32") == reference


def test_swapped_weights_keep_requires_grad_and_ties(tiny_model):
    """Catches: copies made with requires_grad=False (torch's matmul then expands the LM head's
    weight per row of a sliced batch: half the prefill time on SmolLM2) and untied copies."""
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(tiny_model, dtype=torch.float32)
    grads = {n: p.requires_grad for n, p in model.named_parameters()}
    swapped = swap_weights(model, [], bf16=True, linears_only=False)
    assert len(swapped) >= len(grads)
    assert all(p.dtype == torch.bfloat16 and p.requires_grad == grads[n] for n, p in model.named_parameters())
    if model.config.tie_word_embeddings:
        assert model.get_output_embeddings().weight is model.get_input_embeddings().weight
    resident.put_back(swapped)
    assert all(p.dtype == torch.float32 for p in model.parameters())


def test_auto_precision_follows_the_hardware(monkeypatch):
    """Catches: auto fixed to one value, an unknown precision accepted."""
    monkeypatch.setattr(resident, "cpu_has_fast_bf16", lambda: True)
    assert resolve_precision("auto") == "bf16"
    monkeypatch.setattr(resident, "cpu_has_fast_bf16", lambda: False)
    assert resolve_precision("auto") == "fp32"
    monkeypatch.setattr(resident, "_gpu_visible", lambda: True)
    assert resolve_precision("auto") == "bf16"
    assert resolve_precision("fp32") == "fp32" and resolve_precision("bf16") == "bf16"
    for bad in ("fp16", "", "BF16", None):
        with pytest.raises(ValueError, match="precision must be one of"):
            resolve_precision(bad)  # type: ignore[arg-type]


@pytest.mark.parametrize("bad", ["fp16", "", 16, None])
def test_a_request_with_an_unknown_precision_is_a_config_error(bad):
    with pytest.raises(ConfigError, match="precision"):
        GenerateRequest(model="m", adapter=None, prompts=["a"], max_new_tokens=2, precision=bad).check()
