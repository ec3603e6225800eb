"""The environment's handle on the model process (:mod:`ftdojo_gym.model_process.worker`).

:class:`ModelWorker` starts ``python -m ftdojo_gym.model_process.worker`` on
first use and keeps it for later calls (torch is imported once), restarts it
when it died, speaks :mod:`ftdojo_gym.model_process.protocol` with it, and
turns every failure into a result value:

* an exception inside the child -> the child's own error result
  (CONFIG / OOM / DATA / ENV);
* arguments the child would reject (:meth:`GenerateRequest.check`) -> that
  DATA / CONFIG result, without a round trip;
* the child killed by a signal mid-op -> ``error_class`` OOM for SIGKILL (what
  the kernel's OOM killer sends), ENV otherwise, with the tail of its stderr;
* no result within ``timeout`` seconds -> the child is killed, ENV
  "timed out after N s";
* no line at all (not even a heartbeat) for ``stall_timeout_s`` seconds ->
  the child is stopped (SIGSTOP) or deadlocked: it is killed, ENV "stopped
  responding", within ``stall_timeout_s`` whether or not a timeout is set;
* SIGKILL counts as OOM only when the kernel's OOM-kill counter moved;
* a reply that breaks the protocol -> the child is killed (its stream can no
  longer be trusted), ENV "malformed reply ...".

This module does not import torch.
"""

from __future__ import annotations

import collections
import dataclasses
import itertools
import os
import queue
import signal
import subprocess
import sys
import threading
import time
import weakref
from collections.abc import Callable, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import IO, Any

from ftdojo_gym.errors import ConfigError, DataError, ErrorClass
from ftdojo_gym.model_process import cpu_bf16, resident
from ftdojo_gym.model_process.protocol import (
    DEFAULT_EVAL_BATCH,
    HEARTBEAT_INTERVAL_S,
    Event,
    GenerateRequest,
    GenerateResult,
    LogEvent,
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

#: Receives each ``log`` event of a training run as a dict: ``{"event": "log", <LogEvent fields>}``.
EventFn = Callable[[dict[str, Any]], None]
ProgressFn = Callable[[int, int], None]

STDERR_TAIL_CHARS = 4000
#: The folder holding the ``ftdojo_gym`` package; the child needs it on its path.
_PACKAGE_PARENT = Path(__file__).resolve().parents[2]
#: Seconds without any line from a busy child (it sends a heartbeat every
#: :data:`~ftdojo_gym.model_process.protocol.HEARTBEAT_INTERVAL_S`) before it counts as
#: stopped or deadlocked and is killed: the bound on how long a step can block on a
#: dead child when no wall-clock limit is set.
STALL_TIMEOUT_S = 60.0
#: Environment variables that size a child's compute thread pools (OpenMP, MKL, OpenBLAS,
#: and the one the worker reads to call ``torch.set_num_threads``).
THREAD_VARS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "FTDOJO_WORKER_THREADS")
#: The child's command line.
WORKER_COMMAND = (sys.executable, "-m", "ftdojo_gym.model_process.worker")


class _Failure(Exception):
    """The worker produced no result: it died, timed out, or could not start."""

    def __init__(self, error_class: ErrorClass, error: str, traceback: str) -> None:
        super().__init__(error)
        self.error_class, self.error, self.traceback = error_class, error, traceback


