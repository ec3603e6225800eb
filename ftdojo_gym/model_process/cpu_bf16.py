"""Is bf16 faster than fp32 on this CPU? Measured once per machine, not guessed from the flags.

A CPU that lists ``avx512_bf16`` or ``amx_bf16`` can multiply bf16 matrices, but
that does not make it faster than fp32. Measured with torch 2.13 (oneDNN 3.12), two
cores, 1024-square matrix products: on an AMD EPYC VM bf16 ran at ~4x the fp32 rate
(a SmolLM2 LoRA step ~2x faster under bf16 autocast), while on an Intel Xeon VM (model
207, ``avx512_bf16`` without AMX exposed) bf16 ran at half the fp32 rate, and a LoRA
training step under bf16 autocast took 1.5x as long as in fp32. So the choice is made
by timing both (:func:`measure`, well under a second) the first time a machine asks,
and kept in ``$FTDOJO_CACHE/cpu-bf16.json`` under a key of the CPU's model name, flags,
core count and torch version (:func:`machine_key`): the same machine always makes the
same choice, and a sweep's processes do not each time it (a file lock makes the first
one measure while the others wait).

``FTDOJO_CPU_BF16=1`` or ``0`` forces the choice (``auto``, the default, measures).
The environment's process decides and hands its answer to the model worker in that
variable (``ModelWorker``), so the precision a run trains in is the one its outcome is
cached under.
Nothing here imports torch in the calling process unless it is already imported: the
environment asks too, and measures in a child process
(``python -m ftdojo_gym.model_process.cpu_bf16`` prints the figures as JSON).
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.metadata
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

#: bf16 is used on a CPU when its matrix products run at least this many times the fp32 rate.
#: Autocast adds casts and keeps norms and softmax in fp32, so bf16 must win clearly at the GEMM.
MIN_SPEEDUP = 1.2
#: ``FTDOJO_CPU_BF16``: "1" or "0" force bf16 on or off; "auto" measures.
ENV_VAR = "FTDOJO_CPU_BF16"
#: Seconds the child process that measures may take (torch's import included).
PROBE_TIMEOUT_S = 60.0
CACHE_FILE = "cpu-bf16.json"
#: The size of the square matrix products timed.
SIZE = 1024

_decided: dict[str, dict[str, Any] | None] = {}  # machine key -> probe (this process)


def cpu_info() -> tuple[str, frozenset[str]]:
    """(model name, flags) of the first CPU in ``/proc/cpuinfo``; ("", {}) where unreadable."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return "", frozenset()
    name, flags = "", frozenset()
    for line in text.splitlines():
        if line.startswith("model name") and not name:
            name = line.split(":", 1)[1].strip()
        elif line.startswith("flags"):
            flags = frozenset(line.split(":", 1)[1].split())
            break
    return name, flags


def has_bf16_instructions() -> bool:
    """True when the CPU has bf16 matrix instructions (``avx512_bf16`` or AMX); without them
    bf16 is emulated and slower than fp32, so nothing is measured."""
    return bool(cpu_info()[1] & {"avx512_bf16", "amx_bf16"})


def machine_key() -> str:
    """What the measured choice depends on: the CPU (model name and flags), the cores this
    process may use, and the torch build (its oneDNN picks the kernels)."""
    name, flags = cpu_info()
    try:
        torch_version = importlib.metadata.version("torch")
    except importlib.metadata.PackageNotFoundError:
        torch_version = None
    try:
        cores = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cores = os.cpu_count() or 1
    text = json.dumps([name, sorted(flags), cores, torch_version])
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def measure(size: int = SIZE, rounds: int = 5) -> dict[str, Any]:
    """Time ``size``-square matrix products in fp32 and in bf16 (interleaved, best of
    ``rounds``, after a warm-up) with torch's current thread count: the GFLOPS of each and
    ``speedup`` = bf16 / fp32."""
    import torch

    def rate(a: Any, b: Any, n: int = 3) -> float:
        start = time.perf_counter()
        for _ in range(n):
            torch.mm(a, b)
        return 2 * n * size ** 3 / (time.perf_counter() - start) / 1e9

    gen = torch.Generator(device="cpu").manual_seed(0)
    f32 = [torch.randn(size, size, generator=gen, device="cpu") for _ in range(2)]
    b16 = [t.to(torch.bfloat16) for t in f32]
    rate(*f32, 1), rate(*b16, 1)  # warm-up: oneDNN builds its kernels
    best = {"fp32": 0.0, "bf16": 0.0}
    for _ in range(rounds):
        best["fp32"] = max(best["fp32"], rate(*f32))
        best["bf16"] = max(best["bf16"], rate(*b16))
    return {"fp32_gflops": round(best["fp32"], 1), "bf16_gflops": round(best["bf16"], 1),
            "speedup": round(best["bf16"] / best["fp32"], 3), "threads": torch.get_num_threads(),
            "torch": torch.__version__}


