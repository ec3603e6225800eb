"""The wire protocol between the environment and its model process, every message type once.

The environment (:class:`ftdojo_gym.model_process.client.ModelWorker`) and the
child process (:mod:`ftdojo_gym.model_process.worker`) exchange JSON lines: one
JSON object per line, UTF-8, requests on the child's stdin, replies on its
stdout.

Request (parent -> child)::

    {"id": <int>, "op": <op>, "args": {<fields of the op's request type>}}

=============  =======================  ===========================================
``op``         ``args``                 replies
=============  =======================  ===========================================
``ping``       :class:`PingRequest`     one ``result``: :class:`PingResult`
``train``      :class:`TrainRequest`    ``log`` events (:class:`LogEvent`), then
                                        one ``result``: :class:`TrainResult`
``generate``   :class:`GenerateRequest` ``progress`` events (:class:`ProgressEvent`),
                                        then one ``result``: :class:`GenerateResult`
``exit``       :class:`ExitRequest`     one ``result``: :class:`PingResult`; the
                                        child then exits (so it does at EOF)
=============  =======================  ===========================================

While it starts up and while it works on a request, the child also sends a
``heartbeat`` event (:class:`HeartbeatEvent`, ``id`` null during start-up)
every :data:`HEARTBEAT_INTERVAL_S` seconds from a thread of its own, so that the
client can tell a slow op from a stopped or deadlocked child.

Reply (child -> parent), events and the result alike::

    {"id": <int or null>, "op": <op>, "event": "log" | "progress" | "result",
     "data": {<fields of the event's or the op's result type>}}

``id`` and ``op`` echo the request (``id`` is null when the child could not read
it); the ``result`` is always the request's last reply. Each ``data`` object
holds exactly the fields of its type: no field may be missing (defaults exist
only for Python callers), none may be unknown, each must have its type (an
``int`` is accepted where a ``float`` is expected, a ``bool`` never counts as a
number). Anything else is a :class:`ProtocolError`, raised by the decoding
functions and never papered over: the child answers an unreadable request with
an ENV error result, the client turns an unreadable reply into an ENV error
value.

A failed op is still a result (errors are values across the process
boundary): ``status`` ``"error"`` with an ``error_class`` (see
:class:`ftdojo_gym.errors.ErrorClass`), a one-line ``error`` and a bounded
``traceback``. Prompts and outputs travel only on these pipes.

This module does not import torch.
"""

from __future__ import annotations

import dataclasses
import enum
import json
import types
import typing
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal, TypeVar, Union

from ftdojo_gym.errors import ConfigError, DataError, ErrorClass
from ftdojo_gym.rules import MAX_TRAIN_SAMPLES

_T = TypeVar("_T")

#: Seconds between two heartbeats of a busy child.
HEARTBEAT_INTERVAL_S = 2.0


#: Prompts decoded together by default (env option ``eval_batch_size``). A decode step reads
#: every weight whatever the batch, so fuller batches are cheaper per prompt. Measured with
#: ``benchmarks/perf/eval_throughput.py`` (SmolLM2-135M, bf16, 64 TableBench prompts, idle
#: 2-core machine): 8.0 prompts/s at 16, 8.7 at 32, 8.5 at 64.
DEFAULT_EVAL_BATCH = 32

class ProtocolError(ValueError):
    """A line on the pipe is not a well-formed message: bad JSON, unknown or missing key, wrong type.

    ``request_id`` and ``op`` are what could be read before the error (None if
    nothing), so that the child can still address its error reply.
    """

    def __init__(self, message: str, request_id: int | None = None, op: str | None = None) -> None:
        super().__init__(message)
        self.request_id = request_id
        self.op = op


# -- results ---------------------------------------------------------------------


@dataclass(frozen=True)
class PingResult:
    """The child's answer to ``ping`` and ``exit``: it is up, and its pid; or why it is not."""

    status: Literal["ok", "error"]
    pid: int | None = None
    error_class: ErrorClass | None = None
    error: str = ""
    traceback: str = ""

    @classmethod
    def failure(cls, error_class: ErrorClass, error: str, traceback: str = "", seconds: float = 0.0
                ) -> PingResult:
        """An error result (``seconds`` is accepted for symmetry with the other results)."""
        return cls(status="error", error_class=error_class, error=error, traceback=traceback)


