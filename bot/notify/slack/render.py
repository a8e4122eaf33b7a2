"""The incident message in Slack, as Block Kit: pure functions over a stored incident.

One root message per incident answers "what, where, since when, how bad, why, what do I
do": title with severity and state, the slice, onset and detection, impact, the ranked
breakdown, the log patterns that rose (redacted, escaped), recent changes, concurrent
findings, the runbook as a button, the actions, and links to the queries behind the
numbers. Blocks are built with ``slack_sdk.models.blocks`` so Slack's limits are checked
before anything is sent; long text is cut with a note instead of being refused by Slack.
The runbook itself is the thread's first reply (:func:`runbook_blocks`): its steps by
heading, the queries they refer to (filled in for the incident), the escalation, and the
whole runbook's link.

Everything that came from data passes :func:`mrkdwn` (redacted, then ``&``, ``<``, ``>``
escaped), so a log line can never mention ``@channel`` or forge a link.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import quote, urlencode

from slack_sdk.models.blocks import (
    ActionsBlock,
    Block,
    ButtonElement,
    ContextBlock,
    DividerBlock,
    HeaderBlock,
    MarkdownTextObject,
    Option,
    SectionBlock,
    StaticSelectElement,
)

from paytriage.core.redact import redact
from paytriage.core.types import iso
from paytriage.domain.evidence import Evidence, RunbookGroup, RunbookQuery, RunbookSection
from paytriage.domain.findings import Severity, slice_text
from paytriage.domain.lifecycle import State
from paytriage.evidence.impact import format_measure, format_window
from paytriage.notify.slack import ids
from paytriage.notify.slack.text import cut as cut_text
from paytriage.notify.slack.text import safe
from paytriage.store import StoredIncident

MAX_SECTION = 3000  # characters of mrkdwn in a section
MAX_HEADER = 150
MAX_BLOCKS = 50
MAX_FALLBACK = 3000  # the notification text; Slack allows far more, people read far less
CUT_NOTE = "… (cut; the rest is in the thread and the store)"

SEVERITY_ICON = {
    Severity.critical: ":red_circle:",
    Severity.error: ":large_orange_circle:",
    Severity.warning: ":large_yellow_circle:",
    Severity.info: ":large_blue_circle:",
}
STATE_ICON = {
    State.open: ":rotating_light:",
    State.acknowledged: ":eyes:",
    State.mitigated: ":adhesive_bandage:",
    State.resolved: ":white_check_mark:",
}


def mrkdwn(text: object) -> str:
    """Data made safe for mrkdwn: redacted, then ``&``, ``<``, ``>`` escaped."""
    return safe(text)


def plain(text: object, limit: int) -> str:
    """Redacted text for plain_text fields (Slack shows it literally), cut to ``limit``."""
    return cut(redact(str(text)), limit, "…")


def cut(text: str, limit: int, note: str = CUT_NOTE) -> str:
    """Within ``limit`` characters, ending with ``note`` when cut (never inside an entity)."""
    return cut_text(text, limit, note)


def where(dimensions: Mapping[str, str]) -> str:
    return slice_text(dimensions)


def _ts(at: datetime) -> str:
    """A time people read in any time zone: Slack's date token (with a UTC fallback)."""
    epoch = int(at.timestamp())
    return f"<!date^{epoch}^{{time}} ({{date_short}})|{at:%Y-%m-%d %H:%M} UTC>"


def duration(inc: StoredIncident, now: datetime) -> timedelta:
    start = inc.onset or inc.opened_at
    end = inc.resolved_at or now
    return max(end - start, timedelta(0))


def title_line(inc: StoredIncident, now: datetime) -> str:
    state = inc.state.value.upper()
    if inc.state is State.resolved:
        state = f"RESOLVED after {format_window(duration(inc, now))}"
    return f"{inc.ref} [{inc.severity.value.upper()}] [{state}] {inc.title}"


def fallback_text(inc: StoredIncident, now: datetime) -> str:
    """The notification text (and what screen readers say)."""
    return cut(mrkdwn(f"{title_line(inc, now)} ({where(inc.dimensions)})"), MAX_FALLBACK, "…")


def _section(lines: Iterable[str]) -> SectionBlock | None:
    body = "\n".join(lines).strip()
    if not body:
        return None
    return SectionBlock(text=MarkdownTextObject(text=cut(body, MAX_SECTION)))


