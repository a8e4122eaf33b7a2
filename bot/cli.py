"""The ``paytriage`` command line."""

from __future__ import annotations

import os
import sys
import traceback
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from typer.core import TyperGroup
from typer.exceptions import TyperException

from paytriage import __version__
from paytriage.config import ConfigError, Settings, load_settings
from paytriage.core.redact import redact as _redact
from paytriage.core.types import parse_duration
from paytriage.domain.findings import slice_text

T = TypeVar("T")

EXIT_FAILED = 1  # what was asked could not be done: the line printed says why
EXIT_BUG = 70  # an error paytriage did not expect (EX_SOFTWARE): a bug to report


def _explain(exc: Exception) -> tuple[int, str]:
    """The exit status and the one line a person reads for a command's failure. The
    errors imported here name their file, URL or key themselves."""
    from paytriage.app.server import ServeError
    from paytriage.core.files import FileProblem
    from paytriage.incidents.runbooks import RunbookError
    from paytriage.lab.rules import RulesError
    from paytriage.lab.scoring import LabelsError
    from paytriage.reports.postmortem import PostmortemError
    from paytriage.sources.base import SourceError
    from paytriage.store import StoreError

    named = (
        ConfigError,
        FileProblem,
        ServeError,
        StoreError,
        RunbookError,
        SourceError,
        PostmortemError,
        RulesError,
        LabelsError,
    )
    if isinstance(exc, named):
        return EXIT_FAILED, str(exc)
    if isinstance(exc, OSError):
        why = exc.strerror or str(exc) or type(exc).__name__
        return EXIT_FAILED, f"{exc.filename}: {why}" if exc.filename else why
    return EXIT_BUG, (
        f"unexpected error ({type(exc).__name__}: {exc}); "
        "run again with PAYTRIAGE_DEBUG=1 to see where, and report it"
    )


class _Commands(TyperGroup):
    """Every command ends the same way when it fails: one redacted line on stderr that names
    the file, URL or key at fault, and a non-zero exit status (2 for a wrong option, as
    click does; 1 when what was asked could not be done; 70 for a bug). No traceback unless
    ``PAYTRIAGE_DEBUG`` is set."""

    def invoke(self, ctx: Any) -> Any:  # click's Context (typer vendors click privately)
        try:
            return super().invoke(ctx)
        except (typer.Exit, typer.Abort, TyperException):  # click's own: usage, --help, exit
            raise
        except Exception as exc:
            code, line = _explain(exc)
            command = ctx.invoked_subcommand or ""
            if os.environ.get("PAYTRIAGE_DEBUG"):
                traceback.print_exc()
            typer.echo(_redact(f"paytriage {command}: {line}".replace("  ", " ")), err=True)
            raise typer.Exit(code) from None


