"""The documentation is real: every ```python block of README.md and docs/*.md runs, and every
docstring example of every bigalign module passes as a doctest."""

from __future__ import annotations

import doctest
import importlib
import pkgutil
import re
from pathlib import Path

import pytest

import bigalign

ROOT = Path(__file__).resolve().parent.parent
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
FENCE = re.compile(r"^```python[ \t]*\n(.*?)^```", re.S | re.M)


def _blocks() -> list:
    out = []
    for page in PAGES:
        for i, m in enumerate(FENCE.finditer(page.read_text(encoding="utf-8"))):
            line = page.read_text(encoding="utf-8")[: m.start()].count("\n") + 1
            out.append(pytest.param(page, m.group(1), id=f"{page.relative_to(ROOT)}:{line}"))
    return out


BLOCKS = _blocks()


def test_every_page_is_found():
    assert (ROOT / "README.md") in PAGES and len(PAGES) > 5
    assert len(BLOCKS) >= 5  # README's quick start and the guides' examples


@pytest.mark.parametrize("page, code", BLOCKS)
def test_python_block_runs(page, code, tmp_path, monkeypatch):
    """Each block standalone: a fresh namespace and an empty working directory."""
    if re.search(r"^\s*import torch", code, re.M):
        pytest.importorskip("torch")
    monkeypatch.chdir(tmp_path)
    exec(compile(code, f"{page.name} (python block)", "exec"), {"__name__": "__docs__"})  # noqa: S102


def _modules() -> list[str]:
    names = [bigalign.__name__]
    for info in pkgutil.walk_packages(bigalign.__path__, prefix="bigalign."):
        names.append(info.name)
    return sorted(names)


MODULES = _modules()


def test_modules_are_found():
    assert {"bigalign.metrics.kernel", "bigalign.stats", "bigalign.metrics.spectral", "bigalign.engine"} <= set(MODULES)


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name, tmp_path, monkeypatch):
    """doctest over every module (examples that need an optional dependency say +SKIP)."""
    monkeypatch.chdir(tmp_path)
    module = importlib.import_module(name)
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE, verbose=False)
    assert result.failed == 0, f"{result.failed} of {result.attempted} docstring examples of {name} failed (output above)"
