"""Returns and cancellations linked to the purchase they undo, in the engine, kept by ingest.

A *return line* is an invoice line with a negative quantity (ingest makes the quantity and the
amount negative when the quantity, the amount or a type column such as ``devolución`` / ``abono``
/ ``credit note`` says so). Each return line of an identified customer is linked to the purchase
line it most likely undoes, trying these in order (the first kind that finds a line wins; within
a kind the most recent earlier line wins):

``invoice``
    the return names its invoice (``original_invoice_id``): a line of that invoice, same product
    (or no product on either side), the same quantity first.
``exact``
    same customer and product, an earlier invoice, the same quantity and amount (the UCI Online
    Retail shape: ``C536379`` cancels ``536379`` line for line).
``quantity``
    same customer and product, an earlier invoice, the same quantity at another price.
``partial``
    same customer and product, an earlier line that bought more than was returned.
``product``
    same customer and product, an earlier line that bought less (the rest of the return was
    bought on other occasions).

"Earlier" means at or before the return's time on another invoice, so an order cancelled the
same minute still links. A return without a product is linked only through its stated
invoice; anonymous returns (no customer) are not linked. Several returns may link to the same
purchase line.

Links are a function of one customer's lines only, so ingest keeps them current by relinking
the customers whose links a new batch can change (:func:`update_links`); a return that arrives
in a later file than its purchase, or a purchase that arrives after its return, therefore links
as if both had come in one file. The table is checked against the lines
by a fingerprint, as the purchase-day rollup is: lines changed outside ingest cause a rebuild.
"""

from __future__ import annotations

import datetime as _dt
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import ibis
import ibis.expr.types as ir
import pyarrow as pa

from segmentum.schema import RETURN_LINKS, TRANSACTIONS
from segmentum.warehouse import Warehouse

LINKS = RETURN_LINKS.name
STATE = "rollup_state"
# The columns of ``transactions`` the links (and the purchase-day rollup) depend on.
SOURCE_COLUMNS = (
    "invoice_id",
    "line",
    "customer_id",
    "timestamp",
    "product_id",
    "quantity",
    "amount",
    "original_invoice_id",
)
MATCH_KINDS = ("invoice", "exact", "quantity", "partial", "product")
# Below this a net amount is zero: sums of cents in floating point leave crumbs like 1e-14.
EPS = 1e-6
# What a type / document column says on a return, in English and Spanish (and a few more).
RETURN_WORDS = (
    r"(?i)^\s*(return|returned|refund|credit[ _-]?note|credit|cancel+ation|cancel+ed|void"
    r"|devoluci[oó]n|devuelto|devolucion|abono|reembolso|nota[ _-]de[ _-]cr[eé]dito"
    r"|rectificativa|factura[ _-]rectificativa|anulaci[oó]n|anulad[oa]|storno|retour)\b"
)
# Invoice ids of the UCI Online Retail kind, where a leading C marks a cancellation.
C_PREFIX = r"^[Cc][0-9]+$"


def says_return(text: ir.StringValue) -> ir.BooleanValue:
    """Whether a type / document column marks a return (``devolución``, ``abono``...)."""
    return text.re_search(RETURN_WORDS).fill_null(False)


