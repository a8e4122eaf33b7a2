"""The Slack app's HTTP endpoint under hostile clients: the bot's memory (RSS) and threads,
and how fast it answers signed slash commands meanwhile.

The app runs in HTTP mode in its own process (as ``paytriage run`` would, with its JSON
logs on standard error, kept in a file here); the Web API it calls is the local Slack server
(tests/support), run in the benchmark's process. While signed slash commands are sent ten
times a second, the benchmark sends, phase after phase:

* one unsigned POST of 200 MB, streamed in 1 MiB chunks;
* four of them at once;
* 50 connections announcing 100 MB that send 3 bytes and wait;
* 50 announcing a body the endpoint takes (64 KB, signature headers included) that send
  3 bytes and wait;
* 50 sending their headers a byte a second;
* all of the above at once;
* malformed requests: a timestamp that is not a number, signed malformed JSON, signed
  bodies that are not UTF-8 (20 of each).

It prints, per phase, the peak RSS and thread count of the app, what the hostile clients
got, and the latencies of the signed commands; then PASS or FAIL against the targets: the
app's peak RSS (the kernel's high-water mark, VmHWM) under 300 MB, every signed command
answered 200 within Slack's 3 s, and nothing but JSON lines on the app's standard error.

    python bench/slack_hostile.py [--hold 12] [--unguarded]

``--unguarded`` serves the app the way it was before the endpoint was guarded (bolt's WSGI
adapter straight on a threading wsgiref server), for comparison; it needs a few GB of memory.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import selectors
import socket
import statistics
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

sys.path.insert(0, str(Path(__file__).resolve().parent))
from slack_ack import sign  # noqa: E402 - the sibling benchmark's app and signing

PATH = "/slack/events"
TARGET_RSS_MB = 300.0
TARGET_ACK_S = 3.0
MB = 1024 * 1024


# --- the app, in its own process ------------------------------------------------------------


def serve_app(
    slack_base: str, token: str, port: int, log: str, unguarded: bool, ready: Any
) -> None:
    fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.dup2(fd, 2)
    sys.stderr = open(2, "w", buffering=1, closefd=False)  # noqa: SIM115 - the process's stderr

    from slack_ack import bench_app

    from paytriage.core.logs import setup_logging
    from paytriage.slack_app.run import start_http

    setup_logging()
    app = bench_app(str(Path(log).parent / "bench.db"), slack_base, token)
    if unguarded:  # as run.py served it before: the body read whole, then the signature
        import logging
        from socketserver import ThreadingMixIn
        from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

        from slack_bolt.adapter.wsgi import SlackRequestHandler

        class Server(ThreadingMixIn, WSGIServer):
            daemon_threads = True
            request_queue_size = 128

        class Handler(WSGIRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                logging.getLogger("paytriage.slack_app.run").debug(format, *args)

        server = make_server(
            "127.0.0.1",
            port,
            SlackRequestHandler(app),
            server_class=Server,
            handler_class=Handler,
        )
        ready.set()
        server.serve_forever()
    else:
        ready.set()
        start_http(app, port, block=True)


def proc_status(pid: int) -> dict[str, int]:
    out = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            key, _, value = line.partition(":")
            if key in ("VmRSS", "VmHWM", "Threads"):
                out[key] = int(value.split()[0])
    return out


class Sampler:
    """The app's RSS and thread count every 20 ms."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.samples: list[tuple[float, float, int]] = []  # (t, rss MB, threads)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                s = proc_status(self.pid)
            except (OSError, KeyError):  # the app has gone
                return
            self.samples.append((time.monotonic(), s["VmRSS"] / 1024, s["Threads"]))
            time.sleep(0.02)

    def between(self, t0: float, t1: float) -> tuple[float, int]:
        inside = [(rss, th) for t, rss, th in self.samples if t0 <= t <= t1] or [(0.0, 0)]
        return max(r for r, _ in inside), max(th for _, th in inside)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()


# --- signed slash commands, ten a second ------------------------------------------------------


def command(text: str, response_url: str) -> bytes:
    form = {
        "command": "/triage",
        "text": text,
        "user_id": "U0BENCH0001",
        "channel_id": "C0PAYMENTS",
        "team_id": "T0PAYTRIAGE",
        "trigger_id": "1.2",
        "response_url": response_url,
    }
    return urlencode(form).encode()


