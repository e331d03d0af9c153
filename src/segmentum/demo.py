"""A deterministic synthetic retailer with planted customer segments, for the demo and benchmarks.

Customers belong to one of six planted behaviours; purchases follow a buy-till-you-die process
(Poisson purchasing while alive, an exponential lifetime) with gamma-distributed spend, so every
later model has a known answer to find. Generation is chunked by customer and written to files
chunk by chunk, so memory stays bounded at any size (100M lines is a matter of disk and time).
"""

from __future__ import annotations

import datetime as _dt
import json
import zoneinfo
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from segmentum.errors import InputError
from segmentum.warehouse import Warehouse

START = _dt.date(2024, 1, 1)
END = _dt.date(2025, 12, 31)
DAYS = (END - START).days + 1


# Example saved segments shipped with the demo (segments.yaml; the run loads them).
DEMO_SEGMENTS = """\
segments:
  - name: vip
    description: Top of the Pareto curve who keep buying
    rule: value_tier == 'high' and frequency >= 5
  - name: vip_south
    description: VIPs in Andalucía
    rule: vip and region == 'Andalucía'
  - name: slipping_vip
    description: VIPs whose rhythm has broken
    rule: vip and lifecycle_stage in ('at_risk', 'lapsed')
  - name: active_month
    description: Two or more purchases in the last 30 days
    rule: count(purchases, last 30 days) >= 2
  - name: shoe_lovers
    description: Spent over 100 on shoes in the last 90 days
    rule: sum(spend, category == 'Moda > Calzado', last 90 days) > 100
  - name: cart_abandoners
    description: Abandoned a cart in the last 7 days
    rule: exists(event == 'cart_abandoned', last 7 days)
  - name: young_travellers
    description: Lifestyle segment
    rule: has_tag('viajes') and age_band in ('18-24', '25-34', '35-44')
  - name: promo_hunters
    description: Most of their spend carries a discount
    rule: promo_share >= 0.6 and frequency >= 2
  - name: champions_at_risk
    rule: rfm_segment in ('At Risk', 'Can''t Lose Them') and monetary > 500
"""


@dataclass(frozen=True)
class Planted:
    """The behaviour of one planted segment."""

    name: str
    share: float
    rate: float  # mean purchases per day while alive
    lifetime: float  # mean days alive after the first purchase
    spend: float  # mean line value
    lines: float  # mean extra lines per invoice
    promo: float  # share of invoices with a promo code
    hours: tuple[int, int]  # preferred hour band (start, end)
    channels: tuple[float, float, float, float]  # store, web, app, phone
    device: tuple[float, float, float]  # mobile, desktop, tablet (online only)
    ages: tuple[int, int]
    tags: tuple[str, ...]


SEGMENTS: tuple[Planted, ...] = (
    Planted(
        "loyal_high_value",
        0.10,
        1 / 30,
        2000,
        60.0,
        2.5,
        0.05,
        (18, 21),
        (0.5, 0.35, 0.1, 0.05),
        (0.2, 0.75, 0.05),
        (35, 60),
        ("gourmet", "viajes", "bienestar"),
    ),
    Planted(
        "promo_hunter",
        0.15,
        1 / 60,
        900,
        22.0,
        1.0,
        0.85,
        (12, 15),
        (0.15, 0.45, 0.4, 0.0),
        (0.7, 0.2, 0.1),
        (18, 35),
        ("ofertas", "videojuegos", "moda"),
    ),
    Planted(
        "seasonal",
        0.15,
        1 / 18,
        2000,
        55.0,
        1.5,
        0.15,
        (10, 13),
        (0.6, 0.3, 0.1, 0.0),
        (0.4, 0.4, 0.2),
        (30, 55),
        ("familia", "hogar", "navidad"),
    ),
    Planted(
        "one_off",
        0.25,
        0.0,
        0,
        40.0,
        0.6,
        0.2,
        (9, 22),
        (0.5, 0.4, 0.1, 0.0),
        (0.5, 0.4, 0.1),
        (18, 70),
        ("montaña", "libros"),
    ),
    Planted(
        "lapsing",
        0.20,
        1 / 20,
        150,
        45.0,
        1.2,
        0.2,
        (19, 23),
        (0.3, 0.5, 0.2, 0.0),
        (0.6, 0.3, 0.1),
        (25, 45),
        ("deporte", "tecnología"),
    ),
    Planted(
        "new",
        0.15,
        1 / 25,
        2000,
        50.0,
        1.2,
        0.3,
        (20, 23),
        (0.2, 0.4, 0.4, 0.0),
        (0.8, 0.15, 0.05),
        (18, 30),
        ("moda", "música", "tecnología"),
    ),
)

