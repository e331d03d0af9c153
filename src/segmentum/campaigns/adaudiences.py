"""Customer-match audiences for ad platforms (Google Ads, Meta, TikTok): one CSV per segment,
normalised the way each platform documents and SHA-256 hashed, with a report of who was left
out and why.

The rules followed (checked against each platform's published upload guide):

- **Google Ads Customer Match** (headers ``Email, Phone, First Name, Last Name, Country, Zip``):
  emails trimmed and lower-cased, and for ``gmail.com`` / ``googlemail.com`` the periods before
  the ``@`` removed (Google documents the periods only, not ``+`` suffixes); phones in E.164
  (``+34612345678``); names lower-cased with spaces trimmed and runs of spaces collapsed;
  Country (ISO 3166-1 alpha-2) and Zip are sent as they are, **not** hashed, as Google asks.
- **Meta custom audiences** (``email, phone, fn, ln, zip, ct, st, country``): every column
  hashed; emails trimmed and lower-cased; phones as digits with the country code and no ``+``;
  names lower-cased without punctuation or spaces (letters such as ``í`` kept, UTF-8); city and
  state lower-cased, a-z only; zip lower-cased without spaces or dashes (US: the first 5
  digits); country as its lower-case ISO-2 code.
- **TikTok customer file** (``Email_SHA256, Phone_SHA256``): emails lower-cased and trimmed,
  with a ``+`` and what follows it up to the ``@`` removed; phones as digits with the country
  code and no ``+`` (TikTok's list of supported formats, August 2025).

Only customers with ``consent_ads`` true are exported (a missing value is no consent). Phones
are parsed with ``phonenumbers`` using the customer's country as the region for numbers written
without ``+``. Members are selected and consent is counted in the warehouse; only the consenting
members' contact columns come back, in batches, to be normalised and hashed. Hashed emails and
phones are still personal data, so an export needs the setting ``export_personal_data``; raw
values are never written. docs/ad-audiences.md explains it for users.
"""

from __future__ import annotations

import csv
import datetime as _dt
import functools
import hashlib
import io
import math
import re
import unicodedata
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import ibis
import ibis.expr.types as ir
import phonenumbers

from segmentum.config import Settings
from segmentum.errors import ConfigError, InputError
from segmentum.warehouse import Warehouse

FORMATS = ("google", "meta", "tiktok")
HEADERS: dict[str, tuple[str, ...]] = {
    "google": ("Email", "Phone", "First Name", "Last Name", "Country", "Zip"),
    "meta": ("email", "phone", "fn", "ln", "zip", "ct", "st", "country"),
    "tiktok": ("Email_SHA256", "Phone_SHA256"),
}
# Why a member of the segment is not in the file; exported + sum(dropped) = segment size.
DROP_REASONS = ("no_consent", "invalid_phone", "no_contact")
_CONTACT = ("email", "phone", "first_name", "last_name", "country", "state", "city", "postal_code")
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
_BATCH = 10_000


@dataclass
class AdAudienceReport:
    """How many members of the segment went into the file, and why the others did not."""

    segment: str
    format: str
    size: int = 0
    exported: int = 0
    dropped: dict[str, int] = field(default_factory=lambda: dict.fromkeys(DROP_REASONS, 0))
    # Exported through their email while their phone could not be read (phone left blank).
    phones_invalid_kept: int = 0
    path: str | None = None
    # The ids in the file (retargeting and seeds), for whoever records where it went; not
    # part of the report.
    customer_ids: list[str] = field(default_factory=list, repr=False, compare=False)

    def to_dict(self) -> dict[str, Any]:
        return asdict(replace(self, customer_ids=[]), dict_factory=_without_ids)


def _without_ids(items: list[tuple[str, Any]]) -> dict[str, Any]:
    return {k: v for k, v in items if k != "customer_ids"}


