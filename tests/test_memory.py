"""memory_limit: block sizes are planned so a process's peak RSS stays under the limit (measured)."""

import subprocess
import sys

import numpy as np
import pytest

import bigalign

# Peak RSS from VmHWM: getrusage's ru_maxrss survives exec, so a child forked from a big
# pytest process would report the parent's size.
# The limit is set relative to what the interpreter already uses after importing
# (140-215 MiB depending on the environment), so the test measures bigalign's planning.
CHILD = """
import os, sys, bigalign
from dask.utils import parse_bytes
s = bigalign.open_activations(sys.argv[1])
cka = bigalign.cka  # import the metric modules (loaded lazily) before measuring what is in use
in_use = int(open("/proc/self/statm").read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
limit = in_use + parse_bytes(sys.argv[2])
with bigalign.memory_limit(limit):
    r = cka(s["x"], s["y"], scheduler=sys.argv[3])
hwm = [l for l in open("/proc/self/status") if l.startswith("VmHWM")][0].split()[1]
print(r.value, r.parameters["block_size"], int(hwm) * 1024, limit)
"""


@pytest.fixture(scope="module")
def big_store(tmp_path_factory):
    path = tmp_path_factory.mktemp("mem") / "s.zarr"
    rng = np.random.default_rng(0)
    with bigalign.ActivationWriter(path, chunk_rows=2048, compressors=None) as w:
        for s in range(0, 120_000, 40_000):
            x = rng.normal(size=(40_000, 128)).astype(np.float32)
            w.append({"x": x, "y": np.tanh(x[:, :96])}, sample_ids=np.arange(s, s + 40_000))
    return path  # ~60 + 45 MB of float32


@pytest.mark.slow
@pytest.mark.parametrize("scheduler", ["threads", "sync"])
def test_peak_rss_stays_under_limit(big_store, scheduler):
    out = {}
    for headroom in ("120MB", "760MB"):
        proc = subprocess.run([sys.executable, "-c", CHILD, str(big_store), headroom, scheduler], capture_output=True, text=True)
        assert proc.returncode == 0, proc.stderr
        value, rows, peak, limit = proc.stdout.split()
        out[headroom] = (float(value), int(rows), int(peak))
        assert int(peak) < int(limit), f"peak RSS {int(peak) / 2**20:.0f} MiB over the {int(limit) / 2**20:.0f} MiB limit"
    (v1, r1, p1), (v2, r2, p2) = out["120MB"], out["760MB"]
    assert r1 < r2 and p1 < p2  # a tighter limit plans smaller blocks and uses less memory
    assert v1 == pytest.approx(v2, rel=1e-12)  # ... for the same answer


def test_limit_below_current_use_is_a_clear_error():
    with bigalign.memory_limit("1MB"), pytest.raises(bigalign.InvalidInputError, match="already uses"):
        bigalign.cka(np.ones((10, 2)) * np.arange(10)[:, None], np.arange(20.0).reshape(10, 2) ** 2)
    with pytest.raises(bigalign.InvalidInputError, match="memory_limit"):
        with bigalign.memory_limit("lots"):
            pass
