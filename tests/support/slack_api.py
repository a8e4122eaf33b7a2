"""A local Slack Web API on 127.0.0.1 for tests, checked against Slack's published spec.

Point the real client at it: ``WebClient(token=server.token, base_url=server.base_url)``.
Every call is recorded (:attr:`SlackApiServer.calls`), checked against
``shared/specs/slack-web-api.openapi.json`` (unknown method, missing required argument, argument
or type the spec does not know: see :attr:`SlackApiServer.spec_violations`) and answered the
way Slack answers: HTTP 200 with ``ok: false`` for API errors, HTTP 429 with ``Retry-After`` when
rate limited. Messages, threads, uploaded files and views are kept so tests can read back what
the bot produced, and faults (``fail_next``, ``delay``) can be queued per method.
"""

from __future__ import annotations

import base64
import copy
import hashlib
import itertools
import json
import os
import re
import secrets
import threading
import time
from collections import defaultdict, deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from email.message import EmailMessage
from email.parser import BytesParser
from email.policy import HTTP
from functools import cache
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, cast
from urllib.parse import parse_qsl, urlsplit

SPEC_FILE = "slack-web-api.openapi.json"
UPLOAD = "upload"  # pseudo-method name of the POST to an upload URL (for calls_to/fail_next)

BOT_TOKEN = "xoxb-paytriage-test"
APP_TOKEN = "xapp-1-A0PAYBOT01-paytriage-test"  # app-level token: Socket Mode only
TEAM_ID = "T0PAYTRIAGE"
BOT_USER_ID = "U0PAYBOT01"
BOT_ID = "B0PAYBOT01"
APP_ID = "A0PAYBOT01"
WORKSPACE_URL = "https://paytriage-test.slack.com/"

MAX_TEXT = 40_000  # msg_too_long above this, always
MAX_MESSAGE_BLOCKS = 50
MAX_VIEW_BLOCKS = 100
MAX_SECTION_TEXT = 3000
MAX_SECTION_FIELDS = 10
MAX_FIELD_TEXT = 2000
MAX_ATTACHMENTS = 100

# Fields Slack takes as JSON-encoded strings in form posts; decoded for recording and checks.
_JSON_FIELDS = ("blocks", "attachments", "view", "files", "metadata")
_ID = re.compile(r"[CGD][A-Z0-9]{8,}")
_USER_ID = re.compile(r"[UW][A-Z0-9]{8,}")
_FORM = "application/x-www-form-urlencoded"
_JSON = "application/json"
_MULTIPART = "multipart/form-data"


# --- the spec -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Param:
    type: str  # Swagger type: string, boolean, integer, number, array
    required: bool = False


@dataclass(frozen=True)
class MethodSpec:
    params: Mapping[str, Param]
    consumes: tuple[str, ...]


# The spec (2021) predates the two methods files_upload_v2 calls. Their arguments come from
# Slack's current method reference, docs.slack.dev/reference/methods/files.getUploadURLExternal
# and docs.slack.dev/reference/methods/files.completeUploadExternal (both POST, form or JSON).
_NEWER_METHODS = {
    "files.getUploadURLExternal": MethodSpec(
        {
            "filename": Param("string", True),
            "length": Param("integer", True),
            "alt_txt": Param("string"),
            "snippet_type": Param("string"),
        },
        (_FORM, _JSON),
    ),
    "files.completeUploadExternal": MethodSpec(
        {
            "files": Param("array", True),  # [{"id": "F…", "title": "…"}], JSON-encoded in forms
            "channel_id": Param("string"),
            "channels": Param("string"),  # comma-separated ids
            "thread_ts": Param("string"),
            "initial_comment": Param("string"),
            "blocks": Param("string"),
        },
        (_FORM, _JSON),
    ),
    # docs.slack.dev/reference/methods/apps.connections.open: POST, no arguments; an
    # app-level token (xapp-) in the Authorization header only. Answers the Socket Mode URL.
    "apps.connections.open": MethodSpec({}, (_FORM, _JSON)),
}
# Methods that take the app-level token; every other method takes the bot token.
_APP_TOKEN_METHODS = frozenset({"apps.connections.open"})
# Arguments newer than the spec, from Slack's current method reference: message metadata,
# docs.slack.dev/reference/methods/chat.postMessage (`metadata`: JSON object with
# `event_type` and `event_payload`) and conversations.history / conversations.replies
# (`include_all_metadata`: boolean; metadata is only returned with it).
_NEWER_PARAMS = {
    "chat.postMessage": {"metadata": Param("string")},
    "conversations.history": {"include_all_metadata": Param("boolean")},
    "conversations.replies": {"include_all_metadata": Param("boolean")},
}
# Arguments the spec leaves optional but Slack's current reference marks required (and Slack
# rejects calls without them).
_REQUIRED_NOW = {
    "conversations.history": ("channel",),
    "conversations.replies": ("channel", "ts"),
    "users.info": ("user",),
}
# Added by slack_sdk itself rather than by the caller: WebClient(team_id=...) puts team_id on
# every call. (The token travels as an Authorization header or a token argument; never a
# violation.) slack_sdk adds nothing else: it drops None-valued arguments.
_SDK_PARAMS = frozenset({"team_id"})


