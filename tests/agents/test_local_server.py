"""``serve_local_model``: a clear, quick error when the server dies or never gets healthy; clean stop.

These tests launch small stand-in servers (``command=``), not ``transformers
serve``; the real model is driven by ``test_local_server_slow.py``.
"""

from __future__ import annotations

import json
import os
import sys
import textwrap
import time
import urllib.request
from pathlib import Path

import pytest

from ftdojo_agents import local_server
from ftdojo_agents.cli import build_parser
from ftdojo_agents.local_server import (
    LocalServerError,
    free_port,
    model_properties,
    serve_local_model,
)

#: A stand-in server: answers /health, spawns a grandchild, and ignores SIGTERM if told to.
FAKE_SERVER = textwrap.dedent("""
    import signal, subprocess, sys
    from http.server import BaseHTTPRequestHandler, HTTPServer
    port, mode = int(sys.argv[1]), sys.argv[2]
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
    print("grandchild", child.pid, flush=True)
    if mode == "stubborn":
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
    class H(BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(200 if self.path == "/health" else 404)
            self.end_headers()
            self.wfile.write(b'{"status": "ok"}')
        def log_message(self, *a):
            print(self.requestline, flush=True)
    HTTPServer(("127.0.0.1", port), H).serve_forever()
""")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie still answers kill(0); it is dead for our purpose.
    try:
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    except OSError:
        return False


def _wait_dead(pid: int, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not _alive(pid):
            return True
        time.sleep(0.05)
    return False


def test_a_server_that_exits_at_once_gives_a_clear_error_quickly(tmp_path: Path) -> None:
    cmd = [sys.executable, "-c", "import sys; print('fatal: cannot load the model', file=sys.stderr); sys.exit(3)"]
    started = time.monotonic()
    with pytest.raises(LocalServerError) as err, serve_local_model("some-model", command=cmd, startup_timeout=60):
        pass
    assert time.monotonic() - started < 10
    message = str(err.value)
    assert "exited with code 3" in message and "fatal: cannot load the model" in message


def test_a_server_that_never_gets_healthy_times_out_and_is_killed(tmp_path: Path) -> None:
    pid_file = tmp_path / "pid"
    cmd = [sys.executable, "-c",
           f"import os, time; open({str(pid_file)!r}, 'w').write(str(os.getpid())); print('loading...', flush=True); "
           "time.sleep(600)"]
    started = time.monotonic()
    with pytest.raises(LocalServerError) as err, serve_local_model("m", command=cmd, startup_timeout=1.5):
        pass
    assert time.monotonic() - started < 15
    assert "not healthy within 1.5 s" in str(err.value) and "loading..." in str(err.value)
    assert _wait_dead(int(pid_file.read_text()))


@pytest.mark.parametrize("mode", ["polite", "stubborn"])
def test_the_whole_process_group_is_stopped_on_exit(tmp_path: Path, mode: str) -> None:
    cmd = [sys.executable, "-c", FAKE_SERVER, "{port}", mode]
    log = tmp_path / "server.log"
    with serve_local_model("m", command=cmd, log_path=log, startup_timeout=30, stop_timeout=1.0) as server:
        assert server.base_url == f"http://127.0.0.1:{server.port}/v1" and str(server) == server.base_url
        with urllib.request.urlopen(f"http://127.0.0.1:{server.port}/health", timeout=5) as resp:
            assert resp.status == 200
        leader = server.process.pid
        grandchild = int(next(line.split()[1] for line in log.read_text().splitlines() if line.startswith("grandchild")))
        assert _alive(leader) and _alive(grandchild)
        assert server.llm_kwargs()["tool_mode"] == "text"  # not a model folder: no template with tools
    assert _wait_dead(leader) and _wait_dead(grandchild)
    assert "GET /health" in log.read_text()


def test_port_given_is_used_and_ports_are_free() -> None:
    port = free_port()
    cmd = [sys.executable, "-c", FAKE_SERVER, "{port}", "polite"]
    with serve_local_model("m", port=port, command=cmd, startup_timeout=30) as server:
        assert server.port == port


def test_model_properties_of_a_model_folder(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text(json.dumps({"max_position_embeddings": 8192}))
    (tmp_path / "chat_template.jinja").write_text("{% for m in messages %}{{ m['content'] }}{% endfor %}")
    assert model_properties(tmp_path) == (8192, False)
    (tmp_path / "chat_template.jinja").write_text("{% if tools %}{{ tools | tojson }}{% endif %}")
    assert model_properties(tmp_path) == (8192, True)
    assert model_properties("org/hub-id") == (None, False)


def test_cli_local_model_options() -> None:
    args = build_parser().parse_args(["run", "--agent", "react", "--local-model", "smollm2-135m"])
    assert args.local_model == "smollm2-135m" and args.base_url is None and args.context_window is None


def test_cli_local_model_is_for_llm_agents_only(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    from ftdojo_agents.cli import main

    assert main(["run", "--agent", "manual-sft", "--local-model", "smollm2-135m", "--out", str(tmp_path / "t.jsonl")]) == 1
    assert "--local-model is for the LLM agents" in capsys.readouterr().err


def test_cli_local_model_points_the_agent_at_the_server(server, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The wiring of ``--local-model``, with the scripted server standing in for ``transformers serve``."""
    import contextlib

    import ftdojo_agents.cli
    from ftdojo_agents.local_server import LocalServer
    from ftdojo_agents.scripted_server import tool_call

    started: dict = {}

    @contextlib.contextmanager
    def fake_serve(model, threads=None, log_path=None):
        started.update(model=model, threads=threads, log_path=log_path)
        yield LocalServer(base_url=server.base_url, model="/models/smollm2-135m", host="127.0.0.1", port=0,
                          process=None, log_path=Path(log_path), context_window=8192, supports_tools=False)  # type: ignore[arg-type]
        started["stopped"] = True

    monkeypatch.setattr(ftdojo_agents.cli, "serve_local_model", fake_serve)
    server.push(tool_call("submit", {}))
    out = tmp_path / "traj.jsonl"
    assert ftdojo_agents.cli.main(["run", "--agent", "react", "--local-model", "smollm2-135m", "--local-threads", "1",
                            "--base-model", "tiny", "--eval-limit", "2", "--max-steps", "3", "--no-progress",
                            "--out", str(out), "--workdir", str(tmp_path / "work")]) == 0
    assert started == {"model": "smollm2-135m", "threads": 1, "log_path": tmp_path / "traj.server.log", "stopped": True}
    header = json.loads(out.read_text().splitlines()[0])
    assert header["args"]["base_url"] == server.base_url and header["args"]["model"] == "/models/smollm2-135m"
    assert header["args"]["tool_mode"] == "text" and header["args"]["context_window"] == 8192
    body = server.requests[0]
    assert body["model"] == "/models/smollm2-135m" and "tools" not in body  # JSON-in-text tool calls


def test_an_unknown_model_is_a_clear_error() -> None:
    with pytest.raises(LocalServerError, match="no local model 'no-such-model'"), serve_local_model("no-such-model"):
        pass


def test_server_threads_default_to_half_the_cpus_this_process_is_given(monkeypatch: pytest.MonkeyPatch) -> None:
    """Half the CPUs of the affinity mask (``taskset``, a cgroup cpuset), not of the machine."""
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1, 2, 3}, raising=False)
    assert local_server.default_threads() == 2
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {5}, raising=False)
    assert local_server.default_threads() == 1
