"""Stores in object storage: ActivationWriter / open_activations on ``s3://`` URLs.

A moto S3 server runs in-process (a thread, on 127.0.0.1 only) for this module;
every store written to it is compared with the same data written to a local
directory.  Skipped when moto or s3fs is not installed (CI installs both).
"""

from __future__ import annotations

import itertools
import logging
import os
import warnings
from pathlib import Path

import ml_dtypes
import numpy as np
import pytest

moto_server = pytest.importorskip("moto.server", reason="S3 tests need moto[server]")
s3fs = pytest.importorskip("s3fs", reason="S3 tests need s3fs")
if not hasattr(moto_server.ThreadedMotoServer, "get_host_and_port"):  # moto < 5.1
    pytest.skip("S3 tests need moto[server] >= 5.1", allow_module_level=True)

import bigalign  # noqa: E402
from bigalign import InvalidInputError, PairingError, PairingWarning, StoreError  # noqa: E402

BF16 = np.dtype(ml_dtypes.bfloat16)
BUCKET = "bigalign-test"
_counter = itertools.count()


# --------------------------------------------------------------------------- #
# fixtures and helpers
# --------------------------------------------------------------------------- #


@pytest.fixture(scope="module")
def s3():
    """A moto S3 server on 127.0.0.1 with one bucket; dummy credentials in the environment.

    Yields a dict with ``endpoint``, ``options`` (storage_options for s3fs) and
    ``fs`` (an s3fs filesystem on the server)."""
    mp = pytest.MonkeyPatch()
    mp.setenv("AWS_ACCESS_KEY_ID", "testing")
    mp.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    mp.setenv("AWS_DEFAULT_REGION", "us-east-1")
    # never read a developer's ~/.aws or reach a real endpoint
    mp.setenv("AWS_CONFIG_FILE", os.devnull)
    mp.setenv("AWS_SHARED_CREDENTIALS_FILE", os.devnull)
    for var in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3"):
        mp.delenv(var, raising=False)
    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # no request log on stderr
    server = moto_server.ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    try:
        host, port = server.get_host_and_port()
        endpoint = f"http://{host}:{port}"
        options = {"endpoint_url": endpoint}
        s3fs.S3FileSystem.clear_instance_cache()
        fs = s3fs.S3FileSystem(**options)
        fs.mkdir(BUCKET)
        yield {"endpoint": endpoint, "options": options, "fs": fs}
    finally:
        s3fs.S3FileSystem.clear_instance_cache()
        server.stop()
        mp.undo()


def new_url(name: str = "acts") -> str:
    """A fresh store URL in the test bucket (tests never share a store)."""
    return f"s3://{BUCKET}/{name}-{next(_counter)}.zarr"


def bits(a) -> np.ndarray:
    a = np.asarray(a)
    return a.view(f"u{a.dtype.itemsize}")


def assert_bit_equal(got, want) -> None:
    got, want = np.asarray(got), np.asarray(want)
    assert got.dtype == want.dtype, (got.dtype, want.dtype)
    assert got.shape == want.shape, (got.shape, want.shape)
    np.testing.assert_array_equal(bits(got), bits(want))


ALL = ("emb", "h.1", "h.2", "out")


def make_batches(seed: int, sizes=(7, 9, 4), layers=ALL):
    """Batches of up to four layers (four dtypes, one 3-D) and string ids, correlated across layers.

    Every object costs an HTTP request to moto, so most tests write few layers."""
    rng = np.random.default_rng(seed)
    batches, ids, k = [], [], 0
    for m in sizes:
        z = rng.standard_normal((m, 6))
        full = {
            "emb": (z @ rng.standard_normal((6, 5))).astype(np.float32),
            "h.1": np.tanh(z @ rng.standard_normal((6, 8))).astype(np.float16),
            "h.2": (z[:, :, None] * rng.standard_normal((1, 6, 2))).astype(BF16),  # (m, 6, 2)
            "out": z @ rng.standard_normal((6, 3)) + 0.1 * rng.standard_normal((m, 3)),  # float64
        }
        batches.append({name: full[name] for name in layers})
        ids.append(np.array([f"s{j:04d}" for j in range(k, k + m)]))
        k += m
    return batches, ids


