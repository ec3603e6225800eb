"""Mutation testing of the core modules with mutmut 3 (``make mutation``; not part of CI).

The modules to mutate are listed once, in ``[tool.mutmut] only_mutate`` of
``pyproject.toml`` (with the fast test selection mutmut runs against them).
Arguments override that list for one run::

    tools/mutation.sh                                   # every module of the list
    tools/mutation.sh ftdojo_gym/data/workspace.py      # one module
    MUTATION_TESTS="tests/data/test_workspace.py" tools/mutation.sh ftdojo_gym/data/workspace.py
                                                        # ... against fewer tests (faster)
    tools/mutation.sh --survivors ftdojo_gym/episode.py # ... and print the diff of every mutant not killed
    MUTATION_WORKDIR=/tmp/m tools/mutation.sh --report-only --survivors
                                                        # report (and diffs) of an earlier run in /tmp/m
    MUTATION_MUTANTS="*x_load_pairs__mutmut_*" tools/mutation.sh ftdojo_gym/model_process/sft.py
                                                        # ... only the mutants of one function (globs)
    MUTATION_WORKDIR=/tmp/m MUTATION_TESTS="tests/data" tools/mutation.sh --rerun-survivors
                                                        # run the survivors of /tmp/m again against
                                                        # (more) tests: a fast selection first, the
                                                        # slow tests only for what it left alive

Two shares are printed: the killed share, ``caught / (caught + survived)``, where
caught = killed + timeout (a mutant that makes a test hang is caught by the time
limit, as mutmut counts it) and a mutant no selected test reaches ("no tests") is
left out; and the strict share, which counts those as not caught too. Mutants a
run did not get to ("not checked", an interrupted run) count in neither.

The run works on a snapshot of the working tree (tracked and untracked, not
ignored, files) in a scratch folder, so the tree others edit is never touched
and mutmut's ``mutants/`` folder stays out of it. It runs at low priority with
one worker process, then prints killed / survived (and the other mutmut states)
per module and the killed share of the mutants that were tested.
"""

from __future__ import annotations

import collections
import json
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


#: Run in the scratch folder: print the diff of each mutant named in ``sys.argv[1:]``.
SHOW_DIFFS = """
import sys
from mutmut.mutation.data import SourceFileMutationData
from mutmut.mutation.diff_apply import get_diff_for_mutant
from mutmut.utils.file_utils import walk_mutatable_files

wanted = set(sys.argv[1:])
for path in walk_mutatable_files():
    data = SourceFileMutationData(path=path)
    data.load()
    for name in sorted(data.exit_code_by_key):
        if name in wanted:
            print(f"# {name}")
            print(get_diff_for_mutant(name, path=path))
"""


def show_survivors(workdir: Path, python: str) -> None:
    """Print the diff of each mutant that survived or that no selected test reached."""
    alive = [name for name, status in statuses(workdir, python).items() if status in ("survived", "no tests")]
    subprocess.run([python, "-c", SHOW_DIFFS, *alive], cwd=workdir, check=False)


#: Statuses of earlier runs in a scratch folder (mutmut forgets them when the test selection
#: changes), kept by ``--rerun-survivors`` so that the report covers every mutant.
EARLIER = "ftdojo-earlier-statuses.json"


def statuses(workdir: Path, python: str) -> dict[str, str]:
    """``{mutant: status}`` of the run in ``workdir``, earlier runs' statuses filled in."""
    out = subprocess.run([python, "-m", "mutmut", "results", "--all", "true"], cwd=workdir, capture_output=True,
                         text=True)
    now = {}
    for line in out.stdout.splitlines():
        name, _, status = line.strip().rpartition(": ")
        if "__mutmut_" in name:
            now[name] = status
    earlier = json.loads((workdir / EARLIER).read_text()) if (workdir / EARLIER).exists() else {}
    return {**{k: v for k, v in earlier.items() if k in now}, **{k: v for k, v in now.items() if v != "not checked"}}


def rerun_survivors(workdir: Path, python: str) -> None:
    """Run the surviving (and unreached) mutants of an earlier run in ``workdir`` again, with the tests of the
    working tree now (copied in afresh) and the selection in ``MUTATION_TESTS`` if set."""
    before = statuses(workdir, python)
    (workdir / EARLIER).write_text(json.dumps(before))
    names = [name for name, status in before.items() if status in ("survived", "no tests")]
    if not names:
        print("no surviving mutants to run again")
        return
    shutil.rmtree(workdir / "tests", ignore_errors=True)
    shutil.copytree(ROOT / "tests", workdir / "tests", ignore=shutil.ignore_patterns("__pycache__"))
    if os.environ.get("MUTATION_TESTS"):
        set_list(workdir / "pyproject.toml", "pytest_add_cli_args_test_selection", os.environ["MUTATION_TESTS"].split())
    print(f"running {len(names)} surviving mutants again in {workdir}", flush=True)
    subprocess.run(["nice", "-n", "19", python, "-m", "mutmut", "run", "--max-children", "1", *names], cwd=workdir)


