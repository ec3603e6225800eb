"""Shared fixtures. Unit tests use the tiny random Llama; `slow` tests use SmolLM2-135M."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from ftdojo_gym.models import load_token_counter, resolve_model


@pytest.fixture(autouse=True)
def no_shared_outcome_cache(monkeypatch):
    """Tests train for real unless they pass their own ``outcome_cache=``: a run replayed from a
    cache shared between tests could hide the behaviour a test checks."""
    monkeypatch.setenv("FTDOJO_OUTCOME_CACHE", "0")


@pytest.fixture(scope="session")
def tiny_model() -> str:
    return str(resolve_model("tiny"))


@pytest.fixture(scope="session")
def smollm2_model() -> str:
    return str(resolve_model("smollm2-135m"))


@pytest.fixture(scope="session")
def token_counter(tiny_model):
    return load_token_counter(tiny_model)


@pytest.fixture
def isolated_cache(tmp_path, monkeypatch) -> Path:
    """A private FTDOJO_CACHE for tests that write base-model scores (models stay shared)."""
    shared = resolve_model("tiny")  # build before switching the cache
    cache = tmp_path / "cache"
    (cache / "models").mkdir(parents=True)
    for name in ("tiny", "smollm2-135m"):
        src = Path(os.environ.get("FTDOJO_CACHE", "")) / "models" / name if os.environ.get("FTDOJO_CACHE") else shared.parent / name
        if src.exists():
            (cache / "models" / name).symlink_to(src)
    monkeypatch.setenv("FTDOJO_CACHE", str(cache))
    return cache
