"""The environment's handle on the training worker process.

:class:`TrainingWorker` starts ``python -m ftdojo_gym.train.worker`` on first
use and keeps it for later calls (torch is imported once), restarts it when it
died, and turns every failure into a result value:

* an exception inside the worker -> the worker's own error result
  (CONFIG / OOM / DATA / ENV);
* the worker killed by a signal mid-op -> ``error_class`` OOM for SIGKILL (what
  the kernel's OOM killer sends), ENV otherwise, with the tail of its stderr;
* no result within ``timeout`` seconds -> the worker is killed, ENV
  "timed out after N s".

This module does not import torch.
"""

from __future__ import annotations

import collections
import itertools
import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time
import weakref
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import IO, Any, Literal

from ftdojo_gym.train.sft import TrainRequest

EventFn = Callable[[dict[str, Any]], None]
ProgressFn = Callable[[int, int], None]

STDERR_TAIL_CHARS = 4000
#: The folder holding the ``ftdojo_gym`` package; the child needs it on its path.
_PACKAGE_PARENT = Path(__file__).resolve().parents[2]


@dataclass
class TrainResult:
    """Outcome of a training run, successful or not (errors are values here)."""

    status: Literal["ok", "error", "stopped_budget"]
    error_class: str | None = None
    error: str = ""
    traceback: str = ""
    steps: int = 0
    train_tokens: int = 0
    seconds: float = 0.0
    loss_head: list[list[float]] = field(default_factory=list)
    loss_tail: list[list[float]] = field(default_factory=list)
    final_loss: float | None = None
    model_dir: str | None = None
    warnings: list[str] = field(default_factory=list)
    #: seconds of the training loop alone (``seconds`` also counts model load and data prep)
    train_seconds: float = 0.0
    #: training samples used (after the sample cap and dropping unusable rows)
    samples: int = 0

    @property
    def ok(self) -> bool:
        """True when a model was trained and saved (also when the budget stopped it)."""
        return self.status in ("ok", "stopped_budget")


@dataclass
class GenerateResult:
    """Outputs of a generation request, in prompt order, or the error that prevented them."""

    status: Literal["ok", "error"]
    outputs: list[str] = field(default_factory=list)
    seconds: float = 0.0
    error_class: str | None = None
    error: str = ""
    traceback: str = ""


class _Failure(Exception):
    """The worker produced no result: it died, timed out, or could not start."""

    def __init__(self, error_class: str, error: str, traceback: str) -> None:
        super().__init__(error)
        self.error_class, self.error, self.traceback = error_class, error, traceback