def sha256(value: str) -> str:
    """Lower-case hex SHA-256 of the UTF-8 text; empty stays empty (a blank cell)."""
    return hashlib.sha256(value.encode("utf-8")).hexdigest() if value else ""


def _text(raw: Any) -> str:
    return "" if raw is None else str(raw).strip()


def normalize_email(raw: Any, fmt: str) -> str:
    """The email as ``fmt`` wants it before hashing, or '' when it is not an address."""
    email = _text(raw).lower()
    if not _EMAIL.match(email):
        return ""
    local, domain = email.rsplit("@", 1)
    if fmt == "google" and domain in ("gmail.com", "googlemail.com"):
        local = local.replace(".", "")
    if fmt == "tiktok":
        local = local.split("+", 1)[0]
    return f"{local}@{domain}" if local else ""


def normalize_phone(raw: Any, region: str | None) -> str | None:
    """E.164 (``+34612345678``); '' when there is no phone, None when it is not a valid number.

    ``region`` (ISO-2) reads numbers written without ``+`` or an international prefix.
    """
    text = _text(raw)
    if not text:
        return ""
    reg = (region or "").upper() or None
    for candidate in (text, *_mexican_legacy(text, reg)):
        try:
            n = phonenumbers.parse(candidate, reg)
        except phonenumbers.NumberParseException:
            continue
        if phonenumbers.is_valid_number(n):
            return phonenumbers.format_number(n, phonenumbers.PhoneNumberFormat.E164)
    return None


def _mexican_legacy(text: str, region: str | None) -> tuple[str, ...]:
    """Mexican numbers in the forms dialled before August 2019, still common in CRMs: the
    mobile ``1`` after +52, and the 044 / 045 / 01 prefixes before the 10 digits."""
    digits = re.sub(r"\D", "", text)
    if text.lstrip().startswith("+"):
        return ("+52" + digits[3:],) if digits.startswith("521") and len(digits) == 13 else ()
    if region != "MX":
        return ()
    if digits[:3] in ("044", "045") and len(digits) == 13:
        return (digits[3:],)
    if digits.startswith("01") and len(digits) == 12:
        return (digits[2:],)
    return ()


def _fold(text: str) -> str:
    """Lower case without accents, letters and digits only (to compare country names)."""
    decomposed = unicodedata.normalize("NFKD", text.lower())
    return "".join(c for c in decomposed if c.isalnum() and not unicodedata.combining(c))


@functools.cache
def _countries() -> dict[str, str]:
    from babel import Locale

    names: dict[str, str] = {}
    for lang in ("en", "es"):
        for code, name in Locale.parse(lang).territories.items():
            if len(code) == 2 and code.isalpha():
                names[_fold(name)] = code.lower()
                names[code.lower()] = code.lower()
    names.update({"usa": "us", "eeuu": "us", "eua": "us", "uk": "gb", "esp": "es", "mex": "mx"})
    return names


def country_code(raw: Any) -> str:
    """ISO 3166-1 alpha-2 in lower case from a code or a name in English or Spanish
    (``España``, ``Mexico``, ``ES``); '' when unknown."""
    return _countries().get(_fold(_text(raw)), "")


def normalize_name(raw: Any, fmt: str) -> str:
    text = _text(raw).lower()
    if fmt == "meta":  # no punctuation or spaces; letters such as í kept (UTF-8)
        return "".join(c for c in unicodedata.normalize("NFC", text) if c.isalnum())
    return " ".join(text.split())


def _ascii_letters(raw: Any) -> str:
    """Meta's city and state: lower case, a-z only."""
    return "".join(c for c in _fold(_text(raw)) if "a" <= c <= "z")


def normalize_zip(raw: Any, fmt: str, country: str) -> str:
    text = _text(raw)
    if fmt != "meta":
        return text
    text = re.sub(r"[\s-]", "", text.lower())
    return text[:5] if country == "us" else text