def available_cores() -> int:
    """How many CPUs this process may run on (its affinity mask, e.g. under ``taskset`` or a
    cgroup cpuset), falling back to ``os.cpu_count()``."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


def worker_threads(threads: int | None, environ: dict[str, str] | None = None) -> int:
    """The child's thread count: ``threads`` if given; else ``OMP_NUM_THREADS`` from ``environ``
    when it holds a positive int (a sweep pins its episodes that way); else :func:`available_cores`."""
    if threads is not None:
        return threads
    raw = (os.environ if environ is None else environ).get("OMP_NUM_THREADS", "")
    try:
        n = int(raw)
    except ValueError:
        n = 0
    return n if n > 0 else available_cores()


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
    """One running child process with its reader threads.

    ``replies`` receives each decoded reply line, a :class:`ProtocolError` for a
    line that is not one, and None at EOF.
    """

    def __init__(self, command: Sequence[str], env: dict[str, str], memory_limit_gb: float | None
                 ) -> None:
        limit = int(memory_limit_gb * 1024**3) if memory_limit_gb is not None else None

        def preexec() -> None:  # runs in the child between fork and exec
            if limit is not None:
                import resource

                resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
            _die_with_parent()

        self.popen = subprocess.Popen(
            list(command),
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            env=env, text=True, encoding="utf-8", errors="replace",
            bufsize=1, preexec_fn=preexec,
            start_new_session=True,  # its own process group: a kill reaches its children too
        )
        self.replies: queue.Queue[ReplyLine | ProtocolError | None] = queue.Queue()
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
                self.replies.put(ReplyLine.decode(line))
            except ProtocolError as exc:
                self.replies.put(exc)
        self.replies.put(None)  # EOF: the child exited or died

    def _read_stderr(self, stream: IO[str]) -> None:
        for line in stream:
            self.stderr_tail.append(line)

    def stderr_text(self) -> str:
        text = "".join(self.stderr_tail)
        return text[-STDERR_TAIL_CHARS:]

    def send(self, line: RequestLine) -> None:
        assert self.popen.stdin is not None
        self.popen.stdin.write(line.encode())
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


def oom_kill_count() -> int | None:
    """How many processes the kernel's OOM killer has killed (``oom_kill`` in ``/proc/vmstat``,
    Linux 4.13+), or None where the counter cannot be read."""
    try:
        with open("/proc/vmstat", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("oom_kill "):
                    return int(line.split()[1])
    except (OSError, ValueError):
        pass
    return None


def process_state(pid: int) -> str | None:
    """The one-letter state of ``pid`` from ``/proc/<pid>/stat`` (``T``: stopped), or None."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return None


def _death_failure(proc: _Process, oom_kills_before: int | None = None) -> _Failure:
    """Describe a worker that exited without answering.

    A SIGKILL counts as out of memory only when the kernel's OOM-kill counter
    moved while the op ran; where the counter cannot be read it still does
    (the likely cause), and the message says it is a guess."""
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
            after = oom_kill_count()
            known = oom_kills_before is not None and after is not None
            if known and after == oom_kills_before:
                return _Failure(ErrorClass.ENV, f"training worker was killed by {name} from outside (the kernel "
                                                "recorded no out-of-memory kill meanwhile)", stderr)
            why = "the kernel's out-of-memory killer" if known else "most likely the kernel's out-of-memory killer"
            return _Failure(ErrorClass.OOM, f"training worker was killed by {name} ({why}): use fewer/shorter "
                                            "samples, a smaller batch_size or max_len", stderr)
        return _Failure(ErrorClass.ENV, f"training worker died from {name}", stderr)
    return _Failure(ErrorClass.ENV, f"training worker exited unexpectedly (exit code {code})", stderr)


