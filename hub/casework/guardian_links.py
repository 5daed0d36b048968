"""A guardian's 评价 link sent on his own channel when his elder's case closes (once per 结案).

Issue 18: "a guardian can evaluate through a signed one-time link sent on his channel". When a
case closes as ``resolved`` for an elder on the register, each of the elder's emergency contacts
who has an ``id`` and endpoints in ``channels_file`` (DingTalk, WeCom, a webhook, an MQTT topic)
gets a new link (:meth:`Evaluations.issue_in`) as a ``请评价`` notice. The link row and the
outbox rows commit in one transaction, and a guardian who already has a link of this closing
(:meth:`Evaluations.issued_to`, also one the desk issued) gets none: a restart, a replayed
change or a second close event sends nothing twice. A case reopened by 不满意 and closed again
is a new closing and sends again. Without ``http.public_url`` nothing is sent (a link to a
loopback address is no use on a phone) and the desk still issues links by hand.

Must not import: ``hub.web``, ``hub.ingest``, ``hub.app``, ``hub.cli``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from hub.cases.model import Case, Resolution
from hub.casework.elders import RegisterEntry
from hub.casework.evaluations import Evaluations
from hub.channels.messages import CaseNotice, NoticeKind
from hub.channels.preferences import Endpoint, EndpointKind, Preferences
from hub.clock import Clock
from hub.community.model import Contact, Resident
from hub.notify.webhooks import outbox_entry
from hub.records import Recipient, new_notification_id
from hub.storage.store import Store

log = logging.getLogger(__name__)


class GuardianLinks:
    def __init__(
        self,
        *,
        evaluations: Evaluations,
        elder_of: Callable[[str], RegisterEntry | None],
        whole: Callable[[Resident], Resident],
        preferences: Preferences,
        store: Store,
        clock: Clock,
        public_url: str | None,
    ) -> None:
        self._evaluations = evaluations
        #: Device id → its elder's register entry (``Visits.elder_of``: the register it keeps).
        self._elder_of = elder_of
        #: A register entry's resident with its personal data (``Registry.whole``).
        self._whole = whole
        self._preferences = preferences
        self._store = store
        self._clock = clock
        self._base = public_url.rstrip("/") if public_url else None

    def guardians(self, case: Case) -> list[Contact]:
        """The elder's guardians who can be reached on a channel of their own."""
        entry = self._elder_of(case.subject)
        if entry is None:
            return []
        # The register holds residents without their personal data (hub.community.personal).
        contacts = self._whole(entry.resident).emergency_contacts
        return [c for c in contacts if c.id is not None and self._endpoints(c.id, case)]

    def _endpoints(self, guardian: str, case: Case) -> list[Endpoint]:
        # A guardian has no app topic of his own: an MQTT endpoint must name its topic.
        return [
            e
            for e in self._preferences.endpoints_for(guardian, case.severity)
            if e.kind is not EndpointKind.MQTT or e.address
        ]

    def on_case_changed(self, case: Case) -> int:
        """After a committed change: a case just closed as resolved sends its links. Returns links sent."""
        if (
            self._base is None
            or not case.awaiting_evaluation
            or case.resolution is not Resolution.RESOLVED
            or case.closed_at is None
            or case.alert_id is None
        ):
            return 0
        sent = 0
        for guardian in self.guardians(case):
            try:
                sent += self._send(case, guardian)
            except Exception:
                # The desk's call-back list still shows the case: nobody's 评价 is lost.
                log.exception("could not send case %s's 评价 link to guardian %s", case.id, guardian.id)
        return sent

    def _send(self, case: Case, guardian: Contact) -> int:
        assert guardian.id is not None and case.closed_at is not None and case.alert_id is not None
        if self._evaluations.issued_to(case.id, guardian.name, since=case.closed_at):
            return 0
        now = self._clock.now()
        with self._store.transaction() as db:
            token, expires = self._evaluations.issue_in(db, case.id, guardian=guardian.name)
            notice = CaseNotice(
                case_id=case.id,
                kind=NoticeKind.EVALUATE,
                category=case.category,
                severity=case.severity,
                title_zh=case.title_zh,
                title_en=case.title_en,
                state=case.state.value,
                filed_at=case.filed_at,
                grid=case.grid,
                due_at=expires,  # the link's expiry: rate before then
                link=f"{self._base}/e/{token}",
            )
            for endpoint in self._endpoints(guardian.id, case):
                self._queue(db, case, guardian.id, endpoint_entry=outbox_entry(endpoint, notice), now=now)
        log.info("case %s: 评价 link sent to guardian %s", case.id, guardian.id)
        return 1

    def _queue(
        self, db: Any, case: Case, person: str, *, endpoint_entry: tuple[str, str, bytes], now: float
    ) -> None:
        channel, address, body = endpoint_entry
        assert case.alert_id is not None
        self._store.queue_notification(
            db,
            notification_id=new_notification_id(),
            alert_id=case.alert_id,
            recipient=Recipient(id=person, channel=channel, address=address),
            payload=body,
            at=now,
            case_id=case.id,
        )
