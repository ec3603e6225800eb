"""Progress bars for long tool calls (training steps, generated prompts)."""

from __future__ import annotations

from typing import Any


class ProgressBar:
    """A tqdm bar on stderr, created on the first update (totals come from the model process).

    ``update(done, total)`` takes the absolute count and advances the bar by the
    difference through tqdm's own ``update``, so rates are measured from the
    bar's start (setting ``n`` directly made tqdm report nonsense first rates).
    ``tqdm.auto`` picks a notebook widget when ipywidgets is present and falls
    back to plain text otherwise.
    """

    def __init__(self, desc: str, unit: str, enabled: bool):
        self.desc, self.unit, self.enabled = desc, unit, enabled
        self._bar: Any = None
        self._done = 0

    def update(self, done: int | None, total: int | None, **postfix: Any) -> None:
        if not self.enabled or done is None:
            return
        if self._bar is None:
            from tqdm.auto import tqdm

            self._bar = tqdm(total=total, desc=self.desc, unit=self.unit, leave=False, dynamic_ncols=True)
        if total and self._bar.total != total:
            self._bar.total = total
        if postfix:
            self._bar.set_postfix(postfix, refresh=False)
        delta = int(done) - self._done
        if delta > 0:
            self._bar.update(delta)
            self._done = int(done)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None
