"""The grader fingerprint: a hash of the code that turns a task's outputs into scores.

Stored results (outcome tables, the outcome cache's evaluations, the task table's
rows) carry it, so that a grader change makes them stale instead of being served.

It hashes the task class's name and version and the source of everything its
grading methods (:data:`GRADING_METHODS`) can reach: the methods themselves
(along the class's ``ftdojo_gym`` bases), the functions, classes and methods
they name (followed transitively through their module's globals and the
class's attributes), the statements that assign the module-level values they
read (their source: a cache such a value holds does not move the hash), and every
``ftdojo_gym.grading`` module the task's module imports. What only builds the
data (a subtask's generator, a source's noise) is not in it: the task version
covers the data, so one subtask's new data does not invalidate another
subtask's stored scores, while an edit of a helper shared with grading does.
"""

from __future__ import annotations

import ast
import functools
import hashlib
import inspect
import re
import sys
import types
from collections.abc import Iterator
from typing import Any

#: Task methods that decide scores: grading, the split score, extra scores and the
#: generation limit (which cuts what can be graded).
GRADING_METHODS = ("grade", "aggregate", "extra_scores", "max_new_tokens_for")
_OURS = "ftdojo_gym"


def grader_fingerprint(task: Any) -> str:
    """A 16-hex-digit hash of ``task``'s grading code and version (a real-data task: its base's)."""
    base = getattr(task, "base", task)
    return _fingerprint(type(base), str(getattr(base, "version", "")))


@functools.cache
def _fingerprint(task_type: type, version: str) -> str:
    digest = hashlib.sha256(f"{task_type.__module__}.{task_type.__qualname__}\x00{version}\x00".encode())
    for name, text in sorted(grading_sources(task_type).items()):
        digest.update(f"{name}\x00{text}\x00".encode())
    return digest.hexdigest()[:16]


def grading_sources(task_type: type) -> dict[str, str]:
    """``{qualified name: source (or repr of a value)}`` of what ``task_type``'s grading reaches."""
    own = [k for k in task_type.__mro__ if k.__module__.startswith(_OURS)]
    parts: dict[str, str] = {}
    todo: list[Any] = [vars(k)[m] for k in own for m in GRADING_METHODS if m in vars(k)]
    module = sys.modules.get(task_type.__module__)
    for value in vars(module).values() if module else ():
        if isinstance(value, types.ModuleType) and value.__name__.startswith(f"{_OURS}.grading"):
            todo.append(value)
        elif getattr(value, "__module__", "").startswith(f"{_OURS}.grading") and callable(value):
            todo.append(sys.modules[value.__module__])
    seen: set[int] = set()
    while todo:
        obj = _unwrap(todo.pop())
        if id(obj) in seen:
            continue
        seen.add(id(obj))
        if isinstance(obj, types.ModuleType):
            parts[obj.__name__] = _source(obj)
        elif inspect.isclass(obj):
            parts[f"{obj.__module__}.{obj.__qualname__}"] = _source(obj)
            todo += [v for v in vars(obj).values() if callable(_unwrap(v))]
        elif inspect.isfunction(obj):
            parts[f"{obj.__module__}.{obj.__qualname__}"] = _source(obj)
            for name in _names(obj.__code__):
                if name in obj.__globals__:
                    todo += _follow(obj.__globals__, name, parts)
                for k in own:  # self.<name>: a method, or a class-level value
                    if name in vars(k):
                        value = vars(k)[name]
                        if callable(_unwrap(value)):  # methods, static/class methods, properties
                            todo.append(value)
                        elif (text := _constant_text(value)) is not None:
                            parts[f"{k.__module__}.{k.__qualname__}.{name}"] = text
    return parts


def _follow(namespace: dict[str, Any], name: str, parts: dict[str, str]) -> list[Any]:
    """What a global ``name`` leads to: our functions, classes and modules; values are recorded."""
    value = namespace[name]
    if isinstance(value, types.ModuleType):
        return [value] if value.__name__.startswith(_OURS) else []
    if inspect.isfunction(value) or inspect.isclass(value):
        return [value] if getattr(value, "__module__", "").startswith(_OURS) else []
    module = namespace.get("__name__", "")
    if callable(value) or not module.startswith(_OURS):
        return []
    # A module-level value: the statement that assigns it (its source, not its current
    # content, which a cache may have filled), or for an imported constant its repr.
    text = _assignments(module).get(name)
    if text is None:
        text = _constant_text(value)
    if text is not None:
        parts[f"{module}.{name}"] = text
    return []


@functools.cache
def _assignments(module_name: str) -> dict[str, str]:
    """``{name: source of the top-level statement that assigns it}`` of one of our modules."""
    try:
        source = inspect.getsource(sys.modules[module_name])
    except (KeyError, OSError, TypeError):
        return {}
    out: dict[str, str] = {}
    for node in ast.parse(source).body:
        targets = (node.targets if isinstance(node, ast.Assign)
                   else [node.target] if isinstance(node, (ast.AnnAssign, ast.AugAssign)) else [])
        for target in targets:
            for leaf in ast.walk(target):
                if isinstance(leaf, ast.Name):
                    out[leaf.id] = out.get(leaf.id, "") + (ast.get_source_segment(source, node) or "")
    return out


def _constant_text(value: Any) -> str | None:
    """A process-independent text of an immutable value (sets sorted: their order follows the
    per-process string hash), or None for anything else."""
    if value is None or isinstance(value, (str, bytes, int, float, complex, bool)):
        return repr(value)
    if isinstance(value, re.Pattern):
        return f"re.compile({value.pattern!r}, {value.flags})"
    if isinstance(value, (tuple, frozenset)):
        items = [_constant_text(v) for v in value]
        if any(t is None for t in items):
            return None
        return f"({', '.join(items)})" if isinstance(value, tuple) else f"frozenset({sorted(items)})"
    return None


def _names(code: types.CodeType) -> Iterator[str]:
    yield from code.co_names
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            yield from _names(const)


def _unwrap(obj: Any) -> Any:
    if isinstance(obj, (staticmethod, classmethod)):
        return obj.__func__
    if isinstance(obj, property):
        return obj.fget
    if isinstance(obj, functools.partial):
        return obj.func
    return inspect.unwrap(obj) if inspect.isfunction(obj) else obj


def _source(obj: Any) -> str:
    """The source of ``obj``; empty for code without a file (a dataclass's generated methods
    follow from their class's source, which is hashed)."""
    try:
        return inspect.getsource(obj)
    except (OSError, TypeError):
        return ""