# ---------------------------------------------------------------------- the expression
def link_returns(lines: ir.Table, stage: Callable[[ir.Table], ir.Table] | None = None) -> ir.Table:
    """Each linkable return line of ``lines`` with the purchase line it undoes.

    ``lines`` holds invoice lines with the canonical columns (``transactions`` or part of it:
    whole customers). Returns one row per linked return line: its key (``invoice_id``,
    ``line``), ``customer_id``, the original's key and day, ``match`` (one of
    :data:`MATCH_KINDS`), the return's ``quantity`` and ``amount`` (negative), and
    ``invoice_cancelled``: whether the original invoice nets to zero or less once every return
    linked to it is counted (a cancelled order).

    ``stage``: writes the chosen links down (a temporary table) before the cancelled orders
    are found from them. On DuckDB, left as one query, the planner took the links for the
    larger side and built its hash table on every purchase line instead (2.5 s of a 4.8 s
    link of 12M lines; 3.7 s staged).
    """

    has_product = "product_id" in lines.columns
    has_stated = "original_invoice_id" in lines.columns

    def base(t: ir.Table, sign: int) -> ir.Table:
        t = t.filter(
            t.customer_id.notnull()
            & t.timestamp.notnull()
            & ((t.quantity < 0) if sign < 0 else (t.quantity > 0))
        )
        return t.select(
            "invoice_id",
            "customer_id",
            "timestamp",
            "quantity",
            "amount",
            product_id=t.product_id if has_product else ibis.null("string"),
            stated=t.original_invoice_id if has_stated else ibis.null("string"),
            # Lines without a number are one line per invoice (CDNOW-style logs).
            line=t.line if "line" in t.columns else ibis.literal(1, "int64"),
        )

    rets = base(lines, -1)

    def purchases(keys: ir.Table, on: list[tuple[str, str]]) -> ir.Table:
        # Only purchases that share a key with a return can be linked or cancelled: a few
        # percent of the lines. Each reader takes its own purchases straight from the lines
        # (the key filter first), so no selection of every purchase is kept whole as a common
        # table for several readers, and every hash table is built on the returns' keys.
        t = lines.semi_join(keys, [lines[a] == keys[b] for a, b in on])
        b = base(t, 1)
        return b.select(
            o_invoice_id=b.invoice_id,
            o_line=b.line,
            o_customer_id=b.customer_id,
            o_timestamp=b.timestamp,
            o_quantity=b.quantity,
            o_amount=b.amount,
            o_product_id=b.product_id,
        )

    def candidates(pairs: ir.Table, by_invoice: bool) -> ir.Table:
        same_qty = pairs.o_quantity == -pairs.quantity
        same_amount = (pairs.o_amount + pairs.amount).abs() < 0.005
        if by_invoice:
            rank = ibis.ifelse(same_qty, 0, 1)
            kind: ir.StringValue = ibis.literal("invoice")
        else:
            rank = ibis.cases(
                (same_qty & same_amount, 2),
                (same_qty, 3),
                (pairs.o_quantity > -pairs.quantity, 4),
                else_=5,
            )
            kind = ibis.cases(
                (rank == 2, "exact"),
                (rank == 3, "quantity"),
                (rank == 4, "partial"),
                else_="product",
            )
        return pairs.select(
            "invoice_id",
            "line",
            "customer_id",
            "quantity",
            "amount",
            "o_invoice_id",
            "o_line",
            "o_timestamp",
            _rank=rank,
            match=kind,
        )

    named = rets.filter(rets.stated.notnull())
    buys = purchases(
        named.select("customer_id", "stated"),
        [("customer_id", "customer_id"), ("invoice_id", "stated")],
    )
    by_invoice = named.join(
        buys,
        [
            named.stated == buys.o_invoice_id,
            named.customer_id == buys.o_customer_id,
            (named.product_id == buys.o_product_id)
            | named.product_id.isnull()
            | buys.o_product_id.isnull(),
        ],
    )
    buys = (
        purchases(
            rets.select("customer_id", "product_id"),
            [("customer_id", "customer_id"), ("product_id", "product_id")],
        )
        if has_product
        else buys.limit(0)
    )
    by_product = rets.join(
        buys,
        [
            rets.customer_id == buys.o_customer_id,
            rets.product_id == buys.o_product_id,
            buys.o_timestamp <= rets.timestamp,
            buys.o_invoice_id != rets.invoice_id,
        ],
    )
    cand = candidates(by_invoice, True).union(candidates(by_product, False))
    best = ibis.window(
        group_by=[cand.invoice_id, cand.line],
        order_by=[
            cand._rank,
            ibis.desc(cand.o_timestamp),
            ibis.desc(cand.o_invoice_id),
            ibis.desc(cand.o_line),
        ],
    )
    cand = cand.mutate(_pick=ibis.row_number().over(best))
    links = cand.filter(cand._pick == 0)
    if stage is not None:
        links = stage(links.drop("_pick", "_rank"))

    # A cancelled order: its purchase lines and every return linked to them net to nothing.
    returned = links.group_by(["customer_id", "o_invoice_id"]).aggregate(
        _returned=links.amount.sum()
    )
    bought = purchases(
        returned.select("customer_id", "o_invoice_id"),
        [("customer_id", "customer_id"), ("invoice_id", "o_invoice_id")],
    )
    totals = bought.group_by(["o_customer_id", "o_invoice_id"]).aggregate(
        _bought=bought.o_amount.sum()
    )
    net = returned.join(
        totals,
        [
            returned.customer_id == totals.o_customer_id,
            returned.o_invoice_id == totals.o_invoice_id,
        ],
    ).select("customer_id", "o_invoice_id", _cancelled=(ibis._._bought + ibis._._returned) <= EPS)
    out = links.join(net, ["customer_id", "o_invoice_id"])
    return out.select(
        "invoice_id",
        "line",
        "customer_id",
        original_invoice_id=out.o_invoice_id,
        original_line=out.o_line,
        original_day=out.o_timestamp.date(),
        match=out.match,
        quantity=out.quantity,
        amount=out.amount,
        invoice_cancelled=out._cancelled,
    )


