"""Progress reporting for long computations: a text bar with an ETA.

Turn it on around any computation::

    with bigalign.progress():
        bigalign.compare_layers(a, b)

The threaded scheduler reports every finished task; the plain loop reports
every block; a ``distributed.Client`` shows distributed's progress bar and the
dashboard link.
"""

from __future__ import annotations

import contextlib
import contextvars
import sys
import time
from typing import Any, Iterator, TextIO

__all__ = ["progress", "Bar", "active"]

_ACTIVE: contextvars.ContextVar["Bar | None"] = contextvars.ContextVar("bigalign_progress", default=None)


class Bar:
    """A throttled one-line progress bar with elapsed time and ETA."""

    def __init__(self, stream: TextIO | None = None, width: int = 30, interval: float = 0.25):
        self.stream = stream or sys.stderr
        self.width = width
        self.interval = interval
        self.label = ""
        self.total = 0
        self.done = 0
        self.t0 = time.perf_counter()
        self._last = 0.0

    def start(self, total: int, label: str = "") -> None:
        self.total, self.done, self.label = max(1, int(total)), 0, label
        self.t0 = time.perf_counter()
        self._last = 0.0
        self._draw(force=True)

    def update(self, k: int = 1) -> None:
        self.done = min(self.total, self.done + k)
        self._draw(force=self.done == self.total)

    def finish(self) -> None:
        self.done = self.total
        self._draw(force=True)
        self.stream.write("\n")
        self.stream.flush()

    def _draw(self, force: bool = False) -> None:
        now = time.perf_counter()
        if not force and now - self._last < self.interval:
            return
        self._last = now
        frac = self.done / self.total
        elapsed = now - self.t0
        eta = (elapsed / frac - elapsed) if frac > 0 else float("nan")
        fill = int(round(frac * self.width))
        eta_txt = f"ETA {eta:6.1f} s" if frac > 0 and frac < 1 else ("done" if frac >= 1 else "ETA    ? s")
        self.stream.write(
            f"\r{self.label[:28]:<28} [{'#' * fill}{'.' * (self.width - fill)}] {100 * frac:5.1f}% "
            f"{self.done}/{self.total}  {elapsed:6.1f} s  {eta_txt}"
        )
        self.stream.flush()


def active() -> Bar | None:
    """The progress bar of the current context, if progress is on."""
    return _ACTIVE.get()


@contextlib.contextmanager
def progress(stream: TextIO | None = None) -> Iterator[Bar]:
    """Show a progress bar with an ETA for bigalign computations inside the block."""
    bar = Bar(stream)
    token = _ACTIVE.set(bar)
    try:
        yield bar
    finally:
        _ACTIVE.reset(token)


def dask_callback(bar: Bar, label: str) -> Any:
    """A dask local-scheduler callback driving ``bar``."""
    from dask.callbacks import Callback

    class _CB(Callback):
        def _start_state(self, dsk: Any, state: Any) -> None:
            bar.start(len(state["ready"]) + len(state["waiting"]) + len(state["running"]) + len(state["finished"]), label)

        def _posttask(self, key: Any, result: Any, dsk: Any, state: Any, worker_id: Any) -> None:
            bar.update()

        def _finish(self, dsk: Any, state: Any, errored: bool) -> None:
            if not errored:
                bar.finish()

    return _CB()
