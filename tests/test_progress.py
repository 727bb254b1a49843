"""Progress output a person reads: one line per job, human labels, no \\r in logs, nothing doubled."""

from __future__ import annotations

import io

import numpy as np
import pytest

import bigalign
import sys as progress_sys
from bigalign.errors import InvalidInputError
from bigalign.progress import Bar, active, describe, job, progress, set_progress


class FakeTTY(io.StringIO):
    def isatty(self):
        return True


def _data(n=400):
    rng = np.random.default_rng(0)
    return {f"l{i}": rng.standard_normal((n, 5)) for i in range(3)}


def test_labels_are_for_people():
    assert describe("KernelTileStatistic") == "exact tiles"
    assert describe("MadeUpThingStatistic") == "made up thing"
    assert describe("RBF CKA") == "RBF CKA"


def test_log_output_has_no_carriage_return_and_no_doubled_line():
    log = io.StringIO()
    bar = Bar(log)
    with job(0, "x"):  # no bar active in the context: a no-op
        pass
    bar.begin_job(2, "RBF CKA")
    for _ in range(2):
        bar.start(4, "KernelTileStatistic")
        for _ in range(4):
            bar.update()
        bar.finish()
    bar.end_job()
    text = log.getvalue()
    assert "\r" not in text
    lines = text.splitlines()
    assert len(lines) == len(set(lines)), lines
    assert lines[0].startswith("RBF CKA, exact tiles  pair 1/2") and "pair 2/2" in lines[-1]
    assert "job ETA" in lines[0]


def test_terminal_output_is_one_line_per_job_redrawn_in_place():
    tty = FakeTTY()
    with progress(tty) as bar:
        with job(3, "distance correlation"):
            for _ in range(3):
                bar.start(2, "DistanceTileStatistic")
                bar.update(2)
                bar.finish()
    text = tty.getvalue()
    assert text.count("\n") == 1 and text.endswith("\n"), repr(text)
    assert "\r" in text and "pair 3/3" in text.split("\r")[-1]


def test_an_error_starts_on_its_own_line():
    tty = FakeTTY()
    with pytest.raises(RuntimeError):
        with progress(tty) as bar:
            bar.start(10, "MomentStatistic")
            bar.update(3)
            raise RuntimeError("boom")
    assert tty.getvalue().endswith("\n")
    bar2 = Bar(tty)
    bar2.start(5)
    bar2.write_line("error: something")
    assert "\nerror: something\n" in tty.getvalue()


def test_compare_layers_inside_a_job_draws_pairs(capsys):
    log = io.StringIO()
    with progress(log), job(9, "distance correlation"):
        bigalign.compare_layers(_data(), metric="dcor", scheduler="sync")
    text = log.getvalue()
    assert "distance correlation, exact distance tiles  pair 1/9" in text or "pair 1/9" in text
    assert "Statistic" not in text and "\r" not in text


def test_default_bar_only_in_terminals_and_can_be_turned_off(monkeypatch):
    monkeypatch.delenv("BIGALIGN_PROGRESS", raising=False)
    monkeypatch.setattr(progress_sys, "stderr", io.StringIO())
    assert active() is None  # not a terminal: silent by default
    tty = FakeTTY()
    monkeypatch.setattr(progress_sys, "stderr", tty)
    bar = active()
    assert bar is not None and bar.delay > 0  # a terminal: a bar, but only for work that lasts
    bar.start(3, "MomentStatistic")
    bar.update(3)
    bar.finish()
    assert tty.getvalue() == "", "quick work prints nothing"
    try:
        set_progress(False)
        assert active() is None
        set_progress(True)
        assert active() is not None
        with progress(False):
            assert active() is None
    finally:
        set_progress("auto")
    monkeypatch.setenv("BIGALIGN_PROGRESS", "0")
    assert active() is None
    with pytest.raises(InvalidInputError):
        set_progress("sometimes")
