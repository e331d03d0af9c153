"""Saved rule segments: create, preview, list, show, edit, delete, and compute membership.

Definitions live in the warehouse table ``segment_definitions`` (and can be exported to or
imported from YAML). Membership is computed in the engine for every saved segment at once:

1. every time-window call of every rule (``count(purchases, last 30 days)``...) becomes one
   conditional aggregate of a single grouped scan per raw table;
2. segments are computed level by level in dependency order, each exactly once: a segment that
   references another reads the membership column already materialised for it;
3. the long table ``segment_members`` (segment, customer_id, as_of, run_id) is written back.
"""

from __future__ import annotations

import builtins
import datetime as _dt
import re
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import ibis
import ibis.expr.types as ir
import pyarrow as pa
import yaml

from segmentum.config import Settings, load_settings
from segmentum.errors import InputError
from segmentum.ingest.returns import cancelled_invoices, links
from segmentum.segments import rules as R
from segmentum.segments.reach import Reach, reach
from segmentum.segments.view import account_view, customer_view
from segmentum.warehouse import Warehouse

LEVELS = ("customer", "account")
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,62}$")
DEFINITIONS = "segment_definitions"
MEMBERS = "segment_members"
# The name a rule is checked under while it is only previewed (never saved).
PREVIEW = "_preview"
#: An account rule previewed: held by this account segment, read through PREVIEW naming it.
PREVIEW_ACCOUNT = "_preview_account"


@dataclass
class Segment:
    """One saved segment."""

    name: str
    rule: str
    description: str = ""
    level: str = "customer"
    created_at: _dt.datetime | None = None
    updated_at: _dt.datetime | None = None


@dataclass
class Preview:
    """What a rule selects, with honest counts."""

    rule: str
    as_of: _dt.date
    size: int
    customers: int
    revenue: float
    total_revenue: float
    reach: Reach | None = None
    sample: list[str] = field(default_factory=list)
    # Comparisons that are valid but select nobody ("did you mean 'high'?"), with positions.
    warnings: list[R.RuleWarning] = field(default_factory=list)

    @property
    def share(self) -> float:
        return self.size / self.customers if self.customers else 0.0

    @property
    def revenue_share(self) -> float:
        return self.revenue / self.total_revenue if self.total_revenue else 0.0

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["as_of"] = self.as_of.isoformat()
        d["share"] = self.share
        d["revenue_share"] = self.revenue_share
        d["reach"] = self.reach.to_dict() if self.reach else None
        return d


@dataclass
class ComputeReport:
    """Sizes of every computed segment and the order they were computed in."""

    as_of: _dt.date
    run_id: str
    order: list[str]
    sizes: dict[str, int]
    window_scans: dict[str, int]  # raw table -> window aggregates computed in its one scan


def _now() -> _dt.datetime:
    return _dt.datetime.now(_dt.UTC).replace(tzinfo=None)


def _col(name: str) -> str:
    return f"seg__{name}"