def evidence_lines(ev: Evidence, max_patterns: int = 3) -> dict[str, list[str]]:
    """The evidence as mrkdwn lines per section (all data escaped)."""
    out: dict[str, list[str]] = {}
    if ev.impact is not None and ev.impact.lines:
        out["impact"] = [mrkdwn(x) for x in ev.impact.lines]
    lines = []
    if (b := ev.breakdown) is not None:
        for d in b.dimensions:
            if d.missing:
                lines.append(f"By {mrkdwn(d.dimension)}: unavailable ({mrkdwn(d.missing)})")
                continue
            heading = f" ({mrkdwn(d.heading)})" if d.heading else ""
            if d.top:
                lines.append(f"*By {mrkdwn(d.dimension)}*{heading}")
                lines.extend(f"• {mrkdwn(c.text)}" for c in d.top)
            elif d.values:
                lines.append(f"By {mrkdwn(d.dimension)}: {mrkdwn(d.heading)}")
        if b.lines:
            lines.insert(0, mrkdwn(b.lines[0]))
    if lines:
        out["breakdown"] = lines
    lines = []
    if (logs := ev.logs) is not None:
        if logs.missing:
            lines.append(f"Logs: {mrkdwn(logs.missing)}")
        for p in logs.patterns[:max_patterns]:
            rise = "new" if not p.count_before else f"{p.count_before} before"
            code = f" `{mrkdwn(p.error_code)}`" if p.error_code else ""
            # In code: Slack reads the <*> of a template as bold markers otherwise.
            template = mrkdwn(p.template).replace("`", "'")
            lines.append(f"• *{p.count_now}×* ({rise}){code} `{template}`")
            if p.example:
                lines.append(f"    e.g. _{mrkdwn(cut(p.example, 300, '…'))}_")
        codes = [c for c in logs.error_codes[:5] if c.code]
        if codes:
            lines.append(
                "Error codes: "
                + ", ".join(f"`{mrkdwn(c.code)}` {c.count_before}→{c.count_now}" for c in codes)
            )
    if lines:
        out["logs"] = lines
    lines = []
    if (ch := ev.changes) is not None:
        if ch.missing:
            lines.append(f"Changes: {mrkdwn(ch.missing)}")
        for c in ch.items[:3]:
            names = f"; names {mrkdwn(', '.join(c.mentions))}" if c.mentions else ""
            lines.append(
                f"• {mrkdwn(c.kind)} *{mrkdwn(c.service)}* "
                f"{mrkdwn(c.version)} — {mrkdwn(c.description)} ({c.when}{names})"
            )
    if lines:
        out["changes"] = lines
    conc = [
        f"• {mrkdwn(c.detector)} on {mrkdwn(where(c.dimensions))}: {mrkdwn(c.title)}"
        for c in ev.concurrent[:3]
    ]
    if conc:
        out["concurrent"] = conc
    return out


def prometheus_link(
    graph_url: str, query: str, start: datetime | None, end: datetime | None
) -> str:
    """A Prometheus graph URL for a query (the expression is URL-encoded, never interpreted)."""
    rng = "1h"
    if start is not None and end is not None:
        rng = f"{max(5, int((end - start).total_seconds() // 60) + 30)}m"
    params = {"g0.expr": query, "g0.tab": "0", "g0.range_input": rng}
    if end is not None:
        params["g0.end_input"] = end.strftime("%Y-%m-%d %H:%M:%S")
    return f"{graph_url.rstrip('/')}/graph?{urlencode(params, quote_via=quote)}"


def query_links(
    ev: Evidence, graph_url: str | None, dashboards_url: str | None, limit: int = 4
) -> list[str]:
    """mrkdwn links to the queries behind the main numbers."""
    out = []
    if graph_url:
        seen = set()
        for f in ev.findings:
            for q in f.queries:
                if q.source != "prometheus" or q.query in seen:
                    continue
                seen.add(q.query)
                url = prometheus_link(graph_url, q.query, q.start, q.end)
                out.append(f"<{url}|PromQL {len(seen)}>")
    if dashboards_url and ev.logs is not None and ev.logs.window is not None:
        a, b = (iso(t) for t in ev.logs.window)
        params = urlencode({"_g": f"(time:(from:'{a}',to:'{b}'))"}, quote_via=quote)
        out.append(f"<{dashboards_url.rstrip('/')}/app/data-explorer/discover?{params}|Logs>")
    return out[:limit]


