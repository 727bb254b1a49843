"""Crash safety of ActivationWriter: SIGKILL a writer at random moments, then read and resume.

A child process (tests/writer_child.py) appends deterministic batches with
``mode="a"`` and prints ``ACK <n>`` after each append returned; the parent kills
it with SIGKILL at random moments -- after a random delay, right after an ACK, a
fraction of an append after an ACK (mid-write: batches are a few MB, appends take
tens of ms), or even during start-up/recovery -- and after every kill checks that
the store opens with a whole number of batches, at least everything that was
acknowledged, and bit-exact contents and ids.  The next child resumes the store.

``BIGALIGN_SOAK_KILLS`` (default 12) sets the number of kills, e.g.
``BIGALIGN_SOAK_KILLS=500 pytest tests/test_writer_crash.py`` for a soak;
``BIGALIGN_SOAK_SEED`` fixes the random schedule.
"""

from __future__ import annotations

import importlib.util
import os
import queue
import random
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import zarr

import bigalign

HERE = Path(__file__).resolve().parent
CHILD_SCRIPT = HERE / "writer_child.py"

_spec = importlib.util.spec_from_file_location("bigalign_tests_writer_child", CHILD_SCRIPT)
child = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(child)  # type: ignore[union-attr]

#: batches per store ("episode"); when a child completes a store the test starts a new one.
EPISODE_BATCHES = 16
STARTUP_TIMEOUT = 60.0


def _bits(a: np.ndarray) -> np.ndarray:
    return a.view(f"u{a.dtype.itemsize}")


# --------------------------------------------------------------------------- #
# child process handling
# --------------------------------------------------------------------------- #


