"""``paytriage demo``: the product's front door, on the embedded simulated platform: what
``paytriage replay`` (``paytriage.lab.replay``) does on a team's own history, here on a
simulated one, with every message shown in the terminal as it is sent.

No servers and no tokens: the simulator builds a payment platform (a day of history, then
a few hours with incidents and a harmless flash sale) in memory; the detectors read it
through an in-memory PromQL engine and log store (``paytriage.lab.memory``) and the whole
pipeline runs as ``paytriage run`` would, minute by minute in accelerated time: detection,
grouping, evidence, runbooks, the Slack messages (the same ``SlackSender`` and Block Kit as
live, recorded instead of posted and shown in the terminal), the pages PagerDuty would
get, and a postmortem draft. Everything lands in ``--out``: the exact Block Kit payloads
(paste-able into Slack's Block Kit Builder), the charts, the pages and the postmortem.

With ``SLACK_BOT_TOKEN`` and ``--slack-channel`` set, the same messages are also posted to
that channel of a real workspace.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from rich.console import Console, Group
from rich.markup import escape
from rich.panel import Panel
from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table
from rich.text import Text

from paytriage.domain.findings import slice_text
from paytriage.lab.replay import M, Posted, RecordingPages, RecordingSlack, replay_period

DEMO_SEED = 2026
HISTORY = timedelta(hours=24)
PLAYED = timedelta(hours=6)
ROOT = Path(__file__).resolve().parents[2]


def demo_scenarios(played_from: datetime) -> list[Any]:
    """What happens in the played hours: four incidents of different kinds and a flash sale
    that must not page anyone."""
    from paytriage.lab.simulate import Scenario

    at = played_from
    return [
        Scenario(
            "flash_sale", at + timedelta(minutes=40), timedelta(minutes=45), {"country": "DE"}
        ),
        Scenario("psp_outage", at + timedelta(hours=1, minutes=30), 25 * M, {"psp": "stripe"}),
        Scenario("webhook_backlog", at + timedelta(hours=2, minutes=40), 35 * M, {"psp": "adyen"}),
        Scenario(
            "capture_failures", at + timedelta(hours=3, minutes=40), 40 * M, {"psp": "braintree"}
        ),
        Scenario("traffic_drop", at + timedelta(hours=4, minutes=50), 30 * M, {"country": "GB"}),
    ]


# -- Block Kit in a terminal ---------------------------------------------------------------

_LINK = re.compile(r"<([^|>]+)\|([^>]+)>")
_BARE = re.compile(r"<(https?://[^>]+)>")


def mrkdwn_to_rich(text: str) -> Text:
    """Slack mrkdwn shown readably: links as their label, *bold*, `code`, entities decoded."""
    out = _LINK.sub(lambda m: m.group(2), text)
    out = _BARE.sub(lambda m: m.group(1), out)
    out = out.replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&")
    markup = escape(out)
    markup = re.sub(r"(?<![\w*])\*([^*\n]+)\*(?![\w*])", r"[bold]\1[/bold]", markup)
    markup = re.sub(r"`([^`\n]+)`", r"[cyan]\1[/cyan]", markup)
    markup = re.sub(r"(?<!\w)_(\S(?:[^\n]*?\S)?)_(?!\w)", r"[italic]\1[/italic]", markup)
    try:
        return Text.from_markup(markup)
    except Exception:  # odd nesting: plain is fine
        return Text(out)


def render_blocks(blocks: Sequence[Mapping[str, Any]]) -> list[Any]:
    parts: list[Any] = []
    for b in blocks:
        kind = b.get("type")
        if kind == "header":
            parts.append(Text(str(b["text"]["text"]), style="bold"))
        elif kind == "section":
            if "text" in b:
                parts.append(mrkdwn_to_rich(str(b["text"]["text"])))
            if b.get("fields"):
                grid = Table.grid(padding=(0, 3))
                grid.add_column()
                grid.add_column()
                cells = [mrkdwn_to_rich(str(f["text"])) for f in b["fields"]]
                for i in range(0, len(cells), 2):
                    grid.add_row(*cells[i : i + 2], *([""] if i + 1 >= len(cells) else []))
                parts.append(grid)
        elif kind == "context":
            for e in b.get("elements", []):
                t = mrkdwn_to_rich(str(e.get("text", "")))
                t.stylize("dim")
                parts.append(t)
        elif kind == "divider":
            parts.append(Text("─" * 40, style="dim"))
        elif kind == "actions":
            labels = []
            for e in b.get("elements", []):
                label = (e.get("text") or e.get("placeholder") or {}).get("text", "?")
                labels.append(f"[ {label} ]")
            parts.append(Text("  ".join(labels), style="bold blue"))
        elif kind == "image":
            parts.append(Text(f"(image: {b.get('alt_text', '')})", style="dim"))
    return parts


def page_panel(event: Mapping[str, Any]) -> Panel:
    action = str(event.get("event_action"))
    payload = event.get("payload") or {}
    if action == "trigger":
        text = f"{payload.get('severity', '').upper()}: {payload.get('summary', '')}"
    else:
        text = f"{action} {event.get('dedup_key')}"
    return Panel(
        Text(text),
        title=f"PagerDuty · {action}",
        subtitle=f"dedup_key {event.get('dedup_key')}",
        title_align="left",
        border_style="red",
    )


def render_post(p: Posted) -> Panel:
    payload = p.payload
    body: list[Any] = []
    if payload.get("blocks"):
        body.extend(render_blocks(payload["blocks"]))
    elif p.method == "files.upload":
        body.append(Text(f"📈 chart uploaded: {payload.get('title', '')}  → {payload['file']}"))
    else:
        body.append(mrkdwn_to_rich(str(payload.get("text", ""))))
    where = p.channel
    if p.method == "chat.update":
        title = f"{where} · message edited"
    elif payload.get("thread_ts") or p.method == "files.upload":
        title = f"{where} · in the thread"
    else:
        title = f"{where} · new message"
    return Panel(Group(*body), title=title, subtitle=p.file.name, title_align="left")


# -- the run ------------------------------------------------------------------------------


@dataclass
class DemoResult:
    incidents: list[Any]
    slack: list[Posted]
    pages: list[dict[str, Any]]
    postmortem: Path | None
    out: Path
    injected: list[Any]


def _resolve(path: str) -> Path:
    p = Path(path)
    return p if p.exists() or p.is_absolute() else ROOT / p


def run_demo(
    out: Path,
    console: Console | None = None,
    *,
    slack_token: str | None = None,
    slack_channel: str | None = None,
    end: datetime | None = None,
    quiet_messages: bool = False,
    played: timedelta = PLAYED,
) -> DemoResult:
    from paytriage.config import load_settings
    from paytriage.config.loader import default_config_path
    from paytriage.lab.memory import from_simulation
    from paytriage.lab.simulate import SCENARIO_KINDS, SimulationSpec, generate

    if not timedelta(hours=1) <= played <= PLAYED:
        hours = PLAYED / timedelta(hours=1)
        raise ValueError(f"the demo plays 1 to {hours:.0f} hours, not {played}")
    console = console or Console()
    out = Path(out)
    end = (end or datetime.now(UTC)).replace(minute=0, second=0, microsecond=0)
    played_from = end - played
    start = played_from - HISTORY
    scenarios = [s for s in demo_scenarios(played_from) if s.start < end]

    console.rule("[bold]paytriage demo")
    console.print(
        "A simulated payment platform: 5 PSPs, 4 payment methods, 6 countries; a day of "
        "authorizations, captures, webhooks and refunds with daily seasonality and noise, "
        "application logs (some leaking card numbers, as real logs do) and deploys. Then "
        f"{played.total_seconds() / 3600:.0f} hours are played minute by minute through the "
        "detectors, incident grouping, evidence, runbooks, Slack and PagerDuty, as "
        "`paytriage run` would live. No servers, no tokens."
    )
    with console.status("Simulating the platform..."):
        data = generate(
            SimulationSpec(start=start, end=end, seed=DEMO_SEED, scenarios=tuple(scenarios))
        )
        metrics, logs = from_simulation(data)
    table = Table(title="What will happen on the platform (the bot does not know)")
    for col in ("when (UTC)", "for", "what", "where", "real incident?"):
        table.add_column(col)
    for s in scenarios:
        where = slice_text(s.dims, "platform")
        harmless = SCENARIO_KINDS[s.kind].harmless
        table.add_row(
            f"{s.start:%H:%M}",
            f"{int(s.duration.total_seconds() // 60)} min",
            s.kind,
            where,
            "no (harmless)" if harmless else "yes",
        )
    console.print(table)

    settings = load_settings(default_config_path(), secrets_for=())
    runbooks = settings.runbooks.model_copy(update={"dir": str(_resolve(settings.runbooks.dir))})
    settings = settings.model_copy(update={"runbooks": runbooks})
    real = None
    if slack_token and slack_channel:
        from slack_sdk import WebClient

        real = WebClient(token=slack_token, timeout=15)
    slack = RecordingSlack(out, real=real, real_channel=slack_channel)
    shown: list[Panel] = []
    if not quiet_messages:
        slack.on_post = lambda p: shown.append(render_post(p))
    progress = Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        TextColumn("{task.fields[clock]}"),
        TimeRemainingColumn(),
        console=console,
        transient=True,
    )
    total = int(played / M) + 1
    seen_pages = [0]

    with progress:
        task = progress.add_task("Playing the day", total=total, clock="")

        def show(at: datetime, pages: RecordingPages) -> None:
            shown.extend(page_panel(e) for e in pages.events[seen_pages[0] :])
            seen_pages[0] = len(pages.events)
            if shown:
                progress.console.print(Text(f"{at:%H:%M} UTC", style="bold yellow"))
            for panel in shown:
                progress.console.print(panel)
            shown.clear()
            progress.update(task, advance=1, clock=f"{at:%H:%M} UTC")

        played_out = replay_period(
            settings,
            metrics,
            logs,
            played_from,
            end,
            out,
            slack=slack,
            on_step=show,
            postmortem_template=_resolve(settings.postmortem.template),
        )
    incidents = played_out.incidents
    main = _most_severe(incidents)
    postmortem = played_out.postmortems.get(main.id) if main is not None else None
    result = DemoResult(incidents, slack.posted, played_out.pages, postmortem, out, scenarios)
    _epilogue(console, result)
    return result


def _most_severe(incidents: Sequence[Any]) -> Any:
    real = [i for i in incidents if not i.data_problem]
    if not real:
        return None
    return max(real, key=lambda i: (i.severity.rank, -i.opened_at.timestamp()))


def _epilogue(console: Console, r: DemoResult) -> None:
    console.rule("[bold]What the bot did")
    table = Table()
    for col in ("incident", "opened (UTC)", "resolved", "severity", "where", "title"):
        table.add_column(col)
    for inc in sorted(r.incidents, key=lambda i: i.opened_at):
        where = slice_text(inc.dimensions, "platform")
        table.add_row(
            inc.ref,
            f"{inc.opened_at:%H:%M}",
            f"{inc.resolved_at:%H:%M}" if inc.resolved_at else "open",
            inc.severity.value,
            where,
            inc.title[:70],
        )
    console.print(table)
    harmless = [s for s in r.injected if s.kind in ("flash_sale", "blip")]
    if harmless:
        console.print(
            f"The {', '.join(s.kind for s in harmless)} raised nothing: a busy hour is not an "
            "incident."
        )
    console.print(f"\nFiles written under [bold]{r.out}[/bold]:")
    console.print(
        f"  {r.out / 'slack'}/   {len(r.slack)} Slack API calls as sent (paste a message's "
        "`blocks` into https://app.slack.com/block-kit-builder)"
    )
    console.print(f"  {r.out / 'charts'}/  the charts posted in the threads")
    console.print(
        f"  {r.out / 'pagerduty'}/  {len(r.pages)} PagerDuty events (routing key left out)"
    )
    console.print(
        f"  {r.out / 'postmortems'}/  a postmortem draft of every resolved incident"
        + (f" (the most severe: {r.postmortem.name})" if r.postmortem is not None else "")
    )
    console.print(f"  {r.out / 'incidents.json'}  the incidents as paged and as they ended")
    console.print(f"  {r.out / 'paytriage.db'}  the store (incidents, timeline, outbox, audit)")