def _row(rec: dict[str, Any], fmt: str, region: str) -> tuple[list[str], str, str | None]:
    """The file row for one customer, with their normalised email and phone (for the report)."""
    email = normalize_email(rec.get("email"), fmt)
    phone = normalize_phone(rec.get("phone"), region)
    e164 = phone or ""
    if fmt == "google":
        return (
            [
                sha256(email),
                sha256(e164),
                sha256(normalize_name(rec.get("first_name"), fmt)),
                sha256(normalize_name(rec.get("last_name"), fmt)),
                region,
                normalize_zip(rec.get("postal_code"), fmt, region),
            ],
            email,
            phone,
        )
    digits = e164.lstrip("+")
    if fmt == "tiktok":
        return [sha256(email), sha256(digits)], email, phone
    return (
        [
            sha256(email),
            sha256(digits),
            sha256(normalize_name(rec.get("first_name"), fmt)),
            sha256(normalize_name(rec.get("last_name"), fmt)),
            sha256(normalize_zip(rec.get("postal_code"), fmt, region)),
            sha256(_ascii_letters(rec.get("city"))),
            sha256(_ascii_letters(rec.get("state"))),
            sha256(region),
        ],
        email,
        phone,
    )


def _check(fmt: str, settings: Settings) -> None:
    if fmt not in FORMATS:
        raise InputError(f"unknown ad audience format {fmt!r}", "use " + ", ".join(FORMATS))
    if not settings.export_personal_data:
        raise ConfigError(
            "ad audiences hold hashed emails and phones, which are still personal data, and "
            "export_personal_data is off",
            "set export_personal_data = true in segmentum.toml (or "
            "SEGMENTUM_EXPORT_PERSONAL_DATA=true) once your privacy notice covers advertising",
        )


def _members(wh: Warehouse, segment: str, settings: Settings, as_of: _dt.date | None) -> ir.Table:
    from segmentum.segments.store import Segments

    return Segments(wh, settings).members(segment, as_of).distinct()


def build(
    wh: Warehouse,
    segment: str,
    fmt: str,
    settings: Settings,
    *,
    as_of: _dt.date | None = None,
    default_region: str | None = None,
    members: ir.Table | None = None,
    value: str | None = None,
) -> tuple[str, AdAudienceReport, list[str]]:
    """The CSV text of ``segment`` in ``fmt``, its report, and the exported customer ids.

    ``default_region`` (ISO-2) reads phones without ``+`` of customers with no known country.
    ``members`` (a table with ``customer_id``) replaces the saved segment's members.
    ``value`` names a numeric column of ``members`` written, for Meta only, as the customer
    value column ``value`` of a value-based look-alike seed (the other formats have none).

    Examples
    --------
    >>> normalize_email(" Jane.Doe+ads@GMAIL.com ", "google")
    'janedoe+ads@gmail.com'
    >>> normalize_phone("612 34 56 78", "ES")
    '+34612345678'
    """
    _check(fmt, settings)
    m = members if members is not None else _members(wh, segment, settings, as_of)
    report = AdAudienceReport(segment, fmt)
    if not wh.has("customers"):
        raise InputError(
            "no customers are loaded: an ad audience needs their emails or phones and consent",
            "segmentum ingest customers FILE",
        )
    c = wh.table("customers")
    cols = [x for x in (*_CONTACT, "consent_ads") if x in c.columns]
    with_value = value is not None and fmt == "meta"
    carried = ["customer_id", *([value] if with_value and value else [])]
    j = m.select(*carried).left_join(c.select("customer_id", *cols), "customer_id")
    consent = j.consent_ads.fill_null(False) if "consent_ads" in cols else ibis.literal(False)
    j = j.mutate(ok_=consent)
    counts = j.group_by("ok_").agg(n=j.count()).to_pyarrow().to_pylist()
    by = {bool(r["ok_"]): int(r["n"]) for r in counts}
    report.size = sum(by.values())
    report.dropped["no_consent"] = by.get(False, 0)
    keep = j.filter(j.ok_).select(*carried, *[x for x in _CONTACT if x in cols])
    out = io.StringIO()
    w = csv.writer(out, lineterminator="\n")
    w.writerow((*HEADERS[fmt], "value") if with_value else HEADERS[fmt])
    ids: list[str] = []
    region_default = (default_region or "").lower()
    for rec in _batches(keep.order_by("customer_id")):
        region = country_code(rec.get("country")) or region_default
        row, email, phone = _row(rec, fmt, region)
        if not email and not phone:
            reason = "invalid_phone" if phone is None else "no_contact"
            report.dropped[reason] += 1
            continue
        report.phones_invalid_kept += phone is None
        if with_value:
            v = rec.get(str(value))
            row.append("" if v is None or v != v else f"{max(float(v), 0.0):.2f}")
        w.writerow(row)
        ids.append(str(rec["customer_id"]))
    report.exported = len(ids)
    return out.getvalue(), report, ids


