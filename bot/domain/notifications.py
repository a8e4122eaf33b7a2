"""The notification protocol: what the pipeline and the Slack app enqueue in the outbox and
the outbox worker delivers, in one vocabulary.

- ``Change``: how an incident changed (in one pipeline step, or by a person's action).
- ``Kind``: what an outbox message asks its receiver to do (post or edit the incident's
  message, note in its thread, trigger / acknowledge / resolve a page).
- ``Receiver`` and ``Channel``: who delivers it (Slack in a channel, PagerDuty). A channel is
  stored as text: ``slack:<channel>`` or ``pagerduty``.
- The idempotency key of each message: the same decision taken again (after a restart, or
  by another replica) maps to the same key, so it is enqueued once.
- ``mutable``: which messages a silence or a maintenance window holds back, when they are
  queued and again when they are sent.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any

from paytriage.core.types import iso

BOT = "paytriage"
"""The actor the bot's own decisions are recorded under."""


class Change(StrEnum):
    """How an incident changed, in the order its notifications are sent."""

    OPENED = "opened"
    REOPENED = "reopened"
    JOINED = "joined"  # a finding joined it
    SEVERITY = "severity"  # its severity rose
    REFRESHED = "refreshed"  # new evidence: the message is edited in place
    RESOLVED = "resolved"  # its last finding cleared
    ACTION = "action"  # a person acted on it (acknowledged, resolved, silenced...)


NEWS = frozenset({Change.JOINED, Change.SEVERITY})
"""Changes whose thread replies only bring news: rate-limited in the thread."""


class Kind(StrEnum):
    """What an outbox message asks of its receiver."""

    OPENED = "incident.opened"
    REOPENED = "incident.reopened"
    UPDATED = "incident.updated"
    REFRESHED = "incident.refreshed"
    RESOLVED = "incident.resolved"
    NOTE = "incident.note"  # a line in the incident's thread (e.g. a page that failed)
    PAGE_TRIGGER = "page.trigger"
    PAGE_ACKNOWLEDGE = "page.acknowledge"
    PAGE_RESOLVE = "page.resolve"


KIND_OF_CHANGE: Mapping[Change, Kind] = {
    Change.OPENED: Kind.OPENED,
    Change.REOPENED: Kind.REOPENED,
    Change.JOINED: Kind.UPDATED,
    Change.SEVERITY: Kind.UPDATED,
    Change.REFRESHED: Kind.REFRESHED,
    Change.RESOLVED: Kind.RESOLVED,
    Change.ACTION: Kind.UPDATED,
}


class Receiver(StrEnum):
    SLACK = "slack"
    PAGERDUTY = "pagerduty"


@dataclass(frozen=True)
class Channel:
    """Where a message goes: a receiver, and for Slack the channel (name or id)."""

    receiver: Receiver
    target: str | None = None

    def __str__(self) -> str:
        return self.receiver.value if self.target is None else f"{self.receiver}:{self.target}"

    @classmethod
    def parse(cls, text: str) -> Channel:
        """The channel of a stored message; ValueError for a receiver it does not know."""
        receiver, sep, target = text.partition(":")
        return cls(Receiver(receiver), target if sep else None)

    @classmethod
    def slack(cls, channel: str) -> Channel:
        return cls(Receiver.SLACK, channel)


PAGERDUTY = Channel(Receiver.PAGERDUTY)


@dataclass(frozen=True)
class Outgoing:
    """A notification to send: ``key`` makes it idempotent (enqueued at most once)."""

    key: str
    channel: str
    kind: str
    payload: Mapping[str, Any]
    incident_id: str | None = None


# -- the messages, with their keys -----------------------------------------------------------


def change_message(
    incident_id: str,
    change: Change,
    channel: Channel,
    *,
    title: str,
    severity: str,
    state: str,
    at: datetime,
    reopened: int,
) -> Outgoing:
    """The incident's message for a change the pipeline saw. Its key: one "opened" per
    incident, one "reopened"/"resolved" per re-opening, others one per step."""
    if change is Change.OPENED:
        key = f"{incident_id}:opened"
    elif change in (Change.REOPENED, Change.RESOLVED):
        key = f"{incident_id}:{change}:{reopened}"
    else:
        key = f"{incident_id}:{change}:{iso(at)}"
    return Outgoing(
        key=key,
        channel=str(channel),
        kind=KIND_OF_CHANGE[change],
        incident_id=incident_id,
        payload={
            "incident_id": incident_id,
            "change": change.value,
            "title": title,
            "severity": severity,
            "state": state,
            "at": iso(at),
        },
    )


