"""examples/capture_transformer.py runs end to end at a reduced size (real pretrained weights, real sentences)."""

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
@pytest.mark.skipif(
    any(importlib.util.find_spec(m) is None for m in ("torch", "transformers", "all_minilm_l6_v2", "matplotlib")),
    reason="needs pip install 'bigalign[nlp,plot]'",
)
def test_capture_transformer_example_small(tmp_path):
    proc = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "capture_transformer.py"), "--sentences", "48", "--token-sentences",
         "12", "--batch-size", "16", "--max-rows", "30", "--report-metrics", "cka", "dcor", "--out", str(tmp_path)],
        capture_output=True, text=True, timeout=600, cwd=tmp_path,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "max relative difference" in proc.stdout and "[6/6] report" in proc.stdout
    import bigalign

    pooled = bigalign.open_activations(tmp_path / "pretrained_pooled.zarr")
    assert pooled.n_samples == 48 and pooled["block6"].n_features == 384
    tokens = bigalign.open_activations(tmp_path / "pretrained_tokens.zarr")
    assert tokens.n_samples > 12 and tokens.sample_ids[0] == "0:0"
    assert (tmp_path / "report" / "report.html").exists()
    rel = float(proc.stdout.split("max relative difference ")[1].split()[0])
    assert rel < 1e-4, "a sentence's pooled vector must not depend on its batch neighbours"
