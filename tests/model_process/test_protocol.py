"""The wire protocol: every message round-trips; a malformed one is a loud error, never dropped."""

from __future__ import annotations

import io
import json
import sys
import textwrap

import pytest

from ftdojo_gym.errors import ErrorClass
from ftdojo_gym.model_process.client import ModelWorker
from ftdojo_gym.model_process.protocol import (
    ExitRequest,
    GenerateRequest,
    GenerateResult,
    LogEvent,
    PingRequest,
    PingResult,
    ProgressEvent,
    ProtocolError,
    ReplyLine,
    RequestLine,
    TrainRequest,
    TrainResult,
)
from ftdojo_gym.model_process.worker import serve

REQUESTS = [
    PingRequest(),
    ExitRequest(),
    TrainRequest(base_model="tiny", data_path="/d/train.jsonl", output_dir="/o", config={"lora_r": 8},
                 debug=True, max_tokens=500, max_samples=100),
    TrainRequest(base_model="tiny", data_path="d", output_dir="o", config={}),
    GenerateRequest(model="tiny", adapter="/o", prompts=["Hi", "é ≥ 2"], max_new_tokens=[3, 4], batch_size=2),
    GenerateRequest(model="tiny", adapter=None, prompts=[]),
]

REPLIES = [
    ReplyLine(1, "ping", PingResult(status="ok", pid=1234)),
    ReplyLine(None, "ping", PingResult.failure(ErrorClass.ENV, "bad request line: ...")),
    ReplyLine(2, "train", LogEvent(step=1, loss=2.5, learning_rate=1e-3, tokens=100, max_steps=3)),
    ReplyLine(2, "train", LogEvent(step=2, loss=None, learning_rate=0.0, tokens=200, max_steps=3)),
    ReplyLine(2, "train", TrainResult(status="stopped_budget", steps=3, train_tokens=300, seconds=1.5,
                                      loss_head=[[1, 2.5], [2, 2.0]], final_loss=2.0, model_dir="/o",
                                      warnings=["w"], train_seconds=1.0, samples=40)),
    ReplyLine(3, "train", TrainResult.failure(ErrorClass.DATA, "DataError: empty", "Traceback...", 0.2)),
    ReplyLine(4, "generate", ProgressEvent(done=2, total=5)),
    ReplyLine(4, "generate", GenerateResult(status="ok", outputs=["a", "ü"], seconds=0.5)),
    ReplyLine(5, "generate", GenerateResult.failure(ErrorClass.OOM, "out of memory")),
]


@pytest.mark.parametrize("request_", REQUESTS, ids=lambda r: type(r).__name__)
def test_every_request_round_trips(request_):
    line = RequestLine(7, request_)
    encoded = line.encode()
    assert encoded.endswith("\n") and encoded.count("\n") == 1
    assert RequestLine.decode(encoded) == line


@pytest.mark.parametrize("reply", REPLIES, ids=lambda r: f"{r.op}-{type(r.message).__name__}")
def test_every_reply_round_trips(reply):
    decoded = ReplyLine.decode(reply.encode())
    assert decoded == reply
    assert decoded.event == reply.event
    # error classes come back as the enum, and still compare as strings
    if getattr(reply.message, "error_class", None) is not None:
        assert isinstance(decoded.message.error_class, ErrorClass)
        assert decoded.message.error_class == str(reply.message.error_class)


def wire(line) -> dict:
    return json.loads(line.encode())


def test_an_unknown_key_is_a_protocol_error():
    obj = wire(RequestLine(1, REQUESTS[2]))
    obj["args"]["learning_rate"] = 1e-3
    with pytest.raises(ProtocolError, match=r"unknown key\(s\) \['learning_rate'\]") as err:
        RequestLine.decode(json.dumps(obj))
    assert (err.value.request_id, err.value.op) == (1, "train")  # the child can still address its answer
    obj = wire(REPLIES[4])
    obj["data"]["surprise"] = 1
    with pytest.raises(ProtocolError, match="surprise"):
        ReplyLine.decode(json.dumps(obj))
    obj = wire(REPLIES[0])
    obj["extra"] = True
    with pytest.raises(ProtocolError, match="extra"):
        ReplyLine.decode(json.dumps(obj))


def test_a_missing_key_is_a_protocol_error():
    obj = wire(RequestLine(1, REQUESTS[3]))
    del obj["args"]["max_samples"]  # a default in Python, still required on the wire
    with pytest.raises(ProtocolError, match=r"missing key\(s\) \['max_samples'\]"):
        RequestLine.decode(json.dumps(obj))
    obj = wire(REPLIES[2])
    del obj["data"]["tokens"]
    with pytest.raises(ProtocolError, match="tokens"):
        ReplyLine.decode(json.dumps(obj))
    obj = wire(REPLIES[0])
    del obj["id"]
    with pytest.raises(ProtocolError, match="id"):
        ReplyLine.decode(json.dumps(obj))