class Segments:
    """The Python API for saved segments (the CLI and REST API call this)."""

    def __init__(self, warehouse: Warehouse, settings: Settings | None = None) -> None:
        self.wh = warehouse
        self.settings = settings or load_settings()
        self.features_at: Callable[[_dt.date], ir.Table] | None = None
        self.limits = R.Limits.from_settings(self.settings)

    # ---------------------------------------------------------------- definitions
    def list(self) -> list[Segment]:
        if not self.wh.has(DEFINITIONS):
            return []
        rows = self.wh.table(DEFINITIONS).order_by("name").to_pyarrow().to_pylist()
        return [Segment(**r) for r in rows]

    def get(self, name: str) -> Segment:
        for s in self.list():
            if s.name == name:
                return s
        known = [s.name for s in self.list()]
        close = __import__("difflib").get_close_matches(name, known, n=1)
        raise InputError(
            f"there is no segment named {name!r}",
            f"did you mean {close[0]}?" if close else "list them: segmentum segment list",
        )

    def _save(self, segments: Iterable[Segment]) -> None:
        rows = [asdict(s) for s in segments]
        schema = pa.schema(
            [
                ("name", pa.string()),
                ("rule", pa.string()),
                ("description", pa.string()),
                ("level", pa.string()),
                ("created_at", pa.timestamp("us")),
                ("updated_at", pa.timestamp("us")),
            ]
        )
        self.wh.write(DEFINITIONS, pa.Table.from_pylist(rows, schema=schema))
        from segmentum.realtime.sync import sync

        sync(self.wh, self.settings, create=False)  # live evaluation follows at once

    def create(
        self,
        name: str,
        rule: str,
        description: str = "",
        level: str = "customer",
        *,
        replace: bool = False,
    ) -> Segment:
        """Validate and save a segment; nothing is stored when the rule has an error."""
        existing = {s.name: s for s in self.list()}
        if name in existing and not replace:
            raise InputError(
                f"a segment named {name!r} already exists",
                f"edit it (segmentum segment edit {name}) or choose another name",
            )
        seg = Segment(name, rule.strip(), description, level, _now(), _now())
        if name in existing:
            seg.created_at = existing[name].created_at
        existing[name] = seg
        self.validate(existing.values())
        self._save(existing.values())
        return seg

    def create_and_compute(
        self, name: str, rule: str, description: str = "", level: str = "customer"
    ) -> tuple[Segment, int]:
        """:meth:`create`, then compute its members at once (the API and the dashboard save
        this way, so members, exports and campaigns see the segment before the next run).
        Returns the segment and its size."""
        seg = self.create(name, rule, description, level)
        report = self.compute(only=[name])
        return seg, int(report.sizes.get(name, 0))

    def edit(self, name: str, rule: str | None = None, description: str | None = None) -> Segment:
        seg = self.get(name)
        new = Segment(
            name,
            rule.strip() if rule is not None else seg.rule,
            description if description is not None else seg.description,
            seg.level,
            seg.created_at,
            _now(),
        )
        saved = self.create(new.name, new.rule, new.description, new.level, replace=True)
        if new.rule != seg.rule and self.wh.has(MEMBERS) and not self.wh.read_only:
            # The old rule's members would feed campaigns and exports until the next run, and
            # the segments built on this one change with it: all computed again, now.
            self.compute()
        return saved

    def edit_and_size(
        self, name: str, rule: str | None = None, description: str | None = None
    ) -> tuple[Segment, int]:
        """:meth:`edit`, then the segment's size from its members (computed now when it never
        was): what the API and the dashboard answer after an edit."""
        seg = self.edit(name, rule, description)
        return seg, int(self.members(name).count().to_pyarrow().as_py())

    def delete(self, name: str) -> None:
        """Delete a segment, its members and its webhook subscriptions; refused while other
        segments reference it, a campaign not sent yet has it as its audience, or a flow
        starts from it or checks it (each would fail at its next use)."""
        self.get(name)
        users = [s.name for s in self.list() if name in _refs(s)]
        if users:
            raise InputError(
                f"segment {name!r} is used by {', '.join(users)}",
                "edit or delete those first",
            )
        from segmentum.campaigns.core import Campaigns

        waiting = Campaigns(self.wh, self.settings).unsent_targeting(name)
        if waiting:
            first = waiting[0].campaign_id
            raise InputError(
                f"segment {name!r} is the audience of campaigns not sent yet: "
                + ", ".join(f"{c.name} ({c.campaign_id})" for c in waiting),
                f"send them, or delete them first: segmentum campaign delete {first}",
            )
        flows = _flows_using(self.wh, name, self.settings)
        if flows:
            raise InputError(
                f"segment {name!r} is used by flows: {', '.join(flows)}",
                "change those flows first (segmentum flow save)",
            )
        self._save(s for s in self.list() if s.name != name)
        from segmentum.history.webhooks import drop_segment

        drop_segment(self.wh, name)
        if self.wh.has(MEMBERS):
            m = self.wh.table(MEMBERS)
            kept = self.wh.materialize(m.filter(m.segment != name))
            self.wh.write(MEMBERS, kept)

    def load_yaml(self, path: str | Path) -> builtins.list[Segment]:
        """Create or replace the segments listed in a YAML file; all are checked first."""
        p = Path(path)
        if not p.is_file():
            raise InputError(
                f"{p}: no such file",
                "check the path (relative paths start where you run the command)",
            )
        try:
            data = yaml.safe_load(p.read_text(encoding="utf-8")) or {}
        except (OSError, yaml.YAMLError) as exc:
            raise InputError(f"{p}: cannot read the segments file: {exc}") from exc
        items = data.get("segments", data) if isinstance(data, dict) else data
        if isinstance(items, dict):
            items = [
                {"name": k, **(v if isinstance(v, dict) else {"rule": v})} for k, v in items.items()
            ]
        if not isinstance(items, list):
            raise InputError(f"{p}: expected a list of segments with name and rule")
        existing = {s.name: s for s in self.list()}
        loaded = []
        for i, item in enumerate(items, 1):
            if not isinstance(item, dict) or "name" not in item or "rule" not in item:
                raise InputError(f"{p}: segment #{i} needs a name and a rule")
            seg = Segment(
                str(item["name"]),
                str(item["rule"]).strip(),
                str(item.get("description", "")),
                str(item.get("level", "customer")),
                existing.get(str(item["name"]), Segment("", "")).created_at or _now(),
                _now(),
            )
            existing[seg.name] = seg
            loaded.append(seg)
        try:
            self.validate(existing.values())
        except InputError as exc:
            raise InputError(f"{p}: {exc.message}", exc.hint) from exc
        self._save(existing.values())
        return loaded

    def dump_yaml(self, path: str | Path) -> None:
        items = [
            {
                k: v
                for k, v in (
                    ("name", s.name),
                    ("rule", s.rule),
                    ("description", s.description),
                    ("level", s.level),
                )
                if v
            }
            for s in self.list()
        ]
        Path(path).write_text(
            yaml.safe_dump({"segments": items}, allow_unicode=True, sort_keys=False),
            encoding="utf-8",
        )

    # ---------------------------------------------------------------- checking
    def scope(self, level: str, view: ir.Table | None = None) -> R.Scope:
        """What a rule at ``level`` may use, from the warehouse's current tables."""
        if view is None:
            view = self._view()[0]
        if level == "account":
            if "company_id" not in view.columns:  # no customers file, or none with companies
                return R.Scope({}, {}, {}, allow_windows=False)
            view = account_view(view)
        columns = {c: R.kind_of(t) for c, t in view.schema().items() if c != "customer_id"}
        lines: dict[str, dict[str, str]] = {}
        for table in ("transactions", "events", "responses"):
            if self.wh.has(table):
                sch = self.wh.table(table).schema()
                lines[table] = {
                    k: R.kind_of(sch[v]) for k, v in R.LINE_COLUMNS[table].items() if v in sch
                }
        return R.Scope(columns, {}, lines, allow_windows=level == "customer")

    def _view(self, as_of: _dt.date | None = None) -> tuple[ir.Table, _dt.date]:
        if self.features_at is not None and as_of is not None:
            # Past dates (history backfill): the caller's point-in-time summary, no CLV.
            return customer_view(self.wh, as_of, features=self.features_at(as_of), with_clv=False)
        return customer_view(self.wh, as_of)

    def validate(
        self, segments: Iterable[Segment], view: ir.Table | None = None
    ) -> builtins.list[str]:
        """Check names, syntax, columns, types and cycles of all ``segments``; return an order."""
        segs = {s.name: s for s in segments}
        if view is None:
            view = self._view()[0]
        levels = {"customer"} | {s.level for s in segs.values() if s.level in LEVELS}
        scopes = {lvl: self.scope(lvl, view) for lvl in LEVELS if lvl in levels}
        for s in segs.values():
            if not _NAME.match(s.name) or s.name.lower() in R.KEYWORDS | set(R.FUNCTIONS):
                raise InputError(
                    f"{s.name!r} cannot be a segment name",
                    "use letters, digits and _ (not starting with a digit), e.g. vip_madrid",
                )
            if s.level not in LEVELS:
                raise InputError(f"segment {s.name}: level must be customer or account")
            if s.level == "account" and "company_id" not in view.columns:
                raise InputError(
                    f"segment {s.name}: an account segment needs the companies of the customers",
                    "load a customers file with a company_id column (segmentum ingest customers)",
                )
            if s.name in scopes[s.level].columns:
                raise InputError(f"segment name {s.name!r} is also a column", "choose another name")
        for s in segs.values():
            scope = scopes[s.level]
            # A customer rule may reference customer and account segments; an account rule
            # only account segments.
            scope.segments = {
                n: o.level for n, o in segs.items() if s.level == "customer" or o.level == "account"
            }
            tree = _parse(s, self.limits)
            try:
                t = R.check(s.rule, tree, scope)
            except R.RuleError as exc:
                raise R.RuleError(_about(s.name, exc.reason), exc.text, exc.pos, exc.hint) from exc
            if t != R.BOOL:
                raise InputError(
                    f"segment {s.name}: the rule gives a {t}, not true or false",
                    "compare it with something, e.g. monetary > 100",
                )
        return _order(segs)

    # ---------------------------------------------------------------- computing
    def _evaluate(
        self,
        segs: Mapping[str, Segment],
        as_of: _dt.date | None,
        wanted: Iterable[str] | None = None,
        *,
        stage: bool = True,
    ) -> tuple[ir.Table, _dt.date, builtins.list[str], dict[str, int]]:
        """A table of customer_id and one boolean column per segment, computed in the engine
        (written to a temporary table, or with ``stage=False`` left as a query for a caller
        that reads it once)."""
        view, as_of = self._view(as_of)
        order = self.validate(segs.values(), view)
        if wanted is not None:
            needed = _closure(segs, wanted)
            order = [n for n in order if n in needed]
        # Account segments: computed over the account view, in dependency order.
        accounts = [n for n in order if segs[n].level == "account"]
        acc_flags: ir.Table | None = None
        if accounts:
            acc = account_view(view)
            for level in _levels(segs, accounts):
                acc = acc.mutate(
                    **{
                        _col(n): self._compile(segs[n], acc, as_of, {}).fill_null(False)
                        for n in level
                    }
                )
                acc = self.wh.materialize(acc, "segacc")
            acc_flags = acc.select("company_id", *[_col(n) for n in accounts])
        # Window aggregates: one scan per raw table for all the calls of all rules.
        customers = [n for n in order if segs[n].level == "customer"]
        all_calls: dict[str, dict[R.Call, str]] = {}
        for n in customers:
            for c in R.calls(_parse(segs[n], self.limits)):
                all_calls.setdefault(R.call_table(c), {})[c] = segs[n].rule
        base = view
        scans: dict[str, int] = {}
        window_keys: set[str] = set()
        for tname, cs in all_calls.items():
            # Purchases are net, as in the features: a cancelled order is not one.
            gone = cancelled_invoices(links(self.wh)) if tname == "transactions" else None
            w = R.window_aggregates(cs, self.wh.table(tname), tname, as_of, cs, gone)
            keys = list(dict.fromkeys(R.call_key(c) for c in cs))
            window_keys.update(keys)
            scans[tname] = len(keys)
            base = base.left_join(w, "customer_id").drop("customer_id_right")
            base = base.mutate(**{k: base[k].fill_null(0.0) for k in keys})
        if acc_flags is not None and "company_id" in base.columns:
            base = base.left_join(acc_flags, "company_id").drop("company_id_right")
            base = base.mutate(**{_col(n): base[_col(n)].fill_null(False) for n in accounts})
        # Only the columns the rules read are stored: the customer view is wide (features,
        # classes, CLV, profile, contact times), and writing all of it cost more than the rules.
        used: set[str] = {"customer_id"}
        for n in customers:
            tree = _parse(segs[n], self.limits)
            used |= R.names(tree)
            if any(isinstance(c, R.Call) and c.func == "has_tag" for c in R.walk(tree)):
                used.add("tags")
        keep = [c for c in base.columns if c in used or c.startswith("seg__") or c in window_keys]
        # One statement for every level: a level's rules read the columns of the levels before
        # it in the same row (no table of the view between levels: writing it and joining it
        # back once a level cost more than the rules).
        full = base.select(*keep)
        for level in _levels(segs, customers):
            full = full.mutate(
                **{_col(n): self._compile(segs[n], full, as_of, {}).fill_null(False) for n in level}
            )
        flags = full.select("customer_id", *[_col(n) for n in customers])
        if stage:
            flags = self.wh.materialize(flags, "segflags")
        return flags, as_of, order, scans

    def _compile(
        self, seg: Segment, table: ir.Table, as_of: _dt.date, _: Mapping[str, Any]
    ) -> ir.BooleanValue:
        tree = _parse(seg, self.limits)
        kinds = {c: R.kind_of(t) for c, t in table.schema().items()}

        def resolve(name: str) -> ir.Value:
            if name in table.columns and not name.startswith("seg__"):
                return table[name]
            return table[_col(name)]

        def window(call: R.Call) -> ir.Value:
            v = table[R.call_key(call)]
            return v > 0 if call.func == "exists" else v

        return R.compile_node(seg.rule, tree, resolve, kinds, window)

    def compute(
        self,
        as_of: _dt.date | None = None,
        run_id: str | None = None,
        only: Iterable[str] | None = None,
    ) -> ComputeReport:
        """Compute every saved segment (or ``only`` these) and store ``segment_members``."""
        segs = {s.name: s for s in self.list()}
        if only is not None:
            # With the segments they are built on: a rule naming another segment reads its
            # flag (computed again here, for the same day, and stored with them).
            keep = _closure(segs, set(only) & set(segs))
            segs = {n: s for n, s in segs.items() if n in keep}
        run_id = run_id or uuid.uuid4().hex[:12]
        if not segs:
            _, as_of = self._view(as_of)
            return ComputeReport(as_of, run_id, [], {}, {})
        # The flags are read once, turned into (segment, customer) rows as they are computed:
        # no table of them in between.
        flags, as_of, order, scans = self._evaluate(segs, as_of, stage=False)
        customers = [n for n in order if segs[n].level == "customer"]
        if customers:
            # Each customer's segments as an array (a name where the flag is set), unnested:
            # the same on every engine (Ibis's unpivot quotes the names on PostgreSQL).
            names = ibis.array(
                [ibis.ifelse(flags[_col(n)], n, ibis.null("string")) for n in customers]
            )
            long = flags.select("customer_id", segment=names.unnest())
            members = long.filter(long.segment.notnull())
        else:
            members = flags.limit(0).select(segment=ibis.literal(""), customer_id="customer_id")
        day = ibis.literal(as_of, "date")
        members = members.mutate(as_of=day, run_id=ibis.literal(run_id))
        kept = None
        if only is not None and self.wh.has(MEMBERS):
            # Some segments only: the date's members of the others stay as they are.
            st = self.wh.table(MEMBERS)
            others = st.filter((st.as_of == day) & ~st.segment.isin(list(segs)))
            others = others.select(*(others[c].cast(members[c].type()) for c in members.columns))
            kept = self.wh.materialize(members.union(others, distinct=False), "segkeep")
        stored = self.wh.replace_where(
            MEMBERS, kept if kept is not None else members, "as_of", as_of
        )
        if kept is not None:
            self.wh.drop(kept.get_name())
        cur = stored.filter((stored.as_of == day) & stored.segment.isin(list(segs)))
        counts = cur.group_by("segment").aggregate(n=cur.count()).to_pyarrow().to_pylist()
        sizes = {n: 0 for n in customers}
        sizes.update({r["segment"]: int(r["n"]) for r in counts})
        return ComputeReport(as_of, run_id, order, sizes, scans)

    def members(self, name: str, as_of: _dt.date | None = None) -> ir.Table:
        """Customer ids in a segment, from the last computation for ``as_of`` (default latest).

        A segment saved since the last computation (``segment create``, then a campaign to it)
        is computed now, alone, when the warehouse can be written: it has no members yet, not
        an empty audience."""
        self.get(name)
        never = not self.wh.has(MEMBERS)
        if not never and as_of is None:
            st = self.wh.table(MEMBERS)
            never = not int(st.filter(st.segment == name).count().to_pyarrow().as_py())
        if never and as_of is None and not self.wh.read_only:
            self.compute(only=[name])
        elif never:
            raise InputError(
                f"segment {name!r} has not been computed", "run: segmentum segment compute"
            )
        m = self.wh.table(MEMBERS)
        m = m.filter(m.segment == name)
        if as_of is None:
            as_of = m.as_of.max().to_pyarrow().as_py()
        return m.filter(m.as_of == ibis.literal(as_of, "date")).select("customer_id")

    def preview(
        self,
        rule_or_name: str,
        as_of: _dt.date | None = None,
        *,
        sample: int = 5,
        level: str = "customer",
    ) -> Preview:
        """Size, revenue and reach of a rule (or a saved segment), computed now, stored nowhere.

        ``level``: what a typed rule describes. An account rule (or a saved account segment)
        has no members of its own: its preview is the customers of the accounts it holds, as
        a customer rule naming it has them."""
        if level not in LEVELS:
            raise InputError("level must be customer or account")
        segs = {s.name: s for s in self.list()}
        if rule_or_name in segs:
            target = rule_or_name
        else:
            target = PREVIEW_ACCOUNT if level == "account" else PREVIEW
            segs[target] = Segment(target, rule_or_name.strip(), level=level)
        shown = segs[target]
        if shown.level == "account":
            segs[PREVIEW] = Segment(PREVIEW, target)
            target = PREVIEW
        flags, as_of, _, _ = self._evaluate(segs, as_of, wanted=[target])
        view, _ = self._view(as_of)
        j = view.select("customer_id", "monetary").join(
            flags.select("customer_id", _in=flags[_col(target)]), "customer_id"
        )
        agg = (
            j.aggregate(
                customers=j.count(),
                size=j.count(where=j._in),
                revenue=j.monetary.sum(where=j._in),
                total=j.monetary.sum(),
            )
            .to_pyarrow()
            .to_pylist()[0]
        )
        members = j.filter(j._in).select("customer_id")
        ids = members.order_by("customer_id").limit(sample).to_pyarrow().column(0).to_pylist()
        return Preview(
            rule=shown.rule,
            as_of=as_of,
            size=int(agg["size"] or 0),
            customers=int(agg["customers"] or 0),
            revenue=float(agg["revenue"] or 0.0),
            total_revenue=float(agg["total"] or 0.0),
            reach=reach(self.wh, members, as_of, self.settings),
            sample=[str(i) for i in ids],
            warnings=self.warnings(shown.rule, as_of, view, level=shown.level),
        )

    def warnings(
        self,
        rule: str,
        as_of: _dt.date | None = None,
        view: ir.Table | None = None,
        *,
        level: str = "customer",
    ) -> builtins.list[R.RuleWarning]:
        """Comparisons in a (valid) rule with a value no customer (or account, at ``level``
        account) has: "did you mean ...?"."""
        if view is None:
            view, as_of = self._view(as_of)
        if level == "account":
            view = account_view(view)
        tree = R.parse(rule, self.limits)
        key = (self.wh.url, id(self.wh), as_of, level)
        most = self.settings.rule_value_check_max_distinct
        return R.rule_warnings(tree, view, most, key, who=level)


