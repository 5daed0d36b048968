"""The transition table and :func:`apply`: one action → a new case snapshot and one entry.

Pure: the caller supplies ``at`` (from :mod:`hub.clock`) and persists the returned case and
entry in one transaction. A refused action raises :class:`InvalidTransition` naming the
state, the action and what is allowed, and changes nothing.

Rules (each cites where it comes from):

* 派遣 starts the SLA clock (GB/T 30428.1 stage timing); 改派/回退/返工 start a new round of
  the stage clocks, the whole-case clock keeps running from the first dispatch.
* 反馈 (handle) needs the handler's note; a photo URL is optional (CJ/T 315 处置反馈).
* 结案 only after 核查 (CJ/T 315: a case is closed after verification); an SOS also needs a
  handler's note in its record, even when the button is reset by the sensor.
* 误报 (false alarm) on an SOS needs a recorded call-back (handbook §4: every false press
  still gets a call-back and is logged).
* 延期 needs an approver, a reason and the extra time (CJ/T 315 延期 requires approval).
* 作废 is refused for an SOS: an SOS ends as handled or as a false alarm after a call-back.
* 评价 (evaluate) only on a closed case not yet evaluated since it was closed (handbook §3:
  结案 → 综合评价); it needs the rating (满意/基本满意/不满意), who gave it (resident, guardian,
  command centre) and how (phone call-back, one-time link, visit, questionnaire, console).
  不满意 needs the reason and reopens the case as a 返工, like a failed 核查: back to the
  same handler (``accepted``), to ``data.assignee`` (``dispatched``), or to the dispatcher
  (``filed``) when nobody was ever dispatched. The whole-case clock keeps running from the
  first dispatch, so a reopened case is judged against its original due time.
* Entries never go back in time: an action dated before the last entry is refused (the hub
  stamps actions with its own clock and keeps a device's own time in ``data``).
* Every number an entry carries is finite and every duration sane (:data:`MAX_EXTENSION_S`, for
  one 延期 and for all of a stage's together):
  an entry is stored as JSON and replayed on every load, so a value JSON cannot hold
  (``inf``, ``nan``) or an absurd one would make the case unloadable for everybody.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import replace
from enum import StrEnum
from typing import TYPE_CHECKING, Any, TypeVar

from hub.cases.model import (
    TERMINAL,
    Case,
    CaseAction,
    CaseState,
    Channel,
    Evaluation,
    EvaluationVia,
    EvaluatorRole,
    Extension,
    Rating,
    Resolution,
    Stage,
    Supervision,
    TimelineEntry,
)
from hub.errors import InvalidTransition, RequirementNotMet

if TYPE_CHECKING:
    from hub.records import Alert

S = CaseState
A = CaseAction
E = TypeVar("E", bound=StrEnum)

#: The longest 延期 one approval may grant (a year): longer is a typo or an attack, not a plan.
MAX_EXTENSION_S = 366 * 86400.0
#: Nesting depth of ``data`` an entry may carry (the API sends flat objects).
MAX_DATA_DEPTH = 8
#: A note is a remark or a report, not a document (about two pages of Chinese text).
MAX_NOTE_CHARS = 4000
#: A case past this many timeline entries takes no more notes, call-backs or 督办 from people;
#: every other action and the hub's own entries go on. Every read
#: and action replays the whole timeline on the event loop: 3 000 notes by one grid worker
#: stalled it 370 ms per read of that case, no SOS handled meanwhile (found in review).
MAX_TIMELINE_ENTRIES = 500
#: The entries :data:`MAX_TIMELINE_ENTRIES` bounds: they record and change nothing else. Not 评价
#: or 延期, which have no new state in the table but move the case or its deadline (review).
_FREE_ENTRIES = frozenset({CaseAction.NOTE, CaseAction.CALL_BACK, CaseAction.SUPERVISE})
#: Actors that are the hub itself (its escalation, the sensor's auto-clear), not a person.
AUTOMATIC_ACTORS = frozenset({"system", "sensor"})

#: What each action may do from each state: the target state, or ``None`` to stay.
#: AUTO_CLEAR and VERIFY/REWORK pick their target from the case and data (see :func:`apply`).
TRANSITIONS: Mapping[CaseState, Mapping[CaseAction, CaseState | None]] = {
    S.FILED: {
        A.DISPATCH: S.DISPATCHED,
        A.VOID: S.VOID,
        A.FALSE_ALARM: S.CLOSED,
        A.AUTO_CLEAR: S.CLOSED,
        A.CALL_BACK: None,
        A.SUPERVISE: None,
        A.NOTE: None,
    },
    S.DISPATCHED: {
        A.ACCEPT: S.ACCEPTED,
        A.ARRIVE: S.ON_SITE,
        A.REASSIGN: S.DISPATCHED,
        A.RETURN: S.FILED,
        A.EXTEND: None,
        A.SUPERVISE: None,
        A.CALL_BACK: None,
        A.FALSE_ALARM: S.CLOSED,
        A.AUTO_CLEAR: S.CLOSED,
        A.VOID: S.VOID,
        A.NOTE: None,
    },
    S.ACCEPTED: {
        A.ARRIVE: S.ON_SITE,
        A.REASSIGN: S.DISPATCHED,
        A.RETURN: S.FILED,
        A.EXTEND: None,
        A.SUPERVISE: None,
        A.CALL_BACK: None,
        A.FALSE_ALARM: S.CLOSED,
        A.AUTO_CLEAR: S.CLOSED,
        A.NOTE: None,
    },
    S.ON_SITE: {
        A.HANDLE: S.HANDLED,
        A.REASSIGN: S.DISPATCHED,
        A.EXTEND: None,
        A.SUPERVISE: None,
        A.CALL_BACK: None,
        A.FALSE_ALARM: S.CLOSED,
        A.AUTO_CLEAR: S.CLOSED,
        A.NOTE: None,
    },
    S.HANDLED: {
        A.VERIFY: S.VERIFIED,
        A.REWORK: S.ACCEPTED,
        A.EXTEND: None,
        A.SUPERVISE: None,
        A.CALL_BACK: None,
        A.AUTO_CLEAR: S.CLOSED,
        A.NOTE: None,
    },
    S.VERIFIED: {
        A.CLOSE: S.CLOSED,
        A.SUPERVISE: None,
        A.CALL_BACK: None,
        A.NOTE: None,
    },
    S.CLOSED: {
        # 评价: stays closed, or (不满意) goes back for 返工 (target picked in :func:`apply`).
        A.EVALUATE: None,
    },
    S.VOID: {},
}

#: The stage whose clock runs in each state (``None``: no stage clock, only the case's).
CURRENT_STAGE: Mapping[CaseState, Stage | None] = {
    S.FILED: None,
    S.DISPATCHED: Stage.ACCEPT,
    S.ACCEPTED: Stage.ARRIVE,
    S.ON_SITE: Stage.HANDLE,
    S.HANDLED: Stage.VERIFY,
    S.VERIFIED: Stage.CASE,
    S.CLOSED: None,
    S.VOID: None,
}


def allowed_actions(case: Case) -> tuple[CaseAction, ...]:
    """Actions the table allows in the case's state (rules on data may still refuse one).

    ``evaluate`` is offered only while the closed case awaits its 评价, so a console shows
    no button for a case already evaluated in this closing, and no 退回 for an SOS.
    """
    return tuple(
        a
        for a in TRANSITIONS[case.state]
        if (a is not A.EVALUATE or case.awaiting_evaluation) and (a is not A.RETURN or not case.is_sos)
    )


def open_case(
    *,
    case_id: str,
    category: str,
    severity: str,
    subject: str,
    at: float,
    grid: str | None = None,
    community: str | None = None,
    title_zh: str = "",
    title_en: str = "",
    alert_id: int | None = None,
    actor: str = "system",
    channel: Channel = Channel.SYSTEM,
    note: str = "",
) -> tuple[Case, TimelineEntry]:
    """立案: a new case in state ``filed`` and its first timeline entry (which holds the header)."""
    if not case_id:
        raise ValueError("case_id must not be empty")
    header: dict[str, Any] = {
        "category": category,
        "severity": severity,
        "subject": subject,
        "grid": grid,
        "community": community,
        "title_zh": title_zh,
        "title_en": title_en,
        "alert_id": alert_id,
    }
    case = Case(
        id=case_id,
        category=category,
        severity=severity,
        subject=subject,
        grid=grid,
        community=community,
        title_zh=title_zh,
        title_en=title_en,
        alert_id=alert_id,
        state=S.FILED,
        resolution=None,
        filed_at=at,
        updated_at=at,
        version=1,
    )
    entry = TimelineEntry(
        case_id=case_id,
        seq=0,
        ts=at,
        action=A.FILE,
        from_state=None,
        to_state=S.FILED,
        actor=actor,
        channel=channel,
        note=note,
        data=header,
    )
    return case, entry


def case_from_alert(alert: Alert, *, case_id: str, at: float | None = None) -> tuple[Case, TimelineEntry]:
    """立案 from a stored alert (filed at the alert's ``raised_at`` unless ``at`` is given)."""
    return open_case(
        case_id=case_id,
        category=alert.category,
        severity=alert.severity,
        subject=alert.subject,
        grid=alert.grid,
        community=alert.community,
        title_zh=alert.title_zh,
        title_en=alert.title_en,
        alert_id=alert.id,
        at=alert.raised_at if at is None else at,
    )


def apply(  # noqa: PLR0915 - one branch per action keeps every rule in one place
    case: Case,
    action: CaseAction,
    *,
    actor: str,
    at: float,
    channel: Channel,
    note: str = "",
    data: Mapping[str, Any] | None = None,
    replaying: bool = False,
) -> tuple[Case, TimelineEntry]:
    """Apply ``action`` to ``case``: the new snapshot and the entry to append.

    Raises :class:`InvalidTransition` (or its subclass :class:`RequirementNotMet`) and
    changes nothing when the action is refused.

    ``replaying`` (only :func:`replay`) skips the input limits added after entries were
    first stored (note length, storable data, the longest extension) and reads an extension
    whose duration was lost (stored as ``null`` by a Linli before these limits) as 0 s: what
    is already in the record must always load, or the case is stuck for everybody.
    """
    data = dict(data or {})
    note = note.strip()
    # A failed 核查 is a 返工, whichever button was pressed: one action name for the KPIs.
    if action is A.VERIFY and data.get("passed") is False:
        action = A.REWORK
    table = TRANSITIONS[case.state]
    allowed = tuple(table)

    def refuse(reason: str) -> RequirementNotMet:
        return RequirementNotMet(state=case.state, action=action, allowed=allowed, reason=reason)

    if action not in table:
        raise InvalidTransition(state=case.state, action=action, allowed=allowed)
    if not actor:
        raise refuse("the actor must be named")
    if not math.isfinite(at):
        raise refuse(f"time {at} is not a finite number")
    if at < case.updated_at:
        raise refuse(f"time {at} is before the case's last entry at {case.updated_at}")
    if not replaying:
        if len(note) > MAX_NOTE_CHARS:
            raise refuse(f"the note has {len(note)} characters; at most {MAX_NOTE_CHARS}")
        problem = _unstorable(data)
        if problem:
            raise refuse(f"data {problem}: every entry must be storable as JSON and replayable")
    target = table[action]
    if (
        not replaying
        and action in _FREE_ENTRIES
        and case.version >= MAX_TIMELINE_ENTRIES
        and actor not in AUTOMATIC_ACTORS
    ):
        raise refuse(
            f"the case has {case.version} timeline entries; at most {MAX_TIMELINE_ENTRIES} take notes"
            " and other entries that change nothing: move it on, or write in the case it leads to"
        )
    changes: dict[str, Any] = {}
    new_state = case.state if target is None else target

    if action in _NEEDS_NOTE and not note:
        raise refuse(f"{action.value} needs a note ({_NEEDS_NOTE[action]})")
    if action is A.RETURN and case.is_sos:
        # 退回 puts a case back to 立案, where no escalation step runs: an elder's SOS would
        # wait there with nobody told. Whoever cannot go says so in a note, and the duty
        # officer or the command centre reassigns; until someone accepts, escalation goes on.
        raise refuse("an SOS case is never returned to 立案: ask the duty officer to reassign it")

    if action in (A.DISPATCH, A.REASSIGN):
        assignee = _text(data, "assignee")
        if not assignee:
            raise refuse(f"{action.value} needs data.assignee (who the case goes to)")
        changes |= _new_round(case, at, assignee=assignee)
    elif action is A.RETURN:
        changes |= {
            "assignee": None,
            "dispatched_at": None,
            "accepted_at": None,
            "on_site_at": None,
            "handled_at": None,
            "verified_at": None,
        }
    elif action is A.ACCEPT:
        changes |= {"accepted_at": at, "assignee": _text(data, "assignee") or actor}
    elif action is A.ARRIVE:
        changes |= {"on_site_at": at, "assignee": case.assignee or actor}
        if case.accepted_at is None or case.state is S.DISPATCHED:
            changes["accepted_at"] = at  # arriving implies accepting
    elif action is A.HANDLE:
        photo = _text(data, "photo_url")
        if photo and not photo.startswith(("https://", "http://")):
            raise refuse("data.photo_url must be an http(s) URL")
        changes |= {"handled_at": at, "handler_note": note, "photo_url": photo}
    elif action is A.VERIFY:
        changes |= {"verified_at": at}
    elif action is A.REWORK:
        new_state, rework = _rework(case, at, assignee=_text(data, "assignee"))
        changes |= rework
    elif action is A.EVALUATE:
        if not case.awaiting_evaluation:
            raise refuse(
                "already evaluated since it was closed (a case is evaluated again only after 返工 and a new 结案)"
            )
        rating = _choice(data, "rating", Rating, refuse, labels=_RATING_LABELS)
        role = _choice(data, "role", EvaluatorRole, refuse)
        via = _choice(data, "via", EvaluationVia, refuse)
        if rating is Rating.UNSATISFIED and not note:
            raise refuse("不满意 (unsatisfied) needs a note: the reason, for the 返工")
        changes |= {
            "evaluation": Evaluation(rating=rating, role=role, via=via, by=actor, at=at, note=note),
            "evaluation_count": case.evaluation_count + 1,
        }
        # ``handler``: whose work was judged (the KPIs' worker for 满意率), fixed at this moment.
        data = {
            **data,
            "rating": rating.value,
            "role": role.value,
            "via": via.value,
            "handler": case.assignee,
        }
        if rating is Rating.UNSATISFIED:
            new_state, rework = _rework(case, at, assignee=_text(data, "assignee"))
            changes |= rework | {"closed_at": None, "resolution": None}
            data["reopened_to"] = new_state.value
    elif action is A.CLOSE:
        if case.is_sos and not case.handler_note:
            raise refuse("an SOS case is closed only with a handler's note in its record")
        changes |= {"closed_at": at, "resolution": Resolution.RESOLVED}
    elif action is A.FALSE_ALARM:
        callback_at = _number(data, "callback_at")
        wrong = None if callback_at is None else _callback_wrong(case, callback_at, at)
        if wrong:
            raise refuse(wrong)
        if case.is_sos and callback_at is None and case.callback_at is None:
            raise refuse(
                "a false SOS still needs a recorded call-back (data.callback_at or a call_back entry first)"
            )
        changes |= {"closed_at": at, "resolution": Resolution.FALSE_ALARM}
        if callback_at is not None:
            changes["callback_at"] = callback_at
    elif action is A.CALL_BACK:
        callback_at = _number(data, "callback_at")
        callback_at = at if callback_at is None else callback_at
        wrong = _callback_wrong(case, callback_at, at)
        if wrong:
            raise refuse(wrong)
        changes["callback_at"] = callback_at
    elif action is A.AUTO_CLEAR:
        changes["sensor_cleared_at"] = at
        if case.is_sos and not case.handler_note:
            # The button was reset, but somebody still has to see the elder (handbook §4).
            new_state = case.state
        else:
            changes |= {"closed_at": at, "resolution": Resolution.AUTO_CLEARED}
    elif action is A.VOID:
        if case.is_sos:
            raise refuse("an SOS is never voided: close it as a false alarm after a call-back")
        changes |= {"closed_at": None, "resolution": Resolution.VOID}
    elif action is A.EXTEND:
        approver = _text(data, "approver")
        seconds = _number(data, "seconds")
        if not approver:
            raise refuse("延期 needs data.approver (who approved the extension)")
        if replaying and (seconds is None or seconds < 0):
            seconds = 0.0
        elif seconds is None or not 0 < seconds <= MAX_EXTENSION_S:
            raise refuse(f"延期 needs data.seconds > 0 and at most {MAX_EXTENSION_S:.0f} (the extra time)")
        stage = _stage(data, case, action) or Stage.CASE
        granted = sum(e.seconds for e in case.extensions if e.stage is stage)
        if not replaying and granted + seconds > MAX_EXTENSION_S:
            # Each within the bound, three of them put the due time past what the working-day
            # calendar looks ahead (found in review: HTTP 500 on the third 366-day 延期).
            raise refuse(
                f"延期 of stage {stage.value!r} would total {granted + seconds:.0f} s,"
                f" more than {MAX_EXTENSION_S:.0f} ({granted:.0f} s granted already)"
            )
        changes["extensions"] = (
            *case.extensions,
            Extension(stage=stage, seconds=seconds, approver=approver, at=at),
        )
        data = {**data, "stage": stage.value}
    elif action is A.SUPERVISE:
        stage = _stage(data, case, action) or Stage.CASE
        start = case.stage_start(stage)
        if start is None:
            raise refuse(f"stage {stage.value!r} has not started")
        changes["supervisions"] = (*case.supervisions, Supervision(stage=stage, round_start=start, at=at))
        data = {**data, "stage": stage.value, "round_start": start}

    updated = replace(
        case,
        state=new_state,
        updated_at=at,
        version=case.version + 1,
        **changes,
    )
    entry = TimelineEntry(
        case_id=case.id,
        seq=case.version,
        ts=at,
        action=action,
        from_state=case.state,
        to_state=updated.state,
        actor=actor,
        channel=channel,
        note=note,
        data=data,
    )
    return updated, entry


def replay(entries: Iterable[TimelineEntry]) -> Case:
    """Rebuild a case from its whole timeline (the first entry must be the ``file`` entry)."""
    it = iter(entries)
    first = next(it, None)
    if first is None or first.action is not A.FILE:
        raise ValueError("a timeline starts with its file entry")
    d = first.data
    case, _ = open_case(
        case_id=first.case_id,
        category=str(d["category"]),
        severity=str(d["severity"]),
        subject=str(d["subject"]),
        grid=d.get("grid"),
        community=d.get("community"),
        title_zh=str(d.get("title_zh", "")),
        title_en=str(d.get("title_en", "")),
        alert_id=d.get("alert_id"),
        at=first.ts,
        actor=first.actor,
        channel=first.channel,
        note=first.note,
    )
    return replay_onto(case, it)


def replay_onto(case: Case, entries: Iterable[TimelineEntry]) -> Case:
    """``case`` with the timeline entries that follow it applied, in order."""
    for entry in entries:
        case, _ = apply(
            case,
            entry.action,
            actor=entry.actor,
            at=entry.ts,
            channel=entry.channel,
            note=entry.note,
            data=entry.data,
            replaying=True,
        )
    return case


_NEEDS_NOTE: Mapping[CaseAction, str] = {
    A.HANDLE: "what was found and done",
    A.REWORK: "why the verification failed",
    A.RETURN: "why the case is returned",
    A.EXTEND: "why more time is needed",
    A.FALSE_ALARM: "how it was established",
    A.CALL_BACK: "the outcome of the call",
    A.VOID: "why it is not a case",
    A.NOTE: "the remark",
}


def _rework(case: Case, at: float, *, assignee: str) -> tuple[CaseState, dict[str, Any]]:
    """返工 (failed 核查 or 不满意): the state to go back to and the case's changes.

    Back to the same handler (``accepted``: a new round from 受理), to a new one
    (``dispatched``), or — a case closed before anybody was dispatched — to the dispatcher.
    """
    changes: dict[str, Any] = {"rework_count": case.rework_count + 1}
    if assignee and assignee != case.assignee:
        return S.DISPATCHED, changes | _new_round(case, at, assignee=assignee)
    if case.assignee is None or case.dispatched_at is None:
        return S.FILED, changes | {
            "assignee": None,
            "dispatched_at": None,
            "accepted_at": None,
            "on_site_at": None,
            "handled_at": None,
            "verified_at": None,
        }
    return S.ACCEPTED, changes | {
        "accepted_at": at,
        "on_site_at": None,
        "handled_at": None,
        "verified_at": None,
    }


#: zh-CN labels accepted for a rating (a phone page or a survey import may send them).
_RATING_LABELS: Mapping[str, Rating] = {r.label_zh: r for r in Rating}


def _choice(
    data: Mapping[str, Any],
    key: str,
    enum: type[E],
    refuse: Callable[[str], RequirementNotMet],
    *,
    labels: Mapping[str, E] | None = None,
) -> E:
    raw = _text(data, key)
    if raw in (labels or {}):
        return (labels or {})[raw]
    try:
        return enum(raw)
    except ValueError:
        names = ", ".join(e.value for e in enum)
        what = "missing" if not raw else f"unknown ({raw!r})"
        raise refuse(f"data.{key} is {what}: one of {names}") from None


def _new_round(case: Case, at: float, *, assignee: str) -> dict[str, Any]:
    return {
        "assignee": assignee,
        "clock_started_at": case.clock_started_at if case.clock_started_at is not None else at,
        "dispatched_at": at,
        "accepted_at": None,
        "on_site_at": None,
        "handled_at": None,
        "verified_at": None,
    }


def _text(data: Mapping[str, Any], key: str) -> str:
    value = data.get(key)
    return value.strip() if isinstance(value, str) else ""


def _callback_wrong(case: Case, callback_at: float, at: float) -> str | None:
    """Why ``callback_at`` cannot be this case's call-back (``None``: it can).

    A call-back answers the press: one dated before the case was filed is no call-back for it,
    and would let a false alarm close an SOS nobody called back (found in review: ``0``).
    """
    if callback_at > at:
        return "data.callback_at lies in the future"
    if callback_at < case.filed_at:
        return "data.callback_at lies before the case was filed: a call-back answers this press"
    return None


def _number(data: Mapping[str, Any], key: str) -> float | None:
    """A finite number, or ``None`` (absent, not a number, ``inf``/``nan``, too large for a float)."""
    value = data.get(key)
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    try:
        number = float(value)
    except OverflowError:
        return None
    return number if math.isfinite(number) else None


def _unstorable(value: Any, depth: int = 0) -> str:
    """Why ``value`` would not survive a JSON round trip unchanged (``""`` if it would)."""
    if depth > MAX_DATA_DEPTH:
        return f"nests deeper than {MAX_DATA_DEPTH} levels"
    if value is None or isinstance(value, bool | str):
        return ""
    if isinstance(value, int):
        return "" if abs(value) < 2**63 else f"holds an integer out of range ({str(value)[:20]}…)"
    if isinstance(value, float):
        return "" if math.isfinite(value) else f"holds a non-finite number ({value})"
    if isinstance(value, Mapping):
        for key, item in value.items():
            if not isinstance(key, str):
                return f"has a non-text key {key!r}"
            problem = _unstorable(item, depth + 1)
            if problem:
                return problem
        return ""
    if isinstance(value, list | tuple):
        return next((p for p in (_unstorable(v, depth + 1) for v in value) if p), "")
    return f"holds a {type(value).__name__}, which JSON cannot store"


def _stage(data: Mapping[str, Any], case: Case, action: CaseAction) -> Stage | None:
    raw = data.get("stage")
    if raw is None:
        return CURRENT_STAGE[case.state]
    try:
        return Stage(raw)
    except ValueError:
        raise RequirementNotMet(
            state=case.state,
            action=action,
            allowed=tuple(TRANSITIONS[case.state]),
            reason=f"unknown stage {raw!r} (one of {', '.join(s.value for s in Stage)})",
        ) from None


__all__ = [
    "AUTOMATIC_ACTORS",
    "CURRENT_STAGE",
    "MAX_EXTENSION_S",
    "MAX_NOTE_CHARS",
    "MAX_TIMELINE_ENTRIES",
    "TERMINAL",
    "TRANSITIONS",
    "InvalidTransition",
    "RequirementNotMet",
    "allowed_actions",
    "apply",
    "case_from_alert",
    "open_case",
    "replay",
]