def spec_path() -> Path:
    """The Slack spec: $PAYTRIAGE_SLACK_SPEC, else shared/specs/ beside the repository."""
    if env := os.environ.get("PAYTRIAGE_SLACK_SPEC"):
        return Path(env)
    repo = Path(__file__).resolve().parents[2]
    for shared in (repo.parent / "shared", Path("/work/shared")):
        if (candidate := shared / "specs" / SPEC_FILE).is_file():
            return candidate
    raise FileNotFoundError(f"{SPEC_FILE} not found in shared/specs/ beside {repo}")


@cache
def load_spec(path: Path | None = None) -> dict[str, MethodSpec]:
    """Method name -> arguments (without ``token``) and accepted content types."""
    doc = json.loads((path or spec_path()).read_text())
    methods: dict[str, MethodSpec] = {}
    for route, operations in doc["paths"].items():
        for op in operations.values():  # one operation (get or post) per method
            params = {
                p["name"]: Param(p.get("type", "string"), bool(p.get("required")))
                for p in op.get("parameters", [])
                if p["name"] != "token"
            }
            methods[route.lstrip("/")] = MethodSpec(params, tuple(op.get("consumes", ())))
    methods.update(_NEWER_METHODS)
    for method, extra in _NEWER_PARAMS.items():
        methods[method] = MethodSpec({**methods[method].params, **extra}, methods[method].consumes)
    for method, names in _REQUIRED_NOW.items():
        params = dict(methods[method].params)
        params.update({n: Param(params[n].type, True) for n in names})
        methods[method] = MethodSpec(params, methods[method].consumes)
    return methods


def _type_ok(kind: str, value: Any) -> bool:
    if kind == "boolean":
        return isinstance(value, bool) or str(value).lower() in {"true", "false", "1", "0"}
    if kind == "integer":
        return not isinstance(value, bool) and re.fullmatch(r"-?\d+", str(value)) is not None
    if kind == "number":
        if isinstance(value, bool):
            return False
        try:
            return Decimal(str(value)).is_finite()
        except InvalidOperation:
            return False
    if kind == "array":
        return isinstance(value, list)
    return True  # strings: Slack takes JSON values (blocks, view) for these too


# --- records --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Call:
    method: str
    params: dict[str, Any]  # query and body merged; JSON-encoded fields decoded; no token
    headers: dict[str, str]
    token: str | None
    at: float


@dataclass
class Share:
    channel: str
    ts: str
    thread_ts: str | None


@dataclass
class UploadedFile:
    id: str
    filename: str
    length: int
    title: str | None = None
    content: bytes | None = None  # None until the upload URL received it
    shares: list[Share] = field(default_factory=list)


@dataclass(frozen=True)
class _Fault:
    error: str
    status: int
    retry_after: int | None


class _Fail(Exception):
    """An API error answer: {"ok": false, "error": ...}."""

    def __init__(
        self,
        error: str,
        *,
        status: int = 200,
        messages: list[str] | None = None,
        retry_after: int | None = None,
    ) -> None:
        super().__init__(error)
        self.error, self.status, self.messages = error, status, messages
        self.retry_after = retry_after  # sent as a Retry-After header


_DEFAULT_ERRORS = {429: "ratelimited", 500: "internal_error", 503: "service_unavailable"}
_Answer = tuple[int, dict[str, str], bytes]


def _stable_id(prefix: str, key: str) -> str:
    digest = base64.b32encode(hashlib.sha1(key.encode()).digest()).decode()  # noqa: S324
    return prefix + digest[:10]


def _flag(value: Any) -> bool:
    return value is True or str(value).lower() in {"1", "true"}


def _absent(value: Any) -> bool:
    return value is None or value == ""


# --- the server -----------------------------------------------------------------------------