@pytest.mark.parametrize("path, value", [
    (("args", "debug"), "yes"),
    (("args", "max_samples"), True),  # a bool is not a number
    (("args", "max_samples"), 2.5),
    (("args", "config"), ["lora_r", 8]),
    (("args", "base_model"), None),
    (("id",), "1"),
])
def test_a_wrong_type_in_a_request_is_a_protocol_error(path, value):
    obj = wire(RequestLine(1, REQUESTS[2]))
    target = obj
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    with pytest.raises(ProtocolError, match="expected|must be"):
        RequestLine.decode(json.dumps(obj))


@pytest.mark.parametrize("field, value", [
    ("status", "maybe"), ("error_class", "BUG"), ("steps", "3"), ("loss_head", [[1, "x"]]),
    ("final_loss", "nan"), ("warnings", "w"),
])
def test_a_wrong_type_in_a_reply_is_a_protocol_error(field, value):
    obj = wire(REPLIES[4])
    obj["data"][field] = value
    with pytest.raises(ProtocolError, match=field):
        ReplyLine.decode(json.dumps(obj))


@pytest.mark.parametrize("line, match", [
    ("not json\n", "not JSON"),
    ("[1, 2]\n", "JSON object"),
    ('{"id": 1, "op": "dance", "args": {}}\n', "unknown op 'dance'"),
])
def test_a_malformed_request_line_is_a_protocol_error(line, match):
    with pytest.raises(ProtocolError, match=match):
        RequestLine.decode(line)


def test_an_unknown_event_or_op_in_a_reply_is_a_protocol_error():
    obj = wire(REPLIES[2])
    obj["event"] = "chatter"
    with pytest.raises(ProtocolError, match="unknown event 'chatter'"):
        ReplyLine.decode(json.dumps(obj))
    obj = wire(REPLIES[0])
    obj["op"] = "dance"
    with pytest.raises(ProtocolError, match="unknown op 'dance'"):
        ReplyLine.decode(json.dumps(obj))


def test_the_child_answers_an_unreadable_request_with_an_env_error_and_goes_on():
    """serve() in-process: no torch needed, the requests never reach training or generation."""
    bad = wire(RequestLine(3, REQUESTS[2]))
    bad["args"]["nope"] = 1
    stdin = io.StringIO(json.dumps(bad) + "\n" + "garbage\n" + RequestLine(4, PingRequest()).encode()
                        + RequestLine(5, ExitRequest()).encode() + RequestLine(6, PingRequest()).encode())
    out = io.StringIO()
    serve(stdin, out)
    replies = [ReplyLine.decode(line) for line in out.getvalue().splitlines()]
    assert [(r.id, r.op) for r in replies] == [(3, "train"), (None, "ping"), (4, "ping"), (5, "exit")]
    assert isinstance(replies[0].message, TrainResult)
    assert replies[0].message.error_class == ErrorClass.ENV and "nope" in replies[0].message.error
    assert replies[1].message.error_class == "ENV" and "not JSON" in replies[1].message.error
    assert replies[2].message.status == "ok" and isinstance(replies[2].message.pid, int)


#: A stand-in child: answers every request with one fixed line, whatever it was asked.
FAKE_CHILD = textwrap.dedent("""
    import json, sys
    reply = sys.argv[1]
    for line in sys.stdin:
        request = json.loads(line)
        sys.stdout.write(reply.replace("ID", str(request["id"])) + "\\n")
        sys.stdout.flush()
""")


def fake_worker(reply: str) -> ModelWorker:
    return ModelWorker(command=(sys.executable, "-c", FAKE_CHILD, reply))


@pytest.mark.parametrize("reply, match", [
    ('{"id": ID, "op": "train", "event": "result", "data": {"status": "ok", "surprise": 1}}', "unknown key"),
    ('{"id": ID, "op": "train", "event": "result", "data": {"status": "ok"}}', "missing key"),
    ("this is not JSON", "not JSON"),
    ('{"id": ID, "op": "ping", "event": "result", "data": {"status": "ok", "pid": 1, "error_class": null, '
     '"error": "", "traceback": ""}}', "'ping' result to a 'train' request"),
])
def test_the_client_turns_a_malformed_reply_into_an_env_error_value(tmp_path, reply, match):
    with fake_worker(reply) as worker:
        request = TrainRequest(base_model="tiny", data_path=str(tmp_path / "d.jsonl"),
                               output_dir=str(tmp_path / "o"), config={})
        result = worker.train(request, timeout=60)
        assert isinstance(result, TrainResult)
        assert result.status == "error" and result.error_class == ErrorClass.ENV
        assert "malformed reply" in result.error and match in result.error
        assert worker.pid is None  # killed: its stream can no longer be trusted
        # the env goes on: the next call starts a fresh child
        again = worker.train(request, timeout=60)
        assert again.error_class == ErrorClass.ENV and worker.restarts == 1


def test_the_client_checks_generate_arguments_before_sending():
    with fake_worker("never read") as worker:
        bad = worker.generate("tiny", None, "not a list", 5)  # type: ignore[arg-type]
        assert bad.status == "error" and bad.error_class == ErrorClass.DATA
        assert worker.generate("tiny", None, ["a", "b"], [1], timeout=5).error_class == ErrorClass.CONFIG
        assert worker.generate("tiny", None, ["a"], 4, batch_size=0, timeout=5).error_class == "CONFIG"
        assert worker.pid is None  # nothing was sent, no child started
