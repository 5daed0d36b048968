"""The five trigger types; each engine keeps its memory in :class:`rules.state.Slot`\\ s."""

from __future__ import annotations

from rules.model import TriggerType
from rules.triggers.absence import AbsenceEngine
from rules.triggers.base import AnyTrigger, Engine, EventContext
from rules.triggers.count import CountEngine
from rules.triggers.duration import DurationEngine
from rules.triggers.event import EventEngine
from rules.triggers.threshold import ThresholdEngine

ABSENCE = AbsenceEngine()

ENGINES: dict[TriggerType, Engine] = {
    TriggerType.EVENT: EventEngine(),
    TriggerType.DURATION: DurationEngine(),
    TriggerType.ABSENCE: ABSENCE,
    TriggerType.COUNT: CountEngine(),
    TriggerType.THRESHOLD: ThresholdEngine(),
}

__all__ = ["ABSENCE", "ENGINES", "AnyTrigger", "Engine", "EventContext"]
