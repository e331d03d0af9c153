"""Every feature lands with its documentation: the docs are checked against the code."""

from __future__ import annotations

from tests.conftest import ROOT

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
