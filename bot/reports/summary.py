"""The incident commander's summary: one message from the store and the incident's thread.

State and duration, impact so far, what the evidence says, the timeline (detection, acks,
escalations, silences, what people wrote in the thread), who is involved and the runbook's
next steps. Pure: the caller reads the store and ``conversations.replies`` and passes them
in; nothing is guessed, and what is unknown is said to be unknown. Every string from data
is redacted and mrkdwn-escaped.
"""

from __future__ import annotations

import html
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from slack_sdk.models.blocks import (
    Block,
    ContextBlock,
    MarkdownTextObject,
    SectionBlock,
)

from paytriage.domain.lifecycle import State
from paytriage.evidence.impact import format_window
from paytriage.notify.slack.render import (
    cut,
    duration,
    evidence_lines,
    mrkdwn,
    runbook_mrkdwn,
    where,
)
from paytriage.store import Entry, StoredIncident
from paytriage.store.store import AuditEntry

MAX_THREAD_NOTES = 6
_USER = re.compile(r"^slack:([UW][A-Z0-9]{2,})$")
_NOTABLE_KINDS = {
    "opened",
    "re-opened",
    "joined",
    "acknowledge",
    "mitigate",
    "resolve",
    "reopen",
    "resolved",
    "suppressed",
    "silence",
    "escalate",
}


@dataclass(frozen=True)
class Summary:
    text: str  # the notification text
    blocks: list[Block]

    def block_dicts(self) -> list[dict[str, Any]]:
        return [b.to_dict() for b in self.blocks]

    def terminal(self) -> str:
        """The summary as plain text for a terminal: each block's text, Slack's escapes
        undone, bold markers and user mentions (``<@U1>`` -> ``@U1``) made plain."""
        parts: list[str] = []
        for block in self.block_dicts():
            texts = [block.get("text") or {}, *(block.get("elements") or [])]
            for t in texts:
                if isinstance(t, dict) and isinstance(t.get("text"), str):
                    parts.append(t["text"])
        text = "\n\n".join(parts)
        text = re.sub(r"<@([A-Z0-9]+)>", r"@\1", text)
        text = re.sub(r"(?<![\w*])\*([^*\n]+)\*(?![\w*])", r"\1", text)
        return html.unescape(text)


def _who(actor: str) -> str:
    """A Slack user as a mention, the bot and others as plain (escaped) text."""
    m = _USER.match(actor)
    return f"<@{m.group(1)}>" if m else mrkdwn(actor)


def _hm(at: datetime) -> str:
    return at.astimezone(UTC).strftime("%H:%M UTC")


def timeline_lines(
    inc: StoredIncident,
    timeline: Sequence[Entry],
    audit: Sequence[AuditEntry],
    thread: Sequence[Mapping[str, Any]],
    bot_user: str | None = None,
) -> list[str]:
    """Detection, the people's actions and what they wrote, in time order."""
    items: list[tuple[datetime, str]] = []
    if inc.onset is not None:
        items.append((inc.onset, "onset (from the signal)"))
    for e in timeline:
        if e.kind in _NOTABLE_KINDS or e.kind.startswith(("re-opened", "silence")):
            if _USER.match(e.actor):  # a person's action: "acknowledge by @alice: note"
                note = e.text.split(": ", 1)[1] if ": " in e.text else ""
                text = f"{mrkdwn(e.kind)} by {_who(e.actor)}" + (
                    f": {mrkdwn(note)}" if note else ""
                )
            else:
                text = mrkdwn(e.text)
            items.append((e.at, text))
    for a in audit:
        if a.action in ("silence", "unsilence", "escalate") or not a.allowed:
            what = a.action if a.allowed else f"refused: {a.action}"
            reason = a.data.get("reason") or a.data.get("note")
            suffix = f": {mrkdwn(reason)}" if reason else ""
            items.append((a.at, f"{mrkdwn(what)} by {_who(a.actor)}{suffix}"))
    notes = [
        m
        for m in thread[1:]
        if m.get("user") and m.get("user") != bot_user and not m.get("bot_id") and m.get("text")
    ]
    for m in notes[-MAX_THREAD_NOTES:]:
        try:
            at = datetime.fromtimestamp(float(m["ts"]), UTC)
        except (KeyError, TypeError, ValueError):
            continue
        text = cut(str(m["text"]).replace("\n", " "), 200, "…")
        items.append((at, f"<@{mrkdwn(m['user'])}> wrote: “{mrkdwn(text)}”"))
    items.sort(key=lambda x: x[0])
    return [f"• {_hm(at)} {what}" for at, what in items]


