"""PromQL built from templates and label values, never by pasting text: label names are
checked, label values escaped as PromQL strings, templates checked for their placeholders."""

from __future__ import annotations

import re
import string
from collections.abc import Mapping, Sequence
from datetime import timedelta

from paytriage.core.types import format_duration

_LABEL_NAME = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")
_TEMPLATE_FIELDS = frozenset({"by", "window", "offset", "matchers", "and_matchers"})
_ESCAPES = {"\\": "\\\\", '"': '\\"', "\n": "\\n", "\r": "\\r", "\t": "\\t"}

# --- PromQL building --------------------------------------------------------------------------


def check_label_name(name: str) -> str:
    """``name`` when it is a valid Prometheus label name; ValueError otherwise."""
    if not isinstance(name, str) or not _LABEL_NAME.fullmatch(name):
        raise ValueError(f"not a valid label name: {name!r} (must match [a-zA-Z_][a-zA-Z0-9_]*)")
    return name


def promql_string(value: str) -> str:
    """``value`` as a double-quoted PromQL string literal.

    Backslash, double quote, newline, carriage return and tab are escaped as ``\\\\``,
    ``\\"``, ``\\n``, ``\\r``, ``\\t``; other control characters as ``\\xNN``. Nothing in the
    value can end the string or the selector.
    """
    if not isinstance(value, str):
        raise ValueError(f"label value must be a string, got {type(value).__name__}")
    out = []
    for ch in value:
        if ch in _ESCAPES:
            out.append(_ESCAPES[ch])
        elif ord(ch) < 0x20 or ord(ch) == 0x7F:
            out.append(f"\\x{ord(ch):02x}")
        else:
            out.append(ch)
    return '"' + "".join(out) + '"'


def label_matchers(dims: Mapping[str, str]) -> str:
    """Equality matchers for the incident's dimensions, sorted by label name:
    ``country="DE",psp="stripe"`` (empty for the whole platform)."""
    return ",".join(f"{check_label_name(k)}={promql_string(v)}" for k, v in sorted(dims.items()))


def check_template(template: str) -> str:
    """``template`` when it has the placeholders a breakdown query needs; ValueError otherwise.

    Placeholders: ``{by}`` (grouping labels, may be empty), ``{window}`` (the range),
    ``{offset}`` (empty or `` offset 1w``, written right after the range's ``]``) and the
    incident's matchers as ``{matchers}`` (``psp="stripe"``, for a selector with no other
    matcher: ``metric{{{matchers}}}``) or ``{and_matchers}`` (``,psp="stripe"``, after other
    matchers: ``metric{{outcome="failed"{and_matchers}}}``). Literal braces are doubled.
    """
    try:
        names = {f for _, f, _, _ in string.Formatter().parse(template) if f is not None}
    except ValueError as exc:
        raise ValueError(f"bad query template {template!r}: {exc}") from exc
    unknown = names - _TEMPLATE_FIELDS
    if unknown:
        raise ValueError(
            f"query template {template!r} has unknown placeholders {sorted(unknown)}; "
            f"use {sorted(_TEMPLATE_FIELDS)}"
        )
    missing = {"by", "window", "offset"} - names
    if missing:
        raise ValueError(f"query template {template!r} lacks {sorted(missing)}")
    if not names & {"matchers", "and_matchers"}:
        raise ValueError(
            f"query template {template!r} lacks {{matchers}} or {{and_matchers}}: "
            "it could not be restricted to the incident's slice"
        )
    return template


def build_query(
    template: str,
    *,
    by: Sequence[str],
    window: timedelta,
    dims: Mapping[str, str],
    offset: timedelta | None = None,
) -> str:
    """A query from a template (see ``check_template``) for one grouping, window and slice."""
    check_template(template)
    if window <= timedelta(0):
        raise ValueError(f"window must be positive, got {window}")
    if offset is not None and offset < timedelta(0):
        raise ValueError(f"offset must not be negative, got {offset}")
    matchers = label_matchers(dims)
    return template.format(
        by=", ".join(check_label_name(b) for b in by),
        window=format_duration(window),
        offset=f" offset {format_duration(offset)}" if offset else "",
        matchers=matchers,
        and_matchers=f",{matchers}" if matchers else "",
    )
