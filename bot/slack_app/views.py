"""What the Slack app shows: status and App Home (pure, Block Kit; the incident summary is
``paytriage.reports.summary``).

Blocks are built with ``slack_sdk.models.blocks`` so Slack's limits are checked before
anything is sent; every data-derived string goes through ``mrkdwn.safe`` (redacted and
escaped) and long lists are cut with a note saying how much was left out.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta, tzinfo
from typing import Any

from slack_sdk.models.blocks import (
    Block,
    ContextBlock,
    DividerBlock,
    HeaderBlock,
    MarkdownTextObject,
    PlainTextObject,
    SectionBlock,
)
from slack_sdk.models.views import View

from paytriage.domain.findings import slice_text
from paytriage.domain.lifecycle import Silence, State
from paytriage.notify.slack.text import (
    SECTION_LIMIT,
    ago,
    clock_time,
    cut,
    safe,
    user_ref,
)
from paytriage.store import StoredIncident

MESSAGE_BLOCKS = 50
VIEW_BLOCKS = 100
_ACTOR = re.compile(r"\bslack:([UW][A-Z0-9]{2,30})\b")


@dataclass(frozen=True)
class Message:
    """A reply: the notification text and its blocks."""

    text: str
    blocks: list[Block]

    def block_dicts(self) -> list[dict[str, Any]]:
        return [b.to_dict() for b in self.blocks]


def section(text: str) -> SectionBlock:
    return SectionBlock(text=MarkdownTextObject(text=cut(text, SECTION_LIMIT)))


def context(text: str) -> ContextBlock:
    return ContextBlock(elements=[MarkdownTextObject(text=cut(text, SECTION_LIMIT))])


def pack(lines: Sequence[str], max_blocks: int, title: str = "", what: str = "") -> list[Block]:
    """Lines as sections of at most ``SECTION_LIMIT`` characters and ``max_blocks`` blocks;
    what does not fit is counted in a last line (``… and 12 more incidents``)."""
    blocks: list[Block] = []
    current = title
    for i, line in enumerate(lines):
        line = cut(line, SECTION_LIMIT - 100)
        candidate = f"{current}\n{line}" if current else line
        if len(candidate) <= SECTION_LIMIT - 60:
            current = candidate
            continue
        if len(blocks) + 1 >= max_blocks:
            current += f"\n… and {len(lines) - i} more {what}".rstrip()
            break
        blocks.append(section(current))
        current = line
    if current:
        blocks.append(section(current))
    return blocks


def with_mentions(escaped: str) -> str:
    """Escaped text with ``slack:U123`` actors shown as mentions (the ids are checked)."""
    return _ACTOR.sub(lambda m: f"<@{m.group(1)}>", escaped)


def state_text(inc: StoredIncident, now: datetime, tz: tzinfo) -> str:
    if inc.state is State.resolved and inc.resolved_at is not None:
        return (
            f"resolved at {clock_time(inc.resolved_at, tz, now)} "
            f"after {ago(inc.resolved_at - inc.opened_at)}"
        )
    text = f"{inc.state.value}, open for {ago(now - inc.opened_at)}"
    if inc.acknowledged_by is not None:
        text += f", acknowledged by {user_ref(inc.acknowledged_by)}"
        if inc.acknowledged_at is not None:
            text += f" at {clock_time(inc.acknowledged_at, tz, now)}"
    return text


def dims_text(dimensions: Mapping[str, str]) -> str:
    return slice_text(dimensions)


def incident_line(inc: StoredIncident, now: datetime, tz: tzinfo) -> str:
    return (
        f"• `{safe(inc.ref, 20)}` *{safe(inc.severity.value, 10)}* {safe(inc.title, 300)} "
        f"({safe(dims_text(inc.dimensions), 200)}): {state_text(inc, now, tz)}"
    )


def status_message(
    incidents: Sequence[StoredIncident], now: datetime, tz: tzinfo, command: str = "/triage"
) -> Message:
    if not incidents:
        text = "No open incidents."
        return Message(text, [section(f":white_check_mark: {text}")])
    n = len(incidents)
    title = f"*{n} open incident{'s' if n != 1 else ''}*"
    blocks = pack(
        [incident_line(i, now, tz) for i in incidents], MESSAGE_BLOCKS - 1, title, "incidents"
    )
    blocks.append(context(f"`{command} summary INC-…` for one of them"))
    return Message(f"{n} open incident(s)", blocks)


def silence_line(s: Silence, now: datetime, tz: tzinfo) -> str:
    what = f"incident `{safe(s.incident_id, 20)}`" if s.incident_id and not s.expires_at else ""
    if not what:
        det = f"`{safe(s.detector, 60)}`" if s.detector else "every detector"
        what = f"{det} on {safe(dims_text(s.dimensions), 200)}"
    if s.expires_at is not None:
        until = f"until {clock_time(s.expires_at, tz, now)} ({ago(s.expires_at - now)} left)"
    else:
        until = "until the incident resolves"
    return f"• {what} {until}, by {user_ref(s.created_by)}: {safe(s.reason, 300)}"


def health_lines(snapshot: Mapping[str, Mapping[str, Any]], now: datetime, tz: tzinfo) -> list[str]:
    out = []
    for detector, h in sorted(snapshot.items()):
        last = h.get("last_run")
        run = (
            f"last run {clock_time(last, tz, now)} ({ago(now - last)} ago)"
            if isinstance(last, datetime)
            else "not run yet"
        )
        failures = int(h.get("failures") or 0)
        failed = f", {failures} failed run{'s' if failures != 1 else ''} so far" if failures else ""
        err = h.get("error")
        state = f":x: failing: {safe(err, 300)}" if err else ":white_check_mark: ok"
        newest = h.get("newest_sample")
        fresh = ""
        if isinstance(newest, datetime):
            stale = ":warning: " if now - newest > timedelta(minutes=5) else ""
            fresh = f"; {stale}newest data {ago(now - newest)} old"
        elif "newest_sample" in h and isinstance(last, datetime):
            fresh = "; :warning: no data"
        out.append(f"• `{safe(detector, 60)}` {state}; {run}{failed}{fresh}")
    return out


def source_lines(sources: Mapping[str, Mapping[str, Any]], now: datetime, tz: tzinfo) -> list[str]:
    """Data freshness: each source's last good probe (``paytriage.app.service.SourceHealth``)."""
    out = []
    for name, h in sorted(sources.items()):
        last = h.get("last_ok")
        good = (
            f"last good probe {clock_time(last, tz, now)} ({ago(now - last)} ago)"
            if isinstance(last, datetime)
            else "no good probe yet"
        )
        err = h.get("error")
        state = f":x: failing: {safe(err, 300)}" if err else ":white_check_mark: ok"
        out.append(f"• `{safe(name, 60)}` {state}; {good}")
    return out


