"""The fault suite's report: ``kill -9`` at random points of the bot's loop, many times.

    python bench/faults.py [--kills 30] [--seed 7] [--minutes 53]

Needs the test stack with the test data loaded (``PAYTRIAGE_KEEP_STACK=1 scripts/test
tests/integration/test_kill_faults.py`` leaves it so). Prints faults injected, incidents
expected and delivered, duplicates, lost notifications and leaked secrets (see
tests/support/kill_suite.py for how each is counted).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from datetime import timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from paytriage.lab.simulate import generate  # noqa: E402
from tests.conftest import OUTAGE_START, simulation_spec, stack_env  # noqa: E402
from tests.support.kill_suite import run_suite  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--kills", type=int, default=30)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--minutes", type=int, default=53, help="replayed minutes from 08:55")
    args = ap.parse_args()
    env = stack_env()
    labels = generate(simulation_spec()).labels
    start = OUTAGE_START - timedelta(minutes=5)
    with tempfile.TemporaryDirectory(prefix="paytriage-faults-") as work:
        report = run_suite(
            Path(work),
            env["PAYTRIAGE_PROMETHEUS_URL"],
            env["PAYTRIAGE_OPENSEARCH_URL"],
            labels,
            start,
            start + timedelta(minutes=args.minutes),
            kills=args.kills,
            seed=args.seed,
        )
    print(f"kill -9 fault suite (seed {args.seed}, {args.minutes} minutes replayed)")
    print("  " + "\n  ".join(report.lines()))
    bad = report.duplicates or report.lost_notifications or report.leaked_secrets
    return 1 if bad or report.incidents_delivered != report.incidents_expected else 0


if __name__ == "__main__":
    sys.exit(main())
