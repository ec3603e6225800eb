"""``ftdojo run``: trajectory JSONL with versions and a summary; Ctrl-C keeps what was written."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from ftdojo_agents.cli import build_parser, main
from ftdojo_agents.scripted_server import OpenAITestServer, slow, tool_call

REPO = Path(__file__).resolve().parents[2]


def _lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def _argv(server: OpenAITestServer, out: Path, *extra: str) -> list[str]:
    return ["run", "--task", "FTDojo/TableBench-v0", "--agent", "react", "--base-url", server.base_url,
            "--model", "scripted", "--api-key", "sk-secret-test-key", "--base-model", "tiny", "--eval-limit", "2",
            "--max-steps", "10", "--timeout", "30", "--out", str(out), "--price-in", "1.0", "--price-out", "2.0",
            *extra]


def test_run_writes_trajectory_with_versions_and_summary(server: OpenAITestServer, tmp_path: Path,
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    server.push(tool_call("list_sources", {}), tool_call("fetch", {"source": "nope"}), tool_call("submit", {}))
    out = tmp_path / "traj.jsonl"
    assert main(_argv(server, out, "--workdir", str(tmp_path / "work"))) == 0
    lines = _lines(out)
    assert [x["type"] for x in lines] == ["header", "step", "step", "step", "summary"]
    header = lines[0]
    versions = header["versions"]
    assert versions["ftdojo-gym"] and versions["task"].startswith("TableBench@") and versions["llm_model"] == "scripted"
    assert versions["openai"] and versions["torch"]
    assert "sk-secret-test-key" not in out.read_text()  # the key is never recorded
    assert header["task_info"]["description"].startswith("# FT-Dojo task TableBench")
    steps = lines[1:4]
    assert [s["action"]["tool"] for s in steps] == ["list_sources", "fetch", "submit"]
    assert steps[1]["ok"] is False and steps[1]["error_class"] == "DATA"
    assert steps[0]["llm_usage"]["requests"] == 1 and steps[0]["metrics"]["steps_taken"] == 1
    summary = lines[-1]
    assert summary["terminated"] and summary["submitted_run"] == "base" and not summary["interrupted"]
    assert summary["llm_usage"]["requests"] == 3 and summary["llm_usage"]["cost_usd"] > 0
    assert summary["llm_versions"]["llm_server_model"] == server.model
    assert "FT-Dojo run" in capsys.readouterr().out


def test_ctrl_c_stops_cleanly_and_keeps_the_trajectory(server: OpenAITestServer, tmp_path: Path) -> None:
    # The second LLM reply never comes in time: the run is interrupted while waiting for it.
    server.push(tool_call("list_sources", {}), slow(60.0))
    out = tmp_path / "traj.jsonl"
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "ftdojo_agents.cli", *_argv(server, out, "--no-progress")],
                            cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            # A job started in the background inherits SIGINT ignored, and Python then
                            # installs no KeyboardInterrupt handler: give the child a terminal's default.
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        deadline = time.monotonic() + 240  # a cold start on a loaded CI machine is slow
        while time.monotonic() < deadline and len(server.requests) < 2:
            assert proc.poll() is None, proc.communicate()[1][-2000:]
            time.sleep(0.2)
        assert len(server.requests) >= 2, "the run never reached its second LLM call"
        proc.send_signal(signal.SIGINT)
        stdout, stderr = proc.communicate(timeout=180)  # closing the env waits for a cold worker
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, stderr[-2000:]
    lines = _lines(out)
    assert [x["type"] for x in lines] == ["header", "step", "summary"]
    assert lines[1]["action"]["tool"] == "list_sources"
    assert lines[-1]["interrupted"] is True and lines[-1]["steps"] == 1
    assert "Interrupted" in stderr and "Traceback" not in stderr


def test_parser_defaults_and_agent_args() -> None:
    args = build_parser().parse_args(["run", "--agent", "ft-agent", "--agent-arg", "max_iterations=2",
                                      "--agent-arg", "config_overrides={\"max_steps\": 4}"])
    from ftdojo_agents.cli import _agent_kwargs

    kwargs = _agent_kwargs(args)
    assert kwargs["max_iterations"] == 2 and kwargs["config_overrides"] == {"max_steps": 4}
    assert kwargs["tree_path"].endswith("trajectory.tree.json")
    assert args.task == "FTDojo/TableBench-v0"


def test_list_command(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["list"]) == 0
    out = capsys.readouterr().out
    assert "FTDojo/TableBench-v0" in out and "ft-agent" in out and "openhands-like" in out