def cancelled_invoices(links: ir.Table) -> ir.Table:
    """The invoices (``customer_id``, ``invoice_id``) that linked returns cancel in full."""
    c = links.filter(links.invoice_cancelled)
    return c.select("customer_id", invoice_id=c.original_invoice_id).distinct()


def returned_per_line(links: ir.Table) -> ir.Table:
    """Units and amount returned against each purchase line (``invoice_id``, ``line``,
    ``returned`` and ``returned_amount``, both < 0)."""
    g = links.group_by(["original_invoice_id", "original_line"]).aggregate(
        returned=links.quantity.sum(), returned_amount=links.amount.sum()
    )
    return g.select(
        invoice_id=g.original_invoice_id,
        line=g.original_line,
        returned=g.returned,
        returned_amount=g.returned_amount,
    )


# ---------------------------------------------------------------------- the stored table
@dataclass
class LinkUpdate:
    """What linking did for one ingest batch."""

    return_lines: int = 0  # return lines of identified customers in the batch
    linked: int = 0  # of which linked to a purchase
    c_prefixed_sales: int = 0  # lines on C-prefixed invoices with a positive quantity
    customers: ir.Table | None = None  # customers whose links were recomputed
    temporary: bool = False  # customers is a temporary table (drop it)

    def warnings(self) -> list[tuple[str, str]]:
        """What the user should know, in plain words (English, Spanish)."""
        out = []
        if self.c_prefixed_sales:
            n_es = f"{self.c_prefixed_sales:,}".replace(",", ".")
            out.append(
                (
                    f"{self.c_prefixed_sales:,} lines on invoices numbered like cancellations "
                    "(C followed by digits) have a positive quantity and were loaded as sales; "
                    "if they are cancellations, export them with negative quantities or map a "
                    "type column (e.g. tipo_documento = devolución)",
                    f"{n_es} líneas de facturas numeradas como anulaciones (C seguida de "
                    "dígitos) tienen cantidad positiva y se cargaron como ventas; si son "
                    "anulaciones, expórtalas con cantidades negativas o asigna una columna de "
                    "tipo (p. ej. tipo_documento = devolución)",
                )
            )
        unlinked = self.return_lines - self.linked
        if self.return_lines and unlinked * 2 > self.return_lines:
            linked_es = f"{self.linked:,}".replace(",", ".")
            lines_es = f"{self.return_lines:,}".replace(",", ".")
            out.append(
                (
                    f"only {self.linked:,} of {self.return_lines:,} return lines could be linked "
                    "to the purchase they undo (same customer and product, earlier invoice); "
                    "the others count against the day they were made (see segmentum's "
                    "docs/ingest.md, 'Returns and cancellations')",
                    f"solo {linked_es} de {lines_es} líneas de devolución se pudieron enlazar con "
                    "la compra que deshacen (mismo cliente y producto, factura anterior); las "
                    "demás cuentan en el día en que se hicieron (consulta docs/ingest.md de "
                    "segmentum, 'Returns and cancellations')",
                )
            )
        return out

    def drop(self, wh: Warehouse) -> None:
        if self.customers is not None and self.temporary:
            wh.drop(self.customers.get_name())
        self.customers = None


def links(wh: Warehouse, fingerprint: tuple[int, int] | None = None) -> ir.Table:
    """The stored ``return_links``, rebuilt first if missing or stale against the lines."""
    wh.table("transactions")  # a clear error when no sales are loaded
    # A table written by an older version (or by hand) gets the line columns it lacks, empty.
    tx = wh.ensure(TRANSACTIONS)
    current = fingerprint or wh.fingerprint(tx, SOURCE_COLUMNS)
    if wh.has(LINKS) and stored_fingerprint(wh, LINKS) == current:
        return wh.table(LINKS)
    return rebuild(wh, current)