def action_elements(inc: StoredIncident) -> list[Any]:
    """The buttons: runbook first, then what people do with the incident."""
    elements: list[Any] = []
    rb = inc.evidence.runbook
    if rb is not None and rb.link is not None and rb.link.startswith(("http://", "https://")):
        elements.append(
            ButtonElement(
                text=plain(f"Runbook: {rb.title or rb.id}", 75),
                action_id=ids.RUNBOOK,
                url=rb.link,
                value=inc.id,
            )
        )
    if inc.state is not State.resolved:
        if inc.state is State.open:
            elements.append(
                ButtonElement(text="Acknowledge", action_id=ids.ACK, value=inc.id, style="primary")
            )
        if inc.state is not State.mitigated:
            elements.append(ButtonElement(text="Mitigated", action_id=ids.MITIGATE, value=inc.id))
        elements.append(ButtonElement(text="Escalate", action_id=ids.ESCALATE, value=inc.id))
        elements.append(
            StaticSelectElement(
                placeholder="Silence…",
                action_id=ids.SILENCE,
                options=[Option(value=v, label=t) for v, t in ids.SILENCE_OPTIONS.items()],
            )
        )
        elements.append(
            ButtonElement(text="Resolve", action_id=ids.RESOLVE, value=inc.id, style="danger")
        )
    elements.append(ButtonElement(text="Draft postmortem", action_id=ids.POSTMORTEM, value=inc.id))
    return elements


def now_line(inc: StoredIncident) -> str | None:
    """How it is now against how bad it got: the title keeps the figures it was paged with
    (its identity); this line follows the latest reading. ``back within its expected range``
    while the incident is still open says it is recovering."""
    got = inc.lead()
    if got is None or inc.data_problem:
        return None
    f, worst = got
    unit = f.unit
    low, high = f.band
    now = f"*Now:* {format_measure(f.observed, unit)} (expected {format_measure(f.expected, unit)})"
    within = low <= f.observed <= high if math.isfinite(f.observed) else False
    if within and inc.state is not State.resolved:
        now += " · back within its expected range: recovering"
    if worst is not None:
        try:
            at = datetime.fromisoformat(str(worst["at"]).replace("Z", "+00:00"))
            value = float(worst["observed"])
        except (KeyError, TypeError, ValueError):
            return now
        if value != f.observed:
            now += f" · *Worst:* {format_measure(value, unit)} at {_ts(at)}"
    return now


def incident_blocks(
    inc: StoredIncident,
    now: datetime,
    *,
    graph_url: str | None = None,
    dashboards_url: str | None = None,
) -> list[dict[str, Any]]:
    """The root message's blocks (as dicts, validated by the slack_sdk models)."""
    ev = inc.evidence
    icon = STATE_ICON[inc.state] if inc.state is State.resolved else SEVERITY_ICON[inc.severity]
    blocks: list[Block] = [HeaderBlock(text=plain(f"{title_line(inc, now)}", MAX_HEADER))]
    onset = inc.onset or inc.opened_at
    facts = [
        f"{icon} *{inc.severity.value.upper()}* · {STATE_ICON[inc.state]} *{inc.state.value}*"
        f" · `{inc.ref}`",
        f"*Where:* {mrkdwn(where(inc.dimensions))} · *Detectors:* "
        f"{mrkdwn(', '.join(inc.detectors))}",
        f"*Since:* {_ts(onset)} ({format_window(duration(inc, now))})"
        f" · *Detected:* {_ts(inc.opened_at)}"
        + (f" · *Impact ended:* {_ts(inc.impact_ended_at)}" if inc.impact_ended_at else "")
        + (f" · *Resolved:* {_ts(inc.resolved_at)}" if inc.resolved_at else ""),
    ]
    if (reading := now_line(inc)) is not None:
        facts.append(reading)
    if inc.acknowledged_by:
        facts.append(f"*Acknowledged by:* {mrkdwn(inc.acknowledged_by)}")
    if inc.data_problem:
        facts.append(
            "_Data problem: metrics are missing or stale; this is not a payment incident._"
        )
    blocks.append(SectionBlock(text=MarkdownTextObject(text=cut("\n".join(facts), MAX_SECTION))))
    sections = evidence_lines(ev)
    for key, label in (
        ("impact", "Impact"),
        ("breakdown", "Where it comes from"),
        ("logs", "Logs that rose"),
        ("changes", "Changes near the onset (likeliest cause first)"),
        ("concurrent", "Also happening"),
    ):
        if key in sections:
            block = _section([f"*{label}*", *sections[key]])
            if block is not None:
                blocks.append(block)
    if ev.missing:
        blocks.append(
            ContextBlock(elements=[MarkdownTextObject(text=f"Evidence: {mrkdwn(ev.missing)}")])
        )
    if (runbook := runbook_context(ev)) is not None:
        blocks.append(runbook)
    blocks.append(DividerBlock())
    blocks.append(ActionsBlock(block_id=ids.ACTIONS_BLOCK + inc.id, elements=action_elements(inc)))
    links = query_links(ev, graph_url, dashboards_url)
    if links:
        blocks.append(
            ContextBlock(
                elements=[MarkdownTextObject(text=cut("Queries: " + " · ".join(links), 2000))]
            )
        )
    return [b.to_dict() for b in blocks[:MAX_BLOCKS]]


