"""A sandbox for model-written code: bubblewrap namespaces around a warm, forking runner.

:class:`Sandbox` runs untrusted Python (a model's plotting code) and returns a
list of floats that a trusted ``collect`` step computed after the code ran.
One sandbox serves many items: a runner process, started once inside a
`bubblewrap <https://github.com/containers/bubblewrap>`_ (``bwrap``) sandbox,
imports the heavy libraries once and forks one fresh child per item.

**What is contained** (Linux with a working ``bwrap``):

* *Files.* The sandbox's root is an empty tmpfs. Read-only inside: ``/usr``
  (with the ``/bin``, ``/lib``, ``/lib64`` links), the interpreter's prefix
  with its ``site-packages`` hidden under an empty tmpfs, and only the
  distributions the caller names (e.g. matplotlib, pandas, numpy and their
  requirements), each bound alone under ``/sandbox/site``. Not visible: this
  package and its source, the env's files and workspaces, the host's ``/tmp``,
  ``/work``, ``/home``, ``/root``, ``/etc``, other virtual environments,
  torch. The only writable places are a private tmpfs ``/tmp`` (64 MiB, in
  memory, gone with the sandbox, wiped between items; the item runs in a fresh
  ``/tmp/item`` holding its input files) and bwrap's private ``/dev/shm``.
  Nothing written inside reaches the host's disk.
* *Processes and memory.* New PID namespace with its own ``/proc``: the env's
  processes do not exist inside, so their ``/proc/<pid>/mem``, ``environ``
  and ``fd`` cannot be opened. The runner is non-dumpable, so an item cannot
  open the runner's ``/proc`` entries (its pipes to the host, its memory)
  either. All capabilities are dropped, ``no_new_privs`` is set and new user
  namespaces are disabled inside.
* *Environment.* Cleared; only ``PATH``, ``LANG``, ``HOME=/tmp``,
  ``MPLCONFIGDIR`` and single-thread BLAS settings are set.
* *Network.* New network namespace with only a loopback that nothing listens
  on: no host, no ``127.0.0.1`` of the host, no internet.
* *Lifetime.* Each item runs in a child of the runner in its own session,
  with ``RLIMIT_CPU``, ``RLIMIT_FSIZE`` (16 MiB) and ``RLIMIT_AS`` (1 GiB
  above the warm runner). After each item the runner kills every process of
  the sandbox except itself (``kill(-1, SIGKILL)`` inside the PID namespace,
  repeated until none is left), so no ``setsid``/double-fork orphan outlives
  its item. ``--die-with-parent`` ends the whole sandbox when the env dies.
* *Reply channel.* Each item gets a fresh pipe; its child keeps only that
  pipe's write end (every other descriptor is closed, stdout and stderr are
  ``/dev/null``). The runner's own pipes to the host are unreachable (closed in
  the child, runner non-dumpable). Replies carry the request's id, read until
  the child's pipe closes; an unexpected, late or malformed reply restarts the
  sandbox and fails that item only.

**What is not contained.** Within its own item the code owns its process: it
can monkeypatch libraries and write to its own result pipe, so the values it
reports are values it chose. That is no loophole, because it could equally
plot those values, and the reference answers never enter the sandbox (the
caller compares outside). The defence is that nothing inside can compute
them: no package, no env files, no env memory. ``collect`` reads figure state
through functions captured before the code ran, so naive monkeypatching does
not change what is reported. CPU and memory are bounded per item, but fork
rate is not (``RLIMIT_NPROC`` is not enforced for a host uid 0): a fork bomb
costs host CPU until the item's timeout. The kernel is shared (a kernel
exploit is out of scope), and ``/proc`` still shows system-wide files such as
``/proc/cpuinfo``.

**Where it degrades.** Without ``bwrap`` (not Linux, not installed, or user
namespaces forbidden, as in some containers) :func:`sandbox_unavailable`
gives the reason and :class:`Sandbox` refuses to start
(:class:`SandboxUnavailableError`): model-written code never runs unconfined.
Graders turn that into a score of 0 with a logged error
(see :mod:`ftdojo_gym.grading.tablebench_grading`). Install it with
``make setup`` (``apt-get install -y bubblewrap`` as root) or your package
manager; ``python -m ftdojo_gym.grading.sandbox`` reports the status.
"""