def home_view(
    incidents: Sequence[StoredIncident],
    silences: Sequence[Silence],
    health: Mapping[str, Mapping[str, Any]] | None,
    now: datetime,
    tz: tzinfo,
    sources: Mapping[str, Mapping[str, Any]] | None = None,
) -> View:
    """App Home: open incidents, active silences, detector health and, when given, the
    data sources' freshness."""
    blocks: list[Block] = [HeaderBlock(text=PlainTextObject(text="paytriage"))]
    n = len(incidents)
    if incidents:
        blocks += pack(
            [incident_line(i, now, tz) for i in incidents],
            30,
            f"*Open incidents ({n})*",
            "incidents",
        )
    else:
        blocks.append(section("*Open incidents*\n:white_check_mark: None."))
    blocks.append(DividerBlock())
    if silences:
        blocks += pack(
            [silence_line(s, now, tz) for s in silences],
            20,
            f"*Active silences ({len(silences)})*",
            "silences",
        )
    else:
        blocks.append(section("*Active silences*\nNone."))
    blocks.append(DividerBlock())
    if health is None:
        blocks.append(section("*Detector health*\nNot available in this process."))
    elif not health:
        blocks.append(section("*Detector health*\nNo detector has run yet."))
    else:
        blocks += pack(health_lines(health, now, tz), 20, "*Detector health*", "detectors")
    if sources:
        blocks += pack(source_lines(sources, now, tz), 10, "*Data sources*", "sources")
    blocks.append(context(f"Updated {clock_time(now, tz, now)}."))
    return View(type="home", blocks=blocks[:VIEW_BLOCKS])


__all__ = [
    "Message",
    "health_lines",
    "home_view",
    "incident_line",
    "pack",
    "section",
    "silence_line",
    "source_lines",
    "status_message",
]