def action_message(
    incident_id: str,
    action: str,
    channel: Channel,
    *,
    by: str,
    title: str,
    severity: str,
    state: str,
    at: datetime,
    extra: Mapping[str, Any] | None = None,
) -> Outgoing:
    """The incident's message edited after a person's action (the thread is told by the
    Slack app itself). Not a detector change: "resolved" would read "every finding cleared"."""
    return Outgoing(
        key=f"{incident_id}:action:{action}:{iso(at)}",
        channel=str(channel),
        kind=Kind.UPDATED,
        incident_id=incident_id,
        payload={
            "incident_id": incident_id,
            "change": Change.ACTION.value,
            "action": action,
            "by": by,
            "title": title,
            "severity": severity,
            "state": state,
            "at": iso(at),
            **(extra or {}),
        },
    )


PAGE_KINDS: Mapping[str, Kind] = {
    "trigger": Kind.PAGE_TRIGGER,
    "acknowledge": Kind.PAGE_ACKNOWLEDGE,
    "resolve": Kind.PAGE_RESOLVE,
}
PAGE_ACTIONS: Mapping[str, str] = {kind.value: action for action, kind in PAGE_KINDS.items()}
"""The PagerDuty event action of a page kind (the inverse of ``PAGE_KINDS``)."""
_KINDS = frozenset(Kind)


def page_message(
    incident_id: str,
    action: str,
    *,
    reopened: int,
    at: datetime | None = None,
    by: str | None = None,
) -> Outgoing:
    """A PagerDuty event for the incident (its dedup key is the incident's id): one per
    action and re-opening, whoever decided it (the pipeline, or a person in Slack)."""
    payload: dict[str, Any] = {"incident_id": incident_id}
    if at is not None:
        payload["at"] = iso(at)
    if by is not None:
        payload["by"] = by
    return Outgoing(
        key=f"{incident_id}:pd:{action}:{reopened}",
        channel=str(PAGERDUTY),
        kind=PAGE_KINDS[action],
        incident_id=incident_id,
        payload=payload,
    )


def escalation_message(incident_id: str, *, by: str) -> Outgoing:
    """A page a person asked for (Escalate): at most one per incident."""
    return Outgoing(
        key=f"{incident_id}:escalate",
        channel=str(PAGERDUTY),
        kind=Kind.PAGE_TRIGGER,
        incident_id=incident_id,
        payload={"incident_id": incident_id, "by": by},
    )


def note_message(key: str, incident_id: str, channel: Channel, text: str) -> Outgoing:
    """A line in the incident's Slack thread, under its own key."""
    return Outgoing(
        key=key,
        channel=str(channel),
        kind=Kind.NOTE,
        incident_id=incident_id,
        payload={"incident_id": incident_id, "text": text},
    )


def mutable(kind: str, payload: Mapping[str, Any]) -> bool:
    """Whether a silence or maintenance window holds the message back: what the bot says
    of its own accord about an incident (its message, a page it triggers). A person's
    action, an escalation, a note and a page's resolution (PagerDuty would keep paging
    otherwise) always go out."""
    if "by" in payload or kind in (Kind.NOTE, Kind.PAGE_RESOLVE, Kind.PAGE_ACKNOWLEDGE):
        return False
    return kind in _KINDS


__all__ = [
    "BOT",
    "KIND_OF_CHANGE",
    "NEWS",
    "PAGERDUTY",
    "PAGE_ACTIONS",
    "PAGE_KINDS",
    "Change",
    "Channel",
    "Kind",
    "Outgoing",
    "Receiver",
    "action_message",
    "change_message",
    "escalation_message",
    "mutable",
    "note_message",
    "page_message",
]