def _batches(t: ir.Table) -> Iterator[dict[str, Any]]:
    """The rows of ``t`` a batch at a time (never the whole table in memory at once)."""
    for batch in t.to_pyarrow_batches(chunk_size=_BATCH):
        yield from batch.to_pylist()


def export(
    wh: Warehouse,
    segment: str,
    fmt: str,
    settings: Settings,
    *,
    out: Path | None = None,
    as_of: _dt.date | None = None,
    default_region: str | None = None,
) -> AdAudienceReport:
    """Write ``segment`` as a ``fmt`` customer-match file (default ``SEGMENT-FORMAT.csv``) and
    record the export (see :func:`segmentum.privacy.record_export`)."""
    from segmentum import privacy

    text, report, ids = build(
        wh, segment, fmt, settings, as_of=as_of, default_region=default_region
    )
    path = out or Path(f"{segment}-{fmt}.csv")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    privacy.record_export(
        wh,
        [path],
        source=f"ad audience {segment} ({fmt})",
        customer_ids=ids,
        personal_data=True,
    )
    report.path = str(path)
    return report


# ------------------------------------------------------------------ retargeting and seeds

# Which events make a customer a retargeting prospect.
RETARGET_EVENTS: dict[str, tuple[str, ...]] = {
    "viewed": ("product_view",),
    "carted": ("add_to_cart", "cart_abandoned"),
}
PRODUCTS_HEADER = ("product_id", "customers", "last_event_at")


@dataclass
class RetargetReport(AdAudienceReport):
    """An ad audience report, with the window and the products file."""

    kind: str = ""
    days: int = 0
    since: str | None = None
    until: str | None = None
    products: int = 0
    products_path: str | None = None


def _end_of_data(wh: Warehouse) -> _dt.datetime:
    """The latest event or sale: "now" for data that arrives in batches."""
    ends = []
    for name in ("events", "transactions"):
        if wh.has(name):
            got = wh.table(name).timestamp.max().to_pyarrow().as_py()
            if got is not None:
                ends.append(got)
    if not ends:
        raise InputError(
            "there are no events to retarget from",
            "load web and app events first: segmentum ingest events FILE",
        )
    return max(ends)


