"""Who may acknowledge, mitigate, escalate, silence, resolve, declare incidents and approve
postmortems (``slack.permissions``).

Each list holds Slack user ids (``U…``/``W…``) and user-group ids (``S…``); an empty list lets
everyone. Group members are read with ``usergroups.users.list`` and kept for a short while
(``ttl``), so a burst of clicks costs one call. A group that cannot be read counts as empty:
the check fails closed, and the refusal says so.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass

from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError, SlackRequestError

from paytriage.config.models import Permissions as PermissionsConfig

log = logging.getLogger(__name__)

USER = re.compile(r"^[UW][A-Z0-9]{2,30}$")
GROUP = re.compile(r"^S[A-Z0-9]{2,30}$")
# Reading (status, summary, help) is open to all. Acknowledging is guarded too: it also
# acknowledges the PagerDuty page, which stops its escalation.
GUARDED = ("acknowledge", "mitigate", "escalate", "silence", "resolve", "declare", "review")


class GroupLookupError(RuntimeError):
    """A user group's members could not be read."""


MembersOf = Callable[[str], Collection[str]]  # user-group id -> user ids (may raise)


def permitted(user_id: str, allowed: Sequence[str], members_of: MembersOf) -> bool:
    """Whether ``user_id`` is in ``allowed`` directly or through one of its user groups
    (an empty ``allowed`` lets everyone). Pure apart from ``members_of``."""
    if not allowed:
        return True
    if user_id in allowed:
        return True
    for entry in allowed:
        if not GROUP.fullmatch(entry):
            continue
        try:
            if user_id in members_of(entry):
                return True
        except GroupLookupError as exc:
            log.warning("user group %s could not be read: %s", entry, exc)
    return False


@dataclass(frozen=True)
class Decision:
    allowed: bool
    lookup_failed: bool = False


class Permissions:
    """``allowed(user, action)`` for the guarded actions, with user groups cached."""

    def __init__(
        self,
        config: PermissionsConfig,
        members_of: MembersOf,
        *,
        ttl: float = 60.0,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.config = config
        self._fetch = members_of
        self._ttl = ttl
        self._now = monotonic
        self._cache: dict[str, tuple[float, frozenset[str]]] = {}
        self._lock = threading.Lock()
        for action in GUARDED:
            for entry in self.rules(action):
                if not (USER.fullmatch(entry) or GROUP.fullmatch(entry)):
                    log.warning(
                        "slack.permissions.%s: %r is neither a user id (U…) nor a user-group "
                        "id (S…); it is ignored",
                        action,
                        entry,
                    )

    def rules(self, action: str) -> list[str]:
        """The configured ids for ``action`` (empty: everyone; unguarded actions: [])."""
        return list(getattr(self.config, action, [])) if action in GUARDED else []

    def members(self, group_id: str) -> frozenset[str]:
        """A group's members, from the cache while fresh; raises GroupLookupError."""
        now = self._now()
        with self._lock:
            hit = self._cache.get(group_id)
            if hit is not None and now - hit[0] < self._ttl:
                return hit[1]
        users = frozenset(self._fetch(group_id))
        with self._lock:
            self._cache[group_id] = (now, users)
        return users

    def check(self, user_id: str, action: str) -> Decision:
        failed = False

        def members_of(group_id: str) -> Collection[str]:
            nonlocal failed
            try:
                return self.members(group_id)
            except GroupLookupError:
                failed = True
                raise

        ok = permitted(user_id, self.rules(action), members_of)
        return Decision(ok, lookup_failed=failed and not ok)

    def allowed(self, user_id: str, action: str) -> bool:
        return self.check(user_id, action).allowed


def slack_members_of(client: WebClient) -> MembersOf:
    """``members_of`` through a ``slack_sdk.WebClient`` (``usergroups.users.list``)."""

    def members_of(group_id: str) -> Collection[str]:
        try:
            resp = client.usergroups_users_list(usergroup=group_id)
        except (SlackApiError, SlackRequestError, OSError) as exc:
            raise GroupLookupError(str(exc)) from exc
        users = resp.get("users")
        if not isinstance(users, list):
            raise GroupLookupError("no users in the answer")
        return [str(u) for u in users]

    return members_of


__all__ = [
    "GUARDED",
    "Decision",
    "GroupLookupError",
    "MembersOf",
    "Permissions",
    "permitted",
    "slack_members_of",
]