PLACES = (
    # country, region, state, city, neighbourhood, postal code, timezone
    ("España", "Comunidad de Madrid", "Madrid", "Madrid", "Chamberí", "28010", "Europe/Madrid"),
    ("España", "Comunidad de Madrid", "Madrid", "Madrid", "Salamanca", "28001", "Europe/Madrid"),
    ("España", "Comunidad de Madrid", "Madrid", "Madrid", "Lavapiés", "28012", "Europe/Madrid"),
    (
        "España",
        "Comunidad de Madrid",
        "Madrid",
        "Alcalá de Henares",
        "Centro",
        "28801",
        "Europe/Madrid",
    ),
    ("España", "Andalucía", "Sevilla", "Sevilla", "Triana", "41010", "Europe/Madrid"),
    ("España", "Andalucía", "Sevilla", "Sevilla", "Nervión", "41005", "Europe/Madrid"),
    ("España", "Andalucía", "Málaga", "Málaga", "El Palo", "29017", "Europe/Madrid"),
    ("España", "Andalucía", "Granada", "Granada", "Albaicín", "18010", "Europe/Madrid"),
    ("España", "Cataluña", "Barcelona", "Barcelona", "Gràcia", "08012", "Europe/Madrid"),
    ("España", "Cataluña", "Barcelona", "Barcelona", "Eixample", "08008", "Europe/Madrid"),
    ("España", "Comunitat Valenciana", "Valencia", "Valencia", "Ruzafa", "46006", "Europe/Madrid"),
    ("España", "País Vasco", "Bizkaia", "Bilbao", "Indautxu", "48011", "Europe/Madrid"),
    (
        "México",
        "Centro",
        "Ciudad de México",
        "Ciudad de México",
        "Coyoacán",
        "04000",
        "America/Mexico_City",
    ),
    (
        "México",
        "Centro",
        "Ciudad de México",
        "Ciudad de México",
        "Roma Norte",
        "06700",
        "America/Mexico_City",
    ),
    (
        "México",
        "Occidente",
        "Jalisco",
        "Guadalajara",
        "Providencia",
        "44630",
        "America/Mexico_City",
    ),
    ("México", "Noreste", "Nuevo León", "Monterrey", "San Pedro", "66220", "America/Monterrey"),
    ("Colombia", "Andina", "Cundinamarca", "Bogotá", "Chapinero", "110231", "America/Bogota"),
    ("Colombia", "Andina", "Antioquia", "Medellín", "El Poblado", "050021", "America/Bogota"),
    (
        "Argentina",
        "Pampeana",
        "Buenos Aires",
        "Buenos Aires",
        "Palermo",
        "C1425",
        "America/Argentina/Buenos_Aires",
    ),
    (
        "Argentina",
        "Pampeana",
        "Córdoba",
        "Córdoba",
        "Nueva Córdoba",
        "X5000",
        "America/Argentina/Cordoba",
    ),
    (
        "Chile",
        "Metropolitana",
        "Santiago",
        "Santiago",
        "Providencia",
        "7500000",
        "America/Santiago",
    ),
    ("Perú", "Lima", "Lima", "Lima", "Miraflores", "15074", "America/Lima"),
)
# Places weigh differently: big cities hold more customers.
_PLACE_WEIGHTS = np.array([9, 8, 6, 2, 5, 4, 3, 2, 7, 6, 4, 3, 6, 5, 3, 3, 4, 3, 4, 2, 3, 3], float)

CATEGORIES = (
    "Moda > Ropa",
    "Moda > Calzado",
    "Hogar > Cocina",
    "Hogar > Decoración",
    "Electrónica > Móviles",
    "Electrónica > Audio",
    "Alimentación > Gourmet",
    "Deportes > Running",
)
N_PRODUCTS = 240
FIRST_NAMES = (
    "Lucía",
    "Sofía",
    "María",
    "Martina",
    "Paula",
    "Valentina",
    "Camila",
    "Hugo",
    "Mateo",
    "Martín",
    "Lucas",
    "Leo",
    "Daniel",
    "Santiago",
    "Sebastián",
    "Diego",
)
LAST_NAMES = (
    "García",
    "Rodríguez",
    "González",
    "Fernández",
    "López",
    "Martínez",
    "Sánchez",
    "Pérez",
    "Gómez",
    "Ramírez",
    "Torres",
    "Flores",
)
INCOME = ("low", "medium", "high")
# What a Spanish retailer's export says: its customers' words, not codes.
OCCUPATIONS = ("estudiante", "empleado", "directivo", "autónomo", "jubilado", "funcionario")
ACQUISITION = ("organic", "paid_search", "social", "referral", "store")
INDUSTRIES = ("retail", "hospitality", "manufacturing", "software", "health", "education")


def _customer_ids(start: int, n: int) -> np.ndarray:
    return np.char.add("C", np.char.zfill(np.arange(start + 1, start + n + 1).astype(str), 7))


def _segment_of(rng: np.random.Generator, n: int) -> np.ndarray:
    shares = np.array([s.share for s in SEGMENTS])
    return rng.choice(len(SEGMENTS), size=n, p=shares / shares.sum())