def signed_command(url: str, body: bytes) -> tuple[float, float, int]:
    """(sent at, seconds to the answer, status; 0 when there was none)."""
    ts = str(int(time.time()))
    req = urllib.request.Request(  # noqa: S310 - the benchmark's own http://127.0.0.1
        url,
        data=body,
        method="POST",
        headers={
            "Content-Type": "application/x-www-form-urlencoded",
            "X-Slack-Request-Timestamp": ts,
            "X-Slack-Signature": sign(body, ts),
        },
    )
    start = time.monotonic()
    try:
        with urllib.request.urlopen(req, timeout=10) as r:  # noqa: S310
            r.read()
            status = r.status
    except urllib.error.HTTPError as e:
        status = e.code
    except OSError:
        status = 0
    return start, time.monotonic() - start, status


class Prober:
    def __init__(self, url: str, hook: str, every: float = 0.1) -> None:
        self.url, self.hook, self.every = url, hook, every
        self.results: list[tuple[float, float, int]] = []
        self._stop = threading.Event()
        self._pool = ThreadPoolExecutor(max_workers=16)
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        n = 0
        while not self._stop.is_set():
            body = command("help" if n % 2 else "status", self.hook)
            try:
                fut = self._pool.submit(signed_command, self.url, body)
            except RuntimeError:  # shutting down
                return
            fut.add_done_callback(lambda f: self.results.append(f.result()))
            n += 1
            time.sleep(self.every)

    def between(self, t0: float, t1: float) -> list[tuple[float, int]]:
        return [(s, st) for t, s, st in self.results if t0 <= t <= t1]

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()
        self._pool.shutdown(wait=True)


# --- the hostile clients ----------------------------------------------------------------------


@dataclass
class Outcome:
    what: str
    status: int | str = "-"  # the status answered, or what happened instead
    seconds: float = 0.0  # until answered or closed
    sent: int = 0


def head(length: int, *, signed_headers: bool = False) -> bytes:
    lines = [
        f"POST {PATH} HTTP/1.1",
        "Host: 127.0.0.1",
        "Content-Type: application/x-www-form-urlencoded",
        f"Content-Length: {length}",
    ]
    if signed_headers:
        ts = str(int(time.time()))
        lines += [f"X-Slack-Request-Timestamp: {ts}", "X-Slack-Signature: v0=" + "0" * 64]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def status_of(data: bytes) -> int | str:
    try:
        return int(data.split(b" ", 2)[1])
    except (IndexError, ValueError):
        return "no answer"


def big_post(port: int, size: int = 200 * MB) -> Outcome:
    """An unsigned POST of ``size`` bytes, streamed; what the server answered, if anything."""
    out = Outcome("200 MB POST")
    chunk = b"a" * MB
    start = time.monotonic()
    try:
        sock = socket.create_connection(("127.0.0.1", port), timeout=30)
    except OSError as exc:
        out.status, out.seconds = f"connect: {type(exc).__name__}", time.monotonic() - start
        return out
    with sock:
        try:
            sock.sendall(head(size))
            while out.sent < size:
                sock.sendall(chunk[: size - out.sent])
                out.sent += min(MB, size - out.sent)
        except OSError as exc:
            out.status = type(exc).__name__
        try:
            sock.settimeout(30)
            data = sock.recv(4096)
            out.status = status_of(data) if data else f"closed ({out.status})"
        except OSError as exc:
            out.status = f"{type(exc).__name__} after {out.status}"
    out.seconds = time.monotonic() - start
    return out


