"""Mutation testing of the core modules with mutmut 3 (``make mutation``; not part of CI).

The modules to mutate are listed once, in ``[tool.mutmut] only_mutate`` of
``pyproject.toml`` (with the fast test selection mutmut runs against them).
Arguments override that list for one run::

    tools/mutation.sh                                   # every module of the list
    tools/mutation.sh ftdojo_gym/data/workspace.py      # one module
    MUTATION_TESTS="tests/data/test_workspace.py" tools/mutation.sh ftdojo_gym/data/workspace.py
                                                        # ... against fewer tests (faster)

The run works on a snapshot of the working tree (tracked and untracked, not
ignored, files) in a scratch folder, so the tree others edit is never touched
and mutmut's ``mutants/`` folder stays out of it. It runs at low priority with
one worker process, then prints killed / survived (and the other mutmut states)
per module and the killed share of the mutants that were tested.
"""

from __future__ import annotations

import collections
import os
import re
import shutil
import subprocess
import sys
import tempfile
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def snapshot(dest: Path) -> None:
    files = subprocess.run(["git", "ls-files", "-co", "--exclude-standard", "-z"], cwd=ROOT, check=True,
                           capture_output=True).stdout.decode().split("\0")
    for name in filter(None, files):
        src = ROOT / name
        if src.is_file():
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / name)


def set_list(pyproject: Path, key: str, values: list[str]) -> None:
    """Replace the list ``key`` of ``[tool.mutmut]`` in the snapshot's pyproject by ``values``."""
    text = pyproject.read_text()
    listed = f"{key} = [" + ", ".join(f'"{v}"' for v in values) + "]"
    new, n = re.subn(rf"(?ms)^{key}\s*=\s*\[.*?\]", listed, text, count=1)
    if n != 1:
        sys.exit(f"pyproject.toml has no [tool.mutmut] {key} list")
    pyproject.write_text(new)


def report(workdir: Path, python: str, modules: list[str]) -> int:
    out = subprocess.run([python, "-m", "mutmut", "results", "--all", "true"], cwd=workdir, capture_output=True,
                         text=True)
    counts: dict[str, collections.Counter] = collections.defaultdict(collections.Counter)
    for line in out.stdout.splitlines():
        name, _, status = line.strip().rpartition(": ")
        if "__mutmut_" in name:
            counts[name.rsplit(".", 1)[0]][status] += 1
    if not counts:
        print(out.stdout[-2000:], out.stderr[-2000:], sep="\n")
        print("no mutant results (see mutmut's output above)")
        return 1
    states = sorted({s for c in counts.values() for s in c} - {"killed", "survived"})
    header = f"{'module':45} {'killed':>7} {'survived':>8} " + " ".join(f"{s:>12}" for s in states) + "  killed share"
    print(header)
    total = collections.Counter()
    for module in sorted(counts):
        c = counts[module]
        total.update(c)
        tested = c["killed"] + c["survived"]
        share = f"{100 * c['killed'] / tested:5.1f} %" if tested else "    -"
        print(f"{module:45} {c['killed']:>7} {c['survived']:>8} " + " ".join(f"{c[s]:>12}" for s in states)
              + f"  {share}")
    tested = total["killed"] + total["survived"]
    print(f"{'all':45} {total['killed']:>7} {total['survived']:>8} "
          + " ".join(f"{total[s]:>12}" for s in states)
          + (f"  {100 * total['killed'] / tested:5.1f} %" if tested else ""))
    print(f"(modules: {', '.join(modules)}; killed share = killed / (killed + survived); "
          "'no tests' = no selected test runs that code, e.g. code run only in the model worker process)")
    print(f"survivors: cd {workdir} && {python} -m mutmut results; {python} -m mutmut show <name>")
    return 0


def main(argv: list[str]) -> int:
    python = os.environ.get("PYTHON", str(ROOT / ".venv" / "bin" / "python"))
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["mutmut"]
    modules = argv or list(config["only_mutate"])
    workdir = Path(os.environ.get("MUTATION_WORKDIR") or tempfile.mkdtemp(prefix="ftdojo-mutation-"))
    workdir.mkdir(parents=True, exist_ok=True)
    snapshot(workdir)
    set_list(workdir / "pyproject.toml", "only_mutate", modules)
    if os.environ.get("MUTATION_TESTS"):
        set_list(workdir / "pyproject.toml", "pytest_add_cli_args_test_selection", os.environ["MUTATION_TESTS"].split())
    print(f"mutmut on {', '.join(modules)} in {workdir} (nice 19, one worker)", flush=True)
    run = subprocess.run(["nice", "-n", "19", python, "-m", "mutmut", "run", "--max-children", "1"], cwd=workdir)
    if run.returncode not in (0, 1):
        print(f"mutmut run exited with {run.returncode}")
    return report(workdir, python, modules)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
