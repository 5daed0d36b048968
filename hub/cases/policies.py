"""The site's case policies: working calendar, SLA limits and escalation chains, from YAML.

``hub/cases/policies.yaml`` ships the defaults (handbook §3–§5); a community overrides the
whole file. Every number in it is a default, never a constant in code.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from hub.cases.calendar import WorkingCalendar
from hub.cases.escalation import Chain, chain_for
from hub.cases.sla import Duration, SlaBook, SlaPolicy, parse_duration
from hub.errors import PolicyError

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

    @property
    def calendar(self) -> WorkingCalendar:
        return self.file.calendar

    def chain(self, category: str, severity: str) -> Chain | None:
        return chain_for(self.file.escalation, category, severity)


def policies_from(doc: Any, *, source: str = "<policies>") -> Policies:
    try:
        parsed = PolicyFile.model_validate(doc)
    except ValidationError as exc:
        raise PolicyError(f"{source}: {exc}") from exc
    book = SlaBook(policies=parsed.sla, calendar=parsed.calendar, yellow_ratio=parsed.yellow_ratio)
    return Policies(file=parsed, sla=book)


def load_policies(path: Path | None = None) -> Policies:
    """Read and validate a policy file (the shipped defaults when ``path`` is ``None``)."""
    path = DEFAULT_PATH if path is None else path
    try:
        doc = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise PolicyError(f"cannot read policies {path}: {exc}") from exc
    return policies_from(doc, source=str(path))