def _parse(seg: Segment, limits: R.Limits | None = None) -> R.Node:
    try:
        return R.parse(seg.rule, limits)
    except R.RuleError as exc:
        raise R.RuleError(_about(seg.name, exc.reason), exc.text, exc.pos, exc.hint) from exc


def _about(name: str, reason: str) -> str:
    """A rule error names the saved segment it is in; a previewed rule is the user's own text,
    so its error stays as the rule checker wrote it (the caret and the hint are kept)."""
    return reason if name in (PREVIEW, PREVIEW_ACCOUNT) else f"segment {name}: {reason}"


def _flows_using(wh: Warehouse, name: str, settings: Settings) -> list[str]:
    """The flows (of ``wh``'s flow store, when it has one) that start when a customer enters
    or leaves segment ``name``, or whose conditions name it."""
    from segmentum.flows.spec import FlowError, parse_flow
    from segmentum.flows.store import FlowStore, flows_path

    path = flows_path(wh.url, settings)
    if path == ":memory:" or not Path(path).is_file():
        return []
    found = []
    for row in FlowStore(path).query("SELECT name, yaml FROM flows ORDER BY name"):
        try:
            flow = parse_flow(row["yaml"], f"flow {row['name']}", None, None)
        except FlowError:  # a flow that no longer checks names nothing for sure
            continue
        trigger = flow.trigger.kind == "segment" and flow.trigger.name == name
        if trigger or any(s.node is not None and name in R.names(s.node) for s in flow.steps):
            found.append(str(row["name"]))
    return found


