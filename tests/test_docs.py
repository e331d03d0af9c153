"""Every feature lands with its documentation: the docs are checked against the code."""

from __future__ import annotations

import doctest
import importlib
import pkgutil
from pathlib import Path

import pytest
from tests.conftest import ROOT

import segmentum
from segmentum import schema
from segmentum.cli import app
from segmentum.config import SETTINGS


def test_the_data_model_doc_matches_the_schema() -> None:
    doc = (ROOT / "docs" / "data-model.md").read_text(encoding="utf-8")
    assert schema.to_markdown() in doc, "regenerate with: python -m segmentum.schema"


def test_every_setting_is_documented() -> None:
    doc = (ROOT / "docs" / "settings.md").read_text(encoding="utf-8")
    missing = [s.name for s in SETTINGS if f"`{s.name}`" not in doc]
    assert not missing


def test_every_command_is_documented() -> None:
    doc = (ROOT / "docs" / "cli.md").read_text(encoding="utf-8")
    names = [c.name or (c.callback.__name__ if c.callback else "") for c in app.registered_commands]
    assert names and not [n for n in names if f"segmentum {n}" not in doc]


def test_the_readme_starts_with_the_two_commands() -> None:
    head = (ROOT / "README.md").read_text(encoding="utf-8")[:800]
    assert "make run" in head and "make test" in head


def test_the_examples_in_the_docstrings_run() -> None:
    """Every ``>>>`` example in the package's docstrings gives what it says."""
    checked, failed = 0, []
    for info in pkgutil.walk_packages(segmentum.__path__, "segmentum."):
        spec = importlib.util.find_spec(info.name)
        origin = getattr(spec, "origin", None) or ""
        if not origin.endswith(".py") or ">>>" not in Path(origin).read_text(encoding="utf-8"):
            continue
        result = doctest.testmod(importlib.import_module(info.name), report=False)
        checked += result.attempted
        if result.failed:
            failed.append(info.name)
    assert checked > 30 and not failed


def test_the_readmes_python_example_runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A docs walk: the README's example stopped at `segmentum.pipeline.run(wh)` with
    "module 'segmentum' has no attribute 'pipeline'". Its code block runs as written, in a
    folder holding a small export as ventas.csv."""
    import re

    from segmentum import demo

    text = (ROOT / "README.md").read_text(encoding="utf-8")
    block = re.search(r"From Python:\n\n```python\n(.*?)```", text, re.S)
    assert block is not None
    files = demo.generate(tmp_path / "demo", customers=60, seed=4)
    (tmp_path / "ventas.csv").write_bytes(files["transactions"].read_bytes())
    monkeypatch.chdir(tmp_path)
    scope: dict[str, object] = {}
    exec(compile(block.group(1), "README.md", "exec"), scope)  # the doc's own code
    assert scope["summary"].customers > 0  # type: ignore[attr-defined]
    scope["wh"].close()  # type: ignore[attr-defined]
