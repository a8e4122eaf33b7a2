"""How long `paytriage demo` takes (the issue's target: under two minutes) and what its
in-memory PromQL engine costs per query.

    python bench/demo.py

Prints the demo's wall time by phase and the slowest and mean day-long range query of the
detectors' signals over the embedded platform.
"""

from __future__ import annotations

import io
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def main() -> int:
    from rich.console import Console

    from paytriage.config import load_settings
    from paytriage.config.loader import default_config_path
    from paytriage.detection.run import runs_for
    from paytriage.incidents.cycle import STEP
    from paytriage.lab.demo import DEMO_SEED, HISTORY, PLAYED, demo_scenarios, run_demo
    from paytriage.lab.memory import from_simulation
    from paytriage.lab.simulate import SimulationSpec, generate

    end = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
    with tempfile.TemporaryDirectory() as out:
        t0 = time.perf_counter()
        result = run_demo(Path(out), Console(file=io.StringIO(), width=120), end=end)
        demo_s = time.perf_counter() - t0
    print(
        f"paytriage demo: {demo_s:.1f} s wall ({len(result.incidents)} incidents, "
        f"{len(result.slack)} Slack calls, {len(result.pages)} PagerDuty events); target < 120 s"
    )

    t0 = time.perf_counter()
    spec = SimulationSpec(
        start=end - PLAYED - HISTORY,
        end=end,
        seed=DEMO_SEED,
        scenarios=tuple(demo_scenarios(end - PLAYED)),
    )
    data = generate(spec)
    sim_s = time.perf_counter() - t0
    metrics, _ = from_simulation(data)
    settings = load_settings(default_config_path(), secrets_for=())
    runs = runs_for(list(settings.detectors.enabled()), STEP)
    timings: dict[str, float] = {}
    start = end - timedelta(days=1)
    for run in runs:
        for name, query in run.signals().items():
            t = time.perf_counter()
            metrics.query_range(query, start, end, STEP)
            timings[f"{run.cfg.id}.{name}"] = time.perf_counter() - t
    slowest = max(timings, key=timings.__getitem__)
    print(f"simulating {(HISTORY + PLAYED).total_seconds() / 3600:.0f} h: {sim_s:.1f} s")
    print(
        f"day-long range queries ({len(timings)}): slowest {slowest} "
        f"{timings[slowest]:.3f} s, mean {sum(timings.values()) / len(timings):.3f} s"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