app = typer.Typer(
    cls=_Commands,
    name="paytriage",
    help=(
        "paytriage watches payment metrics (Prometheus) and logs (OpenSearch), detects "
        "incidents such as decline spikes, webhook lag and stuck refunds, and helps the "
        "on-call engineer in Slack.\n\nNew here? Run `paytriage demo`: no servers, no tokens."
    ),
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
config_app = typer.Typer(help="Work with configuration files.", no_args_is_help=True)
app.add_typer(config_app, name="config")
runbooks_app = typer.Typer(help="Work with the runbooks in runbooks/.", no_args_is_help=True)
app.add_typer(runbooks_app, name="runbooks")

ConfigOpt = Annotated[
    Path | None,
    typer.Option(
        "--config",
        "-c",
        help="YAML configuration file (default: $PAYTRIAGE_CONFIG, else config/paytriage.yaml).",
        dir_okay=False,
    ),
]


def _load(config: Path | None, secrets_for: tuple[str, ...] | None = None) -> Settings:
    try:
        return load_settings(config, secrets_for=secrets_for)
    except ConfigError as exc:
        typer.echo(str(exc), err=True)
        raise typer.Exit(1) from None


def _read_file(path: Path | None, reader: Callable[[Path], T], option: str) -> T | None:
    """Read an input file given on the command line; its errors name the option."""
    if path is None:
        return None
    try:
        return reader(path)
    except (OSError, ValueError) as exc:
        raise typer.BadParameter(str(exc), param_hint=option) from None


def _url(text: str, option: str) -> str:
    """A PromQL API URL given on the command line, checked as the configuration's is."""
    from paytriage.config.models import http_url

    try:
        return http_url(text)
    except ValueError as exc:
        raise typer.BadParameter(_redact(str(exc)), param_hint=option) from None


def _parse_time(text: str | None, name: str) -> datetime | None:
    if text is None:
        return None
    try:
        dt = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise typer.BadParameter(
            f"{text!r} is not an ISO 8601 time (e.g. 2026-11-24T00:00:00Z)", param_hint=name
        ) from None
    return dt if dt.tzinfo else dt.replace(tzinfo=UTC)


@app.callback(invoke_without_command=True)
def _main(
    version: Annotated[bool, typer.Option("--version", help="Print the version and exit.")] = False,
) -> None:
    if version:
        typer.echo(f"paytriage {__version__}")
        raise typer.Exit(0)


@config_app.command("check")
def config_check(
    file: Annotated[
        Path | None,
        typer.Argument(help="The file to check (default: config/paytriage.yaml).", dir_okay=False),
    ] = None,
) -> None:
    """Validate a configuration file; on error, name each bad key and what is wrong.

    Secrets are checked too: every ${NAME} used by an enabled section must be set in the
    environment. Exit status 0 when valid, 1 otherwise.
    """
    from paytriage.config import default_config_path

    settings = _load(file)
    enabled = [d.id for d in settings.detectors.enabled()]
    slack = f"slack {settings.slack.mode.value} mode" if settings.slack.enabled else "slack off"
    pd = "pagerduty on" if settings.pagerduty.enabled else "pagerduty off"
    where = file or default_config_path()
    names = ", ".join(enabled)
    typer.echo(f"OK: {where}: {len(enabled)} detectors enabled ({names}); {slack}; {pd}")
    if settings.slack.enabled and settings.slack.permissions.open_to_all():
        typer.echo(
            "warning: slack.permissions: every list is empty, so anyone in the workspace may "
            "acknowledge (and so stop a page's escalation), escalate, silence, resolve and "
            "approve postmortems; name the on-call user group in each list",
            err=True,
        )


@runbooks_app.command("lint")
def runbooks_lint(
    directory: Annotated[
        Path,
        typer.Argument(help="The runbooks directory.", file_okay=False, exists=True),
    ] = Path("runbooks"),
) -> None:
    """Check every runbook's front matter, links and steps, and that each detector (and a
    data source going down) has a runbook. Exit status 1 when there is an error."""
    from paytriage.detectors import REGISTRY
    from paytriage.incidents.runbooks import lint

    problems = lint(directory, REGISTRY)
    for problem in problems:
        typer.echo(str(problem), err=problem.severity == "error")
    errors = sum(p.severity == "error" for p in problems)
    if errors:
        typer.echo(f"{errors} error(s) in {directory}", err=True)
        raise typer.Exit(1)
    typer.echo(f"OK: {directory}: {len(problems)} warning(s)")


@app.command()
def redact() -> None:
    """Print standard input with card numbers, CVVs, e-mail addresses, tokens, keys and
    IBANs masked: exactly what the bot would show or store of that text."""
    # The whole input at once: a private key or a card number can span lines.
    text = sys.stdin.buffer.read().decode("utf-8", errors="replace")
    sys.stdout.write(_redact(text))


@app.command()
def simulate(
    out: Annotated[Path, typer.Option("--out", "-o", help="Directory to write to.")] = Path(
        "sim-out"
    ),
    hours: Annotated[float, typer.Option(help="Length of the window, ending at --end.")] = 24.0,
    end: Annotated[
        str | None, typer.Option(help="End of the window, ISO 8601 (default: now, to the minute).")
    ] = None,
    step: Annotated[str, typer.Option(help="Sample resolution, e.g. 15s, 60s.")] = "60s",
    seed: Annotated[int, typer.Option(help="Same seed, same data.")] = 42,
    scenario: Annotated[
        list[str] | None,
        typer.Option(
            "--scenario",
            "-s",
            help=(
                "Inject an incident: KIND[:dim=value][@OFFSET][+DURATION][*MAGNITUDE], e.g. "
                "psp_outage:psp=stripe@6h+20m. Repeat for more. Without it, a default plan "
                "of incidents and harmless events is used."
            ),
        ),
    ] = None,
    quiet: Annotated[
        bool, typer.Option("--quiet", help="Inject no scenario: normal traffic only.")
    ] = False,
    countries: Annotated[
        str | None, typer.Option(help="Comma-separated ISO country codes (default: 6).")
    ] = None,
    no_logs: Annotated[bool, typer.Option("--no-logs", help="Metrics only.")] = False,
) -> None:
    """Generate reference payment telemetry with seasonality, noise and injected incidents.

    Writes DIR/metrics.om (OpenMetrics for `promtool tsdb create-blocks-from openmetrics`),
    DIR/opensearch/ (index templates and _bulk files of logs and change events) and
    DIR/labels.json (what was injected, when and where). Load it into the test servers with
    `scripts/stack load DIR`.
    """
    from paytriage.lab import simulate as sim

    try:
        step_td = parse_duration(step)
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--step") from None
    end_dt = _parse_time(end, "--end") or datetime.now(UTC).replace(second=0, microsecond=0)
    if hours <= 0:
        raise typer.BadParameter("must be positive", param_hint="--hours")
    start_dt = end_dt - timedelta(hours=hours)
    try:
        if quiet:
            plan: tuple[sim.Scenario, ...] = ()
        elif scenario:
            plan = tuple(sim.parse_scenario(s, start_dt, end_dt) for s in scenario)
        else:
            plan = sim.default_plan(start_dt, end_dt, seed)
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--scenario") from None
    kwargs: dict[str, object] = {}
    if countries:
        kwargs["countries"] = tuple(c.strip().upper() for c in countries.split(",") if c.strip())
    try:
        spec = sim.SimulationSpec(
            start=start_dt,
            end=end_dt,
            step=step_td,
            seed=seed,
            scenarios=plan,
            logs=not no_logs,
            **kwargs,  # type: ignore[arg-type]
        )
    except ValueError as exc:
        typer.echo(f"paytriage simulate: {exc}", err=True)
        raise typer.Exit(2) from None
    summary = sim.simulate(spec, out)
    typer.echo(str(summary))
    for s in plan:
        typer.echo(f"  injected {s.id or s.kind}: {s.start:%Y-%m-%d %H:%M}Z +{s.duration} {s.dims}")
    typer.echo(f"Load it into the test servers with: scripts/stack load {out}")


@app.command()
def run(config: ConfigOpt = None) -> None:
    """Run the bot: poll the sources on schedule, detect, open incidents, notify Slack."""
    from paytriage.app.service import run_forever
    from paytriage.incidents.runbooks import RunbookError

    settings = _load(config)
    try:
        run_forever(settings)
    except RunbookError as exc:  # a bad runbook directory or file: say which, no traceback
        typer.echo(f"paytriage run: {exc}", err=True)
        raise typer.Exit(2) from None


@app.command()
def detect(
    config: ConfigOpt = None,
    once: Annotated[
        bool, typer.Option("--once", help="Run every detector once and print its findings.")
    ] = False,
    at: Annotated[
        str | None,
        typer.Option(help="Judge as of this ISO 8601 time instead of now (e.g. on history)."),
    ] = None,
    prometheus_url: Annotated[
        str | None, typer.Option(help="Override sources.prometheus.url.")
    ] = None,
) -> None:
    """Run the detectors against the configured Prometheus and print what they find.

    With --once the detectors replay the last minutes up to now (or --at) exactly as the
    live bot would, so persistence and hysteresis are judged, and print the findings that
    are raised at that moment. Exit status 0 whether or not something was found.
    """
    from paytriage.detection.replay import replay
    from paytriage.detection.run import runs_for
    from paytriage.sources import PrometheusSource

    if not once:
        raise typer.BadParameter("only --once is supported; `paytriage run` detects on schedule")
    settings = _load(config, secrets_for=("sources",))
    end = _parse_time(at, "--at") or datetime.now(UTC)
    end = end.replace(second=0, microsecond=0)
    prom_cfg = settings.sources.prometheus
    if prometheus_url:
        prom_cfg = prom_cfg.model_copy(update={"url": _url(prometheus_url, "--prometheus-url")})
    step = timedelta(minutes=1)
    runs = runs_for(settings.detectors.enabled(), step)
    # Replay long enough to judge persistence and hysteresis as the live bot would have.
    longest = max((r.cfg.for_ + r.cfg.clear_after + r.cfg.interval * 3 for r in runs), default=step)
    result = replay(PrometheusSource(prom_cfg), runs, end - longest, end, step)
    for name, why in sorted(result.failed.items()):
        typer.echo(f"data problem: {name}: {why}", err=True)
    if result.nothing_read:
        typer.echo(
            f"paytriage detect: nothing could be read from {_redact(prom_cfg.url)}: "
            "no finding is no answer",
            err=True,
        )
        raise typer.Exit(EXIT_FAILED)
    typer.echo(f"As of {end:%Y-%m-%d %H:%M}Z: {len(result.active)} finding(s)")
    for f in sorted(result.active, key=lambda f: (-f.severity.rank, f.detector)):
        where = slice_text(f.dimensions, "platform")
        onset = f" since {f.onset:%H:%M}Z" if f.onset else ""
        typer.echo(f"  [{f.severity.value}] {f.detector} {where}{onset}: {f.title}")
        for q in f.queries:
            typer.echo(f"      {q.query}")


@app.command()
def backtest(
    prometheus_url: Annotated[str, typer.Option(help="PromQL API holding the history.")],
    start: Annotated[str, typer.Option(help="ISO 8601 start of the period (UTC if no zone).")],
    end: Annotated[str, typer.Option(help="ISO 8601 end of the period.")],
    output: Annotated[
        Path,
        typer.Option("--output", "-o", help="Write the incidents here (JSON).", dir_okay=False),
    ],
    config: ConfigOpt = None,
    step: Annotated[str, typer.Option(help="Evaluation step, like the live interval.")] = "60s",
    labels: Annotated[
        Path | None,
        typer.Option(help="Injected incidents (the simulator's labels.json): score the run."),
    ] = None,
    compare_rules: Annotated[
        Path | None,
        typer.Option(help="A Prometheus alerting-rules file to evaluate side by side."),
    ] = None,
) -> None:
    """Replay history through the detectors and the incident grouping, posting nothing.

    Each step sees only what the live bot would have seen then (no look-ahead). Writes
    {"incidents": [...]} to --output; with --labels prints recall, precision, false pages
    per day, median time to detect and attribution; with --compare-rules evaluates a
    static alerting-rules file over the same range (with for: semantics) and prints both.
    """
    import json

    from paytriage.lab.backtest import backtest as run_backtest
    from paytriage.sources import PrometheusSource

    t_start = _parse_time(start, "--start")
    t_end = _parse_time(end, "--end")
    assert t_start is not None and t_end is not None
    if t_end <= t_start:
        raise typer.BadParameter("must come after --start", param_hint="--end")
    try:
        step_td = parse_duration(step)
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--step") from None
    if step_td < timedelta(seconds=1):
        raise typer.BadParameter("must be at least 1s", param_hint="--step")
    from paytriage.lab.rules import load_rules
    from paytriage.lab.scoring import load_labels

    scenarios = _read_file(labels, load_labels, "--labels")
    rules = _read_file(compare_rules, load_rules, "--compare-rules")
    url = _url(prometheus_url, "--prometheus-url")
    settings = _load(config, secrets_for=("sources",))
    prom_cfg = settings.sources.prometheus.model_copy(update={"url": url})
    source = PrometheusSource(prom_cfg)
    result = run_backtest(
        source,
        settings.detectors.enabled(),
        t_start,
        t_end,
        step_td,
        correlation_window=settings.incidents.correlation_window,
        reopen_within=settings.incidents.reopen_within,
    )
    for name, why in sorted(result.failed.items()):
        typer.echo(f"data problem: {name} could not be read: {why}", err=True)
    if result.nothing_read:
        typer.echo(
            f"paytriage backtest: nothing could be read from {_redact(url)}: no incident is "
            f"no answer ({output} not written)",
            err=True,
        )
        raise typer.Exit(EXIT_FAILED)
    doc = result.as_dict()
    typer.echo(
        f"Backtest {doc['period']['start']} .. {doc['period']['end']} at {step}: "
        f"{len(result.incidents)} incident(s), {len(result.data_problems)} data problem(s), "
        f"{result.seconds:.1f} s"
    )
    for inc in result.incidents:
        where = slice_text(inc.dimensions, "platform")
        closed = f"{inc.resolved_at:%m-%d %H:%M}" if inc.resolved_at else "still open"
        typer.echo(
            f"  {inc.opened_at:%m-%d %H:%M} .. {closed}  [{inc.severity.value}] "
            f"{inc.detector} {where}: {inc.title}"
        )
    alerts = None
    if rules is not None:
        from paytriage.lab.rules import evaluate

        rules_result = evaluate(source, rules, t_start, t_end, step_td)
        alerts = rules_result.alerts
        for name, why in sorted(rules_result.errors.items()):
            typer.echo(f"rule {name} could not be evaluated: {why}", err=True)
        doc["static_rules"] = {"file": str(compare_rules), "alerts": alerts}
        typer.echo(f"Static rules ({compare_rules}): {len(alerts)} alert(s) fired")
    if scenarios is not None:
        from paytriage.lab.scoring import format_misses, format_scores, score

        scores = [score(doc["incidents"], scenarios, t_start, t_end, "paytriage")]
        if alerts is not None:
            scores.append(score(alerts, scenarios, t_start, t_end, "static rules"))
        doc["scores"] = [s.as_dict() for s in scores]
        typer.echo("")
        typer.echo(format_scores(scores))
        for s in scores:
            misses = format_misses(s)
            if misses:
                typer.echo(f"\n{s.name}:\n{misses}")
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(doc, indent=2) + "\n")
    typer.echo(f"Wrote {output}")