def write(path, batches, ids=None, mode="w", **kw):
    with bigalign.ActivationWriter(path, mode=mode, **kw) as w:
        for i, b in enumerate(batches):
            w.append(b, sample_ids=None if ids is None else ids[i])
        return w.n_samples


def local_keys(root: Path) -> set[str]:
    return {p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file()}


def s3_keys(fs, url: str) -> set[str]:
    prefix = url.removeprefix("s3://").rstrip("/") + "/"
    fs.invalidate_cache()
    return {k.removeprefix(prefix) for k in fs.find(prefix)}


def assert_same_store(a: bigalign.ActivationStore, b: bigalign.ActivationStore) -> None:
    assert a.layers == b.layers
    assert a.n_samples == b.n_samples
    assert a.attrs == b.attrs
    np.testing.assert_array_equal(a.sample_ids, b.sample_ids)
    for name in a.layers:
        assert a[name].dtype == b[name].dtype
        assert a[name].shape == b[name].shape
        assert_bit_equal(np.asarray(a[name]), np.asarray(b[name]))


# --------------------------------------------------------------------------- #
# round trip
# --------------------------------------------------------------------------- #


@pytest.mark.slow
def test_round_trip_is_bit_exact_and_stores_the_same_objects(s3, tmp_path):
    batches, ids = make_batches(1)
    url, local = new_url(), tmp_path / "local.zarr"
    kw = dict(chunk_rows=5, attrs={"model": "toy", "step": 3})
    assert write(url, batches, ids, storage_options=s3["options"], **kw) == 20
    write(local, batches, ids, **kw)

    remote = bigalign.open_activations(url, storage_options=s3["options"])
    here = bigalign.open_activations(local)
    assert remote.source == url
    assert remote.layers == ["emb", "h.1", "h.2", "out"]
    assert remote.attrs == {"model": "toy", "step": 3}
    assert_same_store(remote, here)
    # against the input itself, through every read path of a Layer
    want = np.concatenate([b["h.2"] for b in batches]).reshape(20, 12)
    layer = remote["h.2"]
    assert layer.dtype == BF16 and layer.feature_shape == (6, 2)
    assert_bit_equal(layer.to_dask(rows=3).compute(), want)
    assert_bit_equal(layer.read(4, 13), want[4:13])
    assert_bit_equal(layer[[1, 7, 19]], want[[1, 7, 19]])
    np.testing.assert_array_equal(remote.sample_ids, np.concatenate(ids))
    # the same objects as the local tree's files: no temporary or stray keys
    assert s3_keys(s3["fs"], url) == local_keys(local)


def test_mode_w_replaces_a_store(s3):
    url = new_url()
    write(url, make_batches(2, sizes=(30,), layers=["out"])[0], storage_options=s3["options"], chunk_rows=4)
    batches, _ = make_batches(3, sizes=(6,), layers=["out"])
    write(url, batches, storage_options=s3["options"], chunk_rows=4)
    st = bigalign.open_activations(url, storage_options=s3["options"])
    assert st.n_samples == 6 and st.sample_ids is None
    assert_bit_equal(np.asarray(st["out"]), batches[0]["out"])
    # the old store's chunks beyond row 6 are gone, not just hidden
    assert not any("/c/2/" in k or k.endswith("/c/2") for k in s3_keys(s3["fs"], url))


# --------------------------------------------------------------------------- #
# metrics
# --------------------------------------------------------------------------- #


@pytest.fixture(scope="module")
def pair(s3, tmp_path_factory):
    """The same two-model data written to S3 and locally: (s3_a, s3_b, local_a, local_b)."""
    root = tmp_path_factory.mktemp("pair")
    out = []
    for seed in (10, 11):
        batches, ids = make_batches(seed, sizes=(40, 33, 27), layers=["emb", "h.2", "out"])
        url = new_url(f"model{seed}")
        write(url, batches, ids, storage_options=s3["options"], chunk_rows=32)
        write(root / f"model{seed}.zarr", batches, ids, chunk_rows=32)
        out.append((bigalign.open_activations(url, storage_options=s3["options"]), bigalign.open_activations(root / f"model{seed}.zarr")))
    (ra, la), (rb, lb) = out
    return ra, rb, la, lb


