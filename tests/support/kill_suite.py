"""The ``kill -9`` fault suite: the bot's loop (``tests.support.replay_bot``) replays a window
of the test morning against the real Prometheus and OpenSearch, posting to the local Slack
Web API and PagerDuty Events servers, and is killed with SIGKILL at random moments and
restarted, many times. A run without kills over the same window is the reference.

What it counts (``Report``): faults injected; incidents expected (the reference run's
problems: detector and dimensions) and delivered (those with one Slack message after the
kills); duplicates (a second Slack message for one incident, a thread reply or PagerDuty
incident repeated, a problem opened twice); lost notifications (a reference problem never
delivered, outbox messages never sent or given up); leaked secrets (planted card numbers,
e-mails and tokens, the Slack token and the PagerDuty key, found in anything the bot wrote:
Slack calls, PagerDuty events, the store, its own logs).

Used by ``tests/integration/test_kill_faults.py`` (a few kills, in CI) and
``bench/faults.py`` (many kills; prints the report the README quotes).
"""

from __future__ import annotations

import json
import os
import random
import re
import sqlite3
import subprocess
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from tests.support.pagerduty_api import PagerDutyEventsServer
from tests.support.secrets import card_numbers
from tests.support.slack_api import BOT_TOKEN, SlackApiServer

ROOT = Path(__file__).resolve().parents[2]
ROUTING_KEY = "R0KILLSUITE0ROUTING0KEY000000042"  # 32 characters, as PagerDuty wants


@dataclass
class Report:
    faults_injected: int = 0
    restarts: int = 0
    incidents_expected: int = 0
    incidents_delivered: int = 0
    duplicates: int = 0
    lost_notifications: int = 0
    leaked_secrets: int = 0
    notifications_sent: int = 0
    seconds: float = 0.0
    problems: list[str] = field(default_factory=list)

    def lines(self) -> list[str]:
        return [
            f"faults injected (kill -9)   {self.faults_injected} (restarts {self.restarts})",
            f"incidents expected          {self.incidents_expected}",
            f"incidents delivered         {self.incidents_delivered}",
            f"notifications sent          {self.notifications_sent}",
            f"duplicates                  {self.duplicates}",
            f"lost notifications          {self.lost_notifications}",
            f"leaked secrets              {self.leaked_secrets}",
            f"wall time                   {self.seconds:.0f} s",
            *(f"  ! {p}" for p in self.problems),
        ]


@dataclass
class Outcome:
    """What one run left behind."""

    problems: Counter[tuple[str, str]]  # (detector, dims) -> incidents opened for it
    real: set[str]  # ids of those incidents (not the bot's own data problems)
    roots: Counter[str]  # incident id -> root messages in Slack
    replies: Counter[tuple[str, str]]  # (incident id, outbox key) -> thread replies
    pd_incidents: Counter[str]  # dedup key -> PagerDuty incidents
    unsent: list[str]
    sent: int
    outputs: list[str]  # everything the bot wrote, for the secret grep


def _config(work: Path, prometheus: str, opensearch: str, slack: str, pd: str) -> Path:
    cfg = work / "bot.yaml"
    cfg.write_text(
        "sources:\n"
        f"  prometheus: {{url: '{prometheus}', timeout: 10s}}\n"
        f"  opensearch: {{hosts: ['{opensearch}'], timeout: 10s}}\n"
        "slack:\n"
        "  enabled: true\n  mode: http\n"
        "  bot_token: ${SLACK_BOT_TOKEN}\n  signing_secret: ${SLACK_SIGNING_SECRET}\n"
        f"  base_url: '{slack}'\n"
        "pagerduty:\n  enabled: true\n  routing_key: ${PAGERDUTY_ROUTING_KEY}\n"
        f"  events_url: '{pd}'\n  min_severity: error\n"
        f"runbooks: {{dir: '{ROOT / 'runbooks'}'}}\n"
        f"store: {{url: 'sqlite:///{work / 'paytriage.db'}'}}\n"
        f"evidence: {{chart_dir: '{work / 'charts'}'}}\n"
    )
    return cfg