class SlackApiServer:
    """Slack Web API on 127.0.0.1 (a context manager); ``base_url`` ends in ``/api/``."""

    def __init__(
        self,
        token: str = BOT_TOKEN,
        *,
        app_token: str = APP_TOKEN,
        channels: Mapping[str, str] | None = None,
        missing_channels: Iterable[str] = (),
        spec: Path | None = None,
    ) -> None:
        self.token = token
        self.app_token = app_token
        # What apps.connections.open answers: the ws:// URL of a Socket Mode server that a
        # test runs (None: the method fails as not implemented).
        self.socket_mode_url: str | None = None
        self._spec = load_spec(spec)
        self._lock = threading.RLock()
        self._stop = threading.Event()
        self._calls: list[Call] = []
        self._violations: list[str] = []
        self._faults: dict[str, deque[_Fault]] = defaultdict(deque)
        self._delays: dict[str, list[Any]] = {}  # method -> [seconds, remaining calls or None]
        self._ts = itertools.count(1)
        self._names: dict[str, str] = {}  # channel name -> id
        self._channel_names: dict[str, str] = {}  # id -> name
        self._missing = {c.removeprefix("#") for c in missing_channels}
        self._messages: dict[str, list[dict[str, Any]]] = defaultdict(list)
        self._ephemeral: list[dict[str, Any]] = []
        self._files: dict[str, UploadedFile] = {}
        self._upload_urls: dict[str, str] = {}  # secret path part -> file id
        self._home_views: dict[str, dict[str, Any]] = {}
        self._opened_views: list[dict[str, Any]] = []
        self._users: dict[str, dict[str, Any]] = {}
        self._usergroups: dict[str, list[str]] = {}
        self.add_user(BOT_USER_ID, "paytriage", is_bot=True)
        for name, cid in (channels or {}).items():
            self.add_channel(name, cid)
        self._handlers: dict[str, Callable[[dict[str, Any]], dict[str, Any]]] = {
            "auth.test": self._auth_test,
            "chat.postMessage": self._chat_post_message,
            "chat.update": self._chat_update,
            "chat.postEphemeral": self._chat_post_ephemeral,
            "conversations.history": self._conversations_history,
            "conversations.replies": self._conversations_replies,
            "conversations.list": self._conversations_list,
            "views.publish": self._views_publish,
            "views.open": self._views_open,
            "users.info": self._users_info,
            "usergroups.users.list": self._usergroups_users_list,
            "files.getUploadURLExternal": self._files_get_upload_url,
            "files.completeUploadExternal": self._files_complete_upload,
            "apps.connections.open": self._apps_connections_open,
        }
        self._httpd = _HTTPServer(self)
        self.port = self._httpd.server_address[1]
        self.root_url = f"http://127.0.0.1:{self.port}"
        self.base_url = f"{self.root_url}/api/"
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, args=(0.05,), name="slack-api", daemon=True
        )

    # lifecycle

    def start(self) -> SlackApiServer:
        self._thread.start()
        return self

    def close(self) -> None:
        self._stop.set()  # wakes delayed handlers
        if self._thread.is_alive():
            self._httpd.shutdown()
            self._thread.join(5)
        self._httpd.server_close()

    def __enter__(self) -> SlackApiServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    # set-up

    def add_channel(self, name: str, channel_id: str | None = None) -> str:
        name = name.removeprefix("#")
        with self._lock:
            cid = channel_id or self._names.get(name) or _stable_id("C", name)
            self._names[name] = cid
            self._channel_names[cid] = name
            return cid

    def channel_id(self, channel: str) -> str:
        """The id this server answers for a channel name ("#payments-oncall") or id."""
        if _ID.fullmatch(channel):
            return channel
        return self.add_channel(channel)

    def add_user(
        self,
        user_id: str,
        name: str,
        *,
        real_name: str | None = None,
        email: str | None = None,
        tz: str = "Europe/London",
        is_bot: bool = False,
    ) -> None:
        real = real_name or name
        profile: dict[str, Any] = {"real_name": real, "display_name": name}
        if email:
            profile["email"] = email
        with self._lock:
            self._users[user_id] = {
                "id": user_id,
                "team_id": TEAM_ID,
                "name": name,
                "real_name": real,
                "deleted": False,
                "tz": tz,
                "is_bot": is_bot,
                "profile": profile,
            }

    def add_usergroup(self, usergroup_id: str, users: Iterable[str]) -> None:
        with self._lock:
            self._usergroups[usergroup_id] = list(users)

    # faults

    def fail_next(
        self,
        method: str,
        error: str | None = None,
        *,
        status: int = 429,
        retry_after: int | None = 1,
        count: int = 1,
    ) -> None:
        """Answer the next ``count`` calls of ``method`` with ``error`` and HTTP ``status``.

        429 carries ``Retry-After: retry_after``; the error defaults to Slack's for the status
        (ratelimited, internal_error, service_unavailable). status=200 gives an API error.
        """
        self._known(method)
        fault = _Fault(error or _DEFAULT_ERRORS.get(status, "internal_error"), status, retry_after)
        with self._lock:
            self._faults[method].extend([fault] * count)

    def delay(self, method: str, seconds: float, *, count: int | None = None) -> None:
        """Hold calls of ``method`` for ``seconds`` before processing them (all, or ``count``).

        The call is still carried out after the delay, as Slack does when a client times out.
        """
        self._known(method)
        with self._lock:
            self._delays[method] = [seconds, count]

    def _known(self, method: str) -> None:
        if method != UPLOAD and method not in self._spec:
            raise ValueError(f"{method!r} is not a Slack Web API method")

    # what the bot did

    @property
    def calls(self) -> list[Call]:
        with self._lock:
            return list(self._calls)

    def calls_to(self, method: str) -> list[Call]:
        return [c for c in self.calls if c.method == method]

    @property
    def spec_violations(self) -> list[str]:
        with self._lock:
            return list(self._violations)

    def messages(self, channel: str) -> list[dict[str, Any]]:
        """Top-level messages of a channel (name or id), oldest first; replies are in threads."""
        with self._lock:
            msgs = self._messages.get(self.channel_id(channel), [])
            return copy.deepcopy([m for m in msgs if not _is_reply(m)])

    def thread(self, channel: str, ts: str) -> list[dict[str, Any]]:
        """The thread rooted at ``ts``: the root (if it exists) then its replies."""
        with self._lock:
            msgs = self._messages.get(self.channel_id(channel), [])
            return copy.deepcopy([m for m in msgs if m["ts"] == ts or m.get("thread_ts") == ts])

    @property
    def ephemeral(self) -> list[dict[str, Any]]:
        with self._lock:
            return copy.deepcopy(self._ephemeral)

    @property
    def files(self) -> dict[str, UploadedFile]:
        with self._lock:
            return copy.deepcopy(self._files)

    @property
    def home_views(self) -> dict[str, dict[str, Any]]:
        with self._lock:
            return copy.deepcopy(self._home_views)

    @property
    def opened_views(self) -> list[dict[str, Any]]:
        with self._lock:
            return copy.deepcopy(self._opened_views)

    # HTTP

    def _serve(self, method: str, url: str, headers: dict[str, str], body: bytes) -> _Answer:
        parts = urlsplit(url)
        if parts.path.startswith("/api/"):
            return self._api(parts.path.removeprefix("/api/"), parts.query, headers, body)
        if parts.path.startswith("/upload/v1/") and method == "POST":
            return self._upload(parts.path.removeprefix("/upload/v1/"), headers, body)
        return 404, {"Content-Type": "text/plain"}, b"not found"

    def _api(self, method: str, query: str, headers: dict[str, str], body: bytes) -> _Answer:
        params: dict[str, Any] = dict(parse_qsl(query, keep_blank_values=True))
        media = headers.get("Content-Type", "").split(";")[0].strip().lower()
        try:
            params.update(_parse_body(media, headers.get("Content-Type", ""), body))
        except _Fail as fail:
            self._record(method, params, headers, None)
            return _json_answer(fail.status, _error_body(fail))
        for name in _JSON_FIELDS:
            if name in params:
                params[name] = _maybe_json(params[name])
        # The token: a Bearer header, else a token argument; never from a JSON body (Slack
        # documents that JSON posts must carry it in the Authorization header).
        auth = headers.get("Authorization", "")
        token = auth.removeprefix("Bearer ").strip() if auth.startswith("Bearer ") else None
        in_header = token is not None
        in_json = media == _JSON and "token" not in dict(parse_qsl(query))
        given = params.pop("token", None)
        token = token or (None if in_json else given)
        self._record(method, params, headers, token)

        spec = self._spec.get(method)
        if spec is None:
            return _json_answer(200, {"ok": False, "error": "unknown_method", "req_method": method})
        self._check_against_spec(method, spec, params, media)
        try:
            if token is None:
                raise _Fail("not_authed")
            expected = self.app_token if method in _APP_TOKEN_METHODS else self.token
            if token != expected:
                known = token in (self.token, self.app_token)
                raise _Fail("not_allowed_token_type" if known else "invalid_auth")
            if method in _APP_TOKEN_METHODS and not in_header:
                raise _Fail("not_authed")  # the app-level token is taken from the header only
            self._apply_faults(method)
            missing = [n for n, p in spec.params.items() if p.required and _absent(params.get(n))]
            if missing:
                raise _Fail(
                    "invalid_arguments",
                    messages=[f"[ERROR] missing required field: {n}" for n in missing],
                )
            handler = self._handlers.get(method)
            if handler is None:
                raise _Fail("not_implemented")  # in the spec, but this test server lacks it
            with self._lock:
                return _json_answer(200, {"ok": True, **handler(params)})
        except _Fail as fail:
            return _json_answer(fail.status, _error_body(fail), fail.retry_after)

    def _record(
        self, method: str, params: dict[str, Any], headers: dict[str, str], token: str | None
    ) -> None:
        with self._lock:
            self._calls.append(Call(method, params, headers, token, time.time()))

    def _check_against_spec(
        self, method: str, spec: MethodSpec, params: dict[str, Any], media: str
    ) -> None:
        found = []
        for name, value in params.items():
            param = spec.params.get(name)
            if param is None:
                if name not in _SDK_PARAMS:
                    found.append(f"{method}: argument {name!r} is not in the spec")
            elif not _type_ok(param.type, value):
                found.append(f"{method}: {name}={value!r} is not a valid {param.type}")
        if media in (_FORM, _JSON) and spec.consumes and media not in spec.consumes:
            found.append(f"{method}: sent as {media}; the spec accepts {', '.join(spec.consumes)}")
        if found:
            with self._lock:
                self._violations.extend(found)

    def _apply_faults(self, method: str) -> None:
        with self._lock:
            queue = self._faults.get(method)
            fault = queue.popleft() if queue else None
            wait = self._delays.get(method)
            if fault is None and wait is not None and wait[1] is not None:
                wait[1] -= 1
                if wait[1] <= 0:
                    del self._delays[method]
        if fault is not None:
            retry_after = fault.retry_after if fault.status == 429 else None
            raise _Fail(fault.error, status=fault.status, retry_after=retry_after)
        if wait is not None:
            self._stop.wait(wait[0])

    def _upload(self, secret: str, headers: dict[str, str], body: bytes) -> _Answer:
        with self._lock:
            file_id = self._upload_urls.get(secret)
        self._record(UPLOAD, {"file_id": file_id, "bytes": len(body)}, headers, None)
        text = {"Content-Type": "text/plain; charset=utf-8"}
        if file_id is None:
            return 404, text, b"unknown upload url"
        try:
            self._apply_faults(UPLOAD)
        except _Fail as fail:
            if fail.retry_after is not None:
                text["Retry-After"] = str(fail.retry_after)
            return fail.status, text, fail.error.encode()
        content = body
        ctype = headers.get("Content-Type", "")
        if ctype.startswith(_MULTIPART):  # raw bytes or a multipart form, as Slack takes both
            parts = _multipart(ctype, body)
            content = next((v for v in parts.values() if isinstance(v, bytes)), b"")
        with self._lock:
            self._files[file_id].content = content
        return 200, text, f"OK - {len(content)}".encode()

    # API methods (called with the lock held; arguments already checked against the spec)

    def _auth_test(self, p: dict[str, Any]) -> dict[str, Any]:
        return {
            "url": WORKSPACE_URL,
            "team": "Paytriage Test",
            "user": "paytriage",
            "team_id": TEAM_ID,
            "user_id": BOT_USER_ID,
            "bot_id": BOT_ID,
            "is_enterprise_install": False,
        }

    def _chat_post_message(self, p: dict[str, Any]) -> dict[str, Any]:
        cid = self._resolve(str(p["channel"]), names_ok=True)
        msg = self._new_message(_content(p))
        if p.get("metadata") is not None:
            msg["metadata"] = _check_metadata(p["metadata"])
        if p.get("thread_ts"):
            self._add_reply(cid, msg, str(p["thread_ts"]), _flag(p.get("reply_broadcast")))
        self._messages[cid].append(msg)
        return {"channel": cid, "ts": msg["ts"], "message": copy.deepcopy(msg)}

    def _chat_update(self, p: dict[str, Any]) -> dict[str, Any]:
        cid = self._resolve(str(p["channel"]))
        msg = self._find(cid, str(p["ts"]))
        if msg is None:
            raise _Fail("message_not_found")
        content = _content(p)
        msg["text"] = content["text"]
        for key in ("blocks", "attachments"):  # left as they were unless given
            if key in content:
                msg[key] = content[key]
        msg["edited"] = {"user": BOT_USER_ID, "ts": self._next_ts()}
        return {"channel": cid, "ts": msg["ts"], "text": msg["text"], "message": copy.deepcopy(msg)}

    def _chat_post_ephemeral(self, p: dict[str, Any]) -> dict[str, Any]:
        cid = self._resolve(str(p["channel"]), names_ok=True)
        msg = self._new_message(_content(p))
        self._ephemeral.append({"channel": cid, "user": str(p["user"]), "message": msg})
        return {"message_ts": msg["ts"]}

    def _conversations_history(self, p: dict[str, Any]) -> dict[str, Any]:
        cid = self._resolve(str(p["channel"]))
        msgs = [m for m in self._messages.get(cid, []) if not _is_reply(m) or _is_broadcast(m)]
        msgs = _between(msgs, p)[::-1]  # newest first
        return _with_metadata(self._page(msgs, p, default_limit=100), p)

    def _conversations_replies(self, p: dict[str, Any]) -> dict[str, Any]:
        cid = self._resolve(str(p["channel"]))
        msg = self._find(cid, str(p["ts"]))
        if msg is None:
            raise _Fail("thread_not_found")
        root_ts = msg.get("thread_ts", msg["ts"])
        thread = [m for m in self._messages[cid] if m["ts"] == root_ts]
        thread += [m for m in self._messages[cid] if _is_reply(m) and m["thread_ts"] == root_ts]
        return _with_metadata(self._page(_between(thread, p), p, default_limit=1000), p)

    def _conversations_list(self, p: dict[str, Any]) -> dict[str, Any]:
        channels = [
            {"id": cid, "name": name, "is_channel": True, "is_archived": False}
            for cid, name in sorted(self._channel_names.items())
            if name not in self._missing
        ]
        page = self._page(channels, p, default_limit=100)
        page["channels"] = page.pop("messages")
        return page

    def _views_publish(self, p: dict[str, Any]) -> dict[str, Any]:
        view = _check_view(p["view"], kinds=("home",))
        old = self._home_views.get(str(p["user_id"]))
        if p.get("hash") and old is not None and p["hash"] != old["hash"]:
            raise _Fail("hash_conflict")
        published = self._view(view, old["id"] if old else None)
        self._home_views[str(p["user_id"])] = published
        return {"view": copy.deepcopy(published)}

    def _views_open(self, p: dict[str, Any]) -> dict[str, Any]:
        view = _check_view(p["view"], kinds=("modal",))
        if not view.get("title"):
            raise _Fail("invalid_arguments", messages=["[ERROR] missing required field: title"])
        opened = self._view(view, None)
        self._opened_views.append({"trigger_id": p["trigger_id"], **opened})
        return {"view": copy.deepcopy(opened)}

    def _users_info(self, p: dict[str, Any]) -> dict[str, Any]:
        user = self._users.get(str(p["user"]))
        if user is None:
            raise _Fail("user_not_found")
        return {"user": copy.deepcopy(user)}

    def _usergroups_users_list(self, p: dict[str, Any]) -> dict[str, Any]:
        users = self._usergroups.get(str(p["usergroup"]))
        if users is None:
            raise _Fail("no_such_subteam")
        return {"users": list(users)}

    def _apps_connections_open(self, p: dict[str, Any]) -> dict[str, Any]:
        if self.socket_mode_url is None:
            raise _Fail("not_implemented", messages=["[ERROR] no Socket Mode server is set"])
        return {"url": self.socket_mode_url}

    def _files_get_upload_url(self, p: dict[str, Any]) -> dict[str, Any]:
        length = int(p["length"]) if _type_ok("integer", p["length"]) else 0
        if length <= 0:
            raise _Fail("missing_argument")  # Slack's answer to length 0
        file_id = _stable_id("F", f"{self.port}/{len(self._files)}")
        secret = secrets.token_urlsafe(16)
        self._files[file_id] = UploadedFile(file_id, str(p["filename"]), length)
        self._upload_urls[secret] = file_id
        return {"upload_url": f"{self.root_url}/upload/v1/{secret}", "file_id": file_id}

    def _files_complete_upload(self, p: dict[str, Any]) -> dict[str, Any]:
        entries = p["files"]
        if not isinstance(entries, list) or not all(isinstance(e, dict) for e in entries):
            raise _Fail("invalid_arguments", messages=["[ERROR] files must be an array of objects"])
        uploads = []
        for entry in entries:
            upload = self._files.get(str(entry.get("id")))
            if upload is None or upload.content is None:  # unknown, or never uploaded
                raise _Fail("file_not_found")
            upload.title = entry.get("title") or upload.filename
            uploads.append(upload)
        targets = [str(p["channel_id"])] if p.get("channel_id") else []
        targets += [c for c in str(p.get("channels", "")).split(",") if c]
        thread_ts = str(p["thread_ts"]) if p.get("thread_ts") else None
        if thread_ts and len(targets) != 1:
            raise _Fail("invalid_arguments", messages=["[ERROR] thread_ts needs one channel"])
        channel_ids = [self._resolve(c) for c in targets]
        content: dict[str, Any] = {"text": str(p.get("initial_comment") or "")}
        if not content["text"] and isinstance(p.get("blocks"), list):
            content["blocks"] = p["blocks"]  # Slack ignores blocks when initial_comment is set
        for cid in channel_ids:
            msg = self._new_message(content)
            msg["upload"] = True
            if thread_ts:
                self._add_reply(cid, msg, thread_ts, broadcast=False)
            for upload in uploads:
                upload.shares.append(Share(cid, msg["ts"], msg.get("thread_ts")))
            msg["files"] = [self._file_object(u) for u in uploads]
            self._messages[cid].append(msg)
        return {"files": [self._file_object(u) for u in uploads]}

    # state helpers

    def _next_ts(self) -> str:
        micros = 1_700_000_000_000_000 + next(self._ts) * 100
        return f"{micros // 1_000_000}.{micros % 1_000_000:06d}"

    def _resolve(self, channel: str, *, names_ok: bool = False) -> str:
        """Channel id for an argument. Only chat.postMessage/postEphemeral take names."""
        channel = channel.strip()
        if channel in self._missing or channel.removeprefix("#") in self._missing:
            raise _Fail("channel_not_found")
        if _ID.fullmatch(channel):
            self._channel_names.setdefault(channel, channel.lower())
            return channel
        if names_ok and _USER_ID.fullmatch(channel):
            return _stable_id("D", channel)  # posting to a user id goes to the app's DM with them
        if not names_ok:
            raise _Fail("channel_not_found")
        return self.add_channel(channel)

    def _find(self, cid: str, ts: str) -> dict[str, Any] | None:
        return next((m for m in self._messages.get(cid, []) if m["ts"] == ts), None)

    def _new_message(self, content: Mapping[str, Any]) -> dict[str, Any]:
        return {
            "type": "message",
            "user": BOT_USER_ID,
            "bot_id": BOT_ID,
            "app_id": APP_ID,
            "team": TEAM_ID,
            "ts": self._next_ts(),
            **copy.deepcopy(dict(content)),
        }

    def _add_reply(self, cid: str, msg: dict[str, Any], thread_ts: str, broadcast: bool) -> None:
        root = self._find(cid, thread_ts)
        if root is not None and _is_reply(root):  # a reply's ts: Slack threads on its parent
            thread_ts = root["thread_ts"]
            root = self._find(cid, thread_ts)
        msg["thread_ts"] = thread_ts
        if broadcast:
            msg["subtype"] = "thread_broadcast"
        if root is None:  # Slack accepts an unknown thread_ts; the reply is then never shown
            return
        msg["parent_user_id"] = root["user"]
        root["thread_ts"] = root["ts"]
        root["reply_count"] = root.get("reply_count", 0) + 1
        users = root.setdefault("reply_users", [])
        if msg["user"] not in users:
            users.append(msg["user"])
        root["reply_users_count"] = len(users)
        root["latest_reply"] = msg["ts"]

    def _page(
        self, msgs: list[dict[str, Any]], p: dict[str, Any], default_limit: int
    ) -> dict[str, Any]:
        limit = int(p["limit"]) if _type_ok("integer", p.get("limit")) else default_limit
        start = 0
        if p.get("cursor"):
            try:
                start = int(base64.b64decode(str(p["cursor"])).decode().removeprefix("next:"))
            except ValueError as exc:
                raise _Fail("invalid_cursor") from exc
        end = start + max(limit, 1)
        more = end < len(msgs)
        cursor = base64.b64encode(f"next:{end}".encode()).decode() if more else ""
        return {
            "messages": copy.deepcopy(msgs[start:end]),
            "has_more": more,
            "response_metadata": {"next_cursor": cursor},
        }

    def _view(self, view: dict[str, Any], view_id: str | None) -> dict[str, Any]:
        return {
            "id": view_id or _stable_id("V", f"{self.port}/{self._next_ts()}"),
            "team_id": TEAM_ID,
            "app_id": APP_ID,
            "bot_id": BOT_ID,
            "private_metadata": "",
            "callback_id": "",
            "external_id": "",
            **copy.deepcopy(view),
            "hash": self._next_ts().replace(".", "") + ".abc",
        }

    def _file_object(self, upload: UploadedFile) -> dict[str, Any]:
        public: dict[str, list[dict[str, Any]]] = defaultdict(list)
        for share in upload.shares:
            entry = {"ts": share.ts, "channel_name": self._channel_names.get(share.channel, "")}
            if share.thread_ts:
                entry["thread_ts"] = share.thread_ts
            public[share.channel].append(entry)
        name = upload.filename
        return {
            "id": upload.id,
            "name": name,
            "title": upload.title or name,
            "size": len(upload.content or b""),
            "filetype": name.rsplit(".", 1)[-1] if "." in name else "binary",
            "user": BOT_USER_ID,
            "channels": list(public),
            "shares": {"public": dict(public)} if public else {},
            "permalink": f"{WORKSPACE_URL}files/{BOT_USER_ID}/{upload.id}/{name}",
        }


