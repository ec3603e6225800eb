"""The model process: a persistent child that trains and generates, speaking JSON lines.

Run as ``python -m ftdojo_gym.model_process.worker``
(:class:`ftdojo_gym.model_process.client.ModelWorker` starts it). torch,
transformers, trl and peft are imported once, at start-up, so that a debug run
does not pay seconds of imports; a crash, an OOM kill or a hang in here cannot
take the environment process down.

It reads one request per line on stdin and answers on stdout, as
:mod:`ftdojo_gym.model_process.protocol` specifies: ``ping`` (its pid),
``train`` (:func:`ftdojo_gym.model_process.sft.run_sft`, streaming ``log``
events), ``generate`` (:func:`ftdojo_gym.model_process.generation.generate`,
streaming ``progress`` events) and ``exit``. Every request gets exactly one
``result``: an exception inside an op, or a request it cannot read, becomes a
result with ``status: "error"`` and an error class (CONFIG, OOM, DATA or ENV).
The real stdout is kept for the protocol; everything libraries print goes to
stderr. Prompts and outputs are never written to a file or to stderr.
"""

from __future__ import annotations

import dataclasses
import gc
import logging
import os
import sys
import threading
import time
import traceback
import warnings
from collections.abc import Callable
from typing import IO, Any

from ftdojo_gym.errors import ConfigError, DataError, ErrorClass
from ftdojo_gym.model_process.protocol import (
    HEARTBEAT_INTERVAL_S,
    REQUEST_TYPES,
    Event,
    GenerateRequest,
    GenerateResult,
    HeartbeatEvent,
    PingRequest,
    PingResult,
    ProgressEvent,
    ProtocolError,
    ReplyLine,
    Request,
    RequestLine,
    Result,
    TrainRequest,
    TrainResult,
)
from ftdojo_gym.model_process.resident import RESIDENT
from ftdojo_gym.model_process.sft import TrainProgress, run_sft
from ftdojo_gym.models import ModelNotFoundError, resolve_model

TRACEBACK_CHARS = 4000
MAX_WARNINGS = 10
WARNING_CHARS = 300
LOSS_POINTS = 5
#: Environment variable carrying the worker's thread count (see ``ModelWorker(threads=...)``).
THREADS_ENV = "FTDOJO_WORKER_THREADS"

Send = Callable[[Event], None]


def classify_exception(exc: BaseException) -> ErrorClass:
    """Map an exception to the paper's error classes: CONFIG, OOM, DATA or ENV."""
    if isinstance(exc, DataError):
        return ErrorClass.DATA
    if isinstance(exc, (ConfigError, ModelNotFoundError)):
        return ErrorClass.CONFIG
    if isinstance(exc, MemoryError):
        return ErrorClass.OOM
    torch = sys.modules.get("torch")
    if torch is not None and isinstance(exc, getattr(torch, "OutOfMemoryError", ())):
        return ErrorClass.OOM
    text = str(exc).lower()
    if isinstance(exc, RuntimeError) and any(s in text for s in (
            "out of memory", "can't allocate memory", "not enough memory", "cannot allocate memory")):
        return ErrorClass.OOM
    return ErrorClass.ENV


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


def handle_train(request: TrainRequest, send: Send) -> TrainResult:
    """Run one SFT request; always returns a result (never raises)."""
    t0 = time.monotonic()
    progress = TrainProgress()
    capture = WarningCapture()
    failure: dict[str, Any] | None = None
    RESIDENT.restore()  # train on the base weights, not on a merged evaluation adapter
    try:
        with capture:
            run_sft(dataclasses.replace(request, base_model=_resolve(request.base_model)), send, progress)
    except BaseException as exc:  # noqa: BLE001 - every failure becomes a result
        if isinstance(exc, KeyboardInterrupt):
            raise
        failure = error_fields(exc)
    losses = progress.losses
    head = losses[:LOSS_POINTS]
    tail = losses[max(LOSS_POINTS, len(losses) - LOSS_POINTS):]
    outcome: dict[str, Any] = failure or {"status": "stopped_budget" if progress.stopped_budget else "ok"}
    return TrainResult(
        **outcome, steps=progress.steps, samples=progress.samples, train_tokens=progress.train_tokens,
        seconds=round(time.monotonic() - t0, 3), train_seconds=round(progress.train_seconds, 3),
        loss_head=[list(p) for p in head], loss_tail=[list(p) for p in tail],
        final_loss=losses[-1][1] if losses else None,
        model_dir=progress.model_dir if failure is None else None,
        warnings=capture.result(progress.warnings), peak_rss_gb=peak_rss_gb())


def handle_generate(request: GenerateRequest, send: Send) -> GenerateResult:
    """Run one generation request; always returns a result (never raises)."""
    t0 = time.monotonic()
    try:
        request.check()
        from ftdojo_gym.model_process.generation import generate

        stats: dict[str, float] = {}
        outputs = generate(_resolve(request.model), request.adapter, request.prompts,
                           request.max_new_tokens, batch_size=request.batch_size,
                           on_progress=lambda done, total: send(ProgressEvent(done=done, total=total)),
                           stats=stats, precision=request.precision)
        return GenerateResult(status="ok", outputs=outputs, seconds=round(time.monotonic() - t0, 3),
                              peak_rss_gb=peak_rss_gb(),
                              stats={k: round(float(v), 4) for k, v in stats.items()})
    except BaseException as exc:  # noqa: BLE001 - every failure becomes a result
        if isinstance(exc, KeyboardInterrupt):
            raise
        return GenerateResult(**error_fields(exc), seconds=round(time.monotonic() - t0, 3),
                              peak_rss_gb=peak_rss_gb())