def retargeting(
    wh: Warehouse, kind: str, days: int, *, until: _dt.datetime | None = None
) -> tuple[ir.Table, ir.Table, _dt.datetime, _dt.datetime]:
    """Who ``kind`` (``viewed`` or ``carted``) a product in the ``days`` days up to ``until``
    (default: the latest event or sale) and has not bought it since, in the warehouse.

    A (customer, product) pair counts when the customer's last such event for the product
    has no net purchase of the same product by them at or after it (for an event without a
    product: no purchase at all at or after it). A cancelled order is no purchase.

    Returns the members (``customer_id``, ``products``: the product ids, most recent first,
    ``last_event_at``, ``events``), the products (``product_id``, ``customers``,
    ``last_event_at``), and the window's start and end.
    """
    from segmentum.features.customer import mark_purchases
    from segmentum.ingest.returns import cancelled_invoices, links

    if kind not in RETARGET_EVENTS:
        raise InputError(f"unknown retargeting kind {kind!r}", "use viewed or carted")
    if days < 1:
        raise InputError(f"--days must be 1 or more (got {days})", "e.g. --days 30")
    if not wh.has("events"):
        raise InputError(
            "there are no events to retarget from",
            "load web and app events first: segmentum ingest events FILE",
        )
    end = until or _end_of_data(wh)
    start = end - _dt.timedelta(days=days)
    lo, hi = ibis.literal(start, "timestamp"), ibis.literal(end, "timestamp")
    ev = wh.table("events")
    pid = ev.product_id.cast("string") if "product_id" in ev.columns else ibis.null("string")
    e = ev.filter(
        ev.customer_id.notnull()
        & ev.event_type.isin(list(RETARGET_EVENTS[kind]))
        & (ev.timestamp >= lo)
        & (ev.timestamp <= hi)
    ).select("customer_id", product_id=pid, at=ev.timestamp)
    pairs = e.group_by(["customer_id", "product_id"]).aggregate(at=e.at.max(), n=e.count())
    if wh.has("transactions"):
        tx = wh.table("transactions")
        tx = mark_purchases(
            tx.filter(tx.customer_id.notnull() & (tx.timestamp >= lo)),
            cancelled_invoices(links(wh)),
        )
        tx = tx.filter(tx.is_purchase)
        tpid = tx.product_id.cast("string") if "product_id" in tx.columns else ibis.null("string")
        bought = tx.select(b_customer=tx.customer_id, b_product=tpid, b_at=tx.timestamp)
        pairs = pairs.anti_join(
            bought,
            [
                pairs.customer_id == bought.b_customer,
                bought.b_at >= pairs.at,
                pairs.product_id.isnull() | (bought.b_product == pairs.product_id),
            ],
        )
    members = pairs.group_by("customer_id").aggregate(
        products=pairs.product_id.collect(order_by=[ibis.desc(pairs.at), pairs.product_id]),
        last_event_at=pairs.at.max(),
        events=pairs.n.sum(),
    )
    known = pairs.filter(pairs.product_id.notnull())
    products = known.group_by("product_id").aggregate(
        customers=known.customer_id.nunique(), last_event_at=known.at.max()
    )
    return members, products, start, end


def export_retargeting(
    wh: Warehouse,
    kind: str,
    days: int,
    fmt: str,
    settings: Settings,
    *,
    out: Path | None = None,
    until: _dt.datetime | None = None,
    default_region: str | None = None,
    write: bool = True,
) -> tuple[str, str, RetargetReport]:
    """The customer-match CSV of a retargeting audience, the products CSV beside it (no
    personal data: product, customers, last event), and the report; with ``write``, both
    files are written (``retarget-KIND-DAYSd-FORMAT.csv`` and ``...-products.csv``) and the
    export recorded."""
    _check(fmt, settings)
    members, products, start, end = retargeting(wh, kind, days, until=until)
    name = f"retarget-{kind}-{days}d"
    text, base, ids = build(wh, name, fmt, settings, members=members, default_region=default_region)
    report = RetargetReport(**asdict(base), kind=kind, days=days)
    report.customer_ids = ids
    report.since, report.until = start.isoformat(), end.isoformat()
    rows = products.order_by([ibis.desc("customers"), "product_id"]).to_pyarrow().to_pylist()
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(PRODUCTS_HEADER)
    for r in rows:
        w.writerow([r["product_id"], r["customers"], r["last_event_at"].isoformat()])
    report.products = len(rows)
    if write:
        path = out or Path(f"{name}-{fmt}.csv")
        ppath = path.with_name(path.stem + "-products.csv")
        _write_recorded(wh, path, text, ids, f"retargeting audience {name} ({fmt})")
        ppath.write_text(buf.getvalue(), encoding="utf-8")
        report.path, report.products_path = str(path), str(ppath)
    return text, buf.getvalue(), report


