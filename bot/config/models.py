"""The typed configuration: one YAML file validated into these models."""

from __future__ import annotations

import difflib
import re
from datetime import UTC, datetime, time, timedelta
from enum import StrEnum
from typing import Literal
from urllib.parse import urlsplit

from pydantic import Field, field_validator, model_validator

from paytriage.core.types import Duration, EnvStr, LabelName, PositiveDuration, Secret, StrictModel
from paytriage.detectors import DetectorsConfig
from paytriage.domain.findings import Severity
from paytriage.domain.lifecycle import Maintenance


def http_url(value: str) -> str:
    """An http(s) URL without a password in it (credentials belong in secrets)."""
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ValueError(f"{value!r} is not an http(s) URL")
    if parts.password:
        raise ValueError("URL carries a password: put credentials in username/password secrets")
    return value.rstrip("/")


class PrometheusConfig(StrictModel):
    """Any PromQL HTTP API: Prometheus, Thanos Query, Mimir, VictoriaMetrics."""

    url: EnvStr = "http://127.0.0.1:9090"
    timeout: PositiveDuration = Field(default=timedelta(seconds=10))
    retries: int = Field(default=2, ge=0, le=10, description="on connection errors and 502/503/504")
    method: Literal["GET", "POST"] = "POST"
    verify_tls: bool = True
    username: EnvStr | None = None
    password: Secret | None = None
    bearer_token: Secret | None = None
    headers: dict[str, EnvStr] = Field(
        default_factory=dict, description="e.g. X-Scope-OrgID for Mimir"
    )
    graph_url: EnvStr | None = Field(default=None, description="base URL for links to the graph UI")

    @field_validator("url")
    @classmethod
    def _check_url(cls, v: str) -> str:
        return http_url(v)


class LogFields(StrictModel):
    """Field names in the log index, if they differ from the reference schema."""

    timestamp: str = "@timestamp"
    message: str = "message"
    level: str = "level"
    service: str = "service"
    error_code: str = "error_code"


class OpenSearchConfig(StrictModel):
    enabled: bool = True
    hosts: list[EnvStr] = Field(default_factory=lambda: ["http://127.0.0.1:9200"], min_length=1)
    logs_index: str = "payments-logs-*"
    changes_index: str = "changes-*"
    fields: LogFields = LogFields()
    timeout: PositiveDuration = Field(default=timedelta(seconds=10))
    retries: int = Field(default=2, ge=0, le=10)
    verify_tls: bool = True
    username: EnvStr | None = None
    password: Secret | None = None
    dashboards_url: EnvStr | None = Field(default=None, description="for Discover links")

    @field_validator("hosts")
    @classmethod
    def _check_hosts(cls, v: list[str]) -> list[str]:
        return [http_url(h) for h in v]


class SourcesConfig(StrictModel):
    prometheus: PrometheusConfig = PrometheusConfig()
    opensearch: OpenSearchConfig = OpenSearchConfig()
    down_after: PositiveDuration = Field(
        default=timedelta(minutes=5),
        description="a source failing this long opens a 'data source down' incident",
    )


class RouteMatch(StrictModel):
    detector: str | None = None
    min_severity: Severity | None = None
    dimensions: dict[LabelName, str] = Field(default_factory=dict)


class Route(StrictModel):
    match: RouteMatch = RouteMatch()
    channel: str = Field(pattern=r"^[#A-Za-z0-9][A-Za-z0-9_\-.]*$")


class Permissions(StrictModel):
    """Slack user ids (U…) or user-group ids (S…) allowed to act; empty = everyone."""

    acknowledge: list[str] = Field(
        default_factory=list, description="also acknowledges the page in PagerDuty"
    )
    mitigate: list[str] = Field(default_factory=list)
    escalate: list[str] = Field(default_factory=list)
    silence: list[str] = Field(default_factory=list)
    resolve: list[str] = Field(default_factory=list)
    declare: list[str] = Field(default_factory=list, description="open an incident by hand")
    review: list[str] = Field(default_factory=list, description="approve postmortem drafts")

    def open_to_all(self) -> bool:
        """Every list empty: anyone in the workspace may do everything."""
        return not any(getattr(self, name) for name in type(self).model_fields)


class SlackMode(StrEnum):
    socket = "socket"
    http = "http"


class SlackConfig(StrictModel):
    enabled: bool = True
    mode: SlackMode = SlackMode.socket
    bot_token: Secret | None = None
    app_token: Secret | None = Field(default=None, description="xapp- token, Socket Mode only")
    signing_secret: Secret | None = Field(default=None, description="HTTP mode only")
    default_channel: str = Field(
        default="#payments-oncall", pattern=r"^[#A-Za-z0-9][A-Za-z0-9_\-.]*$"
    )
    routes: list[Route] = Field(default_factory=list)
    command: str = Field(default="/triage", pattern=r"^/[a-z0-9_\-]+$")
    permissions: Permissions = Permissions()
    thread_update_min_interval: Duration = Field(default=timedelta(minutes=5))
    base_url: EnvStr | None = Field(default=None, description="Web API base URL (tests only)")
    http_port: int = Field(default=3000, ge=1, le=65535)

    @model_validator(mode="after")
    def _mode_secrets(self) -> SlackConfig:
        if not self.enabled:
            return self
        if self.bot_token is None:
            raise ValueError(
                "bot_token is required when slack is enabled (e.g. ${SLACK_BOT_TOKEN})"
            )
        if self.mode is SlackMode.socket and self.app_token is None:
            raise ValueError("app_token is required in socket mode (e.g. ${SLACK_APP_TOKEN})")
        if self.mode is SlackMode.http and self.signing_secret is None:
            raise ValueError(
                "signing_secret is required in http mode (e.g. ${SLACK_SIGNING_SECRET})"
            )
        return self