def report(workdir: Path, python: str, modules: list[str]) -> int:
    counts: dict[str, collections.Counter] = collections.defaultdict(collections.Counter)
    for name, status in statuses(workdir, python).items():
        counts[name.rsplit(".", 1)[0]][status] += 1
    if not counts:
        print("no mutant results (see mutmut's output above)")
        return 1
    states = sorted({s for c in counts.values() for s in c} - {"killed", "survived"})
    header = f"{'module':45} {'killed':>7} {'survived':>8} " + " ".join(f"{s:>12}" for s in states) + "  killed share"
    print(header)
    total = collections.Counter()
    for module in sorted(counts):
        c = counts[module]
        total.update(c)
        tested = c["killed"] + c["timeout"] + c["survived"]
        share = f"{100 * (c['killed'] + c['timeout']) / tested:5.1f} %" if tested else "    -"
        print(f"{module:45} {c['killed']:>7} {c['survived']:>8} " + " ".join(f"{c[s]:>12}" for s in states)
              + f"  {share}")
    caught = total["killed"] + total["timeout"]
    tested = caught + total["survived"]
    print(f"{'all':45} {total['killed']:>7} {total['survived']:>8} "
          + " ".join(f"{total[s]:>12}" for s in states)
          + (f"  {100 * caught / tested:5.1f} %" if tested else ""))
    reached = tested + total["no tests"]
    if reached:
        print(f"strict share, (killed + timeout) / (killed + timeout + survived + no tests): "
              f"{100 * caught / reached:5.1f} %")
    print(f"(modules: {', '.join(modules)}; killed share = (killed + timeout) / (killed + timeout + survived); "
          "'no tests' = no selected test runs that code, e.g. code run only in the model worker process)")
    print(f"survivors: cd {workdir} && {python} -m mutmut results; {python} -m mutmut show <name>")
    return 0


def main(argv: list[str]) -> int:
    python = os.environ.get("PYTHON", str(ROOT / ".venv" / "bin" / "python"))
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["mutmut"]
    flags = {a for a in argv if a.startswith("--")}
    unknown = flags - {"--survivors", "--report-only", "--rerun-survivors"}
    if unknown:
        sys.exit(f"unknown option(s) {sorted(unknown)}; see {__file__}'s docstring")
    argv = [a for a in argv if a not in flags]
    modules = argv or list(config["only_mutate"])
    if flags & {"--report-only", "--rerun-survivors"}:
        if not os.environ.get("MUTATION_WORKDIR"):
            sys.exit("--report-only and --rerun-survivors use an earlier run: set MUTATION_WORKDIR to its folder")
        workdir = Path(os.environ["MUTATION_WORKDIR"])
        if "--rerun-survivors" in flags:
            rerun_survivors(workdir, python)
        if "--survivors" in flags:
            show_survivors(workdir, python)
        return report(workdir, python, modules)
    workdir = Path(os.environ.get("MUTATION_WORKDIR") or tempfile.mkdtemp(prefix="ftdojo-mutation-"))
    workdir.mkdir(parents=True, exist_ok=True)
    snapshot(workdir)
    set_list(workdir / "pyproject.toml", "only_mutate", modules)
    if os.environ.get("MUTATION_TESTS"):
        set_list(workdir / "pyproject.toml", "pytest_add_cli_args_test_selection", os.environ["MUTATION_TESTS"].split())
    print(f"mutmut on {', '.join(modules)} in {workdir} (nice 19, one worker)", flush=True)
    # MUTATION_MUTANTS: mutant name globs (e.g. "*.sft.x_load_pairs__mutmut_*"), to run a part of a module
    only = os.environ.get("MUTATION_MUTANTS", "").split()
    run = subprocess.run(["nice", "-n", "19", python, "-m", "mutmut", "run", "--max-children", "1", *only],
                         cwd=workdir)
    if run.returncode not in (0, 1):
        print(f"mutmut run exited with {run.returncode}")
    if "--survivors" in flags:
        show_survivors(workdir, python)
    return report(workdir, python, modules)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