def _env() -> dict[str, str]:
    return {
        **os.environ,
        "SLACK_BOT_TOKEN": BOT_TOKEN,
        "SLACK_SIGNING_SECRET": "kill-suite-signing-secret-0123456789",
        "PAGERDUTY_ROUTING_KEY": ROUTING_KEY,
        "PYTHONPATH": str(ROOT),
    }


def run_window(
    work: Path,
    prometheus: str,
    opensearch: str,
    start: datetime,
    end: datetime,
    *,
    kills: int,
    seed: int,
    max_delay: float = 0.3,
    tail_minutes: int = 15,
) -> tuple[Outcome, int, int]:
    """Replay [start, end] with ``kills`` SIGKILLs at random moments; (outcome, kills, runs).

    Each kill lands at a random minute of the window (drawn in advance, in order), a random
    0 to ``max_delay`` seconds after the bot began it: wherever in its loop that finds it
    (a minute with detection takes longer than that, so the process is still there). Kills
    are placed in the replay's minutes, not in wall time, so that every one of them lands
    however fast the machine replays the window."""
    work.mkdir(parents=True, exist_ok=True)
    rng = random.Random(seed)
    minutes = int((end - start) / timedelta(minutes=1)) + 1
    targets = sorted(rng.choices(range(minutes), k=kills))
    with SlackApiServer() as slack, PagerDutyEventsServer() as pd:
        cfg = _config(work, prometheus, opensearch, slack.base_url, pd.url)
        state = work / "state.json"
        state.write_text(
            json.dumps({"next": start.isoformat(), "end": end.isoformat(), "tail": tail_minutes})
        )
        logs: list[str] = []
        killed = runs = 0
        while True:
            runs += 1
            log_file = work / f"run-{runs}.log"
            with log_file.open("w") as out:
                proc = subprocess.Popen(
                    [sys.executable, "-m", "tests.support.replay_bot", str(cfg), str(state)],
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    env=_env(),
                    cwd=ROOT,
                )
                if killed < len(targets):
                    at = start + timedelta(minutes=targets[killed])
                    if _reached(state, at, proc):
                        time.sleep(rng.uniform(0.0, max_delay))
                    if proc.poll() is None:
                        proc.kill()  # SIGKILL: no cleanup, no atexit, sockets just closed
                        proc.wait()
                        killed += 1
                        logs.append(log_file.read_text(errors="replace"))
                        continue
                try:
                    proc.wait(timeout=900.0)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
                    raise AssertionError(f"replay did not finish: {log_file}") from None
            text = log_file.read_text(errors="replace")
            logs.append(text)
            if proc.returncode != 0:
                raise AssertionError(f"replay failed ({proc.returncode}):\n{text[-3000:]}")
            break
        outcome = _outcome(work / "paytriage.db", slack, pd, logs)
    return outcome, killed, runs


def _reached(state: Path, at: datetime, proc: subprocess.Popen[bytes]) -> bool:
    """Wait until the replay has begun the minute ``at`` (False: the process ended first)."""
    while proc.poll() is None:
        try:
            current = datetime.fromisoformat(json.loads(state.read_text())["next"])
        except (OSError, ValueError, KeyError):
            current = None  # being replaced: read again
        if current is not None and current >= at:
            return True
        time.sleep(0.02)
    return False


def _outcome(
    db: Path, slack: SlackApiServer, pd: PagerDutyEventsServer, logs: list[str]
) -> Outcome:
    conn = sqlite3.connect(db)
    try:
        problems: Counter[tuple[str, str]] = Counter()
        # The bot's own data-problem incidents (a source slow under load) are not what the
        # window holds: they are left out of the comparison.
        for detector, dims in conn.execute(
            "SELECT detector, dimensions FROM incidents WHERE NOT data_problem"
        ):
            problems[(detector, json.dumps(json.loads(dims), sort_keys=True))] += 1
        real = {r[0] for r in conn.execute("SELECT id FROM incidents WHERE NOT data_problem")}
        unsent = [
            f"{key} ({error})"
            for key, error in conn.execute(
                "SELECT idempotency_key, last_error FROM outbox WHERE sent_at IS NULL"
            )
        ]
        sent = conn.execute("SELECT count(*) FROM outbox WHERE sent_at IS NOT NULL").fetchone()[0]
        dump = "\n".join(conn.iterdump())
    finally:
        conn.close()
    roots: Counter[str] = Counter()
    replies: Counter[tuple[str, str]] = Counter()
    outputs = [dump, *logs]
    for call in slack.calls:
        outputs.append(json.dumps(call.params, default=str))
        if call.method != "chat.postMessage":
            continue
        meta = (call.params.get("metadata") or {}).get("event_payload") or {}
        if "thread_ts" in call.params:
            replies[(str(meta.get("incident_id")), str(meta.get("key")))] += 1
        else:
            roots[str(meta.get("incident_id"))] += 1
    pd_incidents: Counter[str] = Counter(i.dedup_key for i in pd.incidents)
    for req in pd.requests:  # the routing key is the credential PagerDuty requires: not a leak
        body = dict(req.body) if isinstance(req.body, dict) else {"raw": req.body}
        body.pop("routing_key", None)
        outputs.append(json.dumps(body, default=str))
    return Outcome(problems, real, roots, replies, pd_incidents, unsent, int(sent), outputs)