from __future__ import annotations

import json
import os
import secrets
import select
import shutil
import subprocess
import sys
import sysconfig
import time
from collections.abc import Iterable, Mapping, Sequence
from functools import lru_cache
from importlib import metadata
from typing import Any

#: Where the named distributions appear inside the sandbox (read-only).
SITE_DIR = "/sandbox/site"
#: Size of the sandbox's private /tmp, in bytes.
TMPFS_BYTES = 64 << 20
#: Largest result a child may send, in bytes.
MAX_RESULT_BYTES = 4 << 20
# Allowance on top of an item's timeout for the runner to clean up and reply,
# and for a fresh sandbox to start (bwrap, the interpreter, heavy imports).
_REPLY_GRACE_S = 10.0
_STARTUP_TIMEOUT_S = 120.0


class SandboxUnavailableError(RuntimeError):
    """No confinement is possible on this machine; the message says why and how to fix it."""


# The runner, run as `python -I -S -c RUNNER <setup> <collect>` inside bwrap.
# Protocol: one JSON request per line on stdin, {"id", "code", "files",
# "timeout", "params"}; one JSON reply per line on stdout, {"id", "ok",
# "values"} or {"id", "ok": false, "error"}; "ready" once after start-up.
_RUNNER = r"""
import ctypes, os, sys
# Non-dumpable: an item (same uid) cannot open /proc/<runner>/{fd,mem,environ}.
ctypes.CDLL(None).prctl(4, 0, 0, 0, 0)  # PR_SET_DUMPABLE = 4
import json, resource, select, shutil, signal, time
requests = os.fdopen(os.dup(0), "rb")
reply = os.fdopen(os.dup(1), "w")
devnull = os.open(os.devnull, os.O_RDWR)
for fd in (0, 1, 2):
    os.dup2(devnull, fd)
sys.path.insert(0, SITE_DIR)
exec(compile(sys.argv[1], "<setup>", "exec"))
exec(compile(sys.argv[2], "<collect>", "exec"))
with open("/proc/self/statm") as f:
    MEMORY_CAP = int(f.read().split()[0]) * os.sysconf("SC_PAGE_SIZE") + (1 << 30)
MAX_FD = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
def wipe(path):
    for name in os.listdir(path):
        full = os.path.join(path, name)
        if os.path.isdir(full) and not os.path.islink(full):
            shutil.rmtree(full, ignore_errors=True)
        else:
            try:
                os.unlink(full)
            except OSError:
                pass

def kill_others():
    # kill(-1) from PID 1 of the namespace: every other process of the sandbox.
    me = os.getpid()
    for _ in range(200):
        try:
            os.kill(-1, signal.SIGKILL)
        except OSError:
            pass
        while True:
            try:
                if os.waitpid(-1, os.WNOHANG)[0] == 0:
                    break
            except ChildProcessError:
                break
        alive = []
        for name in os.listdir("/proc"):
            if name.isdigit() and int(name) != me:
                try:
                    with open(f"/proc/{name}/stat") as f:
                        if f.read().rsplit(")", 1)[1].split()[0] not in "ZX":
                            alive.append(name)
                except (OSError, IndexError):
                    pass
        if not alive:
            return
        time.sleep(0.005)
    raise RuntimeError("processes survive kill(-1)")

def child(request, w):
    # Everything used after the item's code runs is bound here, as locals: the
    # code can rebind module globals and builtins, not this frame's locals.
    collect_, write, exit_, repr_, float_, type_ = collect, os.write, os._exit, repr, float, type
    try:
        os.closerange(3, w)
        os.closerange(w + 1, MAX_FD)
        os.setsid()
        os.chdir("/tmp/item")
        cpu = int(request["timeout"]) + 2
        resource.setrlimit(resource.RLIMIT_CPU, (cpu, cpu))
        resource.setrlimit(resource.RLIMIT_FSIZE, (16 << 20, 16 << 20))
        resource.setrlimit(resource.RLIMIT_AS, (MEMORY_CAP, MEMORY_CAP))
        params = request["params"]
        code = compile(request["code"], "<answer>", "exec")
        del request
        exec(code, {"__name__": "__main__", "__builtins__": __builtins__})
        values = collect_(params)
        data = "[" + ",".join([repr_(float_(v)) for v in values]) + "]"
        out = b'{"ok":true,"values":' + data.encode() + b"}"
    except BaseException as exc:
        name = "".join([c for c in str(type_(exc).__name__) if c.isalnum()])[:64]
        out = b'{"ok":false,"error":"' + name.encode() + b'"}'
    try:
        while out:
            out = out[write(w, out):]
    finally:
        exit_(0)

def run(request):
    for path in ("/tmp", "/dev/shm"):
        if os.path.isdir(path):
            wipe(path)
    os.makedirs("/tmp/item")
    os.makedirs(os.environ["MPLCONFIGDIR"], exist_ok=True)
    for name, text in request["files"].items():
        with open(os.path.join("/tmp/item", os.path.basename(name)), "w", encoding="utf-8") as f:
            f.write(text)
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(r)
        child(request, w)
    os.close(w)
    deadline = time.monotonic() + float(request["timeout"])
    chunks, size, error = [], 0, None
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            error = "Timeout"
            break
        if select.select([r], [], [], remaining)[0]:
            data = os.read(r, 1 << 16)
            if not data:
                break
            chunks.append(data)
            size += len(data)
            if size > MAX_RESULT_BYTES:
                error = "ResultTooLarge"
                break
    os.close(r)
    kill_others()
    if error:
        return {"ok": False, "error": error}
    try:
        result = json.loads(b"".join(chunks))
        if result.get("ok") is True:
            return {"ok": True, "values": [float(v) for v in result["values"]]}
        return {"ok": False, "error": str(result.get("error"))[:100]}
    except Exception:
        return {"ok": False, "error": "NoResult"}

reply.write("ready\n")
reply.flush()
for line in requests:
    try:
        request = json.loads(line)
        response = run(request)
        response["id"] = request["id"]
    except Exception as exc:
        response = {"ok": False, "error": type(exc).__name__}
    reply.write(json.dumps(response) + "\n")
    reply.flush()
"""


