"""The bot's loop on a replay clock, as a process a test can ``kill -9`` at any moment.

``python -m tests.support.replay_bot CONFIG STATE`` does what ``paytriage run`` schedules
(``paytriage.app.service.run_forever``): the same ``build`` (store opened, open incidents restored), the
same ``LiveCycle.run_once`` and the same Slack and PagerDuty outbox senders, but minute after
minute of a past window as fast as it can instead of once a minute of wall time. ``STATE``
(JSON) holds ``next`` (the minute to run), ``end`` (the last one to evaluate) and ``tail``
(drain-only minutes after it); it is rewritten atomically after each minute, so a process
killed mid-minute is restarted on the same minute, as the live bot re-runs the minute it
died in. Prints ``done`` and exits 0 when the window is over.
"""

from __future__ import annotations

import json
import os
import sys
from datetime import datetime, timedelta
from pathlib import Path

from paytriage.app.compose import build, pagerduty_sender, slack_sender
from paytriage.config import load_settings
from paytriage.core.logs import setup_logging
from paytriage.store.lease import replica_id

M = timedelta(minutes=1)


def _parse(at: str) -> datetime:
    return datetime.fromisoformat(at.replace("Z", "+00:00"))


def main(config: str, state_path: str) -> int:
    setup_logging()
    settings = load_settings(config)
    state_file = Path(state_path)
    state = json.loads(state_file.read_text())
    t, end = _parse(state["next"]), _parse(state["end"])
    stop = end + int(state.get("tail", 10)) * M
    now = {"t": t}
    cycle, store = build(settings, now=t)
    holder = replica_id()
    slack = slack_sender(settings, store, holder)
    pager = pagerduty_sender(settings, store, holder)
    for sender in (slack, pager):
        if sender is not None:
            sender.clock = lambda: now["t"]
    while t <= stop:
        now["t"] = t + timedelta(seconds=17)
        if t <= end:
            cycle.run_once(now["t"])
        if slack is not None:
            slack.drain()
        if pager is not None:
            pager.drain()
        t += M
        tmp = state_file.with_suffix(".tmp")
        tmp.write_text(json.dumps({**state, "next": t.isoformat()}))
        os.replace(tmp, state_file)
    store.close()
    print("done", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:]))
