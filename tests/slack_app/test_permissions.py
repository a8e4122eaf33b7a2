"""Who may escalate, silence and resolve: users, user groups (cached briefly, failing
closed), and empty lists that let everyone."""

from __future__ import annotations

from collections.abc import Collection

import pytest

from paytriage.config.models import Permissions as PermissionsConfig
from paytriage.slack_app.permissions import GroupLookupError, Permissions, permitted


class Groups:
    """A fake usergroups.users.list that counts its calls."""

    def __init__(self, groups: dict[str, list[str]], fail: bool = False) -> None:
        self.groups = groups
        self.calls: list[str] = []
        self.fail = fail

    def __call__(self, group_id: str) -> Collection[str]:
        self.calls.append(group_id)
        if self.fail:
            raise GroupLookupError("ratelimited")
        if group_id not in self.groups:
            raise GroupLookupError("no_such_subteam")
        return self.groups[group_id]


def config(**lists: list[str]) -> PermissionsConfig:
    return PermissionsConfig.model_validate(lists)


def test_empty_lists_let_everyone_and_ack_is_never_guarded() -> None:
    perms = Permissions(config(), Groups({}))
    for action in ("escalate", "silence", "resolve", "acknowledge", "summary"):
        assert perms.allowed("U0ANYONE01", action)
    only = Permissions(config(resolve=["U0LEAD0001"]), Groups({}))
    assert only.allowed("U0ANYONE01", "acknowledge")
    assert only.allowed("U0ANYONE01", "silence")


def test_users_by_id() -> None:
    perms = Permissions(config(resolve=["U0LEAD0001", "W0GRID0001"]), Groups({}))
    assert perms.allowed("U0LEAD0001", "resolve")
    assert perms.allowed("W0GRID0001", "resolve")
    assert not perms.allowed("U0ANYONE01", "resolve")


def test_group_members_are_read_once_and_cached_briefly() -> None:
    groups = Groups({"S0ONCALL01": ["U0ANA00001", "U0BEN00001"]})
    clock = [0.0]
    perms = Permissions(
        config(escalate=["S0ONCALL01"], resolve=["S0ONCALL01"]),
        groups,
        ttl=60,
        monotonic=lambda: clock[0],
    )
    assert perms.allowed("U0ANA00001", "escalate")
    assert perms.allowed("U0BEN00001", "resolve")
    assert not perms.allowed("U0EVE00001", "escalate")
    assert groups.calls == ["S0ONCALL01"]
    groups.groups["S0ONCALL01"].append("U0EVE00001")
    clock[0] = 61
    assert perms.allowed("U0EVE00001", "escalate")  # re-read after the ttl
    assert groups.calls == ["S0ONCALL01", "S0ONCALL01"]


def test_a_group_that_cannot_be_read_refuses_and_says_so() -> None:
    perms = Permissions(config(silence=["S0ONCALL01"]), Groups({}, fail=True))
    decision = perms.check("U0ANA00001", "silence")
    assert not decision.allowed and decision.lookup_failed
    # A user listed directly does not depend on the groups.
    perms = Permissions(config(silence=["U0ANA00001", "S0ONCALL01"]), Groups({}, fail=True))
    assert perms.check("U0ANA00001", "silence").allowed


def test_entries_that_are_neither_users_nor_groups_are_ignored(
    caplog: pytest.LogCaptureFixture,
) -> None:
    groups = Groups({"S0ONCALL01": []})
    perms = Permissions(config(resolve=["@ana", "S0ONCALL01"]), groups)
    assert "'@ana' is neither a user id" in caplog.text
    assert not perms.allowed("U0ANA00001", "resolve")
    assert groups.calls == ["S0ONCALL01"]  # "@ana" was never looked up as a group
    assert not permitted("U0ANA00001", ["@ana"], Groups({}))