# --- message content and bodies -------------------------------------------------------------


def _content(p: Mapping[str, Any]) -> dict[str, Any]:
    """text/blocks/attachments of a message, checked as Slack checks them."""
    text, blocks, attachments = p.get("text"), p.get("blocks"), p.get("attachments")
    if text is not None and len(str(text)) > MAX_TEXT:
        raise _Fail("msg_too_long")
    out: dict[str, Any] = {"text": "" if text is None else str(text)}
    if blocks is not None:
        _check_blocks(blocks, MAX_MESSAGE_BLOCKS, "/blocks", "invalid_blocks")
        out["blocks"] = blocks
    if attachments is not None:
        if not isinstance(attachments, list):
            raise _Fail("invalid_attachments")
        if len(attachments) > MAX_ATTACHMENTS:
            raise _Fail("too_many_attachments")
        out["attachments"] = attachments
    if not (out["text"] or blocks or attachments or p.get("markdown_text")):
        raise _Fail("no_text")
    return out


def _check_blocks(blocks: Any, limit: int, pointer: str, error: str) -> None:
    if not isinstance(blocks, list):
        raise _Fail("invalid_blocks_format" if error == "invalid_blocks" else error)
    problems = []
    if len(blocks) > limit:
        problems.append(f"[ERROR] no more than {limit} items allowed [json-pointer:{pointer}]")
    for i, block in enumerate(blocks):
        at = f"{pointer}/{i}"
        if not isinstance(block, dict) or "type" not in block:
            problems.append(f"[ERROR] missing required field: type [json-pointer:{at}]")
            continue
        if block["type"] != "section":
            continue
        text = block.get("text")
        if isinstance(text, dict) and len(str(text.get("text", ""))) > MAX_SECTION_TEXT:
            problems.append(
                f"[ERROR] must be less than {MAX_SECTION_TEXT + 1} characters "
                f"[json-pointer:{at}/text/text]"
            )
        fields = block.get("fields") or []
        if len(fields) > MAX_SECTION_FIELDS:
            problems.append(
                f"[ERROR] no more than {MAX_SECTION_FIELDS} items allowed [json-pointer:{at}/fields]"
            )
        for j, f in enumerate(fields):
            if isinstance(f, dict) and len(str(f.get("text", ""))) > MAX_FIELD_TEXT:
                problems.append(
                    f"[ERROR] must be less than {MAX_FIELD_TEXT + 1} characters "
                    f"[json-pointer:{at}/fields/{j}/text]"
                )
    if problems:
        raise _Fail(error, messages=problems)


