"""A bad argument is rejected before anything is planned, printed or written.

The command line's "planned: ..." line and every progress bar appear only once
the computation has checked all of its arguments and starts its first pass, so a
mistyped option costs neither a misleading plan nor a pass over the data.
"""

import io

import numpy as np
import pytest

import bigalign
import bigalign.cli
from bigalign.cli import main


@pytest.fixture()
def stores(tmp_path):
    rng = np.random.default_rng(0)
    base = rng.normal(size=(200, 4))
    paths = []
    for k in range(2):
        path = tmp_path / f"s{k}.zarr"
        with bigalign.ActivationWriter(path) as w:
            w.append({"l1": np.tanh(base @ rng.normal(size=(4, 6))), "l2": base @ rng.normal(size=(4, 3))},
                     sample_ids=np.arange(200))  # fmt: skip
        paths.append(str(path))
    return paths


@pytest.fixture()
def always_planned(monkeypatch):
    """Every job counts as long, so a valid call prints its planned cost."""
    monkeypatch.setattr(bigalign.cli, "PLANNED_NOTE_S", -1.0)


def test_a_valid_compare_prints_its_plan_when_the_computation_starts(stores, always_planned, capsys):
    assert main(["compare", *stores, "--metric", "cka", "--kernel", "rbf", "--method", "exact"]) == 0
    err = capsys.readouterr().err
    lines = err.splitlines()
    assert lines[0].startswith("planned: exact O(n²) tiles"), err
    assert sum(line.startswith("planned:") for line in lines) == 1


@pytest.mark.parametrize("argv, match", [
    (["--kernel", "rbf", "--bandwidth", "wide"], "--bandwidth must be 'median' or a positive number"),
    (["--kernel", "rbf", "--bandwidth", "-1"], "bandwidth of every layer must be a positive"),
    (["--metric", "kcc", "--option", "ridge=-1"], "'ridge' parameter of kcc"),
    (["--metric", "mutual_knn", "--option", "k=0"], "'k' parameter"),
    (["--metric", "rsa", "--option", "distance=manhattan"], "'distance' parameter of rsa"),
    (["--metric", "dcor", "--kernel", "rbf"], "takes no 'kernel'"),
    (["--memory-limit", "lots"], "memory_limit must be"),
    (["--layers-a", "l9"], "has no layer"),
    (["--option", "k"], "KEY=VALUE"),
])  # fmt: skip
def test_a_bad_compare_argument_is_an_error_with_no_plan_and_no_bar(stores, always_planned, capsys, argv, match):
    assert main(["compare", *stores, *argv]) == 2
    err = capsys.readouterr().err
    assert match in err
    assert err.startswith("error: "), f"something was printed before the error:\n{err}"
    assert "planned:" not in err and "%" not in err.split("error: ")[0]


@pytest.mark.parametrize("argv", [["--block-size", "0"], ["--workers", "0"], ["--n-features", "-5"]])
def test_non_positive_counts_are_rejected_by_the_parser(stores, capsys, argv):
    with pytest.raises(SystemExit) as exc:
        main(["compare", *stores, *argv])
    assert exc.value.code == 2
    assert "expected a positive integer" in capsys.readouterr().err


@pytest.mark.parametrize("argv, match", [
    (["--metrics", "cka,bogus"], "unknown section"),
    (["--layers", "l9"], "has no layer"),
    (["--max-rows", "3"], "max_rows must be an integer ≥ 10"),
    (["--memory-limit", "lots"], "memory_limit must be"),
])  # fmt: skip
def test_a_bad_report_argument_is_an_error_before_any_step_or_file(stores, tmp_path, capsys, argv, match):
    out = tmp_path / "report"
    assert main(["report", *stores, "--out", str(out), *argv]) == 2
    err = capsys.readouterr().err
    assert match in err
    assert err.startswith("error: "), f"something was printed before the error:\n{err}"
    assert not (out / "report.html").exists()


def test_compare_layers_checks_moment_road_options_before_its_pass():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(120, 5))
    buf = io.StringIO()
    for metric in ("kcc", "kmi"):
        with bigalign.progress(buf), pytest.raises(bigalign.InvalidInputError, match=f"'ridge' parameter of {metric}"):
            bigalign.compare_layers({"a": x, "b": x[:, :3]}, {"c": x[:, 1:]}, metric=metric, metric_options={"ridge": -1})
    assert buf.getvalue() == "", f"a pass ran before the bad option was rejected: {buf.getvalue()!r}"


def test_a_job_note_is_written_at_the_first_step_and_never_without_one():
    buf = io.StringIO()
    with bigalign.progress(buf):
        with _job(0, "x", "planned: 1 min"):
            pass
    assert buf.getvalue() == ""
    with bigalign.progress(buf), _job(1, "linear CKA", "planned: 1 min"):
        rng = np.random.default_rng(2)
        bigalign.cka(rng.normal(size=(50, 3)), rng.normal(size=(50, 4)))
    lines = buf.getvalue().splitlines()
    assert lines[0] == "planned: 1 min" and sum(l == "planned: 1 min" for l in lines) == 1, lines


def _job(total, label, note):
    from bigalign.progress import job

    return job(total, label, note=note)