@dataclass(frozen=True)
class TrainResult:
    """Outcome of a training run, successful or not (errors are values here)."""

    status: Literal["ok", "error", "stopped_budget"]
    error_class: ErrorClass | None = None
    error: str = ""
    traceback: str = ""
    steps: int = 0
    train_tokens: int = 0
    seconds: float = 0.0
    #: ``[step, loss]`` of the first and the last few logged steps
    loss_head: list[list[float]] = field(default_factory=list)
    loss_tail: list[list[float]] = field(default_factory=list)
    final_loss: float | None = None
    model_dir: str | None = None
    warnings: list[str] = field(default_factory=list)
    #: seconds of the training loop alone (``seconds`` also counts model load and data prep)
    train_seconds: float = 0.0
    #: training samples used (after the sample cap and dropping unusable rows)
    samples: int = 0
    #: the child's peak resident memory so far, GB (``getrusage`` ``ru_maxrss``; 0.0 when unknown)
    peak_rss_gb: float = 0.0

    @property
    def ok(self) -> bool:
        """True when a model was trained and saved (also when the budget stopped it)."""
        return self.status in ("ok", "stopped_budget")

    @classmethod
    def failure(cls, error_class: ErrorClass, error: str, traceback: str = "", seconds: float = 0.0
                ) -> TrainResult:
        """A run that produced nothing: no steps, no tokens, no model."""
        return cls(status="error", error_class=error_class, error=error, traceback=traceback,
                   seconds=seconds)


@dataclass(frozen=True)
class GenerateResult:
    """Outputs of a generation request, in prompt order, or the error that prevented them."""

    status: Literal["ok", "error"]
    outputs: list[str] = field(default_factory=list)
    seconds: float = 0.0
    error_class: ErrorClass | None = None
    error: str = ""
    traceback: str = ""
    #: the child's peak resident memory so far, GB (``getrusage`` ``ru_maxrss``; 0.0 when unknown)
    peak_rss_gb: float = 0.0
    #: where the time went (prefill/decode seconds, padding, steps; see ``generation.greedy_decode``)
    stats: dict[str, float] = field(default_factory=dict)

    @classmethod
    def failure(cls, error_class: ErrorClass, error: str, traceback: str = "", seconds: float = 0.0
                ) -> GenerateResult:
        """A request that produced no output."""
        return cls(status="error", error_class=error_class, error=error, traceback=traceback,
                   seconds=seconds)


Result = PingResult | TrainResult | GenerateResult

# -- requests --------------------------------------------------------------------


@dataclass(frozen=True)
class PingRequest:
    """Start-up check: answered with the child's pid once its heavy imports are done."""

    OP: ClassVar[str] = "ping"
    RESULT: ClassVar[type[Result]] = PingResult


@dataclass(frozen=True)
class ExitRequest:
    """Ask the child to answer and exit (closing its stdin does the same, without the answer)."""

    OP: ClassVar[str] = "exit"
    RESULT: ClassVar[type[Result]] = PingResult


@dataclass(frozen=True)
class TrainRequest:
    """One SFT run: base model, JSONL data of prompt/completion rows, output folder, config.

    ``config`` holds :class:`ftdojo_gym.training_config.TrainConfig` fields
    (validated by the child, so that a bad one is a CONFIG result). ``debug``
    makes it a fail-fast run (about 100 samples, a few steps); ``max_tokens``
    stops training once that many tokens were processed; ``max_samples`` caps
    the samples used (never above :data:`ftdojo_gym.rules.MAX_TRAIN_SAMPLES`).
    """

    OP: ClassVar[str] = "train"
    RESULT: ClassVar[type[Result]] = TrainResult

    base_model: str
    data_path: str
    output_dir: str
    config: dict[str, Any]
    debug: bool = False
    max_tokens: int | None = None
    max_samples: int = MAX_TRAIN_SAMPLES


#: Generation precisions a request may name: ``"auto"`` is bf16 where the hardware has fast
#: bf16 (``resident.resolve_precision``), else fp32.
PRECISIONS = ("auto", "bf16", "fp32")