def _measure_in_child() -> dict[str, Any] | None:
    """:func:`measure` in a child process (this one has not imported torch); None if it fails."""
    try:  # run from the folder holding the package: it need not be installed
        done = subprocess.run([sys.executable, "-m", __name__], capture_output=True, text=True,
                              timeout=PROBE_TIMEOUT_S, check=False, cwd=Path(__file__).resolve().parents[2])
    except (OSError, subprocess.SubprocessError):
        return None
    lines = done.stdout.strip().splitlines()
    if done.returncode != 0 or not lines:
        return None
    try:
        probe = json.loads(lines[-1])
    except ValueError:
        return None
    return probe if _valid(probe) else None


def _measure_here() -> dict[str, Any] | None:
    """:func:`measure` in this process (it has imported torch); None if it fails."""
    try:
        found = measure()
    except Exception:  # noqa: BLE001 - any failure to time means "not known to be faster"
        return None
    return found if _valid(found) else None


def _valid(probe: Any) -> bool:
    return (isinstance(probe, dict)
            and all(isinstance(probe.get(k), (int, float)) and probe[k] > 0
                    for k in ("fp32_gflops", "bf16_gflops", "speedup")))


def _cache_path() -> Path:
    from ftdojo_gym.models import cache_dir

    return cache_dir() / CACHE_FILE


def _read(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    """An exclusive lock on ``path.lock`` (none where the folder cannot be written)."""
    try:
        import fcntl

        path.parent.mkdir(parents=True, exist_ok=True)
        fh = open(path.with_name(path.name + ".lock"), "a")  # noqa: SIM115 - closed below
    except (ImportError, OSError):
        yield
        return
    try:
        with contextlib.suppress(OSError):  # no lock on this file system: measure unlocked
            fcntl.flock(fh, fcntl.LOCK_EX)
        yield
    finally:
        fh.close()  # releases the lock


def probe() -> dict[str, Any] | None:
    """This machine's measured fp32 and bf16 matrix-product rates (see the module docstring),
    from this process's memory, the cache file, or a new measurement (then stored); None
    when it could not be measured."""
    key = machine_key()
    if key in _decided:
        return _decided[key]
    path = _cache_path()
    with _locked(path):
        found = _read(path).get(key)
        if not _valid(found):
            found = _measure_here() if "torch" in sys.modules else _measure_in_child()
            if found is not None:
                data = _read(path)
                data[key] = found
                from ftdojo_gym.data.workspace import atomic_write_text

                with contextlib.suppress(OSError):
                    atomic_write_text(path, json.dumps(data, indent=1, sort_keys=True) + "\n")
    _decided[key] = found
    return found


def fast_bf16() -> bool:
    """True when bf16 matrix products beat fp32 on this CPU by :data:`MIN_SPEEDUP` (or
    ``FTDOJO_CPU_BF16=1``); False without bf16 instructions, when the probe fails, or with
    ``FTDOJO_CPU_BF16=0``."""
    forced = os.environ.get(ENV_VAR, "auto").strip().lower()
    if forced in ("1", "0"):
        return forced == "1"
    if forced not in ("", "auto"):
        raise ValueError(f"{ENV_VAR} must be 1, 0 or auto, got {forced!r}")
    if not has_bf16_instructions():
        return False
    found = probe()
    return found is not None and found["speedup"] >= MIN_SPEEDUP


if __name__ == "__main__":
    print(json.dumps(measure()))
