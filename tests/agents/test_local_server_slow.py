"""The LLM agents on a real local model with no network: ``transformers serve`` on SmolLM2-135M.

One episode each of the ReAct baseline (``ftdojo run --local-model``, which
starts and stops the server itself) and FT-Agent (against a server started
by :func:`serve_local_model`), on TableBench with the env's ``tiny`` base
model, so training is cheap and the time goes to the real LLM over HTTP.
A 135M model plans badly; what is checked is the plumbing: real requests,
usage reported by the server, an observation every step, a clean end, one
trajectory line per step.

Run alone (other jobs share the cores):
``flock /tmp/ftdojo-cpu.lock .venv/bin/python -m pytest tests/agents/test_local_server_slow.py -q -m slow``
"""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from ftdojo_agents.cli import main
from ftdojo_agents.local_server import LocalServer, serve_local_model

pytestmark = pytest.mark.slow

#: Small limits: a handful of short LLM replies, a 6-step episode, 4 validation items.
COMMON = ["--task", "FTDojo/TableBench-v0", "--base-model", "tiny", "--eval-limit", "4", "--max-steps", "6",
          "--max-tokens", "48", "--timeout", "300", "--no-progress",
          # one request per attempt (no SDK retries); a failure becomes a safe action at once
          "--agent-arg", "attempts=1", "--agent-arg", "max_retries=0"]


def _lines(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def _check_trajectory(out: Path, served_requests: int) -> dict[str, Any]:
    """The checks both agents share; returns the summary."""
    lines = _lines(out)
    assert lines[0]["type"] == "header" and lines[-1]["type"] == "summary"
    steps = [x for x in lines if x["type"] == "step"]
    summary = lines[-1]
    # one line per step, every step with an observation (metrics and budget) and an env answer
    assert len(lines) == len(steps) + 2 and len(steps) == summary["steps"] >= 1
    assert [s["step"] for s in steps] == list(range(1, len(steps) + 1))
    for s in steps:
        assert s["metrics"] and s["budget"] and isinstance(s["result"], dict) and s["tool"]
        assert s["agent_error"] is None, s["agent_error"]
    # the episode ended by itself, not by an exception or an interrupt
    assert summary["terminated"] or summary["truncated"]
    assert not summary["interrupted"] and summary["agent_errors"] == 0
    assert steps[-1]["terminated"] or steps[-1]["truncated"]
    # real HTTP: the server answered, and its own token counts are in the trajectory
    usage = summary["llm_usage"]
    assert usage["requests"] >= 1 and usage["prompt_tokens"] > 0 and usage["completion_tokens"] > 0
    assert usage["estimated_requests"] == 0  # every answered request carried the server's usage
    assert served_requests == usage["requests"] - usage["failed_requests"] >= 1
    assert "smollm2-135m" in summary["llm_versions"]["llm_server_model"]  # the model that answered
    return summary


@pytest.fixture(scope="module")
def smollm2_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalServer]:
    log = tmp_path_factory.mktemp("serve") / "server.log"
    with serve_local_model("smollm2-135m", log_path=log) as server:
        yield server


def test_react_episode_on_a_local_smollm2_started_by_the_cli(tmp_path: Path) -> None:
    out = tmp_path / "react.jsonl"
    code = main(["run", "--agent", "react", "--local-model", "smollm2-135m", *COMMON, "--out", str(out),
                 "--workdir", str(tmp_path / "work"), "--agent-arg", "max_reprompts=1",
                 "--agent-arg", "max_result_chars=1500"])
    assert code == 0
    log = out.with_suffix(".server.log").read_text()
    served = sum(1 for line in log.splitlines() if "POST /v1/chat/completions" in line and " 200" in line)
    summary = _check_trajectory(out, served)
    header = _lines(out)[0]
    # SmolLM2's chat template renders no tools: the CLI chose JSON-in-text tool calls and its 8k window
    assert header["args"]["tool_mode"] == "text" and header["args"]["context_window"] == 8192
    assert header["versions"]["llm_tool_mode"] == "text"
    assert summary["steps"] <= 6
    # the server is gone once the run is over
    port = int(header["args"]["base_url"].rsplit(":", 1)[1].split("/")[0])
    with pytest.raises(OSError), socket.create_connection(("127.0.0.1", port), timeout=2):
        pass


def test_ft_agent_episode_on_a_local_smollm2(smollm2_server: LocalServer, tmp_path: Path) -> None:
    out = tmp_path / "ft.jsonl"
    before = smollm2_server.chat_requests()
    code = main(["run", "--agent", "ft-agent", "--base-url", smollm2_server.base_url,
                 "--model", smollm2_server.model, "--tool-mode", "text", "--context-window", "8192", *COMMON,
                 "--out", str(out), "--workdir", str(tmp_path / "work"),
                 "--agent-arg", "max_iterations=1", "--agent-arg", "max_plan_attempts=1",
                 "--agent-arg", 'config_overrides={"max_steps": 2, "batch_size": 2, "max_len": 128}'])
    assert code == 0
    _check_trajectory(out, smollm2_server.chat_requests() - before)
    assert smollm2_server.process.poll() is None  # the shared server outlives the run