def secrets_of(labels: dict[str, Any]) -> list[str]:
    """Planted card numbers, e-mails and tokens (CVVs are three digits: they are looked for
    next to the word, by ``judge``), and the bot's own credentials."""
    planted: dict[str, list[str]] = labels["planted_secrets"]
    kinds = ("card_numbers", "emails", "tokens")
    return [s for kind in kinds for s in planted.get(kind, [])] + [
        BOT_TOKEN,
        ROUTING_KEY,
        "kill-suite-signing-secret-0123456789",
    ]


def judge(reference: Outcome, killed: Outcome, kills: int, runs: int, secrets: list[str]) -> Report:
    r = Report(faults_injected=kills, restarts=runs - 1)
    r.incidents_expected = len(reference.problems)
    r.notifications_sent = killed.sent
    delivered = 0
    for problem in reference.problems:
        if killed.problems.get(problem, 0) == 0:
            r.lost_notifications += 1
            r.problems.append(f"never opened after kills: {problem}")
    for problem, n in killed.problems.items():
        extra = n - reference.problems.get(problem, 0)
        if extra > 0:
            r.duplicates += extra
            r.problems.append(
                f"opened {n} times (reference {reference.problems[problem]}): {problem}"
            )
    for inc_id, n in killed.roots.items():
        delivered += inc_id in killed.real
        if n > 1:
            r.duplicates += n - 1
            r.problems.append(f"{n} Slack messages for {inc_id}")
    for (inc_id, key), n in killed.replies.items():
        if n > 1:
            r.duplicates += n - 1
            r.problems.append(f"thread reply {key} posted {n} times for {inc_id}")
    for dedup, n in killed.pd_incidents.items():
        if n > 1:
            r.duplicates += n - 1
            r.problems.append(f"{n} PagerDuty incidents for {dedup}")
    r.incidents_delivered = delivered
    r.lost_notifications += len(killed.unsent)
    r.problems.extend(f"not sent: {u}" for u in killed.unsent)
    blob = "\n".join(killed.outputs)
    for s in secrets:
        if s and s in blob:
            r.leaked_secrets += 1
            r.problems.append(f"leaked: {s[:4]}…")
    for card in card_numbers(blob):  # any card number, planted or not
        r.leaked_secrets += 1
        r.problems.append(f"card number in the output: {card[:4]}…")
    for m in re.finditer(r"(?i)\b(?:cvv2?|cvc2?|csc)\b\W{0,3}(\d{3,4})\b", blob):
        r.leaked_secrets += 1
        r.problems.append(f"CVV in the output: {m.group(0)[:8]}…")
    return r


def run_suite(
    work: Path,
    prometheus: str,
    opensearch: str,
    labels: dict[str, Any],
    start: datetime,
    end: datetime,
    *,
    kills: int,
    seed: int,
) -> Report:
    began = time.monotonic()
    reference, _, _ = run_window(
        work / "reference", prometheus, opensearch, start, end, kills=0, seed=seed
    )
    killed, n, runs = run_window(
        work / "killed", prometheus, opensearch, start, end, kills=kills, seed=seed
    )
    report = judge(reference, killed, n, runs, secrets_of(labels))
    report.seconds = time.monotonic() - began
    return report
