"""评价 after 结案: who may record it, the 回访 call-back list, and guardians' one-time links.

The workflow (:mod:`hub.cases.workflow`) decides what an evaluation does to a case (不满意 is a
返工); this module decides who gives it and how. The command centre records it after a call-back
(or for a resident who answered by phone); a guardian (监护人) evaluates through a link the hub
signed for him, which works on a phone without an account, expires, and is spent in the same
transaction as the evaluation it carried (``evaluation_links``), so it works once.

A link is ``{nonce}.{signature}``: the nonce names the stored link (case, guardian, expiry) and
the signature is HMAC-SHA256 over the nonce, the case and the expiry with the hub's link key.
The key is kept like the reply keys (a ``0600`` file in the data directory, re-read when it
changes); rotating it voids every link not yet used.

Must not import: ``hub.web``, ``hub.ingest``, ``hub.app``, ``hub.cli``.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from dataclasses import dataclass
from typing import Any

from hub.cases.kpi import CallBackDue
from hub.cases.model import Case, CaseAction, CaseState, Channel, EvaluationVia, EvaluatorRole, Rating
from hub.casework.access import Actor, Permission, Reach, Where
from hub.casework.reply_keys import ReplyKeys
from hub.casework.service import CASE_VIEWS_PER_STEP, Casework
from hub.clock import Clock
from hub.errors import CaseNotFoundError, NotAllowedError, RequirementNotMet
from hub.records import Role
from hub.steps import Steps, run_through
from hub.storage.case_rows import call_back_from
from hub.storage.links import EvaluationLinks, IssuedLink
from hub.storage.store import Store

#: The key's entry in the link-key file (one key for every link of this hub).
LINK_KEY_ID = "evaluation-links"
LINK_KEY_FILE = "link-keys.yaml"
#: How long a guardian's link works (a default: the brief's "expires").
DEFAULT_LINK_TTL_S = 7 * 86400.0
_NONCE_BYTES = 18


@dataclass(frozen=True, slots=True, kw_only=True)
class LinkView:
    """What the link page shows before the guardian answers (no personal data beyond his own name)."""

    case_id: str
    guardian: str
    title_zh: str
    title_en: str
    closed_at: float | None
    expires_at: float


def _signature(key: bytes, nonce: str, case_id: str, expires_at: float) -> str:
    message = f"linli-evaluation-link/1|{nonce}|{case_id}|{round(expires_at * 1000)}".encode()
    digest = hmac.new(key, message, hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


def _refused(case: Case | None, reason: str) -> RequirementNotMet:
    return RequirementNotMet(
        state=case.state if case is not None else CaseState.CLOSED,
        action=CaseAction.EVALUATE,
        allowed=(),
        reason=reason,
    )


@dataclass(frozen=True, slots=True)
class CallBackPage:
    """A page of the 回访 list and how many rows it was cut from (for the next page's link)."""

    due: tuple[CallBackDue, ...]
    read: int


class Evaluations:
    def __init__(
        self,
        *,
        casework: Casework,
        store: Store,
        keys: ReplyKeys,
        clock: Clock,
        link_ttl_s: float = DEFAULT_LINK_TTL_S,
    ) -> None:
        self._casework = casework
        self._store = store
        self._links = EvaluationLinks(store=store)
        self._keys = keys
        self._clock = clock
        self._ttl = link_ttl_s

    # -- by the desk ------------------------------------------------------------------------

    def evaluate(
        self,
        case_id: str,
        *,
        actor: Actor,
        rating: Rating,
        role: EvaluatorRole,
        via: EvaluationVia,
        note: str = "",
        assignee: str | None = None,
        channel: Channel = Channel.CONSOLE,
    ) -> Case:
        """Record an evaluation as ``actor`` (the access table decides; guardians use :meth:`evaluate_by_link`)."""
        # Who may, before anything about the case is said: a 409 on 不满意 named the alert's
        # other open case to whoever asked, in any grid (found by the access sweep).
        self._may(actor, CaseAction.EVALUATE, case_id)
        if via is EvaluationVia.LINK:
            raise NotAllowedError(
                "评价 by link is the guardian's own, through his link / only a link records via=link"
            )
        if role is not EvaluatorRole.COMMAND_CENTRE and not self._casework.reach(actor).may_ever(
            Permission.RECORD_FOR_OTHERS
        ):
            raise NotAllowedError(f"{actor.id} may not record an evaluation for a {role.value}")
        self._check_reopen(case_id, rating)
        data: dict[str, Any] = {"rating": rating.value, "role": role.value, "via": via.value}
        if assignee is not None:
            data["assignee"] = assignee
        return self._casework.act(
            case_id, CaseAction.EVALUATE, actor=actor, channel=channel, note=note, data=data
        )

    def _may(self, actor: Actor, action: CaseAction | Permission, case_id: str) -> Case:
        """The case, if ``actor`` may take ``action`` on it.

        A case the actor may not read does not exist for him (:class:`CaseNotFoundError`, a
        404), as on every other case route: a 403 told a worker which ids are cases in other
        grids. A case he reads but may not act on is a :class:`NotAllowedError` (403).
        """
        case = self._casework.load(case_id)
        if case is None:
            raise CaseNotFoundError(case_id)
        where = self._casework.where_of(case)
        if not self._casework.allows(actor, Permission.READ, where):
            raise CaseNotFoundError(case_id)
        if not self._casework.allows(actor, action, where):
            raise NotAllowedError(f"{actor.id} ({actor.role.value}) may not {action.value} case {case_id}")
        return case

    def _check_reopen(self, case_id: str, rating: Rating) -> None:
        """不满意 reopens the case: refused (changing nothing) if its alert has another open case."""
        if rating is not Rating.UNSATISFIED:
            return
        case = self._casework.load(case_id)
        if case is None:
            raise CaseNotFoundError(case_id)
        if case.alert_id is None:
            return
        other = self._casework.cases.open_for_alert(case.alert_id)
        if other is not None and other.id != case.id:
            raise _refused(
                case,
                f"alert {case.alert_id} already has open case {other.id}: record the 不满意 reason there"
                " (one open case per alert)",
            )

    def call_backs(
        self, *, reach: Reach | None = None, limit: int = 200, offset: int = 0
    ) -> tuple[CallBackDue, ...]:
        """Closed cases without their 评价 ``evaluation.call_back_after`` after 结案 (回访 list), oldest first.

        One indexed query for the page (``cases.call_back_from``, schema version 5), scoped by
        the access table's filter for ``evaluate``; only the page's cases are loaded. The same
        list as :func:`hub.cases.kpi.awaiting_evaluation` over every timeline (tested so).
        """
        return run_through(self.call_back_steps(reach=reach, limit=limit, offset=offset)).due

    def call_back_steps(
        self,
        *,
        reach: Reach | None = None,
        limit: int = 200,
        offset: int = 0,
        cases_per_step: int = CASE_VIEWS_PER_STEP,
    ) -> Steps[CallBackPage]:
        """:meth:`call_backs`, the page's cases loaded ``cases_per_step`` at a time (one query
        each, :meth:`Casework.load_many`) with a turn of the loop between: a page of 500 closed
        cases loaded one by one was tens of milliseconds in one go, and one unreadable case
        failed the whole list. A case evaluated (or reopened by a 不满意) while the page was
        being made is left out: each is checked as loaded, not as the index said."""
        after = self._casework.policies.file.evaluation.call_back_after_s
        until = self._clock.now() - after
        visible = None if reach is None else self._casework.case_filter(reach, CaseAction.EVALUATE)
        page = self._casework.cases.call_backs(until=until, visible=visible, limit=limit, offset=offset)
        due: list[CallBackDue] = []
        for at in range(0, len(page), cases_per_step):
            if at:
                yield
            batch = [case_id for case_id, _ in page[at : at + cases_per_step]]
            for case in self._casework.load_many(batch, retry=False):
                closed_at = call_back_from(case)
                if closed_at is None or closed_at > until:
                    continue
                due.append(CallBackDue.of(case, closed_at=closed_at, after=after))
        return CallBackPage(due=tuple(due), read=len(page))

    def case_json(self, case: Case) -> dict[str, Any]:
        return self._casework.case_json(case)

    # -- guardians' links -------------------------------------------------------------------

    def _key(self) -> bytes:
        key = self._keys.key_for(LINK_KEY_ID)
        if key is None:
            self._keys.ensure([LINK_KEY_ID])
            key = self._keys.key_for(LINK_KEY_ID)
        assert key is not None
        return key

    def issue_link(self, case_id: str, *, guardian: str, actor: Actor) -> tuple[str, float]:
        """A signed one-time link token for ``guardian`` on a closed case awaiting 评价; (token, expiry).

        Issued by someone who may record evaluations on that case (the desk).
        """
        case = self._may(actor, Permission.RECORD_FOR_OTHERS, case_id)
        if not case.awaiting_evaluation:
            raise _refused(case, "the case is not closed and waiting for its 评价")
        if not guardian.strip():
            raise _refused(case, "the guardian must be named")
        with self._store.transaction() as db:
            return self.issue_in(db, case_id, guardian=guardian.strip())

    def issue_in(self, db: Any, case_id: str, *, guardian: str) -> tuple[str, float]:
        """Store a new link in the caller's transaction (the hub's own sending commits it with
        the notification that carries it); the caller checked who may. Returns (token, expiry)."""
        now = self._clock.now()
        nonce = secrets.token_urlsafe(_NONCE_BYTES)
        expires = now + self._ttl
        self._links.issue(
            db, IssuedLink(nonce=nonce, case_id=case_id, guardian=guardian, issued_at=now, expires_at=expires)
        )
        return f"{nonce}.{_signature(self._key(), nonce, case_id, expires)}", expires

    def issued_to(self, case_id: str, guardian: str, *, since: float) -> bool:
        return self._links.issued_to(case_id, guardian, since=since)

    def _valid(self, token: str) -> tuple[IssuedLink, Case]:
        nonce, _, signature = token.partition(".")
        link = self._links.get(nonce) if nonce and signature else None
        expected = _signature(self._key(), nonce, link.case_id, link.expires_at) if link is not None else ""
        # One message for every failure: the page must not tell a forger which part was wrong.
        if link is None or not hmac.compare_digest(expected, signature):
            raise NotAllowedError("链接无效 / invalid link")
        if link.used_at is not None:
            raise NotAllowedError("链接已使用 / this link was already used")
        if self._clock.now() >= link.expires_at:
            raise NotAllowedError("链接已过期 / this link has expired")
        case = self._casework.load(link.case_id)
        if case is None:
            raise NotAllowedError("链接无效 / invalid link")
        return link, case

    def open_link(self, token: str) -> LinkView:
        link, case = self._valid(token)
        return LinkView(
            case_id=case.id,
            guardian=link.guardian,
            title_zh=case.title_zh,
            title_en=case.title_en,
            closed_at=case.closed_at,
            expires_at=link.expires_at,
        )

    def evaluate_by_link(self, token: str, *, rating: Rating, note: str = "") -> Case:
        """The guardian's answer: role ``guardian``, via ``link``; the link is spent with it."""
        link, case = self._valid(token)
        self._check_reopen(case.id, rating)
        actor = Actor(f"guardian:{link.guardian}", Role.GUARDIAN)
        where = Where(community=case.community, grid=case.grid, told=frozenset({actor.id}))

        def spend(db: Any) -> None:
            if not self._links.spend(db, link.nonce, at=self._clock.now()):
                raise NotAllowedError("链接已使用或已过期 / this link was already used or has expired")

        return self._casework.act(
            case.id,
            CaseAction.EVALUATE,
            actor=actor,
            channel=Channel.PHONE_PAGE,
            note=note,
            data={
                "rating": rating.value,
                "role": EvaluatorRole.GUARDIAN.value,
                "via": EvaluationVia.LINK.value,
            },
            where=where,
            within=spend,
        )
