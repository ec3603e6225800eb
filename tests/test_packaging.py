"""The built wheel: collision-free import names, every module shipped, and it runs from a fresh venv.

The repository keeps its top-level folders ``agents/`` and ``benchmarks/``; the
wheel installs them as ``ftdojo_agents`` and ``ftdojo_benchmarks`` so that OpenAI's
Agents SDK (``openai-agents``, imported as ``agents``) can live beside it.
"""

from __future__ import annotations

import os
import subprocess
import sys
import sysconfig
import venv
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
#: repository folder -> import name in the wheel
PACKAGE_DIRS = {"ftdojo_gym": "ftdojo_gym", "agents": "ftdojo_agents", "benchmarks": "ftdojo_benchmarks"}


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "-w", str(out),
                    str(ROOT)], check=True, cwd=out)
    (path,) = out.glob("ftdojo_gym-*.whl")
    return path


def test_wheel_has_only_collision_free_top_level_names_and_every_module(wheel: Path):
    names = zipfile.ZipFile(wheel).namelist()
    top = {n.split("/")[0] for n in names if not n.split("/")[0].endswith(".dist-info")}
    assert top == set(PACKAGE_DIRS.values())
    shipped = {n for n in names if n.endswith((".py", ".md", ".typed"))}
    for folder, import_name in PACKAGE_DIRS.items():
        for path in (ROOT / folder).rglob("*.py"):
            if "__pycache__" in path.parts:
                continue
            rel = path.relative_to(ROOT / folder).as_posix()
            assert f"{import_name}/{rel}" in shipped, f"{folder}/{rel} is missing from the wheel (pyproject packages)"
    assert "ftdojo_agents/prompts/ft_system.md" in shipped
    entry_points = zipfile.ZipFile(wheel).read(next(n for n in names if n.endswith("entry_points.txt"))).decode()
    assert "ftdojo = ftdojo_agents.cli:main" in entry_points


def test_wheel_installs_beside_an_agents_package_and_runs_an_episode(wheel: Path, tmp_path: Path, tiny_model: str):
    env_dir = tmp_path / "venv"
    venv.EnvBuilder(with_pip=False).create(env_dir)
    python = env_dir / "bin" / "python"
    site = Path(subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
                               check=True, capture_output=True, text=True).stdout.strip())
    # The heavy dependencies come from the test's own environment, as a plain path entry: its
    # .pth files (the editable install of this checkout) are not processed from there.
    (site / "deps.pth").write_text(sysconfig.get_path("purelib") + "\n")
    # A stand-in for openai-agents, which installs a top-level package named `agents`.
    (site / "agents").mkdir()
    (site / "agents" / "__init__.py").write_text("OPENAI_AGENTS_SDK = True\n")
    subprocess.run([sys.executable, "-m", "pip", "--python", str(python), "install", "-q", "--no-deps", str(wheel)],
                   check=True)
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH",)}
    work = tmp_path / "elsewhere"
    work.mkdir()

    def run(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run(args, cwd=work, env=env, capture_output=True, text=True, timeout=600)

    check = run(str(python), "-c", "import agents, ftdojo_gym, ftdojo_agents; "
                "print(agents.OPENAI_AGENTS_SDK, ftdojo_gym.__file__, ftdojo_agents.__file__)")
    assert check.returncode == 0, check.stderr
    flag, gym_file, agents_file = check.stdout.split()
    assert flag == "True" and gym_file.startswith(str(site)) and agents_file.startswith(str(site))
    help_run = run(str(env_dir / "bin" / "ftdojo"), "--help")
    assert help_run.returncode == 0 and "run" in help_run.stdout, help_run.stderr
    episode = run(str(env_dir / "bin" / "ftdojo"), "run", "--agent", "random", "--task", "FTDojo/TableBench-v0",
                  "--base-model", "tiny", "--eval-limit", "2", "--max-steps", "3", "--no-progress",
                  "--out", str(work / "traj.jsonl"))
    assert episode.returncode == 0, episode.stdout[-2000:] + episode.stderr[-2000:]
    lines = (work / "traj.jsonl").read_text().splitlines()
    assert '"type": "summary"' in lines[-1]
