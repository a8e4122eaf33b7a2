"""``paytriage replay``: a past period played minute by minute through the whole live
pipeline, posting nothing.

Detectors, incident grouping, evidence, runbooks, the Slack sender and the PagerDuty
sender run as ``paytriage run`` would, against the given PromQL API (and OpenSearch) with a
replay clock: every step sees only what the live bot would have seen then. The Slack Web
API and PagerDuty's Events API are recorders that write each call's exact body to
``DIR/slack/NNNN-<method>.json`` and ``DIR/pagerduty/NNNN.json`` (routing key left out), in
order. At the end every resolved incident gets its postmortem draft in
``DIR/postmortems/<INC>.md`` and ``DIR/incidents.json`` lists the incidents as paged and
as stored at the end. The store is ``DIR/paytriage.db``.

Teams use it to see what the bot would have said last Tuesday before they switch it on;
``paytriage demo`` is this on the embedded simulated platform.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from paytriage.config import Settings
from paytriage.core.types import iso
from paytriage.domain.findings import slice_text
from paytriage.domain.notifications import Change
from paytriage.sources.base import LogSource, MetricsSource
from paytriage.store import StoredIncident

M = timedelta(minutes=1)


# -- Slack and PagerDuty as a replay sees them --------------------------------------------


@dataclass
class Posted:
    n: int
    method: str
    channel: str
    payload: dict[str, Any]
    file: Path


@dataclass
class RecordingSlack:
    """The part of slack_sdk's ``WebClient`` the sender uses: records every call's exact
    payload to ``out/slack/NNNN-<method>.json`` (and forwards it to a real ``WebClient``
    when one is given: the demo's ``--slack-channel``)."""

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
        path = self.out / "slack" / f"{n:04d}-{method}.json"
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
        for known, name in self._names.items():
            if name == channel:
                return known
        cid = f"C0REPLAY{len(self._names) + 1:03d}"
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
class RecordingPages:
    """PagerDuty's Events API as a replay sees it: each event body, routing key removed,
    written to ``out/pagerduty/NNNN.json``."""

    out: Path
    events: list[dict[str, Any]] = field(default_factory=list)

    def send(self, body: Mapping[str, Any]) -> Any:
        from paytriage.notify.pagerduty.events import SendResult

        shown = {k: v for k, v in body.items() if k != "routing_key"}
        self.events.append(shown)
        path = self.out / "pagerduty" / f"{len(self.events):04d}.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(shown, indent=2) + "\n", encoding="utf-8")
        return SendResult(ok=True, status=202, dedup_key=str(body.get("dedup_key")))


# -- the replay -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Paged:
    """An incident as it was first told: its title and runbook when it opened."""

    title: str
    runbook: str | None


@dataclass
class ReplayResult:
    incidents: list[StoredIncident]
    slack: list[Posted]
    pages: list[dict[str, Any]]
    postmortems: dict[str, Path]  # incident key -> its draft
    out: Path
    paged: dict[str, Paged] = field(default_factory=dict)

    @property
    def store(self) -> Path:
        return self.out / "paytriage.db"

    def as_json(self) -> dict[str, Any]:
        """``incidents.json``: each incident as paged and as stored at the end."""

        def t(at: datetime | None) -> str | None:
            return iso(at) if at is not None else None

        rows = []
        for inc in sorted(self.incidents, key=lambda i: (i.opened_at, i.id)):
            paged = self.paged.get(inc.id, Paged(inc.title, inc.runbook))
            rows.append(
                {
                    "id": inc.ref,
                    "key": inc.id,
                    "detector": inc.detector,
                    "dimensions": dict(inc.dimensions),
                    "title": paged.title,
                    "runbook": paged.runbook,
                    "onset": t(inc.onset),
                    "opened_at": t(inc.opened_at),
                    "impact_ended_at": t(inc.impact_ended_at),
                    "mitigated_at": t(inc.mitigated_at),
                    "resolved_at": t(inc.resolved_at),
                    "final_title": inc.title,
                    "final_runbook": inc.runbook,
                }
            )
        return {"incidents": rows}


def replay_period(
    settings: Settings,
    metrics: MetricsSource,
    logs: LogSource | None,
    start: datetime,
    end: datetime,
    out: Path,
    *,
    step: timedelta = M,
    slack: RecordingSlack | None = None,
    on_step: Callable[[datetime, RecordingPages], None] | None = None,
    postmortem_template: Path | None = None,
) -> ReplayResult:
    """Play ``[start, end]`` through the pipeline (see the module's docstring) into ``out``.
    ``on_step`` is called after each minute's sends (the demo shows them as they come)."""
    from paytriage.app.compose import pipeline_for
    from paytriage.detection.replay import replay_steps
    from paytriage.notify.pagerduty.sender import pagerduty_worker
    from paytriage.notify.slack.sender import slack_worker
    from paytriage.reports.postmortem import render_postmortem
    from paytriage.store import Store

    if end <= start:
        raise ValueError(f"the end ({iso(end)}) must come after the start ({iso(start)})")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    for sub in ("slack", "charts", "pagerduty", "postmortems"):
        shutil.rmtree(out / sub, ignore_errors=True)
    db = out / "paytriage.db"
    db.unlink(missing_ok=True)
    store = Store.open(f"sqlite:///{db}")
    now = {"t": start}
    try:
        runs, pipeline = pipeline_for(
            settings, store, metrics, logs, chart_dir=out / ".charts", notify=True
        )
        slack = slack or RecordingSlack(out)
        sender = slack_worker(
            store,
            slack,  # type: ignore[arg-type]
            clock=lambda: now["t"],
            thread_min_interval=settings.slack.thread_update_min_interval,
        )
        pages = RecordingPages(out)
        pager = pagerduty_worker(store, pages, "replay" * 6, clock=lambda: now["t"])  # type: ignore[arg-type]
        paged: dict[str, Paged] = {}
        for s in replay_steps(metrics, runs, start, end, step):
            now["t"] = s.at
            report = pipeline.step(s.events, s.active, s.at, s.frames)
            for key in report.ids(Change.OPENED):
                opened = store.incident(key)
                if opened is not None:
                    paged[key] = Paged(opened.title, opened.runbook)
            sender.drain()
            pager.drain()
            if on_step is not None:
                on_step(s.at, pages)
        incidents = store.incidents(limit=100_000)
        template = postmortem_template or Path(settings.postmortem.template)
        drafts: dict[str, Path] = {}
        for inc in incidents:
            if inc.resolved_at is None or inc.data_problem:
                continue
            body = render_postmortem(
                inc, store.timeline(inc.id), store.audit_log(inc.id), now["t"], template=template
            )
            store.add_postmortem(inc.id, body, "replay", now["t"])
            path = out / "postmortems" / f"{inc.ref}.md"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(body, encoding="utf-8")
            drafts[inc.id] = path
    finally:
        store.close()
    result = ReplayResult(incidents, slack.posted, pages.events, drafts, out, paged)
    (out / "incidents.json").write_text(
        json.dumps(result.as_json(), indent=2) + "\n", encoding="utf-8"
    )
    return result


def summary_lines(result: ReplayResult) -> Sequence[str]:
    """What a replay did, for a terminal."""
    lines = [
        f"{len(result.incidents)} incident(s), {len(result.slack)} Slack API call(s), "
        f"{len(result.pages)} PagerDuty event(s), {len(result.postmortems)} postmortem draft(s)"
    ]
    for inc in sorted(result.incidents, key=lambda i: i.opened_at):
        where = slice_text(inc.dimensions)
        closed = f"{inc.resolved_at:%m-%d %H:%M}" if inc.resolved_at else "still open"
        lines.append(
            f"  {inc.ref:<7} {inc.opened_at:%m-%d %H:%M} .. {closed}  [{inc.severity.value}] "
            f"{inc.detector} {where}: {inc.title}"
        )
    return lines


__all__ = [
    "Paged",
    "Posted",
    "RecordingPages",
    "RecordingSlack",
    "ReplayResult",
    "replay_period",
    "summary_lines",
]
