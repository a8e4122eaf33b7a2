"""Writing simulated data: OpenMetrics for promtool, _bulk files for OpenSearch, labels."""

from __future__ import annotations

import json
import math
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np

from paytriage.lab.simulate.model import Family, Sample

BULK_DOCS_PER_FILE = 5000


def _index_template(pattern: str, properties: dict[str, Any]) -> dict[str, Any]:
    """A single-node index template (1 shard, no replicas) with explicit field types."""
    return {
        "index_patterns": [pattern],
        "template": {
            "settings": {"number_of_shards": 1, "number_of_replicas": 0},
            "mappings": {"properties": {"@timestamp": {"type": "date"}, **properties}},
        },
    }


_KEYWORD = {"type": "keyword"}
LOGS_TEMPLATE = _index_template(
    "payments-logs-*",
    {
        **dict.fromkeys(
            [
                "service",
                "level",
                "psp",
                "method",
                "country",
                "event_type",
                "error_code",
                "decline_reason",
                "payment_id",
                "refund_id",
                "trace_id",
                "merchant_id",
            ],
            _KEYWORD,
        ),
        "message": {
            "type": "text",
            "fields": {"keyword": {"type": "keyword", "ignore_above": 2048}},
        },
        "http_status": {"type": "integer"},
        "latency_ms": {"type": "float"},
    },
)
CHANGES_TEMPLATE = _index_template(
    "changes-*",
    {
        **dict.fromkeys(("service", "kind", "version", "author"), _KEYWORD),
        "description": {"type": "text"},
    },
)


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _number(v: float) -> str:
    if v == int(v) and abs(v) < 1e15:
        return str(int(v))
    return repr(round(float(v), 6))


def write_openmetrics(families: Iterable[Family], times: np.ndarray, path: Path) -> tuple[int, int]:
    """Write every family contiguously, each series in time order; returns (series, samples)."""
    stamps = [str(int(t)) if t == int(t) else f"{t:.3f}" for t in times]
    n_series = n_samples = 0
    with path.open("w", encoding="utf-8") as f:
        for fam in families:
            f.write(f"# TYPE {fam.name} {fam.type}\n# HELP {fam.name} {_escape(fam.help)}\n")
            for group in _metric_point_groups(fam):
                prefixes = []
                for s in group:
                    labels = ",".join(f'{k}="{_escape(v)}"' for k, v in s.labels.items())
                    prefixes.append(f"{s.name}{{{labels}}} ")
                values = [s.values.tolist() for s in group]
                lines = [
                    f"{prefix}{_number(vals[i])} {stamps[i]}\n"
                    for i in range(len(stamps))
                    for prefix, vals in zip(prefixes, values, strict=True)
                    if math.isfinite(vals[i])
                ]
                f.writelines(lines)
                n_series += len(group)
                n_samples += len(lines)
        f.write("# EOF\n")
    return n_series, n_samples


def _metric_point_groups(fam: Family) -> list[list[Sample]]:
    """Series that form one OpenMetrics MetricPoint (a histogram's buckets, count and sum)
    are written together per timestamp; other families have one series per group."""
    if fam.type != "histogram":
        return [[s] for s in fam.samples]
    groups: dict[tuple[tuple[str, str], ...], list[Sample]] = {}
    for s in fam.samples:
        key = tuple((k, v) for k, v in s.labels.items() if k != "le")
        groups.setdefault(key, []).append(s)
    return list(groups.values())


def _index_for(doc: dict[str, Any], prefix: str) -> str:
    ts = doc["@timestamp"]
    return f"{prefix}-{ts[0:4]}.{ts[5:7]}.{ts[8:10]}"


def write_bulk(logs: list[dict[str, Any]], changes: list[dict[str, Any]], out: Path) -> list[Path]:
    """_bulk NDJSON files of at most BULK_DOCS_PER_FILE documents, daily indices."""
    out.mkdir(parents=True, exist_ok=True)
    for old in out.glob("bulk-*.ndjson"):
        old.unlink()
    templates = [
        {"name": "paytriage-payments-logs", "body": LOGS_TEMPLATE},
        {"name": "paytriage-changes", "body": CHANGES_TEMPLATE},
    ]
    (out / "index-templates.json").write_text(json.dumps(templates, indent=2) + "\n")
    tagged = [(d, "payments-logs") for d in logs] + [(d, "changes") for d in changes]
    files: list[Path] = []
    for k in range(math.ceil(len(tagged) / BULK_DOCS_PER_FILE)):
        chunk = tagged[k * BULK_DOCS_PER_FILE : (k + 1) * BULK_DOCS_PER_FILE]
        path = out / f"bulk-{k + 1:04d}.ndjson"
        with path.open("w", encoding="utf-8") as f:
            for doc, prefix in chunk:
                f.write(json.dumps({"index": {"_index": _index_for(doc, prefix)}}) + "\n")
                f.write(json.dumps(doc, ensure_ascii=False) + "\n")
        files.append(path)
    return files


@dataclass(frozen=True)
class SimulationSummary:
    out: Path
    start: datetime
    end: datetime
    step_seconds: float
    series: int
    samples: int
    log_docs: int
    change_docs: int
    scenarios: int
    planted_secrets: int

    def __str__(self) -> str:
        hours = (self.end - self.start).total_seconds() / 3600
        lines = [
            f"Simulated {hours:g} h ({self.start:%Y-%m-%d %H:%M}Z to {self.end:%Y-%m-%d %H:%M}Z) "
            f"at {self.step_seconds:g}s with {self.scenarios} injected scenario(s):",
            f"  {self.out / 'metrics.om'}: {self.series:,} series, {self.samples:,} samples",
        ]
        if self.log_docs or self.change_docs:
            lines.append(
                f"  {self.out / 'opensearch'}/: {self.log_docs:,} log lines "
                f"({self.planted_secrets:,} planted secrets), {self.change_docs:,} change events"
            )
        lines.append(f"  {self.out / 'labels.json'}: what was injected, when and where")
        return "\n".join(lines)
