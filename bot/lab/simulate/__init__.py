"""``paytriage simulate``: reference payment telemetry (docs/telemetry.md) with injected incidents.

``generate(spec)`` draws everything in memory; ``write(data, out)`` writes

- ``out/metrics.om``: OpenMetrics with timestamps, for ``promtool tsdb create-blocks-from
  openmetrics``;
- ``out/opensearch/``: index templates and ``_bulk`` files of logs and change events;
- ``out/labels.json``: the ground truth (dimensions, routing, scenarios with their windows
  and the detectors expected to fire, counter resets, planted secrets).

The same spec (seed included) always gives the same bytes.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from paytriage.lab.simulate.logs import Planted, generate_changes, generate_logs, luhn_valid
from paytriage.lab.simulate.model import Family, Traffic, generate_traffic
from paytriage.lab.simulate.output import SimulationSummary, write_bulk, write_openmetrics
from paytriage.lab.simulate.scenarios import (
    SCENARIO_KINDS,
    Scenario,
    ScenarioKind,
    default_plan,
    parse_scenario,
)
from paytriage.lab.simulate.spec import EVENT_TYPES, REASONS, SimulationSpec

__all__ = [
    "SCENARIO_KINDS",
    "Scenario",
    "ScenarioKind",
    "SimulatedData",
    "SimulationSpec",
    "SimulationSummary",
    "default_plan",
    "generate",
    "luhn_valid",
    "parse_scenario",
    "simulate",
    "write",
]


@dataclass
class SimulatedData:
    spec: SimulationSpec
    families: list[Family]
    traffic: Traffic
    logs: list[dict[str, Any]]
    changes: list[dict[str, Any]]
    labels: dict[str, Any]


def _iso(dt: Any) -> str:
    return str(dt.isoformat()).replace("+00:00", "Z")


def generate(spec: SimulationSpec) -> SimulatedData:
    families, traffic = generate_traffic(spec)
    planted = Planted()
    logs: list[dict[str, Any]] = []
    changes, linked = generate_changes(spec)
    if spec.logs:
        logs, planted = generate_logs(spec, traffic)
    else:
        changes = []
        linked = []
    used = sorted(set(traffic.slices.psp), key=spec.psps.index)
    labels: dict[str, Any] = {
        "seed": spec.seed,
        "start": _iso(spec.start),
        "end": _iso(spec.end),
        "step_seconds": spec.step_seconds,
        "volume_scale": spec.volume_scale,
        "dimensions": {
            "psp": used,
            "country": list(spec.countries),
            "method": list(spec.methods),
            "reason": list(REASONS),
            "event_type": list(EVENT_TYPES),
        },
        "routing": traffic.routing,
        "scenarios": [
            {
                "id": s.label,
                "kind": s.kind,
                "start": _iso(s.start),
                "end": _iso(s.end),
                "duration_seconds": s.duration.total_seconds(),
                "dims": dict(s.dims),
                "magnitude": s.magnitude,
                "harmless": SCENARIO_KINDS[s.kind].harmless,
                "expected_detectors": list(SCENARIO_KINDS[s.kind].expected_detectors),
                "description": SCENARIO_KINDS[s.kind].description,
            }
            for s in spec.scenarios
        ],
        "related_changes": linked,
        "counter_resets": traffic.counter_resets,
        "planted_secrets": planted.as_dict(),
    }
    return SimulatedData(spec, families, traffic, logs, changes, labels)


def write(data: SimulatedData, out: Path) -> SimulationSummary:
    out.mkdir(parents=True, exist_ok=True)
    series, samples = write_openmetrics(data.families, data.traffic.times, out / "metrics.om")
    write_bulk(data.logs, data.changes, out / "opensearch")
    (out / "labels.json").write_text(json.dumps(data.labels, indent=2) + "\n")
    secrets = sum(len(v) for v in data.labels["planted_secrets"].values())
    return SimulationSummary(
        out=out,
        start=data.spec.start,
        end=data.spec.end,
        step_seconds=data.spec.step_seconds,
        series=series,
        samples=samples,
        log_docs=len(data.logs),
        change_docs=len(data.changes),
        scenarios=len(data.spec.scenarios),
        planted_secrets=secrets,
    )


def simulate(spec: SimulationSpec, out: Path) -> SimulationSummary:
    """Generate and write in one go."""
    return write(generate(spec), Path(out))