def _requirement_names(dist: metadata.Distribution) -> Iterable[str]:
    from packaging.requirements import InvalidRequirement, Requirement

    for text in dist.requires or ():
        try:
            req = Requirement(text)
        except InvalidRequirement:
            continue
        if req.marker is None or req.marker.evaluate({"extra": ""}):
            yield req.name


@lru_cache(maxsize=8)
def distribution_paths(names: tuple[str, ...]) -> tuple[str, ...]:
    """The top-level files and folders of ``names`` and their (non-extra) requirements.

    These are what a sandbox binds under :data:`SITE_DIR`, one by one: the
    importable packages and their ``.dist-info``/``.libs`` folders, never the
    whole ``site-packages`` (which holds this package's editable hook, torch,
    ...). Shared ``__pycache__`` folders are left out. Raises
    :class:`SandboxUnavailableError` if a named distribution is not installed.
    """
    todo, seen, paths = list(names), set(), set()
    while todo:
        name = todo.pop()
        key = name.lower().replace("_", "-")
        if key in seen:
            continue
        seen.add(key)
        try:
            dist = metadata.distribution(name)
        except metadata.PackageNotFoundError:
            raise SandboxUnavailableError(f"{name} is not installed, the sandbox needs it") from None
        todo.extend(_requirement_names(dist))
        for file in dist.files or ():
            top = file.parts[0]
            if top in ("..", "__pycache__") or top.endswith(".pth"):
                continue
            paths.add(os.path.normpath(str(dist.locate_file(top))))
    return tuple(sorted(p for p in paths if os.path.exists(p)))


def _interpreter() -> tuple[str, str]:
    """(interpreter binary, its prefix); the binary is the real one behind a venv's link."""
    return os.path.realpath(sys.executable), os.path.realpath(sys.base_prefix)


