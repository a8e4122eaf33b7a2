"""Where an incident's Slack messages go: the first matching route, else the default channel."""

from __future__ import annotations

from collections.abc import Callable

from paytriage.config.models import SlackConfig
from paytriage.domain.incidents import Incident
from paytriage.domain.lifecycle import matches
from paytriage.domain.notifications import Channel


def slack_router(slack: SlackConfig) -> Callable[[Incident], Channel | None]:
    """The channel of the first route that matches the incident, else the default channel."""

    def channel(inc: Incident) -> Channel | None:
        for route in slack.routes:
            m = route.match
            if m.detector is not None and m.detector not in (inc.detector, *inc.detectors):
                continue
            if m.min_severity is not None and inc.severity.rank < m.min_severity.rank:
                continue
            if not matches(m.dimensions, inc.dimensions):
                continue
            return Channel.slack(route.channel)
        return Channel.slack(slack.default_channel)

    return channel
