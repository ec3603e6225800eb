"""A local OpenAI-compatible LLM server for the agents: ``transformers serve`` on a local model.

Runs the LLM agents with no network: the model (``smollm2-135m`` by default,
any name :func:`ftdojo_gym.models.resolve_model` knows, or a HF folder) is
served by ``transformers serve`` in a child process on 127.0.0.1::

    from ftdojo_agents.local_server import serve_local_model

    with serve_local_model("smollm2-135m") as server:
        agent = agents.make("react", **server.llm_kwargs())
        ...                        # server.base_url is http://127.0.0.1:<port>/v1

Contract
--------
* The server is a real subprocess in its own process group, on a free port
  (or ``port``), pinned to the one model (``FORCE_MODEL``), on the CPU by
  default, with ``threads`` torch threads (default: half the cores). It is
  also asked to die with its parent (Linux), so a killed test leaves no server.
* Startup waits for ``GET /health`` (the model is loaded before the server
  listens). If the process exits first, or ``startup_timeout`` passes,
  :class:`LocalServerError` says so with the tail of the server's log.
* On exit the whole process group gets SIGTERM, then SIGKILL after ``stop_timeout``.
* Nothing is downloaded: ``HF_HUB_OFFLINE=1`` and no update check (``offline=False`` lifts that).
* ``transformers serve`` needs the ``serve`` extra (``pip install 'ftdojo-gym[serve]'``:
  fastapi, uvicorn, starlette); without it, :class:`LocalServerError` says so before starting.
* Chat templates that do not render ``tools`` (SmolLM2's) make native
  function calling useless: :meth:`LocalServer.llm_kwargs` then selects the
  client's JSON-in-text tool mode. The context window is read from the model's
  ``config.json`` (``max_position_embeddings``).
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

#: Modules ``transformers serve`` imports (the ``serve`` extra of this package).
SERVE_MODULES = ("fastapi", "uvicorn", "starlette")
#: The launcher: ``transformers serve`` with this interpreter, whatever the PATH says.
_LAUNCH = "from transformers.cli.transformers import app; app()"


class LocalServerError(RuntimeError):
    """The local LLM server could not be started (missing extra, early exit, no health in time)."""


@dataclass
class LocalServer:
    """A running local server: where it listens and what it serves."""

    base_url: str
    #: The model name to request (the server is pinned to it; other names get HTTP 400).
    model: str
    host: str
    port: int
    process: subprocess.Popen[bytes]
    log_path: Path
    #: The model's context window in tokens (``max_position_embeddings``), if known.
    context_window: int | None = None
    #: Whether the model's chat template renders ``tools`` (else JSON-in-text tool calls are used).
    supports_tools: bool = False
    startup_seconds: float = 0.0
    command: list[str] = field(default_factory=list)

    def __str__(self) -> str:
        return self.base_url

    def log_tail(self, chars: int = 3000) -> str:
        """The end of the server's log (its stdout and stderr)."""
        return _tail(self.log_path, chars)

    def chat_requests(self) -> int:
        """Chat completions the server has answered with HTTP 200, counted from its access log."""
        try:
            text = self.log_path.read_text(encoding="utf-8", errors="replace")
        except OSError:
            return 0
        return sum(1 for line in text.splitlines() if "POST /v1/chat/completions" in line and " 200" in line)

    def llm_kwargs(self, **overrides: Any) -> dict[str, Any]:
        """Arguments of :class:`agents.llm_client.LLMClient` (and of the LLM agents) for this server."""
        kwargs: dict[str, Any] = {"base_url": self.base_url, "model": self.model,
                                  "tool_mode": "auto" if self.supports_tools else "text"}
        if self.context_window:
            kwargs["context_window"] = self.context_window
        kwargs.update(overrides)
        return kwargs


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port free on ``host`` right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def default_threads() -> int:
    """Torch threads of the server: half the cores (the env's training worker needs the rest).

    More threads than free cores is far worse than too few: on a loaded
    2-core machine, 2 threads generated ~0.7 tokens/s where 1 thread gave ~10.
    """
    from ftdojo_gym.model_process.client import available_cores

    return max(1, available_cores() // 2)


def model_properties(model: str | Path) -> tuple[int | None, bool]:
    """``(context window, chat template renders tools)`` of a local HF folder; ``(None, False)`` otherwise."""
    path = Path(model)
    if not path.is_dir():
        return None, False
    window = None
    with contextlib.suppress(OSError, ValueError, TypeError):
        cfg = json.loads((path / "config.json").read_text(encoding="utf-8"))
        window = int(cfg.get("max_position_embeddings") or 0) or None
    template = ""
    with contextlib.suppress(OSError):
        template = (path / "chat_template.jinja").read_text(encoding="utf-8")
    if not template:
        with contextlib.suppress(OSError, ValueError):
            tok_cfg = json.loads((path / "tokenizer_config.json").read_text(encoding="utf-8"))
            template = json.dumps(tok_cfg.get("chat_template") or "")
    return window, "tools" in template


def serve_command(model: str, host: str, port: int, *, device: str = "cpu",
                  extra_args: Sequence[str] = ()) -> list[str]:
    """The ``transformers serve`` command line for ``model`` (run by this interpreter)."""
    return [sys.executable, "-c", _LAUNCH, "serve", str(model), "--host", host, "--port", str(port),
            "--device", device, "--log-level", "warning", *extra_args]


def _tail(path: Path, chars: int) -> str:
    try:
        with open(path, "rb") as fh:
            fh.seek(0, os.SEEK_END)
            size = fh.tell()
            fh.seek(max(0, size - chars))
            return fh.read().decode("utf-8", errors="replace")
    except OSError:
        return ""


def _die_with_parent() -> None:
    """In the child, before exec: ask Linux to SIGKILL it when the thread that started it dies."""
    if sys.platform.startswith("linux"):
        import ctypes

        with contextlib.suppress(OSError, AttributeError):
            ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


#: No proxies: the server is on loopback, whatever ``HTTP_PROXY`` says.
_DIRECT = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def _healthy(url: str, timeout: float = 2.0) -> bool:
    try:
        with _DIRECT.open(url, timeout=timeout) as resp:
            return resp.status == 200
    except (urllib.error.URLError, OSError, ValueError):
        return False


def stop_process_group(proc: subprocess.Popen[bytes], timeout: float = 10.0) -> None:
    """SIGTERM the process group of ``proc`` (it leads its own), then SIGKILL after ``timeout``."""
    if proc.poll() is not None:
        # The leader is gone; children it left in the group may still run.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)
        return
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        pass
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=timeout)


