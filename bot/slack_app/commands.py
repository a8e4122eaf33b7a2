"""The slash command and mention grammar, parsed into typed commands (pure).

::

    status                                   open incidents
    summary [<incident>]                     what, impact, timeline, who acked, next steps
    ack [<incident>]                         acknowledge
    resolve [<incident>] [<note …>]          resolve, with an optional note
    postmortem [<incident>]                  (drafts come with the postmortem feature)
    silence [<incident> | <detector> [<label>=<value> …]] <duration | until-resolved> [<reason …>]
    help [<command>]

``<incident>`` is an incident id (``inc-`` and 12 hex digits). Left out, it is the incident
of the thread the bot was mentioned in, or the only open incident posted in the channel
(resolved by the app, not here). ``<duration>`` is written like ``30m``, ``1h``, ``4h``,
``1h30m`` or ``2d`` (at least a minute, at most a week); ``until-resolved`` silences an
incident until it resolves. A detector silence names the detector (or ``*`` for every
detector, with at least one label) and optionally exact label values::

    /triage silence inc-3f9a1c2b7d4e 1h PSP maintenance
    /triage silence decline_spike psp=adyen country=BR 4h issuer incident, tracked in PAY-231
    /triage silence until-resolved known issue      (in the incident's thread)

Nothing here builds a query: ids, detector names, label names and values are checked
against strict patterns and anything else is refused with a short reason.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from datetime import timedelta

from paytriage.core.types import parse_duration
from paytriage.notify.slack.text import escape, plain

INCIDENT_ID = re.compile(r"^inc-[0-9a-f]{12}$")  # the key buttons carry
INCIDENT_REF = re.compile(r"^inc-(?:[0-9a-f]{12}|[1-9][0-9]{0,8})$")  # INC-42, or the key
LABEL_NAME = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]{0,63}$")
LABEL_VALUE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:/+\-]{0,63}$")
ALL_DETECTORS = "*"
UNTIL_RESOLVED = ("until-resolved", "until_resolved", "resolved")
MIN_SILENCE = timedelta(minutes=1)
MAX_SILENCE = timedelta(days=7)
MAX_TEXT = 4000  # a command longer than this is refused, not parsed
MAX_NOTE = 500  # reasons and notes are cut here

USAGE: Mapping[str, str] = {
    "status": "status",
    "summary": "summary [INC-…]",
    "ack": "ack [INC-…]",
    "mitigate": "mitigate [INC-…] [note]",
    "resolve": "resolve [INC-…] [note]",
    "declare": "declare <title> [severity=critical|error|warning] [label=value …]",
    "postmortem": "postmortem [INC-…]",
    "silence": "silence [INC-… | <detector> [label=value …]] <30m|1h|4h|until-resolved> [reason]",
    "help": "help [command]",
}
ALIASES = {"acknowledge": "ack", "?": "help"}


@dataclass(frozen=True)
class Help:
    topic: str | None = None


@dataclass(frozen=True)
class Status:
    pass


@dataclass(frozen=True)
class Summary:
    incident_id: str | None = None


@dataclass(frozen=True)
class Acknowledge:
    incident_id: str | None = None


@dataclass(frozen=True)
class Resolve:
    incident_id: str | None = None
    note: str = ""


@dataclass(frozen=True)
class Mitigate:
    """The customer impact has stopped (a fail-over, a rollback); the cause may remain."""

    incident_id: str | None = None
    note: str = ""


@dataclass(frozen=True)
class Declare:
    """An incident a person saw before any detector did. No title: the form is opened."""

    title: str = ""
    severity: str = "error"
    labels: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Postmortem:
    incident_id: str | None = None


@dataclass(frozen=True)
class Silence:
    """Silence an incident (``incident_id``; None: the implied one) or a detector
    (``detector``, ``*`` for all) on exact label values, for ``duration`` (None: until the
    incident resolves)."""

    incident_id: str | None = None
    detector: str | None = None
    labels: Mapping[str, str] = field(default_factory=dict)
    duration: timedelta | None = None
    reason: str = ""


@dataclass(frozen=True)
class Invalid:
    """Input that is not a command: ``problem`` says what was wrong (plain text)."""

    problem: str
    verb: str | None = None


Command = (
    Help
    | Status
    | Summary
    | Acknowledge
    | Mitigate
    | Resolve
    | Postmortem
    | Silence
    | Declare
    | Invalid
)
IncidentCommand = Summary | Acknowledge | Mitigate | Resolve | Postmortem
SEVERITIES = ("critical", "error", "warning")
MAX_TITLE = 150


class _Bad(ValueError):
    pass


def _show(token: str) -> str:
    """A token quoted back to the user in a problem text (plain; escaped when rendered)."""
    return repr(token if len(token) <= 40 else token[:39] + "…")


def _incident_id(token: str) -> str:
    """An incident as typed: ``INC-42`` (any case) or its key; the store finds it."""
    low = token.lower()
    if not INCIDENT_REF.fullmatch(low):
        raise _Bad(f"{_show(token)} is not an incident (INC- and its number, like INC-42)")
    return low if INCIDENT_ID.fullmatch(low) else low.upper()


def _looks_like_id(token: str) -> bool:
    return token.lower().startswith("inc-")


def _optional_id(verb: str, args: list[str]) -> str | None:
    if not args:
        return None
    if len(args) > 1:
        raise _Bad(f"{verb} takes at most one incident id, got {len(args)} words")
    return _incident_id(args[0])


def _label(token: str) -> tuple[str, str]:
    name, _, value = token.partition("=")
    if not LABEL_NAME.fullmatch(name):
        raise _Bad(f"{_show(name)} is not a label name (letters, digits and _)")
    if not LABEL_VALUE.fullmatch(value):
        raise _Bad(
            f"{_show(value)} is not a label value for {name} "
            "(letters, digits and . _ : / + -; no quotes or spaces)"
        )
    return name, value


def _duration(token: str) -> timedelta | None:
    if token.lower() in UNTIL_RESOLVED:
        return None
    try:
        value = parse_duration(token)
    except ValueError:
        raise _Bad(
            f"{_show(token)} is not a duration (like 30m, 1h, 4h) or until-resolved"
        ) from None
    if not MIN_SILENCE <= value <= MAX_SILENCE:
        raise _Bad(f"{_show(token)}: a silence lasts from 1 minute to 7 days")
    return value


def _is_duration(token: str) -> bool:
    """Written like a duration (whether or not it is within the allowed range)."""
    if token.lower() in UNTIL_RESOLVED:
        return True
    try:
        parse_duration(token)
    except ValueError:
        return False
    return True


def _note(words: list[str]) -> str:
    text = " ".join(words).strip()
    return text if len(text) <= MAX_NOTE else text[: MAX_NOTE - 1] + "…"


def _silence(args: list[str], detectors: Collection[str]) -> Silence:
    i, n = 0, len(args)
    incident_id: str | None = None
    detector: str | None = None
    labels: dict[str, str] = {}
    if i < n and _looks_like_id(args[i]):
        incident_id = _incident_id(args[i])
        i += 1
    elif i < n and (args[i] in detectors or args[i] == ALL_DETECTORS):
        detector = args[i]
        i += 1
        while i < n and "=" in args[i]:
            name, value = _label(args[i])
            if name in labels:
                raise _Bad(f"label {name} is given twice")
            labels[name] = value
            i += 1
    elif i < n and "=" in args[i]:
        raise _Bad("label filters follow a detector, e.g. silence decline_spike psp=adyen 1h")
    elif i < n and not _is_duration(args[i]):
        close = difflib.get_close_matches(args[i], list(detectors), n=1)
        hint = f" (did you mean {close[0]}?)" if close else ""
        raise _Bad(
            f"{_show(args[i])} is neither an incident id, a detector{hint} nor a duration "
            "(30m, 1h, 4h, until-resolved)"
        )
    if i < n and "=" in args[i]:
        raise _Bad("label filters go with a detector, not with an incident id")
    if i >= n:
        raise _Bad("say for how long: a duration like 30m, 1h, 4h, or until-resolved")
    duration = _duration(args[i])
    reason = _note(args[i + 1 :])
    if detector is not None and duration is None:
        raise _Bad("until-resolved needs an incident; give a detector silence a duration")
    if detector == ALL_DETECTORS and not labels:
        raise _Bad("silencing every detector needs at least one label, e.g. * psp=adyen 1h")
    return Silence(incident_id, detector, labels, duration, reason)


def _declare(args: list[str]) -> Declare:
    """``declare <title words> [severity=…] [label=value …]``: the labels may come anywhere."""
    words, severity, labels = _declare_parts(args)
    title = " ".join(words).strip()
    if len(title) > MAX_TITLE:
        raise _Bad(f"a title has at most {MAX_TITLE} characters")
    if not title and (labels or severity != "error"):
        raise _Bad("say what is wrong: declare <title> [severity=…] [label=value …]")
    return Declare(title, severity, labels)


def _declare_parts(args: list[str]) -> tuple[list[str], str, dict[str, str]]:
    """The words, the severity (``severity=`` or ``sev=``) and the labels of a declaration."""
    words: list[str] = []
    labels: dict[str, str] = {}
    severity = "error"
    for token in args:
        if "=" not in token:
            words.append(token)
            continue
        name, value = _label(token)
        if name in ("severity", "sev"):
            if value.lower() not in SEVERITIES:
                raise _Bad(f"severity is one of {', '.join(SEVERITIES)}, not {_show(value)}")
            severity = value.lower()
        elif name in labels:
            raise _Bad(f"label {name} is given twice")
        else:
            labels[name] = value
    return words, severity, labels


def declare_form(title: str, severity: str, labels: str) -> Declare | Invalid:
    """What the declare form gave: the title as written (an ``=`` in it is no label), the
    labels checked as in the command."""
    try:
        words, _, found = _declare_parts(labels.split())
        if words:
            raise _Bad("write labels as label=value, separated by spaces")
        if severity not in SEVERITIES:
            raise _Bad(f"severity is one of {', '.join(SEVERITIES)}")
        title = " ".join(plain(title).split())
        if not title:
            raise _Bad("say what is wrong in the title")
        if len(title) > MAX_TITLE:
            raise _Bad(f"a title has at most {MAX_TITLE} characters")
    except _Bad as bad:
        return Invalid(str(bad), "declare")
    return Declare(title, severity, found)


def parse(text: str, detectors: Collection[str] = ()) -> Command:
    """A command from the text after the slash command (or after the bot's mention).

    ``detectors`` are the detector names a silence may name. Never raises: malformed input
    is an :class:`Invalid` naming what was wrong.
    """
    if len(text) > MAX_TEXT:
        return Invalid(f"that is {len(text)} characters; commands are short")
    words = plain(text).split()
    if not words:
        return Help()
    verb = ALIASES.get(words[0].lower(), words[0].lower())
    args = words[1:]
    if verb not in USAGE:
        return Invalid(f"unknown command {_show(words[0])}")
    try:
        if verb == "help":
            topic = ALIASES.get(args[0].lower(), args[0].lower()) if args else None
            return Help(topic if topic in USAGE else None)
        if verb == "status":
            if args:
                raise _Bad("status takes no arguments")
            return Status()
        if verb == "summary":
            return Summary(_optional_id(verb, args))
        if verb == "ack":
            return Acknowledge(_optional_id(verb, args))
        if verb == "postmortem":
            return Postmortem(_optional_id(verb, args))
        if verb in ("resolve", "mitigate"):
            kind = Resolve if verb == "resolve" else Mitigate
            if args and _looks_like_id(args[0]):
                return kind(_incident_id(args[0]), _note(args[1:]))
            return kind(None, _note(args))
        if verb == "declare":
            return _declare(args)
        return _silence(args, detectors)
    except _Bad as bad:
        return Invalid(str(bad), verb)


def strip_mention(text: str) -> str:
    """The text of an app mention without the leading mention(s) of the bot."""
    return re.sub(r"^(?:\s*<@[A-Z0-9]+(?:\|[^>]*)?>)+", "", text).strip()


def help_text(command: str = "/triage", problem: str | None = None, verb: str | None = None) -> str:
    """Short help as mrkdwn: what was wrong (if anything), then the usage."""
    lines = []
    if problem:
        lines.append(f":warning: {escape(problem)}.")
    if verb is not None and verb in USAGE and verb != "help":
        lines.append(f"Usage: `{command} {escape(USAGE[verb])}`")
        return "\n".join(lines)
    lines.append(f"*{command}* commands (in an incident's thread the incident is implied):")
    # Escaped: Slack reads <30m|1h> as a link even in code.
    lines += [f"• `{command} {escape(usage)}`" for v, usage in USAGE.items() if v != "help"]
    lines.append("Durations: 30m, 1h, 4h, 1h30m, 2d (up to 7 days).")
    return "\n".join(lines)


__all__ = [
    "ALL_DETECTORS",
    "INCIDENT_ID",
    "SEVERITIES",
    "USAGE",
    "Acknowledge",
    "Command",
    "Declare",
    "Help",
    "IncidentCommand",
    "Invalid",
    "Mitigate",
    "Postmortem",
    "Resolve",
    "Silence",
    "Status",
    "Summary",
    "declare_form",
    "help_text",
    "parse",
    "strip_mention",
]