@dataclass(frozen=True)
class GenerateRequest:
    """Greedy completions of ``prompts`` (user messages) by ``model`` plus an optional ``adapter``.

    ``max_new_tokens`` is one limit for all prompts or one per prompt.
    :meth:`check` tells whether the values are usable; the client calls it
    before sending, the child before generating.
    """

    OP: ClassVar[str] = "generate"
    RESULT: ClassVar[type[Result]] = GenerateResult

    model: str
    adapter: str | None
    prompts: list[str]
    max_new_tokens: int | list[int] = 256
    batch_size: int = DEFAULT_EVAL_BATCH
    #: one of :data:`PRECISIONS` (see ``resident.resolve_precision``)
    precision: str = "auto"

    def check(self) -> None:
        """Raise :class:`~ftdojo_gym.errors.DataError` unless ``prompts`` is a list of strings,
        :class:`~ftdojo_gym.errors.ConfigError` unless ``max_new_tokens`` and ``batch_size``
        are positive ints (``max_new_tokens`` possibly one per prompt) and ``precision`` is
        one of :data:`PRECISIONS`."""
        prompts = self.prompts
        if not isinstance(prompts, list) or not all(isinstance(p, str) for p in prompts):
            raise DataError("'prompts' must be a list of strings")
        max_new = self.max_new_tokens
        if isinstance(max_new, list):
            if len(max_new) != len(prompts) or not all(_is_int(m) and m > 0 for m in max_new):
                raise ConfigError("'max_new_tokens' must be a positive int or one per prompt")
        elif not _is_int(max_new) or max_new < 1:
            raise ConfigError("'max_new_tokens' must be a positive int or one per prompt")
        if not _is_int(self.batch_size) or self.batch_size < 1:
            raise ConfigError("'batch_size' must be a positive int")
        if self.precision not in PRECISIONS:
            raise ConfigError(f"'precision' must be one of {list(PRECISIONS)}")


Request = PingRequest | ExitRequest | TrainRequest | GenerateRequest
#: Request type of each ``op``.
REQUEST_TYPES: dict[str, type[Request]] = {
    cls.OP: cls for cls in (PingRequest, ExitRequest, TrainRequest, GenerateRequest)}

# -- events ----------------------------------------------------------------------


@dataclass(frozen=True)
class LogEvent:
    """One optimizer step of a training run.

    ``loss`` is None when it was not finite (the run then stops as diverged);
    ``tokens`` is the running count of non-padding tokens processed.
    """

    EVENT: ClassVar[str] = "log"

    step: int
    loss: float | None
    learning_rate: float
    tokens: int
    max_steps: int


@dataclass(frozen=True)
class ProgressEvent:
    """``done`` of ``total`` prompts of a generation request are answered."""

    EVENT: ClassVar[str] = "progress"

    done: int
    total: int


@dataclass(frozen=True)
class HeartbeatEvent:
    """The child is alive and working on the request (sent every few seconds while busy,
    also while it starts up); ``seconds`` since the child began the current work."""

    EVENT: ClassVar[str] = "heartbeat"

    seconds: float


Event = LogEvent | ProgressEvent | HeartbeatEvent
#: Event type of each ``event`` tag other than ``result``.
EVENT_TYPES: dict[str, type[Event]] = {cls.EVENT: cls for cls in (LogEvent, ProgressEvent, HeartbeatEvent)}

# -- envelopes -------------------------------------------------------------------


@dataclass(frozen=True)
class RequestLine:
    """A request with the id its replies will echo."""

    id: int
    request: Request

    def encode(self) -> str:
        """The request as one JSON line (with its newline)."""
        wire = {"id": self.id, "op": self.request.OP, "args": fields_of(self.request)}
        return json.dumps(wire, ensure_ascii=False) + "\n"

    @classmethod
    def decode(cls, line: str) -> RequestLine:
        """Parse one request line; raises :class:`ProtocolError` (carrying the id and op it read).

        Values that have the right types but are unusable (see
        :class:`GenerateRequest`) raise its :class:`DataError` or :class:`ConfigError`.
        """
        obj = _json_object(line, "request")
        raw_id, op = obj.get("id"), obj.get("op")
        request_id = raw_id if _is_int(raw_id) else None
        known_op = op if isinstance(op, str) and op in REQUEST_TYPES else None
        try:
            _check_keys(obj, ("id", "op", "args"), "request")
            if request_id is None:
                raise ProtocolError(f"request 'id' must be an int, got {_kind(raw_id)}")
            if known_op is None:
                raise ProtocolError(f"unknown op {op!r}; expected one of {sorted(REQUEST_TYPES)}")
            request = decode_fields(REQUEST_TYPES[known_op], obj["args"], f"{known_op} args")
        except ProtocolError as exc:
            raise ProtocolError(str(exc), request_id, known_op) from None
        return cls(request_id, request)