def _customers_chunk(
    rng: np.random.Generator, start: int, n: int, b2b: bool
) -> tuple[pd.DataFrame, np.ndarray, np.ndarray]:
    seg = _segment_of(rng, n)
    first_day = rng.integers(0, DAYS - 120, size=n)
    names = [s.name for s in SEGMENTS]
    is_new = seg == names.index("new")
    first_day[is_new] = rng.integers(DAYS - 90, DAYS - 5, size=int(is_new.sum()))
    # One-off buyers and lapsing customers are old acquaintances: their story is over by the end.
    old = (seg == names.index("one_off")) | (seg == names.index("lapsing"))
    first_day[old] = rng.integers(0, DAYS - 420, size=int(old.sum()))
    lo = np.array([SEGMENTS[k].ages[0] for k in seg])
    hi = np.array([SEGMENTS[k].ages[1] for k in seg])
    age = rng.integers(lo, hi + 1)
    birth = np.array([np.datetime64(END)] * n) - (age * 365.25 + rng.integers(0, 365, n)).astype(
        "timedelta64[D]"
    )
    place = rng.choice(len(PLACES), size=n, p=_PLACE_WEIGHTS / _PLACE_WEIGHTS.sum())
    places = np.array(PLACES, dtype=object)[place]
    ids = _customer_ids(start, n)
    first = np.array(FIRST_NAMES)[rng.integers(0, len(FIRST_NAMES), n)]
    last = np.array(LAST_NAMES)[rng.integers(0, len(LAST_NAMES), n)]
    tags = [",".join(rng.choice(SEGMENTS[k].tags, size=2, replace=False)) for k in seg]
    income_p = np.where(seg[:, None] == 0, [0.1, 0.4, 0.5], [0.35, 0.5, 0.15])
    income = np.array(INCOME)[
        (rng.random(n)[:, None] > np.cumsum(income_p, axis=1)).sum(axis=1).clip(0, 2)
    ]
    signup = np.datetime64(START) + first_day.astype("timedelta64[D]")
    df = pd.DataFrame(
        {
            "id_cliente": ids,
            "nombre": first,
            "apellidos": last,
            "email": [f"{i.lower()}@example.com" for i in ids],
            "telefono": [f"+34 6{x:08d}" for x in rng.integers(0, 10**8, n)],
            "fecha_nacimiento": pd.to_datetime(birth).strftime("%d/%m/%Y"),
            "sexo": rng.choice(["Mujer", "Hombre", "Otro"], size=n, p=[0.5, 0.47, 0.03]),
            "pais": places[:, 0],
            "comunidad": places[:, 1],
            "provincia": places[:, 2],
            "ciudad": places[:, 3],
            "barrio": places[:, 4],
            "codigo_postal": places[:, 5],
            "zona_horaria": places[:, 6],
            "fecha_alta": pd.to_datetime(signup).strftime("%d/%m/%Y"),
            "canal_adquisicion": np.array(ACQUISITION)[rng.integers(0, len(ACQUISITION), n)],
            "ingresos": income,
            "profesion": np.array(OCCUPATIONS)[rng.integers(0, len(OCCUPATIONS), n)],
            "intereses": tags,
            "acepta_email": np.where(rng.random(n) < 0.75, "sí", "no"),
            "permiso_sms": np.where(rng.random(n) < 0.4, "sí", "no"),
            "permiso_push": np.where(rng.random(n) < 0.5, "sí", "no"),
            "permiso_inapp": np.where(rng.random(n) < 0.6, "sí", "no"),
            "permiso_web": np.where(rng.random(n) < 0.9, "sí", "no"),
            # Its own stream: drawing from ``rng`` would change every planted number after it.
            "permiso_publicidad": np.where(
                np.random.default_rng(start + 7919).random(n) < 0.6, "sí", "no"
            ),
        }
    )
    if b2b:
        n_comp = max(n // 8, 1)
        comp = rng.integers(0, n_comp, n) + start // 8
        emp = (rng.lognormal(3.5, 1.3, n_comp * 2 + start // 8 + 1)).astype(int) + 1
        df["id_empresa"] = [f"E{c:06d}" for c in comp]
        df["empresa"] = [f"Empresa {c:06d} S.L." for c in comp]
        df["sector"] = np.array(INDUSTRIES)[comp % len(INDUSTRIES)]
        df["empleados"] = emp[comp]
        df["facturacion"] = (emp[comp] * 85000.0).round(0)
    return df, seg, first_day


def _transactions_chunk(
    rng: np.random.Generator,
    ids: np.ndarray,
    seg: np.ndarray,
    first_day: np.ndarray,
    invoice_start: int,
) -> pd.DataFrame:
    n = len(ids)
    rate = np.array([SEGMENTS[k].rate for k in seg]) * rng.gamma(4.0, 0.25, n)
    life = rng.exponential(np.array([max(SEGMENTS[k].lifetime, 1) for k in seg]))
    lapsing = seg == [s.name for s in SEGMENTS].index("lapsing")
    # Lapsing customers were regulars for a few months, then stopped.
    life[lapsing] = rng.uniform(90, 240, int(lapsing.sum()))
    alive_until = np.minimum(first_day + life, DAYS - 1)
    seasonal = seg == [s.name for s in SEGMENTS].index("seasonal")
    # Seasonal customers only buy from mid-November to December: their exposure is ~45 days a year.
    window = np.where(seasonal, (alive_until - first_day) * 45 / 365, alive_until - first_day)
    repeats = rng.poisson(rate * np.maximum(window, 0))
    repeats[seg == [s.name for s in SEGMENTS].index("one_off")] = 0
    cust = np.repeat(np.arange(n), repeats + 1)
    is_first = np.ones(len(cust), bool)
    is_first[np.cumsum(repeats + 1)[:-1]] = True
    is_first[1:] = cust[1:] != cust[:-1]
    u = rng.random(len(cust))
    day = first_day[cust] + u * (alive_until[cust] - first_day[cust])
    s_idx = np.flatnonzero(seasonal[cust] & ~is_first)
    if len(s_idx):
        year = rng.integers(0, 2, len(s_idx))
        season_day = (np.array([319, 319 + 366])[year] + rng.integers(0, 45, len(s_idx))).astype(
            float
        )
        day[s_idx] = np.clip(np.maximum(season_day, first_day[cust[s_idx]] + 1), 0, DAYS - 1)
    day = np.where(is_first, first_day[cust], day).astype(int)
    k = seg[cust]
    hour_lo = np.array([SEGMENTS[j].hours[0] for j in k])
    hour_hi = np.array([SEGMENTS[j].hours[1] for j in k])
    in_band = rng.random(len(cust)) < 0.8
    hour = np.where(in_band, rng.integers(hour_lo, hour_hi + 1), rng.integers(8, 23, len(cust)))
    minute = rng.integers(0, 60, len(cust))
    chan_p = np.array([SEGMENTS[j].channels for j in range(len(SEGMENTS))])
    dev_p = np.array([SEGMENTS[j].device for j in range(len(SEGMENTS))])
    channel = (rng.random(len(cust))[:, None] > np.cumsum(chan_p[k], axis=1)).sum(axis=1).clip(0, 3)
    device = (rng.random(len(cust))[:, None] > np.cumsum(dev_p[k], axis=1)).sum(axis=1).clip(0, 2)
    promo = rng.random(len(cust)) < np.array([SEGMENTS[j].promo for j in range(len(SEGMENTS))])[k]
    n_lines = 1 + rng.poisson(np.array([SEGMENTS[j].lines for j in range(len(SEGMENTS))])[k])
    invoice_no = invoice_start + np.arange(len(cust))

    # Lines of every invoice.
    inv = np.repeat(np.arange(len(cust)), n_lines)
    line = np.arange(len(inv)) - np.repeat(np.cumsum(n_lines) - n_lines, n_lines) + 1
    ck = k[inv]
    cat_pref = (ck * 3 + rng.integers(0, 3, len(inv))) % len(CATEGORIES)
    product = cat_pref * (N_PRODUCTS // len(CATEGORIES)) + rng.integers(
        0, N_PRODUCTS // len(CATEGORIES), len(inv)
    )
    spend_mean = np.array([SEGMENTS[j].spend for j in range(len(SEGMENTS))])[ck]
    cust_scale = rng.gamma(6.0, 1 / 6.0, n)[cust[inv]]
    unit_price = np.round(rng.gamma(3.0, spend_mean * cust_scale / 3.0), 2) + 0.99
    qty = rng.choice([1, 1, 1, 2, 2, 3], size=len(inv))
    disc = np.where(
        promo[inv], np.round(unit_price * qty * rng.choice([0.1, 0.2, 0.3], len(inv)), 2), 0.0
    )
    channels = np.array(["store", "web", "app", "phone"])[channel[inv]]
    devices = np.where(
        channels == "store",
        None,
        np.array(["mobile", "desktop", "tablet"], dtype=object)[device[inv]],
    )
    ts = np.datetime64(START, "s") + (
        day[inv] * 86400 + hour[inv] * 3600 + minute[inv] * 60
    ).astype("timedelta64[s]")
    cust_ids = ids[cust[inv]].astype(object)
    anonymous = (channels == "store") & (rng.random(len(inv)) < 0.02)
    cust_ids[anonymous] = None
    df = pd.DataFrame(
        {
            "InvoiceNo": np.char.add("F", invoice_no[inv].astype(str)),
            "Line": line,
            "CustomerID": cust_ids,
            "InvoiceDate": ts,
            "StockCode": np.char.add("P", np.char.zfill(product.astype(str), 4)),
            "Category": np.array(CATEGORIES)[product // (N_PRODUCTS // len(CATEGORIES))],
            "Quantity": qty,
            "UnitPrice": unit_price,
            "Discount": disc,
            "PromoCode": np.where(
                promo[inv], np.char.add("PROMO", (day[inv] // 30).astype(str)), np.array(None)
            ),
            "Channel": channels,
            "Device": devices,
        }
    )
    # About 3% of lines come back later as returns linked to their invoice.
    ret = rng.random(len(df)) < 0.03
    if ret.any():
        r = df[ret].copy()
        r["OriginalInvoice"] = r["InvoiceNo"]
        r["InvoiceNo"] = "R" + r["InvoiceNo"].str.slice(1)
        r["Quantity"] = -r["Quantity"]
        r["InvoiceDate"] = r["InvoiceDate"] + pd.to_timedelta(rng.integers(2, 20, len(r)), "D")
        r = r[r["InvoiceDate"] <= pd.Timestamp(END) + pd.Timedelta(hours=23)]
        df = pd.concat([df.assign(OriginalInvoice=None), r], ignore_index=True)
    else:
        df["OriginalInvoice"] = None
    return df


def _events_chunk(
    rng: np.random.Generator, ids: np.ndarray, seg: np.ndarray, first_day: np.ndarray
) -> pd.DataFrame:
    n = len(ids)
    per = rng.poisson(np.where(seg == 1, 12, 5))
    cust = np.repeat(np.arange(n), per)
    day = np.minimum(first_day[cust] + rng.integers(0, 400, len(cust)), DAYS - 1)
    kinds = np.array(
        [
            "page_view",
            "product_view",
            "add_to_cart",
            "cart_abandoned",
            "email_open",
            "email_click",
            "push_open",
        ]
    )
    p = np.array([0.35, 0.25, 0.12, 0.08, 0.12, 0.05, 0.03])
    kind = kinds[rng.choice(len(kinds), size=len(cust), p=p)]
    ts = np.datetime64(START, "s") + (
        day * 86400 + rng.integers(8 * 3600, 23 * 3600, len(cust))
    ).astype("timedelta64[s]")
    return pd.DataFrame(
        {
            "customer_id": ids[cust],
            "timestamp": ts,
            "event_type": kind,
            "device": np.array(["mobile", "desktop", "tablet"])[rng.integers(0, 3, len(cust))],
            "channel": np.where(
                np.char.startswith(kind, "email"),
                "email",
                np.where(np.char.startswith(kind, "push"), "push", "web"),
            ),
            "campaign_id": np.where(
                np.char.startswith(kind, "email") | np.char.startswith(kind, "push"),
                "NEWSLETTER",
                np.array(None),
            ),
        }
    )


def _campaign_chunk(rng: np.random.Generator, ids: np.ndarray, seg: np.ndarray) -> pd.DataFrame:
    chosen = rng.random(len(ids)) < 0.3
    c_ids, c_seg = ids[chosen], seg[chosen]
    control = rng.random(len(c_ids)) < 0.1
    base = np.array([0.08, 0.10, 0.05, 0.02, 0.04, 0.06])[c_seg]
    lift = np.where(control, 1.0, np.array([1.3, 1.8, 1.2, 1.1, 1.6, 1.4])[c_seg])
    converted = rng.random(len(c_ids)) < base * lift
    opened = ~control & (rng.random(len(c_ids)) < 0.35)
    return pd.DataFrame(
        {
            "campaign_id": "WINBACK-2025-10",
            "customer_id": c_ids,
            "group": np.where(control, "control", "treatment"),
            "channel": "email",
            "sent_at": pd.Timestamp("2025-10-06 10:00"),
            "delivered": ~control,
            "opened": opened,
            "clicked": opened & (rng.random(len(c_ids)) < 0.3),
            "converted": converted,
            "revenue": np.where(converted, np.round(rng.gamma(2.0, 30.0, len(c_ids)), 2), 0.0),
            "cost": np.where(control, 0.0, 0.05),
        }
    )


# Survey answers: (promoter, detractor) probabilities per planted segment. Promotion hunters
# are the planted detractor-heavy group, and their complaints are about late deliveries.
_NPS_MIX = {
    "loyal_high_value": (0.62, 0.08),
    "promo_hunter": (0.12, 0.58),
    "seasonal": (0.45, 0.15),
    "one_off": (0.32, 0.24),
    "lapsing": (0.28, 0.30),
    "new": (0.42, 0.16),
}
_COMMENTS = {
    "promoter": (
        "Muy buena calidad y atención excelente",
        "Todo perfecto, repetiré",
        "Great quality and friendly staff",
        "Me encanta la tienda, precio justo",
        "Atención excelente en tienda",
    ),
    "passive": (
        "Bien, aunque algo caro",
        "Correcto, sin más",
        "Good but the app is slow",
        "La web podría ser más sencilla",
    ),
    "detractor": (
        "La calidad no es la esperada",
        "Atención al cliente lenta",
        "Product broke after a week",
        "Demasiado caro para lo que es",
    ),
    "late": (
        "El envío llegó tarde otra vez",
        "Envío tarde y sin seguimiento del pedido",
        "El pedido llegó tarde y el envío fue caro",
        "Late delivery again, tracking never updated",
        "Gastos de envío caros y el envío llegó tarde",
    ),
}


def _responses_chunk(
    rng: np.random.Generator, ids: np.ndarray, seg: np.ndarray, first_day: np.ndarray
) -> pd.DataFrame:
    """Survey answers of a chunk: a third of customers answer once, some twice, a few anonymous."""
    names = [s.name for s in SEGMENTS]
    who = np.flatnonzero(rng.random(len(ids)) < 0.35)
    again = who[rng.random(len(who)) < 0.15]
    who = np.concatenate([who, again])
    n = len(who)
    start = np.maximum(first_day[who] + 1, DAYS - 540)
    day = np.minimum(start + (rng.random(n) * (DAYS - start)).astype(int), DAYS - 1)
    mix = np.array([_NPS_MIX[names[k]] for k in seg[who]]).reshape(n, 2)
    u = rng.random(n)
    kind = np.where(u < mix[:, 0], 2, np.where(u < mix[:, 0] + mix[:, 1], 0, 1))
    nps = np.where(
        kind == 2,
        rng.integers(9, 11, n),
        np.where(kind == 1, rng.integers(7, 9, n), rng.choice(7, n, p=_DETRACTOR_SCORES)),
    )
    csat = np.clip(np.where(kind == 2, 5, np.where(kind == 1, 4, 2)) - rng.integers(0, 2, n), 1, 5)
    late = (seg[who] == names.index("promo_hunter")) & (kind == 0)
    pools = np.where(late, 3, np.where(kind == 2, 0, np.where(kind == 1, 1, 2)))
    labels = ("promoter", "passive", "detractor", "late")
    comments = [_COMMENTS[labels[p]][int(rng.integers(len(_COMMENTS[labels[p]])))] for p in pools]
    says = rng.random(n) < 0.7
    when = pd.Timestamp(START) + pd.to_timedelta(day, unit="D")
    when = when + pd.to_timedelta(rng.integers(9 * 60, 22 * 60, n), unit="min")
    anonymous = rng.random(n) < 0.05
    return pd.DataFrame(
        {
            "id_cliente": np.where(anonymous, np.array(None), ids[who]),
            "fecha_respuesta": when.strftime("%Y-%m-%dT%H:%M:%S+01:00"),
            "nps": nps,
            "csat": np.where(rng.random(n) < 0.8, csat, np.array(None)),
            "comentario": np.where(says, np.array(comments, dtype=object), np.array(None)),
            "canal": rng.choice(["email", "web", "app"], n, p=[0.5, 0.3, 0.2]),
        }
    ).sort_values("fecha_respuesta", kind="stable")


# Detractor scores 0-6: most unhappy customers give a 5 or a 6.
_DETRACTOR_SCORES = np.array([0.04, 0.03, 0.05, 0.1, 0.13, 0.3, 0.35])


def _prospects(rng: np.random.Generator, n: int) -> tuple[pd.DataFrame, np.ndarray]:
    df, seg, _ = _customers_chunk(rng, 10**7, n, b2b=True)
    df = df.rename(columns={"id_cliente": "id_lead"}).drop(
        columns=["fecha_alta", "permiso_publicidad"]
    )
    df["id_lead"] = df["id_lead"].str.replace("C", "L", n=1)
    return df, seg


class _Writer:
    """Appends chunks to one CSV or Parquet file."""

    def __init__(self, path: Path, fmt: str) -> None:
        self.path, self.fmt = path, fmt
        self._w: pq.ParquetWriter | pacsv.CSVWriter | None = None
        self._schema: pa.Schema | None = None

    def write(self, df: pd.DataFrame) -> None:
        table = pa.Table.from_pandas(df, preserve_index=False, schema=self._schema)
        if self._w is None:
            self._schema = table.schema
            if self.fmt == "parquet":
                self._w = pq.ParquetWriter(self.path, table.schema)
            else:
                self._w = pacsv.CSVWriter(self.path, table.schema)
        self._w.write_table(table)

    def close(self) -> None:
        if self._w is not None:
            self._w.close()


def _spanish_csv(df: pd.DataFrame, path: Path, first: bool) -> None:
    """Customers are written as a Spanish export: ';' separated, decimal commas, Latin-1."""
    df.to_csv(
        path,
        sep=";",
        decimal=",",
        index=False,
        header=first,
        mode="w" if first else "a",
        encoding="latin-1",
        errors="replace",
    )


# --------------------------------------------------------------------- messy exports
# The shapes real exports have (``generate(messy=True)``, ``segmentum demo-data --messy``):
# an Online Retail-style invoice file with Spanish headers, float customer ids, C-prefixed
# cancellations, local times with UTC offsets, decimal commas and a currency column.
MESSY_ZONE = "Europe/Madrid"
MESSY_CURRENCY = "GBP"
# The numeric ids start where the UCI Online Retail data's do.
_MESSY_ID_BASE = 12345
# The planted whale who was not: one small real order, then a huge one cancelled the same day.
_HUGE_UNITS, _HUGE_PRICE = 1200, 45.0
MESSY_HEADERS = {
    "InvoiceNo": "Nº factura",
    "StockCode": "Cód. artículo",
    "Description": "Descripción",
    "Category": "Categoría",
    "Quantity": "Uds.",
    "InvoiceDate": "Fecha factura",
    "UnitPrice": "Precio unitario",
    "Discount": "Dto.",
    "PromoCode": "Cupón",
    "CustomerID": "Cliente",
    "Channel": "Canal",
    "Device": "Dispositivo",
    "Currency": "Divisa",
    "Country": "País",
}


def _numeric_ids(ids: pd.Series | np.ndarray) -> pd.Series:
    """Demo ids (``C0000001``) as the numbers a till system gives (``12346``), as text."""
    s = pd.Series(ids, dtype=object)
    known = s.notna()
    out = pd.Series([None] * len(s), dtype=object, index=s.index)
    out[known] = (s[known].str.slice(1).astype(np.int64) + _MESSY_ID_BASE).astype(str)
    return out


def _with_offsets(ts: pd.Series) -> pd.Series:
    """Local times written as ISO 8601 with the zone's UTC offset of that day (+01:00 / +02:00)."""
    zone = zoneinfo.ZoneInfo(MESSY_ZONE)
    stamps = pd.to_datetime(ts)
    days = stamps.dt.normalize()
    offsets: dict[pd.Timestamp, str] = {}
    for d in days.unique():
        noon = _dt.datetime(d.year, d.month, d.day, 12, tzinfo=zone)
        minutes = int((noon.utcoffset() or _dt.timedelta(0)).total_seconds() // 60)
        sign = "+" if minutes >= 0 else "-"
        offsets[d] = f"{sign}{abs(minutes) // 60:02d}:{abs(minutes) % 60:02d}"
    return stamps.dt.strftime("%Y-%m-%dT%H:%M:%S") + days.map(offsets)


def _messy_transactions(t: pd.DataFrame) -> pd.DataFrame:
    """The default demo's invoice lines as an Online Retail-style export in Spanish."""
    number = t["InvoiceNo"].str.slice(1)
    returned = t["Quantity"] < 0
    cust = _numeric_ids(t["CustomerID"])
    out = pd.DataFrame(
        {
            # Cancellations are invoices of their own, C + the number (no link column).
            "InvoiceNo": np.where(returned, "C" + number, number),
            "StockCode": t["StockCode"],
            "Description": t["Category"].str.split(" > ").str[1]
            + " "
            + t["StockCode"].str.slice(1),
            "Category": t["Category"],
            "Quantity": t["Quantity"],
            "InvoiceDate": _with_offsets(t["InvoiceDate"]),
            "UnitPrice": t["UnitPrice"].astype(float).round(2),
            "Discount": t["Discount"].astype(float).round(2),
            "PromoCode": t["PromoCode"],
            # Written from a float column, as pandas and spreadsheets do: 17850.0.
            "CustomerID": cust.where(cust.isna(), cust + ".0"),
            "Channel": t["Channel"],
            "Device": t["Device"],
            "Currency": MESSY_CURRENCY,
            "Country": "United Kingdom",
        }
    )
    return out


def _messy_extras(
    t: pd.DataFrame, whale: str, day: pd.Timestamp
) -> tuple[pd.DataFrame, dict[str, object]]:
    """Lines every real export has somewhere: a huge order cancelled the same day, dates out
    of range, a bad-debt adjustment with a negative price."""
    base = t.iloc[0]
    huge_at = day + pd.Timedelta(hours=11)

    def row(**kw: object) -> dict[str, object]:
        return {**{str(k): v for k, v in base.items()}, **kw}

    stamp = _with_offsets(pd.Series([huge_at, huge_at + pd.Timedelta(minutes=25)]))
    whale_id = f"{whale}.0"
    rows = [
        row(
            InvoiceNo="9000001",
            StockCode="P0100",
            Description="Decoración 0100",
            Quantity=_HUGE_UNITS,
            InvoiceDate=stamp.iloc[0],
            UnitPrice=_HUGE_PRICE,
            Discount=0.0,
            PromoCode=None,
            CustomerID=whale_id,
            Category="Hogar > Decoración",
            Channel="web",
            Device="desktop",
        ),
        row(
            InvoiceNo="C9000001",
            StockCode="P0100",
            Description="Decoración 0100",
            Quantity=-_HUGE_UNITS,
            InvoiceDate=stamp.iloc[1],
            UnitPrice=_HUGE_PRICE,
            Discount=0.0,
            PromoCode=None,
            CustomerID=whale_id,
            Category="Hogar > Decoración",
            Channel="web",
            Device="desktop",
        ),
        # A typo for 2025 and a default date of an old system: both out of range.
        row(InvoiceNo="9000002", InvoiceDate="2099-06-01T10:00:00+02:00"),
        row(InvoiceNo="9000003", InvoiceDate="1900-01-01T00:00:00+00:00"),
        # The bookkeeping line of the UCI data: no customer, a negative price.
        row(
            InvoiceNo="A9000004",
            StockCode="B",
            Description="Adjust bad debt",
            Quantity=1,
            UnitPrice=-11062.06,
            Discount=0.0,
            PromoCode=None,
            CustomerID=None,
            Category=None,
            Channel="store",
            Device=None,
        ),
    ]
    notes: dict[str, object] = {
        "huge_cancelled_order": {
            "customer_id": whale,
            "invoice": "9000001",
            "cancellation": "C9000001",
            "amount": _HUGE_UNITS * _HUGE_PRICE,
        },
        "out_of_range_dates": ["2099-06-01", "1900-01-01"],
        "bad_debt_invoices": ["A9000004"],
        "currency": MESSY_CURRENCY,
        "timezone": MESSY_ZONE,
    }
    return pd.DataFrame(rows, columns=t.columns), notes


def _write_messy(df: pd.DataFrame, path: Path, first: bool) -> None:
    """A Spanish spreadsheet export: ';' separated, decimal commas, UTF-8."""
    df.rename(columns=MESSY_HEADERS).to_csv(
        path, sep=";", decimal=",", index=False, header=first, mode="w" if first else "a"
    )


def chunks(
    n_customers: int, seed: int, chunk: int
) -> Iterator[tuple[int, int, np.random.Generator]]:
    for i, start in enumerate(range(0, n_customers, chunk)):
        yield start, min(chunk, n_customers - start), np.random.default_rng([seed, i])


def generate(
    out: str | Path,
    *,
    customers: int = 5000,
    seed: int = 7,
    fmt: str = "csv",
    b2b: bool = False,
    chunk: int = 50_000,
    messy: bool = False,
) -> dict[str, Path]:
    """Write the demo data set to ``out`` and return the files by table name.

    Parameters
    ----------
    customers
        Number of customers; about 10 invoice lines are generated per customer.
    seed
        Same seed, same files, byte for byte.
    fmt
        ``csv`` (customers as a Spanish Latin-1 export, the rest as CSV) or ``parquet`` for
        the invoice lines and events (benchmarks).
    b2b
        Add firmographics to customers and write a ``prospects`` file.
    messy
        Write the invoice lines as real exports look (``facturas.csv``): Online Retail-style
        columns with Spanish headers (``Nº factura``, ``Cód. artículo``, ``Uds.``...), customer
        ids written as floats (``12350.0``) while the customers file has integers, cancellations
        as ``C``-prefixed invoices with negative quantities (one customer's huge order cancelled
        the same day), local times with UTC offsets, decimal commas, a ``Divisa`` column, two
        lines dated out of range and a bad-debt line with a negative price. ``messy.json``
        lists what was planted. The default output is unchanged byte for byte.

    Examples
    --------
    >>> import tempfile
    >>> files = generate(tempfile.mkdtemp(), customers=200)
    >>> sorted(files)
    ['campaign_results', 'customers', 'events', 'ground_truth', 'population', 'products', 'responses', 'segments', 'transactions']
    """
    if customers < 1:
        raise InputError("--customers must be at least 1")
    if fmt not in ("csv", "parquet"):
        raise InputError(f"unknown format {fmt!r}", "use csv or parquet")
    if messy and fmt != "csv":
        raise InputError("--messy writes CSV exports", "leave out --format parquet")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    ext = "parquet" if fmt == "parquet" else "csv"
    files = {
        "customers": out / "clientes.csv",
        "transactions": out / ("facturas.csv" if messy else f"transactions.{ext}"),
        "events": out / f"events.{ext}",
        "campaign_results": out / "campaign_results.csv",
        "ground_truth": out / "ground_truth.csv",
        "products": out / "products.csv",
        "responses": out / "responses.csv",
    }
    # Every output is appended chunk by chunk: memory stays bounded at any size.
    tx = _Writer(files["transactions"], fmt)
    ev = _Writer(files["events"], fmt)
    camp = _Writer(files["campaign_results"], "csv")
    truth = _Writer(files["ground_truth"], "csv")
    answers = _Writer(files["responses"], "csv")
    invoice = 100000
    notes: dict[str, object] = {}
    try:
        for start, n, rng in chunks(customers, seed, chunk):
            cust, seg, first_day = _customers_chunk(rng, start, n, b2b)
            ids = cust["id_cliente"].to_numpy()
            t = _transactions_chunk(rng, ids, seg, first_day, invoice)
            invoice += int(t["InvoiceNo"].nunique()) + 1
            ev_chunk = _events_chunk(rng, ids, seg, first_day)
            camp_chunk = _campaign_chunk(rng, ids, seg)
            names = np.array([s.name for s in SEGMENTS])[seg]
            truth_chunk = pd.DataFrame({"customer_id": ids, "planted_segment": names})
            if messy:
                # Same people and purchases, written as a shop's systems would.
                cust["id_cliente"] = _numeric_ids(cust["id_cliente"]).astype(np.int64)
                for df in (ev_chunk, camp_chunk, truth_chunk):
                    df["customer_id"] = _numeric_ids(df["customer_id"])
                m = _messy_transactions(t)
                if start == 0:
                    one_off = np.flatnonzero(seg == [s.name for s in SEGMENTS].index("one_off"))
                    k = int(one_off[0]) if len(one_off) else 0
                    day = pd.Timestamp(START) + pd.Timedelta(days=int(first_day[k]))
                    extras, notes = _messy_extras(m, str(cust["id_cliente"].iloc[k]), day)
                    m = pd.concat([m, extras], ignore_index=True)
                _write_messy(m, files["transactions"], start == 0)
            else:
                tx.write(t)
            _spanish_csv(cust, files["customers"], start == 0)
            ev.write(ev_chunk)
            camp.write(camp_chunk)
            truth.write(truth_chunk)
            # Its own random stream: the other files stay as they were before surveys existed.
            resp = _responses_chunk(np.random.default_rng([seed, start, 19]), ids, seg, first_day)
            if messy:
                # Written by a spreadsheet: float ids ("12350.0") that must still join.
                resp["id_cliente"] = _numeric_ids(resp["id_cliente"]).map(
                    lambda x: None if x is None else f"{x}.0"
                )
            answers.write(resp)
    finally:
        for w in (tx, ev, camp, truth, answers):
            w.close()
    per_cat = N_PRODUCTS // len(CATEGORIES)
    pd.DataFrame(
        {
            "product_id": [f"P{i:04d}" for i in range(N_PRODUCTS)],
            "name": [
                f"{CATEGORIES[i // per_cat].split(' > ')[1]} {i:04d}" for i in range(N_PRODUCTS)
            ],
            "category": [CATEGORIES[i // per_cat] for i in range(N_PRODUCTS)],
            "price": np.round(np.random.default_rng(seed).gamma(3, 15, N_PRODUCTS) + 0.99, 2),
        }
    ).to_csv(files["products"], index=False)
    files["segments"] = out / "segments.yaml"
    files["segments"].write_text(DEMO_SEGMENTS, encoding="utf-8")
    files["population"] = out / "poblacion.csv"
    _population(customers, seed).to_csv(
        files["population"], sep=";", decimal=",", index=False, encoding="utf-8"
    )
    if messy:
        files["messy"] = out / "messy.json"
        files["messy"].write_text(json.dumps(notes, indent=2) + "\n", encoding="utf-8")
    if b2b:
        files["prospects"] = out / "prospects.csv"
        leads, lead_seg = _prospects(np.random.default_rng([seed, 10**6]), max(customers // 5, 10))
        leads.to_csv(files["prospects"], index=False)
        # The prospects' planted segments too, so look-alike scores can be checked.
        pd.DataFrame(
            {
                "customer_id": leads["id_lead"],
                "planted_segment": np.array([s.name for s in SEGMENTS])[lead_seg],
            }
        ).to_csv(files["ground_truth"], mode="a", header=False, index=False)
    return files


# The reference population (``poblacion.csv``): people per region, age band and sex, written as
# a census export. Most regions have one customer per _PEOPLE_PER_CUSTOMER people; the planted
# white space has ten times the people for its customers (same age mix and spend per head as
# the best regions), and the decoy is as under-penetrated only among the young, who are worth
# little here, with a poorer market.
POPULATION_PLANTED = "Comunitat Valenciana"
POPULATION_DECOY = "Lima"
_PEOPLE_PER_CUSTOMER = 400.0
_AGE_BANDS = ((18, 24), (25, 34), (35, 44), (45, 54), (55, 64), (65, 200))
_SPEND_PER_HEAD = (300.0, 450.0, 600.0, 650.0, 550.0, 400.0)


def _age_band_shares() -> np.ndarray:
    """Share of customers in each of ``_AGE_BANDS``: ages are uniform within a segment's range."""
    out = np.zeros(len(_AGE_BANDS))
    for s in SEGMENTS:
        ages = np.arange(s.ages[0], s.ages[1] + 1)
        for i, (lo, hi) in enumerate(_AGE_BANDS):
            out[i] += s.share * np.mean((ages >= lo) & (ages <= hi))
    return out / out.sum()


def _population(customers: int, seed: int) -> pd.DataFrame:
    """The demo's census: expected customers per cell times people per customer, with noise."""
    rng = np.random.default_rng([seed, 2 * 10**6])
    regions: dict[tuple[str, str], float] = {}
    for place, w in zip(PLACES, _PLACE_WEIGHTS, strict=True):
        regions[(place[0], place[1])] = regions.get((place[0], place[1]), 0.0) + float(w)
    total_w = sum(regions.values())
    bands = _age_band_shares()
    rows: list[tuple[object, ...]] = []
    for (country, region), w in regions.items():
        growth = 0.05 if region == POPULATION_DECOY else float(rng.uniform(0.005, 0.03))
        factor = 0.35 if region == POPULATION_DECOY else float(rng.uniform(0.9, 1.1))
        region_total = 0
        for i, (lo, hi) in enumerate(_AGE_BANDS):
            label = f"{lo} y más" if hi >= 200 else f"{lo}-{hi}"
            per = _PEOPLE_PER_CUSTOMER
            if region == POPULATION_PLANTED or (region == POPULATION_DECOY and hi <= 34):
                per *= 10
            for sexo, share in (("Mujer", 0.5), ("Hombre", 0.47)):
                expected = customers * (w / total_w) * bands[i] * share
                people = max(round(float(expected * per * rng.lognormal(0.0, 0.1))), 50)
                region_total += people
                size = people * _SPEND_PER_HEAD[i] * factor
                rows.append((country, region, label, sexo, people, round(size, 2), growth))
        # A census repeats each region's total: the market leaves such rows out.
        rows.append((country, region, "Total", "Total", region_total, None, growth))
    df = pd.DataFrame(
        rows,
        columns=[
            "País",
            "Comunidad",
            "Tramo de edad",
            "Sexo",
            "Población",
            "Gasto potencial",
            "Crecimiento",
        ],
    )
    df["Año"] = END.year
    return df


def load_ground_truth(wh: Warehouse, path: str | Path) -> int:
    """Store the demo's planted segments in ``demo_ground_truth`` (for tests and benchmarks)."""
    table = pacsv.read_csv(
        path, convert_options=pacsv.ConvertOptions(column_types={"customer_id": pa.string()})
    )
    wh.write("demo_ground_truth", table)
    return table.num_rows
