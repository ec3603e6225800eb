"""The env's folders on disk: one per env instance, owned by its process, swept when orphaned."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

#: File in an env's own folder naming the process that owns it.
OWNER_FILE = ".owner-pid"


def sweep_orphaned_folders(parent: Path | None = None) -> list[Path]:
    """Remove temporary env folders (``ftdojo-*``) whose owning process is gone (it was killed
    before it could clean up); returns what was removed."""
    removed = []
    for folder in Path(parent or tempfile.gettempdir()).glob("ftdojo-*"):
        try:
            pid = int((folder / OWNER_FILE).read_text())
        except (OSError, ValueError):
            continue  # not ours, or being created right now
        try:
            os.kill(pid, 0)
            continue  # its owner is alive
        except ProcessLookupError:
            pass
        except PermissionError:
            continue  # another user's live process
        shutil.rmtree(folder, ignore_errors=True)
        removed.append(folder)
    return removed


def make_env_folder(root: Path | None) -> Path:
    """A new folder ``ftdojo-*`` for one env instance under ``root`` (else the temp dir, after
    sweeping the orphans of killed processes there), stamped with this process's pid."""
    if root is not None:
        root.mkdir(parents=True, exist_ok=True)
    else:
        sweep_orphaned_folders()
    folder = Path(tempfile.mkdtemp(prefix="ftdojo-", dir=root))
    (folder / OWNER_FILE).write_text(str(os.getpid()))
    return folder
