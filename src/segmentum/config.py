"""Settings: one typed object read from segmentum.toml and SEGMENTUM_* environment variables.

Every setting is declared once in ``SETTINGS`` (name, default, help); the CLI, the docs and the
checks are all driven from that registry.
"""

from __future__ import annotations

import datetime as _dt
import os
import tomllib
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from segmentum.errors import ConfigError


@dataclass(frozen=True)
class Setting:
    """One documented setting."""

    name: str
    default: Any
    help: str
    choices: tuple[str, ...] | None = None


SETTINGS: tuple[Setting, ...] = (
    Setting("warehouse", "duckdb:///segmentum.duckdb", "Where the data lives: an Ibis URL."),
    Setting(
        "language",
        "en",
        "Language the command line prints in when a command is not given --lang: en or es "
        "(tables, numbers, dates, progress, error and hint lines).",
        ("en", "es"),
    ),
    Setting(
        "date_order",
        "auto",
        "How to read dates like 03/04/2024: auto (detect from the data), dmy or mdy.",
        ("auto", "dmy", "mdy"),
    ),
    Setting(
        "ambiguous_date_order",
        "dmy",
        "What auto assumes when every date in a column fits both day-first and month-first.",
        ("dmy", "mdy"),
    ),
    Setting(
        "decimal",
        "auto",
        "Decimal separator of numbers in text files: auto, '.' or ','.",
        ("auto", ".", ","),
    ),
    Setting(
        "duplicates",
        "quarantine",
        "What to do with exact duplicate rows: quarantine (kept with a reason), keep or drop.",
        ("quarantine", "keep", "drop"),
    ),
    Setting(
        "timezone",
        "UTC",
        "Time zone of the business: times in UTC (Z, +00:00) are converted to it; times with "
        "another offset keep the local time written; times without one are taken as written.",
    ),
    Setting(
        "earliest_date",
        "1990-01-01",
        "Sales and events dated before this day are quarantined as implausible (YYYY-MM-DD).",
    ),
    Setting(
        "value_tier_method",
        "revenue_share",
        "How value tiers are cut: revenue_share (Pareto / ABC) or score (R+F+M thresholds).",
        ("revenue_share", "score"),
    ),
    Setting(
        "value_tier_score_cuts",
        (12.0, 8.0),
        "With value_tier_method = score: lowest R+F+M (3-15) for the high and medium tiers.",
    ),
    Setting("clv_horizon_months", 12, "Months ahead that customer lifetime value covers."),
    Setting("clv_monthly_discount", 0.01, "Monthly discount rate applied to future spend in CLV."),
    Setting(
        "clv_min_weeks", 4.0, "Customers observed for fewer weeks are labelled too_new, not scored."
    ),
    Setting(
        "purchase_model",
        "auto",
        "Purchase model for CLV: auto (chosen on a holdout of your history), BG/NBD, MBG/NBD "
        "or Pareto/NBD.",
        ("auto", "BG/NBD", "MBG/NBD", "Pareto/NBD"),
    ),
    Setting(
        "churn_horizon_days",
        90,
        "Churn means no purchase within this many days (used when churn is calibrated).",
    ),
    Setting("rfm_rules", "", "YAML file with your own RFM segment rule table (empty: built-in)."),
    Setting(
        "memory_limit",
        "1GB",
        "DuckDB: memory the engine may use before it spills to disk (e.g. 1GB, 4GB).",
    ),
    Setting(
        "temp_directory",
        "",
        "DuckDB: folder it spills to beyond memory_limit (empty: beside the file, <file>.tmp).",
    ),
    Setting(
        "max_temp_size",
        "",
        "DuckDB: the most disk spilling may take, e.g. 50GB (empty: 90% of the free disk).",
    ),
    Setting(
        "currency",
        "auto",
        "Currency of the amounts: auto (from a currency column or the signs in the amounts: "
        "€, £, $...) or a code such as EUR, GBP, USD, MXN.",
    ),
    Setting("weeks", True, "Express buy-till-you-die times in weeks (days / 7) instead of days."),
    Setting(
        "value_tier_cuts",
        (0.80, 0.95),
        "Cumulative revenue shares that end the high and medium value tiers (80/15/5).",
    ),
    Setting(
        "micro_segment_min_size",
        50,
        "Micro-segment cells smaller than this are merged upward along their hierarchy.",
    ),
    Setting("frequency_cap", 3, "Most campaign contacts one customer may get per cap window."),
    Setting("frequency_cap_days", 7, "Length of the frequency cap window in days."),
    Setting("segments_file", "", "YAML file of saved segments to load on every run (optional)."),
    Setting("discover_segments", True, "Discover segments by clustering on every pipeline run."),
    Setting(
        "refit_every_days",
        7,
        "Days between refits of the CLV and churn models on incremental runs (the days "
        "between score with the stored fit).",
    ),
    Setting(
        "refit_drift_share",
        0.10,
        "Refit the CLV and churn models early once this share of customers changed since "
        "the last fit.",
    ),
    Setting(
        "incremental_max_changed_share",
        0.30,
        "A run recomputes everything when more than this share of customers changed since "
        "the last run (an incremental run would cost as much).",
    ),
    Setting(
        "webhook_url",
        "",
        "Endpoint that receives segment enter / exit events as signed POSTs (empty: none).",
    ),
    Setting("webhook_secret", "", "Secret for the HMAC-SHA256 signature of webhook bodies."),
    Setting("smtp_host", "", "SMTP server for email campaigns (empty: email cannot be sent)."),
    Setting("smtp_port", 587, "SMTP port."),
    Setting("smtp_user", "", "SMTP login (empty: no authentication)."),
    Setting("smtp_password", "", "SMTP password (use the SEGMENTUM_SMTP_PASSWORD variable)."),
    Setting("smtp_starttls", True, "Upgrade the SMTP connection with STARTTLS."),
    Setting("smtp_cafile", "", "CA bundle to verify the SMTP server (empty: the system's)."),
    Setting("smtp_from", "marketing@example.com", "Sender address of campaign emails."),
    Setting(
        "unsubscribe_url",
        "",
        "Public URL of this service's unsubscribe page, e.g. "
        "https://crm.example.com/v1/unsubscribe: every email links to it and offers one-click "
        "unsubscribing (empty: the List-Unsubscribe header asks for a reply to smtp_from).",
    ),
    Setting("push_webhook_url", "", "Endpoint that delivers push notifications (signed POSTs)."),
    Setting("inapp_webhook_url", "", "Endpoint that delivers in-app messages (signed POSTs)."),
    Setting("channel_secret", "", "HMAC-SHA256 secret for push and in-app deliveries."),
    Setting(
        "sms_provider",
        "generic",
        "SMS provider's request shape: generic (sms_url, sms_body_format, sms_generic_fields), "
        "twilio, vonage, messagebird or infobip (see docs/sms.md).",
        ("generic", "twilio", "vonage", "messagebird", "infobip"),
    ),
    Setting(
        "sms_url",
        "",
        "SMS provider endpoint (empty: the preset's public URL; Infobip needs your base URL).",
    ),
    Setting("sms_user", "", "SMS account id or API key (Twilio Account SID, Vonage API key)."),
    Setting(
        "sms_password",
        "",
        "SMS auth token, API secret or access key (use the SEGMENTUM_SMS_PASSWORD variable).",
    ),
    Setting(
        "sms_sender_id",
        "",
        "Sender of SMS: a phone number in E.164 (+34600111222) or an alphanumeric id of at "
        "most 11 letters, digits and spaces (e.g. TIENDA).",
    ),
    Setting(
        "sms_auth",
        "basic",
        "Generic provider: how to authenticate: basic (sms_user / sms_password), bearer, "
        "header (sms_password in the sms_auth_header header) or none.",
        ("basic", "bearer", "header", "none"),
    ),
    Setting("sms_auth_header", "X-API-Key", "Generic provider: header for sms_auth = header."),
    Setting(
        "sms_body_format",
        "json",
        "Generic provider: send the fields as a JSON object or as a form.",
        ("json", "form"),
    ),
    Setting(
        "sms_generic_fields",
        "to={to},from={from},text={text},callback_url={callback},reference={ref}",
        "Generic provider: the body's fields as name={placeholder} pairs separated by commas; "
        "placeholders: {to} {to_digits} {from} {text} {callback} {ref} {encoding} {parts}.",
    ),
    Setting(
        "sms_receipt_url",
        "",
        "Public URL of this service's receipt endpoint, e.g. "
        "https://crm.example.com/v1/sms/receipts (empty: no delivery receipts asked for).",
    ),
    Setting(
        "sms_receipt_secret",
        "",
        "Token the receipt URL carries (?token=...); receipts without it are refused "
        "(use the SEGMENTUM_SMS_RECEIPT_SECRET variable).",
    ),
    Setting(
        "sms_max_parts",
        3,
        "Longest SMS in parts (160 / 153 GSM-7 characters, 70 / 67 UCS-2 each); longer "
        "messages fail with the reason instead of being cut.",
    ),
    Setting(
        "sms_quiet_start",
        "21:00",
        "No SMS from this local time of the customer (HH:MM; equal to sms_quiet_end: no quiet "
        "hours).",
    ),
    Setting("sms_quiet_end", "09:00", "SMS held back by quiet hours go out at this local time."),
    Setting(
        "sms_default_region",
        "",
        "ISO-2 country for phones written without + of customers with no country (e.g. ES).",
    ),
    Setting(
        "export_personal_data",
        False,
        "Include names, emails and phones in audience files (off: ids and segments only).",
    ),
    Setting("control_share", 0.1, "Share of each campaign's audience held out as control."),
    Setting("attribution_days", 14, "Days after a send in which a purchase counts as converted."),
    Setting("margin_rate", 0.3, "Gross margin on revenue, for campaign ROI."),
    Setting(
        "protect_controls",
        True,
        "The frequency cap counts a control-group member as contacted when their message would "
        "have gone out, so that later campaigns reach a campaign's two groups alike.",
    ),
    Setting(
        "send_lease_seconds",
        300,
        "A message claimed by a send that stopped answering is sent again after this long.",
    ),
    Setting(
        "contact_retention_days",
        0,
        "Days the send log keeps the address a message went to (0: cleared on delivery).",
    ),
    Setting(
        "download_retention_days",
        365,
        "Days the service remembers who downloaded personal data or customer ids (segment "
        "exports, ad audiences), for segmentum forget to list; 0: kept until purged.",
    ),
    Setting(
        "history_daily_days",
        35,
        "Days every run's snapshot (features, classes, CLV, clusters, contact times, segment "
        "members) is kept; older ones keep the first of each month.",
    ),
    Setting(
        "history_months",
        0,
        "Months the monthly snapshots are kept after that; 0: for ever.",
    ),
    Setting(
        "rule_max_depth",
        40,
        "Deepest nesting in a segment rule (parentheses, 'not', '-', calls, runs of arithmetic).",
    ),
    Setting(
        "rule_max_window_days",
        36525,
        "Longest time window a segment rule may use (last N days / weeks / months), in days.",
    ),
    Setting(
        "rule_value_check_max_distinct",
        500,
        "Text columns with at most this many values have a rule's compared value checked.",
    ),
    Setting(
        "error_log_dir",
        "",
        "Folder for tracebacks of unexpected errors (empty: ~/.local/state/segmentum).",
    ),
    Setting(
        "serving_store",
        "",
        "DuckDB file the service reads its read models from, or a postgresql://user@host/db URL "
        "(several service replicas, a cluster without shared disk); empty: beside a DuckDB "
        "warehouse, e.g. segmentum.serving.duckdb; other warehouses publish only when it is set.",
    ),
    Setting(
        "spark_handoff",
        "",
        "Spark: folder, as this machine sees it, where the executors write the read models as "
        "Parquet for publishing (a filesystem they all mount: NFS, /dbfs/...); empty: beside the "
        "serving store on a local session, streamed through the driver a partition at a time "
        "on a cluster; driver: always streamed through the driver.",
    ),
    Setting(
        "spark_handoff_uri",
        "",
        "Spark: the spark_handoff folder as the executors name it (e.g. dbfs:/tmp/segmentum); "
        "empty: the same path.",
    ),
    Setting(
        "state_store",
        "",
        "SQLite file for API keys, dashboard sessions and jobs (empty: beside a DuckDB "
        "warehouse, e.g. segmentum.state.sqlite, else segmentum.state.sqlite here).",
    ),
    Setting(
        "flow_store",
        "",
        "SQLite file for triggered flows' state (empty: beside a DuckDB warehouse, e.g. "
        "segmentum.flows.sqlite, else segmentum.flows.sqlite here).",
    ),
    Setting(
        "flow_quiet_hours",
        "21:00-09:00",
        "Local hours of the customer when flows send nothing (a message waits for the end); "
        "a flow may set its own; empty: none.",
    ),
    Setting(
        "flow_runner",
        False,
        "segmentum serve also runs flows (a tick every flow_tick_seconds in a background "
        "thread); off: run them with segmentum flow run.",
    ),
    Setting("flow_tick_seconds", 10.0, "Seconds between two flow ticks of a runner."),
    Setting(
        "busy_wait_seconds",
        5.0,
        "How long the service waits for a warehouse another command holds before answering "
        "503 busy (Retry-After).",
    ),
    Setting(
        "lock_wait_seconds",
        10.0,
        "How long a command waits for a DuckDB warehouse another process holds before saying "
        "it is busy (exit code 4).",
    ),
    Setting(
        "job_nice",
        10,
        "CPU priority given up by pipeline and ingest jobs started from the API or the "
        "dashboard (0-19, as nice; 0 runs them level with the server), so that lookups and "
        "pages keep answering at once while a job uses every core.",
    ),
    Setting("upload_max_mb", 200, "Largest file the API and the dashboard accept (413 beyond)."),
    Setting("api_docs", True, "Serve the API docs (/docs, /openapi.json) to holders of a key."),
    Setting("session_minutes", 60, "Dashboard sessions end after this many idle minutes."),
    Setting("session_max_hours", 12, "Dashboard sessions end this many hours after sign-in."),
    Setting(
        "market_geojson",
        "",
        "A GeoJSON file of your regions: the Market page and the report draw a choropleth of "
        "penetration on it (empty: a sorted table and bars).",
    ),
    Setting(
        "market_geojson_key",
        "name",
        "The GeoJSON feature property holding the region name or code used in the population.",
    ),
    Setting(
        "market_best_share",
        0.2,
        "Share of market cells (by value per customer) taken as the best cells the white "
        "space compares against.",
    ),
    Setting(
        "market_min_customers",
        10,
        "Customers a cell needs before it can count among the best cells.",
    ),
    Setting(
        "market_prior_customers",
        10.0,
        "Weight, in customers, of the base average in a cell's expected value per customer "
        "(small cells lean on the average).",
    ),
    Setting("realtime_batch_max", 1000, "Most events one POST /v1/events may carry."),
    Setting(
        "realtime_max_window_days",
        90,
        "Longest window a segment rule may use and still be evaluated live (its customers' "
        "recent orders are published for this many days).",
    ),
    Setting(
        "track_origins",
        "",
        "Web origins whose pages may send events with a track key (comma-separated, e.g. "
        "https://shop.example.com); empty: no browser may.",
    ),
    Setting(
        "realtime_retry_seconds",
        0.5,
        "First pause before a failed live webhook is sent again (it doubles, up to 5 minutes).",
    ),
    Setting(
        "realtime_max_attempts", 12, "Attempts at one live webhook before it is marked failed."
    ),
)