def bwrap_command(site_paths: Sequence[str]) -> list[str]:
    """The ``bwrap ... python`` command line of a sandbox (see the module docstring)."""
    bwrap = shutil.which("bwrap")
    if bwrap is None:
        raise SandboxUnavailableError(_INSTALL_HINT)
    python, prefix = _interpreter()
    argv = [
        bwrap,
        "--unshare-all", "--unshare-user", "--disable-userns",
        "--die-with-parent", "--new-session", "--cap-drop", "ALL",
        # The runner is PID 1 of the sandbox: items cannot kill or stop it
        # (init ignores signals it has no handler for), and orphans are
        # reparented to it, so kill(-1) and waitpid(-1) reach them all.
        "--as-pid-1",
        "--ro-bind", "/usr", "/usr",
    ]
    for link in ("bin", "lib", "lib64", "sbin"):
        target = os.path.join("/", link)
        if os.path.islink(target):
            argv += ["--symlink", os.readlink(target), target]
        elif os.path.isdir(target):
            argv += ["--ro-bind", target, target]
    if not prefix.startswith("/usr/"):
        argv += ["--ro-bind", prefix, prefix]
    # Hide the interpreter's own site-packages (this package may be installed there).
    for key in ("purelib", "platlib"):
        site = sysconfig.get_path(key, vars={"base": prefix, "platbase": prefix})
        if site and os.path.isdir(site):
            argv += ["--tmpfs", site]
    for path in site_paths:
        argv += ["--ro-bind", path, f"{SITE_DIR}/{os.path.basename(path)}"]
    argv += [
        "--proc", "/proc", "--dev", "/dev",
        "--size", str(TMPFS_BYTES), "--tmpfs", "/tmp",
        "--chdir", "/tmp", "--clearenv",
        "--setenv", "PATH", "/usr/bin:/bin",
        "--setenv", "LANG", "C.UTF-8",
        "--setenv", "HOME", "/tmp",
        "--setenv", "MPLCONFIGDIR", "/tmp/.mpl",
        "--setenv", "MPLBACKEND", "Agg",
        "--setenv", "PYTHONDONTWRITEBYTECODE", "1",
        "--setenv", "OMP_NUM_THREADS", "1",
        "--setenv", "OPENBLAS_NUM_THREADS", "1",
        "--setenv", "MKL_NUM_THREADS", "1",
        "--",
        python, "-I", "-S", "-B",
    ]
    return argv


_INSTALL_HINT = (
    "bubblewrap (`bwrap`) is not installed: model-written code is only run inside it. "
    "Install it (`apt-get install -y bubblewrap`, `dnf install bubblewrap`, or `make setup` as root)."
)


@lru_cache(maxsize=1)
def sandbox_unavailable() -> str | None:
    """Why no sandbox can run here, or ``None`` when one can (probed once per process)."""
    if not sys.platform.startswith("linux"):
        return f"the sandbox needs Linux namespaces (bubblewrap); this is {sys.platform}"
    if shutil.which("bwrap") is None:
        return _INSTALL_HINT
    try:
        argv = bwrap_command(()) + ["-c", "import os; print(os.getpid())"]
        done = subprocess.run(argv, capture_output=True, timeout=30, stdin=subprocess.DEVNULL)
    except (OSError, subprocess.TimeoutExpired, SandboxUnavailableError) as exc:
        return f"bubblewrap failed to start: {exc}"
    if done.returncode != 0 or not done.stdout.strip():
        err = done.stderr.decode(errors="replace").strip()[:300]
        return (f"bubblewrap cannot create namespaces here ({err or done.returncode}); "
                "user namespaces may be disabled (sysctl kernel.unprivileged_userns_clone, "
                "or a container without them)")
    return None


def require_sandbox() -> None:
    """Raise :class:`SandboxUnavailableError` unless :class:`Sandbox` can run here.

    Env construction for tasks that execute model output can call this to
    refuse up front rather than score every item 0.
    """
    reason = sandbox_unavailable()
    if reason is not None:
        raise SandboxUnavailableError(reason)


def stop_process(proc: subprocess.Popen[bytes]) -> None:
    """Kill a grading child, reap it and close its pipes (idempotent, never raises for a dead child)."""
    try:
        proc.kill()
    except OSError:
        pass
    proc.wait()
    for stream in (proc.stdin, proc.stdout):
        try:
            if stream is not None:
                stream.close()
        except OSError:
            pass


