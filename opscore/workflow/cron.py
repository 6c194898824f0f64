"""When a schedule fires: cron expressions (cronsim, the maintained parser behind
healthchecks.io, daylight-saving time included) and fixed intervals. Pure functions."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from cronsim import CronSim, CronSimError

from ..errors import UnprocessableError

ALIASES = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}


class ScheduleError(UnprocessableError):
    code = "INVALID_SCHEDULE"


def zone(name: str) -> ZoneInfo:
    """The IANA time zone, or ScheduleError naming it."""
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ScheduleError(
            f"Unknown time zone '{name}'; use an IANA name such as Europe/Paris"
        ) from None


def check(cron: str | None, interval: float | None, timezone: str) -> str:
    """Exactly one of cron and interval, both valid; returns the schedule in words."""
    if (cron is None) == (interval is None):
        raise ScheduleError("Give exactly one of cron and intervalSeconds")
    zone(timezone)
    if interval is not None:
        return f"every {interval:g} seconds"
    expression = ALIASES.get(cron.strip().lower(), cron) if cron else ""
    try:
        parsed = CronSim(expression, datetime.now(UTC))
        next(parsed)
    except (CronSimError, StopIteration) as exc:
        raise ScheduleError(f"Cron expression '{cron}' is not valid: {exc}") from None
    if len(expression.split()) != 5:
        raise ScheduleError(f"Cron expression '{cron}' must have five fields")
    try:
        return str(parsed.explain())
    except Exception:  # the explanation is a courtesy; the expression itself is valid
        return expression


def ticks(
    cron: str | None, interval: float | None, timezone: str, after: datetime, *, anchor: datetime
) -> Iterator[datetime]:
    """The firing times strictly after ``after``, in UTC. An interval counts from ``anchor``
    (when the schedule was made), so ticks stay on their grid across restarts."""
    if interval is not None:
        step = timedelta(seconds=interval)
        passed = max(int((after - anchor) / step) + 1, 1) if after >= anchor else 1
        current = anchor + step * passed
        while True:
            yield current
            current += step
    expression = ALIASES.get((cron or "").strip().lower(), cron or "")
    local = after.astimezone(zone(timezone))
    for moment in CronSim(expression, local):
        yield moment.astimezone(UTC)


def next_tick(
    cron: str | None, interval: float | None, timezone: str, after: datetime, *, anchor: datetime
) -> datetime:
    return next(ticks(cron, interval, timezone, after, anchor=anchor))


def due_ticks(
    cron: str | None,
    interval: float | None,
    timezone: str,
    first: datetime,
    now: datetime,
    *,
    anchor: datetime,
    most: int,
) -> tuple[list[datetime], int]:
    """The ticks from ``first`` (itself due) up to ``now``: the newest ``most`` of them, and
    how many there were in all (counted up to 100,000, so a year of seconds stays cheap)."""
    found: list[datetime] = [first]
    total = 1
    for tick in ticks(cron, interval, timezone, first, anchor=anchor):
        if tick > now or total >= 100_000:
            break
        total += 1
        found.append(tick)
        if len(found) > most:
            found.pop(0)
    return found, total
