"""The customer's time zone (their own, else their country's and region's) and quiet hours:
a message due at night in the customer's zone waits for their morning."""

from __future__ import annotations

import datetime as _dt
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

# Countries with one civil time for (almost) everyone, by the names customer files use.
COUNTRY_TZ = {
    "españa": "Europe/Madrid",
    "spain": "Europe/Madrid",
    "es": "Europe/Madrid",
    "méxico": "America/Mexico_City",
    "mexico": "America/Mexico_City",
    "mx": "America/Mexico_City",
    "argentina": "America/Argentina/Buenos_Aires",
    "ar": "America/Argentina/Buenos_Aires",
    "colombia": "America/Bogota",
    "co": "America/Bogota",
    "chile": "America/Santiago",
    "cl": "America/Santiago",
    "perú": "America/Lima",
    "peru": "America/Lima",
    "pe": "America/Lima",
    "uruguay": "America/Montevideo",
    "ecuador": "America/Guayaquil",
    "venezuela": "America/Caracas",
    "bolivia": "America/La_Paz",
    "paraguay": "America/Asuncion",
    "guatemala": "America/Guatemala",
    "costa rica": "America/Costa_Rica",
    "panamá": "America/Panama",
    "panama": "America/Panama",
    "honduras": "America/Tegucigalpa",
    "el salvador": "America/El_Salvador",
    "nicaragua": "America/Managua",
    "república dominicana": "America/Santo_Domingo",
    "dominican republic": "America/Santo_Domingo",
    "cuba": "America/Havana",
    "puerto rico": "America/Puerto_Rico",
    "portugal": "Europe/Lisbon",
    "france": "Europe/Paris",
    "francia": "Europe/Paris",
    "germany": "Europe/Berlin",
    "alemania": "Europe/Berlin",
    "italy": "Europe/Rome",
    "italia": "Europe/Rome",
    "united kingdom": "Europe/London",
    "reino unido": "Europe/London",
    "uk": "Europe/London",
    "gb": "Europe/London",
    "ireland": "Europe/Dublin",
    "irlanda": "Europe/Dublin",
    "netherlands": "Europe/Amsterdam",
    "países bajos": "Europe/Amsterdam",
    "belgium": "Europe/Brussels",
    "bélgica": "Europe/Brussels",
    "switzerland": "Europe/Zurich",
    "suiza": "Europe/Zurich",
    "united states": "America/New_York",
    "estados unidos": "America/New_York",
    "usa": "America/New_York",
    "us": "America/New_York",
    "canada": "America/Toronto",
    "canadá": "America/Toronto",
    "brazil": "America/Sao_Paulo",
    "brasil": "America/Sao_Paulo",
}
# Regions whose clock differs from their country's usual one.
REGION_TZ = {
    "canarias": "Atlantic/Canary",
    "islas canarias": "Atlantic/Canary",
    "canary islands": "Atlantic/Canary",
    "noroeste": "America/Tijuana",
    "baja california": "America/Tijuana",
    "sonora": "America/Hermosillo",
    "quintana roo": "America/Cancun",
    "noreste": "America/Monterrey",
    "nuevo león": "America/Monterrey",
    "california": "America/Los_Angeles",
    "washington": "America/Los_Angeles",
    "oregon": "America/Los_Angeles",
    "texas": "America/Chicago",
    "illinois": "America/Chicago",
    "colorado": "America/Denver",
    "arizona": "America/Phoenix",
    "hawaii": "Pacific/Honolulu",
    "magallanes": "America/Punta_Arenas",
}


def zone_name(
    timezone: str | None, country: str | None, region: str | None, default: str = "UTC"
) -> str:
    """The customer's IANA zone: their own when valid, else their region's or country's."""
    for cand in (timezone,):
        if cand:
            try:
                ZoneInfo(str(cand))
                return str(cand)
            except (ZoneInfoNotFoundError, ValueError):
                pass
    if region and str(region).strip().lower() in REGION_TZ:
        return REGION_TZ[str(region).strip().lower()]
    if country and str(country).strip().lower() in COUNTRY_TZ:
        return COUNTRY_TZ[str(country).strip().lower()]
    return default


def _zone(name: str | None) -> ZoneInfo:
    try:
        return ZoneInfo(name or "UTC")
    except (ZoneInfoNotFoundError, ValueError):
        return ZoneInfo("UTC")


def quiet_until(
    now_utc: _dt.datetime, zone: str | None, quiet: tuple[_dt.time, _dt.time] | None
) -> _dt.datetime | None:
    """When quiet hours end for a customer in ``zone`` (naive UTC), or None if it is not quiet
    there now. ``quiet`` is (start, end) local times; a range may run past midnight."""
    if quiet is None:
        return None
    start, end = quiet
    if start == end:
        return None
    tz = _zone(zone)
    local = now_utc.replace(tzinfo=_dt.UTC).astimezone(tz)
    t = local.time().replace(tzinfo=None)
    inside = (start <= t or t < end) if start > end else (start <= t < end)
    if not inside:
        return None
    day = local.date()
    if start > end and t >= start:  # the evening part: quiet until tomorrow morning
        day = day + _dt.timedelta(days=1)
    wake = _dt.datetime.combine(day, end, tzinfo=tz)
    return wake.astimezone(_dt.UTC).replace(tzinfo=None)


def local_date(now_utc: _dt.datetime, zone: str | None) -> _dt.date:
    return now_utc.replace(tzinfo=_dt.UTC).astimezone(_zone(zone)).date()