@contextlib.contextmanager
def serve_local_model(model: str = "smollm2-135m", port: int | None = None, *, host: str = "127.0.0.1",
                      device: str = "cpu", threads: int | None = None, startup_timeout: float = 300.0,
                      stop_timeout: float = 10.0, offline: bool = True, log_path: str | Path | None = None,
                      extra_args: Sequence[str] = (), command: Sequence[str] | None = None,
                      env: dict[str, str] | None = None) -> Iterator[LocalServer]:
    """Start ``transformers serve`` on ``model`` and yield the :class:`LocalServer`; stop it on exit.

    ``model``: a name :func:`ftdojo_gym.models.resolve_model` knows
    (``smollm2-135m``, ``tiny``), a local HF folder or a hub id (cached, when
    ``offline``). ``port=None`` picks a free one. ``log_path`` keeps the
    server's output (default: a temporary file removed on exit). ``command``
    replaces the launch command (tests); arguments that are exactly
    ``{host}``, ``{port}`` or ``{model}`` are filled in. Raises :class:`LocalServerError`.
    """
    if command is None:
        missing = [m for m in SERVE_MODULES if importlib.util.find_spec(m) is None]
        if missing:
            raise LocalServerError(f"`transformers serve` needs {', '.join(missing)}: "
                                   "pip install 'ftdojo-gym[serve]' (or 'transformers[serving]')")
        from ftdojo_gym.models import ModelNotFoundError, resolve_model

        try:
            served = str(resolve_model(model))
        except ModelNotFoundError as exc:
            raise LocalServerError(f"no local model {model!r}: {exc}") from exc
    else:
        served = str(model)
    port = port or free_port(host)
    window, tools = model_properties(served)
    fill = {"{host}": host, "{port}": str(port), "{model}": served}
    argv = ([fill.get(part, part) for part in command] if command is not None
            else serve_command(served, host, port, device=device, extra_args=extra_args))
    n_threads = str(threads or default_threads())
    child_env = {**os.environ, "OMP_NUM_THREADS": n_threads, "MKL_NUM_THREADS": n_threads,
                 "TOKENIZERS_PARALLELISM": "false", "HF_HUB_DISABLE_UPDATE_CHECK": "1",
                 "PYTHONUNBUFFERED": "1", **(env or {})}
    if offline:
        child_env.update(HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", HF_HUB_DISABLE_TELEMETRY="1")

    with contextlib.ExitStack() as stack:
        if log_path is None:
            log_file = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="ftdojo-serve-"))) / "server.log"
        else:
            log_file = Path(log_path)
            log_file.parent.mkdir(parents=True, exist_ok=True)
        started = time.monotonic()
        with open(log_file, "wb") as out:
            proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                                    env=child_env, start_new_session=True, preexec_fn=_die_with_parent)
        stack.callback(stop_process_group, proc, stop_timeout)
        base = f"http://{host}:{port}"
        deadline = started + startup_timeout
        while True:
            code = proc.poll()
            if code is not None:
                what = "transformers serve" if command is None else os.path.basename(argv[0])
                raise LocalServerError(f"the local LLM server ({what}) exited with code {code} before it was "
                                       f"ready; its log ends:\n"
                                       f"{_tail(log_file, 3000)}")
            if _healthy(f"{base}/health"):
                break
            if time.monotonic() > deadline:
                raise LocalServerError(f"the local LLM server on {base} was not healthy within "
                                       f"{startup_timeout:g} s; its log ends:\n{_tail(log_file, 3000)}")
            time.sleep(0.25)
        yield LocalServer(base_url=f"{base}/v1", model=served, host=host, port=port, process=proc,
                          log_path=log_file, context_window=window, supports_tools=tools,
                          startup_seconds=time.monotonic() - started, command=list(argv))
