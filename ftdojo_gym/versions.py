"""Versions recorded with every result: the package, the task and the libraries that shape a score."""

from __future__ import annotations

import platform
from functools import lru_cache
from importlib import metadata

_LIBRARIES = ("ftdojo-gym", "gymnasium", "torch", "transformers", "peft", "trl", "datasets", "tokenizers", "numpy")


@lru_cache(maxsize=1)
def library_versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for name in _LIBRARIES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = "not installed"
    return out


def collect(**extra: str) -> dict[str, str]:
    """Library versions plus the given fields (e.g. ``task="TableBench@1"``)."""
    return {**library_versions(), **extra}