class Child:
    """A writer_child.py process whose stdout lines are collected by a thread, timestamped."""

    def __init__(self, path: Path, total: int, durability: str = "process"):
        env = dict(os.environ)
        env["BIGALIGN_SOAK_DURABILITY"] = durability
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(HERE.parent), env.get("PYTHONPATH")]))
        self.proc = subprocess.Popen(
            [sys.executable, str(CHILD_SCRIPT), str(path), str(total), "default"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        self.lines: "queue.Queue[tuple[float, str | None]]" = queue.Queue()
        self.seen: list[str] = []
        self._thread = threading.Thread(target=self._pump, daemon=True)
        self._thread.start()

    def _pump(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.put((time.perf_counter(), line.strip()))
        self.lines.put((time.perf_counter(), None))  # EOF

    def next_line(self, timeout: float) -> tuple[float, str | None]:
        """The next stdout line (None at EOF); fails the test on timeout."""
        try:
            t, line = self.lines.get(timeout=timeout)
        except queue.Empty:
            self.kill()
            pytest.fail(f"writer child silent for {timeout} s; stderr:\n{self.stderr()}")
        if line is not None:
            self.seen.append(line)
        return t, line

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=30)

    def finish(self) -> list[str]:
        """Wait for exit and return every stdout line the child printed."""
        try:
            self.proc.wait(timeout=120)
        except subprocess.TimeoutExpired:
            self.kill()
            pytest.fail(f"writer child did not finish within 120 s; stdout so far: {self.seen[-3:]}")
        self._thread.join(timeout=30)
        while True:
            try:
                _, line = self.lines.get_nowait()
            except queue.Empty:
                break
            if line is not None:
                self.seen.append(line)
        return self.seen

    def stderr(self) -> str:
        assert self.proc.stderr is not None
        try:
            self.proc.wait(timeout=30)
            return self.proc.stderr.read()
        except Exception as exc:  # pragma: no cover - diagnostics only
            return f"<stderr unavailable: {exc}>"


def _acked(lines: list[str]) -> int:
    """Largest sample count the child reported as committed (ACK/READY/DONE)."""
    counts = [int(l.split()[1]) for l in lines if l.split()[0] in ("ACK", "READY", "DONE")]
    return max(counts, default=0)


# --------------------------------------------------------------------------- #
# verification
# --------------------------------------------------------------------------- #


def verify_store(path: Path, total: int, acked: int, context: str) -> int:
    """Check the store against the deterministic batches; return its committed sample count.

    The store must hold a whole number of batches, at least ``acked`` samples and
    at most one batch more (the one in flight when the child died), with every
    row's content and id equal to the expected ones, bit for bit.
    """
    bounds = child.boundaries(total)
    if not (path / "zarr.json").exists():
        # killed before the writer created the group: nothing may have been acknowledged
        assert acked == 0, f"{context}: {acked} samples acknowledged but there is no store"
        with pytest.raises(bigalign.StoreError):
            bigalign.open_activations(path)
        return 0
    try:
        store = bigalign.open_activations(path)
    except bigalign.StoreError:
        # a store with no committed batch may be refused as "no layers"; nothing may be lost then
        meta = dict(zarr.open_group(str(path), mode="r").attrs).get("bigalign") or {}
        assert acked == 0 and meta.get("n_samples", 0) == 0, f"{context}: committed store does not open"
        return 0
    n = store.n_samples
    assert n in bounds, f"{context}: store holds {n} samples, not a whole number of batches {bounds}"
    assert n >= acked, f"{context}: store holds {n} samples but {acked} were acknowledged (lost data)"
    k_acked = bounds.index(acked)
    limit = bounds[min(k_acked + 1, total)]
    assert n <= limit, f"{context}: store holds {n} samples, more than acked {acked} + the in-flight batch"
    if n == 0:
        assert store.sample_ids is None or len(store.sample_ids) == 0
        return 0
    assert store.layers == list(child.LAYERS), context
    ids = store.sample_ids
    assert ids is not None and ids.shape == (n,), context
    np.testing.assert_array_equal(ids, child.sample_ids(0, n), err_msg=context)
    for name, (shape, dtype) in child.LAYERS.items():
        layer = store[name]
        assert layer.dtype == dtype, context
        assert layer.shape == (n, int(np.prod(shape))), context
        got = np.asarray(layer)
        want = child.layer_values(name, 0, n).reshape(n, -1)
        if not np.array_equal(_bits(got), _bits(want)):
            bad = np.flatnonzero((_bits(got) != _bits(want)).any(axis=1))
            pytest.fail(f"{context}: layer {name!r} rows {bad[:10].tolist()} (of {bad.size}) differ from what was written")
    return n


def _uncommitted_rows(path: Path, n: int) -> bool:
    """Whether some array of the store is longer than the committed count (a torn append)."""
    try:
        group = zarr.open_group(str(path), mode="r")
        return any(arr.shape[0] > n for _, arr in group.arrays())
    except Exception:
        return False


# --------------------------------------------------------------------------- #
# the kill loop
# --------------------------------------------------------------------------- #


def _run_and_kill(path: Path, rng: random.Random, durability: str) -> tuple[str, list[str], bool]:
    """Start a child on ``path``, SIGKILL it at a random moment; return (how, stdout lines, finished)."""
    how = rng.choice(["delay", "delay", "after_ack", "mid_append", "mid_append", "startup"])
    c = Child(path, EPISODE_BATCHES, durability)
    try:
        if how == "startup":
            # anywhere in interpreter start-up, imports, opening and recovering the store
            time.sleep(rng.uniform(0.0, 0.8))
        else:
            t_ready, line = c.next_line(STARTUP_TIMEOUT)
            while line is not None and not line.startswith(("READY", "DONE")):
                t_ready, line = c.next_line(STARTUP_TIMEOUT)
            if line is None:
                pytest.fail(f"writer child exited before READY (rc={c.proc.wait()}):\n{c.stderr()}")
            if how == "delay":
                time.sleep(rng.uniform(0.0, 0.45))
            else:
                k = rng.randint(1, 4)
                t_prev, acks = t_ready, []
                while len(acks) < k:
                    t, line = c.next_line(STARTUP_TIMEOUT)
                    if line is None or line.startswith("DONE"):
                        break
                    if line.startswith("ACK"):
                        acks.append(t - t_prev)
                        t_prev = t
                if how == "mid_append" and line is not None:
                    # a random fraction of one append's duration after its predecessor returned
                    per_append = acks[-1] if acks else 0.05
                    time.sleep(rng.uniform(0.0, per_append))
        c.kill()
    finally:
        if c.proc.poll() is None:
            c.kill()
    lines = c.finish()
    finished = c.proc.returncode == 0 and any(l.startswith("DONE") for l in lines)
    if c.proc.returncode not in (0, -signal.SIGKILL):
        pytest.fail(f"writer child failed with rc={c.proc.returncode} ({how}); stdout={lines}\nstderr:\n{c.stderr()}")
    return how, lines, finished


def _complete(path: Path, acked: int, durability: str) -> None:
    """Resume ``path`` with a child that is not killed and check the complete store."""
    c = Child(path, EPISODE_BATCHES, durability)
    lines = c.finish()
    assert c.proc.returncode == 0, f"resuming child failed: {lines}\n{c.stderr()}"
    total_n = child.boundaries(EPISODE_BATCHES)[-1]
    assert lines[-1] == f"DONE {total_n}", lines
    assert verify_store(path, EPISODE_BATCHES, max(acked, _acked(lines)), f"completed store {path.name}") == total_n


@pytest.mark.slow
@pytest.mark.parametrize("durability", ["process", "power"])
def test_sigkill_at_random_moments_never_loses_acked_batches_or_exposes_partial_ones(tmp_path, durability):
    kills = int(os.environ.get("BIGALIGN_SOAK_KILLS", "12"))
    seed = int(os.environ.get("BIGALIGN_SOAK_SEED", str(random.randrange(2**32))))
    rng = random.Random(seed)
    episode = 0
    path = tmp_path / f"store{episode}.zarr"
    acked = 0  # samples known to be committed in the current store
    stats = {"kills": 0, "torn": 0, "completed": 0, "beyond_ack": 0}
    cycle = 0
    while stats["kills"] < kills:
        assert cycle < 3 * kills + 10, f"too few kills landed: {stats} (seed={seed})"
        cycle += 1
        how, lines, finished = _run_and_kill(path, rng, durability)
        context = f"durability={durability} seed={seed} cycle={cycle} kill={how} store={path.name} stdout={lines[-3:]}"
        run_acked = max(acked, _acked(lines))
        n = verify_store(path, EPISODE_BATCHES, run_acked, context)
        assert n >= acked, f"{context}: committed count went down from {acked} to {n}"
        stats["beyond_ack"] += n > run_acked
        stats["torn"] += _uncommitted_rows(path, n)
        acked = n
        if finished:
            assert n == child.boundaries(EPISODE_BATCHES)[-1], context
            stats["completed"] += 1
            episode += 1
            path = tmp_path / f"store{episode}.zarr"
            acked = 0
        else:
            stats["kills"] += 1
    # finally resume the current store without a kill and check the complete result
    _complete(path, acked, durability)
    print(f"crash soak ({durability}): seed={seed} {stats}")
    if kills >= 10:
        # the test is only meaningful if kills actually landed inside appends
        assert stats["torn"] + stats["beyond_ack"] >= 1, f"no kill landed mid-append: {stats} (seed={seed})"


# --------------------------------------------------------------------------- #
# deterministic interruptions (same on-disk states as a kill at a known point)
# --------------------------------------------------------------------------- #


class _Interrupt(BaseException):
    """Stands in for SIGKILL: not an Exception, so nothing in the writer can swallow it."""


def _two_batches():
    rng = np.random.default_rng(0)
    b0 = {"x": rng.normal(size=(10, 3)), "y": rng.normal(size=(10, 2, 2)).astype(np.float32)}
    b1 = {"x": rng.normal(size=(7, 3)), "y": rng.normal(size=(7, 2, 2)).astype(np.float32)}
    return b0, b1


def test_append_interrupted_while_logging_is_invisible_and_discarded_on_resume(tmp_path, monkeypatch):
    """Killed after one record of a batch that spans several chunk stretches reached the log: nothing of it shows."""
    path = tmp_path / "s.zarr"
    b0, b1 = _two_batches()
    w = bigalign.ActivationWriter(path, chunk_rows=4)
    w.append(b0, sample_ids=np.arange(10))
    real_write = bigalign.io._Log.write
    calls = []

    def dying_write(self, head, sections):
        calls.append(head["start"])
        if len(calls) == 2:
            raise _Interrupt()
        return real_write(self, head, sections)

    monkeypatch.setattr(bigalign.io._Log, "write", dying_write)
    with pytest.raises(_Interrupt):
        w.append(b1, sample_ids=np.arange(10, 17))  # rows 10..16: records for 10..11 and 12..15 and 16
    monkeypatch.undo()
    assert calls == [10, 12]
    store = bigalign.open_activations(path)
    assert store.n_samples == 10
    np.testing.assert_array_equal(np.asarray(store["x"]), b0["x"])
    np.testing.assert_array_equal(store.sample_ids, np.arange(10))

    # resuming drops the torn record, and the ids of the lost batch may be written again
    with bigalign.ActivationWriter(path, mode="a") as w2:
        assert w2.n_samples == 10
        assert w2.append(b1, sample_ids=np.arange(10, 17)) == 17
    assert not (path / "bigalign_tail").exists(), "a closed store keeps no log"
    store = bigalign.open_activations(path)
    np.testing.assert_array_equal(np.asarray(store["x"]), np.concatenate([b0["x"], b1["x"]]))
    np.testing.assert_array_equal(np.asarray(store["y"]), np.concatenate([b0["y"], b1["y"]]).reshape(17, 4))
    np.testing.assert_array_equal(store.sample_ids, np.arange(17))


@pytest.mark.parametrize("where", ["setitem", "commit"])
def test_batch_logged_then_interrupted_while_compacting_is_kept_whole(tmp_path, monkeypatch, where):
    """Killed while the logged rows are written into the arrays or recorded: the log still has the batch."""
    path = tmp_path / "s.zarr"
    b0, b1 = _two_batches()
    w = bigalign.ActivationWriter(path, chunk_rows=3)
    w.append(b0, sample_ids=np.arange(10))
    if where == "commit":
        monkeypatch.setattr(bigalign.ActivationWriter, "_commit", lambda self: (_ for _ in ()).throw(_Interrupt()))
    else:
        real_setitem = zarr.Array.__setitem__
        calls = []

        def dying_setitem(self, key, value):
            calls.append(self.path)
            if len(calls) == 2:
                raise _Interrupt()
            return real_setitem(self, key, value)

        monkeypatch.setattr(zarr.Array, "__setitem__", dying_setitem)
    with pytest.raises(_Interrupt):
        w.append(b1, sample_ids=np.arange(10, 17))
        w.flush()  # chunk stretches are written to the arrays in the background; its error surfaces here
    monkeypatch.undo()
    want_x = np.concatenate([b0["x"], b1["x"]])
    store = bigalign.open_activations(path)
    assert store.n_samples == 17
    np.testing.assert_array_equal(np.asarray(store["x"]), want_x)
    np.testing.assert_array_equal(store["x"][12:16], want_x[12:16])
    np.testing.assert_array_equal(store.sample_ids, np.arange(17))
    with bigalign.ActivationWriter(path, mode="a") as w2:
        assert w2.n_samples == 17
    store = bigalign.open_activations(path)
    assert store.n_samples == 17
    np.testing.assert_array_equal(np.asarray(store["x"]), want_x)
    np.testing.assert_array_equal(np.asarray(store["y"]), np.concatenate([b0["y"], b1["y"]]).reshape(17, 4))


def test_store_killed_while_creating_layers_on_first_append_can_be_resumed(tmp_path, monkeypatch):
    """BUG: a kill inside the first append, after some layer arrays were created but before
    the layer list was committed, leaves a store that ``mode="a"`` cannot resume.

    The first append creates each layer's array, then commits the layer list.  Killed in
    between, the store's metadata still lists no layers, so the resumed writer calls
    ``create_array`` again for an array that exists and zarr raises ContainsArrayError.
    """
    path = tmp_path / "s.zarr"
    b0, _ = _two_batches()
    real_create = zarr.Group.create_array
    created = []

    def dying_create(self, name, **kw):
        if created:
            raise _Interrupt()  # killed after the first layer array exists
        created.append(name)
        return real_create(self, name, **kw)

    monkeypatch.setattr(zarr.Group, "create_array", dying_create)
    w = bigalign.ActivationWriter(path, mode="a")
    with pytest.raises(_Interrupt):
        w.append(b0, sample_ids=np.arange(10))
    monkeypatch.undo()
    assert created == ["x"]

    with bigalign.ActivationWriter(path, mode="a") as w2:
        assert w2.n_samples == 0
        w2.append(b0, sample_ids=np.arange(10))
    store = bigalign.open_activations(path)
    assert store.layers == ["x", "y"]
    np.testing.assert_array_equal(np.asarray(store["x"]), b0["x"])


# --------------------------------------------------------------------------- #
# durability levels: what is fsynced, and when
# --------------------------------------------------------------------------- #


def _record_syncs(monkeypatch) -> list:
    """Every fsync/fdatasync (by kind) and every unlink of a log file, in order."""
    events: list = []
    real_fsync, real_fdatasync = os.fsync, os.fdatasync
    real_fsync_path, real_unlink = bigalign.io._fsync_path, Path.unlink

    def fsync_path(path):
        events.append(("fsync_path", Path(path)))
        real_fsync_path(path)

    def unlink(self, *a, **k):
        if self.suffix == ".log":
            events.append(("unlink", self))
        return real_unlink(self, *a, **k)

    monkeypatch.setattr(os, "fsync", lambda fd: (events.append(("fsync", fd)), real_fsync(fd))[1])
    monkeypatch.setattr(os, "fdatasync", lambda fd: (events.append(("fdatasync", fd)), real_fdatasync(fd))[1])
    for module in (bigalign.io.writer, bigalign.io.tail):  # where the writer and its log call it
        monkeypatch.setattr(module, "_fsync_path", fsync_path)
    monkeypatch.setattr(Path, "unlink", unlink)
    return events


def test_default_durability_syncs_nothing_per_append_and_flush_puts_everything_on_disk(tmp_path, monkeypatch):
    path = tmp_path / "s.zarr"
    rng = np.random.default_rng(1)
    x = rng.normal(size=(23, 5))
    events = _record_syncs(monkeypatch)
    w = bigalign.ActivationWriter(path, chunk_rows=8)
    assert w.durability == "process"
    for a in range(0, 20, 5):
        w.append({"x": x[a : a + 5]}, sample_ids=np.arange(a, a + 5))
    w._wait()
    assert events == [e for e in events if e[0] == "unlink"], f"appends fsynced: {events}"
    del events[:]
    w.flush()  # rows 0..16 compacted (chunks 0, 1), rows 16..20 in the log
    synced = {p.relative_to(path).as_posix() for kind, p in events if kind == "fsync_path"}
    assert {"x/c/0/0", "x/c/1/0", "zarr.json", "bigalign_tail"} <= synced, synced
    assert any(kind == "fdatasync" for kind, _ in events), "the log of the uncompacted rows was not synced"
    w.append({"x": x[20:23]}, sample_ids=np.arange(20, 23))
    w.close()
    np.testing.assert_array_equal(np.asarray(bigalign.open_activations(path)["x"]), x)


def test_a_flushed_log_is_removed_only_after_its_rows_are_synced_in_the_arrays(tmp_path, monkeypatch):
    """After flush(), a later compaction or close() must not drop the only on-disk copy of flushed rows."""
    path = tmp_path / "s.zarr"
    x = np.random.default_rng(2).normal(size=(10, 3))
    events = _record_syncs(monkeypatch)
    with bigalign.ActivationWriter(path, chunk_rows=4) as w:
        w.append({"x": x[:3]})
        w.flush()  # rows 0..3 on disk in log 0
        w.append({"x": x[3:6]})  # completes chunk 0 (compacted in the background), rows 4..6 in log 1
        w._wait()
        w.flush()  # rows 4..6 on disk in log 1
        w.append({"x": x[6:10]})
    order = [(k, p.relative_to(path).as_posix()) for k, p in events if k in ("fsync_path", "unlink")]
    for log, chunk in [("bigalign_tail/000000000000.log", "x/c/0/0"), ("bigalign_tail/000000000001.log", "x/c/1/0")]:
        gone = order.index(("unlink", log))
        assert ("fsync_path", chunk) in order[:gone], f"{log} removed before {chunk} was synced: {order}"
    np.testing.assert_array_equal(np.asarray(bigalign.open_activations(path)["x"]), x)


def test_power_durability_syncs_every_append(tmp_path, monkeypatch):
    path = tmp_path / "s.zarr"
    events = _record_syncs(monkeypatch)
    with bigalign.ActivationWriter(path, chunk_rows=64, durability="power") as w:
        w.append({"x": np.ones((5, 2))})
        del events[:]
        for _ in range(3):
            w.append({"x": np.ones((5, 2))})
    assert sum(kind == "fdatasync" for kind, _ in events) >= 3


def test_unknown_durability_is_an_error_naming_both_levels(tmp_path):
    with pytest.raises(bigalign.InvalidInputError, match="'process'.*'power'"):
        bigalign.ActivationWriter(tmp_path / "s.zarr", durability="fsync")
    assert not (tmp_path / "s.zarr").exists()


def test_flush_syncs_records_added_to_a_log_after_an_earlier_flush(tmp_path, monkeypatch):
    path = tmp_path / "s.zarr"
    events = _record_syncs(monkeypatch)
    with bigalign.ActivationWriter(path, chunk_rows=64) as w:
        w.append({"x": np.ones((5, 2))})
        w.flush()
        w.append({"x": np.ones((5, 2))})  # same log file as the flushed batch
        del events[:]
        w.flush()
        assert any(kind == "fdatasync" for kind, _ in events), events