@pytest.mark.slow
@pytest.mark.parametrize("scheduler", ["sync", "threads"])
def test_cka_matches_local(pair, scheduler):
    ra, rb, la, lb = pair
    for x, y in [("emb", "out"), ("h.2", "emb")]:
        got = bigalign.cka(ra[x], rb[y], scheduler=scheduler, block_size=24).value
        want = bigalign.cka(la[x], lb[y], scheduler=scheduler, block_size=24).value
        assert got == pytest.approx(want, rel=1e-12, abs=1e-12)
    # an S3 layer against a local one (same ids, so pairing passes silently)
    with warnings.catch_warnings():
        warnings.simplefilter("error", PairingWarning)
        mixed = bigalign.cka(ra["emb"], lb["out"], scheduler=scheduler).value
    assert mixed == pytest.approx(bigalign.cka(la["emb"], lb["out"]).value, rel=1e-12, abs=1e-12)


def test_compare_layers_matches_local(pair):
    ra, rb, la, lb = pair
    got = bigalign.compare_layers(ra, rb)
    want = bigalign.compare_layers(la, lb)
    mixed = bigalign.compare_layers(ra, lb)
    np.testing.assert_allclose(got.values, want.values, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(mixed.values, want.values, rtol=1e-12, atol=1e-12)


@pytest.mark.slow
def test_distributed_process_workers_read_s3(pair, s3):
    """Layers travel to a worker process pickled with their storage options: the worker
    finds the moto endpoint only through them (it is in no environment variable)."""
    distributed = pytest.importorskip("distributed")
    ra, rb, la, lb = pair
    with distributed.LocalCluster(
        n_workers=1, threads_per_worker=2, processes=True, dashboard_address=":0"
    ) as cluster, distributed.Client(cluster, set_as_default=False) as client:
        env = client.run(lambda: [os.environ.get(v) for v in ("AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3")])
        assert all(e == [None, None] for e in env.values()) and env
        got = bigalign.cka(ra["emb"], rb["h.2"], scheduler=client, block_size=20)
        m = bigalign.compare_layers(ra, rb, layers_a=["emb", "out"], layers_b=["h.2"], scheduler=client, block_size=20)
    assert got.value == pytest.approx(bigalign.cka(la["emb"], lb["h.2"]).value, rel=1e-12, abs=1e-12)
    want = bigalign.compare_layers(la, lb, layers_a=["emb", "out"], layers_b=["h.2"])
    np.testing.assert_allclose(m.values, want.values, rtol=1e-12, atol=1e-12)


# --------------------------------------------------------------------------- #
# resume and crash safety
# --------------------------------------------------------------------------- #


@pytest.mark.slow
def test_resume_with_mode_a(s3, tmp_path):
    batches, ids = make_batches(4, sizes=(5, 8, 6, 9), layers=["emb", "h.2"])
    url, local = new_url(), tmp_path / "local.zarr"
    opts = s3["options"]
    assert write(url, batches[:2], ids[:2], storage_options=opts, chunk_rows=4) == 13
    with bigalign.ActivationWriter(url, mode="a", storage_options=opts) as w:
        assert w.n_samples == 13 and w.layers == ["emb", "h.2"]
        with pytest.raises(InvalidInputError, match="already in the store"):
            w.append(batches[1], sample_ids=ids[1])  # a batch appended before the restart
        w.append(batches[2], sample_ids=ids[2])
    assert write(url, batches[3:], ids[3:], mode="a", storage_options=opts) == 28
    write(local, batches, ids, chunk_rows=4)
    assert_same_store(bigalign.open_activations(url, storage_options=opts), bigalign.open_activations(local))
    assert s3_keys(s3["fs"], url) == local_keys(local)


def test_mode_a_creates_a_missing_store(s3):
    batches, ids = make_batches(5, sizes=(3,), layers=["emb"])
    url = new_url()
    assert write(url, batches, ids, mode="a", storage_options=s3["options"]) == 3
    assert bigalign.open_activations(url, storage_options=s3["options"]).n_samples == 3


@pytest.mark.slow
def test_interrupted_append_leaves_only_complete_batches(s3, tmp_path, monkeypatch):
    """An append that dies after writing its chunks but before its commit record (the last
    PUT) is invisible; mode='a' drops its chunks and appending continues correctly."""
    batches, ids = make_batches(6, sizes=(6, 7, 5), layers=["emb", "h.1"])
    url, local = new_url(), tmp_path / "local.zarr"
    opts = s3["options"]
    w = bigalign.ActivationWriter(url, storage_options=opts, chunk_rows=4)
    w.append(batches[0], sample_ids=ids[0])

    def killed(self):
        raise KeyboardInterrupt("killed before the commit record")

    with monkeypatch.context() as m:
        m.setattr(bigalign.ActivationWriter, "_commit", killed)
        with pytest.raises(KeyboardInterrupt):
            w.append(batches[1], sample_ids=ids[1])  # chunks of rows 6..12 are written
    # the half-written batch is in the bucket but not visible
    assert any(k.endswith("emb/c/3/0") for k in s3_keys(s3["fs"], url))
    st = bigalign.open_activations(url, storage_options=opts)
    assert st.n_samples == 6
    assert_bit_equal(np.asarray(st["h.1"]), batches[0]["h.1"])
    np.testing.assert_array_equal(st.sample_ids, ids[0])
    # resume: the stray chunks go, the batch can be appended again, then more
    assert write(url, batches[1:], ids[1:], mode="a", storage_options=opts) == 18
    write(local, batches, ids, chunk_rows=4)
    assert_same_store(bigalign.open_activations(url, storage_options=opts), bigalign.open_activations(local))
    assert s3_keys(s3["fs"], url) == local_keys(local)


@pytest.mark.slow
def test_reopening_sees_what_another_writer_committed(s3):
    """fsspec caches filesystem instances with their listings; a reader polling a store that
    another writer (here: another filesystem instance, credentials passed explicitly) is
    filling must not see a stale listing."""
    batches, ids = make_batches(12, sizes=(4, 5), layers=["emb", "out"])
    url = new_url()
    writer_options = {**s3["options"], "key": "testing", "secret": "testing"}
    w = bigalign.ActivationWriter(url, storage_options=writer_options)
    with pytest.raises(StoreError, match="no committed batch yet"):
        bigalign.open_activations(url, storage_options=s3["options"])
    w.append(batches[0], sample_ids=ids[0])
    st = bigalign.open_activations(url, storage_options=s3["options"])
    assert st.layers == ["emb", "out"] and st.n_samples == 4
    w.append(batches[1], sample_ids=ids[1])
    st = bigalign.open_activations(url, storage_options=s3["options"])
    assert st.n_samples == 9
    np.testing.assert_array_equal(st.sample_ids, np.concatenate(ids))
    assert_bit_equal(np.asarray(st["out"]), np.concatenate([b["out"] for b in batches]))


# --------------------------------------------------------------------------- #
# pairing across an S3 store and a local store
# --------------------------------------------------------------------------- #


@pytest.mark.slow
def test_pairing_checked_across_s3_and_local(s3, tmp_path):
    batches, ids = make_batches(7, sizes=(10, 10), layers=["emb", "out"])
    url = new_url()
    write(url, batches, ids, storage_options=s3["options"])
    remote = bigalign.open_activations(url, storage_options=s3["options"])

    same = bigalign.open_activations(write_local(tmp_path / "same.zarr", batches, ids))
    with warnings.catch_warnings():
        warnings.simplefilter("error", PairingWarning)
        bigalign.cka(remote["emb"], same["out"])

    rev = [b[::-1] for b in ids[::-1]]
    reordered = bigalign.open_activations(
        write_local(tmp_path / "rev.zarr", [{k: v[::-1] for k, v in b.items()} for b in batches[::-1]], rev)
    )
    with pytest.raises(PairingError, match="different order"):
        bigalign.cka(remote["emb"], reordered["out"])
    with pytest.raises(PairingError, match="different order"):
        bigalign.compare_layers(remote, reordered)

    other_ids = [np.char.add(i, "x") for i in ids]
    other = bigalign.open_activations(write_local(tmp_path / "other.zarr", batches, other_ids))
    with pytest.raises(PairingError, match="different samples"):
        bigalign.cka(other["emb"], remote["out"])

    no_ids = bigalign.open_activations(write_local(tmp_path / "noids.zarr", batches, None))
    with pytest.warns(PairingWarning, match="cannot be verified"):
        bigalign.cka(remote["emb"], no_ids["out"])


def write_local(path: Path, batches, ids):
    write(path, batches, ids)
    return path


# --------------------------------------------------------------------------- #
# errors and configuration
# --------------------------------------------------------------------------- #


def test_missing_url_is_a_store_error(s3):
    url = f"s3://{BUCKET}/no-such-store.zarr"
    with pytest.raises(StoreError, match="no Zarr group found at 's3://bigalign-test/no-such-store.zarr'") as info:
        bigalign.open_activations(url, storage_options=s3["options"])
    assert "storage_options" in str(info.value)
    with pytest.raises(StoreError, match="no Zarr group found"):
        bigalign.open_activations("s3://no-such-bucket/acts.zarr", storage_options=s3["options"])


def test_missing_fsspec_backend_is_a_store_error():
    import importlib.util

    if importlib.util.find_spec("gcsfs") is not None:
        pytest.skip("gcsfs is installed")
    with pytest.raises(StoreError, match="fsspec backend of its protocol is missing"):
        bigalign.open_activations("gs://bucket/acts.zarr")


def test_mode_a_never_overwrites_other_objects(s3):
    url = new_url()
    key = url.removeprefix("s3://") + "/notes.txt"
    s3["fs"].pipe(key, b"keep me")
    with pytest.raises(StoreError, match="never overwrites"):
        bigalign.ActivationWriter(url, mode="a", storage_options=s3["options"])
    s3["fs"].invalidate_cache()
    assert s3["fs"].cat(key) == b"keep me"


def test_storage_options_only_for_urls(tmp_path):
    path = write_local(tmp_path / "a.zarr", *make_batches(8, sizes=(3,), layers=["emb"]))
    with pytest.raises(InvalidInputError, match="storage_options only apply to stores addressed by URL"):
        bigalign.open_activations(path, storage_options={"anon": True})
    with pytest.raises(InvalidInputError, match="storage_options only apply"):
        bigalign.ActivationWriter(tmp_path / "b.zarr", storage_options={"anon": True})
    assert not (tmp_path / "b.zarr").exists()


def test_endpoint_and_credentials_from_aws_environment(s3, monkeypatch):
    """Without storage_options, s3fs (botocore) reads the standard AWS_* variables."""
    batches, ids = make_batches(9, sizes=(4, 4), layers=["emb"])
    url = new_url()
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", s3["endpoint"])
    s3fs.S3FileSystem.clear_instance_cache()
    try:
        assert write(url, batches, ids) == 8
        st = bigalign.open_activations(url)
    finally:
        s3fs.S3FileSystem.clear_instance_cache()
    assert_bit_equal(np.asarray(st["emb"]), np.concatenate([b["emb"] for b in batches]))


def test_any_fsspec_protocol(tmp_path):
    """Nothing is S3-specific: fsspec's memory:// and file:// stores work the same way."""
    batches, ids = make_batches(13, sizes=(3, 4), layers=["emb", "h.2"])
    local = write_local(tmp_path / "local.zarr", batches, ids)
    for url, options in [
        (f"memory://bigalign-{next(_counter)}/acts.zarr", None),
        ((tmp_path / "via-file-url.zarr").as_uri(), {"auto_mkdir": True}),  # zarr needs auto_mkdir for file://
    ]:
        write(url, batches[:1], ids[:1], storage_options=options)
        write(url, batches[1:], ids[1:], mode="a", storage_options=options)
        assert_same_store(bigalign.open_activations(url, storage_options=options), bigalign.open_activations(local))