# -- the runbook, in the incident's thread ------------------------------------------------------

RUNBOOK_GROUP_BLOCKS = 6  # sections of one heading's steps at most
RUNBOOK_QUERY_BLOCKS = 8  # sections of queries at most
RUNBOOK_ESCALATION_BLOCKS = 2
# An inline code span, or an inline link with its text and target (Markdown, from runbooks).
_MD_TOKEN = re.compile(
    r"(?P<code>(?P<ticks>`+)(?:(?!(?P=ticks)).)+?(?P=ticks))"
    r"|(?P<link>!?\[(?P<text>(?:[^\[\]]|\[[^\]]*\])*)\]"
    r"\(\s*(?P<target><[^>]*>|(?:[^()\s]|\([^()\s]*\))+)(?:\s+(?:\"[^\"]*\"|'[^']*'|\([^)]*\)))?\s*\))"
)
_MD_BOLD = re.compile(r"\*\*(?=\S)(.+?)(?<=\S)\*\*|__(?=\S)(.+?)(?<=\S)__")
_MD_ITALIC = re.compile(r"(?<![*\w])\*(?=[^\s*])([^*]+?)(?<=[^\s*])\*(?![*\w])")
_QUERIES_BELOW = re.compile(r"\bbelow\)", re.IGNORECASE)  # "(PromQL below)"
_URL_SAFE = "!#$%&'()*+,/:;=?@[]~-._"


def slack_url(url: str) -> str | None:
    """An http(s) or mailto URL for a Slack ``<url|text>`` link (characters that would end
    the link percent-encoded, ``&`` escaped); None for any other scheme."""
    url = url.strip()
    if not url.lower().startswith(("http://", "https://", "mailto:")):
        return None
    return quote(url, safe=_URL_SAFE).replace("&", "&amp;")


def _md_prose(text: str) -> str:
    """Markdown prose (no code, no links) as mrkdwn: escaped, ``**bold**`` to ``*bold*``,
    ``*italic*`` to ``_italic_``."""
    out = _MD_BOLD.sub(lambda m: "\0" + (m.group(1) or m.group(2)) + "\0", mrkdwn(text))
    return _MD_ITALIC.sub(r"_\1_", out).replace("\0", "*")


def runbook_mrkdwn(text: str) -> str:
    """A runbook's Markdown (a step, an escalation line) as Slack mrkdwn: links become
    ``<url|text>`` (http, https and mailto only; any other link, such as a relative one
    stored before links were resolved, becomes its text), code spans stay code, emphasis
    is Slack's, and everything is redacted and escaped (``&``, ``<``, ``>``)."""
    out: list[str] = []
    pos = 0
    for m in _MD_TOKEN.finditer(text):
        out.append(_md_prose(text[pos : m.start()]))
        if m.group("code"):
            ticks = len(m.group("ticks"))
            inner = m.group(0)[ticks:-ticks].strip().replace("`", "'")
            out.append(f"`{mrkdwn(inner)}`")
        else:
            label = _md_prose(m.group("text").replace("`", "")).strip()
            url = slack_url(m.group("target").strip("<>"))
            out.append(f"<{url}|{label or url}>" if url else label)
        pos = m.end()
    out.append(_md_prose(text[pos:]))
    return "".join(out)