def _die_with_parent() -> None:
    """Ask Linux to SIGKILL this process when its parent dies.

    A parent killed by a signal runs no finalizer; without this a worker in the
    middle of a training run would go on as an orphan, holding cores and memory.
    """
    if sys.platform.startswith("linux"):
        import ctypes
        import signal

        PR_SET_PDEATHSIG = 1
        try:
            ctypes.CDLL("libc.so.6", use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
        except OSError:
            pass


class _Process:
    """One running worker process with its reader threads."""

    def __init__(self, env: dict[str, str], memory_limit_gb: float | None) -> None:
        limit = int(memory_limit_gb * 1024**3) if memory_limit_gb is not None else None

        def preexec() -> None:  # runs in the child between fork and exec
            if limit is not None:
                import resource

                resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
            _die_with_parent()

        self.popen = subprocess.Popen(
            [sys.executable, "-m", "ftdojo_gym.train.worker"],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            env=env, text=True, encoding="utf-8", errors="replace",
            bufsize=1, preexec_fn=preexec,
            start_new_session=True,  # its own process group: a kill reaches its children too
        )
        self.events: queue.Queue[dict[str, Any] | None] = queue.Queue()
        self.stderr_tail: collections.deque[str] = collections.deque(maxlen=200)
        self._threads = [
            threading.Thread(target=self._read_stdout, args=(self.popen.stdout,), daemon=True),
            threading.Thread(target=self._read_stderr, args=(self.popen.stderr,), daemon=True),
        ]
        for t in self._threads:
            t.start()

    @property
    def pid(self) -> int:
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen.poll() is None

    def _read_stdout(self, stream: IO[str]) -> None:
        for line in stream:
            try:
                event = json.loads(line)
            except ValueError:
                self.stderr_tail.append(line)  # not protocol: keep it as diagnostics
                continue
            if isinstance(event, dict):
                self.events.put(event)
        self.events.put(None)  # EOF: the worker exited or died

    def _read_stderr(self, stream: IO[str]) -> None:
        for line in stream:
            self.stderr_tail.append(line)

    def stderr_text(self) -> str:
        text = "".join(self.stderr_tail)
        return text[-STDERR_TAIL_CHARS:]

    def send(self, payload: dict[str, Any]) -> None:
        assert self.popen.stdin is not None
        self.popen.stdin.write(json.dumps(payload, ensure_ascii=False) + "\n")
        self.popen.stdin.flush()

    def kill(self) -> None:
        """SIGKILL the worker's process group and reap it."""
        if self.popen.poll() is None:
            try:
                os.killpg(self.popen.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                self.popen.kill()
        self._reap(timeout=10)

    def shutdown(self) -> None:
        """Ask the worker to exit (close its stdin), kill it if it does not."""
        if self.popen.poll() is None:
            try:
                assert self.popen.stdin is not None
                self.popen.stdin.close()
            except OSError:
                pass
            try:
                self.popen.wait(timeout=5)
            except subprocess.TimeoutExpired:
                pass
        self.kill()

    def _reap(self, timeout: float) -> None:
        try:
            self.popen.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            pass
        for t in self._threads:
            t.join(timeout=2)
        for s in (self.popen.stdin, self.popen.stdout, self.popen.stderr):
            try:
                if s is not None:
                    s.close()
            except OSError:
                pass


def _death_failure(proc: _Process) -> _Failure:
    """Describe a worker that exited without answering."""
    try:
        code = proc.popen.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        code = proc.popen.returncode
    stderr = proc.stderr_text()
    if code is not None and code < 0:
        try:
            name = signal.Signals(-code).name
        except ValueError:
            name = f"signal {-code}"
        if code == -signal.SIGKILL:
            return _Failure("OOM", f"training worker was killed by {name} (most likely the kernel's "
                                   "out-of-memory killer): use fewer/shorter samples, a smaller "
                                   "batch_size or max_len", stderr)
        return _Failure("ENV", f"training worker died from {name}", stderr)
    return _Failure("ENV", f"training worker exited unexpectedly (exit code {code})", stderr)


class TrainingWorker:
    """A lazily started, auto-restarted worker process for training and generation.

    ``env_vars`` are added to the child's environment; ``memory_limit_gb`` caps
    its address space (``RLIMIT_AS``), so allocations beyond it fail inside the
    worker (reported as OOM). One op runs at a time; calls from several threads
    are serialised.
    """

    def __init__(self, env_vars: dict[str, str] | None = None, memory_limit_gb: float | None = None
                 ) -> None:
        self.env_vars = dict(env_vars or {})
        self.memory_limit_gb = memory_limit_gb
        self._proc: _Process | None = None
        self._lock = threading.Lock()
        self._ids = itertools.count(1)
        self._finalizer: weakref.finalize | None = None
        self.restarts = 0

    # -- process management -------------------------------------------------
    @property
    def pid(self) -> int | None:
        """The worker's pid, or None when it is not running."""
        return self._proc.pid if self._proc is not None and self._proc.alive() else None

    def _child_env(self) -> dict[str, str]:
        env = dict(os.environ)
        env.update(self.env_vars)
        # The child must import this very package, installed or not.
        env["PYTHONPATH"] = os.pathsep.join(p for p in (str(_PACKAGE_PARENT), env.get("PYTHONPATH")) if p)
        env.setdefault("TOKENIZERS_PARALLELISM", "false")
        env["PYTHONUNBUFFERED"] = "1"
        return env

    def _ensure_started(self) -> _Process:
        if self._proc is not None and self._proc.alive():
            return self._proc
        if self._proc is not None:  # it died since the last op
            self._proc.kill()
            self.restarts += 1
        self._proc = _Process(self._child_env(), self.memory_limit_gb)
        if self._finalizer is not None:
            self._finalizer.detach()
        # Reaps the child on garbage collection and at interpreter exit.
        self._finalizer = weakref.finalize(self, self._proc.shutdown)
        return self._proc

    def close(self) -> None:
        """Stop the worker (idempotent); the next call starts a new one."""
        with self._lock:
            if self._finalizer is not None:
                self._finalizer()  # runs _Process.shutdown once
                self._finalizer = None
            self._proc = None

    def __enter__(self) -> TrainingWorker:
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.close()

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:  # interpreter shutdown: the finalizer handles it
            pass

    # -- requests ------------------------------------------------------------
    def _call(self, payload: dict[str, Any], on_event: EventFn | None, timeout: float | None
              ) -> dict[str, Any]:
        """Send one request and wait for its result event; raises :class:`_Failure`."""
        with self._lock:
            try:
                proc = self._ensure_started()
            except OSError as exc:
                raise _Failure("ENV", f"could not start the training worker: {exc}", "") from None
            req_id = next(self._ids)
            try:
                proc.send({**payload, "id": req_id})
            except (BrokenPipeError, OSError):
                raise _death_failure(proc) from None
            deadline = None if timeout is None else time.monotonic() + timeout
            while True:
                wait = None if deadline is None else max(0.0, deadline - time.monotonic())
                try:
                    event = proc.events.get(timeout=wait)
                except queue.Empty:
                    proc.kill()
                    raise _Failure("ENV", f"timed out after {timeout:g} s (worker killed)",
                                   proc.stderr_text()) from None
                if event is None:
                    raise _death_failure(proc)
                if event.get("id") != req_id:
                    continue  # a stale event from an earlier request
                if event.get("event") == "result":
                    return event
                if on_event is not None:
                    on_event(event)

    def ping(self, timeout: float | None = 300) -> dict[str, Any]:
        """Start the worker if needed and wait until it answers; returns its reply."""
        try:
            return self._call({"op": "ping"}, None, timeout)
        except _Failure as f:
            return {"status": "error", "error_class": f.error_class, "error": f.error,
                    "traceback": f.traceback}

    def train(self, request: TrainRequest, on_event: EventFn | None = None,
              timeout: float | None = None) -> TrainResult:
        """Run one SFT request in the worker; ``on_event`` receives each ``log`` event."""
        t0 = time.monotonic()
        try:
            res = self._call({"op": "train", **asdict(request)}, on_event, timeout)
        except _Failure as f:
            return TrainResult(status="error", error_class=f.error_class, error=f.error,
                               traceback=f.traceback, seconds=round(time.monotonic() - t0, 3))
        names = TrainResult.__dataclass_fields__.keys()
        return TrainResult(**{k: v for k, v in res.items() if k in names})

    def generate(self, model: str, adapter: str | None, prompts: Sequence[str],
                 max_new_tokens: int | Sequence[int], batch_size: int = 16,
                 on_progress: ProgressFn | None = None, timeout: float | None = None
                 ) -> GenerateResult:
        """Greedy completions of ``prompts`` (user messages) by ``model`` + optional ``adapter``."""
        t0 = time.monotonic()
        # A bare string is not split into characters: the worker rejects it as DATA.
        payload = {"op": "generate", "model": model, "adapter": adapter,
                   "prompts": prompts if isinstance(prompts, str) else list(prompts),
                   "max_new_tokens": max_new_tokens if isinstance(max_new_tokens, int)
                   else list(max_new_tokens), "batch_size": batch_size}

        def forward(event: dict[str, Any]) -> None:
            if on_progress is not None and event.get("event") == "progress":
                on_progress(int(event["done"]), int(event["total"]))

        try:
            res = self._call(payload, forward, timeout)
        except _Failure as f:
            return GenerateResult(status="error", error_class=f.error_class, error=f.error,
                                  traceback=f.traceback, seconds=round(time.monotonic() - t0, 3))
        names = GenerateResult.__dataclass_fields__.keys()
        return GenerateResult(**{k: v for k, v in res.items() if k in names})

