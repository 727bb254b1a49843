"""Progress reporting for long computations: one bar per job, with the job's ETA.

In a terminal or a notebook, a computation that runs for more than a couple of
seconds shows a bar by default (a text line on stderr; tqdm's notebook widget in
Jupyter when tqdm is installed); quick calls print nothing.  Turn it off with
``bigalign.set_progress(False)`` (or the environment variable
``BIGALIGN_PROGRESS=0``), on everywhere (logs and pipes included) with
``set_progress(True)``, or for one block::

    with bigalign.progress():            # a bar on stderr, from the first step
        bigalign.compare_layers(a, b)
    with bigalign.progress(False):       # silent
        bigalign.cka(x, y)

A *job* (``bigalign compare``, a report, or :func:`job` around your own loop)
is one line: ``RBF CKA, exact tiles  pair 3/25  [####......]  40%  12 s, job ETA
1.4 min``.  In a terminal the line is redrawn in place; in a log (not a
terminal) there is no carriage return: a line when a step ends and at most one
every 30 seconds while it runs.  The threaded scheduler reports every finished
task; the plain loop every block; a ``distributed.Client`` shows distributed's
own bar (on stderr from the command line) and the dashboard link.
"""

from __future__ import annotations

import contextlib
import contextvars
import os
import re
import sys
import time
from typing import Any, Iterator, TextIO

from .errors import InvalidInputError

__all__ = ["progress", "set_progress", "job", "Bar", "active", "describe"]

_ACTIVE: contextvars.ContextVar["Bar | None | bool"] = contextvars.ContextVar("bigalign_progress", default=None)

#: what the engine's internal statistics are called on the bar
_ROADS = {
    "KernelTileStatistic": "exact tiles",
    "DistanceTileStatistic": "exact distance tiles",
    "PooledTileStatistic": "exact tiles, all layers at once",
    "PooledFeatureStatistic": "random features, all layers at once",
    "ProjectionStatistic": "random projections",
    "BlockDcovStatistic": "row blocks",
    "NeighbourTileStatistic": "exact neighbour search",
    "QueryStatistic": "sampled neighbour queries",
    "SplitMomentStatistic": "streamed moments, held-out split",
    "RsaTileStatistic": "distance-matrix tiles",
    "UnitMomentStatistic": "streamed moments",
    "MomentStatistic": "streamed moments",
    "SketchStatistic": "streamed sketch",
}

#: the default for the Python API: "auto" (a bar in terminals and notebooks for work > AUTO_DELAY s), True, False
_DEFAULT: dict[str, Any] = {"mode": "auto"}
AUTO_DELAY = 2.0


def describe(label: str) -> str:
    """A reader's name for an engine label (a statistic's class name), e.g. 'exact tiles'."""
    if label in _ROADS:
        return _ROADS[label]
    if label.endswith("Statistic"):
        words = re.findall(r"[A-Z][a-z0-9]*|[a-z0-9]+", label[: -len("Statistic")])
        return " ".join(w.lower() for w in words) or label
    return label


def _isatty(stream: Any) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):
        return False


def _in_notebook() -> bool:
    shell = sys.modules.get("IPython")
    if shell is None or "ipykernel" not in sys.modules:
        return False
    try:
        return type(shell.get_ipython()).__name__ == "ZMQInteractiveShell"
    except Exception:  # pragma: no cover - odd IPython states
        return False


def _fmt_s(s: float) -> str:
    if s != s or s == float("inf"):
        return "?"
    if s < 90:
        return f"{s:.0f} s" if s >= 10 else f"{s:.1f} s"
    if s < 5400:
        return f"{s / 60:.1f} min"
    return f"{s / 3600:.1f} h"


