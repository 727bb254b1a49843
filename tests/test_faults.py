"""Faults: damaged chunks, interrupted runs (checkpoint/resume), a worker dying mid-computation."""

import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import numpy as np
import pytest

import bigalign


@pytest.fixture()
def store(tmp_path):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(1000, 6)).astype(np.float32)
    with bigalign.ActivationWriter(tmp_path / "s.zarr", chunk_rows=100, compressors="default") as w:
        w.append({"x": x, "y": np.tanh(x[:, :4])}, sample_ids=np.arange(1000))
    return tmp_path / "s.zarr"


def test_corrupt_chunk_names_layer_and_rows(store):
    (store / "x" / "c" / "3" / "0").write_bytes(b"\x00garbage, not zstd\xff" * 10)
    s = bigalign.open_activations(store)
    for sched in ("sync", "threads"):
        with pytest.raises(bigalign.StoreError, match=r"rows 300\.\.39\d of layer 'x'") as ei:
            bigalign.cka(s["x"], s["y"], block_size=100, scheduler=sched)
        assert "corrupt" in str(ei.value)


def test_missing_chunk_is_an_error_not_zeros(store):
    os.remove(store / "y" / "c" / "7" / "0")
    s = bigalign.open_activations(store)
    with pytest.raises(bigalign.StoreError, match=r"layer 'y' .* missing the chunk holding rows 700\.\.799"):
        bigalign.cka(s["x"], s["y"], scheduler="sync")


def test_all_zero_chunks_are_written(tmp_path):
    """Zarr skips all-fill-value chunks by default; bigalign stores write them, so 'missing' means damage."""
    with bigalign.ActivationWriter(tmp_path / "z.zarr", chunk_rows=10) as w:
        w.append({"dead": np.zeros((30, 2), dtype=np.float32)})
    assert sorted(os.listdir(tmp_path / "z.zarr" / "dead" / "c")) == ["0", "1", "2"]
    assert np.asarray(bigalign.open_activations(tmp_path / "z.zarr")["dead"]).sum() == 0


CHILD = textwrap.dedent(
    """
    import sys, time
    import bigalign
    from bigalign.moments import MomentStatistic
    slow = MomentStatistic.partial
    def partial(self, blocks, start):  # slow enough to be killed mid-run
        time.sleep(0.03)
        return slow(self, blocks, start)
    MomentStatistic.partial = partial
    s = bigalign.open_activations(sys.argv[1])
    bigalign.compare_layers(s, s, checkpoint=sys.argv[2], resume=True, scheduler="sync", block_size=50)
    print("FINISHED")
    """
)


def test_killed_run_resumes_from_checkpoint_with_identical_result(store, tmp_path):
    s = bigalign.open_activations(store)
    reference = bigalign.compare_layers(s, s, scheduler="sync", block_size=50)
    ckpt = tmp_path / "ckpt"
    child = subprocess.Popen([sys.executable, "-c", CHILD, str(store), str(ckpt)], stdout=subprocess.PIPE, text=True)
    deadline = time.time() + 60
    while time.time() < deadline and len(list(ckpt.rglob("*.pkl"))) < 5:
        time.sleep(0.02)
    child.send_signal(signal.SIGKILL)
    child.wait()
    saved = len(list(ckpt.rglob("*.pkl")))
    assert 5 <= saved < 20, "the kill must land mid-run (20 blocks)"
    with bigalign.checkpoint(ckpt, resume=True) as ck:
        resumed = bigalign.compare_layers(s, s, scheduler="sync", block_size=50)
    assert ck.loaded == saved and ck.computed == 20 - saved  # finished blocks were skipped
    # the same partials enter the same combine tree: bit-identical
    assert np.array_equal(resumed.values, reference.values)
    assert not ckpt.exists()  # removed once the result is complete


def test_resume_false_discards_old_parts(store, tmp_path):
    s = bigalign.open_activations(store)
    with bigalign.checkpoint(tmp_path / "c", keep=True) as ck:
        bigalign.cka(s["x"], s["y"], block_size=100)
    assert ck.computed == 10
    with bigalign.checkpoint(tmp_path / "c", resume=False) as ck:
        bigalign.cka(s["x"], s["y"], block_size=100)
    assert ck.loaded == 0 and ck.computed == 10


def test_cli_resume(store, tmp_path, capsys):
    from bigalign.cli import main

    out = tmp_path / "r.json"
    assert main(["compare", str(store), "--out", str(out), "--resume", "--quiet", "--block-size", "100"]) == 0
    assert out.exists() and not Path(str(out) + ".ckpt").exists()


@pytest.mark.slow
def test_worker_killed_mid_computation_still_correct(tmp_path):
    distributed = pytest.importorskip("distributed")
    import dask.array as da

    rng = np.random.default_rng(1)
    x = rng.normal(size=(4000, 8))
    y = x[:, :5] ** 2 + rng.normal(size=(4000, 5))
    reference = bigalign.cka(x, y, block_size=200, scheduler="sync").value

    def slow(b):
        time.sleep(0.15)
        return b

    xs = da.from_array(x, chunks=(200, 8)).map_blocks(slow, dtype=x.dtype)
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as lc:
        with distributed.Client(lc) as client:
            pids = list(client.run(os.getpid).values())
            killer = threading.Timer(1.0, os.kill, (pids[0], signal.SIGKILL))
            killer.start()
            try:
                value = bigalign.cka(xs, y, block_size=200, client=client).value
            finally:
                killer.cancel()
            assert pids[0] not in client.run(os.getpid).values()  # the worker really died (and was replaced)
    assert value == pytest.approx(reference, rel=1e-12)
