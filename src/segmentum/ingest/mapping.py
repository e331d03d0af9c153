"""Match the columns of a user's file to the canonical columns, by English and Spanish names.

Headers are compared after normalisation: accents, case, punctuation and the abbreviations that
exports use (``Nº``, ``N.º``, ``Núm.``, ``Cód.``, ``Uds.``, ``Cant.``, ``Id.``...) are folded, so
``Nº factura``, ``Núm. factura`` and ``numero_factura`` are the same name. The automatic match
can be overridden by a mapping file (YAML or TOML) of ``canonical_column: "Column In File"``
pairs, or by ``{"canonical": None}`` to ignore a match.
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

# Abbreviations and spellings folded into one word before names are compared. Both the header
# and the synonyms go through the same folding, so a synonym listed in any spelling matches
# every spelling of the header.
_WORDS: dict[str, str] = {
    **dict.fromkeys(("n", "no", "nr", "nro", "num", "numero", "nbr", "number", "nos"), "numero"),
    **dict.fromkeys(("cod", "codigo", "code", "cd", "cdg"), "codigo"),
    **dict.fromkeys(("ident", "identificador", "identifier", "identificacion"), "id"),
    **dict.fromkeys(("uds", "unid", "unids", "unidades"), "unidades"),
    **dict.fromkeys(("cant", "ctd", "cdad", "cantidad"), "cantidad"),
    **dict.fromkeys(("f", "fec", "fch", "fecha"), "fecha"),
    **dict.fromkeys(("imp", "importe"), "importe"),
    **dict.fromkeys(("prec", "precio"), "precio"),
    **dict.fromkeys(("unit", "unitario", "unitaria", "ud"), "unitario"),
    **dict.fromkeys(("art", "artic", "articulo"), "articulo"),
    **dict.fromkeys(("prod", "producto"), "producto"),
    **dict.fromkeys(("ref", "referencia"), "referencia"),
    **dict.fromkeys(("fra", "fact", "factura"), "factura"),
    **dict.fromkeys(("cli", "clte", "cliente"), "cliente"),
    **dict.fromkeys(("dto", "dcto", "descto", "descuento"), "descuento"),
    **dict.fromkeys(("tot", "total"), "total"),
    **dict.fromkeys(("desc", "descrip", "descripcion"), "descripcion"),
    **dict.fromkeys(("lin", "linea"), "linea"),
    **dict.fromkeys(("ped", "pedido"), "pedido"),
    **dict.fromkeys(("qty", "qnty", "quantity"), "quantity"),
}
# Words that never tell two columns apart.
_STOP = frozenset({"de", "del", "la", "el", "los", "las", "of", "the", "en", "per", "por"})
# Currency codes and units written in headers ("Importe (EUR)", "Total €") name the unit, not
# the column.
_UNITS = frozenset({"eur", "euro", "euros", "usd", "gbp", "mxn", "cop", "ars", "clp", "pen"})
# Words that only qualify the name: "Código producto" is the product, "Nº cliente" the customer.
_QUALIFIERS = frozenset({"numero", "codigo", "id", "referencia"})


def header_words(name: str) -> list[str]:
    """The words of a header after folding accents, symbols and abbreviations.

    >>> header_words("N.º Factura")
    ['numero', 'factura']
    >>> header_words("Cód. artículo")
    ['codigo', 'articulo']
    """
    text = str(name).strip()
    # "Nº", "N.º", "N°", "Nª": the ordinal sign glued to an N is the word "number".
    text = re.sub(r"(?i)\bn\s*\.?\s*[º°ª]", " numero ", text)
    text = text.replace("%", " pct ")
    text = re.sub(r"[º°ª]", " ", text)
    text = unicodedata.normalize("NFKD", text)
    text = "".join(ch for ch in text if not unicodedata.combining(ch)).lower()
    words = [w for w in re.split(r"[^a-z0-9]+", text) if w]
    out = []
    for w in words:
        if w in _STOP or w in _UNITS:
            continue
        out.append(_WORDS.get(w, w))
    return out


def normalise_name(name: str) -> str:
    """Lower case, accents and punctuation removed: 'Código Cliente' -> 'codigocliente'."""
    # A percentage is never the amount of the same name ("Dto. %" is not the discount).
    text = unicodedata.normalize("NFKD", str(name).replace("%", "pct"))
    text = "".join(ch for ch in text if not unicodedata.combining(ch))
    return re.sub(r"[^a-z0-9]", "", text.lower())


def _folded_name(name: str) -> str:
    """The key with abbreviations folded: 'Nº fra.' and 'Número de factura' -> 'numerofactura'."""
    return "".join(header_words(name))


def _core_name(name: str) -> str:
    """The key without qualifier words: 'Código producto' -> 'producto'."""
    words = [w for w in header_words(name) if w not in _QUALIFIERS]
    return "".join(words)


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

    Exact synonyms (after normalisation) win over matches that ignore qualifier words such as
    "código" or "nº"; each source column is used once; overrides are applied last and checked
    against both the table and the file.
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
    used: set[str] = {v for v in overrides.values() if v is not None}
    result: dict[str, str] = {}
    # Pass 1: exact synonym matches, in the order synonyms are listed; pass 2: the same with
    # abbreviations folded; pass 3: with qualifier words left out on both sides, for the
    # columns still free.
    for key in (normalise_name, _folded_name, _core_name):
        by_norm: dict[str, str] = {}
        for src in source_columns:
            k = key(src)
            if k and src not in used:
                by_norm.setdefault(k, src)
        for col in table.columns:
            if col.name in overrides or col.name in result:
                continue
            for syn in (col.name, *col.synonyms):
                found = by_norm.get(key(syn))
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


# Parts of a header that suggest a customer id the synonyms did not recognise ("cust",
# "client", "socio", "id_socio", "member_no", "usuario", "tarjeta fidelización"...).
_CUSTOMER_HINTS = (
    "cust",
    "client",
    "socio",
    "member",
    "miembro",
    "usuario",
    "user",
    "buyer",
    "comprador",
    "abonado",
    "shopper",
    "consumer",
    "consumidor",
    "loyalty",
    "fideliza",
    "tarjeta",
    "card",
)


def looks_like_customer(name: str) -> bool:
    """Whether a header not recognised as the customer id may still be one.

    >>> looks_like_customer("id_socio"), looks_like_customer("Custom label")
    (True, False)
    """
    # "custom field" is not a customer, "customer_ref" and "cust" are.
    key = re.sub(r"custom(?!er)", "", normalise_name(name))
    return any(h in key for h in _CUSTOMER_HINTS)