@dataclass(frozen=True)
class ReplyLine:
    """An event or the result of the request ``id`` (an ``op`` request)."""

    id: int | None
    op: str
    message: Event | Result

    @property
    def event(self) -> str:
        """The wire tag: ``"log"``, ``"progress"``, ``"heartbeat"`` or ``"result"``."""
        return getattr(self.message, "EVENT", "result")

    def encode(self) -> str:
        """The reply as one JSON line (with its newline)."""
        wire = {"id": self.id, "op": self.op, "event": self.event, "data": fields_of(self.message)}
        return json.dumps(wire, ensure_ascii=False) + "\n"

    @classmethod
    def decode(cls, line: str) -> ReplyLine:
        """Parse one reply line; raises :class:`ProtocolError`."""
        obj = _json_object(line, "reply")
        _check_keys(obj, ("id", "op", "event", "data"), "reply")
        request_id, op, event = obj["id"], obj["op"], obj["event"]
        if request_id is not None and not _is_int(request_id):
            raise ProtocolError(f"reply 'id' must be an int or null, got {_kind(request_id)}")
        if op not in REQUEST_TYPES:
            raise ProtocolError(f"reply to unknown op {op!r}")
        if event == "result":
            message_type: type[Event | Result] = REQUEST_TYPES[op].RESULT
        elif event in EVENT_TYPES:
            message_type = EVENT_TYPES[event]
        else:
            raise ProtocolError(f"unknown event {event!r}; expected one of {sorted(EVENT_TYPES)} or 'result'")
        return cls(request_id, op, decode_fields(message_type, obj["data"], f"{op} {event}"))


# -- field codec -----------------------------------------------------------------


def fields_of(message: Any) -> dict[str, Any]:
    """The wire fields of a message: every dataclass field, none left out."""
    return {f.name: getattr(message, f.name) for f in dataclasses.fields(message)}


def decode_fields(cls: type[_T], data: object, where: str) -> _T:
    """Build ``cls`` from the JSON object ``data``, which must hold exactly its fields, each typed.

    Raises :class:`ProtocolError` naming ``where`` and the offending key.
    """
    if not isinstance(data, dict):
        raise ProtocolError(f"{where}: expected a JSON object, got {_kind(data)}")
    names = [f.name for f in dataclasses.fields(cls)]  # type: ignore[arg-type]
    _check_keys(data, names, where)
    hints = typing.get_type_hints(cls)
    return cls(**{name: _typed(data[name], hints[name], f"{where}.{name}") for name in names})


def _check_keys(data: dict[str, Any], names: typing.Iterable[str], where: str) -> None:
    expected = list(names)
    unknown = sorted(k for k in data if k not in expected)
    if unknown:
        raise ProtocolError(f"{where}: unknown key(s) {unknown}; expected {expected}")
    missing = [k for k in expected if k not in data]
    if missing:
        raise ProtocolError(f"{where}: missing key(s) {missing}")


def _typed(value: Any, tp: Any, where: str) -> Any:
    """``value`` checked against the annotation ``tp`` (enums are built from their value)."""
    origin = typing.get_origin(tp)
    if tp is Any:
        return value
    if origin in (Union, types.UnionType):
        for arm in typing.get_args(tp):
            try:
                return _typed(value, arm, where)
            except ProtocolError:
                continue
        raise ProtocolError(f"{where}: expected {_name(tp)}, got {_kind(value)}")
    if origin is Literal:
        if any(type(value) is type(a) and value == a for a in typing.get_args(tp)):
            return value
        raise ProtocolError(f"{where}: expected one of {list(typing.get_args(tp))}, got {value!r}")
    if origin is list:
        if not isinstance(value, list):
            raise ProtocolError(f"{where}: expected a list, got {_kind(value)}")
        (item,) = typing.get_args(tp)
        return [_typed(v, item, f"{where}[{i}]") for i, v in enumerate(value)]
    if origin is dict:
        key_type, value_type = typing.get_args(tp)
        if not isinstance(value, dict) or not all(isinstance(k, key_type) for k in value):
            raise ProtocolError(f"{where}: expected an object, got {_kind(value)}")
        return {k: _typed(v, value_type, f"{where}.{k}") for k, v in value.items()}
    if isinstance(tp, type) and issubclass(tp, enum.Enum):
        try:
            return tp(value)
        except ValueError:
            raise ProtocolError(f"{where}: expected one of {[m.value for m in tp]}, got {value!r}") from None
    ok = {type(None): value is None, bool: isinstance(value, bool), int: _is_int(value),
          float: _is_int(value) or isinstance(value, float), str: isinstance(value, str)}.get(tp)
    if ok is None:
        raise TypeError(f"{where}: the protocol cannot carry {tp!r}")  # a bug in this module
    if not ok:
        raise ProtocolError(f"{where}: expected {_name(tp)}, got {_kind(value)}")
    return value


def _json_object(line: str, what: str) -> dict[str, Any]:
    try:
        obj = json.loads(line)
    except ValueError as exc:
        raise ProtocolError(f"{what} line is not JSON ({exc}): {line[:200]!r}") from None
    if not isinstance(obj, dict):
        raise ProtocolError(f"{what} line must be a JSON object, got {_kind(obj)}")
    return obj


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _kind(value: object) -> str:
    return "null" if value is None else type(value).__name__


def _name(tp: Any) -> str:
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")