def rebuild(
    wh: Warehouse, fingerprint: tuple[int, int] | None = None, batch_id: str | None = None
) -> ir.Table:
    """Link every return line of ``transactions`` again and record the lines' fingerprint."""
    tx = wh.table("transactions")
    fingerprint = fingerprint or wh.fingerprint(tx, SOURCE_COLUMNS)
    staged: list[ir.Table] = []

    def stage(t: ir.Table) -> ir.Table:
        staged.append(wh.materialize(t, "link_picks"))
        return staged[-1]

    try:
        table = wh.write(LINKS, _stored(link_returns(tx, stage), batch_id))
    finally:
        for t in staged:
            wh.drop(t.get_name())
    save_fingerprint(wh, LINKS, fingerprint)
    return table


def update_links(wh: Warehouse, lines: ir.Table, batch_id: str, whole: bool = False) -> LinkUpdate:
    """Relink the customers of newly inserted ``lines`` (already in ``transactions``).

    Call it in the same batch as the insert. Only the customers whose links the new lines can
    change are relinked (:func:`_relinked_customers`), every one of their return lines, so the
    result is the same as linking the whole table again. ``whole``: ``lines`` is every line
    of the table (a first load). Returns the counts for the ingest report and the relinked
    customers (a temporary table: :meth:`LinkUpdate.drop` it).
    """
    # Invoice numbers rarely start with a C: the regular expression reads only those that do.
    c_like = lines.invoice_id.startswith("C") | lines.invoice_id.startswith("c")
    c_prefixed = ibis.ifelse(c_like, lines.invoice_id.re_search(C_PREFIX), False)
    counts = (
        lines.aggregate(
            returns=((lines.quantity < 0) & lines.customer_id.notnull()).cast("int64").sum(),
            c_sales=(c_prefixed.fill_null(False) & (lines.quantity > 0)).cast("int64").sum(),
        )
        .to_pyarrow()
        .to_pylist()[0]
    )
    update = LinkUpdate(
        return_lines=int(counts["returns"] or 0), c_prefixed_sales=int(counts["c_sales"] or 0)
    )
    before = stored_fingerprint(wh, LINKS) if wh.has(LINKS) else None
    tx = wh.table("transactions")
    if before is None:
        # No links yet (a new warehouse, or one loaded before links existed): link everything.
        # The customers are left as a query (it reads only the lines, which stay as they
        # are): only a purchase-day rollup built before the links reads it, and the first
        # load of a large file has none (computing it cost a tenth of the load).
        update.customers = _relinked_customers(tx, lines, None)
        rebuild(wh, batch_id=batch_id)
    else:
        added = wh.fingerprint(lines, SOURCE_COLUMNS)
        stored = wh.table(LINKS)
        affected = wh.materialize(_relinked_customers(tx, lines, stored), "relink")
        update.customers = affected
        update.temporary = True
        if int(affected.count().execute()):
            # Their lines once, in a small table: linking reads them several times.
            mine = wh.materialize(
                tx.semi_join(affected, "customer_id").select(
                    *[c for c in SOURCE_COLUMNS if c in tx.columns]
                ),
                "relink_lines",
            )
            try:
                fresh = wh.materialize(_stored(link_returns(mine), batch_id), "links")
                wh.delete_keys(LINKS, affected, ["customer_id"])
                wh.insert(LINKS, fresh)
                wh.drop(fresh.get_name())
            finally:
                wh.drop(mine.get_name())
        save_fingerprint(wh, LINKS, (before[0] + added[0], before[1] + added[1]))
    if update.return_lines:
        stored = wh.table(LINKS)
        # Links built from nothing on a first load are all the new lines'; otherwise count
        # those of the new lines.
        mine = (
            stored if whole and before is None else stored.semi_join(lines, ["invoice_id", "line"])
        )
        update.linked = int(mine.count().execute())
    return update


