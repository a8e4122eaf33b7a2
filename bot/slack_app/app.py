"""The interactive Slack app (slack-bolt): the slash command, mentions, the incident
message's buttons and App Home.

Every handler acknowledges first and does its work afterwards in a bolt *lazy listener*,
so Slack gets its answer within its 3 s limit whatever the store or the Web API take. Help
and malformed commands are answered in the acknowledgement itself.

Where answers go:

* a slash command is answered privately through its ``response_url``;
* a mention is answered in its thread (status and summaries are public there, refusals
  and mistakes private);
* a button's effect is told in the incident's thread ("acknowledged by @ana"), refusals
  and actions that do not apply privately (``chat.postEphemeral``).

``create_app`` takes the Web API client (tests point one at a local Slack server) and a
clock; ``paytriage.slack_app.run`` serves the app over HTTP or Socket Mode.
"""

from __future__ import annotations

import json
import logging
import secrets
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol
from zoneinfo import ZoneInfo

from slack_bolt import Ack, App, Respond
from slack_bolt.lazy_listener.thread_runner import ThreadLazyListenerRunner
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError, SlackRequestError
from slack_sdk.models.blocks import ActionsBlock, ButtonElement

from paytriage.domain.findings import Severity
from paytriage.notify.slack import ids
from paytriage.notify.slack.text import FALLBACK_LIMIT, cut, is_user_id, mention, safe
from paytriage.reports.summary import build_summary
from paytriage.slack_app.commands import (
    INCIDENT_ID,
    SEVERITIES,
    Acknowledge,
    Command,
    Declare,
    Help,
    Invalid,
    Mitigate,
    Postmortem,
    Resolve,
    Silence,
    Status,
    Summary,
    declare_form,
    help_text,
    parse,
    strip_mention,
)
from paytriage.slack_app.operations import Operations, Outcome, Via
from paytriage.slack_app.options import AppOptions
from paytriage.slack_app.permissions import Permissions, slack_members_of
from paytriage.slack_app.views import Message, home_view, section, status_message
from paytriage.store import Store, StoredIncident

log = logging.getLogger(__name__)

SILENCE_DURATIONS: Mapping[str, timedelta | None] = {
    "1h": timedelta(hours=1),
    "4h": timedelta(hours=4),
    "resolved": None,
}
_OOPS = (
    "Sorry, something went wrong on my side while handling that; it is logged. Please try again."
)


class HealthSource(Protocol):
    """``paytriage.incidents.cycle.DetectorHealth`` (per detector the last run, error and
    failures) or ``paytriage.app.service.SourceHealth`` (``{"sources": {name: {"last_ok",
    "error"}}}``)."""

    def snapshot(self) -> Mapping[str, Any]: ...


def _utcnow() -> datetime:
    return datetime.now(UTC)


def _obj(value: Any) -> dict[str, Any]:
    """A payload object, or empty when Slack (or anyone) sent something else there."""
    return value if isinstance(value, dict) else {}


def _str(value: Any) -> str:
    return value if isinstance(value, str) else ""