def _check_view(view: Any, kinds: tuple[str, ...]) -> dict[str, Any]:
    if not isinstance(view, dict):
        raise _Fail("invalid_arguments", messages=["[ERROR] view must be a JSON object"])
    if view.get("type") not in kinds:
        raise _Fail(
            "invalid_arguments",
            messages=[f"[ERROR] view type must be {' or '.join(kinds)} [json-pointer:/view/type]"],
        )
    _check_blocks(view.get("blocks", []), MAX_VIEW_BLOCKS, "/view/blocks", "invalid_arguments")
    return view


def _is_reply(msg: Mapping[str, Any]) -> bool:
    return "thread_ts" in msg and msg["thread_ts"] != msg["ts"]


def _is_broadcast(msg: Mapping[str, Any]) -> bool:
    return msg.get("subtype") == "thread_broadcast"


def _check_metadata(value: Any) -> dict[str, Any]:
    """Message metadata as Slack takes it: an object with an `event_type` name and an
    `event_payload` object (docs.slack.dev/messaging/message-metadata)."""
    if (
        not isinstance(value, dict)
        or not isinstance(value.get("event_type"), str)
        or not re.fullmatch(r"[A-Za-z0-9_]{1,255}", value["event_type"])
        or not isinstance(value.get("event_payload"), dict)
    ):
        raise _Fail("invalid_metadata_format")
    return copy.deepcopy(value)


