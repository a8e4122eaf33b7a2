"""Secrets planted in metric label values (a badly instrumented exporter putting a card
number, a token or an e-mail into `reason` or `method`) and in log lines: the whole
pipeline runs over them (the demo's, with no servers) and none reaches any output: Slack
payloads, PagerDuty events, the store, the postmortem, the terminal or the bot's logs. A
label value with quotes and backslashes is queried back without breaking the PromQL."""

from __future__ import annotations

import io
import logging
import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console

import paytriage.lab.simulate as simulate
from paytriage.lab.demo import run_demo
from tests.support.secrets import card_numbers

CARD = "4111111111111111"
TOKEN = "sk_live_51HqLyjWDarjtT1zdp7dcYDjH"
EMAIL = "jane.doe@example.com"
PLANT = {
    "reason": {"do_not_honor": f"do_not_honor card={CARD}", "insufficient_funds": f"nsf {EMAIL}"},
    "method": {"apple_pay": f'apple_pay "tok" \\ {TOKEN}'},
}
END = datetime(2026, 11, 21, 12, 0, tzinfo=UTC)
PLAYED = timedelta(hours=2)  # the flash sale and the PSP outage, whose evidence shows reasons


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str, list[str]]:
    real = simulate.generate

    def planted(spec: Any) -> Any:
        data = real(spec)
        for family in data.families:
            for sample in family.samples:
                for key, swap in PLANT.items():
                    if sample.labels.get(key) in swap:
                        sample.labels[key] = swap[sample.labels[key]]
        return data

    out = tmp_path_factory.mktemp("planted")
    screen = io.StringIO()
    records: list[str] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(self.format(record))

    handler = Keep()
    logging.getLogger().addHandler(handler)
    mp = pytest.MonkeyPatch()
    mp.setattr(simulate, "generate", planted)
    try:
        run_demo(out, Console(file=screen, width=160), end=END, played=PLAYED)
    finally:
        mp.undo()
        logging.getLogger().removeHandler(handler)
    return out, screen.getvalue(), records


def _everything(out: Path, screen: str, records: list[str]) -> str:
    parts = [screen, *records]
    for f in out.rglob("*"):
        if f.is_file() and f.suffix in (".json", ".md"):
            parts.append(f.read_text(errors="replace"))
    assert (out / "paytriage.db").exists()  # sqlite3.connect would make an empty one
    conn = sqlite3.connect(out / "paytriage.db")
    parts.append("\n".join(conn.iterdump()))
    conn.close()
    return "\n".join(parts)


def test_planted_label_values_reach_the_evidence_only_masked(
    run: tuple[Path, str, list[str]],
) -> None:
    out, screen, records = run
    blob = _everything(out, screen, records)
    # The planted values were shown in the evidence (by method; a reason only when it stands
    # out, which a PSP outage's issuer declines do not)... masked.
    shown = [
        v for v in ("do_not_honor card=[CARD ****1111]", "nsf [EMAIL]", "[SECRET]") if v in blob
    ]
    assert shown, shown
    for secret in (CARD, TOKEN, EMAIL, "4111 1111 1111 1111"):
        assert secret not in blob
    assert card_numbers(blob) == []


def test_odd_label_values_do_not_break_the_queries(run: tuple[Path, str, list[str]]) -> None:
    out, _, records = run
    assert not [r for r in records if "parse error" in r or "bad query" in r.lower()]
    assert list((out / "slack").glob("*-chat.postMessage.json"))  # incidents were posted