def involved(
    inc: StoredIncident,
    audit: Iterable[AuditEntry],
    thread: Iterable[Mapping[str, Any]],
    bot_user: str | None = None,
) -> list[str]:
    people: dict[str, None] = {}
    if inc.acknowledged_by:
        people[_who(inc.acknowledged_by)] = None
    for a in audit:
        if _USER.match(a.actor):
            people[_who(a.actor)] = None
    for m in thread:
        user = m.get("user")
        if isinstance(user, str) and user != bot_user and not m.get("bot_id"):
            people[f"<@{mrkdwn(user)}>"] = None
    return list(people)


def build_summary(
    inc: StoredIncident,
    timeline: Sequence[Entry],
    audit: Sequence[AuditEntry],
    thread: Sequence[Mapping[str, Any]],
    now: datetime,
    *,
    bot_user: str | None = None,
) -> Summary:
    ev = inc.evidence
    lasted = format_window(duration(inc, now))
    state = inc.state.value
    if inc.state is State.resolved:
        state = f"resolved after {lasted}"
    else:
        state = f"{state} for {lasted}"
    head = f"[{inc.severity.value.upper()}] {inc.title}"
    blocks: list[Block] = [
        SectionBlock(text=MarkdownTextObject(text=cut(f"*Summary: {mrkdwn(head)}*", 3000)))
    ]
    facts = [
        f"*State:* {mrkdwn(state)} · *Where:* {mrkdwn(where(inc.dimensions))} · `{inc.ref}`",
        f"*Acknowledged:* {_who(inc.acknowledged_by) if inc.acknowledged_by else 'not yet'}",
    ]
    sections = evidence_lines(ev)
    impact = sections.get("impact") or ["Impact: unknown (no evidence for this detector yet)."]
    blocks.append(SectionBlock(text=MarkdownTextObject(text=cut("\n".join(facts), 3000))))
    blocks.append(
        SectionBlock(
            text=MarkdownTextObject(text=cut("*Impact so far*\n" + "\n".join(impact), 3000))
        )
    )
    says = []
    for key in ("breakdown", "logs", "changes"):
        says.extend(sections.get(key, [])[:5])
    if says:
        blocks.append(
            SectionBlock(
                text=MarkdownTextObject(
                    text=cut("*What the evidence says*\n" + "\n".join(says), 3000)
                )
            )
        )
    lines = timeline_lines(inc, timeline, audit, thread, bot_user)
    if lines:
        blocks.append(
            SectionBlock(text=MarkdownTextObject(text=cut("*Timeline*\n" + "\n".join(lines), 3000)))
        )
    people = involved(inc, audit, thread, bot_user)
    blocks.append(
        SectionBlock(
            text=MarkdownTextObject(
                text=cut("*Involved:* " + (", ".join(people) if people else "nobody yet"), 3000)
            )
        )
    )
    rb = ev.runbook
    if rb is not None and rb.steps:
        numbered = "\n".join(f"{i}. {runbook_mrkdwn(s)}" for i, s in enumerate(rb.steps, 1))
        title = mrkdwn(rb.title or rb.id)
        blocks.append(
            SectionBlock(
                text=MarkdownTextObject(text=cut(f"*Next steps* ({title})\n{numbered}", 3000))
            )
        )
    else:
        why = rb.reason if rb is not None else None
        reason = mrkdwn("no runbook matched" if why is None else why)
        blocks.append(ContextBlock(elements=[MarkdownTextObject(text=f"No runbook: {reason}")]))
    text = cut(mrkdwn(f"Summary of {head}: {state}"), 3000, "…")
    return Summary(text, blocks)


__all__ = ["Summary", "build_summary", "involved", "timeline_lines"]