class PagerDutyConfig(StrictModel):
    enabled: bool = False
    routing_key: Secret | None = None
    min_severity: Severity = Severity.critical
    events_url: EnvStr = "https://events.pagerduty.com"
    source: str = "paytriage"

    @model_validator(mode="after")
    def _key(self) -> PagerDutyConfig:
        if self.enabled and self.routing_key is None:
            raise ValueError(
                "routing_key is required when pagerduty is enabled (e.g. ${PAGERDUTY_ROUTING_KEY})"
            )
        return self


class RunbooksConfig(StrictModel):
    dir: EnvStr = "runbooks"
    base_url: EnvStr | None = Field(default=None, description="where runbooks are published")


class PostmortemConfig(StrictModel):
    """The draft's Jinja2 template (replace it with your own) and where approved ones go."""

    template: EnvStr = "templates/postmortem.md.j2"
    export_dir: EnvStr = "paytriage-data/postmortems"


class StoreConfig(StrictModel):
    """SQLite file by default; PostgreSQL (postgresql+psycopg://…) for several replicas."""

    url: EnvStr = "sqlite:///paytriage.db"
    password: Secret | None = Field(default=None, description="PostgreSQL password, if any")

    @field_validator("url")
    @classmethod
    def _check_url(cls, v: str) -> str:
        parts = urlsplit(v)
        if not parts.scheme.startswith(("sqlite", "postgresql")):
            raise ValueError(f"{v!r}: use sqlite:///path or postgresql+psycopg://host/db")
        if parts.password:
            raise ValueError(
                "the URL carries a password: set store.password: ${PGPASSWORD} instead"
            )
        return v


class ReplicasConfig(StrictModel):
    """Several replicas on one (PostgreSQL) store: all serve Slack, the holder of the
    scheduler lease runs the detectors and sends the outbox."""

    lease_ttl: PositiveDuration = Field(
        default=timedelta(seconds=30),
        description="a leader that has not renewed for this long is replaced (take-over time)",
    )
    renew_every: PositiveDuration = Field(
        default=timedelta(seconds=10), description="how often the leader renews, followers try"
    )

    @model_validator(mode="after")
    def _renew_within_ttl(self) -> ReplicasConfig:
        if self.lease_ttl <= timedelta(0):
            raise ValueError("lease_ttl must be positive")
        if not timedelta(0) < self.renew_every < self.lease_ttl:
            raise ValueError(
                f"renew_every ({self.renew_every}) must be positive and below lease_ttl "
                f"({self.lease_ttl}), or the leader loses its lease between renewals"
            )
        return self


class MaintenanceConfig(StrictModel):
    """A maintenance window that suppresses notifications (incidents are still recorded):
    once (``start`` and ``end``, ISO 8601) or weekly (``weekday``, ``start_time`` in UTC and
    ``duration``), e.g. a PSP's announced Sunday-night maintenance."""

    name: str = Field(min_length=1, max_length=100)
    dimensions: dict[LabelName, str] = Field(default_factory=dict)
    detectors: list[str] = Field(default_factory=list, description="empty: every detector")
    start: datetime | None = None
    end: datetime | None = None
    weekday: Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"] | None = None
    start_time: time | None = Field(default=None, description="HH:MM, UTC")
    duration: PositiveDuration | None = None

    @field_validator("start", "end")
    @classmethod
    def _utc(cls, v: datetime | None) -> datetime | None:
        return None if v is None else _aware(v)

    @model_validator(mode="after")
    def _one_kind(self) -> MaintenanceConfig:
        once = self.start is not None or self.end is not None
        weekly = any(v is not None for v in (self.weekday, self.start_time, self.duration))
        if once and weekly:
            raise ValueError("give either start and end, or weekday, start_time and duration")
        if once:
            if self.start is None or self.end is None:
                raise ValueError("a one-off window needs both start and end")
            if self.end <= self.start:
                raise ValueError("end must be after start")
        elif None in (self.weekday, self.start_time, self.duration):
            raise ValueError(
                "a window needs start and end (once), or weekday, start_time and duration (weekly)"
            )
        return self

    def window(self) -> Maintenance:
        return Maintenance(
            name=self.name,
            dimensions=dict(self.dimensions),
            detectors=tuple(self.detectors),
            start=self.start,
            end=self.end,
            weekday=self.weekday,
            start_time=self.start_time,
            duration=self.duration,
        )


