"""``paytriage demo``: the product's front door, on the embedded simulated platform.

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

import json
import re
import shutil
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from rich.console import Console, Group
from rich.markup import escape
from rich.panel import Panel
from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table
from rich.text import Text

DEMO_SEED = 2026
HISTORY = timedelta(hours=24)
PLAYED = timedelta(hours=6)
M = timedelta(minutes=1)
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


# -- Slack as the demo sees it -----------------------------------------------------------


@dataclass
class Posted:
    n: int
    method: str
    channel: str
    payload: dict[str, Any]
    file: Path


@dataclass
class DemoSlack:
    """The part of slack_sdk's ``WebClient`` the sender uses: records every call's exact
    payload to ``out/slack/`` (and forwards it to a real ``WebClient`` when one is given)."""

    out: Path
    real: Any = None
    real_channel: str | None = None
    posted: list[Posted] = field(default_factory=list)
    on_post: Callable[[Posted], None] | None = None
    _ts: int = 0
    _threads: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    _real_ts: dict[str, str] = field(default_factory=dict)
    _real_cid: str | None = None
    _names: dict[str, str] = field(default_factory=dict)  # made-up id -> channel name

    def _record(self, method: str, channel: str, payload: dict[str, Any]) -> Posted:
        n = len(self.posted) + 1
        kind = method.split(".")[-1]
        if method == "chat.postMessage" and payload.get("thread_ts"):
            kind = "reply"
        path = self.out / "slack" / f"{n:03d}-{kind}.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        body = {k: v for k, v in payload.items() if v is not None}
        path.write_text(json.dumps(body, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
        rec = Posted(n, method, self.channel_name(channel), body, path)
        self.posted.append(rec)
        if self.on_post is not None:
            self.on_post(rec)
        return rec

    def channel_id(self, channel: str) -> str:
        """A stable made-up id per channel name (Slack answers ids); ids map back."""
        if channel in self._names:
            return channel
        cid = f"C0DEMO{len(self._names) + 1:04d}"
        for known, name in self._names.items():
            if name == channel:
                return known
        self._names[cid] = channel
        return cid

    def channel_name(self, channel: str) -> str:
        return self._names.get(channel, channel)

    def _next_ts(self) -> str:
        self._ts += 1
        return f"1700000000.{self._ts:06d}"

    def chat_postMessage(self, *, channel: str, **kw: Any) -> dict[str, Any]:
        ts = self._next_ts()
        payload = {"channel": channel, **kw}
        self._record("chat.postMessage", channel, payload)
        if thread := kw.get("thread_ts"):
            self._threads.setdefault(str(thread), []).append({"ts": ts, **kw})
        if self.real is not None:
            fwd = {**kw, "channel": self.real_channel or channel}
            if thread:
                fwd["thread_ts"] = self._real_ts.get(str(thread), thread)
            resp = self.real.chat_postMessage(**fwd)
            self._real_ts[ts] = str(resp["ts"])
            self._real_cid = str(resp["channel"])  # uploads want the channel's id
        return {"ok": True, "channel": self.channel_id(channel), "ts": ts}

    def chat_update(self, *, channel: str, ts: str, **kw: Any) -> dict[str, Any]:
        self._record("chat.update", channel, {"channel": channel, "ts": ts, **kw})
        if self.real is not None and ts in self._real_ts:
            self.real.chat_update(channel=self._real_cid, ts=self._real_ts[ts], **kw)
        return {"ok": True, "channel": channel, "ts": ts}

    def files_upload_v2(self, *, file: str, filename: str, **kw: Any) -> dict[str, Any]:
        dest = self.out / "charts" / filename
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(file, dest)
        self._record("files.upload", str(kw.get("channel")), {"file": str(dest), **kw})
        if self.real is not None:
            thread = kw.get("thread_ts")
            self.real.files_upload_v2(
                channel=self._real_cid,
                thread_ts=self._real_ts.get(str(thread), thread),
                file=file,
                filename=filename,
                title=kw.get("title"),
            )
        return {"ok": True, "file": {"id": f"F{len(self.posted):08d}", "permalink": None}}

    def conversations_replies(self, *, ts: str, **_: Any) -> dict[str, Any]:
        return {"ok": True, "messages": self._threads.get(ts, []), "response_metadata": {}}

    def conversations_history(self, **_: Any) -> dict[str, Any]:
        return {"ok": True, "messages": [], "response_metadata": {}}

    def conversations_list(self, **_: Any) -> dict[str, Any]:
        return {"ok": True, "channels": [], "response_metadata": {}}


@dataclass
class DemoPages:
    """PagerDuty's Events API as the demo sees it: each event body, routing key removed,
    written to ``out/pagerduty/``."""

    out: Path
    events: list[dict[str, Any]] = field(default_factory=list)

    def send(self, body: Mapping[str, Any]) -> Any:
        from paytriage.notify.pagerduty.events import SendResult

        shown = {k: v for k, v in body.items() if k != "routing_key"}
        self.events.append(shown)
        path = self.out / "pagerduty" / f"{len(self.events):03d}-{shown.get('event_action')}.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(shown, indent=2) + "\n", encoding="utf-8")
        return SendResult(ok=True, status=202, dedup_key=str(body.get("dedup_key")))


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
    from paytriage.app.compose import pipeline_for
    from paytriage.config import load_settings
    from paytriage.config.loader import default_config_path
    from paytriage.detection.replay import replay_steps
    from paytriage.lab.memory import from_simulation
    from paytriage.lab.simulate import SCENARIO_KINDS, SimulationSpec, generate
    from paytriage.notify.pagerduty.sender import pagerduty_worker
    from paytriage.notify.slack.sender import slack_worker
    from paytriage.reports.postmortem import render_postmortem
    from paytriage.store import Store

    if not timedelta(hours=1) <= played <= PLAYED:
        hours = PLAYED / timedelta(hours=1)
        raise ValueError(f"the demo plays 1 to {hours:.0f} hours, not {played}")
    console = console or Console()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    for sub in ("slack", "charts", "pagerduty"):
        shutil.rmtree(out / sub, ignore_errors=True)
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
        where = ", ".join(f"{k}={v}" for k, v in s.dims.items()) or "platform"
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
    db = out / "paytriage-demo.db"
    db.unlink(missing_ok=True)
    store = Store.open(f"sqlite:///{db}")
    runs, pipeline = pipeline_for(
        settings, store, metrics, logs, chart_dir=out / ".charts", notify=True
    )
    now = {"t": played_from}
    real = None
    if slack_token and slack_channel:
        from slack_sdk import WebClient

        real = WebClient(token=slack_token, timeout=15)
    slack = DemoSlack(out, real=real, real_channel=slack_channel)
    sender = slack_worker(store, slack, clock=lambda: now["t"], thread_min_interval=timedelta(0))  # type: ignore[arg-type]
    pd = DemoPages(out)
    pager = pagerduty_worker(store, pd, "demo" * 8, clock=lambda: now["t"])  # type: ignore[arg-type]

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
    with progress:
        task = progress.add_task("Playing the day", total=total, clock="")
        for step in replay_steps(metrics, runs, played_from, end, M):
            now["t"] = step.at
            pipeline.step(step.events, step.active, step.at, step.frames)
            sender.drain()
            n_pages = len(pd.events)
            pager.drain()
            shown.extend(page_panel(e) for e in pd.events[n_pages:])
            if shown:
                progress.console.print(Text(f"{step.at:%H:%M} UTC", style="bold yellow"))
            for panel in shown:
                progress.console.print(panel)
            shown.clear()
            progress.update(task, advance=1, clock=f"{step.at:%H:%M} UTC")

    incidents = store.incidents(limit=100)
    postmortem = None
    main = _most_severe(incidents)
    if main is not None:
        body = render_postmortem(
            main,
            store.timeline(main.id),
            store.audit_log(main.id),
            now["t"],
            template=_resolve(settings.postmortem.template),
        )
        store.add_postmortem(main.id, body, "demo", now["t"])
        postmortem = out / f"postmortem-{main.id}.md"
        postmortem.write_text(body, encoding="utf-8")
    store.close()
    result = DemoResult(incidents, slack.posted, pd.events, postmortem, out, scenarios)
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
        where = ", ".join(f"{k}={v}" for k, v in inc.dimensions.items()) or "platform"
        table.add_row(
            inc.id,
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
    if r.postmortem is not None:
        console.print(f"  {r.postmortem}  the postmortem draft of the most severe incident")
    console.print(
        f"  {r.out / 'paytriage-demo.db'}  the store (incidents, timeline, outbox, audit)"
    )