def _write_recorded(wh: Warehouse, path: Path, text: str, ids: list[str], source: str) -> None:
    from segmentum import privacy

    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    privacy.record_export(wh, [path], source=source, customer_ids=ids, personal_data=True)


@dataclass
class SeedReport(AdAudienceReport):
    """An ad audience report for a look-alike seed: who was chosen and the CLV cut-off."""

    top: int = 0
    scored: int = 0
    min_clv: float | None = None
    total_clv: float = 0.0
    as_of: str | None = None
    value_column: bool = False


def seed(
    wh: Warehouse,
    *,
    top: int | None = None,
    top_percent: float | None = None,
    as_of: _dt.date | None = None,
) -> tuple[ir.Table, int, _dt.date]:
    """The best customers by CLV (``customer_clv``, status ``scored``), in the warehouse:
    the ``top`` first, or the first ``top_percent`` % of the scored customers (rounded up).
    Ties are broken by customer id, so the same data always gives the same seed.

    Returns the members (``customer_id``, ``clv``), how many are scored, and the date.
    """
    if (top is None) == (top_percent is None):
        raise InputError("give either --top N or --top-percent P", "e.g. --top 1000")
    if top is not None and top < 1:
        raise InputError(f"--top must be 1 or more (got {top})")
    if top_percent is not None and not 0 < top_percent <= 100:
        raise InputError(f"--top-percent must be above 0 and at most 100 (got {top_percent:g})")
    if not wh.has("customer_clv"):
        raise InputError(
            "there is no customer lifetime value yet", "run the pipeline first: segmentum run"
        )
    c = wh.table("customer_clv")
    used = as_of or c.as_of.max().to_pyarrow().as_py()
    c = c.filter((c.as_of == ibis.literal(used, "date")) & (c.clv_status == "scored"))
    c = c.filter(c.clv.notnull() & ~c.clv.isnan())
    scored = int(c.count().to_pyarrow().as_py())
    n = top if top is not None else math.ceil(scored * float(top_percent or 0) / 100)
    best = c.order_by([ibis.desc(c.clv), c.customer_id]).limit(n).select("customer_id", "clv")
    return best, scored, used


def export_seed(
    wh: Warehouse,
    fmt: str,
    settings: Settings,
    *,
    top: int | None = None,
    top_percent: float | None = None,
    out: Path | None = None,
    as_of: _dt.date | None = None,
    default_region: str | None = None,
    write: bool = True,
) -> tuple[str, SeedReport]:
    """A look-alike seed of the best customers by CLV as a customer-match CSV (Meta: with the
    CLV as its ``value`` column, for value-based look-alikes); with ``write`` the file is
    written (``seed-top-N-FORMAT.csv``) and the export recorded."""
    _check(fmt, settings)
    members, scored, used = seed(wh, top=top, top_percent=top_percent, as_of=as_of)
    name = f"seed-top-{top}" if top is not None else f"seed-top-{top_percent:g}pct"
    text, base, ids = build(
        wh, name, fmt, settings, members=members, default_region=default_region, value="clv"
    )
    stats = members.aggregate(n=members.count(), low=members.clv.min(), total=members.clv.sum())
    got = stats.to_pyarrow().to_pylist()[0]
    report = SeedReport(**asdict(base))
    report.customer_ids = ids
    report.top, report.scored, report.as_of = int(got["n"]), scored, used.isoformat()
    report.min_clv = None if got["low"] is None else float(got["low"])
    report.total_clv = float(got["total"] or 0.0)
    report.value_column = fmt == "meta"
    if write:
        path = out or Path(f"{name}-{fmt}.csv")
        _write_recorded(wh, path, text, ids, f"look-alike seed {name} ({fmt})")
        report.path = str(path)
    return text, report