def runbook_url(rb: RunbookSection) -> str | None:
    """The published runbook's http(s) URL, or None (no ``runbooks.base_url``)."""
    link = rb.link or ""
    return link if link.startswith(("http://", "https://")) else None


def runbook_file(rb: RunbookSection) -> str:
    """Where the runbook lives when it is not published: its file, as mrkdwn code."""
    return f"`{mrkdwn(rb.link or rb.name or f'{rb.id}.md')}`"


def runbook_context(ev: Evidence) -> ContextBlock | None:
    """The root message's line on the runbook when no button can link it: none matched
    (and why), or the runbook's file (its steps are in the thread)."""
    rb = ev.runbook
    if rb is None:
        return None
    if not rb.id:
        text = f"No runbook: {mrkdwn(rb.reason or 'none applies')}"
    elif runbook_url(rb) is None:
        text = (
            f":book: Runbook: *{mrkdwn(rb.title or rb.id)}* ({runbook_file(rb)}): steps, "
            "queries and escalation in the thread"
        )
    else:
        return None  # the button links it
    return ContextBlock(elements=[MarkdownTextObject(text=cut(text, 2000, "…"))])


def _packed(lines: list[str], max_blocks: int, more: str) -> list[SectionBlock]:
    """Sections holding ``lines`` in order, each within Slack's limit (a line too long for
    one is cut), at most ``max_blocks``: the last then says how many ``more`` are left."""
    texts: list[list[str]] = []
    size = 0
    for line in lines:
        line = cut(line, MAX_SECTION - 200, "… (cut; the whole runbook has it all)")
        if texts and size + 1 + len(line) <= MAX_SECTION:
            texts[-1].append(line)
            size += 1 + len(line)
        else:
            texts.append([line])
            size = len(line)
    if len(texts) > max_blocks:
        left = sum(len(t) for t in texts[max_blocks - 1 :])
        note = f"_… {left} more {more} in the whole runbook (link at the end)._"
        texts = [*texts[: max_blocks - 1], [note]]
    return [SectionBlock(text=MarkdownTextObject(text="\n".join(t))) for t in texts]


def _query_text(q: RunbookQuery) -> str:
    """One query as mrkdwn: what it is, the code block, and why a placeholder is left; the
    code is cut so that the whole stays within a section (its fence closed)."""
    notes = cut("".join(f"\n_{mrkdwn(n)}_" for n in q.notes), 600, "…_")
    text = cut(runbook_mrkdwn(q.text), 1000, "…") if q.text else ""
    if not q.code:
        return text + notes
    room = MAX_SECTION - 300 - len(text) - len(notes)
    code = cut(mrkdwn(q.code).replace("```", "`\u200b``"), room, "\n… (cut)")
    return f"{text}\n```\n{code}\n```{notes}".lstrip("\n")


def _runbook_queries(rb: RunbookSection) -> list[SectionBlock]:
    """The runbook's queries (their placeholders were filled in for the incident, with
    plain label values only, when the runbook was matched)."""
    if not rb.queries:
        return []
    lines = ["*Queries*", *(t for q in rb.queries if (t := _query_text(q)))]
    return _packed(lines, RUNBOOK_QUERY_BLOCKS, "queries")


def runbook_fallback(inc: StoredIncident) -> str:
    """The notification text of the runbook's thread message."""
    rb = inc.evidence.runbook
    title = (rb.title or rb.id) if rb is not None else None
    return cut(f"Next steps (runbook): {mrkdwn(title)}", MAX_FALLBACK, "…") if title else ""