@app.command()
def replay(
    prometheus_url: Annotated[str, typer.Option(help="PromQL API holding the history.")],
    start: Annotated[str, typer.Option(help="ISO 8601 start of the period (UTC if no zone).")],
    end: Annotated[str, typer.Option(help="ISO 8601 end of the period.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Directory to write to.")],
    opensearch_url: Annotated[
        str | None, typer.Option(help="OpenSearch holding the logs and changes (optional).")
    ] = None,
    config: ConfigOpt = None,
) -> None:
    """Play a past period minute by minute through the whole live pipeline, posting
    nothing, and write what the bot would have sent.

    DIR/slack/NNNN-<method>.json: each Slack Web API call's body, in order;
    DIR/pagerduty/NNNN.json: each PagerDuty event (routing key left out);
    DIR/postmortems/<INC>.md: the draft of every resolved incident; DIR/incidents.json: the
    incidents as paged and as they ended; DIR/paytriage.db: the store.
    """
    from paytriage.lab.replay import replay_period, summary_lines
    from paytriage.sources import OpenSearchSource, PrometheusSource

    t_start = _parse_time(start, "--start")
    t_end = _parse_time(end, "--end")
    assert t_start is not None and t_end is not None
    if t_end <= t_start:
        raise typer.BadParameter("must come after --start", param_hint="--end")
    if out.exists() and not out.is_dir():
        raise typer.BadParameter(f"{out} is a file: give a directory", param_hint="--out")
    prom_url = _url(prometheus_url, "--prometheus-url")
    os_url = _url(opensearch_url, "--opensearch-url") if opensearch_url else None
    settings = _load(config, secrets_for=("sources",))
    sources = settings.sources
    prom = PrometheusSource(sources.prometheus.model_copy(update={"url": prom_url}))
    logs = (
        OpenSearchSource(sources.opensearch.model_copy(update={"hosts": [os_url]}))
        if os_url
        else None
    )
    minute = timedelta(minutes=1)
    result = replay_period(
        settings,
        prom,
        logs,
        t_start.replace(second=0, microsecond=0),
        t_end.replace(second=0, microsecond=0),
        out,
        step=minute,
    )
    for line in summary_lines(result):
        typer.echo(line)
    typer.echo(f"Wrote {out}/ (slack/, pagerduty/, postmortems/, incidents.json, paytriage.db)")