_DEFAULTS = {s.name: s.default for s in SETTINGS}


@dataclass(frozen=True)
class Settings:
    """All settings in one typed object; build it with :func:`load_settings`."""

    warehouse: str = _DEFAULTS["warehouse"]
    language: str = _DEFAULTS["language"]
    date_order: str = _DEFAULTS["date_order"]
    ambiguous_date_order: str = _DEFAULTS["ambiguous_date_order"]
    decimal: str = _DEFAULTS["decimal"]
    duplicates: str = _DEFAULTS["duplicates"]
    timezone: str = _DEFAULTS["timezone"]
    earliest_date: str = _DEFAULTS["earliest_date"]
    value_tier_method: str = _DEFAULTS["value_tier_method"]
    value_tier_score_cuts: tuple[float, float] = field(default=_DEFAULTS["value_tier_score_cuts"])
    clv_horizon_months: int = _DEFAULTS["clv_horizon_months"]
    clv_monthly_discount: float = _DEFAULTS["clv_monthly_discount"]
    clv_min_weeks: float = _DEFAULTS["clv_min_weeks"]
    purchase_model: str = _DEFAULTS["purchase_model"]
    churn_horizon_days: int = _DEFAULTS["churn_horizon_days"]
    rfm_rules: str = _DEFAULTS["rfm_rules"]
    memory_limit: str = _DEFAULTS["memory_limit"]
    temp_directory: str = _DEFAULTS["temp_directory"]
    max_temp_size: str = _DEFAULTS["max_temp_size"]
    currency: str = _DEFAULTS["currency"]
    weeks: bool = _DEFAULTS["weeks"]
    value_tier_cuts: tuple[float, float] = field(default=_DEFAULTS["value_tier_cuts"])
    micro_segment_min_size: int = _DEFAULTS["micro_segment_min_size"]
    frequency_cap: int = _DEFAULTS["frequency_cap"]
    frequency_cap_days: int = _DEFAULTS["frequency_cap_days"]
    segments_file: str = _DEFAULTS["segments_file"]
    discover_segments: bool = _DEFAULTS["discover_segments"]
    refit_every_days: int = _DEFAULTS["refit_every_days"]
    refit_drift_share: float = _DEFAULTS["refit_drift_share"]
    incremental_max_changed_share: float = _DEFAULTS["incremental_max_changed_share"]
    webhook_url: str = _DEFAULTS["webhook_url"]
    webhook_secret: str = _DEFAULTS["webhook_secret"]
    smtp_host: str = _DEFAULTS["smtp_host"]
    smtp_port: int = _DEFAULTS["smtp_port"]
    smtp_user: str = _DEFAULTS["smtp_user"]
    smtp_password: str = _DEFAULTS["smtp_password"]
    smtp_starttls: bool = _DEFAULTS["smtp_starttls"]
    smtp_cafile: str = _DEFAULTS["smtp_cafile"]
    smtp_from: str = _DEFAULTS["smtp_from"]
    unsubscribe_url: str = _DEFAULTS["unsubscribe_url"]
    push_webhook_url: str = _DEFAULTS["push_webhook_url"]
    inapp_webhook_url: str = _DEFAULTS["inapp_webhook_url"]
    channel_secret: str = _DEFAULTS["channel_secret"]
    sms_provider: str = _DEFAULTS["sms_provider"]
    sms_url: str = _DEFAULTS["sms_url"]
    sms_user: str = _DEFAULTS["sms_user"]
    sms_password: str = _DEFAULTS["sms_password"]
    sms_sender_id: str = _DEFAULTS["sms_sender_id"]
    sms_auth: str = _DEFAULTS["sms_auth"]
    sms_auth_header: str = _DEFAULTS["sms_auth_header"]
    sms_body_format: str = _DEFAULTS["sms_body_format"]
    sms_generic_fields: str = _DEFAULTS["sms_generic_fields"]
    sms_receipt_url: str = _DEFAULTS["sms_receipt_url"]
    sms_receipt_secret: str = _DEFAULTS["sms_receipt_secret"]
    sms_max_parts: int = _DEFAULTS["sms_max_parts"]
    sms_quiet_start: str = _DEFAULTS["sms_quiet_start"]
    sms_quiet_end: str = _DEFAULTS["sms_quiet_end"]
    sms_default_region: str = _DEFAULTS["sms_default_region"]
    export_personal_data: bool = _DEFAULTS["export_personal_data"]
    control_share: float = _DEFAULTS["control_share"]
    attribution_days: int = _DEFAULTS["attribution_days"]
    margin_rate: float = _DEFAULTS["margin_rate"]
    protect_controls: bool = _DEFAULTS["protect_controls"]
    send_lease_seconds: int = _DEFAULTS["send_lease_seconds"]
    contact_retention_days: int = _DEFAULTS["contact_retention_days"]
    download_retention_days: int = _DEFAULTS["download_retention_days"]
    history_daily_days: int = _DEFAULTS["history_daily_days"]
    history_months: int = _DEFAULTS["history_months"]
    rule_max_depth: int = _DEFAULTS["rule_max_depth"]
    rule_max_window_days: int = _DEFAULTS["rule_max_window_days"]
    rule_value_check_max_distinct: int = _DEFAULTS["rule_value_check_max_distinct"]
    error_log_dir: str = _DEFAULTS["error_log_dir"]
    serving_store: str = _DEFAULTS["serving_store"]
    spark_handoff: str = _DEFAULTS["spark_handoff"]
    spark_handoff_uri: str = _DEFAULTS["spark_handoff_uri"]
    state_store: str = _DEFAULTS["state_store"]
    flow_store: str = _DEFAULTS["flow_store"]
    flow_quiet_hours: str = _DEFAULTS["flow_quiet_hours"]
    flow_runner: bool = _DEFAULTS["flow_runner"]
    flow_tick_seconds: float = _DEFAULTS["flow_tick_seconds"]
    busy_wait_seconds: float = _DEFAULTS["busy_wait_seconds"]
    lock_wait_seconds: float = _DEFAULTS["lock_wait_seconds"]
    job_nice: int = _DEFAULTS["job_nice"]
    upload_max_mb: int = _DEFAULTS["upload_max_mb"]
    api_docs: bool = _DEFAULTS["api_docs"]
    session_minutes: int = _DEFAULTS["session_minutes"]
    session_max_hours: int = _DEFAULTS["session_max_hours"]
    market_geojson: str = _DEFAULTS["market_geojson"]
    market_geojson_key: str = _DEFAULTS["market_geojson_key"]
    market_best_share: float = _DEFAULTS["market_best_share"]
    market_min_customers: int = _DEFAULTS["market_min_customers"]
    market_prior_customers: float = _DEFAULTS["market_prior_customers"]
    realtime_batch_max: int = _DEFAULTS["realtime_batch_max"]
    realtime_max_window_days: int = _DEFAULTS["realtime_max_window_days"]
    track_origins: str = _DEFAULTS["track_origins"]
    realtime_retry_seconds: float = _DEFAULTS["realtime_retry_seconds"]
    realtime_max_attempts: int = _DEFAULTS["realtime_max_attempts"]

    def with_overrides(self, **changes: Any) -> Settings:
        """Return a copy with the non-None ``changes`` applied and validated."""
        kept = {k: v for k, v in changes.items() if v is not None}
        new = replace(self, **kept)
        new.validate()
        return new

    def validate(self) -> None:
        """Check every setting that has a closed set of values."""
        for s in SETTINGS:
            value = getattr(self, s.name)
            if s.choices is not None and value not in s.choices:
                raise ConfigError(
                    f"setting {s.name}={value!r} is not allowed",
                    f"use one of {', '.join(s.choices)}",
                )
        try:
            _dt.date.fromisoformat(str(self.earliest_date))
        except ValueError as exc:
            raise ConfigError(
                f"setting earliest_date={self.earliest_date!r} is not a date",
                "write it as YYYY-MM-DD, e.g. 1990-01-01",
            ) from exc
        lo, hi = self.value_tier_cuts
        if not 0 < lo < hi < 1:
            raise ConfigError(
                f"setting value_tier_cuts={self.value_tier_cuts!r} is not allowed",
                "give two shares between 0 and 1, the first smaller, e.g. [0.8, 0.95]",
            )


