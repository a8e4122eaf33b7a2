"""What a person can do to an incident from Slack: acknowledge, resolve, silence, escalate.

Each operation checks permissions first (a refusal is written to the audit log with
``allowed=False``), then changes the store in one transaction together with an
``incident.updated`` outbox message, so the Slack sender edits the incident's root message
(durable before visible). The answer is an :class:`Outcome`: a reply for the person who
asked and, when something changed, a note for the incident's thread saying who did what.
An action that does not apply (acknowledging a resolved incident) is answered politely and
changes nothing.

Nothing here talks to Slack; the bolt handlers in ``paytriage.slack_app.app`` deliver outcomes.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal
from zoneinfo import ZoneInfo

from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm.exc import StaleDataError

from paytriage.core.types import iso
from paytriage.domain.findings import Severity
from paytriage.domain.incidents import MANUAL, Incident, TimelineKind, fingerprint
from paytriage.domain.lifecycle import TARGET, Action, Silence, State, TransitionError
from paytriage.domain.notifications import (
    PAGERDUTY,
    Change,
    Channel,
    Receiver,
    action_message,
    change_message,
    escalation_message,
    page_message,
)
from paytriage.notify.slack.text import ago, clock_time, mention, safe, user_ref
from paytriage.reports.postmortem import PostmortemError, export_postmortem, render_postmortem
from paytriage.slack_app.options import AppOptions
from paytriage.slack_app.permissions import Permissions
from paytriage.slack_app.views import dims_text
from paytriage.store import Entry, Postmortem, Store, StoredIncident, StoreError, Tx

log = logging.getLogger(__name__)

# What a lifecycle action looks like when done: its icon and "You …" / "@ana …" phrase.
_DONE = {
    Action.acknowledge: (":eyes:", "acknowledged {}"),
    Action.mitigate: (":adhesive_bandage:", "marked {} as mitigated (the impact has stopped)"),
    Action.resolve: (":white_check_mark:", "resolved {}"),
}

Via = Literal["button", "command", "mention"]
NO_REASON = "no reason given"
_EXTEND_MIN = timedelta(minutes=1)


@dataclass(frozen=True)
class Outcome:
    """``reply`` (mrkdwn) goes to the person who asked; ``note`` (mrkdwn), when something
    changed, to the incident's thread; ``incident`` is the incident after the change."""

    ok: bool
    reply: str
    note: str | None = None
    incident: StoredIncident | None = None
    postmortem: Postmortem | None = None  # a new draft version to post for review


def actor_of(user_id: str) -> str:
    return f"slack:{user_id}"


