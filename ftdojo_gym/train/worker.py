"""The training/generation worker: a persistent child process speaking JSON lines.

Run as ``python -m ftdojo_gym.train.worker`` (``ftdojo_gym.train.client``
starts it). torch, transformers, trl and peft are imported once, at start-up, so
that a debug run does not pay seconds of imports; a crash, an OOM kill or a hang
in here cannot take the environment process down.

Protocol: one JSON request per line on stdin, one JSON event per line on
stdout. Every event echoes the request's ``id`` (if any) and ``op``.

* ``{"op": "ping"}`` -> ``{"event": "result", "status": "ok", "pid": ...}``
* ``{"op": "train", <TrainRequest fields>}`` -> ``log`` events
  (``step``, ``loss``, ``learning_rate``, ``tokens``), then one ``result``
  (``status`` ok / stopped_budget / error, ``error_class``, ``error``,
  ``traceback``, ``steps``, ``train_tokens``, ``seconds``, ``train_seconds``,
  ``loss_head``, ``loss_tail``, ``final_loss``, ``model_dir``, ``warnings``).
* ``{"op": "generate", "model", "adapter", "prompts", "max_new_tokens",
  "batch_size"}`` -> ``progress`` events (``done``, ``total``), then a
  ``result`` with ``outputs`` and ``seconds``.

An exception inside an op becomes a ``result`` with ``status: "error"`` and an
``error_class``: CONFIG, OOM, DATA or ENV. The real stdout is kept for the
protocol; everything libraries print goes to stderr. Prompts and outputs are
never written to a file or to stderr.
"""

from __future__ import annotations

import gc
import json
import logging
import os
import sys
import threading
import time
import traceback
import warnings
from collections.abc import Callable
from typing import IO, Any

from ftdojo_gym.eval.generation import clear_cache as clear_generation_cache
from ftdojo_gym.models import ModelNotFoundError, resolve_model
from ftdojo_gym.train.sft import ConfigError, DataError, TrainProgress, run_sft

TRACEBACK_CHARS = 4000
MAX_WARNINGS = 10
WARNING_CHARS = 300
LOSS_POINTS = 5

Send = Callable[[dict[str, Any]], None]


def classify_exception(exc: BaseException) -> str:
    """Map an exception to the paper's error classes: CONFIG, OOM, DATA or ENV."""
    if isinstance(exc, DataError):
        return "DATA"
    if isinstance(exc, (ConfigError, ModelNotFoundError)):
        return "CONFIG"
    if isinstance(exc, MemoryError):
        return "OOM"
    torch = sys.modules.get("torch")
    if torch is not None and isinstance(exc, getattr(torch, "OutOfMemoryError", ())):
        return "OOM"
    text = str(exc).lower()
    if isinstance(exc, RuntimeError) and any(s in text for s in (
            "out of memory", "can't allocate memory", "not enough memory", "cannot allocate memory")):
        return "OOM"
    return "ENV"


def cut_text(text: str, limit: int) -> str:
    """``text`` within ``limit`` characters, keeping its head and (the most telling) tail."""
    if len(text) <= limit:
        return text
    marker = "\n... [cut] ...\n"
    head = limit // 4
    return text[:head] + marker + text[-(limit - head - len(marker)):]


def error_fields(exc: BaseException) -> dict[str, Any]:
    """The error part of a result: class, one-line message, bounded traceback."""
    message = f"{type(exc).__name__}: {exc}".strip()
    tb = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
    return {"status": "error", "error_class": classify_exception(exc),
            "error": cut_text(message, 1000), "traceback": cut_text(tb, TRACEBACK_CHARS)}


