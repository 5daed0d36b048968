"""What care tells people: the alerts it raises on an elder and the notices of a missed task.

Care's alerts hang on the subject ``elder:<id>`` (the elder, not one of his devices): an ``info``
alert while a task is overdue — ``care.visit_overdue`` for a visit or call, ``care.no_sign_of_life``
for a day without a sign — carries the escalation notices (the outbox is keyed by alert; ``info``
opens no case), and a ``major`` ``care.needs_help`` alert becomes a case dispatched to the grid.
Each escalation step goes to the people its target names (assignee → 网格长 → 社区值班), the
command centre when it names nobody. Used by :mod:`hub.casework.visits`, inside its transactions.

Must not import: ``hub.web``, ``hub.ingest``, ``hub.app``, ``hub.cli``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import orjson

from hub.cases.care import EscalationDue, TaskKind, VisitTask
from hub.community.registry import Registry
from hub.notify.routing import Routing
from hub.records import Alert, Recipient, Role, new_notification_id
from hub.storage.engine import Tx
from hub.storage.store import Store
from rules.model import Severity
from rules.signals import Signal, SignalAction
from rules.subject import Subject

OVERDUE_RULE = "care.visit_overdue"
NEEDS_HELP_RULE = "care.needs_help"
NO_SIGN_RULE = "care.no_sign_of_life"


def subject_id(elder: str) -> str:
    return f"elder:{elder}"


def overdue_rule(kind: TaskKind) -> str:
    return NO_SIGN_RULE if kind is TaskKind.SIGN_OF_LIFE else OVERDUE_RULE


class CareAlerts:
    def __init__(
        self, *, store: Store, registry: Registry, routing: Routing, subject: Callable[[VisitTask], Subject]
    ) -> None:
        self._store = store
        self._registry = registry
        self._routing = routing
        self._subject = subject

    def _raise(self, db: Tx, signal: Signal, task: VisitTask) -> tuple[Alert, bool]:
        """The alert recorded for ``signal`` and whether it is new (else the active one)."""
        recorded = self._store.upsert_alert(db, signal, self._subject(task))
        if recorded is None:
            active = self._store.active_alert(signal.rule_id, subject_id(task.elder))
            assert active is not None  # the same occurrence is recorded and still active
            return active, False
        return recorded

    def overdue(self, db: Tx, task: VisitTask, now: float) -> tuple[Alert, bool]:
        rule = overdue_rule(task.kind)
        sign = task.kind is TaskKind.SIGN_OF_LIFE
        signal = Signal(
            action=SignalAction.RAISE,
            rule_id=rule,
            category="care",
            severity=Severity.INFO,
            subject=subject_id(task.elder),
            ts=now,
            title_zh="一整天未见平安信号" if sign else "探访逾期",
            title_en="No sign of life for a whole day" if sign else "Care visit overdue",
            trace={"visit": task.key, "due_at": task.due_at},
            key=f"{rule}|{task.key}",
        )
        return self._raise(db, signal, task)

    def needs_help(self, db: Tx, task: VisitTask, note: str, now: float) -> tuple[Alert, bool]:
        signal = Signal(
            action=SignalAction.RAISE,
            rule_id=NEEDS_HELP_RULE,
            category="care",
            severity=Severity.MAJOR,
            subject=subject_id(task.elder),
            ts=now,
            title_zh="探访发现老人需要帮助",
            title_en="A care visit found the elder needs help",
            trace={"visit": task.key, "note": note},
            key=f"{NEEDS_HELP_RULE}|{task.key}|{round(now * 1000)}",
        )
        return self._raise(db, signal, task)

    def targets(self, task: VisitTask, target: str) -> list[str]:
        people = self._registry.people_of(task.community)
        if target == "assignee":
            return [task.assignee] if task.assignee else [self._routing.command_centre().id]
        role = {"grid_leader": Role.GRID_LEADER, "duty_officer": Role.DUTY_OFFICER}.get(target)
        found = [
            p.id
            for p in people
            if role is not None and p.role is role and (role is Role.DUTY_OFFICER or task.grid in p.grids)
        ]
        # A step that resolves to nobody goes to the command centre (as case escalation does).
        return found or [self._routing.command_centre().id]

    def notify(
        self,
        db: Tx,
        alert: Alert,
        task: VisitTask,
        *,
        person: str,
        step: EscalationDue,
        visit: dict[str, Any],
        now: float,
    ) -> None:
        centre = self._routing.command_centre()
        recipient = (
            centre
            if person == centre.id
            else Recipient(
                id=person, channel="mqtt", address=self._routing.worker_topic(task.community, person)
            )
        )
        note_id = new_notification_id()
        sign = task.kind is TaskKind.SIGN_OF_LIFE
        body = {
            "schema": "linli.notification.v1",
            "id": note_id,
            "type": "sign_of_life.missing" if sign else "visit.escalate",
            "step": step.step,
            "step_key": step.key,
            "visit": visit,
            "title": (
                {"zh": "老人一整天未报平安，请联系或上门", "en": "No sign of life for a day: call or visit"}
                if sign
                else {"zh": "探访逾期，请尽快上门", "en": "A care visit is overdue: please visit"}
            ),
        }
        self._store.queue_notification(
            db,
            notification_id=note_id,
            alert_id=alert.id,
            recipient=recipient,
            payload=orjson.dumps(body),
            at=now,
        )