@app.command()
def demo(
    out: Annotated[Path, typer.Option("--out", help="Where to write the demo's files.")] = Path(
        "paytriage-demo"
    ),
    slack_channel: Annotated[
        str | None,
        typer.Option(
            help="Also post the messages to this channel of a real workspace (needs "
            "$SLACK_BOT_TOKEN; the bot must be in the channel).",
        ),
    ] = None,
    quiet: Annotated[
        bool, typer.Option("--quiet", help="Do not show each Slack message in the terminal.")
    ] = False,
    hours: Annotated[
        int,
        typer.Option(
            min=1,
            max=6,
            help="How many hours to play (the incidents come one after another: 2 hours "
            "hold the flash sale and a PSP outage, 6 all of them).",
        ),
    ] = 6,
) -> None:
    """Show paytriage end to end on a simulated payment platform: no servers, no tokens.

    A day of simulated payment traffic, then six hours with incidents played minute by
    minute through the detectors, incident grouping, evidence, runbooks, the Slack messages
    and PagerDuty pages (shown here, written to --out) and a postmortem draft.
    """
    from paytriage.lab.demo import run_demo

    if out.exists() and not out.is_dir():
        raise typer.BadParameter(f"{out} is a file: give a directory", param_hint="--out")

    token = os.environ.get("SLACK_BOT_TOKEN") or None
    if slack_channel and not token:
        raise typer.BadParameter(
            "posting to a real workspace needs SLACK_BOT_TOKEN in the environment",
            param_hint="--slack-channel",
        )
    run_demo(
        out,
        slack_token=token,
        slack_channel=slack_channel,
        quiet_messages=quiet,
        played=timedelta(hours=hours),
    )