class Bar:
    """A throttled progress line: the current step (one engine pass) inside an optional job.

    Parameters
    ----------
    stream : text stream, default sys.stderr
    width : int
        Characters of the bar itself.
    interval : float, optional
        Seconds between redraws: 0.25 in a terminal, 30 in a log.
    delay : float
        Draw nothing until a step has run this long (the automatic bar uses 2 s).
    """

    def __init__(self, stream: TextIO | None = None, width: int = 24, interval: float | None = None, delay: float = 0.0):
        self.stream = stream or sys.stderr
        self.tty = _isatty(self.stream)
        self.width = width
        self.interval = interval if interval is not None else (0.25 if self.tty else 30.0)
        self.delay = delay
        self.label = ""
        self.total = 0
        self.done = 0
        self.t0 = time.perf_counter()
        self._last = 0.0
        self._last_text = ""
        self._pending = False  # a TTY line is drawn and not ended yet
        self._shown = False
        self.job_label = ""
        self.job_total = 0
        self.job_index = 0
        self.job_t0 = 0.0
        self._in_job = False
        self._note: str | None = None

    # -- jobs -------------------------------------------------------------------
    def begin_job(self, total: int, label: str = "", note: str | None = None) -> None:
        """Start a job of ``total`` steps (e.g. layer pairs) named ``label``; the line shows step i/total.

        ``note`` (e.g. the planned cost) is written on a line of its own when
        the first step starts, i.e. once the computation has checked its
        arguments and begins: a call that fails on its arguments prints nothing.
        """
        self.job_label, self.job_total, self.job_index = label, max(0, int(total)), 0
        self.job_t0 = time.perf_counter()
        self._in_job = True
        self._note = note

    def end_job(self) -> None:
        self._note = None
        if self._in_job and self._shown and self.job_total:
            self._draw(force=True, final=True)
        self._end_line()
        self._in_job = False
        self.job_label, self.job_total, self.job_index = "", 0, 0

    # -- steps (called by the engine) ---------------------------------------------
    def start(self, total: int, label: str = "") -> None:
        if self._note:
            note, self._note = self._note, None
            self.write_line(note)
        self._end_line() if not self._in_job else None
        self.total, self.done, self.label = max(1, int(total)), 0, describe(label)
        self.t0 = time.perf_counter()
        self._last = 0.0 if self.tty else self.t0  # a log gets its first line when the step ends or after `interval`
        if self._in_job:
            self.job_index += 1
        self._draw(force=self.tty)

    def update(self, k: int = 1) -> None:
        self.done = min(self.total, self.done + k)
        self._draw(force=self.done == self.total and self.tty)

    def finish(self) -> None:
        self.done = self.total
        self._draw(force=True, final=not self._in_job or not self.tty)
        if not self._in_job:
            self._end_line()

    def write_line(self, text: str) -> None:
        """Write a message on a line of its own (ending the bar's line first)."""
        self._end_line()
        self.stream.write(text.rstrip("\n") + "\n")
        self.stream.flush()

    def close(self) -> None:
        self._end_line()

    # -- drawing ----------------------------------------------------------------
    def _end_line(self) -> None:
        if self._pending:
            self.stream.write("\n")
            self.stream.flush()
            self._pending = False

    def _text(self, now: float) -> str:
        frac = self.done / self.total if self.total else 0.0
        elapsed = now - self.t0
        what = ", ".join(p for p in (self.job_label, self.label) if p) or "bigalign"
        parts = [what]
        if self._in_job and self.job_total:
            parts.append(f"pair {min(self.job_index, max(self.job_total, self.job_index))}/{max(self.job_total, self.job_index)}")
        elif self._in_job and self.job_index:
            parts.append(f"step {self.job_index}")
        fill = int(round(frac * self.width))
        parts.append(f"[{'#' * fill}{'.' * (self.width - fill)}] {100 * frac:3.0f}%")
        if self._in_job and self.job_total:
            job_elapsed = now - self.job_t0
            steps = (self.job_index - 1) + frac
            eta = job_elapsed / steps * self.job_total - job_elapsed if steps > 0 else float("nan")
            finished = frac >= 1 and self.job_index >= self.job_total
            parts.append(f"{_fmt_s(job_elapsed)}, " + ("done" if finished else f"job ETA {_fmt_s(max(0.0, eta))}"))
        else:
            eta = elapsed / frac - elapsed if frac > 0 else float("nan")
            shown = now - self.job_t0 if self._in_job else elapsed  # a job of unknown length: its time so far
            parts.append(f"{_fmt_s(shown)}, " + ("done" if frac >= 1 else f"ETA {_fmt_s(eta)}"))
        return "  ".join(parts)

    def _draw(self, force: bool = False, final: bool = False) -> None:
        now = time.perf_counter()
        if not self._shown and now - (self.job_t0 if self._in_job else self.t0) < self.delay:
            return
        if not force and now - self._last < self.interval:
            return
        text = self._text(now)
        if text == self._last_text and not final:
            return
        if self.tty:
            pad = max(0, len(self._last_text) - len(text)) if self._pending else 0
            self.stream.write(("\r" if self._pending else "") + text + " " * pad)
            self._pending = True
            if final:
                self._end_line()
        else:
            if text == self._last_text:
                return
            if final or self.done < self.total or not self._in_job:
                self.stream.write(text + "\n")
        self.stream.flush()
        self._last, self._last_text, self._shown = now, text, True


