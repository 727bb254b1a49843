"""Capture the activations of a PyTorch model into an activation store.

:func:`capture` runs a ``torch.nn.Module`` over batches of inputs, records the
outputs of named submodules with forward hooks and writes them, batch by batch
and with sample ids, through :class:`bigalign.ActivationWriter` — so a capture
that crashes leaves a store holding exactly the batches it completed, and
rerunning it with ``mode="a"`` continues where it stopped.

PyTorch is an optional dependency (``pip install 'bigalign[torch]'``). This
module never imports it at import time; :func:`capture` imports it when called.
"""

from __future__ import annotations

import difflib
import warnings
from collections.abc import Iterable, Mapping
from typing import Any, Callable, Literal, Union

import ml_dtypes
import numpy as np

from .errors import InvalidInputError, StoreError
from .io import _LAYER_NAME, _RESERVED, ActivationStore, ActivationWriter, open_activations

__all__ = ["capture", "DTYPES", "REDUCTIONS"]

#: values of ``dtype=`` (None keeps each layer's own dtype)
DTYPES = ("float16", "bfloat16", "float32", "float64")
#: named values of ``reduce=``
REDUCTIONS = ("mean_tokens", "first_token", "last_token", "tokens", "mean_spatial")
#: the named reductions of (batch, tokens, features) outputs, which follow the batch's attention mask
TOKEN_REDUCTIONS = ("mean_tokens", "first_token", "last_token", "tokens")
_N_LISTED = 20  # module names listed in the unknown-layer error

Reduce = Union[None, str, Callable[[Any], Any]]


def _import_torch() -> Any:
    try:
        import torch
    except ImportError as exc:
        raise ImportError(
            "bigalign.capture needs PyTorch, which is not installed. Install it with "
            "pip install 'bigalign[torch]' (or install a torch build for your hardware "
            "from https://pytorch.org first)."
        ) from exc
    return torch


# --------------------------------------------------------------------------- #
# public API
# --------------------------------------------------------------------------- #