class WarningCapture:
    """Collects Python warnings and logging warnings raised during one op.

    Deprecation notices from inside the libraries are left out: they say nothing
    about the agent's run. Each message is cut; at most :data:`MAX_WARNINGS`
    distinct messages are kept.
    """

    def __init__(self) -> None:
        self.messages: list[str] = []
        self.dropped = 0
        self._catch = warnings.catch_warnings(record=True)
        self._handler = _ListHandler(self._add)
        self._loggers = [logging.getLogger(n) for n in ("", "transformers", "datasets", "peft", "trl")]

    def _add(self, text: str) -> None:
        text = cut_text(" ".join(text.split()), WARNING_CHARS)
        if text in self.messages:
            return
        if len(self.messages) < MAX_WARNINGS:
            self.messages.append(text)
        else:
            self.dropped += 1

    def __enter__(self) -> WarningCapture:
        self._records = self._catch.__enter__()
        warnings.simplefilter("always")
        for category in (DeprecationWarning, FutureWarning, PendingDeprecationWarning):
            warnings.simplefilter("ignore", category)
        for lg in self._loggers:
            lg.addHandler(self._handler)
        # transformers' warning_once is cached per process; a new run should see its warnings again.
        cached = getattr(logging.Logger, "warning_once", None)
        if hasattr(cached, "cache_clear"):
            cached.cache_clear()
        return self

    def __exit__(self, *exc_info: Any) -> None:
        for lg in self._loggers:
            lg.removeHandler(self._handler)
        self._catch.__exit__(*exc_info)
        for w in self._records:
            self._add(f"{w.category.__name__}: {w.message}")

    def result(self, first: list[str] | None = None) -> list[str]:
        """``first`` (our own notes) then the captured messages, bounded."""
        out = [cut_text(m, WARNING_CHARS) for m in (first or [])]
        out += [m for m in self.messages if m not in out]
        extra = self.dropped + max(0, len(out) - MAX_WARNINGS)
        out = out[:MAX_WARNINGS]
        if extra:
            out.append(f"(+{extra} more warnings)")
        return out


class _ListHandler(logging.Handler):
    def __init__(self, sink: Callable[[str], None]) -> None:
        super().__init__(level=logging.WARNING)
        self._sink = sink

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self._sink(f"{record.name}: {record.getMessage()}")
        except Exception:  # a broken log record must not break the op
            pass


def handle_train(req: dict[str, Any], send: Send) -> dict[str, Any]:
    """Run one SFT request; always returns a result dict (never raises)."""
    t0 = time.monotonic()
    progress = TrainProgress()
    capture = WarningCapture()
    fields: dict[str, Any] = {"status": "ok", "error_class": None, "error": "", "traceback": ""}
    clear_generation_cache()  # do not hold an evaluation model in memory while training
    try:
        with capture:
            request = dict(req)
            if "base_model" in request:
                request["base_model"] = _resolve(request["base_model"])
            run_sft(request, send, progress)
        if progress.stopped_budget:
            fields["status"] = "stopped_budget"
    except BaseException as exc:  # noqa: BLE001 - every failure becomes a result
        if isinstance(exc, KeyboardInterrupt):
            raise
        fields = error_fields(exc)
    losses = progress.losses
    head = losses[:LOSS_POINTS]
    tail = losses[max(LOSS_POINTS, len(losses) - LOSS_POINTS):]
    return {**fields, "steps": progress.steps, "samples": progress.samples,
            "train_tokens": progress.train_tokens,
            "seconds": round(time.monotonic() - t0, 3), "train_seconds": round(progress.train_seconds, 3),
            "loss_head": [list(p) for p in head], "loss_tail": [list(p) for p in tail],
            "final_loss": losses[-1][1] if losses else None,
            "model_dir": progress.model_dir if fields["status"] != "error" else None,
            "warnings": capture.result(progress.warnings)}