class Sandbox:
    """A bubblewrap sandbox whose runner executes untrusted code, one item at a time.

    ``setup_source`` runs once in the runner before any item (imports);
    ``collect_source`` must define ``collect(params) -> list of floats``, run in
    the item's process after its code (bound before the code runs, so
    rebinding the name does not replace it; bind what ``collect`` uses in a
    closure for the same reason). ``distributions`` are the only
    installed distributions visible inside (with their requirements).

    :meth:`run` never raises for anything the code does: a timeout, crash,
    killed runner or malformed reply is a failed item (``None``) and the next
    item gets a fresh sandbox. Constructing raises
    :class:`SandboxUnavailableError` when bwrap cannot run here. Not
    thread-safe: give each thread its own sandbox. Start and use it from the
    same thread, which must outlive it: bwrap's ``--die-with-parent`` follows
    the starting thread.
    """

    def __init__(self, setup_source: str, collect_source: str, distributions: Sequence[str]) -> None:
        require_sandbox()
        self._argv = bwrap_command(distribution_paths(tuple(distributions)))
        runner = f"SITE_DIR = {SITE_DIR!r}\nMAX_RESULT_BYTES = {MAX_RESULT_BYTES}\n{_RUNNER}"
        self._argv += ["-c", runner, setup_source, collect_source]
        self._proc: subprocess.Popen[bytes] | None = None
        self._buffer = b""

    def _start(self) -> subprocess.Popen[bytes] | None:
        self._buffer = b""
        proc = subprocess.Popen(
            self._argv,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            cwd="/",
            env={"PATH": os.environ.get("PATH", "/usr/bin:/bin")},
        )
        self._proc = proc
        if self._read_line(_STARTUP_TIMEOUT_S) != b"ready":
            self.close()
            return None
        return proc

    def run(
        self,
        code: str,
        files: Mapping[str, str],
        timeout: float,
        params: Mapping[str, Any] | None = None,
    ) -> list[float] | None:
        """Run ``code`` in a fresh ``/tmp/item`` holding ``files`` (name -> text).

        Returns what ``collect(params)`` returned after the code, or ``None`` on
        any failure. The code is killed after ``timeout`` seconds, with every
        process it started.
        """
        proc = self._proc if self._proc is not None and self._proc.poll() is None else self._start()
        if proc is None or proc.stdin is None:
            return None
        request_id = secrets.token_hex(16)
        request = {"id": request_id, "code": code, "files": dict(files),
                   "timeout": float(timeout), "params": dict(params or {})}
        try:
            proc.stdin.write(json.dumps(request).encode() + b"\n")
            proc.stdin.flush()
        except (OSError, ValueError):
            self.close()
            return None
        line = self._read_line(float(timeout) + _REPLY_GRACE_S)
        try:
            reply = json.loads(line) if line is not None else None
        except ValueError:
            reply = None
        if not isinstance(reply, dict) or reply.get("id") != request_id or self._buffer:
            # Hung, dead, or out of step with its requests: never trust it again.
            self.close()
            return None
        values = reply.get("values")
        if reply.get("ok") is not True or not isinstance(values, list):
            return None
        return [float(v) for v in values]

    def _read_line(self, seconds: float) -> bytes | None:
        proc = self._proc
        if proc is None or proc.stdout is None:
            return None
        fd = proc.stdout.fileno()
        deadline = time.monotonic() + seconds
        while b"\n" not in self._buffer:
            remaining = deadline - time.monotonic()
            ready = select.select([fd], [], [], remaining)[0] if remaining > 0 else []
            data = os.read(fd, 1 << 16) if ready else b""
            if not data or len(self._buffer) > 2 * MAX_RESULT_BYTES:
                self.close()
                return None
            self._buffer += data
        line, self._buffer = self._buffer.split(b"\n", 1)
        return line

    def close(self) -> None:
        """Kill the sandbox and everything in it (idempotent)."""
        proc, self._proc = self._proc, None
        self._buffer = b""
        if proc is None:
            return
        stop_process(proc)  # bwrap's --die-with-parent takes the whole PID namespace with it

    def __enter__(self) -> Sandbox:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


if __name__ == "__main__":  # `python -m ftdojo_gym.grading.sandbox`: report the status
    reason = sandbox_unavailable()
    print("sandbox: ok (bubblewrap)" if reason is None else f"sandbox: UNAVAILABLE: {reason}")
    sys.exit(0 if reason is None else 1)