def _opt(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


@dataclass(frozen=True)
class Where:
    """Where a request came from, and so where its answers go."""

    user: str
    channel: str | None
    via: Via
    thread_ts: str | None = None  # the thread the request was made in
    message_ts: str | None = None  # the mention's own message, or the button's message
    respond: Respond | None = None  # the slash command's response_url
    trigger_id: str | None = None  # a button's: lets the app open a modal


class Handlers:
    """The bolt listeners (acknowledging functions and lazy workers)."""

    def __init__(
        self,
        options: AppOptions,
        store: Store,
        ops: Operations,
        client: WebClient,
        health: HealthSource | None,
        clock: Callable[[], datetime],
        sources: HealthSource | None = None,
    ) -> None:
        self.store = store
        self.sources = sources
        self.ops = ops
        self.client = client
        self._bot_user_id: str | None = None
        self.health = health
        self.clock = clock
        self.command = options.command
        self.tz = ZoneInfo(options.timezone)
        self.detectors = set(options.detectors)

    # -- acknowledging ----------------------------------------------------------------------

    @staticmethod
    def ack_only(ack: Ack) -> None:
        ack()

    def ack_command(self, ack: Ack, body: dict[str, Any]) -> None:
        """Answer help and malformed input in the acknowledgement; the rest comes later."""
        cmd = parse(str(body.get("text") or ""), self.detectors)
        if isinstance(cmd, Help | Invalid):
            ack(text=self._help(cmd), response_type="ephemeral")
        else:
            ack()

    # -- lazy workers -----------------------------------------------------------------------

    def run_command(self, body: dict[str, Any], respond: Respond) -> None:
        cmd = parse(str(body.get("text") or ""), self.detectors)
        if isinstance(cmd, Help | Invalid):
            return  # answered in the acknowledgement
        user = str(body.get("user_id") or "")
        answer = respond if body.get("response_url") else None  # Slack always sends one
        where = Where(
            user,
            _opt(body.get("channel_id")),
            "command",
            respond=answer,
            trigger_id=_opt(body.get("trigger_id")),  # a form may open (declare)
        )
        self._guarded(where, lambda: self._dispatch(cmd, where))

    def on_mention(self, event: dict[str, Any]) -> None:
        user = event.get("user")
        if not user or event.get("bot_id"):
            return
        cmd = parse(strip_mention(str(event.get("text") or "")), self.detectors)
        where = Where(
            str(user),
            _opt(event.get("channel")),
            "mention",
            thread_ts=_opt(event.get("thread_ts")),
            message_ts=_opt(event.get("ts")),
        )
        self._guarded(where, lambda: self._dispatch(cmd, where))

    def on_action(self, body: dict[str, Any]) -> None:
        actions = body.get("actions")
        if not isinstance(actions, list) or not actions or not isinstance(actions[0], dict):
            return  # not a button press we know
        action = actions[0]
        container = _obj(body.get("container"))
        where = Where(
            _str(_obj(body.get("user")).get("id")),
            _opt(_obj(body.get("channel")).get("id")) or _opt(container.get("channel_id")),
            "button",
            thread_ts=_opt(container.get("thread_ts")),
            message_ts=_opt(container.get("message_ts"))
            or _opt(_obj(body.get("message")).get("ts")),
            trigger_id=_opt(body.get("trigger_id")),
        )
        self._guarded(where, lambda: self._button(action, where))

    def on_silence_submit(self, body: dict[str, Any]) -> None:
        """The silence modal was submitted: silence with the reason given."""
        view = _obj(body.get("view"))
        try:
            meta = _obj(json.loads(str(view.get("private_metadata") or "{}")))
        except ValueError:
            meta = {}
        user = _str(_obj(body.get("user")).get("id"))
        incident_id, option = _str(meta.get("incident")), _str(meta.get("option"))
        values = _obj(_obj(view.get("state")).get("values"))
        reason = _str(_obj(_obj(values.get("reason")).get("reason")).get("value"))
        where = Where(
            user,
            _opt(meta.get("channel")),
            "button",
            thread_ts=_opt(meta.get("thread_ts")),
            message_ts=_opt(meta.get("message_ts")),
        )
        if not (INCIDENT_ID.fullmatch(incident_id) and option in SILENCE_DURATIONS):
            self._private(where, "That form does not name an incident I know.")
            return
        self._guarded(
            where,
            lambda: self._deliver(
                self.ops.silence_incident(
                    incident_id, user, "button", SILENCE_DURATIONS[option], reason[:500]
                ),
                where,
            ),
        )

    def on_home(self, event: dict[str, Any]) -> None:
        if event.get("tab", "home") != "home" or not event.get("user"):
            return
        now = self.clock()
        view = home_view(
            self.store.incidents(open_only=True, limit=100),
            self.store.silences(now),
            self.health.snapshot() if self.health is not None else None,
            now,
            self.tz,
            self.sources.snapshot().get("sources") if self.sources is not None else None,
        )
        try:
            self.client.views_publish(user_id=str(event["user"]), view=view)
        except (SlackApiError, SlackRequestError) as exc:
            log.warning("App Home could not be published: %s", exc)

    # -- dispatch -----------------------------------------------------------------------------

    def _guarded(self, where: Where, work: Callable[[], None]) -> None:
        try:
            work()
        except Exception:  # a person gets a short apology, never a stack trace
            log.exception("a Slack request (%s by %s) failed", where.via, where.user)
            self._private(where, _OOPS)

    def _help(self, cmd: Help | Invalid) -> str:
        if isinstance(cmd, Invalid):
            return help_text(self.command, cmd.problem, cmd.verb)
        return help_text(self.command, None, cmd.topic)

    def _dispatch(self, cmd: Command, where: Where) -> None:
        if isinstance(cmd, Help | Invalid):
            self._private(where, self._help(cmd))
            return
        if isinstance(cmd, Status):
            now = self.clock()
            incidents = self.store.incidents(open_only=True, limit=100)
            self._answer(where, status_message(incidents, now, self.tz, self.command))
            return
        if isinstance(cmd, Silence) and cmd.detector is not None:
            assert cmd.duration is not None  # the parser requires one for detectors
            detector = None if cmd.detector == "*" else cmd.detector
            out = self.ops.silence_detector(
                detector, cmd.labels, where.user, where.via, cmd.duration, cmd.reason
            )
            self._deliver(out, where)
            return
        if isinstance(cmd, Declare):
            if not cmd.title:
                if not (where.trigger_id and self._declare_form(where)):
                    self._private(where, help_text(self.command, None, "declare"))
                return
            out = self.ops.declare(
                cmd.title, Severity(cmd.severity), cmd.labels, where.user, where.via
            )
            self._deliver(out, where)
            return
        assert isinstance(cmd, Summary | Acknowledge | Mitigate | Resolve | Postmortem | Silence)
        inc = self._incident(cmd.incident_id, where)
        if isinstance(inc, str):
            self._private(where, inc)
            return
        if isinstance(cmd, Summary):
            s = build_summary(
                inc,
                self.store.timeline(inc.id),
                self.store.audit_log(inc.id),
                self._thread(inc),
                self.clock(),
                bot_user=self._bot_user(),
            )
            self._answer(where, Message(s.text, s.blocks))
            return
        if isinstance(cmd, Acknowledge):
            out = self.ops.acknowledge(inc.id, where.user, where.via)
        elif isinstance(cmd, Mitigate):
            out = self.ops.mitigate(inc.id, where.user, where.via, cmd.note)
        elif isinstance(cmd, Resolve):
            out = self.ops.resolve(inc.id, where.user, where.via, cmd.note)
        elif isinstance(cmd, Postmortem):
            out = self._draft(inc.id, where)
        else:
            out = self.ops.silence_incident(inc.id, where.user, where.via, cmd.duration, cmd.reason)
        self._deliver(out, where)

    def _draft(self, incident_id: str, where: Where) -> Outcome:
        """A new postmortem draft, uploaded to the incident's thread with review buttons."""
        out = self.ops.postmortem(incident_id, where.user)
        pm, inc = out.postmortem, out.incident
        if pm is None or inc is None:
            return out
        target = _thread_of(inc) or (
            (where.channel, where.thread_ts or where.message_ts or "") if where.channel else None
        )
        if target is None or not target[1]:
            return Outcome(False, out.reply + " (It has no thread to post to: it is stored.)")
        channel, thread = target
        value = f"{inc.id}:{pm.version}"
        try:
            upload = self.client.files_upload_v2(
                channel=channel,
                thread_ts=thread,
                content=pm.body,
                filename=f"{inc.id}-postmortem-v{pm.version}.md",
                title=f"Postmortem draft v{pm.version}",
            )
            file_id = str((upload.get("file") or {}).get("id") or "")
            if file_id:
                self.store.set_postmortem_file(inc.id, pm.version, file_id)
            review = ActionsBlock(
                block_id=f"paytriage_pm:{value}",
                elements=[
                    ButtonElement(
                        text="Approve",
                        action_id=ids.POSTMORTEM_APPROVE,
                        value=value,
                        style="primary",
                    ),
                    ButtonElement(
                        text="Request changes", action_id=ids.POSTMORTEM_CHANGES, value=value
                    ),
                ],
            )
            text = (
                f":memo: Postmortem draft v{pm.version} by {mention(where.user)} is above: "
                "review it, then approve it or ask for changes."
            )
            self.client.chat_postMessage(
                channel=channel,
                thread_ts=thread,
                text=text,
                blocks=[section(text).to_dict(), review.to_dict()],
                unfurl_links=False,
            )
        except (SlackApiError, SlackRequestError) as exc:
            log.warning("postmortem draft of %s not posted: %s", inc.id, exc)
            return Outcome(False, "The draft is stored but could not be posted; try again.")
        return out

    def _declare_form(self, where: Where) -> bool:
        """Open the form of a hand-declared incident; False when Slack would not open it."""
        meta = {"channel": where.channel}
        severity_options = [
            {"text": {"type": "plain_text", "text": s}, "value": s} for s in SEVERITIES
        ]
        view = {
            "type": "modal",
            "callback_id": ids.DECLARE_MODAL,
            "private_metadata": json.dumps(meta),
            "title": {"type": "plain_text", "text": "Declare an incident"},
            "submit": {"type": "plain_text", "text": "Declare"},
            "close": {"type": "plain_text", "text": "Cancel"},
            "blocks": [
                {
                    "type": "input",
                    "block_id": "title",
                    "label": {"type": "plain_text", "text": "What is wrong?"},
                    "element": {
                        "type": "plain_text_input",
                        "action_id": "title",
                        "max_length": 150,
                    },
                },
                {
                    "type": "input",
                    "block_id": "severity",
                    "label": {"type": "plain_text", "text": "Severity"},
                    "element": {
                        "type": "static_select",
                        "action_id": "severity",
                        "options": severity_options,
                        "initial_option": severity_options[1],
                    },
                },
                {
                    "type": "input",
                    "block_id": "labels",
                    "optional": True,
                    "label": {"type": "plain_text", "text": "Where (e.g. psp=adyen country=DE)"},
                    "element": {"type": "plain_text_input", "action_id": "labels"},
                },
            ],
        }
        try:
            self.client.views_open(trigger_id=str(where.trigger_id), view=view)
        except (SlackApiError, SlackRequestError) as exc:
            log.warning("declare form not opened: %s", exc)
            return False
        return True

    @staticmethod
    def _declared(body: Mapping[str, Any]) -> Declare | Invalid:
        values = _obj(_obj(_obj(body.get("view")).get("state")).get("values"))

        def text(block: str) -> str:
            return _str(_obj(_obj(values.get(block)).get(block)).get("value"))

        severity = _obj(_obj(_obj(values.get("severity")).get("severity")).get("selected_option"))
        return declare_form(text("title"), _str(severity.get("value")), text("labels"))

    def ack_declare(self, ack: Ack, body: dict[str, Any]) -> None:
        """The declare form is checked in the acknowledgement: Slack shows what is wrong
        beside the field, and the form stays open."""
        got = self._declared(body)
        if isinstance(got, Invalid):
            field = "labels" if "label" in got.problem else "title"
            ack(response_action="errors", errors={field: got.problem})
        else:
            ack()

    def on_declare_submit(self, body: dict[str, Any]) -> None:
        got = self._declared(body)
        if isinstance(got, Invalid):
            return  # refused in the acknowledgement
        view = _obj(body.get("view"))
        try:
            meta = _obj(json.loads(str(view.get("private_metadata") or "{}")))
        except ValueError:
            meta = {}
        user = _str(_obj(body.get("user")).get("id"))
        where = Where(user, _opt(meta.get("channel")), "button")
        self._guarded(
            where,
            lambda: self._deliver(
                self.ops.declare(got.title, Severity(got.severity), got.labels, user, "button"),
                where,
            ),
        )

    def _ask_reason(self, incident_id: str, option: str, where: Where) -> bool:
        """Open the silence form (a reason is asked for, not required); False when Slack
        would not open it (the silence then goes ahead without a reason)."""
        meta = {
            "incident": incident_id,
            "option": option,
            "channel": where.channel,
            "thread_ts": where.thread_ts,
            "message_ts": where.message_ts,
        }
        view = {
            "type": "modal",
            "callback_id": ids.SILENCE_MODAL,
            "private_metadata": json.dumps(meta),
            "title": {"type": "plain_text", "text": "Silence incident"},
            "submit": {"type": "plain_text", "text": "Silence"},
            "close": {"type": "plain_text", "text": "Cancel"},
            "blocks": [
                section(
                    f"{ids.SILENCE_OPTIONS[option]} for `{safe(incident_id, 20)}`: "
                    "notifications stop, the incident is still recorded."
                ).to_dict(),
                {
                    "type": "input",
                    "block_id": "reason",
                    "optional": True,
                    "label": {"type": "plain_text", "text": "Why? (shown in the thread)"},
                    "element": {
                        "type": "plain_text_input",
                        "action_id": "reason",
                        "max_length": 500,
                    },
                },
            ],
        }
        try:
            self.client.views_open(trigger_id=str(where.trigger_id), view=view)
        except (SlackApiError, SlackRequestError) as exc:
            log.warning("silence form not opened: %s", exc)
            return False
        return True

    def _review(self, action_id: str, value: str, where: Where) -> None:
        incident_id, _, version = value.partition(":")
        if not INCIDENT_ID.fullmatch(incident_id) or not version.isdigit():
            self._private(where, "That button does not name a postmortem draft I know.")
            return
        status = "approved" if action_id == ids.POSTMORTEM_APPROVE else "changes_requested"
        out = self.ops.review(incident_id, int(version), status, where.user, "button")
        self._deliver(out, where)

    def _button(self, action: Mapping[str, Any], where: Where) -> None:
        action_id = str(action.get("action_id") or "")
        if action_id in (ids.POSTMORTEM_APPROVE, ids.POSTMORTEM_CHANGES):
            if not is_user_id(where.user):
                self._private(where, "I do not know who pressed that button.")
                return
            self._review(action_id, str(action.get("value") or ""), where)
            return
        if action_id == ids.SILENCE:
            incident_id = str(action.get("block_id") or "").removeprefix(ids.ACTIONS_BLOCK)
            option = str((action.get("selected_option") or {}).get("value") or "")
        else:
            incident_id, option = str(action.get("value") or ""), ""
        if not INCIDENT_ID.fullmatch(incident_id) or not is_user_id(where.user):
            self._private(where, "That button does not name an incident I know.")
            return
        if action_id == ids.ACK:
            out = self.ops.acknowledge(incident_id, where.user, "button")
        elif action_id == ids.MITIGATE:
            out = self.ops.mitigate(incident_id, where.user, "button")
        elif action_id == ids.RESOLVE:
            out = self.ops.resolve(incident_id, where.user, "button")
        elif action_id == ids.ESCALATE:
            out = self.ops.escalate(incident_id, where.user, "button")
        elif action_id == ids.POSTMORTEM:
            out = self._draft(incident_id, where)
        elif action_id == ids.SILENCE and option in SILENCE_DURATIONS:
            refused = self.ops.refusal(where.user, "silence", incident_id, "button")
            if refused is not None:  # said at the click: the form never opens
                self._deliver(refused, where)
                return
            if where.trigger_id and self._ask_reason(incident_id, option, where):
                return  # silenced when the form comes back, with its reason
            out = self.ops.silence_incident(
                incident_id, where.user, "button", SILENCE_DURATIONS[option]
            )
        else:
            self._private(where, "I do not know that choice.")
            return
        self._deliver(out, where)

    def _incident(self, explicit: str | None, where: Where) -> StoredIncident | str:
        """The incident a command is about: named, the thread's, or the channel's only open
        one; else a short text saying which ids to choose from."""
        if explicit is not None:
            inc = self.store.find(explicit)
            if inc is None:
                return (
                    f"I know no incident `{safe(explicit, 40)}`. "
                    f"`{self.command} status` lists the open ones."
                )
            return inc
        thread = where.thread_ts
        if thread and where.channel:
            found = self.store.by_thread(thread, where.channel)
            if found is not None:
                return found
        open_now = self.store.incidents(open_only=True, limit=500)
        here = [i for i in open_now if where.channel and i.slack_channel == where.channel]
        if len(here) == 1:
            return here[0]
        choices = here or open_now
        if not choices:
            return "There are no open incidents. Name one (`INC-…`) to act on it."
        listed = ", ".join(f"`{safe(i.id, 20)}`" for i in choices[:5])
        more = f" and {len(choices) - 5} more" if len(choices) > 5 else ""
        return f"Which incident? Give its id (or ask in its thread). Open: {listed}{more}."

    # -- delivering ---------------------------------------------------------------------------

    def _deliver(self, out: Outcome, where: Where) -> None:
        noted = False
        if out.note is not None:
            target = _thread_of(out.incident)
            if target is None and where.channel and where.via != "command":
                target = (where.channel, where.thread_ts or where.message_ts or "")
            if target is not None and target[1]:
                noted = self._post(target[0], target[1], out.note)
        if not noted or where.via == "command":
            self._private(where, out.reply)

    def _thread(self, inc: StoredIncident) -> list[dict[str, Any]]:
        """The incident's thread as Slack has it (empty when it has none or it cannot be
        read: the summary then says only what the store knows)."""
        if not inc.slack_channel or not inc.slack_ts:
            return []
        try:
            resp = self.client.conversations_replies(
                channel=inc.slack_channel, ts=inc.slack_ts, limit=200
            )
        except (SlackApiError, SlackRequestError) as exc:
            log.warning("thread of %s not read: %s", inc.id, exc)
            return []
        return list(resp.get("messages") or [])

    def _bot_user(self) -> str | None:
        if self._bot_user_id is None:
            try:
                self._bot_user_id = str(self.client.auth_test().get("user_id") or "")
            except (SlackApiError, SlackRequestError):
                return None
        return self._bot_user_id or None

    def _answer(self, where: Where, message: Message) -> None:
        """Status and summaries: private for a slash command, in the thread for a mention."""
        if where.via == "mention" and where.channel:
            thread = where.thread_ts or where.message_ts
            try:
                self.client.chat_postMessage(
                    channel=where.channel,
                    thread_ts=thread,
                    text=cut(message.text, FALLBACK_LIMIT),
                    blocks=message.block_dicts(),
                    unfurl_links=False,
                )
                return
            except (SlackApiError, SlackRequestError) as exc:
                log.warning("could not answer in the thread: %s", exc)
        self._private(where, message.text, message)

    def _post(self, channel: str, thread_ts: str, text: str) -> bool:
        try:
            self.client.chat_postMessage(
                channel=channel,
                thread_ts=thread_ts,
                text=cut(text, FALLBACK_LIMIT),
                blocks=[section(text).to_dict()],
                unfurl_links=False,
            )
        except (SlackApiError, SlackRequestError) as exc:
            log.warning("could not post in the incident's thread: %s", exc)
            return False
        return True

    def _private(self, where: Where, text: str, message: Message | None = None) -> None:
        blocks = message.block_dicts() if message else [section(text).to_dict()]
        text = cut(text, FALLBACK_LIMIT)
        try:
            if where.respond is not None:
                where.respond(
                    text=text, blocks=blocks, response_type="ephemeral", replace_original=False
                )
            elif where.channel and where.user:
                kwargs: dict[str, Any] = {"thread_ts": where.thread_ts} if where.thread_ts else {}
                self.client.chat_postEphemeral(
                    channel=where.channel, user=where.user, text=text, blocks=blocks, **kwargs
                )
            else:
                log.warning("no way to answer %s by %s", where.via, where.user)
        except (SlackApiError, SlackRequestError, OSError) as exc:
            log.warning("could not answer %s privately: %s", where.user, exc)


def _thread_of(inc: StoredIncident | None) -> tuple[str, str] | None:
    if inc is not None and inc.slack_channel and inc.slack_ts:
        return inc.slack_channel, inc.slack_ts
    return None


def create_app(
    options: AppOptions,
    store: Store,
    *,
    client: WebClient,
    signing_secret: str | None = None,
    health: HealthSource | None = None,
    sources: HealthSource | None = None,
    clock: Callable[[], datetime] = _utcnow,
    verify_token: bool = True,
    group_cache_seconds: float = 60.0,
    ack_threads: int = 16,
    work_threads: int = 4,
    executors: tuple[ThreadPoolExecutor, ThreadPoolExecutor] | None = None,
) -> App:
    """The bolt app with every listener registered.

    ``client`` calls Slack's Web API with the bot token; ``signing_secret`` verifies
    requests in HTTP mode (None in Socket Mode: a random one, so that an HTTP request to this
    app can never pass verification); ``health`` (``DetectorHealth``) and ``sources``
    (``SourceHealth``) feed App Home; ``verify_token`` calls ``auth.test`` now rather than on
    the first request.

    Acknowledgements run on ``ack_threads``; the slow work after them (store, Web API) on a
    separate, smaller pool of ``work_threads``, so that a burst of clicks never leaves an
    acknowledgement queued or starved (of the GIL) behind the work of the others.
    ``executors`` gives the two pools instead (a test that waits until the app is idle).
    """
    if executors is None:
        executors = (
            ThreadPoolExecutor(max_workers=ack_threads, thread_name_prefix="ack"),
            ThreadPoolExecutor(max_workers=work_threads, thread_name_prefix="slack-work"),
        )
    acks, work = executors
    app = App(
        name="paytriage",
        client=client,
        signing_secret=signing_secret or secrets.token_hex(32),
        token_verification_enabled=verify_token,
        process_before_response=False,
        listener_executor=acks,
        logger=logging.getLogger("paytriage.slack_app.bolt"),
    )
    app.listener_runner.lazy_listener_runner = ThreadLazyListenerRunner(
        logger=app.logger,
        executor=work,
    )
    members = slack_members_of(client)
    permissions = Permissions(options.permissions, members, ttl=group_cache_seconds)
    ops = Operations(options, store, permissions, clock)
    h = Handlers(options, store, ops, client, health, clock, sources)

    app.command(options.command)(ack=h.ack_command, lazy=[h.run_command])
    app.event("app_mention")(ack=h.ack_only, lazy=[h.on_mention])
    app.event("app_home_opened")(ack=h.ack_only, lazy=[h.on_home])
    for action_id in (
        ids.ACK,
        ids.MITIGATE,
        ids.RESOLVE,
        ids.ESCALATE,
        ids.SILENCE,
        ids.POSTMORTEM,
        ids.POSTMORTEM_APPROVE,
        ids.POSTMORTEM_CHANGES,
    ):
        app.action(action_id)(ack=h.ack_only, lazy=[h.on_action])
    app.action(ids.RUNBOOK)(h.ack_only)  # a URL button: Slack opens the link itself
    app.view(ids.SILENCE_MODAL)(ack=h.ack_only, lazy=[h.on_silence_submit])
    app.view(ids.DECLARE_MODAL)(ack=h.ack_declare, lazy=[h.on_declare_submit])
    return app


__all__ = ["SILENCE_DURATIONS", "Handlers", "HealthSource", "Where", "create_app"]