class _NotebookBar(Bar):
    """The same steps drawn with tqdm's notebook widget (one widget per step)."""

    def __init__(self, delay: float = 0.0):
        super().__init__(stream=sys.stderr, delay=delay)
        self._widget: Any = None

    def start(self, total: int, label: str = "") -> None:
        self._close_widget()
        super().start(total, label)

    def _draw(self, force: bool = False, final: bool = False) -> None:
        now = time.perf_counter()
        if self._widget is None:
            if now - self.t0 < self.delay and not self._shown:
                return
            from tqdm.notebook import tqdm

            desc = ", ".join(p for p in (self.job_label, self.label) if p)
            if self._in_job and self.job_total:
                desc += f" (pair {self.job_index}/{self.job_total})"
            self._widget = tqdm(total=self.total, desc=desc, leave=True)
            self._shown = True
        self._widget.n = self.done
        self._widget.refresh()
        if final or self.done >= self.total:
            self._close_widget()

    def _close_widget(self) -> None:
        if self._widget is not None:
            self._widget.close()
            self._widget = None

    def close(self) -> None:
        self._close_widget()

    def end_job(self) -> None:
        self._close_widget()
        self._in_job = False
        self._note = None

    def write_line(self, text: str) -> None:
        sys.stderr.write(text.rstrip("\n") + "\n")


_AUTO: dict[str, Bar] = {}


def _auto_bar() -> Bar | None:
    """The default bar of the Python API: in a terminal or notebook, for work that runs more than AUTO_DELAY s."""
    mode = _DEFAULT["mode"]
    env = os.environ.get("BIGALIGN_PROGRESS")
    if env is not None and mode == "auto":
        mode = env.strip().lower() not in ("0", "false", "no", "off", "")
        mode = "auto" if env.strip().lower() == "auto" else mode
    if mode is False:
        return None
    if mode is True:
        key = "always"
        if key not in _AUTO or _AUTO[key].stream is not sys.stderr:
            _AUTO[key] = Bar(sys.stderr)
        return _AUTO[key]
    if _in_notebook():
        try:
            import tqdm.notebook  # noqa: F401
        except ImportError:
            pass
        else:
            if "notebook" not in _AUTO:
                _AUTO["notebook"] = _NotebookBar(delay=AUTO_DELAY)
            return _AUTO["notebook"]
    if _isatty(sys.stderr):
        if "tty" not in _AUTO or _AUTO["tty"].stream is not sys.stderr:
            _AUTO["tty"] = Bar(sys.stderr, delay=AUTO_DELAY)
        return _AUTO["tty"]
    return None


def set_progress(enabled: bool | str = "auto") -> None:
    """Choose the default progress display of the Python API.

    ``"auto"`` (default): a bar on stderr in a terminal, or tqdm's widget in a
    notebook, for work that runs more than a couple of seconds.  ``True``: a
    bar always, logs and pipes included.  ``False``: never (also
    ``BIGALIGN_PROGRESS=0`` in the environment).  ``with progress():``
    overrides it for a block.
    """
    if enabled not in (True, False, "auto"):
        raise InvalidInputError(f"set_progress takes True, False or 'auto'; got {enabled!r}.")
    _DEFAULT["mode"] = enabled


def active() -> Bar | None:
    """The progress bar of the current context: the ``progress()`` block's, else the default one, or None."""
    bar = _ACTIVE.get()
    if bar is False:
        return None
    if bar is None:
        return _auto_bar()
    return bar  # type: ignore[return-value]


@contextlib.contextmanager
def progress(stream: TextIO | bool | None = None) -> Iterator[Bar | None]:
    """Show a progress bar with an ETA for bigalign computations inside the block.

    ``progress()`` draws on stderr (or ``stream``) from the first step;
    ``progress(False)`` keeps the block silent.  A bar's unfinished line is
    ended when the block exits, so an error message starts on a line of its own.
    """
    if stream is False:
        token = _ACTIVE.set(False)
        try:
            yield None
        finally:
            _ACTIVE.reset(token)
        return
    bar = Bar(None if stream is True else stream)  # type: ignore[arg-type]
    token = _ACTIVE.set(bar)
    try:
        yield bar
    finally:
        _ACTIVE.reset(token)
        bar.close()


@contextlib.contextmanager
def job(total: int, label: str = "", note: str | None = None) -> Iterator[Bar | None]:
    """Group the steps inside the block into one job of ``total`` steps (e.g. layer pairs) on one line.

    ``note`` is written on its own line when the first step starts (after the
    computation has validated its arguments), and not at all without a bar.
    """
    bar = active()
    if bar is None:
        yield None
        return
    bar.begin_job(total, label, note)
    try:
        yield bar
    finally:
        bar.end_job()


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
            else:
                bar.close()

    return _CB()
