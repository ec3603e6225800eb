"""Outcome tables shipped with the package (``<task name>.jsonl`` and its ``.sha256``); see
:mod:`ftdojo_gym.outcome_table` for the format and ``benchmarks/build_outcome_table.py`` to build one."""