def _with_metadata(page: dict[str, Any], p: Mapping[str, Any]) -> dict[str, Any]:
    """Metadata comes back only when asked for with include_all_metadata."""
    if not _flag(p.get("include_all_metadata")):
        for m in page["messages"]:
            m.pop("metadata", None)
    return page


def _between(msgs: list[dict[str, Any]], p: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Messages within oldest/latest (exclusive unless inclusive), as Slack filters them."""
    oldest = Decimal(str(p["oldest"])) if _type_ok("number", p.get("oldest")) else None
    latest = Decimal(str(p["latest"])) if _type_ok("number", p.get("latest")) else None
    inclusive = _flag(p.get("inclusive"))

    def keep(m: Mapping[str, Any]) -> bool:
        ts = Decimal(m["ts"])
        low = oldest is None or ts > oldest or (inclusive and ts == oldest)
        high = latest is None or ts < latest or (inclusive and ts == latest)
        return low and high

    return [m for m in msgs if keep(m)]


def _maybe_json(value: Any) -> Any:
    if isinstance(value, str) and value.lstrip()[:1] in ("[", "{"):
        try:
            return json.loads(value)
        except json.JSONDecodeError:
            return value
    return value


def _parse_body(media: str, content_type: str, body: bytes) -> dict[str, Any]:
    if not body:
        return {}
    if media == _JSON:
        try:
            data = json.loads(body)
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise _Fail("invalid_json") from exc
        if not isinstance(data, dict):
            raise _Fail("json_not_object")
        return data
    if media == _FORM:
        return dict(parse_qsl(body.decode("utf-8"), keep_blank_values=True))
    if media == _MULTIPART:
        return _multipart(content_type, body)
    raise _Fail("invalid_post_type")


def _multipart(content_type: str, body: bytes) -> dict[str, str | bytes]:
    head = f"Content-Type: {content_type}\r\n\r\n".encode()
    msg = cast(EmailMessage, BytesParser(policy=HTTP).parsebytes(head + body))
    out: dict[str, str | bytes] = {}
    for part in msg.iter_parts():
        name = str(part.get_param("name", header="content-disposition") or "")
        payload = cast(bytes, part.get_payload(decode=True) or b"")
        out[name] = payload if part.get_filename() else payload.decode("utf-8")
    return out


def _error_body(fail: _Fail) -> dict[str, Any]:
    body: dict[str, Any] = {"ok": False, "error": fail.error}
    if fail.messages:
        body["response_metadata"] = {"messages": fail.messages}
    return body


def _json_answer(status: int, body: Mapping[str, Any], retry_after: int | None = None) -> _Answer:
    headers = {"Content-Type": "application/json; charset=utf-8"}
    headers["X-Slack-Req-Id"] = secrets.token_hex(16)
    if retry_after is not None:
        headers["Retry-After"] = str(retry_after)
    return status, headers, json.dumps(body).encode()


# --- HTTP plumbing --------------------------------------------------------------------------


def _title(name: str) -> str:
    return "-".join(part.capitalize() for part in name.split("-"))


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, app: SlackApiServer) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.app = app


class _Handler(BaseHTTPRequestHandler):
    server: _HTTPServer

    def _answer(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        # Header names as Title-Case (urllib sends "Content-type", "User-agent").
        headers = {_title(k): v for k, v in self.headers.items()}
        status, out_headers, payload = self.server.app._serve(
            self.command, self.path, headers, body
        )
        self.send_response(status)
        for name, value in out_headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    do_GET = _answer
    do_POST = _answer

    def log_message(self, format: str, *args: Any) -> None:  # quiet test output
        pass