def _store(settings: Settings) -> Any:
    """The bot's store, as configured; never created here (a command that reads must not
    leave an empty store where it was run). Says which store it read."""
    from paytriage.store import Store
    from paytriage.store.url import store_url

    store = Store.open(store_url(settings.store), create=False)
    typer.echo(f"store: {store.engine.url.render_as_string(hide_password=True)}", err=True)
    return store


def _incident_arg(store: Any, ref: str) -> Any:
    found = store.find(ref)
    if found is None:
        from paytriage.store.store import INCIDENT_KEY, INCIDENT_NUMBER

        if not (INCIDENT_NUMBER.fullmatch(ref.strip()) or INCIDENT_KEY.fullmatch(ref.lower())):
            raise typer.BadParameter(
                f"{ref!r} is not an incident (INC-42, or its key inc-…)", param_hint="INCIDENT"
            )
        typer.echo(f"no incident {ref} in the store", err=True)
        raise typer.Exit(EXIT_FAILED)
    return found


IncidentArg = Annotated[str, typer.Argument(help="The incident: INC-42 (or its key inc-…).")]


@app.command()
def incidents(
    config: ConfigOpt = None,
    open_only: Annotated[bool, typer.Option("--open", help="Only those not resolved.")] = False,
    limit: Annotated[int, typer.Option(min=1, max=10_000, help="At most this many.")] = 50,
) -> None:
    """List the incidents in the store, newest first: number, state, severity, when it
    opened, where, and its title."""
    store = _store(_load(config, secrets_for=("store",)))
    try:
        rows = store.incidents(open_only=open_only, limit=limit)
    finally:
        store.close()
    if not rows:
        typer.echo("no open incidents" if open_only else "no incidents")
        return
    for inc in rows:
        where = slice_text(inc.dimensions)
        typer.echo(
            f"{inc.ref:<9} {inc.state.value:<12} {inc.severity.value:<8} "
            f"{inc.opened_at:%Y-%m-%d %H:%MZ}  {inc.detector} {where}: {inc.title}"
        )