class Operations:
    def __init__(
        self,
        options: AppOptions,
        store: Store,
        permissions: Permissions,
        clock: Callable[[], datetime],
    ) -> None:
        self.store = store
        self.permissions = permissions
        self.clock = clock
        self.command = options.command
        self.pagerduty_enabled = options.pagerduty_enabled
        self.tz = ZoneInfo(options.timezone)
        self._route = options.route
        self.postmortem_template = options.postmortem_template
        self.export_dir = options.export_dir

    # -- where updates go -----------------------------------------------------------------

    def channel_of(self, inc: StoredIncident) -> Channel:
        """The outbox channel of an incident's updates: the channel its root message is in,
        else the one its route picks (as the pipeline does)."""
        if inc.slack_channel:
            return Channel.slack(inc.slack_channel)
        return self._route(inc.as_incident()) or Channel(Receiver.SLACK)

    def _updated(
        self,
        tx: Tx,
        inc: StoredIncident,
        action: str,
        actor: str,
        at: datetime,
        state: State,
        extra: Mapping[str, Any] | None = None,
    ) -> None:
        msg = action_message(
            inc.id,
            action,
            self.channel_of(inc),
            by=actor,
            title=inc.title,
            severity=inc.severity.value,
            state=state.value,
            at=at,
            extra=extra,
        )
        tx.enqueue(msg, at)

    # -- shared answers ---------------------------------------------------------------------

    def _unknown(self, incident_id: str) -> Outcome:
        return Outcome(
            False,
            f"I know no incident `{safe(incident_id, 40)}`. "
            f"`{self.command} status` lists the open ones.",
        )

    def refusal(
        self, user_id: str, action: str, incident_id: str | None, via: Via
    ) -> Outcome | None:
        """The refusal (audited) when ``user_id`` may not ``action``; None when they may.
        Asked before a form opens, so nobody fills one in only to be told no."""
        return self._refused(user_id, action, incident_id, self.clock(), via)

    def _refused(
        self, user_id: str, action: str, incident_id: str | None, at: datetime, via: Via
    ) -> Outcome | None:
        decision = self.permissions.check(user_id, action)
        if decision.allowed:
            return None
        with self.store.begin() as tx:
            tx.audit(
                actor_of(user_id),
                action,
                incident_id,
                at,
                {"via": via, "reason": "not permitted"},
                allowed=False,
            )
        extra = (
            " (I could not read the user groups just now; try again in a minute.)"
            if decision.lookup_failed
            else ""
        )
        return Outcome(
            False,
            f"Sorry, only the people and user groups set in `slack.permissions.{action}` "
            f"may {action} incidents; please ask one of them or the incident lead.{extra} "
            "Your request was recorded in the audit log.",
        )

    def _not_applicable(self, incident_id: str, action: Action) -> Outcome:
        inc = self.store.incident(incident_id)
        verb = action.value
        if inc is None:
            return self._unknown(incident_id)
        now = self.clock()
        iid = f"`{safe(inc.ref, 20)}`"
        if inc.state is State.resolved:
            when = f" at {clock_time(inc.resolved_at, self.tz, now)}" if inc.resolved_at else ""
            return Outcome(False, f"{iid} is already resolved{when}; nothing to {verb}.", None, inc)
        if inc.state is State.acknowledged and action is Action.acknowledge:
            when = (
                f" at {clock_time(inc.acknowledged_at, self.tz, now)}"
                if inc.acknowledged_at
                else ""
            )
            return Outcome(
                False,
                f"{iid} was already acknowledged by {user_ref(inc.acknowledged_by)}{when}; "
                "nothing changed.",
                None,
                inc,
            )
        if TARGET[action] is inc.state:
            return Outcome(
                False, f"{iid} is already {inc.state.value}; nothing changed.", None, inc
            )
        return Outcome(False, f"{iid} is {inc.state.value}; it cannot be {verb}d now.", None, inc)

    @staticmethod
    def _conflict(incident_id: str) -> Outcome:
        return Outcome(
            False,
            f"`{safe(incident_id, 40)}` was changed by someone else at the same moment; "
            "nothing was done. Please look again.",
        )

    # -- lifecycle ----------------------------------------------------------------------------

    def acknowledge(self, incident_id: str, user_id: str, via: Via) -> Outcome:
        return self._lifecycle(incident_id, user_id, via, Action.acknowledge, "")

    def mitigate(self, incident_id: str, user_id: str, via: Via, note: str = "") -> Outcome:
        """The impact has stopped; the cause may remain (the incident stays open until it
        resolves, by its findings clearing or by a person)."""
        return self._lifecycle(incident_id, user_id, via, Action.mitigate, note)

    def resolve(self, incident_id: str, user_id: str, via: Via, note: str = "") -> Outcome:
        return self._lifecycle(incident_id, user_id, via, Action.resolve, note)

    def _lifecycle(
        self, incident_id: str, user_id: str, via: Via, action: Action, note: str
    ) -> Outcome:
        inc = self.store.incident(incident_id)
        if inc is None:
            return self._unknown(incident_id)
        at = self.clock()
        actor = actor_of(user_id)
        refused = self._refused(user_id, action.value, inc.id, at, via)
        if refused is not None:
            return refused
        try:
            with self.store.begin() as tx:
                state = tx.act(inc.id, action, actor, at, note)
                self._updated(
                    tx, inc, action.value, actor, at, state, {"note": note} if note else {}
                )
                paged = action is not Action.mitigate and self.pagerduty_enabled
                if paged and tx.has_outbox(inc.id, str(PAGERDUTY)):
                    # The page follows the people: acknowledged or resolved in Slack, the
                    # same in PagerDuty (its dedup key is the incident id).
                    page = page_message(inc.id, action.value, reopened=inc.reopened, by=actor)
                    tx.enqueue(page, at)
        except TransitionError:
            return self._not_applicable(inc.id, action)
        except StaleDataError:
            return self._conflict(inc.id)
        after = self.store.incident(inc.id)
        said = f": {safe(note, 500)}" if note else ""
        icon, done = _DONE[action]
        iid = f"`{safe(inc.ref, 20)}`"
        return Outcome(
            True,
            f"You {done.format(iid)}: {safe(inc.title, 300)}.",
            f"{icon} {mention(user_id)} {done.format('this incident')}{said}.",
            after,
        )

    # -- declaring --------------------------------------------------------------------------

    def declare(
        self,
        title: str,
        severity: Severity,
        labels: Mapping[str, str],
        user_id: str,
        via: Via,
    ) -> Outcome:
        """Open an incident by hand (someone saw it before any detector did): stored,
        numbered and posted like any other, with the actions; a person resolves it."""
        at = self.clock()
        refused = self._refused(user_id, "declare", None, at, via)
        if refused is not None:
            return refused
        actor = actor_of(user_id)
        title = title.strip()
        inc = Incident(
            id=fingerprint(MANUAL, labels, at),
            detector=MANUAL,
            dimensions=dict(labels),
            title=title,
            severity=severity,
            opened_at=at,
            onset=None,
            data_problem=False,
        )
        channel = self._route(inc) or Channel(Receiver.SLACK)
        try:
            with self.store.begin() as tx:
                tx.save_incident(inc, at)
                tx.timeline(inc.id, Entry(at, TimelineKind.DECLARED, actor, f"declared: {title}"))
                tx.audit(actor, "declare", inc.id, at, {"via": via, "title": title})
                message = change_message(
                    inc.id, Change.OPENED, channel, title=title, severity=severity.value,
                    state=State.open.value, at=at, reopened=0,
                )  # fmt: skip
                tx.enqueue(message, at)
        except IntegrityError:  # declared twice in the same second, or a number taken
            return Outcome(False, "That incident was just declared; look at `status`.")
        stored = self.store.incident(inc.id)
        ref = f"`{safe(stored.ref if stored else inc.id, 20)}`"
        where = dims_text(labels)
        return Outcome(
            True,
            f"You declared {ref}: {safe(title, 300)} ({safe(severity.value, 10)}, "
            f"{safe(where, 200)}). Its message is on its way to the incident channel; "
            "resolve it when it is over.",
            None,
            stored,
        )

    # -- silences -------------------------------------------------------------------------

    def _until(self, expires: datetime | None, at: datetime) -> str:
        if expires is None:
            return "until it resolves"
        return f"for {ago(expires - at)} (until {clock_time(expires, self.tz, at)})"

    def silence_incident(
        self,
        incident_id: str,
        user_id: str,
        via: Via,
        duration: timedelta | None,
        reason: str = "",
    ) -> Outcome:
        """Hold the incident's notifications for ``duration`` (None: until it resolves)."""
        inc = self.store.incident(incident_id)
        if inc is None:
            return self._unknown(incident_id)
        at = self.clock()
        actor = actor_of(user_id)
        refused = self._refused(user_id, "silence", inc.id, at, via)
        if refused is not None:
            return refused
        iid = f"`{safe(inc.ref, 20)}`"
        if inc.state is State.resolved:
            return Outcome(False, f"{iid} is already resolved; nothing to silence.", None, inc)
        expires = None if duration is None else at + duration
        for s in self.store.silences(at):
            if not s.covers(inc.detector, inc.dimensions, inc.id):
                continue
            # Covered already (a silence that would end less than a minute later adds
            # nothing: a second click on "Silence 1 h" is not a new silence).
            if s.expires_at is None or (
                expires is not None and s.expires_at >= expires - _EXTEND_MIN
            ):
                until = self._until(s.expires_at, at).removeprefix("for ")
                return Outcome(
                    False,
                    f"{iid} is already silenced ({until}) by {user_ref(s.created_by)}; "
                    "nothing changed.",
                    None,
                    inc,
                )
        reason = reason.strip() or NO_REASON
        silence = Silence(
            id=_silence_id(inc.id, duration, actor, at),
            detector=inc.detector,
            dimensions=dict(inc.dimensions),
            reason=reason,
            created_by=actor,
            created_at=at,
            expires_at=expires,
            incident_id=inc.id,
        )
        until = self._until(expires, at)
        try:  # the silence, its audit row, the timeline and the message update: one commit
            with self.store.begin() as tx:
                tx.add_silence(silence)
                tx.timeline(
                    inc.id,
                    Entry(
                        at,
                        "silenced",
                        actor,
                        f"silenced {until} by {actor}: {reason}",
                        {"silence": silence.id},
                    ),
                )
                self._updated(
                    tx,
                    inc,
                    "silence",
                    actor,
                    at,
                    inc.state,
                    {
                        "silence": {
                            "id": silence.id,
                            "expires_at": iso(expires) if expires else None,
                            "reason": reason,
                        }
                    },
                )
        except IntegrityError:  # the same request twice (a double click)
            return Outcome(False, f"{iid} is already silenced; nothing changed.", None, inc)
        return Outcome(
            True,
            f"You silenced {iid} {until}. It is still recorded; only notifications are held.",
            f":mute: {mention(user_id)} silenced this incident {until}: {safe(reason, 500)}",
            self.store.incident(inc.id),
        )

    def silence_detector(
        self,
        detector: str | None,
        labels: Mapping[str, str],
        user_id: str,
        via: Via,
        duration: timedelta,
        reason: str = "",
    ) -> Outcome:
        """Hold notifications of ``detector`` (None: every detector) on ``labels``."""
        at = self.clock()
        actor = actor_of(user_id)
        refused = self._refused(user_id, "silence", None, at, via)
        if refused is not None:
            return refused
        expires = at + duration
        target = f"{detector or '*'}|{dims_text(labels)}"
        silence = Silence(
            id=_silence_id(target, duration, actor, at),
            detector=detector,
            dimensions=dict(labels),
            reason=reason.strip() or NO_REASON,
            created_by=actor,
            created_at=at,
            expires_at=expires,
        )
        what = (f"`{safe(detector, 60)}`" if detector else "every detector") + (
            f" on {safe(dims_text(labels), 300)}" if labels else ""
        )
        try:
            self.store.add_silence(silence)
        except IntegrityError:
            return Outcome(False, f"{what} is already silenced; nothing changed.")
        return Outcome(
            True,
            f"You silenced {what} {self._until(expires, at)}. Incidents are still recorded; "
            "only notifications are held.",
        )

    # -- escalation and postmortems ---------------------------------------------------------

    def escalate(self, incident_id: str, user_id: str, via: Via) -> Outcome:
        inc = self.store.incident(incident_id)
        if inc is None:
            return self._unknown(incident_id)
        at = self.clock()
        actor = actor_of(user_id)
        refused = self._refused(user_id, "escalate", inc.id, at, via)
        if refused is not None:
            return refused
        iid = f"`{safe(inc.ref, 20)}`"
        if not self.pagerduty_enabled:
            return Outcome(
                False,
                "PagerDuty is not configured here (`pagerduty.enabled` is false), so nobody "
                f"was paged for {iid}. Please call the escalation contact directly.",
                None,
                inc,
            )
        if inc.state is State.resolved:
            return Outcome(False, f"{iid} is resolved; nothing to escalate.", None, inc)
        try:
            with self.store.begin() as tx:
                added = tx.enqueue(escalation_message(inc.id, by=actor), at)
                if added:
                    what = f"escalated to PagerDuty by {actor}"
                    tx.timeline(inc.id, Entry(at, TimelineKind.ESCALATED, actor, what))
                    tx.audit(actor, "escalate", inc.id, at, {"via": via})
                    self._updated(tx, inc, "escalate", actor, at, inc.state)
        except StaleDataError:
            return self._conflict(inc.id)
        if not added:
            return Outcome(False, f"{iid} was already escalated to PagerDuty.", None, inc)
        return Outcome(
            True,
            f"You escalated {iid}: a PagerDuty page is queued.",
            f":rotating_light: {mention(user_id)} escalated this incident to PagerDuty.",
            self.store.incident(inc.id),
        )

    def postmortem(self, incident_id: str, user_id: str | None = None) -> Outcome:
        """A new draft version from the store, rendered with the configured template."""
        inc = self.store.incident(incident_id)
        if inc is None:
            return self._unknown(incident_id)
        at = self.clock()
        try:
            body = render_postmortem(
                inc,
                self.store.timeline(inc.id),
                self.store.audit_log(inc.id),
                at,
                template=self.postmortem_template,
            )
        except PostmortemError as exc:
            log.error("postmortem of %s: %s", inc.id, exc)
            return Outcome(False, f"The postmortem template failed: {safe(str(exc), 500)}")
        author = actor_of(user_id) if user_id else "paytriage"
        pm = self.store.add_postmortem(inc.id, body, author, at)
        return Outcome(
            True,
            f"Draft v{pm.version} of the postmortem of `{safe(inc.ref, 20)}` is in the "
            "incident's thread for review.",
            None,
            inc,
            pm,
        )

    def review(
        self, incident_id: str, version: int, status: str, user_id: str, via: Via
    ) -> Outcome:
        """Approve a draft version (exported to a file) or ask for changes to it."""
        at = self.clock()
        refused = self._refused(user_id, "review", incident_id, at, via)
        if refused is not None:
            return refused
        try:
            pm = self.store.review_postmortem(incident_id, version, status, actor_of(user_id), at)
        except StoreError as exc:
            return Outcome(False, safe(str(exc), 300))
        inc = self.store.incident(incident_id)
        who = mention(user_id)
        if status == "approved":
            path = export_postmortem(pm, self.export_dir)
            note = (
                f":white_check_mark: Postmortem v{version} approved by {who}; exported to "
                f"`{safe(path.name, 200)}`."
            )
        else:
            note = (
                f":pencil2: {who} asked for changes to postmortem v{version}. Edit the draft "
                f"and store it with `paytriage postmortem {safe(incident_id, 20)} --from FILE`, "
                "or press *Draft postmortem* for a fresh draft from the latest evidence."
            )
        return Outcome(
            True, f"Recorded: postmortem v{version} {status.replace('_', ' ')}.", note, inc
        )


def _silence_id(target: str, duration: timedelta | None, actor: str, at: datetime) -> str:
    """The same request within a second (a double click) gets the same id."""
    length = "resolved" if duration is None else str(int(duration.total_seconds()))
    key = f"{target}|{length}|{actor}|{int(at.timestamp())}"
    return "sil-" + hashlib.sha256(key.encode()).hexdigest()[:12]


__all__ = ["NO_REASON", "Operations", "Outcome", "Via", "actor_of"]