class ModelWorker:
    """A lazily started, auto-restarted model process that trains and generates.

    ``env_vars`` are added to the child's environment; ``memory_limit_gb`` caps
    its address space (``RLIMIT_AS``), so allocations beyond it fail inside the
    child (reported as OOM); ``command`` replaces the child's command line
    (:data:`WORKER_COMMAND`), e.g. with a stand-in that speaks the protocol.
    ``threads`` is the number of compute threads the child uses (see
    :func:`worker_threads`; None: the cores this process may run on, or
    ``OMP_NUM_THREADS`` when that is set). Several workers on one machine
    should split its cores between them: torch's threads spin while they wait
    for each other, and oversubscribed cores made a training step ~15x slower.
    One op runs at a time; calls from several threads are serialised. No method
    raises for a failure of the child: each returns an error result.
    """

    def __init__(self, env_vars: dict[str, str] | None = None, memory_limit_gb: float | None = None,
                 command: Sequence[str] = WORKER_COMMAND, stall_timeout_s: float = STALL_TIMEOUT_S,
                 threads: int | None = None) -> None:
        if stall_timeout_s <= HEARTBEAT_INTERVAL_S:
            raise ValueError(f"stall_timeout_s must exceed the heartbeat interval ({HEARTBEAT_INTERVAL_S} s)")
        if threads is not None and (isinstance(threads, bool) or not isinstance(threads, int) or threads < 1):
            raise ValueError(f"threads must be a positive int or None (all the cores given), got {threads!r}")
        self.threads = threads
        self.stall_timeout_s = stall_timeout_s
        self.env_vars = dict(env_vars or {})
        self.memory_limit_gb = memory_limit_gb
        self.command = tuple(command)
        self._proc: _Process | None = None
        self._lock = threading.Lock()
        self._ids = itertools.count(1)
        self._finalizer: weakref.finalize | None = None
        self.restarts = 0

    # -- process management -------------------------------------------------
    @property
    def pid(self) -> int | None:
        """The child's pid, or None when it is not running."""
        return self._proc.pid if self._proc is not None and self._proc.alive() else None

    def _child_env(self) -> dict[str, str]:
        env = dict(os.environ)
        env.update(self.env_vars)
        # The child must import this very package, installed or not.
        env["PYTHONPATH"] = os.pathsep.join(p for p in (str(_PACKAGE_PARENT), env.get("PYTHONPATH")) if p)
        env.setdefault("TOKENIZERS_PARALLELISM", "false")
        env["PYTHONUNBUFFERED"] = "1"
        n = str(worker_threads(self.threads, env))
        for var in THREAD_VARS:
            env[var] = n
        # The worker trains in the precision this process decided (and keys cached outcomes
        # with), not in a second decision of its own.
        if env.get(cpu_bf16.ENV_VAR, "auto").strip().lower() in ("", "auto"):
            env[cpu_bf16.ENV_VAR] = "1" if resident.cpu_has_fast_bf16() else "0"
        return env

    def _ensure_started(self) -> _Process:
        if self._proc is not None and self._proc.alive():
            return self._proc
        if self._proc is not None:  # it died since the last op
            self._proc.kill()
            self.restarts += 1
        self._proc = _Process(self.command, self._child_env(), self.memory_limit_gb)
        if self._finalizer is not None:
            self._finalizer.detach()
        # Reaps the child on garbage collection and at interpreter exit.
        self._finalizer = weakref.finalize(self, self._proc.shutdown)
        return self._proc

    def close(self) -> None:
        """Stop the child (idempotent); the next call starts a new one."""
        with self._lock:
            if self._finalizer is not None:
                self._finalizer()  # runs _Process.shutdown once
                self._finalizer = None
            self._proc = None

    def __enter__(self) -> ModelWorker:
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.close()

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:  # interpreter shutdown: the finalizer handles it
            pass

    # -- requests ------------------------------------------------------------
    def _call(self, request: Request, on_event: Callable[[Event], None] | None, timeout: float | None
              ) -> Result:
        """Send one request and wait for its result; raises :class:`_Failure`."""
        with self._lock:
            try:
                proc = self._ensure_started()
            except OSError as exc:
                raise _Failure(ErrorClass.ENV, f"could not start the training worker: {exc}", "") from None
            req_id = next(self._ids)
            oom_kills = oom_kill_count()
            try:
                proc.send(RequestLine(req_id, request))
            except (BrokenPipeError, OSError):
                raise _death_failure(proc, oom_kills) from None
            deadline = None if timeout is None else time.monotonic() + timeout
            heard = time.monotonic()  # the last line from the child: a reply, an event or a heartbeat
            while True:
                now = time.monotonic()
                wait = heard + self.stall_timeout_s - now
                if deadline is not None:
                    wait = min(wait, deadline - now)
                try:
                    reply = proc.replies.get(timeout=max(0.0, wait))
                except queue.Empty:
                    raise self._silence(proc, timeout, deadline) from None
                heard = time.monotonic()
                if reply is None:
                    raise _death_failure(proc, oom_kills)
                if isinstance(reply, ProtocolError):
                    proc.kill()  # what follows on its stream cannot be trusted either
                    raise _Failure(ErrorClass.ENV, f"malformed reply from the training worker "
                                                   f"(worker killed): {reply}", proc.stderr_text())
                if reply.id != req_id:
                    continue  # a stale reply to an earlier request (one that timed out)
                if reply.event == "result":
                    if reply.op != request.OP or not isinstance(reply.message, request.RESULT):
                        proc.kill()
                        raise _Failure(ErrorClass.ENV, f"malformed reply from the training worker "
                                                       f"(worker killed): a {reply.op!r} result to a "
                                                       f"{request.OP!r} request", proc.stderr_text())
                    return reply.message
                if on_event is not None:
                    on_event(reply.message)

    def _silence(self, proc: _Process, timeout: float | None, deadline: float | None) -> _Failure:
        """Kill a child that ran past ``timeout`` or stopped sending heartbeats, and say which."""
        state = process_state(proc.pid)
        proc.kill()
        if deadline is not None and time.monotonic() >= deadline:
            return _Failure(ErrorClass.ENV, f"timed out after {timeout:g} s (worker killed)", proc.stderr_text())
        how = ("it was stopped (process state T, e.g. SIGSTOP)" if state in ("T", "t")
               else "it is hung or deadlocked")
        return _Failure(ErrorClass.ENV, f"the training worker stopped responding: no heartbeat for "
                                        f"{self.stall_timeout_s:g} s ({how}); it was killed and restarts on the "
                                        "next call", proc.stderr_text())

    def ping(self, timeout: float | None = 300) -> PingResult:
        """Start the child if needed and wait until it answers with its pid."""
        try:
            result = self._call(PingRequest(), None, timeout)
        except _Failure as f:
            return PingResult.failure(f.error_class, f.error, f.traceback)
        assert isinstance(result, PingResult)
        return result

    def train(self, request: TrainRequest, on_event: EventFn | None = None,
              timeout: float | None = None) -> TrainResult:
        """Run one SFT request in the child; ``on_event`` receives each ``log`` event (see :data:`EventFn`)."""
        t0 = time.monotonic()
        last: list[LogEvent] = []

        def forward(event: Event) -> None:
            if isinstance(event, LogEvent):
                last[:] = [event]
                if on_event is not None:
                    on_event({"event": event.EVENT, **asdict(event)})

        try:
            result = self._call(request, forward, timeout)
        except _Failure as f:
            # The steps the child reported before it died or was killed were trained: they are charged.
            done = last[0] if last else None
            return dataclasses.replace(
                TrainResult.failure(f.error_class, f.error, f.traceback, seconds=round(time.monotonic() - t0, 3)),
                steps=done.step if done else 0, train_tokens=done.tokens if done else 0)
        assert isinstance(result, TrainResult)
        return result

    def generate(self, model: str, adapter: str | None, prompts: Sequence[str],
                 max_new_tokens: int | Sequence[int], batch_size: int = DEFAULT_EVAL_BATCH,
                 on_progress: ProgressFn | None = None, timeout: float | None = None,
                 precision: str = "auto") -> GenerateResult:
        """Greedy completions of ``prompts`` (user messages) by ``model`` + optional ``adapter``,
        in ``precision`` (``"auto"``, ``"bf16"`` or ``"fp32"``; ``stats["bf16"]`` of the result
        says which ran)."""
        t0 = time.monotonic()
        # A bare string is not split into characters: check() rejects it as DATA.
        request = GenerateRequest(
            model=model, adapter=adapter,
            prompts=prompts if isinstance(prompts, str) else list(prompts),  # type: ignore[arg-type]
            max_new_tokens=max_new_tokens if isinstance(max_new_tokens, int) else list(max_new_tokens),
            batch_size=batch_size, precision=precision)
        try:
            request.check()
        except (DataError, ConfigError) as exc:
            error_class = ErrorClass.DATA if isinstance(exc, DataError) else ErrorClass.CONFIG
            return GenerateResult.failure(error_class, f"{type(exc).__name__}: {exc}")

        def forward(event: Event) -> None:
            if on_progress is not None and isinstance(event, ProgressEvent):
                on_progress(event.done, event.total)

        try:
            result = self._call(request, forward, timeout)
        except _Failure as f:
            return GenerateResult.failure(f.error_class, f.error, f.traceback,
                                          seconds=round(time.monotonic() - t0, 3))
        assert isinstance(result, GenerateResult)
        return result
