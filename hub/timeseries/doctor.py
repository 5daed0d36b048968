"""``doctor(settings)``: can the hub reach its time-series store and write to it?

Returns findings in plain words for ``linli doctor``; never raises for a network problem and
never prints the token. The write check writes one point to measurement ``linli_doctor``.
"""

from __future__ import annotations

import asyncio
import sqlite3
import time
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING

from hub.files import touch_private
from hub.timeseries.line_protocol import Point, encode
from hub.timeseries.settings import TimeseriesKind, TimeseriesSettings

if TYPE_CHECKING:
    import aiohttp

DOCTOR_MEASUREMENT = "linli_doctor"


class Level(StrEnum):
    OK = "ok"
    WARN = "warn"
    ERROR = "error"


@dataclass(frozen=True, slots=True, kw_only=True)
class Finding:
    level: Level
    message: str

    def __str__(self) -> str:
        return f"[{self.level.value}] {self.message}"


async def doctor(settings: TimeseriesSettings, *, data_dir: Path | None = None) -> list[Finding]:
    if settings.kind is TimeseriesKind.NONE:
        return await asyncio.to_thread(_embedded, settings, data_dir or Path("."))
    import aiohttp  # noqa: PLC0415 (unused by many hubs: 0.25 s of start-up)

    timeout = aiohttp.ClientTimeout(total=settings.request_timeout_s)
    async with aiohttp.ClientSession(timeout=timeout) as session:
        findings = await _ping(session, settings)
        if any(f.level is Level.ERROR for f in findings):
            return findings
        findings.append(await _test_write(session, settings))
        return findings


def _embedded(settings: TimeseriesSettings, data_dir: Path) -> list[Finding]:
    path = settings.sqlite_file(data_dir)
    try:
        touch_private(path)
        db = sqlite3.connect(path)
        try:
            db.execute("CREATE TABLE IF NOT EXISTS doctor_probe (x)")
            db.execute("DROP TABLE doctor_probe")
        finally:
            db.close()
    except (OSError, sqlite3.Error) as exc:
        return [
            Finding(level=Level.ERROR, message=f"embedded time-series file {path} is not writable: {exc}")
        ]
    return [
        Finding(
            level=Level.OK,
            message=f"time series: embedded SQLite sink {path} (retention {settings.retention_days:g} days)",
        )
    ]


async def _ping(session: aiohttp.ClientSession, settings: TimeseriesSettings) -> list[Finding]:
    import aiohttp  # noqa: PLC0415 (see doctor)

    url = settings.url
    for path in ("/ping", "/health"):
        try:
            async with session.get(url + path) as resp:
                if resp.status < 300:
                    version = resp.headers.get("X-Influxdb-Version", "")
                    detail = f" (InfluxDB {version})" if version else ""
                    return [Finding(level=Level.OK, message=f"{url}{path} answers {resp.status}{detail}")]
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            return [Finding(level=Level.ERROR, message=f"cannot reach {url}: {type(exc).__name__}: {exc}")]
    return [Finding(level=Level.ERROR, message=f"{url} answers neither /ping nor /health")]


_HINTS = {
    401: "the credentials are wrong or missing (token / username and password)",
    403: "the credentials may not write there (grant write permission)",
    404: "the database or bucket does not exist (create it, or fix db/bucket/org)",
}


async def _test_write(session: aiohttp.ClientSession, settings: TimeseriesSettings) -> Finding:
    import aiohttp  # noqa: PLC0415 (see doctor)

    url, params, headers = settings.write_target()
    target = (
        f"bucket {settings.bucket!r}" if settings.kind is TimeseriesKind.INFLUX_V2 else f"db {settings.db!r}"
    )
    line = encode(Point.of(DOCTOR_MEASUREMENT, tags={"check": "write"}, fields={"ok": 1}, ts=time.time()))
    try:
        async with session.post(url, params=params, data=(line or "").encode(), headers=headers) as resp:
            if resp.status < 300:
                return Finding(level=Level.OK, message=f"test write to {target} accepted ({resp.status})")
            body = (await resp.text(errors="replace"))[:300].strip()
    except (aiohttp.ClientError, TimeoutError, OSError) as exc:
        return Finding(
            level=Level.ERROR, message=f"test write to {target} failed: {type(exc).__name__}: {exc}"
        )
    hint = _HINTS.get(resp.status, "the server refused the write")
    return Finding(level=Level.ERROR, message=f"test write to {target}: {resp.status} — {hint}: {body}")
