"""capture's token reductions: masked means, first/last token, token-level stores."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
from torch import nn  # noqa: E402

import bigalign  # noqa: E402
from bigalign.capture import capture  # noqa: E402
from bigalign.errors import InvalidInputError, StoreError  # noqa: E402


class Tiny(nn.Module):
    """Embedding + one self-attention block that ignores padding (as a tokenizer-fed transformer does)."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.emb = nn.Embedding(50, 16)
        self.block = nn.TransformerEncoderLayer(16, 2, 32, dropout=0.0, batch_first=True)

    def forward(self, input_ids, attention_mask):
        return self.block(self.emb(input_ids), src_key_padding_mask=attention_mask == 0)


def _model():
    return Tiny().double()


SENTENCES = [[5, 6, 7], [8, 9, 10, 11, 12, 13, 14], [15, 16], [17, 18, 19, 20, 21]]


def _batch(seqs, pad_left=False, length=None):
    length = length or max(map(len, seqs))
    ids = torch.zeros(len(seqs), length, dtype=torch.long)
    mask = torch.zeros(len(seqs), length, dtype=torch.long)
    for i, s in enumerate(seqs):
        sl = slice(length - len(s), length) if pad_left else slice(0, len(s))
        ids[i, sl] = torch.tensor(s)
        mask[i, sl] = 1
    return {"input_ids": ids, "attention_mask": mask}


@pytest.mark.parametrize("reduce", ["mean_tokens", "first_token", "last_token"])
@pytest.mark.parametrize("pad_left", [False, True])
def test_pooled_vector_does_not_depend_on_batch_neighbours(tmp_path, reduce, pad_left):
    model = _model()
    alone = capture(model, {"h": "block"}, [_batch([s]) for s in SENTENCES], tmp_path / "alone.zarr", reduce=reduce)
    # the same sentences, padded to the longest of a batch, or to a length of 12
    together = capture(model, {"h": "block"}, [_batch(SENTENCES[:2], pad_left), _batch(SENTENCES[2:], pad_left, 12)],
                       tmp_path / "together.zarr", reduce=reduce)  # fmt: skip
    a, b = np.asarray(alone["h"]), np.asarray(together["h"])
    assert a.shape == (4, 16)
    np.testing.assert_allclose(b, a, rtol=1e-10, atol=1e-12)
    np.testing.assert_array_equal(together.sample_ids, np.arange(4))


def test_mean_without_the_mask_would_depend_on_neighbours(tmp_path):
    """The check above has teeth: the plain mean over every position differs once padding is added."""
    model = _model()
    alone = capture(model, {"h": "block"}, [_batch([SENTENCES[0]])], tmp_path / "a.zarr", reduce="mean_tokens")
    padded = _batch([SENTENCES[0]], length=9)
    with torch.inference_mode():
        out = model(**padded)
    assert not np.allclose(out.mean(1).numpy(), np.asarray(alone["h"]), atol=1e-6)
    masked = (out * padded["attention_mask"][..., None]).sum(1) / 3
    np.testing.assert_allclose(masked.numpy(), np.asarray(alone["h"]), rtol=1e-10)


def test_first_and_last_token_pick_the_real_tokens(tmp_path):
    model = _model()
    batch = _batch(SENTENCES, pad_left=True)
    with torch.inference_mode():
        emb = model.emb(batch["input_ids"]).numpy()
    first = capture(model, {"e": "emb"}, [batch], tmp_path / "f.zarr", reduce="first_token")
    last = capture(model, {"e": "emb"}, [batch], tmp_path / "l.zarr", reduce="last_token")
    table = model.emb.weight.detach().numpy()
    np.testing.assert_array_equal(np.asarray(first["e"]), table[[s[0] for s in SENTENCES]])
    np.testing.assert_array_equal(np.asarray(last["e"]), table[[s[-1] for s in SENTENCES]])
    assert emb.shape[1] == 7


def test_token_level_store_holds_every_real_token_with_sequence_and_position_ids(tmp_path):
    model = _model()
    batches = [_batch(SENTENCES[:2]), _batch(SENTENCES[2:], pad_left=True, length=8)]
    store = capture(model, {"e": "emb", "h": "block"}, batches, tmp_path / "t.zarr", reduce="tokens",
                    sample_ids=["s0", "s1", "s2", "s3"])  # fmt: skip
    n_tokens = sum(map(len, SENTENCES))
    assert store.n_samples == n_tokens
    want_ids = [f"s{i}:{p}" for i, s in enumerate(SENTENCES) for p in range(len(s))]
    assert store.sample_ids.tolist() == want_ids
    table = model.emb.weight.detach().numpy()
    np.testing.assert_array_equal(np.asarray(store["e"]), table[[t for s in SENTENCES for t in s]])
    # each token's vector matches the same sentence run alone
    alone = capture(model, {"h": "block"}, [_batch([SENTENCES[1]])], tmp_path / "one.zarr", reduce="tokens")
    np.testing.assert_allclose(np.asarray(store["h"])[3:10], np.asarray(alone["h"]), rtol=1e-10, atol=1e-12)
    assert store.attrs["capture"]["reduce"] == "tokens"


def test_token_level_capture_resumes_by_sequence(tmp_path):
    model = _model()
    batches = [_batch(SENTENCES[:2]), _batch(SENTENCES[2:])]
    path = tmp_path / "t.zarr"
    capture(model, {"h": "block"}, batches[:1], path, reduce="tokens")
    store = capture(model, {"h": "block"}, batches, path, reduce="tokens", mode="a")
    assert store.n_samples == sum(map(len, SENTENCES))
    assert store.sample_ids[-1] == "3:4"


def test_token_reduction_needs_the_mask_of_tokenizer_batches(tmp_path):
    model = _model()
    batch = _batch(SENTENCES[:2])
    del batch["attention_mask"]
    with pytest.raises(InvalidInputError, match="no attention_mask"):
        capture(model, {"h": "emb"}, [batch], tmp_path / "s.zarr", reduce="mean_tokens")


def test_token_level_and_pooled_layers_cannot_share_a_store(tmp_path):
    with pytest.raises(InvalidInputError, match="same samples"):
        capture(_model(), {"e": "emb", "h": "block"}, [_batch(SENTENCES)], tmp_path / "s.zarr",
                reduce={"e": "tokens", "h": "mean_tokens"})  # fmt: skip


def test_default_mode_refuses_an_existing_store_before_running_the_model(tmp_path):
    model = _model()
    path = tmp_path / "s.zarr"
    capture(model, {"h": "emb"}, [_batch(SENTENCES)], path, reduce="mean_tokens")
    ran = []
    model.register_forward_hook(lambda *a: ran.append(1))
    with pytest.raises(StoreError, match=r"mode='a'.*mode='w'"):
        capture(model, {"h": "emb"}, [_batch(SENTENCES)], path, reduce="mean_tokens")
    assert not ran
    capture(model, {"h": "emb"}, [_batch(SENTENCES)], path, reduce="mean_tokens", mode="w")
    with pytest.raises(StoreError, match=r"mode='w'"):
        bigalign.ActivationWriter(path)
