"""The bot's logs: JSON lines, with the incident and correlation ids, never a secret."""

from __future__ import annotations

import io
import json
import logging
from pathlib import Path

from paytriage.core.logs import JsonFormatter, log_context
from paytriage.detection.run import Event
from paytriage.store import Store
from tests.support.factories import T0
from tests.support.pipeline import finding, pipeline


class Exploding:
    def gather(self, inc, at, frames=None, active=()):  # type: ignore[no-untyped-def]
        raise RuntimeError(
            "opensearch said: card 4111 1111 1111 1111, key sk_live_abcdefghijklmnop1234"
        )


def test_a_failure_is_logged_as_json_with_its_incident_and_no_secret(tmp_path: Path) -> None:
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.addHandler(handler)
    try:
        store = Store.open(f"sqlite:///{tmp_path / 'p.db'}")
        p = pipeline(store, Exploding())  # type: ignore[arg-type]
        f = finding("decline_spike", psp="stripe")
        with log_context(correlation_id="cycle-test"):
            [inc_id] = p.step([Event("raised", f, T0)], [f], T0).ids("opened")
    finally:
        root.removeHandler(handler)
    lines = [json.loads(line) for line in out.getvalue().splitlines()]
    [failure] = [x for x in lines if "could not be gathered" in x["msg"]]
    assert failure["incident_id"] == inc_id and failure["correlation_id"] == "cycle-test"
    assert failure["level"] == "error" and "RuntimeError" in failure["error"]
    text = out.getvalue()
    assert "4111 1111 1111 1111" not in text and "sk_live_abcdefghijklmnop1234" not in text


def test_context_is_scoped() -> None:
    out = io.StringIO()
    log = logging.getLogger("paytriage.test")
    handler = logging.StreamHandler(out)
    handler.setFormatter(JsonFormatter())
    log.addHandler(handler)
    log.setLevel(logging.INFO)
    try:
        with log_context(incident_id="inc-000000000001"):
            log.info("inside")
        log.info("outside")
    finally:
        log.removeHandler(handler)
    inside, outside = (json.loads(x) for x in out.getvalue().splitlines())
    assert inside["incident_id"] == "inc-000000000001" and "incident_id" not in outside
