"""``paytriage demo``: the product's front door, on the embedded simulated platform.

Today it builds the simulated payment platform and shows what was injected; detection,
Slack posts and the postmortem join the demo as those features land.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

from rich.console import Console
from rich.table import Table

DEMO_SEED = 2026


def run_demo(out: Path, console: Console | None = None) -> None:
    from bot.simulate import SCENARIO_KINDS, SimulationSpec, default_plan, simulate

    console = console or Console()
    end = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
    start = end - timedelta(days=1)
    plan = default_plan(start, end, DEMO_SEED)
    spec = SimulationSpec(start=start, end=end, seed=DEMO_SEED, scenarios=plan)
    console.rule("[bold]paytriage demo")
    console.print(
        "A simulated payment platform: 5 PSPs, 4 payment methods, 6 countries, one day of "
        "authorizations, captures, webhooks and refunds with daily seasonality and noise, "
        "application logs (some leaking card numbers, as real logs do) and deploys."
    )
    telemetry = out / "telemetry"
    with console.status("Simulating a day of payment traffic..."):
        summary = simulate(spec, telemetry)
    console.print(str(summary))
    table = Table(title="What happened on the platform (the detectors must find the incidents)")
    for col in ("when (UTC)", "for", "what", "where", "real incident?"):
        table.add_column(col)
    for s in plan:
        kind = SCENARIO_KINDS[s.kind]
        where = ", ".join(f"{k}={v}" for k, v in s.dims.items()) or "platform"
        table.add_row(
            f"{s.start:%a %H:%M}",
            f"{int(s.duration.total_seconds() // 60)} min",
            s.kind,
            where,
            "no (harmless)" if kind.harmless else "yes",
        )
    console.print(table)
    console.print(
        "\n[bold]Not in the demo yet:[/bold] detection, incident grouping and evidence, the "
        "Slack messages and the postmortem draft. They are added here as they are built; "
        "nothing below is pretend output."
    )
    console.print(f"\nFiles written under [bold]{out}[/bold]:")
    console.print(f"  {telemetry}/metrics.om          OpenMetrics history (promtool backfill)")
    console.print(f"  {telemetry}/opensearch/          logs and change events (_bulk files)")
    console.print(f"  {telemetry}/labels.json          what was injected, when and where")
    console.print(
        f"\nTo query it in a real Prometheus and OpenSearch: scripts/stack up && "
        f"scripts/stack load {telemetry}"
    )
