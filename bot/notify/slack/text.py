"""Text for Slack: every data-derived string is redacted, then escaped for mrkdwn.

Slack reads ``<…>`` in mrkdwn as mentions, links and commands (``<!channel>``,
``<https://evil|docs>``) and ``&`` as the start of an entity, so a log line, an incident
title or a person's reason is passed through :func:`safe` before it reaches a message: card
numbers and secrets are masked (``paytriage.core.redact``) and ``&``, ``<`` and ``>`` become
``&amp;``, ``&lt;`` and ``&gt;``. Long texts are cut at Slack's limits with a note
(:func:`cut`), never rejected by Slack.

Text typed by a person arrives in Slack's own markup (``<@U123|ana>``, ``<!here>``,
``&lt;``); :func:`plain` turns it back into readable plain text before it is parsed or
stored.
"""

from __future__ import annotations

import re
from datetime import datetime, timedelta, tzinfo

from paytriage.core.redact import redact

SECTION_LIMIT = 3000  # characters of a section block's text
FALLBACK_LIMIT = 3000  # the notification text of a message with blocks

_USER_ID = re.compile(r"^[UW][A-Z0-9]{2,30}$")
_MARKUP = re.compile(r"<([^<>]*)>")


def escape(text: str) -> str:
    """Escape the three characters Slack's mrkdwn gives a meaning to."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def safe(value: object, limit: int | None = None) -> str:
    """A data-derived value as mrkdwn: redacted, escaped, and cut at ``limit`` if given."""
    text = escape(redact(str(value)))
    return text if limit is None else cut(text, limit)


def cut(text: str, limit: int, note: str = "… (cut)") -> str:
    """``text`` within ``limit`` characters, ending with ``note`` when it had to be cut.

    Never splits an escape entity (``&amp;``) in two.
    """
    if len(text) <= limit:
        return text
    keep = max(limit - len(note), 0)
    head = text[:keep]
    amp = head.rfind("&")
    if amp != -1 and ";" not in head[amp:]:
        head = head[:amp]
    return head + note[: limit - len(head)]


def _markup(match: re.Match[str]) -> str:
    inner = match.group(1)
    target, _, label = inner.partition("|")
    if target.startswith("@"):  # a user: <@U123> or <@U123|ana>
        return "@" + (label or target[1:])
    if target.startswith("#"):  # a channel: <#C123|payments>
        return "#" + (label or target[1:])
    if target.startswith("!subteam^"):  # a user group: <!subteam^S123|@oncall>
        return label or "@group"
    if target.startswith("!"):  # <!channel>, <!here>, <!everyone>, <!date^…|text>
        return label or "@" + target[1:].split("^", 1)[0]
    return label or target  # a link: <https://…|text>


def plain(slack_text: str) -> str:
    """Slack's markup in a person's text turned into plain text (mentions by name, links
    by their text, ``&lt;`` back to ``<``)."""
    text = _MARKUP.sub(_markup, slack_text)
    return text.replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&")


def user_ref(actor: str | None) -> str:
    """An actor as mrkdwn: ``slack:U123`` becomes a mention ``<@U123>``, anything else is
    shown as safe text."""
    if actor is None:
        return "nobody"
    user = actor.removeprefix("slack:")
    if actor.startswith("slack:") and _USER_ID.fullmatch(user):
        return f"<@{user}>"
    return safe(actor, 100)


def mention(user_id: str) -> str:
    """A Slack user id as a mention (ids from Slack's payloads only; others as text)."""
    return f"<@{user_id}>" if _USER_ID.fullmatch(user_id) else safe(user_id, 40)


def is_user_id(value: str) -> bool:
    return _USER_ID.fullmatch(value) is not None


def ago(delta: timedelta) -> str:
    """A duration for people: ``45 s``, ``42 min``, ``3 h 5 min``, ``2 d 4 h``."""
    seconds = max(int(delta.total_seconds()), 0)
    if seconds < 60:
        return f"{seconds} s"
    minutes = seconds // 60
    if minutes < 60:
        return f"{minutes} min"
    hours, minutes = divmod(minutes, 60)
    if hours < 24:
        return f"{hours} h {minutes} min" if minutes else f"{hours} h"
    days, hours = divmod(hours, 24)
    return f"{days} d {hours} h" if hours else f"{days} d"


def clock_time(at: datetime, tz: tzinfo, now: datetime | None = None) -> str:
    """``09:03 UTC`` today (in ``tz``), ``16 Nov 09:03 UTC`` on another day."""
    local = at.astimezone(tz)
    name = local.tzname() or ""
    if now is not None and now.astimezone(tz).date() == local.date():
        return f"{local:%H:%M} {name}".strip()
    return f"{local:%d %b %H:%M} {name}".strip()


__all__ = [
    "FALLBACK_LIMIT",
    "SECTION_LIMIT",
    "ago",
    "clock_time",
    "cut",
    "escape",
    "is_user_id",
    "mention",
    "plain",
    "safe",
    "user_ref",
]
