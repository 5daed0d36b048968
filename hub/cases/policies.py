"""The site's case policies: working calendar, SLA limits and escalation chains, from YAML.

``hub/cases/policies.yaml`` ships the defaults (handbook §3–§5); a community overrides the
whole file. Every number in it is a default, never a constant in code.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from hub.cases.calendar import WorkingCalendar
from hub.cases.escalation import Chain, chain_for
from hub.cases.sla import Duration, SlaBook, SlaPolicy, parse_duration
from hub.errors import PolicyError

log = logging.getLogger(__name__)

DEFAULT_PATH = Path(__file__).with_name("policies.yaml")


class EvaluationPolicy(BaseModel):
    """评价 (handbook §3 综合评价): when a closed case without an evaluation is listed for a call-back."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    #: Calendar time after 结案 (``3d``, ``72h`` …) before the case needs a 回访 call.
    call_back_after: Duration = "3d"

    @property
    def call_back_after_s(self) -> float:
        return parse_duration(self.call_back_after)

    @field_validator("call_back_after")
    @classmethod
    def _duration(cls, value: Duration) -> Duration:
        if isinstance(value, str) and value.strip().endswith("wd"):
            raise ValueError("call_back_after is calendar time: write d or h, not wd")
        parse_duration(value)
        return value


class PolicyFile(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    version: int = Field(default=1, ge=1, le=1)
    calendar: WorkingCalendar = WorkingCalendar()
    #: Share of a limit at which a light turns yellow (handbook §3: 80 %).
    yellow_ratio: float = Field(default=0.8, gt=0, lt=1)
    sla: tuple[SlaPolicy, ...] = ()
    escalation: tuple[Chain, ...] = ()
    evaluation: EvaluationPolicy = EvaluationPolicy()


@dataclass(frozen=True, slots=True)
class Policies:
    file: PolicyFile
    sla: SlaBook
    #: Why the file's calendar zone was not taken (the hub's zone counts instead), for ``/readyz``.
    zone_note: str | None = None

    @property
    def calendar(self) -> WorkingCalendar:
        return self.file.calendar

    def chain(self, category: str, severity: str) -> Chain | None:
        return chain_for(self.file.escalation, category, severity)


def policies_from(
    doc: Any, *, source: str = "<policies>", zone: str | None = None, shipped: bool = False
) -> Policies:
    """The policies of ``doc``; with ``zone`` (the hub's ``timezone``) the working calendar is
    counted there. Found in review: the shipped file's ``Asia/Shanghai`` stood whatever the hub's
    zone, so a site in Europe/Berlin had its working-time limits counted 6–7 hours off. A site's
    own file may name the zone only if it is the hub's."""
    try:
        parsed = PolicyFile.model_validate(doc)
    except ValidationError as exc:
        raise PolicyError(f"{source}: {exc}") from exc
    calendar = parsed.calendar
    note: str | None = None
    if zone is not None and calendar.zone != zone:
        if not shipped and "zone" in calendar.model_fields_set and not same_zone(calendar.zone, zone):
            # The hub's zone counts (one zone for shifts, limits and the calendar); refusing the
            # file would stop the start of every community's SOS handling over a calendar.
            note = (
                f"{source}: calendar.zone {calendar.zone} is not the hub's timezone {zone}; the"
                f" working calendar is counted in {zone}: set one zone"
            )
            log.critical("%s", note)
        parsed = parsed.model_copy(update={"calendar": calendar.model_copy(update={"zone": zone})})
    book = SlaBook(policies=parsed.sla, calendar=parsed.calendar, yellow_ratio=parsed.yellow_ratio)
    return Policies(file=parsed, sla=book, zone_note=note)


def same_zone(first: str, second: str) -> bool:
    """Whether two IANA names keep the same time (``PRC``, ``Asia/Chongqing`` and ``Asia/Shanghai``
    are one zone): the same UTC offset on the 1st and 15th of every month, 1990–2050."""
    one, other = ZoneInfo(first), ZoneInfo(second)
    for year in range(1990, 2051):
        for month in range(1, 13):
            for day in (1, 15):
                moment = datetime(year, month, day, 12, tzinfo=UTC)
                if moment.astimezone(one).utcoffset() != moment.astimezone(other).utcoffset():
                    return False
    return True


def load_policies(path: Path | None = None, *, zone: str | None = None) -> Policies:
    """Read and validate a policy file (the shipped defaults when ``path`` is ``None``), its
    working calendar in ``zone`` when given (see :func:`policies_from`)."""
    shipped = path is None
    path = DEFAULT_PATH if path is None else path
    try:
        doc = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        raise PolicyError(f"cannot read policies {path}: {exc}") from exc
    return policies_from(doc, source=str(path), zone=zone, shipped=shipped)