def handle_generate(req: dict[str, Any], send: Send) -> dict[str, Any]:
    """Run one generation request; always returns a result dict (never raises)."""
    t0 = time.monotonic()
    try:
        prompts = req.get("prompts")
        if not isinstance(prompts, list) or not all(isinstance(p, str) for p in prompts):
            raise DataError("'prompts' must be a list of strings")
        max_new = req.get("max_new_tokens", 256)
        if isinstance(max_new, list):
            if len(max_new) != len(prompts) or not all(isinstance(m, int) and m > 0 for m in max_new):
                raise ConfigError("'max_new_tokens' must be a positive int or one per prompt")
        elif not isinstance(max_new, int) or max_new < 1:
            raise ConfigError("'max_new_tokens' must be a positive int or one per prompt")
        batch_size = req.get("batch_size", 16)
        if not isinstance(batch_size, int) or batch_size < 1:
            raise ConfigError("'batch_size' must be a positive int")
        if "model" not in req:
            raise ConfigError("generate request lacks 'model'")
        from ftdojo_gym.eval.generation import generate

        outputs = generate(_resolve(req["model"]), req.get("adapter"), prompts, max_new,
                           batch_size=batch_size,
                           on_progress=lambda done, total: send(
                               {"event": "progress", "done": done, "total": total}))
        return {"status": "ok", "error_class": None, "error": "", "traceback": "",
                "outputs": outputs, "seconds": round(time.monotonic() - t0, 3)}
    except BaseException as exc:  # noqa: BLE001 - every failure becomes a result
        if isinstance(exc, KeyboardInterrupt):
            raise
        return {**error_fields(exc), "outputs": [], "seconds": round(time.monotonic() - t0, 3)}


def _resolve(name: str) -> str:
    """A model name ("smollm2-135m", "tiny"), folder or hub id as something from_pretrained loads."""
    return str(resolve_model(name))


def serve(stdin: IO[str], proto: IO[str]) -> None:
    """Answer requests from ``stdin`` on ``proto`` until EOF or ``{"op": "exit"}``."""

    def send_raw(event: dict[str, Any]) -> None:
        proto.write(json.dumps(event, ensure_ascii=False) + "\n")
        proto.flush()

    while True:
        line = stdin.readline()
        if not line:
            return
        if not line.strip():
            continue
        try:
            req = json.loads(line)
            if not isinstance(req, dict):
                raise ValueError("a request must be a JSON object")
        except ValueError as exc:
            send_raw({"event": "result", "status": "error", "error_class": "ENV",
                      "error": f"bad request line: {exc}", "traceback": ""})
            continue
        tag = {k: req[k] for k in ("id", "op") if k in req}

        def send(event: dict[str, Any], _tag: dict[str, Any] = tag) -> None:
            send_raw({**event, **_tag})

        op = req.get("op")
        if op == "exit":
            send({"event": "result", "status": "ok"})
            return
        if op == "ping":
            result: dict[str, Any] = {"status": "ok", "pid": os.getpid()}
        elif op == "train":
            result = handle_train(req, send)
        elif op == "generate":
            result = handle_generate(req, send)
        else:
            result = {"status": "error", "error_class": "ENV", "traceback": "",
                      "error": f"unknown op {op!r}; expected ping, train, generate or exit"}
        send({"event": "result", **result})
        gc.collect()  # give the last run's model back before the next op


def _exit_with_parent(interval: float = 2.0) -> None:
    """Exit when the parent (the env process) is gone, even in the middle of a run.

    Without this, a killed env would leave its worker training to the end of the run.
    """
    parent = os.getppid()

    def watch() -> None:
        while True:
            time.sleep(interval)
            if os.getppid() != parent:
                os._exit(3)

    threading.Thread(target=watch, name="parent-watch", daemon=True).start()


def main() -> None:
    """Process entry point: protect the protocol stream, pre-import, serve."""
    _exit_with_parent()
    proto = os.fdopen(os.dup(1), "w", encoding="utf-8", buffering=1)
    os.dup2(2, 1)  # C-level and Python prints land on stderr, never in the protocol
    sys.stdout = sys.stderr
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    # Pay the heavy imports once, now, not in the first (possibly debug) run.
    import peft  # noqa: F401
    import torch  # noqa: F401
    import transformers  # noqa: F401
    import trl  # noqa: F401

    transformers.utils.logging.disable_progress_bar()
    serve(sys.stdin, proto)


if __name__ == "__main__":
    main()