@app.command()
def summary(incident: IncidentArg, config: ConfigOpt = None) -> None:
    """The incident commander's summary of an incident (what `/triage summary` answers in
    Slack): state, impact, what the evidence says, timeline, who is involved, next steps."""
    from paytriage.reports.summary import build_summary

    store = _store(_load(config, secrets_for=("store",)))
    try:
        inc = _incident_arg(store, incident)
        s = build_summary(
            inc, store.timeline(inc.id), store.audit_log(inc.id), [], datetime.now(UTC)
        )
    finally:
        store.close()
    typer.echo(s.terminal())


@app.command()
def postmortem(
    incident: IncidentArg,
    config: ConfigOpt = None,
    template: Annotated[
        Path | None,
        typer.Option(help="A Jinja2 template instead of postmortem.template.", dir_okay=False),
    ] = None,
    out: Annotated[
        Path | None, typer.Option("--out", "-o", help="Write here instead of printing.")
    ] = None,
    from_file: Annotated[
        Path | None,
        typer.Option("--from", help="Store this edited draft as the next version.", dir_okay=False),
    ] = None,
    export: Annotated[
        bool, typer.Option("--export", help="Write the approved version (to --out or export_dir).")
    ] = False,
    approve: Annotated[
        bool, typer.Option("--approve", help="Approve the latest version (as in Slack).")
    ] = False,
    request_changes: Annotated[
        str | None,
        typer.Option("--request-changes", help="Ask for changes to the latest version: why."),
    ] = None,
) -> None:
    """Draft an incident's postmortem from the store (a new version), store an edited draft
    (--from), review the latest version (--approve, --request-changes) or export the
    approved one (--export)."""
    import getpass

    from paytriage.reports.postmortem import PostmortemError, export_postmortem, render_postmortem

    chosen = sum([export, from_file is not None, approve, request_changes is not None])
    if chosen > 1:
        raise typer.BadParameter("give one of --from, --approve, --request-changes, --export")
    settings = _load(config, secrets_for=("store",))
    store = _store(settings)
    try:
        inc = _incident_arg(store, incident)
        now = datetime.now(UTC)
        if approve or request_changes is not None:
            versions = store.postmortems(inc.id)
            if not versions:
                typer.echo(f"{inc.ref} has no postmortem draft yet", err=True)
                raise typer.Exit(EXIT_FAILED)
            status = "approved" if approve else "changes_requested"
            reviewed = store.review_postmortem(
                inc.id, versions[-1].version, status, f"cli:{getpass.getuser()}", now,
                note=request_changes or "",
            )  # fmt: skip
            typer.echo(f"{inc.ref}: postmortem version {reviewed.version} {reviewed.status}")
            return
        if export:
            approved = [p for p in store.postmortems(inc.id) if p.status == "approved"]
            if not approved:
                typer.echo(f"{inc.ref} has no approved postmortem yet", err=True)
                raise typer.Exit(EXIT_FAILED)
            if out is not None:
                out.write_text(approved[-1].body, encoding="utf-8")
                path = out
            else:
                path = export_postmortem(approved[-1], Path(settings.postmortem.export_dir))
            typer.echo(f"Wrote {path} (version {approved[-1].version}, approved)")
            return
        if from_file is not None:
            body = _read_file(from_file, lambda p: p.read_text(encoding="utf-8"), "--from")
            assert body is not None
            pm = store.add_postmortem(inc.id, body, "cli", now)
            typer.echo(f"Stored {from_file} as version {pm.version} of the postmortem of {inc.ref}")
            return
        try:
            body = render_postmortem(
                inc,
                store.timeline(inc.id),
                store.audit_log(inc.id),
                now,
                template=template or Path(settings.postmortem.template),
            )
        except PostmortemError as exc:
            typer.echo(str(exc), err=True)
            raise typer.Exit(EXIT_FAILED) from None
        pm = store.add_postmortem(inc.id, body, "cli", now)
        if out is not None:
            out.write_text(pm.body, encoding="utf-8")
            typer.echo(f"Wrote {out} (version {pm.version}, draft)")
        else:
            typer.echo(pm.body)
    finally:
        store.close()


def main() -> None:
    app()


if __name__ == "__main__":
    main()