def _coerce(name: str, raw: Any) -> Any:
    default = _DEFAULTS[name]
    if isinstance(default, bool):
        if isinstance(raw, bool):
            return raw
        return str(raw).strip().lower() in {"1", "true", "yes", "on"}
    if isinstance(default, int):
        return int(raw)
    if isinstance(default, float):
        return float(raw)
    if isinstance(default, tuple):
        parts = raw if isinstance(raw, list | tuple) else str(raw).split(",")
        try:
            return tuple(float(p) for p in parts)
        except ValueError as exc:
            raise ConfigError(f"setting {name}={raw!r} is not a list of numbers") from exc
    return str(raw)


def load_settings(path: str | Path | None = None, env: dict[str, str] | None = None) -> Settings:
    """Read settings from ``segmentum.toml`` (if present) then ``SEGMENTUM_<NAME>`` variables.

    Examples
    --------
    >>> load_settings(env={"SEGMENTUM_DUPLICATES": "keep"}).duplicates
    'keep'
    """
    env = dict(os.environ) if env is None else env
    values: dict[str, Any] = {}
    toml_path = Path(path) if path else Path(env.get("SEGMENTUM_CONFIG", "segmentum.toml"))
    if toml_path.is_file():
        try:
            data = tomllib.loads(toml_path.read_text(encoding="utf-8"))
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{toml_path} is not valid TOML: {exc}") from exc
        section = data.get("segmentum", data)
        known = {f.name for f in fields(Settings)}
        unknown = sorted(set(section) - known)
        if unknown:
            raise ConfigError(
                f"{toml_path}: unknown setting(s) {', '.join(unknown)}",
                "run `segmentum settings` to list the settings",
            )
        values.update({k: _coerce(k, v) for k, v in section.items()})
    for s in SETTINGS:
        key = f"SEGMENTUM_{s.name.upper()}"
        if key in env:
            values[s.name] = _coerce(s.name, env[key])
    settings = Settings(**values)
    settings.validate()
    return settings
