"""Slack's notifier: one root message per incident, edited in place, with its details,
chart and state changes in the thread.

The outbox worker (``paytriage.notify.worker``) hands it the due ``slack:`` messages in
order; it tells the worker which failures to retry (at Slack's ``Retry-After`` when rate
limited), which no retry can fix (``channel_not_found``, ``invalid_blocks``...): those are
given up and kept in the outbox with their error, and when Slack takes nothing at all
(unreachable, 5xx, the token refused): those wait, however long it lasts. The root
message's channel and ``ts`` are stored the moment Slack answers, so a retried or replayed
"opened" edits that message instead of posting a second one.

Thread replies that only bring news (a finding joining, severity raised) are rate-limited
by ``thread_min_interval``, counted from the last one any replica sent (the outbox records
each); state changes (re-opened, resolved) always go to the thread.
Evidence refreshes only edit the root message.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError, SlackClientError

from paytriage.core.redact import redact
from paytriage.domain.incidents import TimelineKind
from paytriage.domain.notifications import BOT, NEWS, Channel, Kind, Receiver
from paytriage.notify.slack.render import (
    details_text,
    fallback_text,
    incident_blocks,
    mrkdwn,
    runbook_blocks,
    runbook_fallback,
    thread_text,
)
from paytriage.notify.worker import Backoff, OutboxWorker, SendFailure
from paytriage.store import Entry, OutboxMessage, Store, StoredIncident

log = logging.getLogger(__name__)

# Errors a retry cannot fix: the message is given up (kept in the outbox with the error).
PERMANENT = frozenset(
    {
        "channel_not_found",
        "not_in_channel",
        "is_archived",
        "missing_scope",
        "invalid_blocks",
        "invalid_arguments",
        "msg_too_long",
        "no_text",
        "cant_update_message",
        "edit_window_closed",
    }
)


# The workspace refuses the bot's token: no message can go through until it is replaced,
# so they wait in the outbox rather than being given up one by one.
REFUSED = frozenset(
    {"invalid_auth", "not_authed", "account_inactive", "token_revoked", "token_expired"}
)


@dataclass
class SlackNotifier:
    """Delivers the outbox's Slack messages (see the module's docstring)."""

    store: Store
    client: WebClient
    thread_min_interval: timedelta = timedelta(minutes=5)
    graph_url: str | None = None
    dashboards_url: str | None = None
    receiver: Receiver = field(default=Receiver.SLACK, init=False)
    _channel_ids: dict[str, str] = field(default_factory=dict, init=False)

    def send(self, msg: OutboxMessage, now: datetime) -> dict[str, Any]:
        try:
            return self._send(msg, now)
        except SlackApiError as exc:
            resp = exc.response
            error = str(resp.get("error") or f"HTTP {resp.status_code}")
            if resp.status_code == 429 or error == "ratelimited":
                after = _retry_after(resp.headers)
                after = 30 if after is None else after
                raise SendFailure("ratelimited", retry_after=after) from exc
            if error in REFUSED or resp.status_code >= 500:
                raise SendFailure(error, unavailable=True) from exc
            raise SendFailure(error, permanent=error in PERMANENT) from exc
        except (SlackClientError, OSError) as exc:  # unreachable: Slack, or the network, is down
            raise SendFailure(f"{type(exc).__name__}: {exc}", unavailable=True) from exc

    def given_up(self, msg: OutboxMessage, error: str, now: datetime) -> None:
        """Kept in the outbox with its error (the bot's metrics count it)."""

    # -- one message ------------------------------------------------------------------------

    def _send(self, msg: OutboxMessage, now: datetime) -> dict[str, Any]:
        if msg.incident_id is None:
            raise SendFailure(f"outbox message {msg.key} names no incident", permanent=True)
        inc = self.store.incident(msg.incident_id)
        if inc is None:
            raise SendFailure(f"incident {msg.incident_id} is not in the store", permanent=True)
        change = str(msg.payload.get("change", ""))
        result: dict[str, Any] = {}
        if inc.slack_ts is None or inc.slack_channel is None:
            channel = Channel.parse(msg.channel).target or ""
            found = self._find_root(inc, channel, msg) if msg.uncertain else None
            if found is not None:  # an earlier attempt posted it and died before saying so
                with self.store.begin() as tx:
                    tx.set_message(inc.id, *found)
                inc = self.store.incident(inc.id) or inc
                self._post_details(inc, msg.key, now, reconcile=True)
                result["recovered"] = inc.slack_ts
            else:
                inc = self._post_root(inc, channel, msg.key, now)
                result["posted"] = inc.slack_ts
        else:
            self._update_root(inc, now)
            result["updated"] = inc.slack_ts
        text = thread_text(change, inc, now)
        if msg.kind == Kind.NOTE:  # e.g. a page that could not be sent
            text = mrkdwn(msg.payload.get("text", ""))
        if text is not None and change in NEWS and self.thread_min_interval > timedelta(0):
            # From the store, not this process: a new leader keeps to the same pace.
            last = self.store.last_thread_reply(inc.id, NEWS)
            if last is not None and now - last < self.thread_min_interval:
                text = None  # the root message already shows it
        if text is not None:
            if msg.uncertain and msg.key in self._thread_keys(inc):
                result["thread"] = f"{change} (already posted)"
            else:
                self._reply(inc, text, msg.key)
                result["thread"] = change
        return result

    def _post_root(
        self, inc: StoredIncident, channel: str, key: str, now: datetime
    ) -> StoredIncident:
        resp = self.client.chat_postMessage(
            channel=channel,
            text=fallback_text(inc, now),
            blocks=incident_blocks(
                inc, now, graph_url=self.graph_url, dashboards_url=self.dashboards_url
            ),
            unfurl_links=False,
            unfurl_media=False,
            metadata=_metadata(inc.id, None),
        )
        channel_id, ts = str(resp["channel"]), str(resp["ts"])
        with self.store.begin() as tx:  # at once: a retry edits this message, never reposts
            tx.set_message(inc.id, channel_id, ts)
        stored = self.store.incident(inc.id)
        assert stored is not None
        self._post_details(stored, key, now, reconcile=False)
        return stored

    def _post_details(
        self, inc: StoredIncident, key: str, now: datetime, *, reconcile: bool
    ) -> None:
        """The runbook, the details reply and the chart under a new root message. When
        reconciling after a crash, only what the thread does not hold yet."""
        details = details_text(inc)
        try:
            posted = self._thread_keys(inc) if reconcile else set()
            if f"{key}:runbook" not in posted:
                self._post_runbook(inc, f"{key}:runbook")
            if details and f"{key}:details" not in posted:
                self._reply(inc, details, f"{key}:details")
            if CHART_KEY not in posted:
                self._upload_chart(inc, now)
        except (SlackApiError, SlackClientError, OSError) as exc:
            # The root is posted; the details come again with the next evidence refresh.
            log.warning("details of %s not posted: %s", inc.id, redact(str(exc)))

    def _post_runbook(self, inc: StoredIncident, key: str) -> None:
        """The incident's runbook, first in its thread: steps by heading with their queries,
        escalation, and the whole runbook's link (see ``render.runbook_blocks``). A runbook
        Slack refuses is logged, and the details and chart still go out."""
        blocks = runbook_blocks(inc)
        if not blocks:
            return
        try:
            self.client.chat_postMessage(
                channel=str(inc.slack_channel),
                thread_ts=str(inc.slack_ts),
                text=runbook_fallback(inc),
                blocks=blocks,
                unfurl_links=False,
                unfurl_media=False,
                metadata=_metadata(inc.id, key),
            )
        except SlackApiError as exc:
            log.warning("runbook of %s not posted: %s", inc.id, redact(str(exc)))

    # -- after a crash or a timeout: what did Slack get? ---------------------------------------

    def _find_root(
        self, inc: StoredIncident, channel: str, msg: OutboxMessage
    ) -> tuple[str, str] | None:
        """The root message an earlier attempt may have posted: our message in the channel
        carrying this incident's metadata, among the channel's latest 1,000 (it was posted
        moments before the attempt died; Slack's clock, not ours, stamps ``ts``)."""
        try:
            cid = self._channel_id(channel)
            if cid is None:
                return None
            pages = self._pages(
                self.client.conversations_history, "messages", 5, channel=cid,
                include_all_metadata=True,
            )  # fmt: skip
            for m in pages:
                # a root: no thread_ts, or its own (once it has replies)
                root = m.get("thread_ts") in (None, m.get("ts"))
                if root and _metadata_of(m) == (inc.id, None):
                    return cid, str(m["ts"])
        except (SlackApiError, SlackClientError, OSError) as exc:
            # Unknown: post (a possible second message beats a lost one) and say so.
            log.warning("could not check %s for an earlier root of %s: %s", channel, inc.id, exc)
        return None

    def _thread_keys(self, inc: StoredIncident) -> set[str]:
        """The outbox keys of the replies we already posted in the incident's thread."""
        keys: set[str] = set()
        pages = self._pages(
            self.client.conversations_replies, "messages", 10, channel=str(inc.slack_channel),
            ts=str(inc.slack_ts), include_all_metadata=True,
        )  # fmt: skip
        for m in pages:
            meta = _metadata_of(m)
            if meta is not None and meta[0] == inc.id and meta[1]:
                keys.add(meta[1])
            for f in m.get("files") or []:  # the chart we uploaded: its title names it
                if isinstance(f, dict) and str(f.get("title", "")).startswith(f"{inc.id}:"):
                    keys.add(CHART_KEY)
        return keys

    def _channel_id(self, channel: str) -> str | None:
        """A channel's id: conversations.history takes ids only; names are looked up once."""
        if _CHANNEL_ID.fullmatch(channel):
            return channel
        name = channel.lstrip("#")
        if name not in self._channel_ids:
            pages = self._pages(
                self.client.conversations_list, "channels", 50,
                types="public_channel,private_channel", exclude_archived=True,
            )  # fmt: skip
            for c in pages:
                self._channel_ids[str(c.get("name"))] = str(c.get("id"))
                if c.get("name") == name:
                    break
        return self._channel_ids.get(name)

    @staticmethod
    def _pages(
        method: Callable[..., Any], field: str, max_pages: int, **args: Any
    ) -> Iterator[dict[str, Any]]:
        """The items of a cursor-paginated Web API method, 200 a page, at most ``max_pages``."""
        cursor: str | None = None
        for _ in range(max_pages):
            resp = method(limit=200, cursor=cursor, **args)
            yield from resp.get(field) or []
            cursor = (resp.get("response_metadata") or {}).get("next_cursor") or None
            if not cursor:
                return

    def _update_root(self, inc: StoredIncident, now: datetime) -> None:
        self.client.chat_update(
            channel=str(inc.slack_channel),
            ts=str(inc.slack_ts),
            text=fallback_text(inc, now),
            blocks=incident_blocks(
                inc, now, graph_url=self.graph_url, dashboards_url=self.dashboards_url
            ),
        )

    def _reply(self, inc: StoredIncident, text: str, key: str) -> None:
        self.client.chat_postMessage(
            channel=str(inc.slack_channel),
            thread_ts=str(inc.slack_ts),
            text=text,
            unfurl_links=False,
            unfurl_media=False,
            metadata=_metadata(inc.id, key),
        )

    def _upload_chart(self, inc: StoredIncident, now: datetime) -> None:
        path = inc.evidence.chart.path if inc.evidence.chart is not None else None
        if not path or not Path(path).is_file():
            return
        resp = self.client.files_upload_v2(
            channel=str(inc.slack_channel),
            thread_ts=str(inc.slack_ts),
            file=str(path),
            filename=f"{inc.id}.png",
            title=f"{inc.id}: signal, expected band and onset",
        )
        link = (resp.get("file") or {}).get("permalink")
        if isinstance(link, str) and link.startswith("https://"):
            with self.store.begin() as tx:  # the page links it (people are logged in to Slack)
                chart = Entry(now, TimelineKind.CHART, BOT, "chart posted")
                chart.data["permalink"] = link
                tx.timeline(inc.id, chart)


SLACK_BACKOFF = Backoff(max_attempts=10, base=timedelta(seconds=15), cap=timedelta(minutes=15))

_CHANNEL_ID = re.compile(r"[CG][A-Z0-9]{8,}")
METADATA_EVENT = "paytriage_notification"
CHART_KEY = "chart"  # in _thread_keys: the incident's chart is in the thread


def _metadata(incident_id: str, key: str | None) -> dict[str, Any]:
    """Message metadata (Slack's ``metadata`` argument) naming the incident and outbox key,
    so the sender can tell after a crash whether a message reached Slack."""
    payload: dict[str, Any] = {"incident_id": incident_id}
    if key is not None:
        payload["key"] = key
    return {"event_type": METADATA_EVENT, "event_payload": payload}


def _metadata_of(message: dict[str, Any]) -> tuple[str, str | None] | None:
    meta = message.get("metadata")
    if not isinstance(meta, dict) or meta.get("event_type") != METADATA_EVENT:
        return None
    payload = meta.get("event_payload") or {}
    key = payload.get("key")
    return str(payload.get("incident_id")), None if key is None else str(key)


def _retry_after(headers: Any) -> float | None:
    for name in ("Retry-After", "retry-after"):
        value = headers.get(name) if headers else None
        if isinstance(value, list):
            value = value[0] if value else None
        if value is not None:
            try:
                return max(0.0, float(value))
            except (TypeError, ValueError):
                return None
    return None


def slack_worker(
    store: Store,
    client: WebClient,
    *,
    thread_min_interval: timedelta = timedelta(minutes=5),
    graph_url: str | None = None,
    dashboards_url: str | None = None,
    backoff: Backoff = SLACK_BACKOFF,
    **worker: Any,
) -> OutboxWorker:
    """The outbox worker for Slack (``worker``: its other settings, e.g. ``holder``)."""
    notifier = SlackNotifier(store, client, thread_min_interval, graph_url, dashboards_url)
    return OutboxWorker(store, notifier, backoff, **worker)


__all__ = ["SLACK_BACKOFF", "SlackNotifier", "slack_worker"]
