"""The reference the generation tests compare against: ``model.generate`` on each prompt alone
(the same loop the evaluation benchmark times as its one-by-one baseline)."""

from __future__ import annotations

from ftdojo_benchmarks.perf.eval_throughput import generate_each as one_by_one

__all__ = ["one_by_one"]