def slow_clients(port: int, kind: str, n: int, hold: float) -> list[Outcome]:
    """``n`` connections that stall: ``body`` announce 100 MB and send 3 bytes; ``taken``
    announce 64 KB (within the limit, signature headers too) and send 3 bytes; ``headers``
    send their headers a byte a second. Each is watched for ``hold`` seconds at most."""
    socks: dict[socket.socket, Outcome] = {}
    pending: dict[socket.socket, bytes] = {}
    sel = selectors.DefaultSelector()
    start = time.monotonic()
    failed: list[Outcome] = []
    for _ in range(n):
        try:
            sock = socket.create_connection(("127.0.0.1", port), timeout=5)
        except OSError as exc:
            failed.append(Outcome(kind, f"connect: {type(exc).__name__}", 5.0))
            continue
        if kind == "body":
            sock.sendall(head(100_000_000) + b"abc")
        elif kind == "taken":
            sock.sendall(head(64 * 1024, signed_headers=True) + b"abc")
        else:
            pending[sock] = head(100) + b"abc"
        sock.setblocking(False)
        socks[sock] = Outcome(kind)
        sel.register(sock, selectors.EVENT_READ)
    next_byte = start
    while sel.get_map() and time.monotonic() - start < hold:
        for key, _ in sel.select(timeout=0.1):
            sock = key.fileobj
            assert isinstance(sock, socket.socket)
            out = socks[sock]
            try:
                data = sock.recv(4096)
            except OSError as exc:
                data, out.status = b"", type(exc).__name__
            if data and out.status == "-":
                out.status = status_of(data)
            if not data:
                if out.status == "-":
                    out.status = "closed"
                out.seconds = time.monotonic() - start
                sel.unregister(sock)
                pending.pop(sock, None)
        if pending and time.monotonic() >= next_byte:
            next_byte += 1.0
            for sock, rest in list(pending.items()):
                try:
                    sock.send(rest[:1])
                    pending[sock] = rest[1:]
                except OSError:
                    pending.pop(sock)
    for sock, out in socks.items():
        if out.seconds == 0.0:
            out.status, out.seconds = f"still open after {hold:.0f} s", hold
        sock.close()
    return [*socks.values(), *failed]


def malformed(port: int, n: int = 20) -> list[Outcome]:
    """Requests the issue saw answered 500 with a traceback on stderr: a timestamp that is not
    a number, and correctly signed bodies of malformed JSON or not UTF-8."""
    out = []
    for _ in range(n):
        ts = str(int(time.time()))
        for what, body, ctype, stamp in (
            (
                "timestamp not a number",
                b"command=/triage",
                "application/x-www-form-urlencoded",
                "12abc",
            ),
            ("signed malformed JSON", b'{"type": "event_callback", ', "application/json", ts),
            (
                "signed non-UTF-8",
                b"\xff\xfecommand=/triage",
                "application/x-www-form-urlencoded",
                ts,
            ),
        ):
            request = (
                f"POST {PATH} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: {ctype}\r\n"
                f"Content-Length: {len(body)}\r\nX-Slack-Request-Timestamp: {stamp}\r\n"
                f"X-Slack-Signature: {sign(body, stamp)}\r\n\r\n"
            ).encode() + body
            start = time.monotonic()
            o = Outcome(what)
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
                    sock.sendall(request)
                    o.status = status_of(sock.recv(4096))
            except OSError as exc:
                o.status = type(exc).__name__
            o.seconds = time.monotonic() - start
            out.append(o)
    return out


# --- the run ----------------------------------------------------------------------------------


@dataclass
class Phase:
    name: str
    t0: float = 0.0
    t1: float = 0.0
    outcomes: list[Outcome] = field(default_factory=list)


def run_phase(name: str, work: Callable[[], list[Outcome]]) -> Phase:
    phase = Phase(name, time.monotonic())
    phase.outcomes = work()
    time.sleep(1.0)  # the server's answers to the probes sent meanwhile
    phase.t1 = time.monotonic()
    return phase


def together(*jobs: Callable[[], list[Outcome]]) -> list[Outcome]:
    with ThreadPoolExecutor(max_workers=len(jobs)) as pool:
        futures = [pool.submit(job) for job in jobs]
        return [o for f in futures for o in f.result()]


