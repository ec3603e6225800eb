"""The error classes a failed tool call reports, and the exceptions behind them.

Every failure that reaches the agent carries one :class:`ErrorClass` (the
paper's four): CONFIG (hyper-parameters or model name the agent can fix), OOM
(the run ran out of memory), DATA (the data is missing, malformed or unusable)
and ENV (anything else: the environment's own fault). Inside the environment
failures are exceptions with precise types; at the env boundary they become
values tagged with their class.
"""

from __future__ import annotations

import enum


class ErrorClass(enum.StrEnum):
    """Why an operation failed; a ``str`` so JSON and string comparisons see ``"DATA"`` etc."""

    CONFIG = "CONFIG"
    OOM = "OOM"
    DATA = "DATA"
    ENV = "ENV"


class DataError(ValueError):
    """The data cannot be used: unknown dataset or field, empty result, missing or malformed file.

    Reported as :attr:`ErrorClass.DATA`: the agent can fix it with data operations.
    """


class ConfigError(ValueError):
    """The hyper-parameters, the model name or the trl/peft set-up they imply are invalid.

    Reported as :attr:`ErrorClass.CONFIG`: the agent can fix it with ``set_config``.
    """