def _relinked_customers(tx: ir.Table, lines: ir.Table, stored: ir.Table | None) -> ir.Table:
    """The customers whose links new ``lines`` can change (``customer_id``, distinct).

    Those with a return line among them; those with a new purchase line that is a candidate
    for one of their stored returns (same product at or before it, or the invoice it names: a
    purchase loaded after its return); and those whose new lines join an invoice that returns
    already point to (its total, so whether it is cancelled, changes). Files loaded in time
    order leave only the first kind, a few percent of the batch's customers.
    """
    new = lines.filter(lines.customer_id.notnull())
    product = new.product_id if "product_id" in new.columns else ibis.null("string")
    new = new.select("customer_id", "invoice_id", "timestamp", "quantity", p_product=product)
    with_returns = new.filter(new.quantity < 0).select("customer_id")
    buys = new.filter(new.quantity > 0)
    rets = tx.filter((tx.quantity < 0) & tx.customer_id.notnull()).select(
        r_customer=tx.customer_id,
        r_product=tx.product_id,
        r_time=tx.timestamp,
        r_invoice=tx.invoice_id,
        r_stated=tx.original_invoice_id,
    )
    by_product = buys.semi_join(
        rets,
        [
            buys.customer_id == rets.r_customer,
            buys.p_product == rets.r_product,
            buys.timestamp <= rets.r_time,
            buys.invoice_id != rets.r_invoice,
        ],
    ).select("customer_id")
    by_invoice = buys.semi_join(
        rets,
        [buys.customer_id == rets.r_customer, buys.invoice_id == rets.r_stated],
    ).select("customer_id")
    out = with_returns.union(by_product).union(by_invoice)
    if stored is not None:
        joins = buys.semi_join(
            stored,
            [
                buys.customer_id == stored.customer_id,
                buys.invoice_id == stored.original_invoice_id,
            ],
        )
        out = out.union(joins.select("customer_id"))
    return out.distinct()


def summary(wh: Warehouse, checked: bool = False) -> dict[str, Any]:
    """Return lines of identified customers, how many are linked, by kind (for the run summary).

    ``checked``: the links were just brought up to date (by a reader of the rollup), so the
    fingerprint check is skipped.
    """
    tx = wh.table("transactions")
    total = int(tx.filter((tx.quantity < 0) & tx.customer_id.notnull()).count().execute())
    lk = wh.table(LINKS) if checked and wh.has(LINKS) else links(wh)
    kinds = lk.group_by("match").aggregate(n=lk.count())
    by = {r["match"]: int(r["n"]) for r in kinds.to_pyarrow().to_pylist()}
    linked = sum(by.values())
    orders = int(cancelled_invoices(lk).count().execute())
    return {
        "return_lines": total,
        "linked": linked,
        "linked_share": linked / total if total else None,
        "by_match": {k: by[k] for k in MATCH_KINDS if k in by},
        "cancelled_orders": orders,
    }


def _stored(expr: ir.Table, batch_id: str | None) -> ir.Table:
    """``expr`` in the stored table's columns and types, with the batch that made the links."""
    return (
        expr.mutate(batch_id=ibis.literal(batch_id, "string"))
        .cast(RETURN_LINKS.ibis_schema)
        .select(*RETURN_LINKS.ibis_schema.names)
    )


# ------------------------------------------------------------- fingerprints of derived tables
def stored_fingerprint(wh: Warehouse, name: str) -> tuple[int, int] | None:
    """The fingerprint of ``transactions`` that the derived table ``name`` was last built for."""
    if not wh.has(STATE):
        return None
    state = wh.table(STATE)
    rows = state.filter(state.name == name).to_pyarrow().to_pylist()
    if not rows:
        return None
    return int(rows[0]["lines"]), int(rows[0]["checksum"])


def save_fingerprint(wh: Warehouse, name: str, fingerprint: tuple[int, int]) -> None:
    """Record that ``name`` matches ``transactions`` with this fingerprint (one row per table)."""
    others: list[dict[str, Any]] = []
    if wh.has(STATE):
        state = wh.table(STATE)
        others = state.filter(state.name != name).to_pyarrow().to_pylist()
    now = _dt.datetime.now(_dt.UTC).replace(tzinfo=None)
    rows = [
        *others,
        {"name": name, "lines": fingerprint[0], "checksum": fingerprint[1], "refreshed_at": now},
    ]
    table = pa.table(
        {
            "name": pa.array([r["name"] for r in rows], pa.string()),
            "lines": pa.array([r["lines"] for r in rows], pa.int64()),
            "checksum": pa.array([r["checksum"] for r in rows], pa.int64()),
            "refreshed_at": pa.array([r["refreshed_at"] for r in rows], pa.timestamp("us")),
        }
    )
    wh.write(STATE, table)
