"""bigalign.capture: activations of PyTorch models, recorded with forward hooks into a store."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import ml_dtypes
import numpy as np
import pytest

torch = pytest.importorskip("torch")
nn = torch.nn

import bigalign  # noqa: E402
from bigalign.capture import capture  # noqa: E402  (works whether or not bigalign exports it)

ROOT = Path(__file__).resolve().parents[1]
torch.set_num_threads(1)  # small models: threads only add overhead


def cap(*args, **kwargs):
    """capture with the default durability (no fsync per batch)."""
    kwargs.setdefault("durability", "process")
    return capture(*args, **kwargs)


# --------------------------------------------------------------------------- #
# models and data
# --------------------------------------------------------------------------- #


def mlp(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(6, 16), nn.ReLU(), nn.Linear(16, 8), nn.Tanh(), nn.Linear(8, 3))


class ConvNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(1)
        self.conv = nn.Conv2d(2, 4, 3, padding=1)
        self.act = nn.ReLU()
        self.pool = nn.AdaptiveAvgPool2d(2)
        self.fc = nn.Linear(16, 5)

    def forward(self, x):
        h = self.pool(self.act(self.conv(x)))
        return self.fc(h.flatten(1))


class TupleNet(nn.Module):
    """An LSTM (output, (h, c)) and a block returning (hidden, aux) — element 0 is recorded."""

    class Block(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.lin = nn.Linear(5, 5)

        def forward(self, x):
            h = self.lin(x)
            return h, h.sum()

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(2)
        self.rnn = nn.LSTM(3, 5, batch_first=True)
        self.block = self.Block()

    def forward(self, x):
        out, _ = self.rnn(x)
        h, _ = self.block(out)
        return h


class Flaky(nn.Module):
    """Wraps a model; raises on the forward call number ``fail_at`` (0-based); counts calls."""

    def __init__(self, inner: nn.Module, fail_at: int | None = None) -> None:
        super().__init__()
        self.inner = inner
        self.fail_at = fail_at
        self.calls = 0

    def forward(self, x):
        n = self.calls
        self.calls += 1
        if self.fail_at is not None and n == self.fail_at:
            raise RuntimeError("device lost")
        return self.inner(x)


def split(x: torch.Tensor, sizes: list[int]) -> list[torch.Tensor]:
    return list(torch.split(x, sizes))


@pytest.fixture
def x_mlp() -> torch.Tensor:
    g = torch.Generator().manual_seed(0)
    return torch.randn(29, 6, generator=g)


def manual(model: nn.Module, batches: list[torch.Tensor], upto: int) -> np.ndarray:
    """Outputs of model[:upto+1] per batch (same batch shapes as the capture), concatenated."""
    with torch.no_grad():
        return np.concatenate([model[: upto + 1](b).numpy() for b in batches])


def hooks_left(model: nn.Module) -> list[str]:
    return [
        name
        for name, m in model.named_modules()
        if m._forward_hooks or m._forward_pre_hooks or getattr(m, "_forward_hooks_with_kwargs", None)
    ]


# --------------------------------------------------------------------------- #
# what is stored
# --------------------------------------------------------------------------- #


def test_mlp_matches_manual_forward_bit_exact(tmp_path, x_mlp):
    model = mlp()
    batches = split(x_mlp, [8, 8, 8, 5])
    store = cap(model, ["0", "1", "2", "4"], batches, tmp_path / "a.zarr")
    assert store.layers == ["0", "1", "2", "4"]
    assert store.n_samples == 29
    np.testing.assert_array_equal(store.sample_ids, np.arange(29))
    for layer, upto in [("0", 0), ("1", 1), ("2", 2), ("4", 4)]:
        got = np.asarray(store[layer])
        assert got.dtype == np.float32
        np.testing.assert_array_equal(got, manual(model, batches, upto))
    assert store.attrs["capture"]["modules"] == {"0": "0", "1": "1", "2": "2", "4": "4"}
    assert hooks_left(model) == []


def test_conv_net_keeps_feature_axes_and_mean_spatial(tmp_path):
    model = ConvNet()
    x = torch.randn(10, 2, 6, 6, generator=torch.Generator().manual_seed(3))
    batches = split(x, [4, 4, 2])
    store = cap(model, ["conv", "fc"], batches, tmp_path / "c.zarr")
    with torch.no_grad():
        conv = torch.cat([model.conv(b) for b in batches]).numpy()
        fc = torch.cat([model(b) for b in batches]).numpy()
    assert store["conv"].feature_shape == (4, 6, 6)
    np.testing.assert_array_equal(np.asarray(store["conv"]), conv.reshape(10, -1))
    np.testing.assert_array_equal(np.asarray(store["fc"]), fc)

    red = cap(model, ["conv", "fc"], batches, tmp_path / "r.zarr", reduce="mean_spatial")
    assert red["conv"].feature_shape == (4,)
    # float64 mean, rounded once to float32: within one float32 ulp of the numpy float64 mean
    np.testing.assert_allclose(np.asarray(red["conv"]), conv.astype(np.float64).mean(axis=(2, 3)), rtol=1e-6, atol=1e-7)
    np.testing.assert_array_equal(np.asarray(red["fc"]), fc)  # 2-D outputs unchanged
    assert red.attrs["capture"]["reduce"] == "mean_spatial"


def test_tuple_outputs_record_element_zero_and_mean_tokens(tmp_path):
    model = TupleNet()
    x = torch.randn(7, 4, 3, generator=torch.Generator().manual_seed(4))
    batches = split(x, [3, 4])
    store = cap(model, {"lstm": "rnn", "block": "block"}, batches, tmp_path / "t.zarr")
    with torch.no_grad():
        lstm = torch.cat([model.rnn(b)[0] for b in batches]).numpy()
        block = torch.cat([model(b) for b in batches]).numpy()
    assert store.layers == ["lstm", "block"]
    assert store["lstm"].feature_shape == (4, 5)
    np.testing.assert_array_equal(np.asarray(store["lstm"]), lstm.reshape(7, -1))
    np.testing.assert_array_equal(np.asarray(store["block"]), block.reshape(7, -1))

    red = cap(model, {"lstm": "rnn"}, batches, tmp_path / "m.zarr", reduce="mean_tokens")
    np.testing.assert_allclose(np.asarray(red["lstm"]), lstm.astype(np.float64).mean(axis=1), rtol=1e-6, atol=1e-7)


def test_dict_layers_same_module_twice_and_whole_model(tmp_path, x_mlp):
    model = mlp()
    store = cap(
        model, {"hidden": "0", "again": "0", "logits": ""}, [x_mlp], tmp_path / "d.zarr", device="cpu",
        attrs={"model": "mlp-0"},
    )
    assert store.attrs["model"] == "mlp-0" and store.attrs["capture"]["modules"]["logits"] == ""
    np.testing.assert_array_equal(np.asarray(store["hidden"]), np.asarray(store["again"]))
    np.testing.assert_array_equal(np.asarray(store["logits"]), manual(model, [x_mlp], 4))


def test_inplace_activation_after_the_layer_does_not_alter_it(tmp_path, x_mlp):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 16), nn.ReLU(inplace=True), nn.Linear(16, 2))
    store = cap(model, ["0"], [x_mlp], tmp_path / "i.zarr")
    pre = manual(model, [x_mlp], 0)
    assert (pre < 0).any()  # the in-place ReLU would have zeroed these
    np.testing.assert_array_equal(np.asarray(store["0"]), pre)


def test_eval_mode_inside_and_training_flags_restored(tmp_path, x_mlp):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 16), nn.Dropout(0.5), nn.Linear(16, 2))
    model.train()
    model[2].eval()  # mixed flags come back as they were
    a = cap(model, ["1"], [x_mlp], tmp_path / "a.zarr")
    b = cap(model, ["1"], [x_mlp], tmp_path / "b.zarr")
    np.testing.assert_array_equal(np.asarray(a["1"]), np.asarray(b["1"]))  # dropout was off
    np.testing.assert_array_equal(np.asarray(a["1"]), manual(model.eval(), [x_mlp], 0))
    model.train()
    model[2].eval()
    cap(model, ["1"], [x_mlp], tmp_path / "c.zarr")
    assert [m.training for m in model.modules()] == [True, True, True, False]


# --------------------------------------------------------------------------- #
# batches and sample ids
# --------------------------------------------------------------------------- #


def test_dataloader_of_input_label_pairs(tmp_path, x_mlp):
    model = mlp()
    y = torch.arange(29)
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x_mlp, y * 0), batch_size=10)
    store = cap(model, ["2"], loader, tmp_path / "l.zarr")
    np.testing.assert_array_equal(store.sample_ids, np.arange(29))  # labels are not taken as ids
    np.testing.assert_array_equal(np.asarray(store["2"]), manual(model, split(x_mlp, [10, 10, 9]), 2))


def test_ids_from_batches_callable_and_array(tmp_path, x_mlp):
    model = mlp()
    parts = split(x_mlp, [10, 10, 9])
    ids = np.array([f"s{i:02d}" for i in range(29)])
    id_parts = [ids[:10], ids[10:20], ids[20:]]
    expected = manual(model, parts, 2)

    pairs = cap(model, ["2"], list(zip(parts, id_parts)), tmp_path / "p.zarr", sample_ids="batch")
    dicts = [{"input": p, "sample_ids": torch.arange(10 * i, 10 * i + len(p)) + 100} for i, p in enumerate(parts)]
    from_dicts = cap(model, ["2"], dicts, tmp_path / "d.zarr", sample_ids="batch")
    called = cap(
        model, ["2"], [(p, {"ids": i}) for p, i in zip(parts, id_parts)], tmp_path / "c.zarr",
        sample_ids=lambda b: b[1]["ids"],
    )
    given = cap(model, ["2"], parts, tmp_path / "g.zarr", sample_ids=ids.tolist())

    for store in (pairs, called, given):
        np.testing.assert_array_equal(store.sample_ids, ids)
        np.testing.assert_array_equal(np.asarray(store["2"]), expected)
    np.testing.assert_array_equal(from_dicts.sample_ids, np.arange(29) + 100)
    np.testing.assert_array_equal(np.asarray(from_dicts["2"]), expected)


def test_numpy_batches_and_custom_forward(tmp_path, x_mlp):
    model = mlp()
    parts = split(x_mlp, [15, 14])
    expected = manual(model, parts, 2)
    a = cap(model, ["2"], [p.numpy() for p in parts], tmp_path / "n.zarr")
    b = cap(model, ["2"], [{"x": p} for p in parts], tmp_path / "f.zarr", forward=lambda m, b: m(b["x"]))
    np.testing.assert_array_equal(np.asarray(a["2"]), expected)
    np.testing.assert_array_equal(np.asarray(b["2"]), expected)
    np.testing.assert_array_equal(b.sample_ids, np.arange(29))


def test_id_errors(tmp_path, x_mlp):
    model = mlp()
    parts = split(x_mlp, [10, 10, 9])
    with pytest.raises(bigalign.InvalidInputError, match="holds 20 ids, but batch 2 needs"):
        cap(model, ["2"], parts, tmp_path / "a.zarr", sample_ids=np.arange(20))
    with pytest.warns(UserWarning, match="last 3 ids were not used"):
        cap(model, ["2"], parts, tmp_path / "b.zarr", sample_ids=np.arange(32))
    with pytest.raises(bigalign.InvalidInputError, match="batch 0 has 10 samples but its sample ids have shape"):
        cap(model, ["2"], parts, tmp_path / "c.zarr", sample_ids=lambda b: np.arange(3))
    with pytest.raises(bigalign.InvalidInputError, match=r"\(input, ids\) tuples"):
        cap(model, ["2"], parts, tmp_path / "d.zarr", sample_ids="batch")
    with pytest.raises(bigalign.InvalidInputError, match="shuffling DataLoader"):
        loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x_mlp), batch_size=8, shuffle=True)
        cap(model, ["2"], loader, tmp_path / "e.zarr")
    with pytest.raises(bigalign.InvalidInputError, match="already in the store"):  # the writer's own check
        cap(model, ["2"], parts, tmp_path / "f.zarr", sample_ids=lambda b: np.arange(len(b)))


# --------------------------------------------------------------------------- #
# dtypes and reductions
# --------------------------------------------------------------------------- #


def test_dtype_casts_and_bfloat16_round_trip(tmp_path, x_mlp):
    model = mlp()
    ref = torch.from_numpy(manual(model, [x_mlp], 2))
    bf = cap(model, ["2"], [x_mlp], tmp_path / "bf.zarr", dtype="bfloat16")
    got = np.asarray(bf["2"])
    assert got.dtype == ml_dtypes.bfloat16
    want = ref.to(torch.bfloat16).view(torch.int16).numpy()
    np.testing.assert_array_equal(got.view(np.int16), want)  # bit-exact: the stored bits are torch's
    half = cap(model, ["2"], [x_mlp], tmp_path / "f16.zarr", dtype="float16")
    np.testing.assert_array_equal(np.asarray(half["2"]), ref.to(torch.float16).numpy())

    # a bfloat16 model (no cast) stores bfloat16 too
    m16 = mlp().to(torch.bfloat16)
    s16 = cap(m16, ["2"], [x_mlp.to(torch.bfloat16)], tmp_path / "m16.zarr")
    with torch.no_grad():
        direct = m16[:3](x_mlp.to(torch.bfloat16))
    np.testing.assert_array_equal(np.asarray(s16["2"]).view(np.int16), direct.view(torch.int16).numpy())


def test_mean_rounds_once_to_the_requested_dtype(tmp_path):
    model = TupleNet()
    x = torch.randn(6, 4, 3, generator=torch.Generator().manual_seed(5))
    store = cap(model, ["rnn"], [x], tmp_path / "m.zarr", reduce="mean_tokens", dtype="bfloat16")
    with torch.no_grad():
        want = model.rnn(x)[0].double().mean(1).to(torch.bfloat16)
    np.testing.assert_array_equal(np.asarray(store["rnn"]).view(np.int16), want.view(torch.int16).numpy())


def test_callable_and_per_layer_reduce(tmp_path):
    model = ConvNet()
    x = torch.randn(5, 2, 6, 6, generator=torch.Generator().manual_seed(6))
    store = cap(
        model,
        ["conv", "pool", "fc"],
        [x],
        tmp_path / "r.zarr",
        reduce={"conv": lambda t: t.amax(dim=(2, 3)), "pool": "mean_spatial"},
    )
    with torch.no_grad():
        conv = model.conv(x)
        pool = model.pool(model.act(conv))
    np.testing.assert_array_equal(np.asarray(store["conv"]), conv.amax(dim=(2, 3)).numpy())
    np.testing.assert_allclose(np.asarray(store["pool"]), pool.double().mean((2, 3)).numpy(), rtol=1e-6)
    assert store["fc"].shape == (5, 5)
    assert store.attrs["capture"]["reduce"]["pool"] == "mean_spatial"
    assert store.attrs["capture"]["reduce"]["fc"] is None


# --------------------------------------------------------------------------- #
# crashes, resume, hooks
# --------------------------------------------------------------------------- #


def test_crash_keeps_completed_batches_and_removes_hooks(tmp_path, x_mlp):
    inner = mlp()
    model = Flaky(inner, fail_at=2)
    parts = split(x_mlp, [8, 8, 8, 5])
    with pytest.raises(RuntimeError, match="device lost"):
        capture(model, ["inner.0", "inner.2"], parts, tmp_path / "a.zarr")
    assert hooks_left(model) == []
    assert model.training  # restored after the error too
    store = bigalign.open_activations(tmp_path / "a.zarr")
    assert store.n_samples == 16
    np.testing.assert_array_equal(store.sample_ids, np.arange(16))
    np.testing.assert_array_equal(np.asarray(store["inner.2"]), manual(inner, parts[:2], 2))


def test_resume_skips_captured_batches_without_running_the_model(tmp_path, x_mlp):
    inner = mlp()
    parts = split(x_mlp, [8, 8, 8, 5])
    path = tmp_path / "a.zarr"
    with pytest.raises(RuntimeError):
        capture(Flaky(inner, fail_at=2), ["inner.2"], parts, path)

    again = Flaky(inner)
    store = capture(again, ["inner.2"], parts, path, mode="a")
    assert again.calls == 2  # batches 0 and 1 were skipped
    full = capture(Flaky(inner), ["inner.2"], parts, tmp_path / "full.zarr")
    np.testing.assert_array_equal(store.sample_ids, np.arange(29))
    np.testing.assert_array_equal(np.asarray(store["inner.2"]), np.asarray(full["inner.2"]))

    # nothing left to do: the model is not run at all
    idle = Flaky(inner)
    store = capture(idle, ["inner.2"], parts, path, mode="a")
    assert idle.calls == 0 and store.n_samples == 29


def test_resume_with_other_batch_sizes_writes_only_new_samples(tmp_path, x_mlp):
    inner = mlp()
    path = tmp_path / "a.zarr"
    with pytest.raises(RuntimeError):
        capture(Flaky(inner, fail_at=1), ["inner.4"], split(x_mlp, [10, 10, 9]), path)
    again = Flaky(inner)
    store = capture(again, ["inner.4"], split(x_mlp, [6, 6, 6, 6, 5]), path, mode="a")
    assert again.calls == 4  # [0, 6) is stored; [6, 12) straddles the stored boundary
    np.testing.assert_array_equal(store.sample_ids, np.arange(29))
    np.testing.assert_allclose(np.asarray(store["inner.4"]), manual(inner, [x_mlp], 4), rtol=1e-6, atol=1e-7)


def test_resume_refuses_a_different_store(tmp_path, x_mlp):
    model = mlp()
    cap(model, ["0"], [x_mlp], tmp_path / "a.zarr")
    with pytest.raises(bigalign.InvalidInputError, match=r"holds layers \['0'\], but this capture writes \['2'\]"):
        cap(model, ["2"], [x_mlp], tmp_path / "a.zarr", mode="a")
    with bigalign.ActivationWriter(tmp_path / "noids.zarr") as w:
        w.append({"0": np.zeros((2, 16), np.float32)})
    with pytest.raises(bigalign.InvalidInputError, match="has no sample ids"):
        cap(model, ["0"], [x_mlp], tmp_path / "noids.zarr", mode="a")
    with pytest.raises(bigalign.InvalidInputError, match="has int sample ids but batch 0 has str ids"):
        cap(model, ["0"], [x_mlp], tmp_path / "a.zarr", mode="a", sample_ids=[f"s{i}" for i in range(29)])


def test_hooks_removed_after_every_kind_of_error(tmp_path, x_mlp):
    class Twice(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.lin = nn.Linear(6, 6)
            self.unused = nn.Linear(6, 6)

        def forward(self, x):
            return self.lin(self.lin(x))

    model = Twice()
    with pytest.raises(bigalign.InvalidInputError, match="ran more than once"):
        cap(model, ["lin"], [x_mlp], tmp_path / "a.zarr")
    assert hooks_left(model) == []
    with pytest.raises(bigalign.InvalidInputError, match=r"did not run in the forward pass of batch 0"):
        cap(model, {"unused": "unused", "out": ""}, [x_mlp], tmp_path / "b.zarr")
    assert hooks_left(model) == []
    with pytest.raises(bigalign.InvalidInputError, match="expected the batch axis first"):
        cap(model, {"t": ""}, [x_mlp], tmp_path / "c.zarr", reduce=lambda t: t.T)
    assert hooks_left(model) == []
    assert not (tmp_path / "a.zarr").exists()  # the store is created with the first batch to write


# --------------------------------------------------------------------------- #
# argument errors
# --------------------------------------------------------------------------- #


def test_unknown_layer_lists_the_model_modules(tmp_path, x_mlp):
    model = nn.Sequential(*[nn.Linear(6, 6) for _ in range(30)])
    with pytest.raises(bigalign.InvalidInputError) as info:
        cap(model, ["0", "31", "lin"], [x_mlp], tmp_path / "a.zarr")
    msg = str(info.value)
    assert "Sequential has no module named '31', 'lin'" in msg
    assert "it has 30: ['0', '1'," in msg and "'19']" in msg and "and 10 more" in msg
    assert "Did you mean: '31' -> '3'" in msg
    assert isinstance(info.value, ValueError)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(layers="0"), r"got the string '0'. Pass \['0'\]"),
        (dict(layers=[]), "layers is empty"),
        (dict(layers=[""]), r"the model itself \(''\) cannot be a store layer name"),
        (dict(layers={"sample_ids": "0"}), "cannot be a store layer name"),
        (dict(dtype="int8"), "dtype must be one of"),
        (dict(reduce="mean"), "reduce must be one of"),
        (dict(reduce={"nope": "mean_tokens"}), "not captured"),
        (dict(mode="r"), "mode must be 'x'"),
        (dict(device="nonsense"), "device must be a torch.device"),
        (dict(forward="model"), "forward must be a callable"),
        (dict(sample_ids="ids"), "got the string 'ids'"),
        (dict(batches=torch.zeros(4, 6)), r"got a single Tensor of shape \(4, 6\)"),
        (dict(batches=[]), "batches yielded no samples"),
        (dict(batches=[{"x": torch.zeros(2, 6)}]), "under 'input'"),
        (dict(model=lambda x: x), "model must be a torch.nn.Module"),
    ],
)
def test_argument_errors(tmp_path, x_mlp, kwargs, match):
    args = dict(model=mlp(), layers=["0"], batches=[x_mlp]) | kwargs
    with pytest.raises(bigalign.InvalidInputError, match=match):
        cap(args.pop("model"), args.pop("layers"), args.pop("batches"), tmp_path / "a.zarr", **args)


def test_without_torch_import_error_says_how_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "torch", None)  # `import torch` now raises ImportError
    with pytest.raises(ImportError, match=r"pip install 'bigalign\[torch\]'"):
        cap(None, ["0"], [], "unused.zarr")


def test_importing_bigalign_does_not_import_torch():
    code = "import sys, bigalign, bigalign.capture; assert 'torch' not in sys.modules, 'torch imported'"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr


# --------------------------------------------------------------------------- #
# captured stores feed the metrics
# --------------------------------------------------------------------------- #


def test_cka_between_captured_layers(tmp_path):
    x = torch.randn(64, 6, generator=torch.Generator().manual_seed(7))
    parts = split(x, [32, 32])
    a = cap(mlp(0), ["0", "2"], parts, tmp_path / "a.zarr")
    b = cap(mlp(1), ["0", "2"], parts, tmp_path / "b.zarr")
    same = bigalign.cka(a["2"], a["2"])
    assert same.value == pytest.approx(1.0, abs=1e-12)
    r = bigalign.cka(a["0"], b["2"])  # across stores: sample ids checked, so no PairingWarning
    assert np.isfinite(r.value) and r.n_samples == 64
    m = bigalign.compare_layers(a, b)
    assert m.values.shape == (2, 2) and not m.values.mask.any()
    assert m["2", "2"].value == pytest.approx(bigalign.cka(a["2"], b["2"]).value, rel=1e-12)


@pytest.mark.slow
def test_example_runs(tmp_path):
    pytest.importorskip("sklearn")
    proc = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "capture_torch.py"), "--epochs", "1", "--out", str(tmp_path)],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stderr
    assert "layer x layer CKA" in proc.stdout