def capture(
    model: Any,
    layers: Iterable[str] | Mapping[str, str],
    batches: Iterable[Any],
    path: Any,
    *,
    sample_ids: Any = None,
    mode: Literal["x", "w", "a"] = "x",
    dtype: Literal["float16", "bfloat16", "float32", "float64"] | None = None,
    reduce: Reduce | Mapping[str, Reduce] = None,
    device: Any = None,
    forward: Callable[[Any, Any], Any] | None = None,
    chunk_rows: int | None = None,
    compressors: Any = "default",
    durability: Literal["process", "power"] = "process",
    attrs: Mapping[str, Any] | None = None,
) -> ActivationStore:
    """Run a PyTorch model over batches and store the outputs of named submodules.

    The model is put in eval mode (each submodule's training flag is restored
    afterwards) and run under ``torch.inference_mode()``.  A forward hook on
    every requested submodule takes its output, detaches it, optionally reduces
    and casts it (on the model's device), copies it to the CPU and keeps it
    until the batch's forward pass ends; then one
    :meth:`ActivationWriter.append` writes every layer of the batch with its
    sample ids.  Hooks are removed whatever happens.

    Parameters
    ----------
    model : torch.nn.Module
        The model. It is not moved between devices (see ``device``).
    layers : list of str, or dict of str to str
        Submodule names as in ``model.named_modules()`` (e.g. ``"encoder.layer.3"``);
        each becomes a store layer of the same name.  A dict
        ``{store_layer_name: module_name}`` chooses the store names (and may
        name the model itself, ``""``, e.g. ``{"logits": ""}``).  Store names
        are letters, digits, ``.``, ``_`` and ``-``, not starting with ``.``.
    batches : iterable
        Input batches, e.g. a ``torch.utils.data.DataLoader`` (with
        ``shuffle=False`` unless ids come from the batches), a list or a
        generator.  Each batch is

        * a tensor (or numpy array): the input, called as ``model(batch)``;
        * a tuple or list: its first element is the input (so ``(x, y)``
          batches of a ``TensorDataset`` work; the rest is ignored unless
          ``sample_ids="batch"``);
        * a dict with an ``"input"`` entry: that entry is the input;
        * any other dict, such as a Hugging Face tokenizer's output
          (``input_ids``, ``attention_mask``, ...): called as
          ``model(**batch)`` (without a ``"sample_ids"`` entry).

        The input's first axis is the batch axis.  A dict batch's
        ``"attention_mask"`` (1 for real tokens, 0 for padding) is what the
        token reductions of ``reduce`` follow.  For any other calling
        convention pass ``forward``.
    path : str or pathlib.Path
        Where to write the store (see :class:`ActivationWriter`).
    sample_ids : None, "batch", callable or array-like, default=None
        One unique id (integer or string) per sample:

        * ``None``: a running integer index, 0, 1, 2, ... over the samples in
          the order the batches yield them (skipped batches count too, so a
          rerun with the same batches gives the same ids).  A shuffling
          DataLoader is refused, since its ids would not name the same
          samples in another run or for another model;
        * ``"batch"``: from the batches: the second element of ``(input, ids)``
          tuples, or the ``"sample_ids"`` entry of dict batches;
        * a callable: ``sample_ids(batch)`` returns the batch's ids;
        * an array-like: the ids of all samples, in order, consumed batch by
          batch (ids left over at the end give a warning).
    mode : {"x", "w", "a"}, default="x"
        ``"x"`` writes a new store and refuses a ``path`` that holds one
        (checked before the model runs); ``"w"`` replaces the store at
        ``path`` (when the first batch is ready to write); ``"a"`` resumes it: samples whose ids are already in the
        store are not written again, and a batch whose samples are all there
        is skipped without running the model.  Rerun a crashed capture with
        the same arguments and ``mode="a"`` to finish it.
    dtype : {"float16", "bfloat16", "float32", "float64"}, optional
        Cast the (reduced) activations to this dtype before the copy to the
        CPU; default keeps each layer's dtype.  bfloat16 is stored losslessly
        (read back as ``ml_dtypes.bfloat16``).
    reduce : None, "mean_tokens", "first_token", "last_token", "tokens", "mean_spatial", callable, or dict, optional
        Reduce each output before it is stored (on the model's device):

        * ``"mean_tokens"``: the mean over the tokens of each sequence,
          ``(batch, tokens, features) -> (batch, features)``.  When the batch
          is a dict with an ``"attention_mask"``, only the real tokens are
          averaged, so a sequence's vector does not depend on how much padding
          its batch neighbours forced on it.  Without a mask every position
          is averaged (and every axis between the batch axis and the last one,
          for channels-last outputs such as ``batch_first`` RNNs);
        * ``"first_token"`` / ``"last_token"``: the first / last real token of
          each sequence (the mask's first / last 1, so left and right padding
          both work; without a mask position 0 / -1).  ``first_token`` is
          BERT's ``[CLS]``; ``last_token`` what decoder language models
          summarise a sequence with;
        * ``"tokens"``: token level — every real (non-padding) token becomes a
          sample of its own, ``(batch, tokens, features) -> (real tokens,
          features)``, with the string sample id ``"<sequence id>:<position>"``
          (position counts real tokens from 0).  Every layer of the capture
          must then be token level.  Two token-level stores pair only when
          both models tokenise alike (same tokenizer: same ids); to compare
          models with different tokenizers, compare their pooled stores
          (``"mean_tokens"``, ``"last_token"``), which pair by sequence id;
        * ``"mean_spatial"``: mean over every axis after the second —
          ``(batch, channels, h, w) -> (batch, channels)``, for
          channels-first outputs (convolutions);
        * a callable ``f(tensor) -> tensor`` keeping the batch axis first;
        * a dict ``{store_layer_name: one of the above}`` (missing layers: None).

        A batch that is a dict carrying ``input_ids`` but no
        ``attention_mask`` is refused by the token reductions: it is
        tokenizer output whose padding cannot be told from real tokens.
        The named means accumulate in float64 (float32 on Apple ``mps``) and
        give the layer's own dtype back; they leave 2-D outputs unchanged.
        Without a reduction, extra axes are stored as they are and flattened
        into features when the store is read.
    device : torch.device or str, optional
        Where inputs are moved. Default: the device of the model's first
        parameter (or buffer; the CPU for a model with neither).
    forward : callable, optional
        ``forward(model, batch)`` runs the model on a whole batch (moved to
        ``device``, tensors in tuples/lists/dicts included), e.g.
        ``lambda m, b: m(**b)`` for dicts of keyword inputs.  The number of
        samples is then the first axis of the batch's first tensor.
    chunk_rows, compressors, durability, attrs
        Passed to :class:`ActivationWriter`.  ``attrs`` is merged over a
        ``"capture"`` attribute recording the model class, the module of each
        layer, ``dtype`` and ``reduce``.

    Returns
    -------
    ActivationStore
        The store at ``path``, opened for reading.

    Raises
    ------
    ImportError
        If PyTorch is not installed.
    InvalidInputError
        For an unknown module name (the message lists the model's modules), an
        invalid option, a shuffling DataLoader with running-index ids, ids
        that do not match the batches, a layer that did not run or ran more
        than once in a forward pass, or an output whose first axis is not the
        batch.
    StoreError
        For a ``path`` that cannot hold or resume a store.

    Notes
    -----
    * A module whose output is a tuple or list (``nn.LSTM``, attention blocks
      returning ``(hidden, weights)``) is recorded by its element 0; a mapping
      output (e.g. a ``ModelOutput``) by its first value.  A 1-D output
      ``(batch,)`` is stored as ``(batch, 1)``.
    * Outputs are copied when recorded, so in-place operations later in the
      forward pass (``nn.ReLU(inplace=True)``) do not alter them.
    * Memory: one batch of every requested layer, on the CPU, at a time.
    * With ``mode="a"`` and running-index ids, ids restart at 0: samples
      already captured are skipped, which is what resuming needs.  To add new
      samples to a store, give them new ids.

    Examples
    --------
    >>> import torch, bigalign                                      # doctest: +SKIP
    >>> model = torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.ReLU(),
    ...                             torch.nn.Linear(16, 4))          # doctest: +SKIP
    >>> loader = torch.utils.data.DataLoader(torch.randn(100, 8), batch_size=32)  # doctest: +SKIP
    >>> store = bigalign.capture(model, ["0", "2"], loader, "acts.zarr")  # doctest: +SKIP
    >>> store.n_samples, store.layers                                # doctest: +SKIP
    (100, ['0', '2'])
    """
    torch = _import_torch()
    if not isinstance(model, torch.nn.Module):
        raise InvalidInputError(
            f"model must be a torch.nn.Module; got {type(model).__name__}. "
            "Wrap a plain function in a torch.nn.Module, or write its activations with ActivationWriter."
        )
    if mode not in ("x", "w", "a"):
        raise InvalidInputError(
            f"mode must be 'x' (new store), 'w' (replace) or 'a' (resume); got {mode!r}. Use 'a' to resume a capture."
        )
    if durability not in ("process", "power"):
        raise InvalidInputError(
            "durability must be 'process' (every stored batch survives the process being killed) or 'power' "
            f"(also a power loss or OS crash: one fsync per batch); got {durability!r}."
        )
    if isinstance(batches, (torch.Tensor, np.ndarray)):
        raise InvalidInputError(
            f"batches must be an iterable of batches; got a single {type(batches).__name__} of shape "
            f"{tuple(batches.shape)}. Pass [x], torch.split(x, 256) or a DataLoader."
        )
    if not isinstance(batches, Iterable):
        raise InvalidInputError(
            f"batches must be an iterable of input batches (e.g. a DataLoader); got {type(batches).__name__}."
        )
    if forward is not None and not callable(forward):
        raise InvalidInputError(f"forward must be a callable forward(model, batch); got {type(forward).__name__}.")
    if dtype is not None and dtype not in DTYPES:
        raise InvalidInputError(f"dtype must be one of {list(DTYPES)} or None; got {dtype!r}.")

    modules = dict(model.named_modules(remove_duplicate=False))
    names = _resolve_layers(model, layers, modules)
    reducers, reduce_record = _resolve_reduce(torch, reduce, names)
    target_dtype = None if dtype is None else getattr(torch, dtype)
    dev = _resolve_device(torch, model, device)
    ids_of = _IdSource(torch, sample_ids, batches)
    if mode == "x":
        _refuse_existing(path)
    existing = _existing_ids(path, mode, names)
    kinds = {s: reduce_record.get(s) if isinstance(reduce_record, Mapping) else reduce_record for s in names}
    token_level = [s for s, k in kinds.items() if k == "tokens"]
    if token_level and len(token_level) != len(names):
        raise InvalidInputError(
            f"layers {token_level} are captured token by token (reduce='tokens') but {[s for s in names if s not in token_level]} "
            "are not: a store's layers must hold the same samples. Capture the token-level layers into a store of "
            "their own."
        )
    tokens_mode = bool(token_level)
    mask_box: list[Any] = [None]

    meta = {
        "capture": {
            "model": f"{type(model).__module__}.{type(model).__qualname__}",
            "modules": dict(names),
            "dtype": dtype,
            "reduce": reduce_record,
        }
    }
    meta.update(dict(attrs or {}))

    # one hook per distinct module, feeding every store name that maps to it
    by_module: dict[int, tuple[str, Any, list[str]]] = {}
    for store_name, module_name in names.items():
        mod = modules[module_name]
        by_module.setdefault(id(mod), (module_name, mod, []))[2].append(store_name)
    records: dict[str, np.ndarray] = {}

    def make_hook(module_name: str, store_names: list[str]) -> Callable[..., None]:
        def hook(module: Any, args: Any, output: Any) -> None:
            out = _first_tensor(torch, output, module_name)
            for s in store_names:
                if s in records:
                    raise InvalidInputError(
                        f"module {module_name!r} (layer {s!r}) ran more than once in one forward pass; capture "
                        "records one output per sample. Capture a submodule that runs once, or wrap the "
                        "repeated calls in a module of their own."
                    )
                records[s] = _to_numpy(torch, out, reducers[s], target_dtype, s, mask_box[0])

        return hook

    training = {m: m.training for m in model.modules()}
    handles = []
    writer: ActivationWriter | None = None
    seen_kind: str | None = None
    try:
        for module_name, mod, store_names in by_module.values():
            handles.append(mod.register_forward_hook(make_hook(module_name, store_names)))
        model.eval()
        with torch.inference_mode():
            for k, batch in enumerate(batches):
                call = "forward" if forward is not None else _call_kind(batch)
                inp = _input_of(torch, batch, k) if call == "input" else None
                rows = int(inp.shape[0]) if inp is not None else _rows_of(torch, batch, k)
                mask = _mask_of(torch, batch, rows, k, needed=any(kinds[s] in TOKEN_REDUCTIONS for s in names))
                mask_box[0] = mask
                ids = ids_of(batch, rows, k)
                if existing and ids.size:
                    kind = "str" if ids.dtype.kind == "U" else "int"
                    if seen_kind is None and kind != existing[1] and not tokens_mode:
                        raise InvalidInputError(
                            f"the store at {path!r} has {existing[1]} sample ids but batch {k} has {kind} ids; "
                            "resume with the ids of the first run, or write a new store with mode='w'."
                        )
                    seen_kind = kind
                    probe = [f"{i}:0" for i in ids.tolist()] if tokens_mode else ids.tolist()
                    keep = np.fromiter((i not in existing[0] for i in probe), bool, len(ids))
                else:
                    keep = np.ones(len(ids), bool)
                if not keep.any():
                    continue  # already in the store (or an empty batch)
                records.clear()
                if call == "input":
                    model(inp.to(dev))
                elif call == "kwargs":
                    kwargs = {key: v for key, v in _to_device(torch, batch, dev).items() if key != "sample_ids"}
                    try:
                        model(**kwargs)
                    except TypeError as exc:
                        if records:
                            raise
                        raise InvalidInputError(
                            f"batch {k} is a dict with keys {list(batch)[:10]} and no 'input' entry, so it was passed "
                            f"as keyword arguments, model(**batch), which failed: {exc}. Put the model input under "
                            "'input', or pass forward=lambda model, batch: ... for other calling conventions."
                        ) from exc
                else:
                    forward(model, _to_device(torch, batch, dev))
                if tokens_mode:
                    lengths = mask.sum(1).cpu().numpy() if mask is not None else None
                    acts = _collect(records, names, None, k)
                    n_tok = next(iter(acts.values())).shape[0]
                    if lengths is None:
                        lengths = np.full(rows, n_tok // rows if rows else 0)
                    row_of_token = np.repeat(np.arange(rows), lengths)
                    if n_tok != len(row_of_token):
                        raise InvalidInputError(f"batch {k}: token-level layers returned {n_tok} rows for {len(row_of_token)} real tokens.")
                    position = np.arange(n_tok) - np.repeat(np.cumsum(lengths) - lengths, lengths)
                    tok_keep = keep[row_of_token]
                    ids = np.array([f"{i}:{p}" for i, p in zip(ids[row_of_token].tolist(), position.tolist())], dtype=str)
                    if not tok_keep.all():
                        acts = {s: a[tok_keep] for s, a in acts.items()}
                        ids = ids[tok_keep]
                else:
                    acts = _collect(records, names, rows, k)
                    if not keep.all():
                        acts = {s: a[keep] for s, a in acts.items()}
                        ids = ids[keep]
                records.clear()
                if writer is None:
                    writer = ActivationWriter(
                        path, mode, chunk_rows=chunk_rows, compressors=compressors, durability=durability, attrs=meta
                    )
                writer.append(acts, sample_ids=ids)
        ids_of.finish()
    finally:
        mask_box[0] = None
        for h in handles:
            h.remove()
        for m, flag in training.items():
            m.training = flag
        records.clear()
        if writer is not None:
            writer.close()
    if writer is None and not existing:
        raise InvalidInputError(
            f"batches yielded no samples, so nothing was written to {path!r}. "
            "Expected at least one non-empty batch."
        )
    return open_activations(path)


# --------------------------------------------------------------------------- #
# argument resolution
# --------------------------------------------------------------------------- #


def _resolve_layers(model: Any, layers: Any, modules: Mapping[str, Any]) -> dict[str, str]:
    """{store layer name: module name}, validated."""
    if isinstance(layers, str):
        raise InvalidInputError(
            f"layers must be a list of module names or a dict {{store name: module name}}; got the string "
            f"{layers!r}. Pass [{layers!r}]."
        )
    if isinstance(layers, Mapping):
        pairs = list(layers.items())
    elif isinstance(layers, Iterable):
        pairs = [(n, n) for n in layers]
    else:
        raise InvalidInputError(
            f"layers must be a list of module names or a dict {{store name: module name}}; got {type(layers).__name__}."
        )
    if not pairs:
        raise InvalidInputError("layers is empty; name at least one module of the model (see model.named_modules()).")
    bad = [p for p in pairs if not (isinstance(p[0], str) and isinstance(p[1], str))]
    if bad:
        raise InvalidInputError(f"layer and module names must be strings; got {bad[:5]}.")
    unknown = [m for _, m in pairs if m not in modules]
    if unknown:
        available = [n for n in modules if n]
        listed = available[:_N_LISTED]
        more = f" ... and {len(available) - len(listed)} more" if len(available) > len(listed) else ""
        hints = []
        for u in unknown[:3]:
            close = difflib.get_close_matches(u, available, n=1)
            if close:
                hints.append(f"{u!r} -> {close[0]!r}?")
        hint = f" Did you mean: {', '.join(hints)}" if hints else ""
        raise InvalidInputError(
            f"{type(model).__name__} has no module named {', '.join(map(repr, unknown))}. Expected names as "
            f"listed by model.named_modules(); it has {len(available)}: {listed}{more}.{hint}"
        )
    names: dict[str, str] = {}
    for store_name, module_name in pairs:
        if store_name in names:
            raise InvalidInputError(f"layer {store_name!r} is named twice; each store layer needs its own name.")
        if not _LAYER_NAME.fullmatch(store_name) or store_name in _RESERVED:
            what = "the model itself ('')" if store_name == "" else repr(store_name)
            raise InvalidInputError(
                f"{what} cannot be a store layer name: names are letters, digits, '.', '_' and '-', do not "
                f"start with '.', and are not one of {sorted(_RESERVED)}. Name it with a dict, "
                f"e.g. layers={{'output': {module_name!r}}}."
            )
        names[store_name] = module_name
    return names


def _resolve_reduce(torch: Any, reduce: Any, names: Mapping[str, str]) -> tuple[dict[str, Any], Any]:
    """Per store layer: None, a named reduction function, or the user's callable; plus a JSON record."""

    def one(r: Any, where: str) -> tuple[Any, Any]:
        if r is None:
            return None, None
        if isinstance(r, str):
            if r not in REDUCTIONS:
                raise InvalidInputError(
                    f"{where} must be one of {list(REDUCTIONS)}, a callable or None; got {r!r}. "
                    "'mean_tokens' averages (batch, tokens, features) over the real tokens; 'first_token' / "
                    "'last_token' take one token; 'tokens' stores every real token as a sample; 'mean_spatial' "
                    "averages (batch, channels, h, w) over h and w."
                )
            return _NAMED[r], r
        if callable(r):
            return r, getattr(r, "__qualname__", repr(r))
        raise InvalidInputError(f"{where} must be one of {list(REDUCTIONS)}, a callable or None; got {type(r).__name__}.")

    if isinstance(reduce, Mapping):
        unknown = [k for k in reduce if k not in names]
        if unknown:
            raise InvalidInputError(
                f"reduce names layers {unknown} that are not captured; expected keys among {list(names)}."
            )
        pairs = {s: one(reduce.get(s), f"reduce[{s!r}]") for s in names}
        return {s: p[0] for s, p in pairs.items()}, {s: p[1] for s, p in pairs.items()}
    fn, record = one(reduce, "reduce")
    return {s: fn for s in names}, record


def _resolve_device(torch: Any, model: Any, device: Any) -> Any:
    if device is not None:
        try:
            return torch.device(device)
        except (RuntimeError, TypeError) as exc:
            raise InvalidInputError(f"device must be a torch.device or a string such as 'cuda:0'; got {device!r}.") from exc
    for t in model.parameters():
        return t.device
    for t in model.buffers():
        return t.device
    return torch.device("cpu")


def _existing_ids(path: Any, mode: str, names: Mapping[str, str]) -> tuple[set, str] | None:
    """For mode='a': (ids already in the store, their kind), or None when there is nothing to resume."""
    if mode != "a":
        return None
    try:
        store = open_activations(path)
    except StoreError:
        return None  # no store yet (or none committed): the writer creates or reports it
    if set(store.layers) != set(names):
        raise InvalidInputError(
            f"the store at {path!r} holds layers {store.layers}, but this capture writes {list(names)}; "
            "resume with the same layers, or write a new store with mode='w'."
        )
    ids = store.sample_ids
    if ids is None:
        raise InvalidInputError(
            f"the store at {path!r} has no sample ids, so capture cannot tell which samples it holds; "
            "resume only stores written with sample ids (capture always writes them), or use mode='w'."
        )
    return set(ids.tolist()), ("str" if ids.dtype.kind in "UTO" else "int")


class _IdSource:
    """Turns the ``sample_ids`` argument into one id array per batch."""

    def __init__(self, torch: Any, sample_ids: Any, batches: Any):
        self.torch = torch
        self.pos = 0
        self.all: np.ndarray | None = None
        if sample_ids is None:
            self.kind = "index"
            _refuse_shuffled(torch, batches)
        elif isinstance(sample_ids, str):
            if sample_ids != "batch":
                raise InvalidInputError(
                    f"sample_ids must be None, 'batch', a callable or an array of ids; got the string {sample_ids!r}."
                )
            self.kind = "batch"
        elif callable(sample_ids):
            self.kind, self.fn = "callable", sample_ids
        else:
            self.kind = "array"
            arr = self._array(sample_ids if not _is_lazy_iterable(sample_ids) else list(sample_ids))
            if arr.ndim != 1:
                raise InvalidInputError(f"sample_ids must be 1-D (one id per sample); got shape {arr.shape}.")
            self.all = arr

    def _array(self, ids: Any) -> np.ndarray:
        if isinstance(ids, self.torch.Tensor):
            ids = ids.detach().cpu().numpy()
        arr = np.asarray(ids)
        if arr.dtype.kind in "OST":
            arr = arr.astype(str)
        if arr.size and arr.dtype.kind not in "iuU":
            raise InvalidInputError(f"sample_ids must be integers or strings; got dtype {arr.dtype}.")
        return arr

    def __call__(self, batch: Any, rows: int, k: int) -> np.ndarray:
        if self.kind == "index":
            ids = np.arange(self.pos, self.pos + rows, dtype=np.int64)
        elif self.kind == "array":
            assert self.all is not None
            if self.pos + rows > len(self.all):
                raise InvalidInputError(
                    f"sample_ids holds {len(self.all)} ids, but batch {k} needs ids for samples "
                    f"{self.pos}..{self.pos + rows - 1}. Pass one id per sample of all batches."
                )
            ids = self.all[self.pos : self.pos + rows]
        else:
            if self.kind == "callable":
                raw = self.fn(batch)
            elif isinstance(batch, Mapping):
                if "sample_ids" not in batch:
                    raise InvalidInputError(
                        f"sample_ids='batch' takes ids from the 'sample_ids' entry of dict batches; batch {k} has "
                        f"keys {list(batch)[:10]}."
                    )
                raw = batch["sample_ids"]
            elif isinstance(batch, (tuple, list)) and len(batch) >= 2:
                raw = batch[1]
            else:
                raise InvalidInputError(
                    f"sample_ids='batch' takes ids from (input, ids) tuples or dicts with a 'sample_ids' entry; "
                    f"batch {k} is a {type(batch).__name__}."
                )
            ids = self._array(raw).reshape(-1) if np.ndim(raw) == 0 else self._array(raw)
            if ids.ndim != 1 or len(ids) != rows:
                raise InvalidInputError(
                    f"batch {k} has {rows} samples but its sample ids have shape {ids.shape}; expected one id "
                    "per sample."
                )
        self.pos += rows
        return ids

    def finish(self) -> None:
        if self.all is not None and self.pos < len(self.all):
            warnings.warn(
                f"sample_ids holds {len(self.all)} ids but the batches had {self.pos} samples; the last "
                f"{len(self.all) - self.pos} ids were not used.",
                UserWarning,
                stacklevel=3,
            )


def _is_lazy_iterable(x: Any) -> bool:
    return isinstance(x, Iterable) and not hasattr(x, "__len__") and not hasattr(x, "__array__")


def _refuse_shuffled(torch: Any, batches: Any) -> None:
    data = torch.utils.data
    if not isinstance(batches, data.DataLoader):
        return
    random_samplers = (data.RandomSampler, data.SubsetRandomSampler, data.WeightedRandomSampler)
    sampler = batches.sampler
    inner = getattr(batches.batch_sampler, "sampler", None)
    if isinstance(sampler, random_samplers) or isinstance(inner, random_samplers):
        raise InvalidInputError(
            "batches is a shuffling DataLoader, and sample_ids=None numbers samples in the order they come: the "
            "ids would name different samples in another run or for another model. Use shuffle=False, or give "
            "ids that travel with the samples (sample_ids='batch' with (input, ids) batches, or a callable)."
        )


# --------------------------------------------------------------------------- #
# batches and outputs
# --------------------------------------------------------------------------- #


def _input_of(torch: Any, batch: Any, k: int) -> Any:
    if isinstance(batch, Mapping):
        if "input" not in batch:
            raise InvalidInputError(
                f"dict batches must hold the model input under 'input'; batch {k} has keys {list(batch)[:10]}. "
                "Pass forward=lambda model, batch: model(**batch) for keyword inputs."
            )
        x = batch["input"]
    elif isinstance(batch, (tuple, list)):
        if not batch:
            raise InvalidInputError(f"batch {k} is an empty {type(batch).__name__}; expected (input, ...).")
        x = batch[0]
    else:
        x = batch
    if isinstance(x, np.ndarray):
        x = torch.from_numpy(x)
    if not isinstance(x, torch.Tensor) or x.ndim == 0:
        raise InvalidInputError(
            f"batch {k}: the model input must be a tensor with a batch axis first; got "
            f"{type(x).__name__ if not isinstance(x, torch.Tensor) else 'a 0-d tensor'}. Batches are tensors, "
            "(input, ...) tuples or {'input': ...} dicts; pass forward=... for other conventions."
        )
    return x


def _call_kind(batch: Any) -> str:
    """How a batch is fed: "input" (model(x)) or "kwargs" (model(**batch), e.g. tokenizer output)."""
    if isinstance(batch, Mapping) and "input" not in batch:
        return "kwargs"
    return "input"


def _mask_of(torch: Any, batch: Any, rows: int, k: int, needed: bool) -> Any:
    """The batch's attention mask as a (batch, tokens) tensor, or None when it has none."""
    if not isinstance(batch, Mapping):
        return None
    mask = batch.get("attention_mask")
    if mask is None:
        if needed and "input_ids" in batch:
            raise InvalidInputError(
                f"batch {k} holds input_ids but no attention_mask, so padding cannot be told from real tokens and "
                "a token reduction (mean_tokens, first_token, last_token, tokens) would include it. Keep the "
                "tokenizer's attention_mask in the batch (tokenizer(..., return_attention_mask=True))."
            )
        return None
    if isinstance(mask, np.ndarray):
        mask = torch.from_numpy(mask)
    if not isinstance(mask, torch.Tensor) or mask.ndim != 2 or int(mask.shape[0]) != rows:
        raise InvalidInputError(
            f"batch {k}: attention_mask must be a (batch, tokens) tensor with {rows} rows; got "
            f"{tuple(mask.shape) if hasattr(mask, 'shape') else type(mask).__name__}."
        )
    if mask.dtype != torch.bool and bool(((mask != 0) & (mask != 1)).any()):
        raise InvalidInputError(f"batch {k}: attention_mask must hold 0 (padding) and 1 (token) only.")
    return mask


def _refuse_existing(path: Any) -> None:
    """mode='x': refuse a path that already holds something, before the model runs."""
    from pathlib import Path

    if isinstance(path, (str, Path)) and "://" not in str(path):
        p = Path(path)
        if p.exists() and (not p.is_dir() or any(p.iterdir())):
            raise StoreError(
                f"{str(path)!r} exists (it holds {'a store' if (p / 'zarr.json').is_file() else 'something'}); "
                "capture's mode='x' (the default) never overwrites. Use mode='a' to resume (or extend) it, or "
                "mode='w' to replace it."
            )


def _rows_of(torch: Any, batch: Any, k: int) -> int:
    """Samples in a batch given to ``forward``: the first axis of its first tensor."""
    stack = [batch]
    while stack:
        x = stack.pop(0)
        if isinstance(x, (torch.Tensor, np.ndarray)) and x.ndim >= 1:
            return int(x.shape[0])
        if isinstance(x, Mapping):
            stack.extend(x.values())
        elif isinstance(x, (tuple, list)):
            stack.extend(x)
    raise InvalidInputError(
        f"batch {k} holds no tensor, so its number of samples is unknown; batches given to forward must "
        "contain at least one tensor with the batch axis first."
    )


def _to_device(torch: Any, x: Any, dev: Any) -> Any:
    if isinstance(x, torch.Tensor):
        return x.to(dev)
    if isinstance(x, np.ndarray):
        return torch.from_numpy(x).to(dev)
    if isinstance(x, Mapping):
        return {k: _to_device(torch, v, dev) for k, v in x.items()}
    if isinstance(x, tuple) and hasattr(x, "_fields"):  # namedtuple
        return type(x)(*(_to_device(torch, v, dev) for v in x))
    if isinstance(x, (tuple, list)):
        return type(x)(_to_device(torch, v, dev) for v in x)
    return x


def _first_tensor(torch: Any, output: Any, module_name: str) -> Any:
    out = output
    if isinstance(out, Mapping):
        out = next(iter(out.values()), None)
    elif isinstance(out, (tuple, list)):
        out = out[0] if len(out) else None
    if not isinstance(out, torch.Tensor):
        raise InvalidInputError(
            f"module {module_name!r} returned {type(output).__name__}"
            + (f" whose first element is {type(out).__name__}" if out is not output else "")
            + "; capture records a tensor output (or element 0 of a tuple/list output, or the first value of a "
            "mapping). Capture a submodule that returns a tensor."
        )
    return out


def _mean_axes(t: Any, axes: tuple[int, ...], out_dtype: Any) -> Any:
    """Mean over ``axes`` accumulated in float64, rounded once to ``out_dtype`` (default: t's dtype)."""
    import torch

    if not axes:
        return t
    acc = torch.float32 if t.device.type == "mps" else torch.float64  # mps has no float64
    back = out_dtype or (t.dtype if t.is_floating_point() else acc)
    return t.mean(dim=axes, dtype=acc).to(back)


def _token_axis(t: Any, mask: Any, what: str) -> Any:
    """The mask on t's device, checked against t's (batch, tokens, ...) axes."""
    if t.ndim < 3 or tuple(t.shape[:2]) != tuple(mask.shape):
        raise InvalidInputError(
            f"reduce={what!r} follows the batch's attention_mask of shape {tuple(mask.shape)}, but the layer's output "
            f"has shape {tuple(t.shape)}; expected (batch, tokens, features) with the mask's (batch, tokens). Capture "
            "a module whose output is batch-first per token, or pass a callable reduce."
        )
    return mask.to(t.device)


def _mean_tokens(t: Any, out_dtype: Any = None, mask: Any = None) -> Any:
    if mask is None or t.ndim <= 2:
        return _mean_axes(t, tuple(range(1, t.ndim - 1)), out_dtype)
    import torch

    m = _token_axis(t, mask, "mean_tokens")
    acc = torch.float32 if t.device.type == "mps" else torch.float64
    back = out_dtype or (t.dtype if t.is_floating_point() else acc)
    w = m.to(acc).reshape(tuple(m.shape) + (1,) * (t.ndim - 2))
    count = w.sum(dim=1)
    if bool((count == 0).any()):
        raise InvalidInputError(
            "a sequence of the batch has no real token (its attention_mask is all 0); expected at least one 1 per row."
        )
    return ((t.to(acc) * w).sum(dim=1) / count).to(back)


def _token_at(t: Any, mask: Any, last: bool, out_dtype: Any) -> Any:
    import torch

    if t.ndim <= 2:  # one vector per sample already
        out = t
    elif mask is None:
        out = t[:, -1] if last else t[:, 0]
    else:
        m = _token_axis(t, mask, "last_token" if last else "first_token").bool()
        if bool((~m.any(dim=1)).any()):
            raise InvalidInputError(
                "a sequence of the batch has no real token (its attention_mask is all 0); expected at least one 1 per row."
            )
        pos = torch.arange(m.shape[1], device=m.device)
        idx = torch.where(m, pos, -1).amax(dim=1) if last else torch.where(m, pos, m.shape[1]).amin(dim=1)
        out = t[torch.arange(t.shape[0], device=t.device), idx]
    return out if out_dtype is None else out.to(out_dtype)


def _first_token(t: Any, out_dtype: Any = None, mask: Any = None) -> Any:
    return _token_at(t, mask, False, out_dtype)


def _last_token(t: Any, out_dtype: Any = None, mask: Any = None) -> Any:
    return _token_at(t, mask, True, out_dtype)


def _tokens(t: Any, out_dtype: Any = None, mask: Any = None) -> Any:
    if t.ndim < 3:
        raise InvalidInputError(
            f"reduce='tokens' stores every token of (batch, tokens, features) outputs; got shape {tuple(t.shape)}."
        )
    out = t.reshape(t.shape[0] * t.shape[1], *t.shape[2:]) if mask is None else t[_token_axis(t, mask, "tokens").bool()]
    return out if out_dtype is None else out.to(out_dtype)


def _mean_spatial(t: Any, out_dtype: Any = None, mask: Any = None) -> Any:
    return _mean_axes(t, tuple(range(2, t.ndim)), out_dtype)


_NAMED = {"mean_tokens": _mean_tokens, "first_token": _first_token, "last_token": _last_token, "tokens": _tokens,
          "mean_spatial": _mean_spatial}  # fmt: skip


def _to_numpy(torch: Any, out: Any, reducer: Any, target_dtype: Any, name: str, mask: Any = None) -> np.ndarray:
    t = out.detach()
    if reducer in _NAMED.values():
        t = reducer(t, target_dtype, mask)  # one rounding, from the float64 mean to the stored dtype
    elif reducer is not None:
        t = reducer(t)
        if isinstance(t, np.ndarray):
            t = torch.from_numpy(t)
        if not isinstance(t, torch.Tensor):
            raise InvalidInputError(f"reduce for layer {name!r} must return a tensor; got {type(t).__name__}.")
    if target_dtype is not None and t.dtype != target_dtype:
        t = t.to(target_dtype)
    # copy=True: the output may be modified in place later in the forward pass (ReLU(inplace=True))
    t = t.to("cpu", copy=True)
    if t.ndim == 1:
        t = t.reshape(-1, 1)
    if t.dtype == torch.bfloat16:
        return t.contiguous().view(torch.int16).numpy().view(ml_dtypes.bfloat16)
    return t.numpy()


def _collect(records: Mapping[str, np.ndarray], names: Mapping[str, str], rows: int | None, k: int) -> dict[str, np.ndarray]:
    missing = [s for s in names if s not in records]
    if missing:
        raise InvalidInputError(
            f"layers {missing} (modules {[names[s] for s in missing]}) did not run in the forward pass of batch {k}; "
            "capture only modules that run on every batch."
        )
    if rows is None:  # token level: the layers must agree with each other
        counts = {s: records[s].shape[0] for s in names}
        if len(set(counts.values())) != 1:
            raise InvalidInputError(f"token-level layers returned different numbers of tokens for batch {k}: {counts}.")
        return {s: records[s] for s in names}
    for s in names:
        a = records[s]
        if a.ndim == 0 or a.shape[0] != rows:
            raise InvalidInputError(
                f"layer {s!r} (module {names[s]!r}) returned shape {tuple(a.shape)} for batch {k} of {rows} "
                "samples; expected the batch axis first. For sequence-first modules (e.g. batch_first=False), "
                "use reduce=lambda t: t.transpose(0, 1) or capture a batch-first module."
            )
    return {s: records[s] for s in names}
