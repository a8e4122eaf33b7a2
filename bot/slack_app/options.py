"""What the Slack app needs of the configuration, and nothing more (the composition root,
``paytriage.app.compose.slack_app_options``, takes it from the settings)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from paytriage.config.models import Permissions as PermissionsConfig
from paytriage.domain.incidents import Incident
from paytriage.domain.notifications import Channel


@dataclass(frozen=True)
class AppOptions:
    command: str  # the slash command, e.g. "/paytriage"
    timezone: str  # people's times are shown in it
    detectors: frozenset[str]  # what "/paytriage silence <detector>" accepts
    permissions: PermissionsConfig
    route: Callable[[Incident], Channel | None]  # where an incident without a message posts
    pagerduty_enabled: bool
    postmortem_template: Path
    export_dir: Path


__all__ = ["AppOptions"]