def _resolve(name: str) -> str:
    """A model name ("smollm2-135m", "tiny"), folder or hub id as something from_pretrained loads."""
    return str(resolve_model(name))


def answer(request: Request, send: Send) -> Result:
    """Run one request; always returns its result (never raises)."""
    if isinstance(request, TrainRequest):
        return handle_train(request, send)
    if isinstance(request, GenerateRequest):
        return handle_generate(request, send)
    return PingResult(status="ok", pid=os.getpid())  # ping, and exit before it exits


def peak_rss_gb() -> float:
    """This process's peak resident memory so far, in GB (``ru_maxrss``: KiB on Linux, bytes on macOS)."""
    import resource

    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return round(peak / (1024**3 if sys.platform == "darwin" else 1024**2), 3)


def configure_threads() -> int | None:
    """Apply ``FTDOJO_WORKER_THREADS`` (set by the client from its ``threads`` option) to torch.

    The client also sets ``OMP_NUM_THREADS``/``MKL_NUM_THREADS`` to the same
    number before the child starts, so the OpenMP pool is that size from the
    beginning; this call covers torch's own pool. Returns the count applied.
    """
    raw = os.environ.get(THREADS_ENV, "").strip()
    if not raw:
        return None
    try:
        n = int(raw)
    except ValueError:
        return None
    if n < 1:
        return None
    import torch

    torch.set_num_threads(n)
    return n


def read_request(line: str) -> RequestLine | ReplyLine:
    """The request on ``line``, or the ENV error result that answers an unreadable one."""
    try:
        return RequestLine.decode(line)
    except ProtocolError as exc:
        op = exc.op or PingRequest.OP  # an unknown op gets the plainest result type
        failure = REQUEST_TYPES[op].RESULT.failure(ErrorClass.ENV, f"bad request line: {exc}")
        return ReplyLine(exc.request_id, op, failure)


class Heartbeat:
    """Sends a :class:`HeartbeatEvent` every ``interval`` seconds while the child is busy.

    The beats come from their own thread, so they stop when the whole process
    stops (SIGSTOP, a deadlock holding the GIL, a hung C call): the client then
    sees silence and kills the child. ``write`` is shared with the op's own
    replies under one lock, so lines never interleave.
    """

    def __init__(self, proto: IO[str], interval: float = HEARTBEAT_INTERVAL_S) -> None:
        self._proto = proto
        self._lock = threading.Lock()
        self._interval = interval
        self._work: tuple[int | None, str] | None = (None, PingRequest.OP)  # busy starting up
        self._since = time.monotonic()
        threading.Thread(target=self._beat, name="heartbeat", daemon=True).start()

    def write(self, reply: ReplyLine) -> None:
        with self._lock:
            self._proto.write(reply.encode())
            self._proto.flush()

    def busy(self, request_id: int | None, op: str) -> None:
        self._work, self._since = (request_id, op), time.monotonic()

    def idle(self) -> None:
        self._work = None

    def _beat(self) -> None:
        while True:
            time.sleep(self._interval)
            work = self._work
            if work is not None:
                try:
                    self.write(ReplyLine(work[0], work[1], HeartbeatEvent(round(time.monotonic() - self._since, 1))))
                except (OSError, ValueError):  # the parent closed the pipe: the main loop ends too
                    return


def serve(stdin: IO[str], proto: IO[str], heartbeat: Heartbeat | None = None) -> None:
    """Answer requests from ``stdin`` on ``proto`` until EOF or an ``exit`` request."""
    heartbeat = heartbeat or Heartbeat(proto)
    write = heartbeat.write

    while True:
        heartbeat.idle()
        line = stdin.readline()
        if not line:
            return
        if not line.strip():
            continue
        heartbeat.busy(None, PingRequest.OP)
        parsed = read_request(line)
        if isinstance(parsed, ReplyLine):
            write(parsed)
            continue
        request_id, request = parsed.id, parsed.request
        op = request.OP
        heartbeat.busy(request_id, op)

        def send(event: Event, _id: int = request_id, _op: str = op) -> None:
            write(ReplyLine(_id, _op, event))

        write(ReplyLine(request_id, op, answer(request, send)))
        if op == "exit":
            return
        gc.collect()  # give the last run's model back before the next op
        _trim_heap()


def _trim_heap() -> None:
    """Return freed heap pages to the OS (glibc ``malloc_trim``): the resident memory after a
    run drops back towards the held base model instead of staying at the run's peak."""
    if sys.platform.startswith("linux"):
        try:
            import ctypes

            ctypes.CDLL("libc.so.6").malloc_trim(0)
        except (OSError, AttributeError):
            pass


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
    heartbeat = Heartbeat(proto)  # beats during the imports below, too
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    # Pay the heavy imports once, now, not in the first (possibly debug) run.
    import peft  # noqa: F401
    import torch  # noqa: F401
    import transformers  # noqa: F401
    import trl  # noqa: F401

    configure_threads()
    transformers.utils.logging.disable_progress_bar()
    serve(sys.stdin, proto, heartbeat)


if __name__ == "__main__":
    main()