def summary(outcomes: list[Outcome]) -> str:
    groups: dict[tuple[str, str], list[Outcome]] = {}
    for o in outcomes:
        groups.setdefault((o.what, str(o.status)), []).append(o)
    parts = []
    for (what, status), os_ in sorted(groups.items()):
        secs = max(o.seconds for o in os_)
        sent = max(o.sent for o in os_)
        extra = f", {sent / MB:.0f} MB sent at most" if sent else ""
        parts.append(f"{len(os_)} {what}: {status} (≤ {secs:.1f} s{extra})")
    return "; ".join(parts) or "-"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--hold", type=float, default=12.0, help="seconds a slow client waits")
    ap.add_argument("--unguarded", action="store_true", help="the endpoint as it was")
    args = ap.parse_args()

    from tests.support.slack_api import SlackApiServer

    with tempfile.TemporaryDirectory() as tmp, SlackApiServer() as slack:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = int(s.getsockname()[1])
        log = str(Path(tmp) / "app.log")
        ctx = mp.get_context("fork")
        ready = ctx.Event()
        proc = ctx.Process(
            target=serve_app,
            args=(slack.base_url, slack.token, port, log, args.unguarded, ready),
            daemon=True,
        )
        proc.start()
        ready.wait(30)
        assert proc.pid is not None
        url = f"http://127.0.0.1:{port}{PATH}"
        hook = f"{slack.root_url}/hooks/bench"
        for _ in range(30):  # until it listens; warm up
            if signed_command(url, command("help", hook))[2] == 200:
                break
            time.sleep(0.1)
        sampler = Sampler(proc.pid)
        prober = Prober(url, hook)
        hold = args.hold
        try:
            phases = [
                run_phase("idle", lambda: (time.sleep(2.0), [])[1]),
                run_phase("1 unsigned 200 MB POST", lambda: [big_post(port)]),
                run_phase(
                    "4 unsigned 200 MB POSTs at once",
                    lambda: together(*[lambda: [big_post(port)]] * 4),
                ),
                run_phase(
                    "50 slow bodies, 100 MB announced", lambda: slow_clients(port, "body", 50, hold)
                ),
                run_phase(
                    "50 slow bodies, 64 KB announced", lambda: slow_clients(port, "taken", 50, hold)
                ),
                run_phase(
                    "50 slow headers, a byte a second",
                    lambda: slow_clients(port, "headers", 50, hold),
                ),
                run_phase(
                    "all of the above at once",
                    lambda: together(
                        *[lambda: [big_post(port)]] * 4,
                        lambda: slow_clients(port, "body", 50, hold),
                        lambda: slow_clients(port, "taken", 50, hold),
                        lambda: slow_clients(port, "headers", 50, hold),
                    ),
                ),
                run_phase("malformed requests, 20 of each kind", lambda: malformed(port)),
                run_phase("after", lambda: (time.sleep(2.0), [])[1]),
            ]
        finally:
            prober.stop()
            sampler.stop()
            hwm = proc_status(proc.pid)["VmHWM"] / 1024
            proc.terminate()
            proc.join(10)
        with open(log, encoding="utf-8", errors="replace") as f:
            lines = [line.rstrip("\n") for line in f if line.strip()]

    not_json = []
    for line in lines:
        try:
            json.loads(line)
        except ValueError:
            not_json.append(line)

    mode = "unguarded (as before)" if args.unguarded else "guarded"
    print(f"Slack HTTP endpoint under hostile clients ({mode}); signed commands 10/s throughout")
    cols = ("peak RSS", "threads", "acks", "p50 ms", "max ms", "non-200")
    print(f"{'phase':36} {cols[0]:>9} " + " ".join(f"{c:>7}" for c in cols[1:]))
    all_acks: list[float] = []
    failures = 0
    for p in phases:
        rss, threads = sampler.between(p.t0, p.t1)
        acks = prober.between(p.t0, p.t1)
        secs = [s for s, _ in acks]
        bad = sum(st != 200 for _, st in acks)
        all_acks += secs
        failures += bad
        p50 = statistics.median(secs) * 1000 if secs else float("nan")
        mx = max(secs) * 1000 if secs else float("nan")
        print(
            f"{p.name:36} {rss:7.0f} MB {threads:7d} {len(acks):7d} {p50:7.1f} {mx:7.1f} {bad:7d}"
        )
    print()
    for p in phases:
        if p.outcomes:
            print(f"{p.name}: {summary(p.outcomes)}")
    print()
    peak = max(rss for _, rss, _ in sampler.samples)
    worst = max(all_acks) if all_acks else float("inf")
    print(f"app peak RSS: {peak:.0f} MB sampled, {hwm:.0f} MB high-water mark (VmHWM)")
    print(
        f"signed commands: {len(all_acks)}, p50 {statistics.median(all_acks) * 1000:.1f} ms, "
        f"max {worst * 1000:.1f} ms, non-200 {failures}"
    )
    print(f"app stderr: {len(lines)} lines, {len(not_json)} not JSON")
    for line in not_json[:5]:
        print(f"  | {line[:160]}")
    checks = [
        (f"peak RSS under {TARGET_RSS_MB:.0f} MB", max(peak, hwm) < TARGET_RSS_MB),
        (
            f"every signed command answered 200 within {TARGET_ACK_S:.0f} s",
            worst < TARGET_ACK_S and failures == 0,
        ),
        ("nothing but JSON on the app's stderr", not not_json),
    ]
    for name, ok in checks:
        print(f"{'PASS' if ok else 'FAIL'}: {name}")
    return 0 if all(ok for _, ok in checks) else 1


if __name__ == "__main__":
    sys.exit(main())
