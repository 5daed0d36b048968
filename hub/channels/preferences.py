"""Per-person channel preferences: where a person wants case notices, by severity.

A person lists endpoints in order of preference. A notice goes to every endpoint whose
``min_severity`` it reaches; a **critical** notice (SOS, smoke) goes to all of a person's
endpoints whatever their threshold — life-safety calls are never filtered. With no
preference at all the hub keeps its default (the person's MQTT topic, see
``docs/topics.md``). Secrets are never stored here: ``secret_ref`` names an entry of the
hub's secrets file (a DingTalk ``SEC…`` secret, a WeCom robot URL, a webhook secret).
"""

from __future__ import annotations

from enum import StrEnum

from pydantic import BaseModel, ConfigDict, Field, model_validator

from hub.channels.messages import Lang
from rules.model import Severity

SEVERITY_ORDER: tuple[Severity, ...] = (Severity.INFO, Severity.MINOR, Severity.MAJOR, Severity.CRITICAL)


class EndpointKind(StrEnum):
    MQTT = "mqtt"  # the person's notification topic (phone app)
    DINGTALK = "dingtalk"  # a DingTalk custom robot (a group the person reads)
    WECOM = "wecom"  # a WeCom group robot
    WEBHOOK = "webhook"  # any JSON webhook (SMS/voice gateway, paging service …)


class Endpoint(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    kind: EndpointKind
    #: Topic, or URL without credentials; credentials come from ``secret_ref``.
    address: str = ""
    secret_ref: str = ""
    lang: Lang = Lang.ZH
    min_severity: Severity = Severity.INFO
    #: Mobiles to @-mention on a robot message (DingTalk atMobiles / WeCom mentioned_mobile_list).
    mention_mobiles: tuple[str, ...] = ()

    @model_validator(mode="after")
    def _addressed(self) -> Endpoint:
        if not self.address and not self.secret_ref:
            raise ValueError("an endpoint needs an address or a secret_ref holding its URL")
        return self


class PersonChannels(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    person_id: str = Field(pattern=r"^[A-Za-z0-9_.-]+$")
    endpoints: tuple[Endpoint, ...] = Field(min_length=1)


class Preferences(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    people: tuple[PersonChannels, ...] = ()

    @model_validator(mode="after")
    def _unique(self) -> Preferences:
        ids = [p.person_id for p in self.people]
        if len(ids) != len(set(ids)):
            raise ValueError("a person is listed twice in the channel preferences")
        return self

    def endpoints_for(self, person_id: str, severity: str) -> tuple[Endpoint, ...]:
        """Endpoints a notice of ``severity`` goes to (empty: use the hub's default)."""
        person = next((p for p in self.people if p.person_id == person_id), None)
        if person is None:
            return ()
        level = _rank(severity)
        if level == _rank(Severity.CRITICAL):
            return person.endpoints
        return tuple(e for e in person.endpoints if level >= _rank(e.min_severity))


def _rank(severity: str) -> int:
    try:
        return SEVERITY_ORDER.index(Severity(severity))
    except ValueError:
        # An unknown severity is treated as critical: better told twice than not at all.
        return len(SEVERITY_ORDER) - 1