def _refs(seg: Segment) -> set[str]:
    try:
        return R.names(R.parse(seg.rule))
    except R.RuleError:
        return set()


def _order(segs: Mapping[str, Segment]) -> list[str]:
    """Dependency order (referenced segments first); a cycle is an error naming it."""
    deps = {n: _refs(s) & set(segs) for n, s in segs.items()}
    order: list[str] = []
    state: dict[str, int] = {}

    def visit(n: str, path: list[str]) -> None:
        if state.get(n) == 2:
            return
        if state.get(n) == 1:
            cycle = [*path[path.index(n) :], n]
            raise InputError(
                "segments reference each other in a cycle: " + " -> ".join(cycle),
                "a segment cannot depend on itself, directly or through others",
            )
        state[n] = 1
        for d in sorted(deps[n]):
            visit(d, [*path, n])
        state[n] = 2
        order.append(n)

    for n in sorted(segs):
        visit(n, [])
    return order


def _closure(segs: Mapping[str, Segment], wanted: Iterable[str]) -> set[str]:
    out: set[str] = set()
    todo = list(wanted)
    while todo:
        n = todo.pop()
        if n in out:
            continue
        out.add(n)
        todo.extend(_refs(segs[n]) & set(segs))
    return out


def _levels(segs: Mapping[str, Segment], names: list[str]) -> list[list[str]]:
    """Group ``names`` (in dependency order) into levels whose members only need earlier ones."""
    depth: dict[str, int] = {}
    for n in names:
        same = [d for d in _refs(segs[n]) & set(names)]
        depth[n] = 1 + max((depth[d] for d in same), default=-1)
    levels: list[list[str]] = [[] for _ in range(max(depth.values(), default=-1) + 1)]
    for n in names:
        levels[depth[n]].append(n)
    return levels
