"""The examples in `itra`'s docstrings run as doctests, and every name of the public API documents its arguments,
what it raises and an example (STYLE.md, practice 14; torchmetrics' functionals).

Every module of `src/itra` whose text holds an example (`>>>`) is run, so a new example runs without a change here.
The examples print shapes, booleans, exact values (0 of identical samples) or values rounded far above float32
rounding (4 decimals of values computed to about 1e-7), so they hold on any x86 CPU."""
from __future__ import annotations

import doctest
import importlib
import inspect
from pathlib import Path

import pytest

import itra

SOURCE = Path(itra.__file__).parent
MODULES = sorted(".".join(("itra", *path.relative_to(SOURCE).with_suffix("").parts))
                 for path in SOURCE.rglob("*.py") if ">>>" in path.read_text())
# Modules behind an optional extra (pyproject.toml), with the package they need.
OPTIONAL = {"itra.integrations.transformers": "transformers", "itra.integrations.lightning": "lightning"}
# The public API: what `itra` exports, and the entry points the README teaches.
PUBLIC = [*(f"itra.{name}" for name in itra.__all__), "itra.calibration.fit_temperature",
          "itra.models.adapter.split_classifier", "itra.integrations.transformers.ITRATrainer",
          "itra.integrations.lightning.ITRAModule"]


def _import(name: str):
    if name in OPTIONAL:
        pytest.importorskip(OPTIONAL[name])
    return importlib.import_module(name)


def test_the_public_api_is_among_the_modules_run():
    assert {name.rsplit(".", 1)[0] for name in PUBLIC if name.count(".") > 1} <= set(MODULES)
    assert {"itra.mmd", "itra.losses.itra_loss", "itra.losses.center_loss", "itra.data.paired"} <= set(MODULES)


@pytest.mark.parametrize("name", MODULES)
def test_examples_run(name):
    result = doctest.testmod(_import(name), optionflags=doctest.NORMALIZE_WHITESPACE)
    assert result.attempted > 0
    assert result.failed == 0, f"{result.failed} of {result.attempted} examples of {name} failed (printed above)"


@pytest.mark.parametrize("path", PUBLIC)
def test_public_names_document_arguments_raises_and_an_example(path):
    module, name = path.rsplit(".", 1)
    public = getattr(_import(module) if module != "itra" else itra, name)
    doc = inspect.getdoc(public)
    assert "Args:" in doc and "Raises:" in doc and "\n    >>> " in doc, path
    if inspect.isfunction(public):
        assert "Returns:" in doc, path
