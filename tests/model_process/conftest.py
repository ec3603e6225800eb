"""Fixtures of the model-process tests."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def sharp_tiny_model(tmp_path_factory, tiny_model) -> str:
    """The tiny model with its matrices redrawn large (std 0.5, seeded).

    The tiny model's own small random weights make greedy outputs that barely depend on
    positions, on the attention mask of padding or on the KV cache, so decoding bugs there
    often give the same tokens. With large weights every input position moves the logits far
    apart: a wrong position id, a dropped mask or a misaligned cache changes the tokens."""
    torch = pytest.importorskip("torch")
    from transformers import AutoModelForCausalLM, AutoTokenizer

    out = tmp_path_factory.mktemp("sharp-tiny")
    model = AutoModelForCausalLM.from_pretrained(tiny_model, dtype=torch.float32)
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for p in model.parameters():
            if p.dim() >= 2:
                p.copy_(torch.randn(p.shape, generator=gen) * 0.5)
    model.save_pretrained(out)
    AutoTokenizer.from_pretrained(tiny_model).save_pretrained(out)
    return str(out)


@pytest.fixture(autouse=True)
def auto_precision_is_fp32(monkeypatch):
    """``precision="auto"`` means fp32 in these tests, whatever the CPU: they check decoding
    against fp32 references, and must give the same result on a machine with fast bf16 and on
    one without. The bf16 path is tested by asking for ``precision="bf16"``."""
    from ftdojo_gym.model_process import resident

    monkeypatch.setattr(resident, "cpu_has_fast_bf16", lambda: False)
    monkeypatch.setattr(resident, "_gpu_visible", lambda: False)