def runbook_blocks(inc: StoredIncident) -> list[dict[str, Any]]:
    """The runbook in the incident's thread, as Block Kit within Slack's limits: title and
    owner; the steps under their headings (First 5 minutes, Mitigate, Money follow-ups,
    Verify recovery), the queries filled in for the incident right after the steps that
    refer to them; the escalation; and last, the whole runbook's link (or, with no
    ``runbooks.base_url``, its file). When it all cannot fit in 50 blocks, whole headings
    are left out from the end with a note saying which, never the escalation or the link.
    Empty when no runbook applies (the root message says why)."""
    rb = inc.evidence.runbook
    if rb is None or not rb.id:
        return []
    url = runbook_url(rb)
    title = mrkdwn(rb.title or rb.id)
    head: list[Block] = [
        SectionBlock(
            text=MarkdownTextObject(
                text=cut(f":book: *Runbook: {f'<{url}|{title}>' if url else title}*", MAX_SECTION)
            )
        )
    ]
    about = [
        f"Owner: {mrkdwn(rb.owner)}" if rb.owner else "",
        f"Matched: {mrkdwn(rb.reason)}" if rb.reason else "",
    ]
    if any(about):
        text = cut(" · ".join(a for a in about if a), 2000, "…")
        head.append(ContextBlock(elements=[MarkdownTextObject(text=text)]))
    groups = rb.groups or ((RunbookGroup("Steps", rb.steps),) if rb.steps else ())
    queries = _runbook_queries(rb)

    def step(text: str) -> str:
        return runbook_mrkdwn(text if queries else _QUERIES_BELOW.sub("in the runbook)", text))

    units: list[tuple[str, list[Block]]] = []
    shown = False
    for g in groups:
        lines = [f"*{mrkdwn(g.heading or 'Steps')}*"]
        lines += [f"{i}. {step(s)}" for i, s in enumerate(g.steps, 1)]
        unit: list[Block] = list(_packed(lines, RUNBOOK_GROUP_BLOCKS, "steps"))
        if g.queries and queries and not shown:
            unit += queries
            shown = True
        units.append((g.heading or "Steps", unit))
    if queries and not shown:
        units.append(("Queries", list(queries)))
    tail: list[Block] = []
    if rb.escalation:
        lines = ["*Escalation*", *(f"• {step(e)}" for e in rb.escalation)]
        tail += _packed(lines, RUNBOOK_ESCALATION_BLOCKS, "escalation lines")
    if url:
        whole = f":link: The whole runbook: <{url}|{mrkdwn(rb.name or rb.title or rb.id)}>"
    else:
        whole = (
            f":page_facing_up: The whole runbook: {runbook_file(rb)}, in the bot's runbooks "
            "directory (`runbooks/` of the paytriage repository unless `runbooks.dir` says "
            "otherwise). Set `runbooks.base_url` to link it here."
        )
    tail.append(SectionBlock(text=MarkdownTextObject(text=cut(whole, MAX_SECTION, "…"))))
    room = MAX_BLOCKS - len(head) - len(tail) - 1  # one for the note on what is left out
    body: list[Block] = []
    left_out: list[str] = []
    for name, unit in units:
        if not left_out and len(body) + len(unit) <= room:
            body += unit
        else:
            left_out.append(name)
    if left_out:
        note = (
            f"Not shown here (Slack's limits): {mrkdwn(', '.join(left_out))}. "
            "They are in the whole runbook (link at the end)."
        )
        body.append(ContextBlock(elements=[MarkdownTextObject(text=cut(note, 2000, "…"))]))
    return [b.to_dict() for b in [*head, *body, *tail]]


def thread_text(change: str, inc: StoredIncident, now: datetime) -> str | None:
    """What a change says in the incident's thread (None: nothing to say there)."""
    if change == "reopened":
        return f":repeat: Re-opened (relapse #{inc.reopened}): {mrkdwn(inc.title)}"
    if change == "resolved":
        return (
            f":white_check_mark: Resolved after {format_window(duration(inc, now))}: every "
            "finding cleared."
        )
    if change == "joined":
        newest = max(
            (m["finding"] for m in inc.members.values()),
            key=lambda f: f.get("at") or "",
            default=None,
        )
        what = mrkdwn(newest["title"]) if newest else "another finding"
        return f":link: Joined by a related finding: {what}"
    if change == "severity":
        return f":arrow_up: Severity raised to *{inc.severity.value}*."
    return None


def details_text(inc: StoredIncident) -> str:
    """The thread reply after the runbook (:func:`runbook_blocks`): the evidence in full
    (what the root cut)."""
    sections = evidence_lines(inc.evidence, max_patterns=8)
    parts = []
    for key, label in (
        ("breakdown", "Breakdown"),
        ("logs", "Log patterns"),
        ("changes", "Changes"),
    ):
        if key in sections:
            parts.append(f"*{label}*\n" + "\n".join(sections[key]))
    return cut("\n\n".join(parts), 3900, "… (cut)") if parts else ""


__all__ = [
    "details_text",
    "evidence_lines",
    "fallback_text",
    "incident_blocks",
    "mrkdwn",
    "prometheus_link",
    "runbook_blocks",
    "runbook_fallback",
    "runbook_mrkdwn",
    "thread_text",
]