# The labels of the reference telemetry (docs/telemetry.md) and of the bot's own findings.
REFERENCE_LABELS = frozenset(
    {"psp", "country", "method", "reason", "outcome", "event_type", "within_sla", "service"}
    | {"source", "signal", "error_code"}
)
_BY_CLAUSE = re.compile(r"\b(?:by|without)\s*\(([^)]*)\)")


def known_labels(detectors: DetectorsConfig) -> frozenset[str]:
    """The reference labels, every detector's ``dimensions`` and every label its queries
    group by (``sum by (merchant) (...)``)."""
    found = set(REFERENCE_LABELS)

    def walk(value: object) -> None:
        if isinstance(value, str):
            for group in _BY_CLAUSE.findall(value):
                found.update(x.strip() for x in group.split(",") if x.strip())
        elif isinstance(value, dict):
            for v in value.values():
                walk(v)
        elif isinstance(value, list | tuple):
            for v in value:
                walk(v)

    dumped = detectors.model_dump()
    walk(dumped)
    for cfg in dumped.values():
        if isinstance(cfg, dict):
            found.update(str(d) for d in cfg.get("dimensions") or ())
    return frozenset(found)


def _aware(at: datetime) -> datetime:
    return at.replace(tzinfo=UTC) if at.tzinfo is None else at.astimezone(UTC)


class IncidentsConfig(StrictModel):
    correlation_window: PositiveDuration = Field(default=timedelta(minutes=15))
    auto_resolve_after: PositiveDuration = Field(default=timedelta(minutes=30))
    reopen_within: Duration = Field(default=timedelta(hours=2))
    average_ticket: float | None = Field(default=None, gt=0, description="for amount at risk")
    currency: str = Field(default="EUR", pattern=r"^[A-Z]{3}$")
    maintenance: list[MaintenanceConfig] = Field(default_factory=list)


class EvidenceConfig(StrictModel):
    """What is gathered when an incident opens, and how often it is refreshed."""

    refresh_every: PositiveDuration = Field(default=timedelta(minutes=5))
    min_window: PositiveDuration = Field(
        default=timedelta(minutes=10), description="shortest incident window read"
    )
    breakdown_by: list[LabelName] = Field(
        default_factory=lambda: ["psp", "country", "method", "reason"]
    )
    baseline_offset: PositiveDuration = Field(default=timedelta(weeks=1))
    log_max_messages: int = Field(default=2000, ge=10, le=20000)
    changes_lookback: PositiveDuration = Field(default=timedelta(hours=2))
    changes_after: Duration = Field(
        default=timedelta(minutes=15), description="a PSP's status page often follows onset"
    )
    chart_span: PositiveDuration = Field(default=timedelta(hours=3))
    chart_dir: EnvStr = Field(default="paytriage-data/charts", description="PNG charts")


class ServerConfig(StrictModel):
    """The bot's own HTTP endpoint: /healthz, /readyz (and /metrics later)."""

    host: EnvStr = "127.0.0.1"
    port: int = Field(default=8080, ge=1, le=65535)


class Settings(StrictModel):
    """The whole configuration file."""

    timezone: str = "UTC"
    sources: SourcesConfig = SourcesConfig()
    detectors: DetectorsConfig = DetectorsConfig()
    incidents: IncidentsConfig = IncidentsConfig()
    evidence: EvidenceConfig = EvidenceConfig()
    slack: SlackConfig = SlackConfig(enabled=False)
    pagerduty: PagerDutyConfig = PagerDutyConfig()
    runbooks: RunbooksConfig = RunbooksConfig()
    postmortem: PostmortemConfig = PostmortemConfig()
    store: StoreConfig = StoreConfig()
    replicas: ReplicasConfig = ReplicasConfig()
    server: ServerConfig = ServerConfig()

    @model_validator(mode="after")
    def _dimension_labels(self) -> Settings:
        """A label that selects or breaks down incidents and is one typo away from a label
        the detectors know (``contry``) would silently never match: it is refused.
        Labels far from every known one (a team's own ``merchant``) are taken as given."""
        known = known_labels(self.detectors)
        used: list[tuple[str, str]] = [
            (f"slack.routes[{i}].match.dimensions", k)
            for i, r in enumerate(self.slack.routes)
            for k in r.match.dimensions
        ]
        used += [
            (f"incidents.maintenance[{i}].dimensions", k)
            for i, m in enumerate(self.incidents.maintenance)
            for k in m.dimensions
        ]
        used += [("evidence.breakdown_by", k) for k in self.evidence.breakdown_by]
        problems = []
        for where, label in used:
            if label in known:
                continue
            close = difflib.get_close_matches(label, sorted(known), n=1, cutoff=0.75)
            if close:
                problems.append(f"{where}: unknown label {label!r} (did you mean {close[0]!r}?)")
        if problems:
            raise ValueError("; ".join(problems))
        return self

    @field_validator("timezone")
    @classmethod
    def _tz(cls, v: str) -> str:
        from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

        try:
            ZoneInfo(v)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(
                f"unknown time zone {v!r} (use an IANA name like Europe/Berlin)"
            ) from None
        return v
