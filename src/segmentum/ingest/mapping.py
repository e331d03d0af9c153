"""Match the columns of a user's file to the canonical columns, by English and Spanish names.

The automatic match can be overridden by a mapping file (YAML or TOML) of
``canonical_column: "Column In File"`` pairs, or by ``{"canonical": None}`` to ignore a match.
"""

from __future__ import annotations

import re
import tomllib
import unicodedata
from collections.abc import Mapping
from pathlib import Path

import yaml

from segmentum.errors import InputError
from segmentum.schema import Table


def normalise_name(name: str) -> str:
    """Lower case, accents and punctuation removed: 'Código Cliente' -> 'codigocliente'."""
    text = unicodedata.normalize("NFKD", str(name))
    text = "".join(ch for ch in text if not unicodedata.combining(ch))
    return re.sub(r"[^a-z0-9]", "", text.lower())


def load_mapping_file(path: str | Path) -> dict[str, str | None]:
    """Read a mapping file: YAML or TOML with canonical column names as keys."""
    p = Path(path)
    if not p.is_file():
        raise InputError(f"mapping file {p} not found", "check the path given to --mapping")
    text = p.read_text(encoding="utf-8")
    try:
        data = tomllib.loads(text) if p.suffix.lower() == ".toml" else yaml.safe_load(text)
    except (tomllib.TOMLDecodeError, yaml.YAMLError) as exc:
        raise InputError(f"mapping file {p} cannot be parsed: {exc}".splitlines()[0]) from exc
    if not isinstance(data, dict):
        raise InputError(
            f"mapping file {p} must be a list of 'canonical_column: Column In File' pairs"
        )
    return {str(k): (None if v is None else str(v)) for k, v in data.items()}


def auto_map(
    source_columns: list[str], table: Table, overrides: Mapping[str, str | None] | None = None
) -> dict[str, str]:
    """Map canonical column -> source column.

    Exact synonyms win over prefix matches; each source column is used once; overrides are
    applied last and checked against both the table and the file.
    """
    overrides = dict(overrides or {})
    canon = {c.name: c for c in table.columns}
    unknown = sorted(set(overrides) - set(canon))
    if unknown:
        raise InputError(
            f"mapping names column(s) {', '.join(unknown)} that table '{table.name}' does not have",
            f"the columns of {table.name} are: {', '.join(canon)}",
        )
    missing_src = sorted(v for v in overrides.values() if v is not None and v not in source_columns)
    if missing_src:
        raise InputError(
            "mapping refers to column(s) "
            f"{', '.join(repr(m) for m in missing_src)} not in the file",
            f"the file's columns are: {', '.join(source_columns)}",
        )
    by_norm: dict[str, str] = {}
    for src in source_columns:
        by_norm.setdefault(normalise_name(src), src)
    used: set[str] = {v for v in overrides.values() if v is not None}
    result: dict[str, str] = {}
    # Pass 1: exact synonym matches, in the order synonyms are listed.
    for col in table.columns:
        if col.name in overrides:
            continue
        for syn in (col.name, *col.synonyms):
            found = by_norm.get(normalise_name(syn))
            if found is not None and found not in used:
                result[col.name] = found
                used.add(found)
                break
    for name, chosen in overrides.items():
        if chosen is not None:
            result[name] = chosen
    return {c.name: result[c.name] for c in table.columns if c.name in result}


def missing_required(mapping: Mapping[str, str], table: Table) -> list[tuple[str, ...]]:
    """The required groups of which no column is mapped."""
    return [group for group in table.required if not any(g in mapping for g in group)]
